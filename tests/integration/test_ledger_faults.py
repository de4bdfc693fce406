"""Faults in the engine-side ledger: a record with one wrong-typed field is named and
skipped (the other records and profiles still read); a ledger holder removed by
`docker container prune` is recreated over its volume, with every record. Real engine."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import uuid

import pytest

from tests.plugins.docker_engine import answer
from tests.support.cli import run_cli

SPEC = {"name": "x", "image": "img:1", "command": ["-m", "/models/a.gguf"], "labels": {},
        "restart_policy": {"Name": "no"}}
PROFILE = {"health_timeout": 60, "host": "127.0.0.1", "ctx": 512, "parallel": 1, "model": "/m"}


def record(profile: str, rid: str, **over) -> dict:
    return {"id": rid, "profile": profile, "state": "ok", "kind": "deploy", "source": rid,
            "created": f"2026-12-01T10:00:0{rid[-1]}+00:00", "port": 9, "endpoint": "http://127.0.0.1:9",
            "spec": dict(SPEC, name=f"ossctl-{profile}-{rid}"), "profile_resolved": PROFILE, **over}


@pytest.fixture
def ledger(docker_host):
    """Writes raw records into the engine's ledger; puts valid ones back over them at the end
    (records are never removed, and other tests read every profile)."""
    from ossctl.serve.docker_runtime import DockerRuntime
    from ossctl.serve.releases import LEDGER_DIR, Ledger

    rt = DockerRuntime(docker_host)
    led = Ledger(rt)
    written: dict[str, dict] = {}

    def write(*recs: dict) -> None:
        for d in recs:
            written[f"{d['profile']}/{d['id']}.json"] = d
        rt.write_tree(led._holder_id(create=True), LEDGER_DIR,
                      {f"{d['profile']}/{d['id']}.json": json.dumps(d).encode() for d in recs})

    yield write
    rt.write_tree(led._holder_id(create=True), LEDGER_DIR,
                  {k: json.dumps(record(d["profile"], d["id"], state="failed")).encode() for k, d in written.items()})


@pytest.mark.parametrize("bad, why", [
    ({"created": 1764583200}, "field 'created' must be a string, got 1764583200"),
    ({"profile_resolved": {**PROFILE, "health_timeout": "60"}}, "field profile_resolved.health_timeout must be"),
    ({"spec": {**SPEC, "command": "llama-server"}}, "field spec.command must be a list of arguments"),
])
def test_a_bad_record_is_named_and_skipped(home, docker_host, ledger, bad, why):
    a, b = "la" + uuid.uuid4().hex[:8], "lb" + uuid.uuid4().hex[:8]
    ledger(record(a, "r0001"), record(a, "r0002", **bad), record(b, "r0001"))
    env = {"DOCKER_HOST": docker_host}
    r = run_cli("--json", "releases", env=env)
    assert r.code == 0, r.err
    ids = {(x["profile"], x["id"]) for x in r.json()["releases"]}
    assert {(a, "r0001"), (b, "r0001")} <= ids and (a, "r0002") not in ids
    warn = [ln for ln in r.err.splitlines() if f"{a}/r0002" in ln]
    assert len(warn) == 1 and warn[0].startswith(f"warning: the engine-side record {a}/r0002 is unreadable ({why}")
    assert "Traceback" not in r.err and "unexpected error" not in r.err
    r = run_cli("releases", "--profile", b, env=env)  # another profile: no word of a's record
    assert r.code == 0 and f"{a}/r0002" not in r.err and "r0001" in r.out
    r = run_cli("--json", "status", "--profile", a, env=env)
    assert r.code == 0 and r.json()["releases"][0]["release"] == "r0001", r.err
    r = run_cli("--json", "deploy", "--profile", a, "--dry-run", env=env)  # no profile file: a usage error, not a crash
    assert r.code in (2, 3) and "Traceback" not in r.err


def test_a_release_recorded_without_spec_is_no_rollback_target(home, docker_host, ledger):
    a = "ls" + uuid.uuid4().hex[:8]
    ledger(record(a, "r0001", spec={}), record(a, "r0002"))
    env = {"DOCKER_HOST": docker_host}
    r = run_cli("--json", "releases", "--profile", a, env=env)
    assert r.code == 0 and [x["id"] for x in r.json()["releases"]] == ["r0002", "r0001"], r.err
    r = run_cli("rollback", "--profile", a, env=env)
    assert r.code == 2, r.err
    assert r.err.splitlines()[0] == (f"error: release r0001 of profile '{a}' has no recorded container spec and "
                                     "profile; cannot roll back to it")
    r = run_cli("--json", "releases", "--profile", a, env=env)  # nothing written, nothing lost
    assert [(x["id"], x["state"], x["current"]) for x in r.json()["releases"]] == [("r0002", "ok", True),
                                                                                  ("r0001", "ok", False)]


def test_a_pruned_ledger_holder_is_recreated_over_its_volume(serve_env, own_engine):
    import docker

    client = docker.DockerClient(base_url=own_engine.host)
    env = dataclasses.replace(serve_env, docker_host=own_engine.host, client=client)
    for rid in ("r0001", "r0002"):
        r = run_cli("--json", "deploy", "-p", env.profile, env=env.env)
        assert r.code == 0 and r.json()["id"] == rid, r.err
    # what an operator's clean-up does: every container not running goes (the ledger holder
    # was never started; r0001's kept container is stopped)
    out = subprocess.run(["docker", "-H", own_engine.host, "container", "prune", "-f"], capture_output=True, text=True)
    assert out.returncode == 0 and client.containers.list(all=True, filters={"name": "ossctl-ledger"}) == []
    r = run_cli("--json", "status", "--profile", env.profile, env=env.env)
    assert r.code == 0 and r.json()["releases"][0]["release"] == "r0002", r.err
    assert client.containers.list(all=True, filters={"name": "ossctl-ledger"})  # recreated by a read
    r = run_cli("--json", "releases", "--profile", env.profile, env=env.env)
    assert [x["id"] for x in r.json()["releases"]] == ["r0002", "r0001"]
    r = run_cli("--json", "rollback", "--profile", env.profile, env=env.env)  # r0001's container was pruned
    assert r.code == 0 and (r.json()["id"], r.json()["source"]) == ("r0003", "r0001"), r.err
    assert answer(f"http://127.0.0.1:{env.port}")["choices"]
    r = run_cli("--json", "deploy", "-p", env.profile, env=env.env)
    assert r.code == 0 and r.json()["id"] == "r0004", r.err
