"""Trials (ossctl/serve/trial.py) on a real Docker engine with the real CPU llama-server
image and the tiny model: started, gated, measured, always removed (on return, on a gate
failure, on Ctrl-C, after kill -9 by the next trial), never in the ledger, never on a
profile's port."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import docker.errors
import pytest

from ossctl.errors import ConflictError, Interrupted, TrialError, UsageError
from ossctl.gpu.fake import FakeNvml
from ossctl.serve.releases import process_owner
from ossctl.serve.trial import Trial, reap_trials, run_trial
from tests.plugins.docker_engine import answer
from tests.support.cli import run_cli

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


def _inputs(env):
    """(settings, runtime, resolved profile, manifest, model dir) as deploy finds them."""
    from ossctl.artifacts.manifest import locate_model_dir, read_manifest
    from ossctl.serve.docker_runtime import DockerRuntime
    from ossctl.serve.profiles import resolve_profile
    from ossctl.settings import load_settings

    settings = load_settings({**os.environ, **env.env})
    profile = resolve_profile(settings, env.profile)
    model_dir = locate_model_dir(settings, profile["model"]).resolve()
    return settings, DockerRuntime(env.docker_host, dict(settings.env)), profile, read_manifest(model_dir), model_dir


def trials(env):
    """This test's trial containers (those of its profile)."""
    return env.client.containers.list(all=True, filters={"label": ["ossctl.role=trial",
                                                                   f"ossctl.trial.profile={env.profile}"]},
                                      ignore_removed=True)


def _remove(containers):
    for c in containers:
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)


def _leftover(env, key: str, owner: dict):
    """A trial container as an ossctl process ``owner`` would have left it (created, not started)."""
    return env.client.containers.create(env.image, ["--version"], name=f"ossctl-trial-{env.profile}-{key}",
                                        labels={"ossctl.role": "trial", "ossctl.trial.owner": json.dumps(owner),
                                                "ossctl.trial.profile": env.profile})


def _ledger_view(env):
    rel = run_cli("--json", "releases", "--profile", env.profile, env=env.env)
    st = run_cli("--json", "status", "--profile", env.profile, env=env.env)
    assert rel.code == 0 and st.code == 0, rel.err + st.err
    return rel.json(), [(r["release"], r["container"], r["health"], r["leftovers"]) for r in st.json()["releases"]]

