"""Fleet faults of issue 26 (items 13, 14, 26, 27), on the three real engines of
tests/plugins/fleet_engines.py: an engine SIGKILLed mid-rollout, a fleet rollback with no
previous release, one engine listed twice in ``[[hosts]]``, a release image without
``sha256sum`` on a remote host, and the host prefix on a fleet rollback's lines. Each
asserts the exit code, one clear line, and that nothing was lost."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.test_fleet import _answer, _on_start, fs  # noqa: F401 - fs is the fixture
from tests.support.cli import run_proc

pytestmark = [pytest.mark.docker, pytest.mark.llama, pytest.mark.fleet]


def _error_and_hint(err: str) -> tuple[str, str]:
    """The one ``error:`` line and the one ``hint:`` line of stderr (log lines aside)."""
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    hints = [ln for ln in err.splitlines() if ln.startswith("hint:")]
    assert len(errors) == 1 and len(hints) <= 1 and "Traceback" not in err, err
    return errors[0], (hints[0] if hints else "")


def _rows(fs) -> dict[str, dict]:
    r = fs.cli("--json", "status", "-p", fs.name)
    assert r.code == 0, r.err
    return {row["docker_host"]: row for row in r.json()["releases"]}


def _no_trace_of(fs) -> None:
    """Nothing of the profile on any engine (no release container, no lock left)."""
    for e in fs.fleet.engines:
        assert not e.client.containers.list(all=True, filters={"label": [f"ossctl.profile={fs.name}"]}), e.name
        assert not e.client.containers.list(all=True, filters={"name": f"ossctl-lock-{fs.name}"}), e.name


@contextlib.contextmanager
def _killed_engine(fs, name: str):
    """Yields a function that SIGKILLs the dockerd of engine ``name``; afterwards the
    daemon is started again the same way (same namespace, same arguments), so the other
    tests of the session keep their fleet."""
    e = fs.fleet.engine(name)
    pid = int((Path(e.socket.removeprefix("unix://")).parent / "pid").read_text())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    killed = []

    def kill() -> None:
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    try:
        yield kill
    finally:
        if killed:
            for _ in range(200):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.05)
            log = open(Path(e.socket.removeprefix("unix://")).parent / "dockerd.log", "ab")  # noqa: SIM115
            subprocess.Popen(["nsenter", f"--net=/var/run/netns/{e.netns}", *[a.decode() for a in argv]],
                             stdout=log, stderr=log, start_new_session=True)
            log.close()
            for _ in range(240):
                with contextlib.suppress(Exception):
                    if e.client.ping():
                        break
                time.sleep(0.5)
            else:
                pytest.fail(f"the {name} engine did not come back")


def test_engine_killed_mid_rollout_hint_says_which_host_serves_nothing(fs):
    """Item 13: the tls host's dockerd is SIGKILLed while its new release starts. The fleet
    is rolled back where it can be; the hint does not claim the previous release serves
    everywhere, it names the host that serves nothing and the command that serves there
    again, and that command does, once the engine is back."""
    r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 0, r.err
    with _killed_engine(fs, "tls") as kill:
        events = _on_start(fs.fleet.engine("tls"), fs.name, "r0002", kill)
        # a process of its own: the lock it cannot give back on the dead engine names a pid that ends
        r = run_proc("deploy", "-p", fs.name, env=fs.env)
        with contextlib.suppress(Exception):
            events.close()
        assert r.code == 7, r.err
        line, hint = _error_and_hint(r.err)
        assert "tlsbox: failed" in line and "rolled back" in line, line
        assert "everywhere" not in hint, hint
        assert "tlsbox serves nothing (its engine does not answer)" in hint, hint
        assert "the other hosts serve" in hint, hint
        assert f"`ossctl deploy --profile {fs.name}` serves there again once tlsbox answers" in hint, hint
    # the engine is back; its release stayed down (killed with it, or stopped by the step)
    rows = _rows(fs)
    assert len(rows) == 3 and rows["tlsbox"]["health"] == "down", rows
    assert all(row["health"] == "ok" for h, row in rows.items() if h != "tlsbox"), rows
    assert {row["source"] or row["release"] for h, row in rows.items() if h != "tlsbox"} == {"r0001"}, rows
    # the command the hint names serves there again (the dead process's lock is broken)
    r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 0, r.err
    rows = _rows(fs)
    assert len(rows) == 3 and all(row["health"] == "ok" for row in rows.values()), rows
    assert _answer(fs.endpoint)["choices"]


def test_fleet_rollback_without_previous_release_exits_3_and_lines_carry_the_host(fs):
    """Item 13: with one release only, a fleet rollback is exit 3 (as one engine's) before
    anything changes. Item 27: a fleet rollback's log lines carry the host, as deploy's do."""
    r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 0, r.err
    before = {e.name: sorted(c.id for c in e.client.containers.list(
        all=True, filters={"label": [f"ossctl.profile={fs.name}"]})) for e in fs.fleet.engines}
    r = fs.cli("rollback", "-p", fs.name)
    assert r.code == 3, r.err
    line, hint = _error_and_hint(r.err)
    assert "no previous release" in line and "nothing was changed" in line and "refused on 3 of 3 hosts" in line, line
    assert f"`ossctl releases --profile {fs.name}`" in hint, hint
    after = {e.name: sorted(c.id for c in e.client.containers.list(
        all=True, filters={"label": [f"ossctl.profile={fs.name}"]})) for e in fs.fleet.engines}
    assert after == before
    rows = _rows(fs)
    assert {row["release"] for row in rows.values()} == {"r0001"} and all(row["health"] == "ok" for row in rows.values())
    for e in fs.fleet.engines:
        assert not e.client.containers.list(all=True, filters={"name": f"ossctl-lock-{fs.name}"})
    assert _answer(fs.endpoint)["choices"]

    # a second release, then a rollback that works: every line about a host names it
    r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 0, r.err
    r = fs.cli("rollback", "-p", fs.name)
    assert r.code == 0, r.err
    hosts = [h["docker_host"] for h in fs.hosts]
    steps = [ln for ln in r.err.splitlines() if "release r0001" in ln]
    assert steps, r.err
    assert all(any(ln.startswith(f"[{h}] ") or ln.startswith(f"{h}: ") for h in hosts) for ln in steps), r.err
    for h in hosts:
        assert f"[{h}] starting the kept container of release r0001" in r.err, r.err
        assert f"{h}: release r0003 (r0001) serves at" in r.err, r.err
    assert {row["source"] for row in _rows(fs).values()} == {"r0001"}


def test_same_engine_listed_twice_is_refused_naming_both_entries(fs):
    """Item 14: the tls engine as its context name and again as its unix socket. The three
    fleet engines share docker 20.10's key.json ID, so this also shows distinct engines on
    one machine are not taken for one."""
    tls = fs.fleet.engine("tls")
    hosts = [dict(h) for h in fs.hosts] + [{"docker_host": tls.socket, "upstream": tls.addr,
                                             "model": str(fs.model_dir)}]
    fs.write(hosts=hosts)
    t0 = time.monotonic()
    r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 2, r.err
    line, hint = _error_and_hint(r.err)
    assert f"entries 2 (tlsbox) and 4 ({tls.socket}) reach the same Docker engine" in line, line
    assert "nothing was changed" in line and "list each engine once" in hint, (line, hint)
    assert time.monotonic() - t0 < 120
    _no_trace_of(fs)
    r = fs.cli("rollback", "-p", fs.name)
    assert r.code == 2 and "reach the same Docker engine" in r.err, r.err
    _no_trace_of(fs)


def test_remote_image_without_sha256sum_is_one_line(fs, tmp_path):
    """Item 26: the release image on a remote host has no sha256sum: one line saying what
    the image needs (not runc's message), exit 2, nothing changed."""
    from tests.plugins.docker_engine import import_image, llama_server_binary, rootfs_tar

    server = llama_server_binary()
    tar = rootfs_tar({"app/llama-server": server}, dirs={"tmp": 0o1777, "app": 0o755})
    image = "ossctl-test/llama-nosum:1"
    for e in fs.fleet.engines:
        import_image(e.client, tar, image, ['ENTRYPOINT ["/app/llama-server"]', "ENV PATH=/usr/bin:/bin"], "nosum-1")
    mine = tmp_path / "model-on-tls"  # never hashed on that host: the preflight must hash it
    shutil.copytree(fs.model_dir, mine)
    hosts = [dict(h) for h in fs.hosts]
    hosts[1]["model"] = str(mine)
    fs.write(hosts=hosts, image=image)
    r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 2, r.err
    line, hint = _error_and_hint(r.err)
    assert f"the image {image} has no `sha256sum`" in line and "tlsbox" in line, line
    assert "nothing was changed" in line and "executable file not found" not in r.err and "OCI" not in r.err, r.err
    assert "sha256sum on its PATH" in hint, hint
    _no_trace_of(fs)

