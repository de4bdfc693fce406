"""Issue 26 items 3, 5, 12, 15 and 25: rollback under faults, on the real private engine
with the real CPU llama-server (item 12 with a real anvil). Each test checks the exit
code, the one line that says what happened, and that nothing was lost: what served still
answers a real completion, and no kept container is gone."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys

import pytest

from tests.plugins.docker_engine import answer, make_model_dir, signal_on_event
from tests.support.cli import run_cli

pytestmark = pytest.mark.docker


def cli(env, *args, extra: dict[str, str] | None = None):
    return run_cli(*args, env={**env.env, **(extra or {})})


def serving(env) -> str:
    """The release the profile's port answers for (a real completion; fails the test when
    nothing answers or status does not call it healthy)."""
    assert answer(f"http://127.0.0.1:{env.port}")["choices"]
    r = cli(env, "--json", "status", "--profile", env.profile)
    assert r.code == 0, r.err
    st = r.json()["releases"][0]
    assert st["health"] == "ok", st
    return st["release"]


def releases(env, extra: dict[str, str] | None = None) -> dict[str, dict]:
    r = cli(env, "--json", "releases", "--profile", env.profile, extra=extra)
    assert r.code == 0, r.err
    return {x["id"]: x for x in r.json()["releases"]}


def kept_ids(env) -> set[str]:
    return {x["container_id"] for x in releases(env).values() if x["state"] == "ok"}


def assert_kept(env, ids: set[str]) -> None:
    left = {c.id for c in env.containers()}
    assert ids <= left, f"containers of ok releases were removed: {ids - left}"


def error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("error:")]


def hint_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("hint:")]


def popen(env, *args):
    return subprocess.Popen([sys.executable, "-m", "ossctl", *args], env={**os.environ, **env.env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_rollback_after_the_target_started_is_reconciled(serve_env):
    """Item 3: kill -9 of `rollback` once the target's kept container runs (it holds the
    port; the serving release is stopped). The next deploy stops that container (keeps
    it), brings the serving release back, and deploys; nothing kept is removed."""
    env = serve_env
    assert cli(env, "deploy", "-p", env.profile).code == 0
    assert cli(env, "deploy", "-p", env.profile).code == 0
    assert serving(env) == "r0002"
    kept = kept_ids(env)
    # the kept container of r0001 carries r0001's label: the kill lands when it starts
    proc, events = signal_on_event(env.client, env.profile, "start", "r0001",
                                   lambda: popen(env, "rollback", "--profile", env.profile))
    proc.communicate(timeout=180)
    events.close()
    assert proc.returncode == -signal.SIGKILL
    assert releases(env)["r0003"]["state"] == "pending"

    r = cli(env, "--json", "-v", "deploy", "-p", env.profile)
    assert r.code == 0, r.err
    assert "Traceback" not in r.err
    stopped = [ln for ln in r.err.splitlines() if "reconciled: stopped container" in ln]
    assert len(stopped) == 1 and "of release r0001, started by interrupted rollback r0003" in stopped[0], r.err
    assert "reconciled: restarted release r0002" in r.err
    assert r.json()["id"] == "r0004" and serving(env) == "r0004"
    rels = releases(env)
    assert rels["r0003"]["state"] == "interrupted" and rels["r0004"]["current"]
    assert_kept(env, kept)
    # and the one after it is an ordinary deploy (the defect: every later one exited 6 "port busy")
    r = cli(env, "--json", "deploy", "-p", env.profile)
    assert r.code == 0, r.err
    assert serving(env) == "r0005"


def test_rollback_refuses_model_files_that_no_longer_verify(serve_env, tmp_path):
    """Item 5: one byte of the target's model changed: rollback exits 4 before anything
    stops, like deploy, and the serving release keeps serving."""
    env = serve_env
    old = make_model_dir(tmp_path / "old")
    new = make_model_dir(tmp_path / "new", name="tiny2")
    env.write_profile(model=str(old))
    assert cli(env, "deploy", "-p", env.profile).code == 0
    env.write_profile(model=str(new))
    assert cli(env, "deploy", "-p", env.profile).code == 0
    kept = kept_ids(env)
    part = sorted(old.glob("*.gguf"))[-1]
    with part.open("r+b") as f:
        f.seek(part.stat().st_size - 1)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 1]))

    r = cli(env, "rollback", "--profile", env.profile)
    assert r.code == 4, r.err
    assert "Traceback" not in r.err
    assert error_lines(r.err) == [f"error: {old}: {part.name}: " + error_lines(r.err)[0].split(f"{part.name}: ", 1)[1]]
    assert "sha256" in error_lines(r.err)[0]
    assert serving(env) == "r0002"
    assert set(releases(env)) == {"r0001", "r0002"}  # nothing recorded, nothing started
    assert_kept(env, kept)


@pytest.mark.anvil
def test_rollback_checks_the_chain_when_the_target_requires_registration(serve_env, chain):
    """Item 12: the target's profile requires registration and the registry owner has
    deactivated the model since: rollback exits 6 before anything stops; once reactivated
    it rolls back."""
    env = serve_env
    _node, _addr, chain_env = chain
    env.write_profile(require_registered=True)
    assert run_cli("register", str(env.model_dir), "--yes", env={**env.env, **chain_env}).code == 0
    for _ in range(2):
        r = cli(env, "deploy", "-p", env.profile, extra=chain_env)
        assert r.code == 0, r.err
    kept = kept_ids(env)
    r = run_cli("registry", "deactivate", str(env.model_dir), "--yes", env={**env.env, **chain_env})
    assert r.code == 0, r.err

    r = cli(env, "rollback", "--profile", env.profile, extra=chain_env)
    assert r.code == 6, r.err
    assert "Traceback" not in r.err
    assert len(error_lines(r.err)) == 1 and "is deactivated on chain" in error_lines(r.err)[0], r.err
    assert serving(env) == "r0002"
    assert set(releases(env, chain_env)) == {"r0001", "r0002"}
    assert_kept(env, kept)

    assert run_cli("registry", "reactivate", str(env.model_dir), "--yes", env={**env.env, **chain_env}).code == 0
    r = cli(env, "--json", "rollback", "--profile", env.profile, extra=chain_env)
    assert r.code == 0, r.err
    assert r.json()["source"] == "r0001" and serving(env) == "r0003"


def test_engine_restarted_during_the_gate_restores_the_previous_release(serve_env, own_engine):
    """Item 15: dockerd restarts while the new release is gated. Once the engine is back
    (within the gate timeout) the deploy restores the previous release itself and says so:
    exit 7, and r0001 serves without another run."""
    import docker

    client = docker.DockerClient(base_url=own_engine.host)
    env = dataclasses.replace(serve_env, docker_host=own_engine.host, client=client)
    assert cli(env, "deploy", "-p", env.profile).code == 0
    first = serving(env)
    kept = kept_ids(env)
    # a long bench gate: the engine goes down while r0002 is still being gated, however
    # fast the tiny model loads
    env.write_profile(bench={"users": [1], "requests": 400, "max_tokens": 8, "sla": "errors<5%"})
    events = client.events(decode=True, filters={"label": [f"ossctl.profile={env.profile}"], "event": ["start"]})
    proc = popen(env, "deploy", "-p", env.profile)
    for ev in events:
        if ev["Actor"]["Attributes"].get("ossctl.release") == "r0002":
            break
    events.close()
    own_engine.stop()
    own_engine.start()
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 7, err
    assert "Traceback" not in err
    assert len(error_lines(err)) == 1 and error_lines(err)[0].startswith(
        f"error: deploy of profile '{env.profile}' (release r0002) failed: "), err
    hints = hint_lines(err)
    assert len(hints) == 1 and "the Docker engine was unreachable for" in hints[0] and hints[0].endswith(
        f"previous release {first} is serving again at http://127.0.0.1:{env.port}"), err
    env.client = docker.DockerClient(base_url=own_engine.host)  # the old connection died with the engine
    assert serving(env) == first
    assert_kept(env, kept)
    assert releases(env)["r0002"]["state"] == "failed"


def test_port_busy_names_the_other_profiles_release(serve_env):
    """Item 25: the port is another profile's serving release: the line names that profile
    and release, the hint says to use another `port`, never to stop it; it keeps serving."""
    env = serve_env
    assert cli(env, "deploy", "-p", env.profile).code == 0
    other = env.write_profile(env.profile + "b")
    r = cli(env, "deploy", "-p", other)
    assert r.code == 6, r.err
    assert "Traceback" not in r.err
    assert error_lines(r.err) == [f"error: port {env.port} is busy: release r0001 of profile '{env.profile}' "
                                  f"serves there (container ossctl-{env.profile}-r0001)"], r.err
    hints = hint_lines(r.err)
    assert len(hints) == 1 and f"set another `port` in profile '{other}'" in hints[0], r.err
    assert "stop" not in hints[0]
    assert serving(env) == "r0001"
    assert env.containers(other) == []
