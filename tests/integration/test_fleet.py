"""A fleet: one profile rolled across three real Docker engines (unix socket, tcp:// with
TLS through a `docker context`, ssh://), each in its own network namespace, behind one
front door (the default kind, HAProxy) on the ssh engine. Load runs through the front door
during a rolling deploy, one that fails on the third host and a rollback — a bench, clients
polling /health and streaming completions, with a CPU hog beside them: no request may fail."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.frontdoor_churn import clients

pytestmark = [pytest.mark.docker, pytest.mark.llama, pytest.mark.fleet]

KEY = "sk-fleet-test-key-123456"


def _context(cfg: Path, name: str, host: str, cert_path: str | None) -> None:
    """A docker CLI context in ``cfg`` (its on-disk format: meta.json + TLS files)."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = cfg / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Name": name, "Metadata": {},
                                                "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}}}))
    if cert_path:
        tls = cfg / "contexts" / "tls" / digest / "docker"
        tls.mkdir(parents=True)
        for f in ("ca.pem", "cert.pem", "key.pem"):
            shutil.copy(Path(cert_path) / f, tls / f)


class FleetSetup:
    def __init__(self, fleet, home: Path, model_dir: Path, tmp: Path):
        import tomli_w

        self.fleet, self.home, self.model_dir = fleet, home, model_dir
        self.cfg = tmp / "docker-config"
        tls = fleet.engine("tls")
        _context(self.cfg, "tlsbox", tls.docker_host, tls.env["DOCKER_CERT_PATH"])
        self.key_file = tmp / "api-key"
        self.key_file.write_text(KEY + "\n")
        self.key_file.chmod(0o600)
        self.port, self.fd_port = 18480, 18490
        self.fd = fleet.engine("ssh")
        self.name = fleet.profile
        self.hosts = [{"docker_host": e.docker_host if e.name != "tls" else "tlsbox", "upstream": e.addr,
                       "model": str(model_dir)} for e in fleet.engines]
        self.tomli_w = tomli_w
        self.write()

    def write(self, **over) -> None:
        doc = {"extends": "cpu", "image": self.fleet.llama_image, "model": str(self.model_dir), "ctx": 512,
               "host": "0.0.0.0", "port": self.port, "api_key_file": str(self.key_file), "health_timeout": 60,
               "batch": 64, "ubatch": 64, "strategy": "recreate", "keep_releases": 5,
               "frontdoor": {"host": "0.0.0.0", "port": self.fd_port, **_frontdoor_kind(self.fleet),
                             "docker_host": self.fd.docker_host},
               "hosts": self.hosts}
        doc.update(over)
        d = self.home / "profiles"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{self.name}.toml").write_text(self.tomli_w.dumps(doc))

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_CONFIG": str(self.cfg), "PATH": os.environ["PATH"]}

    @property
    def endpoint(self) -> str:
        return f"http://{self.fd.addr}:{self.fd_port}"

    def cli(self, *args):
        return run_cli(*args, env=self.env)

    def bench(self, seconds: int):
        return subprocess.Popen(
            [sys.executable, "-m", "ossctl", "--json", "bench", "--url", self.endpoint, "--users", "3",
             "--duration", f"{seconds}s", "--max-tokens", "8"],
            env={**os.environ, **self.env, "OSSCTL_API_KEY": KEY}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)


def _frontdoor_kind(fleet) -> dict[str, str]:
    """The default front door; OSSCTL_TEST_FRONTDOOR_KIND=caddy runs the same tests through
    Caddy (to show what the zero-loss assertions catch: see the closing note of issue 26)."""
    if os.environ.get("OSSCTL_TEST_FRONTDOOR_KIND") == "caddy":
        return {"kind": "caddy", "image": fleet.caddy_image}
    return {"image": fleet.frontdoor_image}


