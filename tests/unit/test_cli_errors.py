"""The CLI frame: ``--json`` errors on stdout, a private key pasted into a usage error,
``OSSCTL_DEBUG=1``, the registry's confirmation line, and the bench probe's IPv6
``Host``. Each asserts the exit code, the one line, and that nothing was lost."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path

import pytest

from ossctl.cli.app import JSON_ERROR_KEYS
from tests.support.cli import run_cli, run_proc

ROOT = Path(__file__).resolve().parents[2]
KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"


# --- 17. --json: the error on stdout as well -----------------------------------------

@pytest.mark.parametrize("args,code,needle", [
    (("verify", "/nonexistent/dir"), 3, "directory '/nonexistent/dir' does not exist"),
    (("download", "120b", "--include", "/abs"), 2, "bad --include pattern '/abs'"),
    (("hash", "--workers", "many", "x"), 2, "Invalid value for '--workers'"),
    (("no-such-command",), 2, "No such command 'no-such-command'"),
])
def test_json_errors_print_one_object_on_stdout_and_the_line_on_stderr(home, args, code, needle):
    r = run_cli("--json", *args)
    assert r.code == code
    doc = json.loads(r.out)  # the whole of stdout is one JSON object
    assert tuple(doc) == JSON_ERROR_KEYS and doc["exit_code"] == code and needle in doc["error"]
    assert needle in r.err and "Traceback" not in r.err
    plain = run_cli(*args)
    assert plain.code == code and plain.out == ""  # without --json stdout stays empty


def test_json_error_from_a_child_process_and_after_home(home, tmp_path):
    r = run_proc("--home", str(tmp_path), "--json", "verify", str(tmp_path / "nope"), cwd=ROOT)
    assert r.code == 3 and json.loads(r.out)["hint"] is None
    assert r.err.startswith("error: ")


# --- a private key pasted into a usage error -------------------------------------------

@pytest.mark.parametrize("args", [
    ("verify", "somedir", KEY),
    ("register", "120b", KEY[2:]),
    (f"--{KEY[2:]}",),
])
def test_usage_errors_never_echo_a_pasted_private_key(home, args):
    for json_flag in ((), ("--json",)):
        r = run_proc(*json_flag, *args, cwd=ROOT)
        assert r.code == 2, r.err
        assert KEY[2:].lower() not in (r.out + r.err).lower() and "***" in r.err
        assert "Error: " in r.err and "Traceback" not in r.err


def test_bench_unreachable_url_names_a_real_command(home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_cli("bench", "--url", f"http://127.0.0.1:{port}", "--requests", "1")
    assert r.code == 5
    assert "hint: check the URL and that the server is running (`ossctl status` shows what runs" in r.err
    assert "serve status" not in r.err


# --- notes: the registry's confirmation line -------------------------------------------

def test_the_confirmation_summary_names_the_action_not_none():
    from ossctl.cli.registry import _tx_summary
    from ossctl.errors import OssctlError
    from ossctl.registry import rpc

    seen = []
    plan = rpc.TxPlan("addTrustedModel", ["acme/m", "m.gguf", "0x" + "ab" * 32], "0x" + "11" * 20,
                      "0x" + "22" * 20, "0x")
    out = {"action": None, "model_id": "0x" + "33" * 32, "chain_id": 31337, "tx": None}
    with pytest.raises(OssctlError, match="cancelled: nothing was sent"):
        rpc.execute(None, None, plan, out, action="register", dry_run=False,
                    confirm=lambda summary: seen.append(summary) or False, check_later="x")
    first = _tx_summary(seen[0]).splitlines()[0]
    assert first == "register: addTrustedModel(acme/m, m.gguf, 0x" + "ab" * 32 + ")"
    assert out["action"] is None and out["tx"] is None  # nothing sent, nothing recorded


# --- notes: the bench probe's Host header for an IPv6 literal --------------------------

def test_the_models_probe_sends_a_bracketed_ipv6_host():
    from ossctl.loadtest import openai

    got: list[bytes] = []
    srv = socket.socket(socket.AF_INET6)
    srv.bind(("::1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def answer() -> None:
        conn, _ = srv.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            got.append(data)
            body = b'{"data":[{"id":"tiny"}]}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    try:
        models = asyncio.run(openai.probe(openai.Target(f"http://[::1]:{port}"), timeout_s=5))
    finally:
        srv.close()
    assert models == ["tiny"]
    host = [ln for ln in got[0].split(b"\r\n") if ln.lower().startswith(b"host:")]
    assert host == [f"Host: [::1]:{port}".encode()]


def test_a_command_that_printed_its_json_then_failed_prints_no_second_document(home):
    d = home / "profiles"
    d.mkdir()
    (d / "b.toml").write_text('model = "20b"\nimage = "img:1"\nctx = 4096\nextends = "b"\n')
    r = run_cli("--json", "profile", "validate", "b")
    assert r.code == 2 and "extends itself" in r.json()["profiles"][0]["error"]  # one document


# --- 15. OSSCTL_DEBUG=1 keeps exit code and hint -------------------------------------

def test_debug_keeps_exit_code_and_hint_and_adds_the_traceback(home):
    plain = run_proc("verify", "/nonexistent/dir", cwd=ROOT)
    debug = run_proc("verify", "/nonexistent/dir", env={"OSSCTL_DEBUG": "1"}, cwd=ROOT)
    assert plain.code == debug.code == 3
    assert "Traceback" in debug.err and "Traceback" not in plain.err
    err_lines = [ln for ln in plain.err.splitlines()]
    assert debug.err.splitlines()[-len(err_lines):] == err_lines  # same error line (and hint) last
    usage = run_proc("download", "120b", "--workers", "0", env={"OSSCTL_DEBUG": "1"}, cwd=ROOT)
    assert usage.code == 2


@pytest.mark.parametrize("args", [("unlock", "--profile", "Bad Name!"), ("releases", "-p", "../../etc"),
                                  ("status", "-p", ""), ("deploy", "-p", "x" * 70, "--dry-run")])
def test_a_profile_option_that_is_no_profile_name_is_refused_before_anything_runs(home, args):
    r = run_cli(*args, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert r.code == 2 and "is not a profile name" in r.err and "Traceback" not in r.err
    assert "Docker" not in r.err  # refused before any engine is asked


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "0"])
def test_deploy_timeout_must_be_positive_and_finite(home, value):
    r = run_cli("deploy", "-p", "cpu", "--timeout", value, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert r.code == 2 and "--timeout must be a positive, finite number of seconds" in r.err, r.err
