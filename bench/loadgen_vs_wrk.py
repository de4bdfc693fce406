"""Is `ossctl bench` the bottleneck? Compare its request rate with wrk's against the same
trivial server (a raw asyncio server in its own process that answers every POST with a
canned chat completion), on this machine, in the same run.

    python3 bench/loadgen_vs_wrk.py [--seconds 10] [--connections 10]

Prints wrk's requests/s (best of -t1 / -t2), ossctl bench's requests/s (with uvloop when
installed, and with the standard asyncio loop), the ratio (the target is >= 0.5) and
ossctl bench's own CPU time per request; medians over alternating rounds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_COMPLETION = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "canned",
    "choices": [{"index": 0, "finish_reason": "length",
                 "message": {"role": "assistant", "content": "Canberra was chosen as a compromise."}}],
    "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28},
}).encode()
_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
             + str(len(_COMPLETION)).encode() + b"\r\n\r\n" + _COMPLETION)
_MODELS = json.dumps({"object": "list", "data": [{"id": "canned", "object": "model"}]}).encode()
_MODELS_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(_MODELS)).encode() + b"\r\n\r\n" + _MODELS)


def serve(port: int) -> None:
    """The canned server: parses just enough HTTP/1.1 (request line, Content-Length),
    answers instantly, keeps connections alive."""
    import asyncio

    class Proto(asyncio.Protocol):
        def connection_made(self, transport):
            self.t = transport
            self.buf = b""

        def data_received(self, data):
            buf = self.buf + data
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = buf[:end]
                i = head.find(b"ontent-Length:")
                if i < 0:
                    i = head.find(b"ontent-length:")
                n = int(head[i + 14:head.find(b"\r\n", i)]) if i >= 0 else 0
                if len(buf) < end + 4 + n:
                    break
                self.t.write(_MODELS_RESPONSE if head.startswith(b"GET") else _RESPONSE)
                buf = buf[end + 4 + n:]
            self.buf = buf

    async def main():
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(Proto, "127.0.0.1", port, backlog=1024)
        await srv.serve_forever()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("canned server did not start")


def run_wrk(url: str, threads: int, conns: int, seconds: int, lua: Path) -> float:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "-s", str(lua), url],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"Requests/sec:\s*([0-9.]+)", out)
    if not m:
        raise SystemExit("could not read wrk's output:\n" + out)
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errs:
        raise SystemExit("wrk saw non-2xx responses:\n" + out)
    return float(m.group(1))


def run_ossctl(url: str, conns: int, seconds: int, stream: bool, loop: str = "") -> dict:
    env = dict(os.environ, OSSCTL_HOME=tempfile.mkdtemp(prefix="ossctl-bench-home-"), OSSCTL_BENCH_LOOP=loop)
    env.pop("OSSCTL_API_KEY", None)
    p = subprocess.run([sys.executable, "-m", "ossctl", "--json", "bench", "--url", url, "--users", str(conns),
                        "--duration", f"{seconds}s", "--max-tokens", "8",
                        "--stream" if stream else "--no-stream"],
                       capture_output=True, text=True, cwd=ROOT, env=env)
    if p.returncode != 0:
        raise SystemExit(f"ossctl bench failed ({p.returncode}):\n{p.stderr}")
    lv = json.loads(p.stdout)["levels"][0]
    if lv["errors"]:
        raise SystemExit(f"ossctl bench saw errors: {lv['errors_by_kind']}")
    return lv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    port = free_port()
    proc = mp.get_context("spawn").Process(target=serve, args=(port,), daemon=True)
    proc.start()
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}"
        body = json.dumps({"model": "canned", "messages": [{"role": "user", "content": "What is the capital of "
                           "Australia, and why was it chosen over Sydney and Melbourne?"}], "max_tokens": 8,
                           "stream": False})
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
            fh.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                     f"wrk.body = {json.dumps(body)}\n")
            lua = Path(fh.name)
        # Alternate the tools over several rounds so that load from anything else on the
        # machine hits both alike; compare medians.
        wrk_rates, ours, ours_std = [], [], []
        for _ in range(a.rounds):
            wrk_rates.append(max(run_wrk(url + "/v1/chat/completions", t, a.connections, a.seconds, lua)
                                 for t in (1, 2)))
            ours.append(run_ossctl(url, a.connections, a.seconds, stream=False))
            ours_std.append(run_ossctl(url, a.connections, a.seconds, stream=False, loop="asyncio"))
        best = statistics.median(wrk_rates)
        rps = statistics.median(lv["requests"] / lv["elapsed_s"] for lv in ours)
        cpu = statistics.median(lv["client_cpu_ms_per_request"] for lv in ours)
        rps_std = statistics.median(lv["requests"] / lv["elapsed_s"] for lv in ours_std)
        cpu_std = statistics.median(lv["client_cpu_ms_per_request"] for lv in ours_std)
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio (uvloop not installed)"
        print(f"machine: {os.cpu_count()} cores; {a.connections} connections; {a.rounds} rounds of {a.seconds}s")
        print(f"wrk (best of -t1/-t2), median: {best:.0f} req/s   rounds: {', '.join(f'{r:.0f}' for r in wrk_rates)}")
        print(f"ossctl bench --no-stream [{loop}]: {rps:.0f} req/s, own CPU {cpu * 1000:.1f} us/request")
        print(f"ossctl bench --no-stream [asyncio loop]: {rps_std:.0f} req/s, own CPU {cpu_std * 1000:.1f} us/request")
        print(f"ratio ossctl/wrk: {rps / best:.2f} (asyncio loop: {rps_std / best:.2f}); "
              f"target >= 0.50: {'PASS' if rps / best >= 0.5 else 'FAIL'}")
        os.unlink(lua)
    finally:
        proc.terminate()
        proc.join(5)


if __name__ == "__main__":
    main()
