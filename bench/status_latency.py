"""``ossctl status`` / ``releases`` latency against an engine holding 50 kept releases of one
profile (records in the engine-side ledger, one container each), against a real Docker
engine.

    OSSCTL_TEST_DOCKER_HOST=unix:///... python3 bench/status_latency.py [--releases 50] [--runs 11]
        [--out bench/results/status_latency.txt]

Baselines, measured in the same run, interleaved with ossctl (bench/interleave.py):
``docker ps -a --filter label=ossctl.profile=NAME`` (the docker CLI listing the same
containers) and ``python -c "import typer"`` (the interpreter and the CLI framework: the
floor of any command of a Typer CLI on this machine). Goal: ``ossctl status`` <= 0.25 s
(wall, a fresh process, interpreter start included, byte code cached as in an install).

The records are complete releases (what a deploy writes: a rollback could go to each), so
status finds the current one and inspects its container. The containers are created, not
started (the status of a stopped release costs the same engine calls as a running one,
minus /health). The bench's containers are removed afterwards; its ledger records stay
(the ledger image has no ``rm``), under a profile name of their own.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.interleave import interleaved, load, python_env, report  # noqa: E402

GOAL_S = 0.25


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--releases", type=int, default=50)
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "status_latency.txt"))
    ap.add_argument("--before", metavar="DIR", help="also time `status` of the ossctl checkout in DIR (e.g. the "
                                                    "main branch), interleaved with the rest")
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
    load_before = load()
    try:
        for i in range(1, a.releases + 1):
            rid = f"r{i:04d}"
            cname = f"ossctl-{name}-{rid}"
            rec = Release(id=rid, profile=name, state=State.OK, source=rid, created=now_iso(), port=18000,
                          endpoint="http://127.0.0.1:18000", image=LEDGER_IMAGE, ctx=512, container_name=cname,
                          profile_resolved={"name": name, "model": "tiny", "health_timeout": 60, "host": "127.0.0.1",
                                            "ctx": 512, "parallel": 1},
                          spec={"name": cname, "image": LEDGER_IMAGE, "command": ["-m", "/models/tiny.gguf"],
                                "labels": {}, "restart_policy": {"Name": "unless-stopped"}})
            cid = rt.create_marker(cname, LEDGER_IMAGE, rec.labels())
            rec.container_id = cid
            cids.append(cid)
            recs.append(rec)
        ledger.save(*recs)
        with tempfile.TemporaryDirectory() as home:
            env = python_env({**os.environ, "OSSCTL_HOME": home, "DOCKER_HOST": docker_host})
            py = [sys.executable]
            cmds = {
                "docker ps": ["docker", "ps", "-a", "--filter", f"label=ossctl.profile={name}"],
                "import typer": [*py, "-c", "import typer"],
                "status": [*py, "-m", "ossctl", "--json", "status", "-p", name],
                "releases": [*py, "-m", "ossctl", "--json", "releases", "-p", name],
            }
            if a.before:
                cmds["status (before)"] = [*py, "-c", f"import sys; sys.path.insert(0, {a.before!r}); "
                                           "from ossctl.cli.app import main; sys.exit(main())",
                                           "--json", "status", "-p", name]
            res = interleaved(cmds, a.runs, env, cwd=ROOT)
            # the bench checks what it measures: status found the current release
            import json
            import subprocess

            out = json.loads(subprocess.run([*py, "-m", "ossctl", "--json", "status", "-p", name], env=env,
                                            capture_output=True, text=True, cwd=ROOT, check=True).stdout)
            assert [r["release"] for r in out["releases"]] == [f"r{a.releases:04d}"], out
    finally:
        for cid in cids:
            rt.remove(cid)
    b, t, s, r = (res[k]["wall"] for k in ("docker ps", "import typer", "status", "releases"))
    lines = [
        f"kept releases                    : {a.releases} (runs per figure: {a.runs}, interleaved, medians)",
        f"machine                          : {load_before} (before); {load()} (after)",
        f"docker ps -a --filter (baseline) : {b:.3f} s",
        f'python -c "import typer" (floor) : {t:.3f} s',
        f"ossctl status -p NAME            : {s:.3f} s  ({s / b:.2f}x docker ps, {s / t:.2f}x import typer, "
        f"+{(s - t) * 1000:.0f} ms over it; CPU {res['status']['cpu']:.3f} s)  goal <= {GOAL_S:.3f} s -> "
        f"{'OK' if s <= GOAL_S else 'MISSED'}",
        f"ossctl releases -p NAME          : {r:.3f} s  ({r / b:.2f}x docker ps, {r / t:.2f}x import typer; "
        f"CPU {res['releases']['cpu']:.3f} s)",
    ]
    if a.before:
        o = res["status (before)"]["wall"]
        lines.append(f"ossctl status of {a.before:<15}: {o:.3f} s  ({o / t:.2f}x import typer; "
                     f"CPU {res['status (before)']['cpu']:.3f} s): this tree takes {s / o:.2f}x")
    report(lines, a.out)


if __name__ == "__main__":
    main()
