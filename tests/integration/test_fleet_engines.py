"""Three real Docker engines (unix socket, tcp:// with TLS, ssh://), each in its own
network namespace: ossctl's DockerRuntime reaches each one the way the docker CLI does,
and a refused key or certificate is one clear line with exit 5."""

from __future__ import annotations

import pytest

from ossctl.errors import EXIT_REMOTE, RemoteError
from tests.support.cli import run_cli

pytestmark = [pytest.mark.docker, pytest.mark.fleet]


def test_each_engine_is_reached_its_own_way_and_is_its_own_engine(fleet_env):
    roots = set()
    subnets = set()
    for e in fleet_env.engines:
        with e.runtime() as rt:
            assert rt.engine_info()["version"]
            # the engine ossctl reached through ssh/tls is the one behind that namespace's
            # socket (engines on one machine share /etc/docker/key.json, so not the ID)
            assert rt.client.info()["DockerRootDir"] == e.client.info()["DockerRootDir"]
        roots.add(e.client.info()["DockerRootDir"])
        bridge = e.client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Subnet"]
        subnets.add(bridge)
        assert bridge.startswith("10.216.")
    assert len(roots) == 3 and len(subnets) == 3
    assert [e.docker_host.split("://")[0] for e in fleet_env.engines] == ["unix", "tcp", "ssh"]


def test_a_container_on_one_engine_is_reached_from_the_root_namespace(fleet_env):
    """What the fleet needs: a port one engine publishes is reachable at its address."""
    e = fleet_env.engine("tls")
    with e.runtime() as rt:
        spec = {"name": f"flt-{fleet_env.profile}", "image": fleet_env.caddy_image,
                "command": ["caddy", "respond", "--listen", ":8099", "hello from {system.hostname}"],
                "ports": {"8099/tcp": ["0.0.0.0", 18099]}, "labels": fleet_env.labels}
        rt.run(spec)
        import time

        import httpx

        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"http://{e.addr}:18099/", trust_env=False, timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert r.status_code == 200 and r.text.startswith("hello from")


def test_wrong_tls_certificate_is_one_line_exit_5(fleet_env, home, monkeypatch):
    e = fleet_env.engine("tls")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", fleet_env.wrong_cert_path)
    r = run_cli("status", "--docker-host", e.docker_host)
    assert r.code == EXIT_REMOTE, r.err
    first = r.err.splitlines()[0]
    assert first.startswith("error: TLS with the Docker daemon at tcp://") and "certificate verify failed" in first
    assert "Traceback" not in r.err and len(r.err.strip().splitlines()) == 2  # error + hint


def test_tls_engine_without_tls_settings_says_so(fleet_env):
    from ossctl.serve.docker_runtime import DockerRuntime

    with pytest.raises(RemoteError, match="speaks TLS only"):
        DockerRuntime(fleet_env.engine("tls").docker_host, {}, timeout=10)


def test_refused_ssh_key_is_one_line_exit_5(fleet_env, home, monkeypatch, request):
    import shutil
    import tempfile

    e = fleet_env.engine("ssh")
    # a fresh place for ssh control sockets: the multiplexed connection an earlier test
    # opened with the accepted key stays up for 60 s and would carry this login too
    control = tempfile.mkdtemp(prefix="ossk", dir="/tmp")  # short: a socket path has 108 bytes
    request.addfinalizer(lambda: shutil.rmtree(control, ignore_errors=True))
    monkeypatch.setattr(tempfile, "tempdir", control)
    monkeypatch.setenv("PATH", f"{fleet_env.wrong_ssh_bin}:{fleet_env.ssh_bin}:/usr/bin:/bin:/usr/sbin:/sbin")
    r = run_cli("status", "--docker-host", e.docker_host)
    assert r.code == EXIT_REMOTE, r.err
    lines = r.err.strip().splitlines()
    assert lines[0] == f"error: ssh to root@{e.addr} failed: Permission denied (publickey)."
    assert lines[1].startswith("hint: ") and len(lines) == 2


def test_ssh_engine_through_the_cli(fleet_env, home):
    # this test's profile: the engine's ledger also holds what other fleet tests deployed
    r = run_cli("--json", "status", "--docker-host", fleet_env.engine("ssh").docker_host, "-p", fleet_env.profile)
    assert r.code == 0, r.err
    assert r.json()["releases"] == [] and r.json()["docker_host"] == fleet_env.engine("ssh").docker_host


