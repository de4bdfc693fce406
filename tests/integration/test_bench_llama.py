"""ossctl bench against a real llama-server (CPU build, tiny model)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ossctl.loadtest.report import LEVEL_KEYS, REPORT_KEYS
from tests.support.cli import run_cli

pytestmark = pytest.mark.llama


def _check_consistent(lv: dict) -> None:
    assert lv["requests"] == lv["successes"] + lv["errors"]
    assert lv["errors"] == sum(lv["errors_by_kind"].values())
    lat = lv["latency_s"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"]
    assert sum(c["requests"] for c in lv["categories"].values()) == lv["requests"]
    assert sum(c["output_tokens"] for c in lv["categories"].values()) == lv["output_tokens"]


def test_streaming_numbers_are_consistent(llama_server, home):
    r = run_cli("--json", "bench", "--url", llama_server, "--users", "1,3", "--requests", "10", "--max-tokens", "8")
    assert r.code == 0, r.err
    rep = r.json()
    assert tuple(rep) == REPORT_KEYS
    assert rep["stream"] is True and rep["requests_per_level"] == 10
    assert [lv["users"] for lv in rep["levels"]] == [1, 3]
    for lv in rep["levels"]:
        assert tuple(lv) == LEVEL_KEYS
        _check_consistent(lv)
        assert lv["requests"] == 10 and lv["errors"] == 0
        # tokens counted (usage or stream chunks), at most max_tokens per request
        assert 0 < lv["output_tokens"] <= 8 * lv["successes"]
        assert lv["prompt_tokens"] > 0
        tt = lv["ttft_s"]
        assert tt is not None and 0 < tt["p50"] <= tt["p95"]
        assert tt["p50"] <= lv["latency_s"]["p99"]
        assert set(lv["categories"]) == {"factual", "code", "creative", "reasoning", "list"}
        assert lv["client_cpu_ms_per_request"] > 0
    assert "bench: 3 users" in r.err


def test_non_streaming_takes_tokens_from_usage(llama_server, home):
    r = run_cli("--json", "bench", "--url", llama_server, "--users", "2", "--requests", "6", "--max-tokens", "4",
                "--no-stream")
    assert r.code == 0, r.err
    lv = r.json()["levels"][0]
    _check_consistent(lv)
    assert lv["ttft_s"] is None
    assert 0 < lv["output_tokens"] <= 4 * 6
    # llama-server reports its own speeds ("timings"); they reach the per-category numbers
    assert all(c["server_gen_tps"] > 0 for c in lv["categories"].values())


def test_duration_mode_and_human_table(llama_server, home):
    r = run_cli("bench", "--url", llama_server, "--users", "2", "--duration", "1s", "--max-tokens", "4",
                "--sla", "errors<50%")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].split()[:3] == ["users", "requests", "errors"]
    assert lines[1].split()[0] == "2" and int(lines[1].split()[1]) > 0
    assert "SLA errors<50%: met up to 2 users" in r.out


def test_prompt_file(llama_server, home, tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"category": "greeting", "messages": [{"role": "user", "content": "hello"}],
                             "max_tokens": 3}) + "\n")
    r = run_cli("--json", "bench", "--url", llama_server, "--users", "1", "--requests", "3", "--prompts", str(f))
    assert r.code == 0, r.err
    lv = r.json()["levels"][0]
    assert list(lv["categories"]) == ["greeting"]
    assert 0 < lv["output_tokens"] <= 9


def test_sla_that_cannot_hold_exits_9(llama_server, home):
    r = run_cli("bench", "--url", llama_server, "--users", "1,2", "--requests", "3", "--max-tokens", "4",
                "--sla", "avg<1us,errors<5%")
    assert r.code == 9
    assert "SLA avg<1us,errors<5%: not met at any level" in r.out
    assert "error: SLA avg<1us,errors<5% failed at 1, 2 users" in r.err


def test_run_gate(llama_server):
    from ossctl.loadtest.gate import run_gate

    ok = run_gate(llama_server, None, {"users": [1, 2], "requests": 4, "max_tokens": 4})
    assert ok.ok, ok.summary
    assert ok.summary.startswith("SLA errors<5% met up to 2 users") and ok.report["sla"]["max_users"] == 2
    bad = run_gate(llama_server, None, {"users": [1], "requests": 2, "max_tokens": 4, "sla": "p99<1us"})
    assert not bad.ok and bad.summary.startswith("SLA p99<1us not met at 1 users: p99 ")
    gone = run_gate("http://127.0.0.1:9", None, {})
    assert not gone.ok and gone.summary.startswith("cannot reach http://127.0.0.1:9")


def test_target_from_the_running_release(llama_server_factory, home, tmp_path, docker_host):
    """--profile reads the endpoint and the API key file from the current release, as the
    Docker engine's ledger records it."""
    import uuid

    from ossctl.serve.docker_runtime import DockerRuntime
    from ossctl.serve.releases import Ledger, Release, State, now_iso

    secret = "sk-release-key-987654321"
    srv = llama_server_factory(api_key=secret)
    keyfile = tmp_path / "api-key"
    keyfile.write_text(secret)
    profile = "bench" + uuid.uuid4().hex[:8]
    Ledger(DockerRuntime(docker_host)).save(Release(id="r0001", profile=profile, state=State.OK, created=now_iso(),
                                                    endpoint=srv.url, api_key_file=str(keyfile)))
    r = run_cli("--json", "bench", "--profile", profile, "--users", "1", "--requests", "2", "--max-tokens", "4",
                env={"DOCKER_HOST": docker_host})
    assert r.code == 0, r.err
    rep = r.json()
    assert rep["target"] == srv.url and rep["levels"][0]["errors"] == 0
    assert secret not in r.out + r.err


