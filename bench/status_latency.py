"""``ossctl status`` / ``releases`` latency against an engine holding 50 kept releases of one
profile (records in the engine-side ledger, one container each), against a real Docker
engine.

    OSSCTL_TEST_DOCKER_HOST=unix:///... python3 bench/status_latency.py [--releases 50] [--runs 11]

Baseline (measured in the same run): ``docker ps -a --filter label=ossctl.profile=NAME``,
the docker CLI listing the same containers. Goal: ``ossctl status`` <= 0.3 s (wall, a
fresh process, interpreter start included). The containers are created, not started (the
status of a stopped release costs the same engine calls as a running one, minus /health).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stderr}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--releases", type=int, default=50)
    ap.add_argument("--runs", type=int, default=11)
    a = ap.parse_args()
    docker_host = os.environ.get("OSSCTL_TEST_DOCKER_HOST") or os.environ.get("DOCKER_HOST")
    if not docker_host:
        raise SystemExit("set OSSCTL_TEST_DOCKER_HOST (scripts/test.sh sets it)")
    from ossctl import labels as L
    from ossctl.serve.docker_runtime import DockerRuntime
    from ossctl.serve.releases import LEDGER_IMAGE, Ledger, Release, State, now_iso

    rt = DockerRuntime(docker_host)
    ledger = Ledger(rt)
    name = f"bench{os.getpid()}"
    rt.ensure_empty_image(LEDGER_IMAGE, {L.LEDGER: "1"})
    recs, cids = [], []
    try:
        for i in range(1, a.releases + 1):
            rid = f"r{i:04d}"
            rec = Release(id=rid, profile=name, state=State.OK, source=rid, created=now_iso(), port=18000,
                          endpoint="http://127.0.0.1:18000", image=LEDGER_IMAGE, ctx=512,
                          profile_resolved={"name": name, "model": "tiny", "health_timeout": 60},
                          spec={"name": f"ossctl-{name}-{rid}", "command": ["-m", "/models/tiny.gguf"]})
            cid = rt.create_marker(f"ossctl-{name}-{rid}", LEDGER_IMAGE, rec.labels())
            rec.container_id = cid
            cids.append(cid)
            recs.append(rec)
        ledger.save(*recs)
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "OSSCTL_HOME": home, "DOCKER_HOST": docker_host}
            base = [timed(["docker", "ps", "-a", "--filter", f"label=ossctl.profile={name}"], env)
                    for _ in range(a.runs)]
            st = [timed([sys.executable, "-m", "ossctl", "--json", "status", "-p", name], env) for _ in range(a.runs)]
            rel = [timed([sys.executable, "-m", "ossctl", "--json", "releases", "-p", name], env)
                   for _ in range(a.runs)]
    finally:
        for cid in cids:
            rt.remove(cid)
    b, s, r = statistics.median(base), statistics.median(st), statistics.median(rel)
    print(f"kept releases                    : {a.releases} (runs per figure: {a.runs}, medians)")
    print(f"docker ps -a --filter (baseline) : {b:.3f} s")
    print(f"ossctl status -p NAME            : {s:.3f} s  ({s / b:.2f}x baseline)  goal <= 0.300 s -> "
          f"{'OK' if s <= 0.3 else 'MISSED'}")
    print(f"ossctl releases -p NAME          : {r:.3f} s  ({r / b:.2f}x baseline)")


if __name__ == "__main__":
    main()
