"""deploy / rollback / status / releases against a real Docker engine running the real
CPU llama-server on a tiny 3-part GGUF model. Kept few and lean: each deploy costs ~1 s."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from tests.plugins.docker_engine import answer, signal_on_event
from tests.support.cli import run_cli

pytestmark = pytest.mark.docker

DEPLOY_KEYS = {"id", "profile", "kind", "state", "source", "previous", "strategy", "docker_host", "endpoint",
               "container_id", "container_name", "image", "image_id", "model_id", "composite_sha256", "ctx",
               "api_key_file", "created", "ready_s", "digest"}
STATUS_KEYS = {"profile", "release", "kind", "source", "model", "model_id", "composite_sha256", "ctx", "image",
               "endpoint", "port", "container_id", "container", "health", "uptime_s", "leftovers", "owner", "created", "docker_host", "vram",
               "image_id", "build", "digest"}
RELEASE_KEYS = {"id", "profile", "kind", "state", "current", "source", "created", "image", "image_id", "model_id",
                "composite_sha256", "ctx", "endpoint", "container_id", "rolled_back", "error", "owner", "vram", "build",
                "docker_host", "digest"}


def cli(env, *args):
    return run_cli(*args, env=env.env)


def current(env):
    r = cli(env, "--json", "status", "--profile", env.profile)
    assert r.code == 0, r.err
    rels = r.json()["releases"]
    return rels[0] if rels else None


def test_deploy_fail_rollback_cycle(serve_env):
    env = serve_env
    # dry run: spec and docker run line, nothing started
    r = cli(env, "--json", "deploy", "-p", env.profile, "--dry-run")
    assert r.code == 0, r.err
    dry = r.json()
    assert set(dry) == {"dry_run", "docker_host", "release", "profile", "strategy", "endpoint", "spec", "docker_run",
                        "flags"}
    assert set(dry["flags"]) == {"source", "choices"}
    assert all(set(c) == {"intent", "args", "why"} for c in dry["flags"]["choices"])
    assert dry["docker_run"].startswith("docker run -d --name ossctl-") and "--port" in dry["docker_run"]
    assert env.containers() == []

    r = cli(env, "--json", "deploy", "-p", env.profile)
    assert r.code == 0, r.err
    first = r.json()
    assert set(first) == DEPLOY_KEYS
    assert (first["id"], first["state"], first["ctx"], first["endpoint"]) == ("r0001", "ok", 512, f"http://127.0.0.1:{env.port}")
    assert answer(first["endpoint"])["choices"]
    c = env.client.containers.get(first["container_id"])
    assert c.labels["ossctl.release"] == "r0001" and c.labels["ossctl.profile"] == env.profile
    assert c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert c.attrs["Mounts"][0]["RW"] is False

    st = current(env)
    assert set(st) == STATUS_KEYS
    assert (st["release"], st["health"], st["container"], st["ctx"]) == ("r0001", "ok", "running", 512)

    # a bad flag: the new container exits while loading, the old one serves again, exit 7
    env.write_profile(extra_args=["--no-such-flag"])
    r = cli(env, "deploy", "-p", env.profile)
    assert r.code == 7, r.err
    assert "exited while loading" in r.err and "--no-such-flag" in r.err
    assert "hint: previous release r0001 is serving again" in r.err
    assert answer(first["endpoint"])["choices"]
    assert current(env)["release"] == "r0001"

    # a missing part: preflight refuses, nothing changes
    broken = env.home / "broken-model"
    shutil.copytree(env.model_dir, broken)
    (broken / "tiny-00002-of-00003.gguf").unlink()
    env.write_profile(model=str(broken))
    r = cli(env, "deploy", "-p", env.profile)
    assert r.code == 4 and "tiny-00002-of-00003.gguf" in r.err and "missing" in r.err
    assert answer(first["endpoint"])["choices"]

    env.write_profile()
    r = cli(env, "--json", "deploy", "-p", env.profile)
    assert r.code == 0, r.err
    assert r.json()["id"] == "r0003" and r.json()["previous"] == "r0001"
    old = env.client.containers.get(first["container_id"])
    assert old.status == "exited"  # kept for a fast rollback

    r = cli(env, "--json", "rollback", "--profile", env.profile)
    assert r.code == 0, r.err
    back = r.json()
    assert set(back) == DEPLOY_KEYS
    assert (back["id"], back["kind"], back["source"], back["container_id"]) == ("r0004", "rollback", "r0001", first["container_id"])
    assert answer(back["endpoint"])["choices"]
    assert current(env)["release"] == "r0004"

    r = cli(env, "--json", "rollback", "--profile", env.profile, "--to", "r0003")
    assert r.code == 0, r.err
    assert (r.json()["id"], r.json()["source"]) == ("r0005", "r0003")
    r = cli(env, "rollback", "--profile", env.profile, "--to", "r0002")
    assert r.code == 2 and "never became healthy" in r.err

    r = cli(env, "--json", "releases", "--profile", env.profile)
    assert r.code == 0
    rels = r.json()
    assert set(rels) == {"docker_host", "releases"}
    assert all(set(x) == RELEASE_KEYS for x in rels["releases"])
    by_id = {x["id"]: x for x in rels["releases"]}
    assert [x["id"] for x in rels["releases"]][:1] == ["r0005"] and by_id["r0005"]["current"]
    assert by_id["r0002"]["state"] == "failed" and "--no-such-flag" in by_id["r0002"]["error"]
    assert by_id["r0004"]["rolled_back"]

    # blue-green without a front door would move the endpoint to another port: refused,
    # nothing changes; auto keeps the profile's port (recreate)
    r = cli(env, "deploy", "-p", env.profile, "--strategy", "blue-green")
    assert r.code == 2 and "front door" in r.err and "recreate" in r.err
    assert current(env)["release"] == "r0005" and answer(first["endpoint"])["choices"]
    r = cli(env, "--json", "deploy", "-p", env.profile, "--strategy", "auto")
    assert r.code == 0, r.err
    assert (r.json()["endpoint"], r.json()["strategy"]) == (f"http://127.0.0.1:{env.port}", "recreate")
    running = [c for c in env.containers() if c.status == "running"]
    assert [c.id for c in running] == [r.json()["container_id"]]


def test_rollback_without_previous_and_preflight_errors(serve_env, tmp_path):
    env = serve_env
    r = cli(env, "rollback", "--profile", env.profile)
    assert r.code == 3 and "no previous release" in r.err

    # port busy (another process listens): refused before anything starts
    with socket.socket() as s:
        s.bind(("127.0.0.1", env.port))
        s.listen()
        r = cli(env, "deploy", "-p", env.profile)
    assert r.code == 6 and f"port {env.port}" in r.err and "busy" in r.err
    assert env.containers() == []

    # image missing: clear error with the pull command
    env.write_profile(image="ossctl-test/absent:nope")
    r = cli(env, "deploy", "-p", env.profile)
    assert r.code == 3 and "hint: docker pull ossctl-test/absent:nope" in r.err

    # daemon down
    r = run_cli("deploy", "-p", env.profile, env={"DOCKER_HOST": f"unix://{tmp_path}/dead.sock"})
    assert r.code == 5 and "cannot reach the Docker daemon" in r.err and "Traceback" not in r.err
    r = run_cli("status", env={"DOCKER_HOST": f"unix://{tmp_path}/dead.sock"})
    assert r.code == 5

    # another deploy holds the engine-side lock of this profile
    from ossctl.serve.docker_runtime import DockerRuntime
    from ossctl.serve.releases import Ledger

    env.write_profile()
    with Ledger(DockerRuntime(env.docker_host)).lock(env.profile, "deploy"):
        r = cli(env, "deploy", "-p", env.profile)
    assert r.code == 6 and f"profile {env.profile}" in r.err and "is locked: deploy by" in r.err
    assert f"pid {os.getpid()}" in r.err
    assert env.containers() == []

    r = cli(env, "deploy", "-p", "no-such-profile")
    assert r.code == 3 and "unknown profile" in r.err


def test_killed_deploy_is_reconciled(serve_env):
    env = serve_env
    r = cli(env, "--json", "deploy", "-p", env.profile)
    assert r.code == 0, r.err
    first = r.json()

    # kill -9 the second deploy the moment its container starts (recreate: the old one is
    # stopped by then, so the kill leaves nothing serving and a stray container)
    proc, events = signal_on_event(env.client, env.profile, "start", "r0002", lambda: subprocess.Popen(
        [sys.executable, "-m", "ossctl", "deploy", "-p", env.profile], env={**os.environ, **env.env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    proc.wait(timeout=120)
    events.close()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()

    st = current(env)
    assert st["release"] == "r0001" and st["leftovers"] == [f"ossctl-{env.profile}-r0002"]

    r = cli(env, "--json", "-v", "deploy", "-p", env.profile)
    assert r.code == 0, r.err
    assert "reconciled: removed container" in r.err and "reconciled: restarted release r0001" in r.err
    assert r.json()["id"] == "r0003"
    names = {c.name for c in env.containers()}
    assert f"ossctl-{env.profile}-r0002" not in names
    rels = {x["id"]: x for x in cli(env, "--json", "releases", "--profile", env.profile).json()["releases"]}
    assert rels["r0002"]["state"] == "interrupted" and rels["r0003"]["current"]
    assert answer(r.json()["endpoint"])["choices"]


@pytest.mark.anvil
def test_require_registered_checks_the_chain(serve_env, chain):
    env = serve_env
    _node, _addr, chain_env = chain
    env.write_profile(require_registered=True)
    both = {**env.env, **chain_env}
    r = run_cli("deploy", "-p", env.profile, env=both)
    assert r.code == 6 and "not registered on chain" in r.err and env.containers() == []
    r = run_cli("register", str(env.model_dir), "--yes", env=both)
    assert r.code == 0, r.err
    r = run_cli("--json", "deploy", "-p", env.profile, env=both)
    assert r.code == 0, r.err
    assert answer(r.json()["endpoint"])["choices"]


def test_api_key_travels_as_a_mounted_file(serve_env):
    import httpx

    env = serve_env
    key = "sk-test-" + "9f3a61c0d2e4b857"
    keyfile = env.home / "api.key"
    keyfile.write_text(key + "\n")
    keyfile.chmod(0o600)
    env.write_profile(api_key_file=str(keyfile))
    r = cli(env, "--json", "deploy", "-p", env.profile)
    assert r.code == 0, r.err
    rec = r.json()
    assert rec["api_key_file"] == str(keyfile) and key not in r.out + r.err
    url = rec["endpoint"] + "/v1/chat/completions"
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert httpx.post(url, json=body, trust_env=False, timeout=30).status_code == 401
    ok = httpx.post(url, json=body, headers={"Authorization": f"Bearer {key}"}, trust_env=False, timeout=30)
    assert ok.status_code == 200
    attrs = env.client.containers.get(rec["container_id"]).attrs
    assert key not in repr(attrs["Args"]) + repr(attrs["Config"]["Env"]) + repr(attrs["Config"]["Cmd"])
    assert "--api-key-file" in attrs["Args"]
    assert key not in cli(env, "--json", "releases", "--profile", env.profile).out + cli(env, "--json", "status").out


def test_bench_gate_decides_the_deploy(serve_env):
    env = serve_env
    env.write_profile(bench={"users": [1], "requests": 2, "max_tokens": 2, "sla": "errors<5%"})
    r = cli(env, "--json", "deploy", "-p", env.profile)
    assert r.code == 0, r.err
    first = r.json()
    # an SLA no server can meet (p95 below zero) fails the gate: the deploy is rolled back
    env.write_profile(bench={"users": [1], "requests": 2, "max_tokens": 2, "sla": "p95<0s"})
    r = cli(env, "deploy", "-p", env.profile)
    assert r.code == 7 and "bench gate failed" in r.err and "p95<0s" in r.err
    assert "hint: previous release r0001 is serving again" in r.err
    assert current(env)["release"] == "r0001" and answer(first["endpoint"])["choices"]
