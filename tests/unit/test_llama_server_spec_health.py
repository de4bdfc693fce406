"""The health gate's polling rules against a local HTTP server that answers like a
loading llama-server (503), and a container that exits."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

import pytest

from tests.support.net import http_server, url
from ossctl.errors import DeployError
from ossctl.serve import health


class _Loading(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server API
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error":{"code":503,"message":"Loading model"}}')

    def log_message(self, *a):
        pass


@pytest.fixture
def loading_server():
    with http_server(_Loading) as srv:
        yield url(srv)


RUNNING = {"running": True, "restart_count": 0, "oom_killed": False, "exit_code": None}


def test_timeout_names_the_last_answer(loading_server):
    with pytest.raises(DeployError) as ei:
        health.wait_ready(loading_server, 0.3, None, lambda: RUNNING, lambda: "load_tensors: loading\n")
    assert "not healthy after 0.3 s (/health answered 503)" in ei.value.message
    assert "load_tensors: loading" in ei.value.message
    assert health.probe(loading_server) == "loading"


def test_container_exit_fails_fast_with_log_tail(loading_server):
    exited = {**RUNNING, "running": False, "exit_code": 1}
    with pytest.raises(DeployError) as ei:
        health.wait_ready(loading_server, 900, None, lambda: exited, lambda: "a\nb\nerror: invalid argument: --x\n")
    assert ei.value.message.startswith("the container exited while loading (exit code 1)")
    assert ei.value.message.endswith("  error: invalid argument: --x")
    oom = {**exited, "oom_killed": True, "exit_code": 137}
    with pytest.raises(DeployError, match=r"killed for lack of memory \(OOM\)"):
        health.wait_ready(loading_server, 900, None, lambda: oom, lambda: "")


def test_unreachable():
    assert health.probe("http://127.0.0.1:9", timeout=0.5) == "unreachable"
