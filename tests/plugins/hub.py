"""Fixtures: a local hub-compatible server serving a tiny real 3-part GGUF model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.ggufgen import write_model
from tests.support.hubserver import HubServer

REPO_120B = "ggml-org/gpt-oss-120b-GGUF"
PREFIX_120B = "gpt-oss-120b-mxfp4"


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
