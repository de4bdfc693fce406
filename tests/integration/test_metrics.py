"""``ossctl metrics``: the exporter against the fake NVML, real llama-servers, a real
Docker engine with a release deployed by ossctl, and a real Prometheus scraping it."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ossctl.metrics.exporter import JSON_KEYS
from ossctl.metrics.promclient import parse_text
from tests.plugins.docker_engine import answer
from tests.support.cli import run_cli
from tests.support.net import free_port, wait_listening

GiB = 1024 ** 3
MONITORING = Path(__file__).resolve().parents[2] / "monitoring"


def monitoring_exprs() -> list[str]:
    """Every PromQL expression of the shipped Grafana dashboard and alert rules."""
    dash = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"] if isinstance(v.get("query"), dict)]
    exprs += re.findall(r"^\s+expr: (.+)$", (MONITORING / "alerts.yml").read_text(), re.M)
    assert len(exprs) > 20
    return exprs


def concrete(expr: str) -> str:
    """A dashboard expression as plain PromQL: Grafana's variables filled in, a variable
    query ``label_values(M, L)`` reduced to ``M``."""
    expr = re.sub(r"^label_values\((.+), \w+\)$", r"\1", expr)
    return re.sub(r"\$\w+", ".*", expr.replace("$__rate_interval", "1m"))


def by_name(text: str) -> dict[str, list[tuple[dict, float]]]:
    out: dict[str, list] = {}
    for f in parse_text(text):
        for name, labels, value in f.samples:
            out.setdefault(name, []).append((labels, value))
    return out


def scenario(path: Path, gpus: int = 2, procs: dict[int, list] | None = None, cgroups: dict[int, str] | None = None,
             lost_from: int | None = None) -> Path:
    """A fake NVML scenario file: ``procs`` = {gpu: [[pid, bytes, "compute"]]},
    ``cgroups`` = {pid: cgroup text}."""
    doc = {"driver": "550.54.15", "time": 1767225600.0, "lost_from": lost_from, "labels": {},
           "proc": {str(pid): {"comm": "llama-server", "cgroup": cg} for pid, cg in (cgroups or {}).items()},
           "gpus": [{"name": "NVIDIA H100 80GB HBM3", "uuid": f"GPU-{i}", "total": 80 * GiB, "used": (i + 1) * GiB,
                     "util": [10 * i, 5], "temp": 40 + i, "power": 100.0 + i, "power_limit": 700.0,
                     "processes": (procs or {}).get(i, [])} for i in range(gpus)]}
    path.write_text(json.dumps(doc))
    return path


def test_dump_answers_with_docker_and_nvml_gone(home, tmp_path):
    dead = f"unix://{tmp_path}/dead.sock"
    r = run_cli("--json", "metrics", "dump", env={"OSSCTL_FAKE_NVML": "4x80gb", "DOCKER_HOST": dead})
    assert r.code == 0, r.err
    doc = r.json()
    assert tuple(doc) == JSON_KEYS
    assert all(tuple(s) == ("source", "target", "ok", "error") for s in doc["sources"])
    assert all(tuple(m) == ("name", "type", "labels", "value") for m in doc["metrics"])
    src = {(s["source"], s["target"]): s for s in doc["sources"]}
    assert src[("nvml", "")]["ok"] and not src[("docker", os.uname().nodename)]["ok"]
    assert "cannot reach the Docker daemon" in src[("docker", os.uname().nodename)]["error"]
    assert "warning: docker" in r.err and "Traceback" not in r.err
    used = [m for m in doc["metrics"] if m["name"] == "ossctl_gpu_memory_used_bytes"]
    assert [m["value"] for m in used] == [70_116_884_480, 15_530_000_384, 566_231_040, 566_231_040]
    assert {m["type"] for m in doc["metrics"] if m["name"].startswith("ossctl_gpu_")} == {"gauge"}

    # no driver at all: still a scrape, with the error series, in the text format
    r = run_cli("metrics", "dump", env={"OSSCTL_FAKE_NVML": "no-driver", "DOCKER_HOST": dead})
    assert r.code == 0, r.err
    m = by_name(r.out)
    assert ({"source": "nvml", "target": ""}, 0.0) in m["ossctl_exporter_source_up"]
    assert "ossctl_gpu_memory_used_bytes" not in m
    assert m["ossctl_exporter_scrape_duration_seconds"][0][1] > 0


def test_serve_refuses_a_busy_port(home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli("metrics", "serve", "--listen", f"127.0.0.1:{port}", env={"OSSCTL_FAKE_NVML": "4x80gb"})
    assert r.code == 6 and f"127.0.0.1:{port} is already in use" in r.err and "--listen" in r.err
    r = run_cli("metrics", "serve", "--listen", "nowhere")
    assert r.code == 2 and "is not HOST:PORT" in r.err


def test_slow_engine_keeps_the_releases_seen_last(home):
    import threading

    from ossctl.metrics.exporter import Exporter
    from ossctl.settings import load_settings

    gate = threading.Event()
    gate.set()
    calls = []

    def releases():
        calls.append(1)
        gate.wait(30)
        return {"docker_host": "tcp://engine-1:2376", "releases": [{"profile": "p", "release": "r0002", "ctx": 512,
                                                                     "health": "down", "endpoint": None}]}

    exp = Exporter(load_settings({"OSSCTL_HOME": str(home), "OSSCTL_FAKE_NVML": "4x80gb"}), releases=releases,
                   status_timeout=0.3, hostname="gpu-7")
    try:
        first = exp.scrape().to_dict()
        gate.clear()  # the engine stops answering in time
        second = exp.scrape().to_dict()
        third = exp.scrape().to_dict()  # the late call is still running: not started twice
    finally:
        gate.set()
        exp.close()
    up = lambda d: [m for m in d["metrics"] if m["name"] == "ossctl_release_up"]  # noqa: E731
    docker = lambda d: [x for x in d["sources"] if x["source"] == "docker"][0]  # noqa: E731
    assert docker(first) == {"source": "docker", "target": "engine-1", "ok": True, "error": None}
    assert up(second) == up(first) == [{"name": "ossctl_release_up", "type": "gauge", "value": 0.0, "labels": {
        "profile": "p", "release": "r0002", "model_id": "", "composite_sha256": "", "ctx": "512", "host": "engine-1"}}]
    assert docker(second)["error"].startswith("no answer in time; releases as of ")
    assert docker(third)["error"].startswith("no answer in time") and len(calls) == 2


@pytest.mark.llama
def test_exporter_with_real_servers_stuck_and_down(home, llama_server_factory, tmp_path, tiny_llama_dir):
    """Releases given directly (no engine): one real llama-server with --metrics, one
    socket that accepts and never answers, one closed port, one container down."""
    from ossctl.gpu import fit
    from ossctl.metrics.exporter import Exporter
    from ossctl.settings import load_settings

    srv = llama_server_factory(parallel=2, extra=("--metrics",))
    key = "sk-metrics-" + "5e1f0c2a9b7d4e36"
    keyed = llama_server_factory(api_key=key, parallel=1, extra=("--metrics",))
    keyfile = tmp_path / "api.key"
    keyfile.write_text(key + "\n")
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(8)
    closed = free_port()
    prof_dir = home / "profiles"
    prof_dir.mkdir()
    for name in ("live", "stuck", "gone", "down"):
        (prof_dir / f"{name}.toml").write_text(f'model = "{tiny_llama_dir}"\nimage = "x:y"\nctx = 512\ngpus = [1]\n')
    (prof_dir / "keyed.toml").write_text(f'model = "{tiny_llama_dir}"\nimage = "x:y"\nctx = 512\ngpus = "none"\n'
                                         f'api_key_file = "{keyfile}"\n')
    cid = "ab" * 32
    rels = [{"profile": "live", "release": "r0003", "model_id": "0x" + "12" * 32, "composite_sha256": "ef" * 32,
             "ctx": 512, "endpoint": srv.url, "container_id": cid, "health": "ok", "model": str(tiny_llama_dir)},
            {"profile": "stuck", "release": "r0001", "endpoint": f"http://127.0.0.1:{stuck.getsockname()[1]}",
             "ctx": 512, "health": "unreachable"},
            {"profile": "gone", "release": "r0001", "endpoint": f"http://127.0.0.1:{closed}", "ctx": 512,
             "health": "unreachable"},
            {"profile": "down", "release": "r0002", "endpoint": f"http://127.0.0.1:{closed}", "ctx": 512,
             "health": "down"},
            {"profile": "keyed", "release": "r0001", "endpoint": keyed.url, "ctx": 512, "health": "ok"}]
    sc = scenario(tmp_path / "sc.json", procs={1: [[4242, 3 * GiB, "compute"]]},
                  cgroups={4242: f"0::/system.slice/docker-{cid}.scope"}, lost_from=2)
    settings = load_settings({"OSSCTL_HOME": str(home), "OSSCTL_FAKE_NVML": str(sc)})
    logs: list[str] = []
    exp = Exporter(settings, releases=lambda: {"docker_host": "unix:///x.sock", "releases": rels},
                   fetch_timeout=1.0, log=logs.append, hostname="gpu-7")
    try:
        first = exp.scrape()
        answer(srv.url, max_tokens=3)
        from ossctl.loadtest import report as rep

        rep.store_last(settings.cache_dir, {"profile": "live", "release": "r0003", "time": 1.0, "stream": True,
                                            "sla": {"spec": "errors<5%", "ok": True},
                                            "levels": [{"users": 1, "requests": 1, "error_pct": 0.0, "output_tps": 9.5,
                                                        "latency_p50_s": 0.2, "latency_p95_s": 0.3, "sla_ok": True}]})
        second = exp.scrape()
        third = exp.scrape()  # the fake driver is gone from sample 2 on
    finally:
        exp.close()
        stuck.close()

    d = first.to_dict()
    src = {(s["source"], s["target"]): s["error"] for s in d["sources"]}
    assert src[("nvml", "")] is None and src[("llama_metrics", "live")] is None and src[("llama_slots", "live")] is None
    assert src[("llama_metrics", "stuck")] == "no answer in time"
    assert src[("llama_metrics", "gone")] == f"cannot read /metrics from 127.0.0.1:{closed}: Connection refused"
    assert src[("llama_metrics", "down")] == "the release's container is not running"
    # a server behind an API key: read with the key from the profile's api_key_file, which
    # appears nowhere in what the exporter says
    assert src[("llama_metrics", "keyed")] is None and src[("llama_slots", "keyed")] is None
    assert key not in json.dumps(d) + render(first) + "".join(logs)
    live = {"profile": "live", "release": "r0003", "model_id": "0x" + "12" * 32, "composite_sha256": "efefefefefef",
            "ctx": "512", "host": "gpu-7"}
    m = by_name(render(first))
    assert m["ossctl_release_gpu_memory_used_bytes"] == [({**live, "gpu": "1"}, 3 * GiB)]
    planned = fit.plan_profile({**_resolved(settings, "live")}, tiny_llama_dir,
                               devices=[fit.Device(1, "NVIDIA H100 80GB HBM3", 80 * GiB, None)])
    assert [x for x in m["ossctl_release_gpu_memory_planned_bytes"] if x[0]["profile"] == "live"] == [
        ({**live, "gpu": "1"}, planned.gpus[0].total)]
    assert len(m["ossctl_release_gpu_memory_planned_bytes"]) == 4  # every GPU release's profile resolves
    assert (live, 1.0) in m["ossctl_release_up"]
    assert m["ossctl_release_slots_total"] == [(live, 2.0), (keyed_labels := {**live, "profile": "keyed", "release": "r0001",
                                                                           "model_id": "", "composite_sha256": ""}, 1.0)]
    assert m["ossctl_release_slots_busy"] == [(live, 0.0), (keyed_labels, 0.0)]
    counters = [k for k in m if k.startswith("llamacpp:") and k.endswith("_total")]
    assert counters and all(lab in (live, keyed_labels) for k in counters for lab, _v in m[k])
    before = dict((k, m[k][0][1]) for k in counters)
    after = by_name(render(second))
    assert any(after[k][0][1] > before[k] for k in counters), (before, after)
    # every metric the shipped dashboard and alert rules use is one the exporter produces
    used = {n for e in monitoring_exprs() for n in re.findall(r"(ossctl_[a-z0-9_]+|llamacpp:[a-z0-9_]+)", e)}
    assert used - set(after) == set()
    # NVML gone: GPU series vanish, the error series says why, the rest still answers
    m3 = by_name(render(third))
    assert ({"source": "nvml", "target": ""}, 0.0) in m3["ossctl_exporter_source_up"]
    assert "ossctl_gpu_memory_used_bytes" not in m3 and (live, 1.0) in m3["ossctl_release_up"]
    assert any(k.startswith("llamacpp:") for k in m3)
    assert any(line.startswith("warning: nvml: ") for line in logs)


def render(scrape) -> str:
    from ossctl.metrics.promclient import render_text

    return render_text(scrape.families)


def _resolved(settings, name):
    from ossctl.serve.profiles import resolve_profile

    return resolve_profile(settings, name)


# --- a real release, scraped by a real Prometheus -------------------------------------------

def _serve(port: int, env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen:
    fh = open(log, "ab")
    return subprocess.Popen([sys.executable, "-m", "ossctl", "metrics", "serve", "--listen", f"127.0.0.1:{port}",
                             "--fetch-timeout", "0.5", *extra],
                            env={**os.environ, **env}, stdout=fh, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(20)



@pytest.mark.docker
@pytest.mark.llama
def test_prometheus_scrapes_a_deployed_release(serve_env, prometheus_factory, tmp_path):
    env = serve_env
    env.write_profile(parallel=2, ctx=1024)
    r = run_cli("--json", "deploy", "-p", env.profile, env=env.env)
    assert r.code == 0, r.err
    rel = r.json()
    cid = rel["container_id"]
    sc = scenario(tmp_path / "nvml.json", procs={0: [[31337, 512 * 1024 ** 2, "compute"]],
                                                 1: [[4242, 5 * GiB, "compute"]]},
                  cgroups={4242: f"0::/system.slice/docker-{cid}.scope", 31337: "0::/user.slice/session-2.scope"})
    port = free_port()
    log = tmp_path / "exporter.log"
    exp_env = {**env.env, "OSSCTL_FAKE_NVML": str(sc), "OSSCTL_HOME": str(env.home)}
    exporter = _serve(port, exp_env, log)
    wait_listening(port, exporter, log)
    prom = prometheus_factory([f"127.0.0.1:{port}"], rule_files=(MONITORING / "alerts.yml",))
    p = env.profile
    try:
        labels = {"profile": p, "release": "r0001", "model_id": rel["model_id"],
                  "composite_sha256": rel["composite_sha256"][:12], "ctx": "1024", "host": os.uname().nodename}
        rows = prom.wait(f'ossctl_release_gpu_memory_used_bytes{{profile="{p}"}}')
        assert [(x["metric"], x["value"]) for x in rows] == [
            ({"__name__": "ossctl_release_gpu_memory_used_bytes", "instance": f"127.0.0.1:{port}", "job": "ossctl",
              **labels, "gpu": "1"}, 5 * GiB)]
        assert prom.query(f'ossctl_release_up{{profile="{p}"}}')[0]["value"] == 1
        assert prom.query('ossctl_gpu_other_memory_used_bytes{gpu="0"}')[0]["value"] == 512 * 1024 ** 2
        assert prom.query('ossctl_gpu_memory_used_bytes{gpu="1"}')[0]["value"] == 2 * GiB
        slots = prom.wait(f'ossctl_release_slots_total{{profile="{p}"}}')
        assert slots[0]["value"] == 2
        tokens = prom.wait(f'llamacpp:tokens_predicted_total{{profile="{p}"}}')
        assert {k: tokens[0]["metric"][k] for k in labels} == labels
        before = tokens[0]["value"]

        # a bench against the profile: the counters move and its summary is exported
        r = run_cli("bench", "--profile", p, "--users", "1", "--requests", "2", "--max-tokens", "3",
                    "--sla", "errors<5%", env=env.env)
        assert r.code == 0, r.err
        prom.wait(f'llamacpp:tokens_predicted_total{{profile="{p}"}}', lambda rows: rows and rows[0]["value"] > before)
        sla = prom.wait(f'ossctl_bench_sla_pass{{profile="{p}"}}')
        assert sla[0]["value"] == 1 and sla[0]["metric"]["release"] == "r0001"
        assert len(prom.query(f'ossctl_bench_latency_seconds{{profile="{p}",users="1"}}')) == 2
        # --profile: only that profile's releases and bench
        only = run_cli("--json", "metrics", "dump", "--profile", p, env=exp_env).json()
        seen = {(m["name"], m["labels"].get("profile")) for m in only["metrics"]}
        assert {("ossctl_release_up", p), ("ossctl_bench_sla_pass", p), ("llamacpp:tokens_predicted_total", p)} <= seen
        other = run_cli("--json", "metrics", "dump", "--profile", "nothing-here", env=exp_env).json()
        assert [m for m in other["metrics"] if m["name"].startswith(("ossctl_release", "ossctl_bench", "llamacpp:"))] == []
        # the shipped dashboard's queries run on real data; the example alert rules load and evaluate
        for expr in monitoring_exprs():
            prom.query(concrete(expr))
        rules = prom.wait("vector(1)", lambda _r: all(x["health"] == "ok" for x in prom.rules()) and prom.rules())
        assert rules and len(prom.rules()) == 7

        # llama-server down: release_up 0 and the error series, the scrape itself still fine
        env.client.containers.get(cid).stop(timeout=2)
        prom.wait(f'ossctl_release_up{{profile="{p}"}} == 0')
        prom.wait(f'ossctl_exporter_source_up{{source="llama_metrics",target="{p}"}} == 0')
        assert prom.query('up{job="ossctl"}')[0]["value"] == 1
        assert prom.query('ossctl_gpu_memory_used_bytes{gpu="0"}')[0]["value"] == GiB

        # Docker down: GPU series stay, the docker source says it failed
        _stop(exporter)
        exporter = _serve(port, {**exp_env, "DOCKER_HOST": f"unix://{tmp_path}/dead.sock"}, log)
        wait_listening(port, exporter, log)
        prom.wait('ossctl_exporter_source_up{source="docker"} == 0')
        assert prom.query('up{job="ossctl"}')[0]["value"] == 1
        assert prom.query('ossctl_gpu_memory_used_bytes{gpu="1"}')[0]["value"] == 2 * GiB

        # NVML gone after the first scrape of a new exporter: the rest still answers
        env.client.containers.get(cid).start()
        _stop(exporter)
        scenario(sc, procs={1: [[4242, 5 * GiB, "compute"]]}, cgroups={4242: f"0::/system.slice/docker-{cid}.scope"},
                 lost_from=1)
        exporter = _serve(port, exp_env, log)
        wait_listening(port, exporter, log)
        prom.wait('ossctl_exporter_source_up{source="nvml"} == 0')
        prom.wait(f'ossctl_release_up{{profile="{p}"}} == 1')
        assert prom.query('up{job="ossctl"}')[0]["value"] == 1
        assert prom.query("ossctl_gpu_memory_used_bytes") == []
    finally:
        _stop(exporter)
        print(log.read_text())  # shown when the test fails
    text = log.read_text()
    assert "serving metrics on http://127.0.0.1:" in text and "Traceback" not in text
