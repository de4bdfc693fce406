"""The serving state lives on the Docker engine: several homes (operators, machines, CI
runners) pointed at one engine see and safely change the same releases. Real dockerd, real
CPU llama-server; every scenario checks with a real request that what should serve does
serve on the profile's port, and that no container that was serving is gone."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.plugins.docker_engine import answer, signal_on_event
from tests.support.cli import run_cli

pytestmark = pytest.mark.docker


class Home:
    """Another OSSCTL_HOME (another operator) with the same profile file as ``env``."""

    def __init__(self, env, path: Path):
        self.env, self.path = env, path
        (path / "profiles").mkdir(parents=True, exist_ok=True)
        for f in (env.home / "profiles").glob("*.toml"):
            if path != env.home:
                shutil.copy(f, path / "profiles" / f.name)

    @property
    def vars(self) -> dict[str, str]:
        return {**self.env.env, "OSSCTL_HOME": str(self.path)}

    def cli(self, *args):
        return run_cli(*args, env=self.vars)

    def popen(self, *args):
        return subprocess.Popen([sys.executable, "-m", "ossctl", *args], env={**os.environ, **self.vars},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def serving(env) -> str:
    """The release the profile's port answers for (fails the test when nothing answers)."""
    assert answer(f"http://127.0.0.1:{env.port}")["choices"]
    r = run_cli("--json", "status", "--profile", env.profile, env=env.env)
    assert r.code == 0, r.err
    st = r.json()["releases"][0]
    assert st["health"] == "ok" and st["endpoint"] == f"http://127.0.0.1:{env.port}"
    return st["release"]


def ok_containers(env) -> set[str]:
    r = run_cli("--json", "releases", "--profile", env.profile, env=env.env)
    return {x["container_id"] for x in r.json()["releases"] if x["state"] == "ok"}


def assert_kept(env, ids: set[str]) -> None:
    left = {c.id for c in env.containers()}
    assert ids <= left, f"containers of ok releases were removed: {ids - left}"


def test_two_homes_see_and_change_the_same_releases(serve_env, tmp_path):
    env = serve_env
    a, b, c = Home(env, env.home), Home(env, tmp_path / "b"), Home(env, tmp_path / "c")
    r = a.cli("--json", "deploy", "-p", env.profile)
    assert r.code == 0, r.err
    r = b.cli("--json", "deploy", "-p", env.profile)  # the defect: this removed A's serving release
    assert r.code == 0, r.err
    assert (r.json()["id"], r.json()["previous"]) == ("r0002", "r0001")
    assert serving(env) == "r0002"
    st = a.cli("--json", "status", "--profile", env.profile).json()["releases"][0]
    assert st["release"] == "r0002" and st["owner"]
    kept = ok_containers(env)
    assert len(kept) == 2
    # a home that has never seen this engine rolls back
    r = c.cli("--json", "rollback", "--profile", env.profile)
    assert r.code == 0, r.err
    assert (r.json()["id"], r.json()["source"]) == ("r0003", "r0001")
    assert serving(env) == "r0003"
    assert_kept(env, kept)
    ids = [x["id"] for x in b.cli("--json", "releases", "--profile", env.profile).json()["releases"]]
    assert ids == ["r0003", "r0002", "r0001"]
    assert not (a.path / "state").exists() or not list((a.path / "state").rglob("*.json"))


def test_deploy_and_rollback_race_from_two_processes(serve_env, tmp_path):
    env = serve_env
    b, c = Home(env, tmp_path / "b"), Home(env, tmp_path / "c")
    assert env and b.cli("deploy", "-p", env.profile).code == 0
    assert b.cli("deploy", "-p", env.profile).code == 0
    proc = b.popen("deploy", "-p", env.profile)
    deadline = time.monotonic() + 60
    while not env.client.api.containers(all=True, filters={"name": f"ossctl-lock-{env.profile}"}):
        assert time.monotonic() < deadline and proc.poll() is None, "the deploy never took the lock"
        time.sleep(0.02)
    r = c.cli("rollback", "--profile", env.profile)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert r.code == 6 and f"profile {env.profile}" in r.err and "is locked: deploy by" in r.err, r.err
    assert f"`ossctl unlock --profile {env.profile}`" in r.err
    assert serving(env) == "r0003"
    r = c.cli("--json", "rollback", "--profile", env.profile)  # now it may
    assert r.code == 0, r.err
    assert serving(env) == "r0004"


