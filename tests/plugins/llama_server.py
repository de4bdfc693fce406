"""A real llama-server (the CPU build from scripts/test.sh, $OSSCTL_TEST_LLAMA_BIN) on the
tiny GGUF model from tests/support/ggufgen, on a free 127.0.0.1 port.

- ``tiny_gguf`` (session): path of the first part of the tiny split model.
- ``llama_server_factory`` (session): ``start(api_key=None, parallel=2, extra=())`` →
  :class:`LlamaServer` (``.url``, ``.proc``, ``.stop()``); each is stopped at session end.
- ``llama_server`` (session): one shared server without an API key; yields its base URL.
- ``llama_build`` / ``llama_help`` (session): the binary's build number and ``--help`` text.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_env
from tests.support.net import free_port


@dataclass
class LlamaServer:
    url: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    """Poll ``/health`` until it answers 200 (the model is loaded)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200 and json.loads(r.read() or b"{}").get("status", "ok") == "ok":
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"llama-server not healthy after {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    from tests.support.ggufgen import write_model

    return write_model(tmp_path_factory.mktemp("tiny-model"), "tiny", parts=3)[0]


@pytest.fixture(scope="session")
def llama_server_factory(tiny_gguf, tmp_path_factory):
    bindir = Path(require_env("OSSCTL_TEST_LLAMA_BIN"))
    started: list[LlamaServer] = []

    def start(api_key: str | None = None, parallel: int = 2, extra: tuple[str, ...] = ()) -> LlamaServer:
        port = free_port()
        logdir = tmp_path_factory.mktemp("llama-server")
        log = logdir / "server.log"
        argv = [str(bindir / "llama-server"), "-m", str(tiny_gguf), "--host", "127.0.0.1", "--port", str(port),
                "-c", "1024", "-np", str(parallel), "-t", "1", "-ngl", "0", "--no-warmup", *extra]
        env = dict(os.environ)
        if api_key:
            # through a file, not argv: keys never travel on command lines
            keyfile = logdir / "api-key"
            keyfile.write_text(api_key)
            argv += ["--api-key-file", str(keyfile)]
        with open(log, "wb") as fh:
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env)
        srv = LlamaServer(f"http://127.0.0.1:{port}", proc, log)
        started.append(srv)
        try:
            wait_healthy(srv.url, proc, log)
        except RuntimeError:
            srv.stop()
            raise
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def llama_build() -> int:
    """The build number the test binary reports (``llama-server --version``)."""
    from ossctl.serve.llama_flags import parse_build

    bindir = Path(require_env("OSSCTL_TEST_LLAMA_BIN"))
    out = subprocess.run([str(bindir / "llama-server"), "--version"], capture_output=True, text=True, timeout=60)
    build = parse_build(out.stdout + out.stderr)
    assert build is not None, out.stdout + out.stderr
    return build


@pytest.fixture(scope="session")
def llama_help() -> str:
    """``llama-server --help`` of the test binary."""
    bindir = Path(require_env("OSSCTL_TEST_LLAMA_BIN"))
    out = subprocess.run([str(bindir / "llama-server"), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


@pytest.fixture(scope="session")
def llama_server(llama_server_factory) -> str:
    return llama_server_factory().url
