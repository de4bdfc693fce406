"""Every ``--json`` shape of deploy / rollback / status / releases / sign (and the
``signature`` object of verify, adopt and deploy's preflight), pinned in one place:
the typed results render them, and these are the keys scripts may rely on. (The
integration tests check the same keys on real output: tests/integration/test_deploy.py,
test_fleet.py.)"""

from __future__ import annotations

import pytest

from ossctl.fleet.account import FleetDeploy, FleetRollback, FleetView, HostAccount, HostReach, HostState
from ossctl.serve.releases import Release, State
from ossctl.serve.results import DryRun, EngineHistory, EngineStatus

DEPLOY = ["id", "profile", "kind", "state", "source", "previous", "strategy", "docker_host", "endpoint", "container_id",
          "container_name", "image", "image_id", "model_id", "composite_sha256", "ctx", "api_key_file", "created",
          "ready_s", "digest"]
RELEASES_ROW = ["id", "profile", "kind", "state", "current", "source", "created", "image", "image_id", "build",
                "model_id", "composite_sha256", "ctx", "endpoint", "container_id", "rolled_back", "error", "owner", "vram",
                "digest"]


def _release() -> Release:
    return Release(id="r0002", profile="p", kind="deploy", source="r0002", state=State.OK)


def test_deploy_and_rollback_of_one_engine():
    assert list(_release().public()) == DEPLOY
    assert list(_release().summary("r0002")) == RELEASES_ROW
    assert _release().summary("r0002")["current"] is True


def test_dry_run():
    d = DryRun("unix:///x.sock", "rNEXT", "p", "recreate", "http://127.0.0.1:8080", {"name": "x"}, "docker run x",
               {"source": "s", "choices": []}).to_dict()
    assert list(d) == ["dry_run", "docker_host", "release", "profile", "strategy", "endpoint", "spec", "docker_run", "flags"]
    assert d["dry_run"] is True


def test_status_and_releases_of_one_engine():
    assert list(EngineStatus("unix:///x.sock", [], ["p/r1: bad"]).to_dict()) == ["docker_host", "releases", "unreadable"]
    assert list(EngineHistory("unix:///x.sock", []).to_dict()) == ["docker_host", "releases"]


def test_fleet_deploy_rollback_status_history():
    a = HostAccount("ssh://gpu1", "http://10.0.0.1:8080", extra={"build": 11312})
    b = HostAccount("ssh://gpu2", "http://10.0.0.2:8080", extra={"build": 11312})
    a.to(HostState.UPDATED, "r0003", "http://10.0.0.1:8081")
    b.to(HostState.FAILED, error="gate failed", note="previous serves")
    d = FleetDeploy("p", "http://127.0.0.1:9000", "unix:///x.sock", "blue-green", [a, b], 1.5).to_dict()
    assert list(d) == ["profile", "frontdoor", "frontdoor_host", "strategy", "hosts", "wall_s"]
    assert d["hosts"][0] == {"docker_host": "ssh://gpu1", "state": "updated", "release": "r0003",
                             "upstream": "http://10.0.0.1:8081", "build": 11312}
    assert list(d["hosts"][1]) == ["docker_host", "state", "release", "upstream", "build", "error", "note"]
    r = HostAccount("ssh://gpu1", None)
    r.to(HostState.ROLLED_BACK, "r0004", "http://10.0.0.1:8080", source="r0002")
    assert FleetRollback("p", "http://127.0.0.1:9000", [r]).to_dict() == {
        "profile": "p", "frontdoor": "http://127.0.0.1:9000",
        "hosts": [{"docker_host": "ssh://gpu1", "state": "rolled back", "release": "r0004",
                   "upstream": "http://10.0.0.1:8080", "source": "r0002"}]}
    reach = [HostReach("ssh://gpu1", True), HostReach("ssh://gpu2", False, "no answer in 15 s")]
    assert FleetView([], reach, unreadable=[]).to_dict() == {
        "docker_host": None, "releases": [], "unreadable": [],
        "hosts": [{"docker_host": "ssh://gpu1", "ok": True, "error": None},
                  {"docker_host": "ssh://gpu2", "ok": False, "error": "no answer in 15 s"}]}
    assert list(FleetView([], reach).to_dict()) == ["docker_host", "releases", "hosts"]


@pytest.mark.parametrize("path", [
    [HostState.UPDATED, HostState.ROLLED_BACK],
    [HostState.UPDATED, HostState.ROLLBACK_FAILED],
    [HostState.FAILED],
    [HostState.ROLLED_BACK],
])
def test_host_states_allowed(path):
    a = HostAccount("h", None)
    for s in path:
        a.to(s)
    assert a.state is path[-1]


