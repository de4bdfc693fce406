"""Bad input and misbehaving servers: each gives one clear error line or counted errors."""

from __future__ import annotations

import contextlib
import json
import time
from http.server import BaseHTTPRequestHandler

import pytest

from tests.support.cli import run_cli
from tests.support.net import free_port, http_server, url


class _Bad(BaseHTTPRequestHandler):
    """An OpenAI-ish server with one bug, chosen by the server's ``mode``."""

    def log_message(self, *a):
        pass

    def do_GET(self):
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        mode = self.server.mode
        if mode == "auth" and self.headers.get("Authorization") != "Bearer k1":
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "stream500" and body.get("stream"):
            data = b'{"error": {"code": 500, "message": "boom"}}'
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if mode == "stream500":
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": "ok"}}],
                               "usage": {"completion_tokens": 2, "prompt_tokens": 3}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if mode == "hang":
            time.sleep(3)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()  # HTTP/1.0: the body runs to the close
        good = b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n'
        if mode == "garbage":
            self.wfile.write(good + b"data: {not json\n\n" + b"data: [DONE]\n\n")
        elif mode == "no_done":
            self.wfile.write(good + good)
        elif mode == "auth":
            self.wfile.write(good + b"data: [DONE]\n\n")


@pytest.fixture
def bad_server():
    with contextlib.ExitStack() as stack:
        yield lambda mode: url(stack.enter_context(http_server(_Bad, mode=mode)))


@pytest.mark.parametrize("mode", ["garbage", "no_done"])
def test_malformed_events_are_broken_streams(bad_server, home, mode):
    r = run_cli("--json", "bench", "--url", bad_server(mode), "--users", "2", "--requests", "6")
    assert r.code == 5, r.err  # every request failed
    lv = r.json()["levels"][0]
    assert lv["errors_by_kind"] == {"broken_stream": 6}
    assert lv["successes"] == 0 and lv["latency_s"] is None


def test_streaming_500_while_plain_requests_work(bad_server, home):
    url = bad_server("stream500")
    r = run_cli("bench", "--url", url, "--users", "1", "--requests", "3", "--sla", "errors<5%")
    assert r.code == 9
    assert "HTTP 500 x3" in r.out
    r = run_cli("--json", "bench", "--url", url, "--users", "1", "--requests", "3", "--no-stream")
    assert r.code == 0, r.err
    assert r.json()["levels"][0]["errors"] == 0 and r.json()["levels"][0]["output_tokens"] == 6


def test_request_timeout_is_its_own_kind(bad_server, home):
    r = run_cli("--json", "bench", "--url", bad_server("hang"), "--users", "2", "--requests", "2",
                "--timeout", "300ms")
    assert r.code == 5, r.err
    assert r.json()["levels"][0]["errors_by_kind"] == {"timeout": 2}


def test_unreachable_url_fails_up_front(home):
    r = run_cli("bench", "--url", f"http://127.0.0.1:{free_port()}", "--users", "1", "--requests", "1")
    assert r.code == 5
    assert r.out == ""
    assert r.err.startswith("error: cannot reach http://127.0.0.1:")
    assert "hint:" in r.err


@pytest.mark.parametrize("args,needle", [
    (["--users", "1,x"], "--users '1,x'"),
    (["--users", "0"], "--users '0'"),
    (["--duration", "soon"], "duration 'soon' is malformed"),
    (["--sla", "p95 < fast"], "SLA condition 'p95 < fast' is malformed"),
    (["--sla", "p42<3s"], "unknown metric 'p42'"),
    (["--duration", "5s", "--requests", "3"], "not both"),
    (["--url", "ftp://x"], "not an http(s) URL"),
])
def test_bad_options_are_usage_errors(home, args, needle):
    base = ["bench"] + ([] if "--url" in args else ["--url", "http://127.0.0.1:9"])
    r = run_cli(*base, *args)
    assert r.code == 2, r.err
    assert needle in r.err
    assert r.err.startswith("error: ") and "Traceback" not in r.err


def test_prompt_file_not_jsonl(home, tmp_path):
    f = tmp_path / "prompts.csv"
    f.write_text("category,prompt\ncode,write a loop\n")
    r = run_cli("bench", "--url", "http://127.0.0.1:9", "--prompts", str(f))
    assert r.code == 2
    assert f"error: prompt file {f} line 1 is not JSON" in r.err


def test_nothing_deployed_for_profile(home, docker_host):
    # the engine holds what is deployed: reachable, and nothing of this profile on it
    r = run_cli("bench", "--profile", "nosuch", env={"DOCKER_HOST": docker_host})
    assert r.code == 3, r.err
    assert r.err.startswith("error: ")
    assert "--url" in r.err


def test_url_and_profile_together(home):
    r = run_cli("bench", "--profile", "prod", "--url", "http://127.0.0.1:9")
    assert r.code == 2 and "not both" in r.err


def test_plot_needs_matplotlib(home, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "matplotlib" else real(n, *a))
    r = run_cli("bench", "--url", "http://127.0.0.1:9", "--plot", str(tmp_path / "p.png"))
    assert r.code == 2
    assert "--plot needs matplotlib" in r.err and "ossctl[plot]" in r.err


def test_every_request_failing_is_an_error_even_without_sla(bad_server, home):
    r = run_cli("bench", "--url", bad_server("garbage"), "--users", "1", "--requests", "3")
    assert r.code == 5
    errs = [ln for ln in r.err.splitlines() if ln.startswith("error: ")]
    assert errs == ["error: every request failed (3 of 3 requests failed: broken stream x3)"], r.err
    assert "broken stream x3" in r.out  # the report is still printed
    # with --sla the SLA verdict (exit 9) is the signal
    r = run_cli("bench", "--url", bad_server("garbage"), "--users", "1", "--requests", "2", "--sla", "errors<5%")
    assert r.code == 9


def test_api_key_file_is_read_like_the_server_reads_it(bad_server, home, tmp_path):
    """One reader (ossctl.serve.apikey): comments and blank lines skipped, first key sent."""
    url = bad_server("auth")
    f = tmp_path / "key"
    f.write_text("# the server's keys\n\nk1\nk2\n")
    r = run_cli("--json", "bench", "--url", url, "--users", "1", "--requests", "2", "--api-key-file", str(f))
    assert r.code == 0, r.err
    assert r.json()["levels"][0]["errors"] == 0
    f.write_text("# only a comment\n")
    r = run_cli("bench", "--url", url, "--users", "1", "--requests", "1", "--api-key-file", str(f))
    assert r.code == 2 and r.err.startswith(f"error: API key file {f} holds no key")
    assert f.read_text() == "# only a comment\n"