def _staged_owners() -> tuple[dict[str, dict], subprocess.Popen]:
    """Trial owners as other processes would have left them: a pid that is gone, a live
    process (returned: the caller kills it), and the same pid on another machine."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen(["sleep", "300"])
    alive_start = Path(f"/proc/{alive.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    me = process_owner()
    return {"dead": {**me, "pid": gone.pid, "start": "1"}, "live": {**me, "pid": alive.pid, "start": alive_start},
            "remote": {**me, "owner": "ops@another-machine", "pid": gone.pid}}, alive



def test_trial_starts_gates_measures_and_is_removed_leaving_the_ledger_alone(serve_env, capsys):
    env = serve_env
    r = run_cli("--json", "deploy", "-p", env.profile, env=env.env)
    assert r.code == 0, r.err
    release = r.json()
    before = _ledger_view(env)
    assert before[1] == [("r0001", "running", "ok", [])]
    settings, rt, profile, manifest, model_dir = _inputs(env)
    capsys.readouterr()

    t0 = time.time()
    logs: list[str] = []
    with Trial(settings, rt, profile, manifest, model_dir, overrides={"parallel": 2, "ubatch": 32},
               log=logs.append) as t:
        (c,) = trials(env)
        assert c.name == t.name and c.status == "running"
        assert "ossctl.managed" not in c.labels and "ossctl.release" not in c.labels
        assert "ossctl.profile" not in c.labels and c.labels["ossctl.trial.profile"] == env.profile
        assert json.loads(c.labels["ossctl.trial.owner"])["pid"] == os.getpid()
        assert c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "no"
        assert t.port != env.port and t.url == f"http://127.0.0.1:{t.port}"
        assert answer(t.url)["choices"] and answer(release["endpoint"])["choices"]  # both serve, side by side
        assert _ledger_view(env) == before  # status and releases do not see it

        # NVML per process through the backend interface: the fake says which pid of
        # which container holds what (the real one reads /proc/PID/cgroup)
        fake = FakeNvml({"driver": "550", "gpus": [
            {"name": "H100", "uuid": "GPU-0", "total": 80 << 30, "used": 9 << 30,
             "processes": [[4242, 7 << 30, "compute"], [5151, 1 << 30, "compute"]]},
            {"name": "H100", "uuid": "GPU-1", "total": 80 << 30, "used": 3 << 30,
             "processes": [[4242, 2 << 30, "compute"]]}],
            "proc": {"4242": {"comm": "llama-server", "cgroup": f"0::/system.slice/docker-{c.id}.scope"},
                     "5151": {"comm": "python3", "cgroup": "0::/user.slice"}}})
        assert t.measure_vram(fake) == {0: 7 << 30, 1: 2 << 30}

        b = t.bench({"users": [1, 2], "requests": 3, "max_tokens": 4})
        assert [(lv.users, lv.requests, lv.errors) for lv in b.levels] == [(1, 3, 0), (2, 3, 0)]
        assert b.sla_ok and b.sla == "errors<5%" and all(lv.rpm > 0 and lv.latency_p50_s for lv in b.levels)
        res = t.result()
    assert trials(env) == []
    assert res.container == t.name and res.port == t.port and res.profile == env.profile
    assert res.overrides == {"parallel": 2, "ubatch": 32}
    assert res.argv[res.argv.index("-np") + 1] == "2" and res.argv[res.argv.index("-ub") + 1] == "32"
    assert res.docker_run.startswith(f"docker run -d --name {t.name} --restart no -p 127.0.0.1:{t.port}:")
    assert res.props["slots"] == 2 and res.build and res.image_id.startswith("sha256:")
    g = res.gate
    assert 0 < g.start_s < g.healthy_s and g.healthy_s == pytest.approx(g.start_s + g.ready_s, abs=0.002)
    assert res.vram == {0: 7 << 30, 1: 2 << 30} and res.bench == b
    json.dumps(res.to_dict())

    # nothing in the ledger, no lock taken: the engine created the trial container only
    # (and maybe a --help probe), never a lock or a ledger record
    created = [e["Actor"]["Attributes"].get("name") for e in env.client.events(
        since=int(t0) - 1, until=int(time.time()) + 1, decode=True, filters={"type": "container", "event": "create"})
        if e["timeNano"] >= t0 * 1e9]
    assert t.name in created and not [n for n in created if n.startswith(("ossctl-lock-", "ossctl-ledger"))]
    assert _ledger_view(env) == before
    assert answer(release["endpoint"])["choices"]
    assert capsys.readouterr() == ("", "")  # the library never prints: all of it went to log
    assert logs[0].startswith(f"trial: starting {t.name} from {env.image} on {t.url} (parallel=2, ubatch=32)")
    assert f"trial: removed {t.name}" in logs and any(ln.startswith("healthy after") for ln in logs)


def test_gate_failure_removes_the_container_and_says_why(serve_env):
    settings, rt, profile, manifest, model_dir = _inputs(serve_env)
    with pytest.raises(TrialError) as e:
        run_trial(settings, rt, profile, manifest, model_dir, overrides={"extra_args": ["--no-such-flag"]})
    msg = e.value.message
    assert msg.startswith(f"trial of profile '{serve_env.profile}' with extra_args=['--no-such-flag'] failed: "
                          "the container exited while loading (exit code 1)"), msg
    assert "--no-such-flag" in msg.split("last log lines:", 1)[1]
    assert e.value.exit_code == 7 and "its container was removed" in e.value.hint
    assert trials(serve_env) == []


def test_ctrl_c_mid_gate_removes_it(serve_env):
    env = serve_env
    settings, rt, profile, manifest, model_dir = _inputs(env)
    events = env.client.events(decode=True, filters={"label": ["ossctl.role=trial"], "event": ["start"]})
    seen: list[str] = []

    def ctrl_c_on_start():
        for ev in events:
            seen.append(ev["Actor"]["Attributes"]["name"])
            os.kill(os.getpid(), signal.SIGINT)
            return

    threading.Thread(target=ctrl_c_on_start, daemon=True).start()
    logs: list[str] = []
    try:
        with pytest.raises(Interrupted, match=r"^interrupted: trial of profile .* stopped; its container was removed$"):
            with Trial(settings, rt, profile, manifest, model_dir, log=logs.append):
                pytest.fail("the trial passed its gate before Ctrl-C arrived")
    finally:
        events.close()
    assert seen and trials(env) == []
    assert not any(ln.startswith("healthy after") for ln in logs) and f"trial: removed {seen[0]}" in logs


CHILD = textwrap.dedent("""
    import os, sys, time
    from ossctl.artifacts.manifest import locate_model_dir, read_manifest
    from ossctl.serve.docker_runtime import DockerRuntime
    from ossctl.serve.profiles import resolve_profile
    from ossctl.serve.trial import Trial
    from ossctl.settings import load_settings

    s = load_settings()
    p = resolve_profile(s, sys.argv[1])
    d = locate_model_dir(s, p["model"]).resolve()
    with Trial(s, DockerRuntime(os.environ["DOCKER_HOST"], dict(s.env)), p, read_manifest(d), d) as t:
        print(t.name, flush=True)
        time.sleep(600)
