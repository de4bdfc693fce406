"""Fixtures: a local hub-compatible server serving a tiny real 3-part GGUF model."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.ggufgen import write_model
from tests.support.hubserver import HubServer

REPO_120B = "ggml-org/gpt-oss-120b-GGUF"
PREFIX_120B = "gpt-oss-120b-mxfp4"


def model_dir(home: Path) -> Path:
    """Where `ossctl download 120b` puts the tiny model under OSSCTL_HOME."""
    return home / "models" / REPO_120B


def names(n: int = 3) -> list[str]:
    return [f"{PREFIX_120B}-{i:05d}-of-{n:05d}.gguf" for i in range(1, n + 1)]


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def start_download_proc(home: Path, hub_url: str) -> subprocess.Popen:
    """`ossctl download 120b --workers 1` in a child process against ``hub_url``."""
    env = dict(os.environ, OSSCTL_HOME=str(home), HF_ENDPOINT=hub_url, OSSCTL_DISK_MARGIN="0")
    return subprocess.Popen([sys.executable, "-m", "ossctl", "download", "120b", "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                            cwd=Path(__file__).resolve().parents[2])


def wait_for_partial(part: Path, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if part.exists() and part.stat().st_size >= at_least:
            return
        time.sleep(0.02)
    raise AssertionError(f"{part} never reached {at_least} bytes")


@pytest.fixture(scope="session")
def tiny120_parts(tmp_path_factory) -> list[Path]:
    """Three parts named like the 120b release; part 1 padded to ~3 MiB so transfers can
    be interrupted mid-file."""
    return write_model(tmp_path_factory.mktemp("tiny120"), PREFIX_120B, parts=3, pad_bytes=3 << 20)


@pytest.fixture
def hub(tiny120_parts, monkeypatch):
    """A running hub with the tiny model published as ggml-org/gpt-oss-120b-GGUF;
    HF_ENDPOINT points at it and retries are fast."""
    server = HubServer().start()
    server.add_repo(REPO_120B, tiny120_parts)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("OSSCTL_DISK_MARGIN", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield server
    server.stop()