@pytest.mark.parametrize("event", ["stop", "start", "update"])
def test_kill_9_at_each_step_then_another_home_recovers(serve_env, tmp_path, event):
    """kill -9 while the old release stops (before the new one starts), while the new one
    loads (during the gate), and when its restart policy is set (right at the switch)."""
    env = serve_env
    env.write_profile(keep_releases=10)
    b, c = Home(env, tmp_path / "b"), Home(env, tmp_path / "c")
    assert b.cli("deploy", "-p", env.profile).code == 0
    kept = ok_containers(env)
    proc, events = signal_on_event(env.client, env.profile, event, "r0001" if event == "stop" else "r0002",
                                   lambda: b.popen("deploy", "-p", env.profile))
    proc.wait(timeout=120)
    events.close()
    assert proc.returncode == -signal.SIGKILL

    r = c.cli("--json", "status", "--profile", env.profile)
    assert r.code == 0, r.err
    r = c.cli("--json", "-v", "deploy", "-p", env.profile)
    assert r.code == 0, r.err
    assert "broke a stale lock" in r.err
    assert r.json()["id"] == "r0003"
    assert serving(env) == "r0003"
    assert_kept(env, kept)
    states = {x["id"]: x["state"] for x in c.cli("--json", "releases", "--profile", env.profile).json()["releases"]}
    # killed right at the switch, r0002 may have committed (ok) or not (interrupted); before it, never
    assert states["r0002"] in (("ok", "interrupted") if event == "update" else ("interrupted",))
    # nothing of r0002 is left running beside the new release
    running = [x for x in env.containers() if x.status == "running"]
    assert [x.labels["ossctl.release"] for x in running] == ["r0003"]


def test_container_removed_by_hand(serve_env):
    env = serve_env
    assert run_cli("deploy", "-p", env.profile, env=env.env).code == 0
    r = run_cli("--json", "deploy", "-p", env.profile, env=env.env)
    assert r.code == 0, r.err
    env.client.containers.get(r.json()["container_id"]).remove(force=True)
    r = run_cli("--json", "status", "--profile", env.profile, env=env.env)
    assert r.code == 0, r.err
    st = r.json()["releases"][0]
    assert (st["release"], st["container"], st["health"]) == ("r0002", "missing", "down")
    r = run_cli("--json", "rollback", "--profile", env.profile, env=env.env)
    assert r.code == 0, r.err
    assert r.json()["source"] == "r0001" and serving(env) == "r0003"


def _write_record(env, rid: str, data: bytes) -> None:
    from ossctl.serve.docker_runtime import DockerRuntime
    from ossctl.serve.releases import LEDGER_DIR, LEDGER_NAME

    rt = DockerRuntime(env.docker_host)
    rt.write_tree(rt.find(LEDGER_NAME)["id"], LEDGER_DIR, {f"{env.profile}/{rid}.json": data})


@pytest.mark.parametrize("damage", [b"{not json", b'{"id": "r0001", "profile": "P", "state": "serving"}'])
def test_unreadable_or_hand_edited_record_is_left_alone(serve_env, damage):
    env = serve_env
    env.write_profile(keep_releases=2)
    r = run_cli("--json", "deploy", "-p", env.profile, env=env.env)
    assert r.code == 0, r.err
    first = r.json()["container_id"]
    assert run_cli("deploy", "-p", env.profile, env=env.env).code == 0
    _write_record(env, "r0001", damage.replace(b'"P"', json.dumps(env.profile).encode()))
    r = run_cli("--json", "status", "--profile", env.profile, env=env.env)
    assert r.code == 0, r.err
    assert f"the engine-side record {env.profile}/r0001 is unreadable" in r.err and "left alone" in r.err
    assert r.json()["unreadable"] and r.json()["releases"][0]["release"] == "r0002"
    r = run_cli("--json", "deploy", "-p", env.profile, env=env.env)  # keep_releases=2 would prune r0001
    assert r.code == 0, r.err
    assert r.json()["id"] == "r0003" and serving(env) == "r0003"
    env.client.containers.get(first)  # its container was not ours to prove: still there


@pytest.mark.parametrize("host", ["foo://bar", "tcp://", "bar"])
def test_malformed_docker_host_is_bad_input(home, host):
    for args in (["status"], ["rollback", "--profile", "x"], ["releases"]):
        r = run_cli(*args, env={"DOCKER_HOST": host})
        assert r.code == 2 and "invalid DOCKER_HOST" in r.err and "unreachable" not in r.err, r.err
        assert "Traceback" not in r.err


