"""The pure parts of the trial seam (ossctl/serve/trial.py): overrides, spec and labels,
the ports a trial may not take, the owner rule of reaping, the figures kept from a bench.
The container lifecycle is tested against a real engine in tests/integration/test_trial.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest

from ossctl.errors import UsageError
from ossctl.loadtest.report import build, level
from ossctl.loadtest.stats import Sample
from ossctl.serve import llama_server, trial
from ossctl.serve.profiles import validate
from ossctl.serve.releases import process_owner
from ossctl.settings import load_settings

MAN = SimpleNamespace(first_file="m-00001-of-00003.gguf", model_id="0x" + "ab" * 32, composite_sha256="cd" * 32,
                      repo="ggml-org/gpt-oss-120b-GGUF", revision="f" * 40)
OWNER = {"owner": "ops@gpu1", "pid": 4242, "boot_id": "b00t", "start": "777"}


def prof(**over):
    raw = {"model": "120b", "image": "ghcr.io/ggml-org/llama.cpp:server-cuda-b6100", "ctx": 8192, "port": 8080}
    raw.update(over)
    return validate(raw, "prod")


def test_spec_is_deploys_argv_under_trial_labels_only():
    p = trial.trial_profile(prof(), {"parallel": 4, "ubatch": 256})
    spec = trial.trial_spec(p, MAN, "/data/m", 18123, None, "0a1b2c3d", OWNER, "2026-12-03T10:00:00+00:00")
    deploy = llama_server.build_spec(p, MAN, "/data/m", "r0001", 18123)
    assert spec["command"] == deploy["command"]
    assert spec["command"][spec["command"].index("-np") + 1] == "4"
    assert spec["command"][spec["command"].index("-ub") + 1] == "256"
    assert spec["name"] == "ossctl-trial-prod-0a1b2c3d"
    assert spec["ports"] == {"8080/tcp": ["127.0.0.1", 18123]}  # listens on the profile's port inside
    assert spec["restart_policy"] == {"Name": "no"}
    assert spec["labels"] == {
        "ossctl.role": "trial",
        "ossctl.trial.owner": json.dumps(OWNER, sort_keys=True),
        "ossctl.trial.created": "2026-12-03T10:00:00+00:00",
        "ossctl.trial.profile": "prod",
        "ossctl.port": "18123",
    }
    assert (spec["mounts"], spec["device_requests"]) == (deploy["mounts"], deploy["device_requests"])


def test_overrides_are_checked_by_the_profile_rules():
    p = prof(hosts=[{"docker_host": "unix:///a.sock"}, {"docker_host": "unix:///b.sock", "port": 9000}],
             bench={"users": [1]})
    t = trial.trial_profile(p, {"parallel": 2, "extra_args": ["--no-warmup"]})
    assert (t["parallel"], t["extra_args"]) == (2, ["--no-warmup"])
    assert not {"hosts", "bench", "frontdoor", "max_unavailable"} & set(t)  # one container, its own bench
    assert trial.trial_profile(p, None)["parallel"] == 1
    with pytest.raises(UsageError, match="a trial cannot change 'port'") as e:
        trial.trial_profile(p, {"port": 9999})
    assert "parallel" in e.value.hint
    with pytest.raises(UsageError, match=r"trial of profile 'prod' with ubatch=4096: `ubatch` \(4096\) must not exceed"):
        trial.trial_profile(p, {"ubatch": 4096})
    with pytest.raises(UsageError, match="parallel"):
        trial.trial_profile(p, {"parallel": 0})
    assert trial.describe({}) == "the profile's settings"
    assert trial.describe({"parallel": 4, "ubatch": 256}) == "parallel=4, ubatch=256"


def test_profile_ports_default_hosts_and_front_door():
    assert trial.profile_ports({}) == [8080]
    assert trial.profile_ports({"port": 9000, "hosts": [{"docker_host": "x"}, {"docker_host": "y", "port": 9100}],
                                "frontdoor": {"port": 8443, "admin_port": 2019}}) == [2019, 8443, 9000, 9100]
    assert trial.profile_ports({"port": "8080", "hosts": "bad", "frontdoor": None}) == []


def test_reserved_ports_name_profiles_and_release_containers(tmp_path):
    s = load_settings({"OSSCTL_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "x")})
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "mine.toml").write_text('extends = "cpu"\nport = 18500\n')
    (tmp_path / "profiles" / "broken.toml").write_text("port = [\n")  # unreadable: skipped, not fatal
    rt = SimpleNamespace(list=lambda labels: [
        {"name": "ossctl-old-r0003", "labels": {"ossctl.managed": "1", "ossctl.port": "18600",
                                                "ossctl.release": "r0003", "ossctl.profile": "old"}},
        {"name": "odd", "labels": {"ossctl.managed": "1", "ossctl.port": "x"}}])
    r = trial.reserved_ports(s, rt)
    assert r[18500] == "a port of profile 'mine'"
    assert r[8080].startswith("a port of profile ")  # the shipped profiles
    assert r[18600] == "the port of release r0003 of profile 'old' (ossctl-old-r0003)"


class FakeRuntime:
    """Only what reap_trials asks of an engine: list by label, remove."""

    def __init__(self, containers):
        self.containers = containers
        self.removed = []

    def list(self, labels):
        assert labels == {"ossctl.role": "trial"}
        return [c for c in self.containers if c["id"] not in self.removed]

    def remove(self, cid):
        self.removed.append(cid)


def _c(name, owner):
    text = owner if isinstance(owner, str) else json.dumps(owner)
    return {"id": "id-" + name, "name": name, "labels": {"ossctl.role": "trial", "ossctl.trial.owner": text}}


def test_reap_removes_only_provably_dead_owners():
    me = process_owner()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    rt = FakeRuntime([
        _c("dead", {**me, "pid": dead.pid, "start": "1"}),
        _c("reused", {**me, "pid": os.getppid(), "start": "not-its-start"}),  # pid alive, but another process
        _c("live", {**me, "pid": os.getppid(), "start": process_owner_start(os.getppid())}),
        _c("elsewhere", {**me, "owner": "ops@another-host", "pid": dead.pid}),
        _c("other-boot", {**me, "boot_id": "another-boot", "pid": dead.pid}),
        _c("unreadable", "{not json"),
        _c("mine-left", me),  # this process, not running it: a removal that failed
        _c("mine-active", me),
    ])
    logs = []
    trial._ACTIVE.add("mine-active")
    try:
        r = trial.reap_trials(rt, logs.append)
    finally:
        trial._ACTIVE.discard("mine-active")
    assert r.removed == ("dead", "reused", "mine-left")
    assert rt.removed == ["id-dead", "id-reused", "id-mine-left"]
    kept = dict(r.kept)
    assert set(kept) == {"live", "elsewhere", "other-boot", "unreadable", "mine-active"}
    assert "is alive" in kept["live"] and "another machine" in kept["elsewhere"]
    assert any(f"pid {dead.pid} is gone" in ln for ln in logs)


def process_owner_start(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[19]


def test_owner_of_never_invents_an_owner():
    assert trial.owner_of({}) == {}
    assert trial.owner_of({"ossctl.trial.owner": "[1, 2]"}) == {}
    assert trial.owner_of({"ossctl.trial.owner": json.dumps(OWNER)}) == OWNER
    assert process_owner()["owner"].endswith("@" + socket.gethostname())


def test_bench_figures_from_a_report():
    ok = [Sample("short", 0.5, ttft=0.1, output_tokens=10), Sample("short", 1.5, ttft=0.3, output_tokens=10)]
    lv1 = level(ok, 1, 2.0, True)
    lv2 = level([*ok, Sample("short", 0.0, error="timeout")], 2, 4.0, True)
    f = trial.bench_figures(build("http://x", "m", True, 16, None, 2, [lv1, lv2]), "errors<5%", False, "SLA not met")
    assert f.sla == "errors<5%" and f.sla_ok is False and f.summary == "SLA not met"
    a, b = f.levels
    assert (a.users, a.requests, a.errors, a.error_pct, a.rpm, a.output_tps) == (1, 2, 0, 0.0, 60.0, 10.0)
    assert (a.latency_p50_s, a.latency_p95_s, a.ttft_p50_s) == (1.0, 1.45, 0.2)
    assert (b.users, b.requests, b.errors, b.error_pct) == (2, 3, 1, 33.333)


def test_result_is_frozen_and_renders_to_json():
    gate = trial.GateTimes(start_s=0.1, ready_s=1.2, checks_s=0.3, healthy_s=1.3)
    res = trial.TrialResult(profile="prod", overrides={"parallel": 2}, container="ossctl-trial-prod-1", image="i",
                            image_id="sha256:1", build=11312, port=18000, endpoint="http://127.0.0.1:18000",
                            argv=("-np", "2"), docker_run="docker run ...", gate=gate, props={"slots": 2},
                            vram={0: 123}, bench=None)
    with pytest.raises(AttributeError):
        res.port = 1  # type: ignore[misc]
    d = json.loads(json.dumps(res.to_dict()))
    assert d["gate"] == {"start_s": 0.1, "ready_s": 1.2, "checks_s": 0.3, "healthy_s": 1.3}
    assert d["vram"] == {"0": 123} and d["argv"] == ["-np", "2"] and d["bench"] is None