def _tally(phase: str, **counts) -> None:
    """Append this phase's request counts to $OSSCTL_TEST_TALLY_LOG when set (for repeated
    runs that report totals)."""
    log = os.environ.get("OSSCTL_TEST_TALLY_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"phase": phase, **counts}) + "\n")


def _bench_result(proc) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    rep = json.loads(out)
    return {"requests": sum(lv["requests"] for lv in rep["levels"]), "errors": sum(lv["errors"] for lv in rep["levels"])}


def _answer(url: str) -> dict:
    import httpx

    r = httpx.post(url + "/v1/chat/completions", trust_env=False, timeout=30, headers={"Authorization": f"Bearer {KEY}"},
                   json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
    r.raise_for_status()
    return r.json()


@pytest.fixture
def fs(fleet_llama, fleet_env, home, serve_model, tmp_path):
    s = FleetSetup(fleet_env, home, serve_model, tmp_path)
    yield s
    for e in fleet_env.engines:
        for c in e.client.containers.list(all=True, filters={"name": f"ossctl-lock-{s.name}"}):
            c.remove(force=True)
        for c in e.client.containers.list(all=True, filters={"name": f"ossctl-frontdoor-{s.name}"}):
            c.remove(force=True)


def test_rolling_deploy_and_failed_deploy_under_load_lose_no_request(fs):
    r = fs.cli("--json", "deploy", "-p", fs.name)
    assert r.code == 0, r.err
    res = r.json()
    assert [h["state"] for h in res["hosts"]] == ["updated"] * 3 and res["frontdoor"].endswith(f":{fs.fd_port}")
    assert _answer(fs.endpoint)["choices"]

    doc = {c["name"]: c for c in fs.cli("--json", "doctor", "-p", fs.name).json()["checks"]}
    assert doc["fleet"]["status"] == "PASS" and "3 hosts agree" in doc["fleet"]["detail"], doc["fleet"]

    # a second rollout of the same fleet while one holds the locks: refused, names the holder
    from ossctl.serve.docker_runtime import DockerRuntime
    from ossctl.serve.releases import Ledger

    with Ledger(DockerRuntime(fs.fleet.engine("ssh").docker_host)).lock(fs.name, "deploy"):
        r2 = fs.cli("deploy", "-p", fs.name)
    assert r2.code == 6 and f"profile {fs.name}" in r2.err and "is locked: deploy by" in r2.err, r2.err

    st = fs.cli("--json", "status", "-p", fs.name)
    assert st.code == 0, st.err
    rows = st.json()["releases"]
    assert sorted(r["docker_host"] for r in rows) == sorted(h["docker_host"] for h in fs.hosts)
    assert all(r["release"] == "r0001" and r["health"] == "ok" for r in rows)
    assert len({(r["build"], r["image_id"]) for r in rows}) == 1 and rows[0]["build"] and rows[0]["image_id"]
    # the history of every host in one table
    rel = fs.cli("--json", "releases", "-p", fs.name)
    assert rel.code == 0, rel.err
    assert sorted(r["docker_host"] for r in rel.json()["releases"]) == sorted(h["docker_host"] for h in fs.hosts)
    assert all(h["ok"] for h in rel.json()["hosts"])
    table = fs.cli("releases", "-p", fs.name).out
    assert table.splitlines()[0].split()[:2] == ["HOST", "ID"] and table.count("r0001") == 3, table

    # a rolling deploy while clients use the front door (a bench; /health pollers and
    # streaming clients beside a CPU hog): every request answered
    load = fs.bench(25)
    time.sleep(3)
    t0 = time.monotonic()
    with clients(fs.endpoint, api_key=KEY, hog_s=120) as polled:
        r = fs.cli("--json", "deploy", "-p", fs.name)
    wall = time.monotonic() - t0
    assert r.code == 0, r.err
    assert [h["release"] for h in r.json()["hosts"]] == ["r0002"] * 3
    b = _bench_result(load)
    _tally("rolling deploy", bench=b, clients=polled.to_dict())
    assert b["requests"] > 0 and b["errors"] == 0, (b, wall)
    assert polled.requests > 0 and polled.failed == 0, polled.to_dict()

    # host 3 cannot start its release (asks for a GPU its engine does not have): the fleet
    # goes back to r0002 everywhere, under load, with a per-host account
    bad = [dict(h) for h in fs.hosts]
    bad[2]["gpus"] = [0]
    fs.write(hosts=bad)
    load = fs.bench(25)
    time.sleep(3)
    with clients(fs.endpoint, api_key=KEY, hog_s=120) as polled:
        r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 7, r.err
    assert "rolled back" in r.err and "failed" in r.err
    b = _bench_result(load)
    _tally("failing deploy", bench=b, clients=polled.to_dict())
    assert b["requests"] > 0 and b["errors"] == 0, b
    assert polled.requests > 0 and polled.failed == 0, polled.to_dict()
    fs.write()
    rows = fs.cli("--json", "status", "-p", fs.name).json()["releases"]
    assert {r["source"] for r in rows} == {"r0002"} and all(r["health"] == "ok" for r in rows)

    # the whole fleet back to r0001, health-gated, through the front door, under load
    with clients(fs.endpoint, api_key=KEY, hog_s=120) as polled:
        r = fs.cli("--json", "rollback", "-p", fs.name)
    _tally("rollback", clients=polled.to_dict())
    assert r.code == 0, r.err
    assert polled.requests > 0 and polled.failed == 0, polled.to_dict()
    rows = fs.cli("--json", "status", "-p", fs.name).json()["releases"]
    assert {r["source"] for r in rows} == {"r0001"}
    assert _answer(fs.endpoint)["choices"]


def test_preflight_refuses_before_changing_anything(fs, tmp_path):
    # one byte changed in a part on one host (here: that host's model directory)
    changed = tmp_path / "changed-model"
    shutil.copytree(fs.model_dir, changed)
    part = sorted(changed.glob("*.gguf"))[-1]
    data = bytearray(part.read_bytes())
    data[-1] ^= 0xFF
    part.write_bytes(bytes(data))
    hosts = [dict(h) for h in fs.hosts]
    hosts[1]["model"] = str(changed)
    fs.write(hosts=hosts)
    r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 4 and "differs from the manifest" in r.err and part.name in r.err and "nothing was changed" in r.err
    for e in fs.fleet.engines:
        assert not e.client.containers.list(all=True, filters={"label": [f"ossctl.profile={fs.name}"]})
    doc = {c["name"]: c for c in fs.cli("--json", "doctor", "-p", fs.name).json()["checks"]}
    assert doc["fleet"]["status"] == "FAIL" and "differs from the manifest" in doc["fleet"]["detail"], doc["fleet"]

    # the image missing on one host
    fs.write(image="ossctl-test/absent:nope")
    r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 3 and "ossctl-test/absent:nope" in r.err and "nothing was changed" in r.err, r.err

    # an unreachable host: a clear line, quickly, nothing changed
    hosts = [dict(h) for h in fs.hosts] + [{"docker_host": "tcp://127.0.0.1:9", "model": str(fs.model_dir)}]
    fs.write(hosts=hosts)
    t0 = time.monotonic()
    r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 5 and "tcp://127.0.0.1:9" in r.err and time.monotonic() - t0 < 60, r.err


def test_remote_hash_is_kept_until_a_file_changes(fs, tmp_path):
    """A remote host's files are hashed there once; later deploys read their sizes and
    mtimes (no container) and hash again only what changed since."""
    mine = tmp_path / "model-on-tls"
    shutil.copytree(fs.model_dir, mine)
    hosts = [dict(h) for h in fs.hosts]
    hosts[1]["model"] = str(mine)
    fs.write(hosts=hosts)
    r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 0, r.err
    assert f"{mine}: hashed on the host, matches the manifest" in r.err, r.err
    r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 0, r.err
    assert f"{mine}: unchanged since it was hashed on the host" in r.err, r.err

    # one byte changed in place: same size, new mtime -> hashed again, refused, nothing changed
    part = sorted(mine.glob("*.gguf"))[0]
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x01
    part.write_bytes(bytes(data))
    r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 4 and f"{part.name} differs from the manifest" in r.err and "nothing was changed" in r.err, r.err
    rows = fs.cli("--json", "status", "-p", fs.name).json()["releases"]
    assert {r["release"] for r in rows} == {"r0002"}

    # a size that differs is refused from the stat alone
    part.write_bytes(bytes(data[:-1]))
    r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 4 and f"{part.name} differs from the manifest" in r.err and "bytes, expected" in r.err, r.err


def _on_start(engine, profile: str, release: str, action):
    """Run ``action()`` the moment ``engine`` starts the container of ``release``; returns
    the event stream (close it afterwards)."""
    import threading

    events = engine.client.events(decode=True, filters={"label": [f"ossctl.profile={profile}"], "event": ["start"]})

    def watch():
        for ev in events:
            if ev["Actor"]["Attributes"].get("ossctl.release") == release:
                action()
                return

    threading.Thread(target=watch, daemon=True).start()
    return events


def test_front_door_killed_mid_rollout_is_started_again(fs):
    r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 0, r.err
    door = fs.fd.client.containers.get(f"ossctl-frontdoor-{fs.name}")
    # killed while the second host's new release is starting
    events = _on_start(fs.fleet.engine("tls"), fs.name, "r0002", lambda: door.kill())
    r = fs.cli("deploy", "-p", fs.name)
    events.close()
    assert r.code == 0, r.err
    assert f"the front door ossctl-frontdoor-{fs.name}" in r.err and "starting it again with its last upstreams" in r.err
    assert "Traceback" not in r.err
    door.reload()
    assert door.status == "running"
    rows = fs.cli("--json", "status", "-p", fs.name).json()["releases"]
    assert {r["release"] for r in rows} == {"r0002"} and all(r["health"] == "ok" for r in rows)
    assert _answer(fs.endpoint)["choices"]


def test_ctrl_c_mid_rollout_leaves_the_fleet_on_one_version(fs):
    import signal

    r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 0, r.err
    proc = subprocess.Popen([sys.executable, "-m", "ossctl", "deploy", "-p", fs.name], env={**os.environ, **fs.env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Ctrl-C while the second host's new release is starting (the first one is updated),
    # and again while the first host's rollback release starts: the rollback goes on
    events = _on_start(fs.fleet.engine("tls"), fs.name, "r0002", lambda: proc.send_signal(signal.SIGINT))
    again = _on_start(fs.fleet.engine("unix"), fs.name, "r0001", lambda: proc.send_signal(signal.SIGINT))
    _, err = proc.communicate(timeout=300)
    events.close()
    again.close()
    assert "Ctrl-C: still rolling the fleet back to one version" in err, err
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("interrupted")]
    assert len(lines) == 1 and "rolled back" in lines[0], err
    rows = fs.cli("--json", "status", "-p", fs.name).json()["releases"]
    # every host serves what r0001 served (host 1 through a rollback release made from it)
    assert len(rows) == 3 and {r["source"] or r["release"] for r in rows} == {"r0001"}, \
        [(r["docker_host"], r["release"], r["source"], r.get("state")) for r in rows]
    assert all(r["health"] == "ok" for r in rows)
    assert _answer(fs.endpoint)["choices"]
    for e in fs.fleet.engines:  # no lock left behind
        assert not e.client.containers.list(all=True, filters={"name": f"ossctl-lock-{fs.name}"})


def test_single_host_deploy_to_a_remote_engine_is_gated_where_it_runs(fs):
    """A profile without [[hosts]] deployed to a remote engine (ssh://): the health gate and
    the recorded endpoint use that host's address, not this machine's loopback."""
    e = fs.fleet.engine("ssh")
    name = f"{fs.name}-one"
    doc = {"extends": "cpu", "image": fs.fleet.llama_image, "model": str(fs.model_dir), "ctx": 512, "host": "0.0.0.0",
           "port": fs.port + 5, "api_key_file": str(fs.key_file), "health_timeout": 60, "batch": 64, "ubatch": 64,
           "strategy": "recreate"}
    (fs.home / "profiles" / f"{name}.toml").write_text(fs.tomli_w.dumps(doc))
    try:
        r = fs.cli("--json", "deploy", "-p", name, "--docker-host", e.docker_host)
        assert r.code == 0, r.err
        assert r.json()["endpoint"] == f"http://{e.addr}:{fs.port + 5}"
        assert _answer(r.json()["endpoint"])["choices"]
    finally:
        for c in e.client.containers.list(all=True, filters={"label": [f"ossctl.profile={name}"]}):
            c.remove(force=True)


def test_host_unreachable_mid_rollout_rolls_the_fleet_back_and_the_door_keeps_serving(fs):
    """The second host's engine stops answering (its port rejects) while the first host's
    new release starts: that host fails in one line, the first is rolled back, clients of
    the front door see no failed request, and once the engine answers again the next
    deploy goes through (the lock left on it by a process that is gone is broken)."""
    if shutil.which("iptables") is None:
        pytest.fail("iptables is not installed (docker.io depends on it)")
    r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 0, r.err
    tls = fs.fleet.engine("tls")
    rule = ["OUTPUT", "-d", tls.addr, "-p", "tcp", "--dport", "2376", "-j", "REJECT", "--reject-with", "tcp-reset"]
    cut = []
    events = _on_start(fs.fleet.engine("unix"), fs.name, "r0002",
                       lambda: cut.append(subprocess.run(["iptables", "-I", *rule], check=True)))
    load = fs.bench(25)
    time.sleep(3)
    try:  # a process of its own: the lock it cannot give back on the cut engine names a pid that ends
        p = subprocess.run([sys.executable, "-m", "ossctl", "deploy", "-p", fs.name], env={**os.environ, **fs.env},
                           capture_output=True, text=True, timeout=300)
    finally:
        events.close()
        if cut:
            subprocess.run(["iptables", "-D", *rule], check=True)
    b = _bench_result(load)
    assert cut, "the first host's release never started"
    assert p.returncode == 7 and "Traceback" not in p.stderr, p.stderr
    assert "tlsbox: failed" in p.stderr and "rolled back" in p.stderr, p.stderr
    assert "could not release the lock of profile" in p.stderr, p.stderr
    assert b["requests"] > 0 and b["errors"] == 0, b
    rows = fs.cli("--json", "status", "-p", fs.name).json()["releases"]
    assert len(rows) == 3 and {r["source"] or r["release"] for r in rows} == {"r0001"}, \
        [(r["docker_host"], r["release"], r["source"]) for r in rows]
    r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 0 and "broke a stale lock" in r.err, r.err
