"""Issue 26, the exporter (items 1 and 18): an ``api_key_file`` with a comment or a second
key is read by the shared reader and the key never appears in what the exporter says;
``metrics serve`` keeps its threads bounded under half-open requests, runs no scrape for
them, and exits cleanly on SIGTERM in the middle of a scrape."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.net import free_port, wait_listening

ROOT = Path(__file__).resolve().parents[2]


# --- 1. the API key of a keyed llama-server -------------------------------------------

@pytest.mark.llama
def test_key_file_with_comment_and_second_key_is_read_as_deploy_reads_it(home, llama_server_factory, tmp_path,
                                                                        tiny_llama_dir):
    from ossctl.metrics.exporter import Exporter
    from ossctl.metrics.promclient import render_text
    from ossctl.settings import load_settings

    key = "sk-metrics-" + "7a1c0e9b3d5f4a28"
    second = "sk-next-" + "0b9e1d2c3a4f5e67"
    srv = llama_server_factory(api_key=key, parallel=1, extra=("--metrics",))
    keyfile = tmp_path / "api.key"
    keyfile.write_text(f"# llama-server key, rotated 2026-11\n\n{key}\n{second}\n")
    odd = tmp_path / "odd.key"
    odd_key = "sk-\u043a\u043b\u044e\u0447-" + "55aa66bb"  # not sendable in a header
    odd.write_text(odd_key + "\n")
    prof = home / "profiles"
    prof.mkdir()
    for name, kf in (("keyed", keyfile), ("odd", odd)):
        (prof / f"{name}.toml").write_text(f'model = "{tiny_llama_dir}"\nimage = "x:y"\nctx = 512\ngpus = "none"\n'
                                           f'api_key_file = "{kf}"\n')
    rels = [{"profile": "keyed", "release": "r0001", "endpoint": srv.url, "ctx": 512, "health": "ok"},
            # another spelling of the same server: fetches are shared per endpoint
            {"profile": "odd", "release": "r0001", "endpoint": srv.url.replace("127.0.0.1", "localhost"),
             "ctx": 512, "health": "ok"}]
    logs: list[str] = []
    exp = Exporter(load_settings({"OSSCTL_HOME": str(home), "OSSCTL_FAKE_NVML": "4x80gb"}),
                   releases=lambda: {"docker_host": "unix:///x.sock", "releases": rels},
                   fetch_timeout=2.0, log=logs.append, hostname="gpu-1")
    try:
        scrape = exp.scrape()
    finally:
        exp.close()
    d = scrape.to_dict()
    src = {(s["source"], s["target"]): s["error"] for s in d["sources"]}
    assert src[("llama_metrics", "keyed")] is None and src[("llama_slots", "keyed")] is None
    assert src[("llama_metrics", "odd")] == "the API key holds characters an HTTP header cannot carry (key not shown)"
    said = json.dumps(d) + render_text(scrape.families) + "\n".join(logs)
    for secret in (key, second, odd_key, "\u043a\u043b\u044e\u0447"):
        assert secret not in said
    assert any(ln.startswith("warning: llama_metrics (odd): the API key holds") for ln in logs)
    assert keyfile.read_text().startswith("# llama-server key")  # untouched


def test_exporter_and_deploy_share_the_one_api_key_reader():
    src = (ROOT / "ossctl" / "metrics" / "exporter.py").read_text()
    assert "read_api_key" in src and "read_text" not in src.split("def _resolve")[1].split("\ndef ")[0]


# --- 18. metrics serve under half-open requests and SIGTERM --------------------------------

def _serve(port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    fh = open(log, "ab")
    return subprocess.Popen([sys.executable, "-m", "ossctl", "metrics", "serve", "--listen", f"127.0.0.1:{port}",
                             "--fetch-timeout", "0.5"], env={**os.environ, **env}, stdout=fh,
                            stderr=subprocess.STDOUT, cwd=ROOT)



def _get(port: int, timeout: float = 30) -> tuple[int, str]:
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", "/metrics")
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def _threads(pid: int) -> int:
    return int(re.search(r"^Threads:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))


def _scrapes(text: str) -> int:
    """Scrapes run so far: each one fails the (dead) docker source once."""
    return int(float(re.search(r'^ossctl_exporter_source_errors_total\{source="docker"\} (\S+)$', text, re.M).group(1)))


def test_half_open_requests_keep_threads_bounded_and_run_no_scrape(home, tmp_path):
    from ossctl.metrics.promclient import MAX_CONNECTIONS

    port = free_port()
    log = tmp_path / "exporter.log"
    proc = _serve(port, {"OSSCTL_FAKE_NVML": "4x80gb", "DOCKER_HOST": f"unix://{tmp_path}/dead.sock"}, log)
    socks = []
    try:
        wait_listening(port, proc, log)
        code, text = _get(port)
        assert code == 200 and _scrapes(text) == 1
        base = _threads(proc.pid)
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /metrics HTTP/1.1\r\n")  # no Host, no blank line: the request never ends
            socks.append(s)
        time.sleep(1.0)
        held = _threads(proc.pid)
        assert held <= base + MAX_CONNECTIONS + 1, (base, held)
        for s in socks:
            s.close()
        socks.clear()
        time.sleep(1.0)
        code, text = _get(port)
        assert code == 200
        assert _scrapes(text) <= 3, _scrapes(text)  # not one per half-open request
        assert _threads(proc.pid) <= base + 2
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        proc.wait(30)
    out = log.read_text()
    assert proc.returncode == 0 and "Traceback" not in out and "Error" not in out, out


def test_sigterm_mid_scrape_finishes_the_answer_and_exits_cleanly(home, tmp_path):
    # an engine socket that accepts and never answers: each scrape waits out the status deadline
    mute = socket.socket(socket.AF_UNIX)
    mute.bind(str(tmp_path / "mute.sock"))
    mute.listen(64)
    port = free_port()
    log = tmp_path / "exporter.log"
    proc = _serve(port, {"OSSCTL_FAKE_NVML": "4x80gb", "DOCKER_HOST": f"unix://{tmp_path}/mute.sock"}, log)
    got: dict = {}
    try:
        wait_listening(port, proc, log)
        t = threading.Thread(target=lambda: got.setdefault("r", _get(port)), daemon=True)
        t.start()
        mute.settimeout(30)
        held, _ = mute.accept()  # the scrape is asking the engine, which never answers
        time.sleep(0.5)
        assert t.is_alive()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        t.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        mute.close()
    held.close()
    out = log.read_text()
    assert proc.returncode == 0, out
    assert "RuntimeError" not in out and "Traceback" not in out and "Exception" not in out, out
    code, text = got["r"]
    assert code == 200 and 'ossctl_exporter_source_up{source="docker"' in text  # the answer was not lost


_STOP_MID_SCRAPE = r'''
import sys, threading, time, urllib.request
from ossctl.metrics import promclient
from ossctl.metrics.families import Families

started = threading.Event()
finished = threading.Event()

def scrape():
    started.set()
    time.sleep(1.0)  # a source still answering when the stop comes
    t = threading.Thread(target=lambda: None)  # the next source starts its fetch
    t.start()
    t.join()
    finished.set()
    return list(Families())

stop, url = promclient.serve(sys.argv[1], scrape)
got = {}
client = threading.Thread(target=lambda: got.setdefault("s", urllib.request.urlopen(url, timeout=10).status), daemon=True)
client.start()
assert started.wait(30)
stop()  # what SIGTERM does; then the interpreter exits
print("scrape finished before stop returned:", finished.is_set())
client.join(10)  # the answer was written before stop() returned; the client still has to read it
print("answered", got.get("s"))
'''


def test_stopping_mid_scrape_waits_for_it_so_exit_raises_nothing(tmp_path):
    """A scrape still running when the process exits: before, ``stop()`` returned at once,
    the process exited under the scrape (its answer lost; a scrape that starts a fetch
    thread in the finalisation window gets "can't create new thread at interpreter
    shutdown", which socketserver printed with its traceback; that window is timing-bound
    and not reproduced here). Now ``stop()`` waits for the scrape and its answer."""
    p = subprocess.run([sys.executable, "-c", _STOP_MID_SCRAPE, f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.split("\n")[:2] == ["scrape finished before stop returned: True", "answered 200"], p.stdout