def test_read_only_home(serve_env, tmp_path):
    env = serve_env
    ro = tmp_path / "ro-home"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("needs root to mount a read-only home")
    try:
        Home(env, ro)
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        h = {**env.env, "OSSCTL_HOME": str(ro)}
        for args in (["deploy", "-p", env.profile], ["deploy", "-p", env.profile], ["rollback", "-p", env.profile],
                     ["status"], ["releases"]):
            r = run_cli(*args, env=h)
            assert r.code == 0, (args, r.err)
        assert serving(env) == "r0003"
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_releases_of_ossctl_0_1_are_imported_once(serve_env):
    """A release started by ossctl 0.1 (history in OSSCTL_HOME) keeps serving, and the
    engine learns it."""
    from ossctl.artifacts.manifest import read_manifest
    from ossctl.serve import llama_server
    from ossctl.serve.docker_runtime import DockerRuntime
    from ossctl.serve.profiles import resolve_profile
    from ossctl.serve.releases import _legacy_path
    from ossctl.settings import load_settings

    env = serve_env
    settings = load_settings({"OSSCTL_HOME": str(env.home)})
    prof = resolve_profile(settings, env.profile)
    man = read_manifest(env.model_dir)
    spec = llama_server.build_spec(prof, man, env.model_dir, "r0001", env.port)
    rt = DockerRuntime(env.docker_host)
    cid = rt.run(spec)
    rec = {"id": "r0001", "profile": env.profile, "kind": "deploy", "state": "ok", "source": "r0001",
           "created": "2026-01-01T00:00:00+00:00", "docker_host": env.docker_host,
           "endpoint": f"http://127.0.0.1:{env.port}", "host": "127.0.0.1", "port": env.port, "container_id": cid,
           "container_name": spec["name"], "image": env.image, "model_dir": str(env.model_dir), "ctx": 512,
           "composite_sha256": man.composite_sha256, "profile_resolved": prof, "spec": spec, "rolled_back": False}
    legacy = _legacy_path(settings, env.docker_host)
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps({"docker_host": env.docker_host,
                                  "profiles": {env.profile: {"current": "r0001", "history": [rec]}}}))
    deadline = time.monotonic() + 60
    while True:
        try:
            answer(f"http://127.0.0.1:{env.port}")
            break
        except Exception:  # noqa: BLE001 - still loading
            assert time.monotonic() < deadline
            time.sleep(0.2)
    r = run_cli("--json", "status", "--profile", env.profile, env=env.env)
    assert r.code == 0, r.err
    assert "imported 1 release(s)" in r.err and r.json()["releases"][0]["release"] == "r0001"
    assert not legacy.exists() and legacy.with_name(legacy.name + ".imported").exists()
    r = run_cli("--json", "deploy", "-p", env.profile, env=env.env)
    assert r.code == 0, r.err
    assert (r.json()["id"], r.json()["previous"]) == ("r0002", "r0001")
    r = run_cli("--json", "rollback", "-p", env.profile, env=env.env)
    assert r.code == 0, r.err
    assert (r.json()["source"], r.json()["container_id"]) == ("r0001", cid)
    assert serving(env) == "r0003"


def test_lock_of_another_machine_is_named_and_can_be_broken(serve_env):
    from ossctl.serve.docker_runtime import DockerRuntime
    from ossctl.serve.releases import LEDGER_IMAGE, LOCK_INFO, lock_name
    from ossctl import labels as L

    env = serve_env
    rt = DockerRuntime(env.docker_host)
    rt.ensure_empty_image(LEDGER_IMAGE, {L.LEDGER: "1"})
    info = {"op": "deploy", "owner": "ops@far-away", "pid": 4242, "boot_id": "x", "since": "2026-11-01T10:00:00+00:00"}
    assert rt.create_marker(lock_name(env.profile), LEDGER_IMAGE, {L.LOCK: env.profile, LOCK_INFO: json.dumps(info)})
    r = run_cli("deploy", "-p", env.profile, env=env.env)
    assert r.code == 6 and "deploy by ops@far-away (pid 4242) since 2026-11-01T10:00:00+00:00" in r.err
    assert env.containers() == []
    r = run_cli("unlock", "-p", env.profile, env=env.env)
    assert r.code == 0 and "held by deploy by ops@far-away" in r.out
    r = run_cli("unlock", "-p", env.profile, env=env.env)
    assert r.code == 0 and "was not locked" in r.out
    r = run_cli("deploy", "-p", env.profile, env=env.env)
    assert r.code == 0, r.err
    assert serving(env) == "r0001"


