"""Front-door overhead: the same load through the front door (HAProxy or Caddy, `--kind`, in a container,
ossctl's configuration) and straight to the llama-server behind it, in one run.

    OSSCTL_TEST_DOCKER_HOST=unix:///... OSSCTL_TEST_LLAMA_BIN=.../bin python3 bench/frontdoor_overhead.py \\
        [--rounds 5] [--seconds 5] [--users 1] [--max-tokens 8] [--no-stream]

One llama-server container (tiny model, CPU) publishing a port on 127.0.0.1, and two
front doors (containers on the host network, ossctl's configuration) routing to it:
one through that published port (docker-proxy included, as an upstream on another host
is reached), one to the container's own bridge address (what a front door on the same
engine can use). Each round runs ``ossctl bench``'s load generator (closed loop,
streaming) for ``--seconds`` per concurrency level on each path, in an order that rotates
between rounds so drift hits all alike. Prints, per level, the median over rounds of p50
latency and requests/min per path, the p50 difference to direct (goal: <= +0.5 ms) and the
throughput ratio to direct (goal: >= 0.97), with the 1-minute load average seen. The tiny
model answers in milliseconds, so the proxy's share is as large as it gets; with a real
model it shrinks. ``--no-stream`` asks for whole answers: llama-server keeps those
connections alive (it closes one after every streamed answer), so the front door's kept-alive
upstream connections show there. ``--before`` (HAProxy) adds two more front doors with
the configuration before issue 24 (a fresh upstream connection per request: ``option
http-server-close``), on both paths, so the change is measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--users", default="1")
    ap.add_argument("--no-stream", action="store_true", help="whole answers instead of streamed ones")
    ap.add_argument("--before", action="store_true", help="haproxy: also the configuration without upstream keep-alive")
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--kind", default="haproxy", choices=("haproxy", "caddy"), help="the front door's proxy")
    a = ap.parse_args()
    docker_host = os.environ.get("OSSCTL_TEST_DOCKER_HOST") or os.environ.get("DOCKER_HOST")
    if not docker_host or not os.environ.get("OSSCTL_TEST_LLAMA_BIN"):
        raise SystemExit("set OSSCTL_TEST_DOCKER_HOST and OSSCTL_TEST_LLAMA_BIN (scripts/test.sh sets both)")
    import docker

    from ossctl.loadtest import engine
    from ossctl.loadtest.prompts import builtin_prompts
    from ossctl.serve.docker_runtime import DockerRuntime
    from ossctl.fleet.frontdoor import open_frontdoor
    from ossctl.fleet.frontdoor.base import FrontDoorSpec, Upstream
    from tests.plugins.docker_engine import llama_image_into, llama_server_binary, make_model_dir
    from tests.support.net import free_port_pair
    from tests.plugins.frontdoor import frontdoor_image_into, start_llama, wait_healthy

    users = [int(u) for u in a.users.split(",")]
    if a.before:
        from ossctl.fleet.frontdoor import haproxy as H

        current = H.haproxy_config

        def before(spec, table, order=None):  # the same configuration, upstream keep-alive off
            text = current(spec, table, order)
            if spec.profile.endswith("before"):
                text = text.replace("    option http-keep-alive\n", "    option http-server-close\n")
            return text

        H.haproxy_config = before
    client = docker.DockerClient(base_url=docker_host)
    tag = uuid.uuid4().hex[:8]
    labels = {"ossctl.bench": tag}
    with tempfile.TemporaryDirectory() as tmp, DockerRuntime(docker_host) as rt:
        model = make_model_dir(Path(tmp) / "tiny")
        port = free_port_pair()
        start_llama(client, llama_image_into(client, llama_server_binary()), model, port, f"fdbench-{tag}", labels,
                    ctx=2048, threads=2)
        direct = f"http://127.0.0.1:{port}"
        bridge_ip = client.containers.get(f"fdbench-{tag}").attrs["NetworkSettings"]["IPAddress"]
        image = frontdoor_image_into(client, a.kind)
        kinds = ["door (port)", "door (bridge)"] + (["before (port)", "before (bridge)"] if a.before else [])
        doors = {name: open_frontdoor(rt, FrontDoorSpec(f"fdbench{tag}{i}{name.split()[0]}", free_port_pair(),
                                                         admin_port=free_port_pair(), image=image, kind=a.kind))
                 for i, name in enumerate(kinds)}
        try:
            wait_healthy(direct)
            for name, d in doors.items():
                d.ensure([Upstream(direct if "port" in name else f"http://{bridge_ip}:8080")])
            paths = {"direct": direct, **{n: d.spec.endpoint for n, d in doors.items()}}
            for url in paths.values():
                wait_healthy(url)
            got: dict[tuple[str, int], list[dict]] = {}
            names = list(paths)
            loads = [os.getloadavg()[0]]
            for r in range(a.rounds):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    rep = engine.run_levels(engine.Target(paths[name], None, None, 60.0), builtin_prompts(), users,
                                            duration_s=a.seconds, stream=not a.no_stream, max_tokens=a.max_tokens,
                                            handle_sigint=False)
                    for lv in rep["levels"]:
                        if lv["errors"]:
                            raise SystemExit(f"{name}: {lv['errors']} failed requests: {lv['errors_by_kind']}")
                        got.setdefault((name, lv["users"]), []).append(lv)
                loads.append(os.getloadavg()[0])
        finally:
            for d in doors.values():
                d.remove()
            for c in client.containers.list(all=True, filters={"label": f"ossctl.bench={tag}"}):
                c.remove(force=True)

    print(f"front door ({a.kind}) vs direct, llama-server tiny model, {a.rounds} rounds x {a.seconds:g} s per path and "
          f"level, {'whole answers' if a.no_stream else 'stream'}, max_tokens {a.max_tokens}, "
          f"1-min load {min(loads):.1f}..{max(loads):.1f} on {os.cpu_count()} cores")
    print(f"{'users':>5}  {'path':<16} {'p50':>9}  {'p50 +':>8}  {'req/min':>8}  {'ratio':>6}")
    for u in users:
        p50 = {n: statistics.median(lv["latency_s"]["p50"] for lv in got[(n, u)]) * 1000 for n in paths}
        rpm = {n: statistics.median(lv["rpm"] for lv in got[(n, u)]) for n in paths}
        for n in paths:
            extra = "" if n == "direct" else f"{p50[n] - p50['direct']:>+6.2f}ms  "
            ratio = "" if n == "direct" else f"{rpm[n] / rpm['direct']:>6.3f}"
            print(f"{u:>5}  {n:<16} {p50[n]:>7.2f}ms  {extra or ' ' * 10}{rpm[n]:>8.0f}  {ratio}")
    print("goal: p50 + <= 0.5 ms, throughput ratio >= 0.97")


if __name__ == "__main__":
    main()
