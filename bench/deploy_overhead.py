"""Deploy overhead and rollback time on the tiny model, against a real Docker engine.

    OSSCTL_TEST_DOCKER_HOST=unix:///... OSSCTL_TEST_LLAMA_BIN=.../bin python3 bench/deploy_overhead.py [--runs 5]

Baseline (measured in the same run): the identical container (same spec, taken from
``ossctl deploy --dry-run``) started by hand through the Docker API, timed until /health
answers 200. Deploy overhead = median wall time of ``ossctl deploy`` (a fresh process:
interpreter start, preflight, verification, health gate, /props, smoke completions,
record) minus that baseline; target <= 1 s. Rollback = median wall time of ``ossctl
rollback`` until the previous release is healthy and recorded; target <= 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
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


def ossctl(env: dict[str, str], *args: str) -> tuple[float, dict]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "ossctl", "--json", *args], env=env, capture_output=True, text=True,
                       cwd=ROOT)
    dt = time.perf_counter() - t0
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
    ap.add_argument("--runs", type=int, default=5)
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
        env = {**os.environ, "OSSCTL_HOME": str(home), "DOCKER_HOST": docker_host}
        env.pop("OSSCTL_CONFIG", None)
        try:
            _, dry = ossctl(env, "deploy", "-p", name, "--dry-run")
            spec = dry["spec"]
            manual = []
            for i in range(a.runs):
                t0 = time.perf_counter()
                c = client.containers.run(
                    spec["image"], spec["command"], name=f"{name}-manual-{i}", detach=True,
                    ports={k: tuple(v) for k, v in spec["ports"].items()},
                    mounts=[Mount(m["target"], m["source"], type="bind", read_only=True) for m in spec["mounts"]])
                wait_health(f"http://127.0.0.1:{port}")
                manual.append(time.perf_counter() - t0)
                c.remove(force=True)
            deploys, rollbacks = [], []
            for _ in range(a.runs):
                dt, _rec = ossctl(env, "deploy", "-p", name)
                deploys.append(dt)
            for _ in range(a.runs):
                dt, _rec = ossctl(env, "rollback", "-p", name)
                rollbacks.append(dt)
        finally:
            for c in client.containers.list(all=True, filters={"label": [f"ossctl.profile={name}"]}):
                c.remove(force=True)
            for c in client.containers.list(all=True, filters={"name": f"{name}-manual"}):
                c.remove(force=True)
    base = statistics.median(manual)
    dep = statistics.median(deploys)
    rb = statistics.median(rollbacks)
    over = dep - base
    print(f"runs per figure                 : {a.runs} (medians)")
    print(f"manual start -> /health 200     : {base:.3f} s   (baseline)")
    print(f"ossctl deploy (wall, new proc)  : {dep:.3f} s   ({dep / base:.1f}x baseline)")
    print(f"deploy overhead                 : {over:.3f} s   target <= 1.000 s  -> {'OK' if over <= 1 else 'MISSED'} "
          f"(ratio to target {over / 1.0:.2f})")
    print(f"ossctl rollback -> healthy      : {rb:.3f} s   target <= 3.000 s  -> {'OK' if rb <= 3 else 'MISSED'} "
          f"(ratio to target {rb / 3.0:.2f}; {rb / base:.1f}x baseline)")


if __name__ == "__main__":
    main()