""")


def test_leftovers_of_dead_owners_are_reaped_by_the_next_trial_live_ones_are_not(serve_env):
    env = serve_env
    settings, rt, profile, manifest, model_dir = _inputs(env)
    # a real ossctl process killed with -9 while its trial runs
    child = subprocess.Popen([sys.executable, "-c", CHILD, env.profile], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, **env.env, "PYTHONPATH": str(ROOT)})
    killed = child.stdout.readline().strip()
    child.kill()
    child.wait(30)
    assert killed.startswith("ossctl-trial-") and [c.name for c in trials(env)] == [killed]

    # and containers as other owners left them: a pid that is gone, a live process, another machine
    owners, alive = _staged_owners()
    made = {k: _leftover(env, k, o) for k, o in owners.items()}
    try:
        logs: list[str] = []
        res = run_trial(settings, rt, profile, manifest, model_dir, log=logs.append)
        left = sorted(c.name for c in trials(env))
        assert left == sorted([made["live"].name, made["remote"].name])
        assert f"trial: removed leftover {killed} (its owner {owners['dead']['owner']} pid {child.pid} is gone)" in logs
        assert any(ln.startswith(f"trial: removed leftover {made['dead'].name}") for ln in logs)
        assert res.container not in left
        # doctor-style: reaping on its own, nothing more to remove, the live owner's kept with why
        r = reap_trials(rt)
        assert r.removed == () and dict(r.kept)[made["live"].name] == f"owner {owners['live']['owner']} pid {alive.pid} is alive"
        assert "another machine" in dict(r.kept)[made["remote"].name]
    finally:
        alive.kill()
        _remove(made.values())


def test_refuses_a_profiles_port_and_a_busy_one(serve_env):
    env = serve_env
    settings, rt, profile, manifest, model_dir = _inputs(env)
    with pytest.raises(UsageError, match=f"port {env.port} is a port of profile '{env.profile}': a trial never runs there"):
        with Trial(settings, rt, profile, manifest, model_dir, port=env.port):
            pass
    with pytest.raises(UsageError, match="port 8080 is a port of profile"):  # a shipped profile's
        run_trial(settings, rt, profile, manifest, model_dir, port=8080)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        with pytest.raises(ConflictError, match=f"port {busy} on 127.0.0.1 is busy"):
            run_trial(settings, rt, profile, manifest, model_dir, port=busy)
    assert trials(env) == []


def test_doctor_removes_dead_owners_trials_and_names_the_ones_it_cannot_judge(serve_env, monkeypatch):
    env = serve_env
    monkeypatch.setenv("DOCKER_HOST", env.docker_host)
    owners, alive = _staged_owners()
    made = {k: _leftover(env, k, o) for k, o in owners.items()}
    try:
        r = run_cli("--json", "doctor")
        row = next(c for c in r.json()["checks"] if c["name"] == "trials")
        assert row["status"] == "WARN", row
        assert row["detail"].startswith(f"removed 1 left by ossctl processes that are gone ({made['dead'].name}); "
                                        f"trial containers whose owner cannot be checked from here: "
                                        f"{made['remote'].name} (owned on another machine or boot"), row
        assert "docker rm -f NAME" in row["fix"]
        assert sorted(c.name for c in trials(env)) == sorted([made["live"].name, made["remote"].name])
    finally:
        alive.kill()
        _remove(made.values())
