"""Deploy overhead and rollback time on the tiny model, against a real Docker engine.

    OSSCTL_TEST_DOCKER_HOST=unix:///... OSSCTL_TEST_LLAMA_BIN=.../bin python3 bench/deploy_overhead.py [--runs 7]
        [--out bench/results/deploy_overhead.txt]

Baseline (measured in the same run, interleaved: one by hand, one deploy, ...): the
identical container (same spec, taken from ``ossctl deploy --dry-run``) started by hand
through the Docker API, timed until /health answers 200 (polled every 10 ms). Deploy
overhead = median wall time of ``ossctl deploy`` (a fresh process, byte code cached as in
an install: interpreter start, preflight, verification, lock, records, health gate,
/props, smoke completions) minus the median baseline; goal <= 0.6 s (issue 24). Rollback =
median wall time of ``ossctl rollback`` until the previous release is healthy and
recorded; target <= 3 s. The load average is recorded with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.interleave import load, python_env, report  # noqa: E402

GOAL_S = 0.6
CPU: dict[tuple[str | None, str], list[float]] = {}  # (tree, command) -> CPU s of each ossctl process


def ossctl(env: dict[str, str], *args: str, tree: str | None = None) -> tuple[float, dict]:
    """``ossctl --json ARGS`` in a fresh process: this checkout, or the one in ``tree``."""
    run = [sys.executable, "-m", "ossctl"] if tree is None else [
        sys.executable, "-c", f"import sys; sys.path.insert(0, {tree!r}); from ossctl.cli.app import main; sys.exit(main())"]
    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([*run, "--json", *args], env=env, capture_output=True, text=True, cwd=ROOT)
    dt = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.setdefault((tree, args[0]), []).append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    if p.returncode != 0:
        raise SystemExit(f"ossctl {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return dt, json.loads(p.stdout)


def wait_health(url: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.01)
    raise SystemExit(f"{url} not healthy after {timeout} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "deploy_overhead.txt"))
    ap.add_argument("--before", metavar="DIR", help="also deploy and roll back with the ossctl checkout in DIR "
                                                    "(e.g. the main branch) in the same rounds")
    a = ap.parse_args()
    docker_host = os.environ.get("OSSCTL_TEST_DOCKER_HOST") or os.environ.get("DOCKER_HOST")
    if not docker_host or not os.environ.get("OSSCTL_TEST_LLAMA_BIN"):
        raise SystemExit("set OSSCTL_TEST_DOCKER_HOST and OSSCTL_TEST_LLAMA_BIN (scripts/test.sh sets both)")
    import docker
    import tomli_w
    from docker.types import Mount

    from tests.plugins.docker_engine import TEST_IMAGE, build_rootfs_tar, make_model_dir
    from tests.support.net import free_port_pair

    client = docker.DockerClient(base_url=docker_host)
    server = Path(os.environ["OSSCTL_TEST_LLAMA_BIN"]) / "llama-server"
    client.api.import_image_from_data(build_rootfs_tar(server), repository=TEST_IMAGE.split(":")[0],
                                      tag=TEST_IMAGE.split(":")[1], changes=['ENTRYPOINT ["/app/llama-server"]'])
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        model = make_model_dir(Path(tmp) / "tiny")
        port = free_port_pair()
        name = f"bench{os.getpid()}"
        (home / "profiles").mkdir(parents=True)
        (home / "profiles" / f"{name}.toml").write_text(tomli_w.dumps(
            {"extends": "cpu", "image": TEST_IMAGE, "model": str(model), "ctx": 512, "port": port,
             "strategy": "recreate", "batch": 64, "ubatch": 64, "health_timeout": 60, "keep_releases": 2}))
        env = python_env({**os.environ, "OSSCTL_HOME": str(home), "DOCKER_HOST": docker_host})
        env.pop("OSSCTL_CONFIG", None)
        load_before = load()
        try:
            _, dry = ossctl(env, "deploy", "-p", name, "--dry-run")
            spec = dry["spec"]
            manual, deploys, rollbacks, ready, before = [], [], [], [], []
            ossctl(env, "deploy", "-p", name)  # warm-up: byte code, the image's --help cache
            for i in range(a.runs):
                cur = client.containers.list(filters={"label": [f"ossctl.profile={name}"]})
                for c in cur:  # the port is the profile's: the serving release steps aside
                    c.stop(timeout=10)
                t0 = time.perf_counter()
                c = client.containers.run(
                    spec["image"], spec["command"], name=f"{name}-manual-{i}", detach=True,
                    ports={k: tuple(v) for k, v in spec["ports"].items()},
                    mounts=[Mount(m["target"], m["source"], type="bind", read_only=True) for m in spec["mounts"]])
                wait_health(f"http://127.0.0.1:{port}")
                manual.append(time.perf_counter() - t0)
                c.remove(force=True)
                for c in cur:
                    c.start()
                wait_health(f"http://127.0.0.1:{port}")
                dt, rec = ossctl(env, "deploy", "-p", name)
                deploys.append(dt)
                ready.append(rec.get("ready_s") or 0.0)
                dt, _rec = ossctl(env, "rollback", "-p", name)  # back to the release the deploy replaced
                rollbacks.append(dt)
                if a.before:
                    before.append(ossctl(env, "deploy", "-p", name, tree=a.before)[0])
                    ossctl(env, "rollback", "-p", name, tree=a.before)
        finally:
            for c in client.containers.list(all=True, filters={"label": [f"ossctl.profile={name}"]}):
                c.remove(force=True)
            for c in client.containers.list(all=True, filters={"name": f"{name}-manual"}):
                c.remove(force=True)
    base = statistics.median(manual)
    dep = statistics.median(deploys)
    rb = statistics.median(rollbacks)
    over = dep - base
    lines = [
        f"runs per figure                 : {a.runs} (medians; manual and deploy interleaved)",
        f"machine                         : {load_before} (before), {load()} (after)",
        f"manual start -> /health 200     : {base:.3f} s   (baseline)",
        f"ossctl deploy (wall, new proc)  : {dep:.3f} s   ({dep / base:.1f}x baseline); its container ready after "
        f"{statistics.median(ready):.3f} s (ready_s)",
        f"deploy overhead                 : {over:.3f} s   goal <= {GOAL_S:.3f} s  -> "
        f"{'OK' if over <= GOAL_S else 'MISSED'} (ratio to goal {over / GOAL_S:.2f})",
        f"ossctl rollback -> healthy      : {rb:.3f} s   target <= 3.000 s  -> {'OK' if rb <= 3 else 'MISSED'} "
        f"(ratio to target {rb / 3.0:.2f}; {rb / base:.1f}x baseline)",
    ]
    lines.append(f"CPU of the deploy process      : {statistics.median(CPU[(None, 'deploy')]):.3f} s (user + sys, median)")
    if before:
        b = statistics.median(before)
        lines.append(f"deploy of {a.before:<21} : {b:.3f} s   overhead {b - base:.3f} s (same rounds); CPU "
                     f"{statistics.median(CPU[(a.before, 'deploy')]):.3f} s")
    report(lines, a.out)


if __name__ == "__main__":
    main()
