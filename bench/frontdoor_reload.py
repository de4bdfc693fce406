"""Requests lost while a front door's upstreams change, per kind (issue 26).

    OSSCTL_TEST_DOCKER_HOST=unix:///... OSSCTL_TEST_LLAMA_BIN=.../bin python3 bench/frontdoor_reload.py \\
        [--runs 10] [--seconds 15] [--kinds haproxy,caddy] [--hog both|on|off]

Three llama-server containers (tiny model, CPU, published on 127.0.0.1). For each kind,
each hog setting and each run: a fresh front door over two of them, then for
``--seconds``: 2 clients polling ``GET /health`` and 3 streaming chat completions through
the front door while drain / enable / drain + swap to the third run in a loop (what a
rolling deploy does to the front door), with, when the hog is on, one busy process per
core beside them (each ends by itself; all are killed at the end of the run). Prints
failed/total for each run and per kind and hog setting in all; a failure is any request
that did not answer 200 (for a stream: ending with ``data: [DONE]``). Caddy replaces its
whole configuration at each change and loses requests started in its reload window;
HAProxy changes upstreams through its runtime API and should lose none. Bounded: about
(seconds + 5) x runs x kinds x hog settings; all on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--kinds", default="haproxy,caddy")
    ap.add_argument("--hog", default="both", choices=("both", "on", "off"))
    ap.add_argument("--json", action="store_true", help="print one JSON line per run too")
    a = ap.parse_args()
    docker_host = os.environ.get("OSSCTL_TEST_DOCKER_HOST") or os.environ.get("DOCKER_HOST")
    if not docker_host or not os.environ.get("OSSCTL_TEST_LLAMA_BIN"):
        raise SystemExit("set OSSCTL_TEST_DOCKER_HOST and OSSCTL_TEST_LLAMA_BIN (scripts/test.sh sets both)")
    if a.runs < 1 or a.runs > 50 or not 1 <= a.seconds <= 120:
        raise SystemExit("--runs 1..50 and --seconds 1..120")
    import docker

    from ossctl.fleet.frontdoor import open_frontdoor
    from ossctl.serve.docker_runtime import DockerRuntime
    from ossctl.fleet.frontdoor.base import FrontDoorSpec
    from tests.plugins.docker_engine import llama_image_into, llama_server_binary, make_model_dir
    from tests.support.net import free_port_pair
    from tests.plugins.frontdoor import frontdoor_image_into, start_llama, wait_healthy
    from tests.support.frontdoor_churn import churn

    kinds = a.kinds.split(",")
    hogs = {"both": [False, True], "on": [True], "off": [False]}[a.hog]
    client = docker.DockerClient(base_url=docker_host)
    tag = uuid.uuid4().hex[:8]
    labels = {"ossctl.bench": tag}
    totals: dict[tuple[str, bool], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp, DockerRuntime(docker_host) as rt:
        model = make_model_dir(Path(tmp) / "tiny")
        image = llama_image_into(client, llama_server_binary())
        urls = []
        try:
            for i in range(3):
                port = free_port_pair()
                start_llama(client, image, model, port, f"fdreload-{tag}-{i}", labels, ctx=1024)
                urls.append(f"http://127.0.0.1:{port}")
            for u in urls:
                wait_healthy(u)
            images = {k: frontdoor_image_into(client, k) for k in kinds}
            for hog in hogs:
                for kind in kinds:
                    for run in range(a.runs):
                        spec = FrontDoorSpec(f"fdreload{tag}{kind}", free_port_pair(), admin_port=free_port_pair(),
                                             image=images[kind], kind=kind)
                        fd = open_frontdoor(rt, spec)
                        try:
                            res = churn(fd, urls, a.seconds, hog=hog)
                        finally:
                            fd.remove()
                        totals.setdefault((kind, hog), []).append(res)
                        print(f"{kind:<8} hog={'on ' if hog else 'off'} run {run + 1:>2}: failed {res['failed']:>3} / "
                              f"{res['requests']:>5} requests, {res['changes']} changes"
                              + (f"  {res['by_kind']}" if res["failed"] else ""), flush=True)
                        if a.json:
                            print(json.dumps({"kind": kind, "hog": hog, "run": run + 1, **res}), flush=True)
        finally:
            for c in client.containers.list(all=True, filters={"label": f"ossctl.bench={tag}"}):
                c.remove(force=True)
    print(f"\n{'kind':<8} {'hog':<4} {'runs':>4} {'runs with a loss':>16} {'failed / total':>18}")
    for (kind, hog), rs in totals.items():
        failed, total = sum(r["failed"] for r in rs), sum(r["requests"] for r in rs)
        lossy = sum(1 for r in rs if r["failed"])
        print(f"{kind:<8} {'on' if hog else 'off':<4} {len(rs):>4} {lossy:>16} {failed:>9} / {total:<7}")


if __name__ == "__main__":
    main()