def test_engine_restarted_mid_deploy(serve_env, own_engine, tmp_path):
    """The engine goes down while the new release loads: the deploy fails clearly; once the
    engine is back, another home's deploy finishes the interrupted one and serves."""
    import dataclasses

    import docker

    client = docker.DockerClient(base_url=own_engine.host)
    env = dataclasses.replace(serve_env, docker_host=own_engine.host, client=client)
    b = Home(env, tmp_path / "b")
    assert b.cli("deploy", "-p", env.profile).code == 0
    assert serving(env) == "r0001"
    kept = ok_containers(env)
    events = client.events(decode=True, filters={"label": [f"ossctl.profile={env.profile}"], "event": ["start"]})
    proc = b.popen("deploy", "-p", env.profile)
    for ev in events:
        if ev["Actor"]["Attributes"].get("ossctl.release") == "r0002":
            break
    events.close()
    own_engine.stop()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in (5, 7), err
    assert "Traceback" not in err and "Docker daemon" in err
    own_engine.start()
    r = b.cli("--json", "status", "--profile", env.profile)
    assert r.code == 0, r.err
    r = b.cli("--json", "-v", "deploy", "-p", env.profile)
    assert r.code == 0, r.err
    assert r.json()["id"] == "r0003" and serving(env) == "r0003"
    env.client = docker.DockerClient(base_url=own_engine.host)  # the old connection died with the engine
    assert_kept(env, kept)
    states = {x["id"]: x["state"] for x in b.cli("--json", "releases", "--profile", env.profile).json()["releases"]}
    assert states["r0002"] in ("interrupted", "failed")


def test_docker_context_names_are_endpoints(serve_env, tmp_path):
    """A name from `docker context ls` reaches the engine the context names (the docker CLI's
    own store: meta.json under contexts/meta/<sha256(name)>)."""
    import hashlib

    env = serve_env
    cfg = tmp_path / "docker-config"
    meta = cfg / "contexts" / "meta" / hashlib.sha256(b"gpu-box").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Name": "gpu-box", "Metadata": {},
                                                "Endpoints": {"docker": {"Host": env.docker_host,
                                                                         "SkipTLSVerify": False}}}))
    ctx_env = {"DOCKER_CONFIG": str(cfg), "DOCKER_HOST": ""}
    r = run_cli("--json", "deploy", "-p", env.profile, "--docker-host", "gpu-box", env=ctx_env)
    assert r.code == 0, r.err
    r = run_cli("--json", "status", "-p", env.profile, env={**ctx_env, "DOCKER_HOST": "gpu-box"})
    assert r.code == 0 and r.json()["releases"][0]["release"] == "r0001" and r.json()["docker_host"] == "gpu-box"
    assert serving(env) == "r0001"  # the same engine, reached by its URL
    r = run_cli("status", "--docker-host", "no-such-context", env=ctx_env)
    assert r.code == 2 and "nor a `docker context` name" in r.err


def test_blue_green_keeps_the_endpoint_behind_a_front_door(serve_env, frontdoor_image, tmp_path):
    """One host with a [frontdoor]: blue-green gates the new release on the other port of the
    pair while the old one serves, then drains and stops the old one. Clients use the front
    door's port throughout, and a bench through it sees no failed request."""
    from tests.support.net import free_port_pair

    env = serve_env
    fd_port, admin = free_port_pair(), free_port_pair()
    env.write_profile(strategy="blue-green", frontdoor={"port": fd_port, "admin_port": admin, "image": frontdoor_image})
    door = f"http://127.0.0.1:{fd_port}"
    try:
        r = run_cli("--json", "deploy", "-p", env.profile, env=env.env)
        assert r.code == 0, r.err
        assert r.json()["hosts"][0]["upstream"] == f"http://127.0.0.1:{env.port}"
        assert answer(door)["choices"]
        load = subprocess.Popen([sys.executable, "-m", "ossctl", "--json", "bench", "--url", door, "--users", "3",
                                 "--duration", "15s", "--max-tokens", "8"], env={**os.environ, **env.env},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2)
        for port in (env.port + 1, env.port):  # the release alternates between the ports of the pair
            r = run_cli("--json", "deploy", "-p", env.profile, env=env.env)
            assert r.code == 0, r.err
            assert (r.json()["strategy"], r.json()["hosts"][0]["upstream"]) == ("blue-green", f"http://127.0.0.1:{port}")
        out, err = load.communicate(timeout=120)
        assert load.returncode == 0, err
        levels = json.loads(out)["levels"]
        assert sum(lv["requests"] for lv in levels) > 0 and sum(lv["errors"] for lv in levels) == 0, levels
        running = [c.labels.get("ossctl.release") for c in env.containers() if c.status == "running"]
        assert sorted(running, key=str) == sorted([None, "r0003"], key=str)  # the front door and r0003
        st = run_cli("--json", "status", "-p", env.profile, env=env.env)
        assert st.code == 0 and [x["release"] for x in st.json()["releases"]] == ["r0003"]
        r = run_cli("--json", "rollback", "-p", env.profile, env=env.env)
        assert r.code == 0, r.err
        assert r.json()["hosts"][0]["state"] == "rolled back" and answer(door)["choices"]
    finally:
        for c in env.client.containers.list(all=True, filters={"name": f"ossctl-frontdoor-{env.profile}"}):
            c.remove(force=True)