@pytest.mark.llama
def test_front_door_on_the_ssh_engine_balances_and_drains_over_the_other_two(fleet_llama, fleet_env, serve_model):
    """The fleet's shape: llama-server on two engines (published on their fleet address),
    the front door (the default kind) on a third, driven over ssh://; its admin API stays
    off the network."""
    from ossctl.fleet.frontdoor import DEFAULT_KIND, open_frontdoor
    from ossctl.fleet.frontdoor.base import FrontDoorSpec, Upstream
    from tests.plugins.frontdoor import chat_many, start_llama, tokens_predicted, wait_healthy

    ups = []
    for name in ("unix", "tls"):
        e = fleet_env.engine(name)
        start_llama(e.client, fleet_env.llama_image, serve_model, 18080, f"fll-{fleet_env.profile}-{name}",
                    fleet_env.labels, bind="0.0.0.0")
        ups.append(f"http://{e.addr}:18080")
    for u in ups:
        wait_healthy(u)
    door = fleet_env.engine("ssh")
    spec = FrontDoorSpec(fleet_env.profile, 18090, host="0.0.0.0", admin_port=18091, image=fleet_env.frontdoor_image,
                         kind=DEFAULT_KIND)
    with door.runtime() as rt:
        fd = open_frontdoor(rt, spec)
        st = fd.ensure([Upstream(u) for u in ups])
        assert st.docker_host == door.docker_host and [u.url for u in st.upstreams] == ups
        endpoint = f"http://{door.addr}:18090"
        before = [tokens_predicted(u) for u in ups]
        chat_many(endpoint, 8, max_tokens=200)
        assert all(tokens_predicted(u) > b for u, b in zip(ups, before))

        res = fd.drain(ups[0], timeout=30)
        assert res.in_flight_at_start == 0
        before = [tokens_predicted(u) for u in ups]
        chat_many(endpoint, 4)
        assert tokens_predicted(ups[0]) == before[0] and tokens_predicted(ups[1]) > before[1]

    # the admin API is not reachable from outside the engine host
    import httpx

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{door.addr}:18091/config/", trust_env=False, timeout=3)


def test_ssh_keeps_one_connection_and_execs_without_a_new_one(fleet_env, monkeypatch):
    """Over ssh:// every new connection is an ssh session plus `docker system dial-stdio`
    on the host: ordinary requests reuse one, and an exec in a container with sh (its
    output read back through the archive API) needs none of its own."""
    from docker.transport import sshconn

    e = fleet_env.engine("ssh")
    with e.runtime() as rt:
        opened = []
        original = sshconn.SSHSocket.connect
        monkeypatch.setattr(sshconn.SSHSocket, "connect", lambda self, **kw: (opened.append(1), original(self, **kw)))
        name = f"flx-{fleet_env.profile}"
        rt.run({"name": name, "image": fleet_env.caddy_image, "command": ["caddy", "run"],
                "labels": fleet_env.labels})
        for _ in range(5):
            assert rt.find(name)["running"]
        code, out, err = rt.exec(name, ["sh", "-c", 'echo "out $1"; echo "err $KEYV" >&2; exit 3', "x", "arg1"],
                                 env={"KEYV": "v1"})
        assert (code, out, err) == (3, b"out arg1\n", b"err v1\n")
        code, out, _ = rt.exec(name, ["sh", "-c", "ls -a /tmp"])
        assert code == 0 and out.count(b".ossctl-exec-") == 1  # the previous exec's files were removed
        assert len(opened) <= 1, f"{len(opened)} ssh connections for 9 requests and two execs"
        rt.remove(name)


def test_reads_are_the_sdks_records_on_every_transport(fleet_env):
    """The read path (no SDK) over the unix socket, tcp+TLS and ssh:// gives what the SDK
    reads on the engine's own socket: containers never started, running and exited, the
    ledger-style archive read, image, engine."""
    from tests.support.engine_reads import same_reads

    for e in fleet_env.engines:
        labels = {**fleet_env.labels, "ossctl.test.transport": e.name}
        made = [e.client.containers.create(fleet_env.caddy_image, ["caddy", "version"], name=f"rp-c-{e.name}-{fleet_env.profile}",
                                           labels=labels),
                e.client.containers.run(fleet_env.caddy_image, ["caddy", "run"], name=f"rp-r-{e.name}-{fleet_env.profile}",
                                        labels=labels, detach=True),
                e.client.containers.run(fleet_env.caddy_image, ["caddy", "version"], name=f"rp-x-{e.name}-{fleet_env.profile}",
                                        labels=labels, detach=True)]
        made[2].wait(timeout=30)
        with e.runtime() as rt:
            same_reads(rt, e.client, [m.name for m in made], labels, fleet_env.caddy_image)
            assert rt._client is None, "a read made the SDK client"  # noqa: SLF001 - what this test is about
            rt.write_tree(made[0].name, "/tmp", {"rp/a.json": b"{}\n"})  # through the SDK
            assert rt.read_tree(made[0].name, "/tmp/rp") == {"a.json": b"{}\n"}
