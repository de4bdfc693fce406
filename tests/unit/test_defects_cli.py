"""Issue 26, the CLI frame (items 16, 17 and the notes): ``--json`` errors on stdout, a
private key pasted into a usage error, every command named in a hint (backticked or not),
the registry's confirmation line, and the bench probe's IPv6 ``Host``."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import socket
import threading
from pathlib import Path

import pytest

from ossctl.cli.app import JSON_ERROR_KEYS
from tests.support.cli import run_cli, run_proc
from tests.unit.test_hardening import _tokens, _walk

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


# --- 16. every command a hint names exists, backticked or not --------------------------

def _string(node) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):  # placeholders become a word
        return "".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values)
    if isinstance(node, ast.BinOp):
        parts = [_string(node.left), _string(node.right)]
        return "".join(p for p in parts if p) or None
    if isinstance(node, ast.IfExp):
        return f"{_string(node.body) or ''} ; {_string(node.orelse) or ''}"
    return None


def _hint_texts() -> list[tuple[str, str]]:
    """Every hint written in the source: ``hint=`` arguments and variables named ``*hint*``."""
    out = []
    for f in sorted((ROOT / "ossctl").rglob("*.py")):
        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            values = []
            if isinstance(n, ast.Call):
                values += [k.value for k in n.keywords if k.arg == "hint"]
            elif isinstance(n, ast.Assign):
                if any(isinstance(t, ast.Name) and "hint" in t.id.lower() for t in n.targets):
                    values.append(n.value)
            for v in values:
                text = _string(v)
                if text:
                    out.append((str(f.relative_to(ROOT)), text))
    return out


# prose that names the tool, not a command ("ossctl is older than ...")
_PROSE = {"is", "keeps", "start", "itself", "will", "can", "does", "writes", "X"}


def _bare_commands(text: str) -> list[str]:
    """``ossctl ...`` spans written without backticks, up to the end of the clause."""
    plain = re.sub(r"`[^`]*`", " ", text)
    return [m.group(0) for m in re.finditer(r"\bossctl(?: [^;,.()\n]*)?", plain)
            if len(m.group(0).split()) > 1 and m.group(0).split()[1] not in _PROSE]


def test_every_command_named_in_a_hint_exists_backticked_or_not():
    import typer.main

    from ossctl.cli.app import app

    root = typer.main.get_command(app)
    hints = _hint_texts()
    assert len(hints) > 150  # the scan finds them
    bad = []
    for where, text in hints:
        spans = re.findall(r"`(ossctl(?: [^`\n]*)?)`", text) + _bare_commands(text)
        for span in spans:
            problem = _walk(root, _tokens(span.split(" | ")[0])[1:])
            if problem:
                bad.append(f"{where}: {span!r}: {problem}")
    assert bad == []


def test_the_bare_scan_catches_the_old_bench_hint():
    import typer.main

    from ossctl.cli.app import app

    root = typer.main.get_command(app)
    old = "check the URL and that the server is running (ossctl serve status)"
    (span,) = _bare_commands(old)
    assert _walk(root, _tokens(span)[1:]) == "ossctl has no command 'serve'"


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