def test_wrong_api_key(llama_server_factory, home, tmp_path):
    secret = "sk-test-key-0123456789"
    srv = llama_server_factory(api_key=secret)
    r = run_cli("bench", "--url", srv.url, "--users", "1", "--requests", "3", "--max-tokens", "4")
    assert r.code == 5
    assert "HTTP 401 x3" in r.out
    assert "error: every request was refused as unauthorized (HTTP 401)" in r.err
    assert "hint: check the API key" in r.err
    keyfile = tmp_path / "key"
    keyfile.write_text(secret + "\n")
    r = run_cli("--json", "bench", "--url", srv.url, "--users", "1", "--requests", "3", "--max-tokens", "4",
                "--api-key-file", str(keyfile))
    assert r.code == 0, r.err
    assert r.json()["levels"][0]["errors"] == 0
    assert secret not in r.out + r.err
    r = run_cli("--json", "bench", "--url", srv.url, "--users", "1", "--requests", "2", "--max-tokens", "4",
                env={"OSSCTL_API_KEY": secret})
    assert r.code == 0, r.err
    assert secret not in r.out + r.err


def _popen_bench(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ossctl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ))


def _wait_for_line(stream, needle: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = stream.readline()
        if not line:
            raise AssertionError(f"stream ended before {needle!r}")
        if needle in line:
            return
    raise AssertionError(f"no {needle!r} within {timeout}s")


def test_server_killed_mid_run_counts_failures(llama_server_factory, home):
    srv = llama_server_factory()
    p = _popen_bench("--json", "bench", "--url", srv.url, "--users", "2,4", "--duration", "60s", "--max-tokens", "8")
    try:
        _wait_for_line(p.stderr, "bench: 2 users ...")
        time.sleep(1.0)
        srv.proc.kill()
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 5, err
    assert "Traceback" not in err
    assert "the run stopped early: the server stopped accepting connections" in err
    rep = json.loads(out)
    assert rep["aborted"] and len(rep["levels"]) == 1  # the 4-user level never ran
    lv = rep["levels"][0]
    assert lv["successes"] > 0 and lv["errors"] > 0
    assert lv["requests"] == lv["successes"] + lv["errors"]
    assert lv["errors_by_kind"].get("connect", 0) >= 4


def test_ctrl_c_prints_what_was_measured(llama_server, home):
    p = _popen_bench("bench", "--url", llama_server, "--users", "1,2", "--duration", "60s", "--max-tokens", "4",
                     "--sla", "errors<5%")
    try:
        _wait_for_line(p.stderr, "bench: 1 users ...")
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "Traceback" not in err
    lines = out.splitlines()
    assert lines[0].split()[0] == "users" and lines[1].split()[0] == "1" and int(lines[1].split()[1]) > 0
    assert "run interrupted: partial results" in out
