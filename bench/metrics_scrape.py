#!/usr/bin/env python3
"""Scrape cost of `ossctl metrics serve`: CPU time per scrape with 8 GPUs (fake NVML) and
4 releases, against `vram watch --once --json` for the same GPUs and releases, measured
in the same run.

Set-up: a fake NVML scenario with 8 x 80 GB GPUs, 4 releases on 2 GPUs each (plus a
stray process), 4 profiles planned against the tiny test model, a last bench result per
profile, and 4 llama-servers answering /metrics and /slots: real CPU llama-server
processes when a build is found ($OSSCTL_TEST_LLAMA_BIN or --llama-bin), else small
local HTTP servers replaying a llama-server exposition. The release list is handed to
the exporter directly. With --docker-host and --image (a llama-server image on that
engine, e.g. ossctl-test/llama-server:cpu-b0 that the docker tests build), the bench
also deploys 4 real releases of the tiny model with `ossctl deploy`, times the full
scrape with the Docker source (`ossctl.ops.service.status`: one engine connection,
container look-ups and a /health probe per release), and removes them afterwards.

Reported (median and p95 over --iterations):
- exporter: CPU ms per scrape (all threads: collect + text format), wall ms;
- baseline: CPU ms of what `vram watch --once --json` does per sample (NVML snapshot with
  release labels + the JSON line), in process;
- start-up included: CPU s of `python -m ossctl metrics dump` vs `python -m ossctl --json
  vram watch --once` as child processes;
- share of one core at a 15 s scrape interval; goals: <= 20 ms per scrape, < 1 %.

usage: python3 bench/metrics_scrape.py [--iterations 200] [--llama-bin DIR]
                                      [--docker-host URL --image IMAGE] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GiB = 1024 ** 3
N_GPUS, N_RELEASES = 8, 4
INTERVAL_S = 15.0
GOAL_MS = 20.0

# what a CPU llama-server build answers on /metrics (replayed when no build is found)
CANNED_METRICS = "".join(
    f"# HELP llamacpp:{n} {h}\n# TYPE llamacpp:{n} {t}\nllamacpp:{n} {v}\n" for n, h, t, v in (
        ("prompt_tokens_total", "Number of prompt tokens processed.", "counter", 1234),
        ("prompt_seconds_total", "Prompt process time", "counter", 1.5),
        ("tokens_predicted_total", "Number of generation tokens processed.", "counter", 5678),
        ("tokens_predicted_seconds_total", "Predict process time", "counter", 12.5),
        ("n_decode_total", "Total number of llama_decode() calls", "counter", 5700),
        ("n_tokens_max", "Largest observed n_tokens.", "counter", 512),
        ("n_busy_slots_per_decode", "Average number of busy slots per llama_decode() call", "counter", 1),
        ("prompt_tokens_seconds", "Average prompt throughput in tokens/s.", "gauge", 822.7),
        ("predicted_tokens_seconds", "Average generation throughput in tokens/s.", "gauge", 454.2),
        ("requests_processing", "Number of requests processing.", "gauge", 0),
        ("requests_deferred", "Number of requests deferred.", "gauge", 0)))
CANNED_SLOTS = json.dumps([{"id": i, "n_ctx": 1024, "is_processing": i == 0} for i in range(4)])


class _Canned(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server API
        body = {"/metrics": CANNED_METRICS, "/slots": CANNED_SLOTS}.get(self.path)
        self.send_response(200 if body else 404)
        data = (body or "").encode()
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_a):
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_servers(model: Path, llama_bin: str | None) -> tuple[list[str], list, str]:
    """Base URLs of N_RELEASES servers, handles to stop, and what they are."""
    urls, handles = [], []
    server = Path(llama_bin or "") / "llama-server"
    if llama_bin and server.is_file():
        for _ in range(N_RELEASES):
            port = _free_port()
            p = subprocess.Popen([str(server), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-c", "1024",
                                  "-np", "4", "-t", "1", "-ngl", "0", "--no-warmup", "--metrics"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            handles.append(p)
            urls.append(f"http://127.0.0.1:{port}")
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for u in urls:
            for _ in range(600):
                try:
                    with opener.open(u + "/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.1)
            opener.open(u + "/v1/chat/completions", data=json.dumps(
                {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}).encode(), timeout=60).read()
        return urls, handles, f"{N_RELEASES} real llama-server processes ({server})"
    # in a child process: their CPU time must not count as the exporter's
    import multiprocessing

    ports = [_free_port() for _ in range(N_RELEASES)]
    child = multiprocessing.get_context("fork").Process(target=_serve_canned, args=(ports,), daemon=True)
    child.start()
    for port in ports:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        urls.append(f"http://127.0.0.1:{port}")
    handles.append(child)
    return urls, handles, f"{N_RELEASES} local HTTP servers replaying a llama-server exposition (no build found)"


def _serve_canned(ports: list[int]) -> None:
    for port in ports:
        httpd = ThreadingHTTPServer(("127.0.0.1", port), _Canned)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    threading.Event().wait()


def setup(home: Path, urls: list[str], model_dir: Path) -> tuple[Path, dict]:
    """Scenario file, profiles, bench results; returns (scenario path, status dict)."""
    from ossctl.loadtest import report as rep

    gpus, proc, labels, releases = [], {}, {}, []
    for g in range(N_GPUS):
        gpus.append({"name": "NVIDIA H100 80GB HBM3", "uuid": f"GPU-{g:08d}", "total": 80 * GiB, "used": 0,
                     "util": [40, 10], "temp": 40 + g, "power": 300.0 + g, "power_limit": 700.0, "processes": []})
    (home / "profiles").mkdir(parents=True, exist_ok=True)
    for i in range(N_RELEASES):
        cid = f"{i + 1:02x}" * 32
        pid = 4000 + i
        proc[str(pid)] = {"comm": "llama-server", "cgroup": f"0::/system.slice/docker-{cid}.scope"}
        name = f"p{i}"
        labels[cid] = {"ossctl.release": "r0001", "ossctl.profile": name}
        for g in (2 * i, 2 * i + 1):
            gpus[g]["processes"].append([pid, 30 * GiB, "compute"])
            gpus[g]["used"] += 30 * GiB + 512 * 1024 ** 2
        (home / "profiles" / f"{name}.toml").write_text(
            f'model = "{model_dir}"\nimage = "x:y"\nctx = 1024\nparallel = 4\ngpus = [{2 * i}, {2 * i + 1}]\n')
        releases.append({"profile": name, "release": "r0001", "model": str(model_dir), "model_id": "0x" + "ab" * 32,
                         "composite_sha256": "cd" * 32, "ctx": 1024, "endpoint": urls[i], "container_id": cid,
                         "health": "ok"})
        rep.store_last(home / "cache", {"profile": name, "release": "r0001", "time": time.time(), "stream": True,
                                        "sla": {"spec": "p95<2s", "ok": True},
                                        "levels": [{"users": u, "requests": 50, "error_pct": 0.0, "output_tps": 40.0 / u,
                                                    "latency_p50_s": 0.1 * u, "latency_p95_s": 0.2 * u, "sla_ok": True}
                                                   for u in (1, 5, 10)]})
    gpus[0]["processes"].append([5151, GiB, "compute"])
    proc["5151"] = {"comm": "python3", "cgroup": "0::/user.slice/session-2.scope"}
    sc = home / "nvml-8x80gb.json"
    sc.write_text(json.dumps({"driver": "550.54.15", "time": 1767225600.0, "gpus": gpus, "proc": proc,
                              "labels": labels}))
    return sc, {"docker_host": "unix:///var/run/docker.sock", "releases": releases}


def cpu_ms(fn, n: int) -> tuple[list[float], list[float]]:
    cpu, wall = [], []
    for _ in range(n):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append((time.process_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    return cpu, wall


def stats(xs: list[float]) -> dict:
    s = sorted(xs)
    return {"median_ms": round(statistics.median(s), 3), "p95_ms": round(s[int(0.95 * (len(s) - 1))], 3)}


def bench_with_engine(tmp: Path, env: dict[str, str], docker_host: str, image: str, n: int) -> dict:
    """Deploy N_RELEASES releases with `ossctl deploy`, time full scrapes (Docker source
    included) and service.status alone, then remove the containers this run created."""
    import uuid

    import docker

    from ossctl.metrics.exporter import Exporter
    from ossctl.metrics.promclient import render_text
    from ossctl.ops import service
    from ossctl.settings import load_settings
    from tests.plugins.docker_engine import make_model_dir
    from tests.support.net import free_port_pair

    home = tmp / "engine-home"
    (home / "profiles").mkdir(parents=True)
    model = make_model_dir(tmp / "engine-model")
    tag = "bm" + uuid.uuid4().hex[:6]
    names = [f"{tag}{i}" for i in range(N_RELEASES)]
    denv = {**env, "DOCKER_HOST": docker_host, "OSSCTL_HOME": str(home)}
    client = docker.DockerClient(base_url=docker_host)
    try:
        for name in names:
            (home / "profiles" / f"{name}.toml").write_text(
                f'extends = "cpu"\nimage = "{image}"\nmodel = "{model}"\nctx = 1024\nparallel = 4\n'
                f'port = {free_port_pair()}\nhealth_timeout = 120\nbatch = 64\nubatch = 64\n')
            subprocess.run([sys.executable, "-m", "ossctl", "deploy", "-p", name], env=denv, check=True, cwd=tmp,
                           stdout=subprocess.DEVNULL)
        settings = load_settings(denv)
        exp = Exporter(settings)
        first = exp.scrape()
        bad = [x for x in first.sources if x["error"] and x["source"] != "nvml"]
        if bad:
            print(f"warning: sources failing with the engine: {bad}", file=sys.stderr)
        scrape = stats(cpu_ms(lambda: render_text(exp.scrape().families), n)[0])
        exp.close()
        status = stats(cpu_ms(lambda: service.status(settings), n)[0])
        return {"scrape": scrape, "status": status, "releases": N_RELEASES}
    finally:
        for name in names:
            for c in client.containers.list(all=True, filters={"label": [f"ossctl.profile={name}"]}):
                c.remove(force=True)
        client.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--llama-bin", default=os.environ.get("OSSCTL_TEST_LLAMA_BIN"))
    ap.add_argument("--docker-host", help="also deploy 4 releases on this engine and time the full scrape")
    ap.add_argument("--image", help="llama-server image present on --docker-host")
    ap.add_argument("--json-out")
    a = ap.parse_args()

    from bench.vram_snapshot import child_cpu
    from ossctl.gpu import nvml
    from ossctl.gpu import watch as w
    from ossctl.metrics.exporter import Exporter
    from ossctl.metrics.promclient import render_text
    from ossctl.settings import load_settings
    from tests.support.ggufgen import write_model

    tmp = Path(tempfile.mkdtemp(prefix="ossctl-bench-metrics-"))
    home = tmp / "home"
    model = write_model(tmp / "model", "tiny", parts=3)
    urls, handles, servers = start_servers(model[0], a.llama_bin)
    try:
        sc, status = setup(home, urls, model[0].parent)
        env = {**os.environ, "OSSCTL_HOME": str(home), "OSSCTL_FAKE_NVML": str(sc),
               "PYTHONPATH": str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}
        settings = load_settings(env)

        exp = Exporter(settings, releases=lambda: status, fetch_timeout=2.0)
        first = exp.scrape()
        bad = [s for s in first.sources if s["error"]]
        if bad:
            print(f"warning: sources failing in the bench set-up: {bad}", file=sys.stderr)
        text = render_text(first.families)
        n_series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        exp_cpu, exp_wall = cpu_ms(lambda: render_text(exp.scrape().families), a.iterations)
        exp.close()

        be = nvml.open_backend(env)
        be.init()
        labels = be.container_labels
        state = w.WatchState()

        def vram_sample() -> None:
            snap = nvml.snapshot(be, [], container_labels=labels)
            alerts, _ = state.update(snap)
            json.dumps(w.record(snap, alerts, state), separators=(",", ":"))

        vram_sample()
        base_cpu, base_wall = cpu_ms(vram_sample, a.iterations)
        be.shutdown()

        dump_cpu, _ = child_cpu(["metrics", "dump"], {**env, "DOCKER_HOST": f"unix://{tmp}/no-engine.sock"})
        watch_cpu, _ = child_cpu(["--json", "vram", "watch", "--once"], env)
        status_cpu = None
        if a.docker_host and a.image:
            status_cpu = bench_with_engine(tmp, env, a.docker_host, a.image, max(10, a.iterations // 5))
    finally:
        for h in handles:
            h.terminate()
            h.join(10) if hasattr(h, "join") else h.wait(10)

    e, b = stats(exp_cpu), stats(base_cpu)
    share = e["median_ms"] / (INTERVAL_S * 1000) * 100
    res = {"servers": servers, "gpus": N_GPUS, "releases": N_RELEASES, "series": n_series, "iterations": a.iterations,
           "exporter_cpu": e, "exporter_wall": stats(exp_wall), "vram_watch_sample_cpu": b,
           "vram_watch_sample_wall": stats(base_wall),
           "ratio_vs_vram_watch": round(e["median_ms"] / b["median_ms"], 2) if b["median_ms"] else None,
           "core_share_at_15s_pct": round(share, 4), "child_metrics_dump_cpu_s": round(dump_cpu, 3),
           "child_vram_watch_once_cpu_s": round(watch_cpu, 3), "with_engine": status_cpu}
    print(f"set-up: {N_GPUS} fake GPUs, {N_RELEASES} releases, {servers}; {n_series} series per scrape")
    print(f"exporter scrape: CPU median {e['median_ms']:.2f} ms, p95 {e['p95_ms']:.2f} ms "
          f"(wall median {res['exporter_wall']['median_ms']:.2f} ms); goal <= {GOAL_MS:g} ms: "
          f"{'OK' if e['median_ms'] <= GOAL_MS else 'OVER'}")
    print(f"baseline vram watch --once --json sample: CPU median {b['median_ms']:.2f} ms, p95 {b['p95_ms']:.2f} ms; "
          f"exporter = {res['ratio_vs_vram_watch']}x the baseline")
    print(f"share of one core at a {INTERVAL_S:g} s scrape interval: {share:.3f} % (goal < 1 %: "
          f"{'OK' if share < 1 else 'OVER'})")
    print(f"with start-up, as child processes: metrics dump {dump_cpu:.2f} s CPU, "
          f"--json vram watch --once {watch_cpu:.2f} s CPU")
    if status_cpu:
        print(f"with {N_RELEASES} real releases on {a.docker_host}: full scrape CPU median "
              f"{status_cpu['scrape']['median_ms']:.2f} ms, p95 {status_cpu['scrape']['p95_ms']:.2f} ms, "
              f"of which service.status {status_cpu['status']['median_ms']:.2f} ms; "
              f"{status_cpu['scrape']['median_ms'] / (INTERVAL_S * 10):.3f} % of a core at {INTERVAL_S:g} s")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