@pytest.mark.parametrize("path", [
    [HostState.ROLLBACK_FAILED],               # never updated: nothing to roll back
    [HostState.FAILED, HostState.ROLLED_BACK],  # a failed step restored its host already
    [HostState.UPDATED, HostState.UPDATED],
    [HostState.UPDATED, HostState.ROLLED_BACK, HostState.UPDATED],
])
def test_host_states_refused(path):
    a = HostAccount("h", None)
    with pytest.raises(ValueError, match="cannot go from"):
        for s in path:
            a.to(s)


SIGNATURE = ["status", "signed_by", "algorithm", "trusted", "composite_sha256", "problems"]
SIGN = ["signature", "signed_by", "algorithm", "files", "composite_sha256"]
REGISTRY_STATUS_SIGNATURE = ["status", "composite_sha256", "signed_by"]


def test_sign_and_the_signature_object_of_verify_and_adopt():
    from pathlib import Path

    from ossctl.artifacts.signing import SignatureCheck, SignResult

    assert list(SignatureCheck("unsigned").public()) == SIGNATURE
    r = SignResult(Path("/m/model.sig"), "key sha256:x", "ecdsa-p256-sha256", {"a.gguf": "1" * 64}, "1" * 64)
    assert list(r.public()) == SIGN
    assert r.public()["files"] == [{"name": "a.gguf", "sha256": "1" * 64}]


def test_registry_status_signature_object(tmp_path, monkeypatch):
    from ossctl.registry.client import signature_vs_chain
    from ossctl.settings import load_settings

    assert signature_vs_chain(load_settings({"OSSCTL_HOME": str(tmp_path)}), "0x" + "ab" * 32, None) is None
    assert list(signature_vs_chain(load_settings({"OSSCTL_HOME": str(tmp_path)}), str(tmp_path), None)) == \
        REGISTRY_STATUS_SIGNATURE


def test_tune_and_bench_capacity():
    from ossctl.ops.bench import CAPACITY_KEYS
    from ossctl.ops.tune import RESULT_KEYS, ROW_KEYS, TrialRow, TuneResult

    row = TrialRow({"parallel": 4}, {"parallel": 4})
    assert list(row.to_dict()) == list(ROW_KEYS) == [
        "point", "overrides", "baseline", "resumed", "status", "plan_bytes", "vram_bytes", "plan_vs_nvml_pct", "users",
        "capacity_users", "output_tps", "latency_p50_s", "latency_p95_s", "ttft_p50_s", "requests", "errors",
        "sla_ok", "sla_failures", "error", "seconds"]
    res = TuneResult("p", "errors<5%", 4, False, "coordinate-descent", {"parallel": [1, 4]}, [row], [], row, None,
                     None, None, None, "/x.jsonl", 1.0).to_dict()
    assert list(res) == list(RESULT_KEYS) == [
        "profile", "sla", "users", "capacity", "search", "space", "trials", "skipped", "best", "baseline", "speedup",
        "tuned_profile", "stopped", "records", "elapsed_s"]
    assert res["best"] == res["trials"][0] and res["baseline"] is None
    # `bench --capacity`: the bench report plus "capacity" with these keys
    assert CAPACITY_KEYS == ("sla", "users", "first_fail_users", "steps", "stopped", "max_users")


def test_upgrade():
    from ossctl.ops.upgrade import Upgrade, side

    rec = Release(id="r0002", profile="p", state=State.OK, image="img:2", image_id="sha256:" + "a" * 64, build=11312,
                  bench={"summary": "s", "settings": {}, "levels": [{"users": 1, "effort": None, "output_tps": 300.0,
                                                                     "latency_p95_s": 0.05}]},
                  vram={"plan": {"0": 10}, "measured": {"1": 2 * 2**20, "0": 5 * 2**20}})
    s = side(rec)
    assert list(s) == ["release", "image", "build", "digest", "output_tps", "latency_p95_s", "bench_levels", "vram",
                       "fit"]
    assert (s["digest"], s["output_tps"], s["latency_p95_s"], s["vram"]) == (
        "sha256:" + "a" * 64, 300.0, 0.05, {"0": 5 * 2**20, "1": 2 * 2**20})
    assert side(None) is None
    d = Upgrade("p", "img:2", [{"docker_host": "unix:///x.sock", "old": None, "new": s}]).to_dict()
    assert list(d) == ["profile", "image", "hosts"] and list(d["hosts"][0]) == ["docker_host", "old", "new"]
