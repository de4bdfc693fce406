"""The engine-side deploy lock and the processes that hold it: a holder in another PID
namespace on this machine (a CI job in a container with the host's network: same hostname,
same boot id, other pids) is never presumed dead, and `unlock` refuses to break a lock whose
holder provably still runs here unless --force. Real engine, real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
HOLD = """
import sys
from ossctl.serve.docker_runtime import DockerRuntime
from ossctl.serve.releases import Ledger
with Ledger(DockerRuntime(sys.argv[1])).lock(sys.argv[2], "deploy"):
    print("held", flush=True)
    sys.stdin.read()
"""


def hold_lock(docker_host: str, profile: str, prefix: list[str] = ()) -> subprocess.Popen:
    """A process (under ``prefix``, e.g. unshare) holding ``profile``'s lock until its stdin closes."""
    p = subprocess.Popen([*prefix, sys.executable, "-c", HOLD, docker_host, profile], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = p.stdout.readline()
    assert line.strip() == "held", p.stderr.read()
    return p


def release(p: subprocess.Popen) -> None:
    _, err = p.communicate("", timeout=60)
    assert p.returncode == 0, err


def lock_id(client, profile: str) -> str | None:
    cs = client.containers.list(all=True, filters={"name": f"ossctl-lock-{profile}"})
    return cs[0].id if cs else None


@pytest.fixture
def profile(docker_client):
    name = "lk" + uuid.uuid4().hex[:8]
    yield name
    for c in docker_client.containers.list(all=True, filters={"name": f"ossctl-lock-{name}"}):
        c.remove(force=True)


def test_a_holder_in_another_pid_namespace_keeps_its_lock(home, docker_host, docker_client, profile):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        if os.environ.get("CI"):
            pytest.fail("needs root and unshare (util-linux)")
        pytest.skip("needs root and unshare")
    # pid 1 of its own namespace: here, pid 1 is init, started at another time
    holder = hold_lock(docker_host, profile, ["unshare", "--pid", "--fork", "--mount-proc"])
    try:
        held = lock_id(docker_client, profile)
        r = run_cli("rollback", "--profile", profile, env={"DOCKER_HOST": docker_host})
        assert r.code == 6, r.err
        lines = r.err.strip().splitlines()
        assert lines[0].startswith(f"error: profile {profile} on ") and "is locked: deploy by " in lines[0]
        assert "(pid 1)" in lines[0] and "Traceback" not in r.err and "broke a stale lock" not in r.err
        assert lock_id(docker_client, profile) == held  # nothing lost: the holder still holds it
    finally:
        release(holder)
    assert lock_id(docker_client, profile) is None  # given back by its holder


def test_unlock_refuses_a_holder_alive_on_this_machine_unless_forced(home, docker_host, docker_client, profile):
    holder = hold_lock(docker_host, profile)
    env = {"DOCKER_HOST": docker_host}
    try:
        held = lock_id(docker_client, profile)
        r = run_cli("unlock", "--profile", profile, env=env)
        assert r.code == 6, r.err
        lines = r.err.strip().splitlines()
        assert lines[0] == (f"error: profile {profile} on {docker_host} is locked by a process that is still running "
                            f"on this machine: deploy by {lines[0].split('deploy by ', 1)[1]}")
        assert f"(pid {holder.pid})" in lines[0] and "--force" in r.err and "Traceback" not in r.err
        assert lock_id(docker_client, profile) == held
        r = run_cli("--json", "unlock", "--profile", profile, "--force", env=env)
        assert r.code == 0, r.err
        assert r.json()["holder"]["pid"] == holder.pid and lock_id(docker_client, profile) is None
    finally:
        release(holder)  # its own give-back finds the lock gone: fine


def test_unlock_breaks_the_lock_of_a_dead_holder(home, docker_host, docker_client, profile):
    holder = subprocess.Popen([sys.executable, "-c", HOLD.replace('sys.stdin.read()', 'import os; os._exit(0)'),
                               docker_host, profile], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    holder.wait(timeout=60)  # exited without giving the lock back
    assert lock_id(docker_client, profile) is not None
    r = run_cli("unlock", "--profile", profile, env={"DOCKER_HOST": docker_host})
    assert r.code == 0 and f"broke the lock of profile {profile}" in r.out and f"(pid {holder.pid})" in r.out, r.err
    assert lock_id(docker_client, profile) is None
