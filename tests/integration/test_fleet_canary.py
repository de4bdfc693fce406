"""Issue 23's fleet canary on the three real engines: `canary = 1` with `max_unavailable
= 2` deploys and gates the first host alone; a slowed build that its performance gate
refuses is rolled back there, the other two hosts are never touched (not a record, not a
container), and clients of the front door see no failed request throughout."""

from __future__ import annotations

import pytest

from tests.integration.test_fleet import KEY, FleetSetup, _answer
from tests.support.frontdoor_churn import clients
from tests.support.slow_image import copy_image, slow_image_into

pytestmark = [pytest.mark.docker, pytest.mark.llama, pytest.mark.fleet]


@pytest.fixture
def fs(fleet_llama, fleet_env, home, serve_model, tmp_path):
    first, *others = fleet_llama.engines
    slow = slow_image_into(first.client)
    for e in others:  # the same image id everywhere, as the fleet preflight requires
        copy_image(first.client, e.client, slow)
    s = FleetSetup(fleet_env, home, serve_model, tmp_path)
    s.slow_image = slow
    yield s
    for e in fleet_env.engines:
        for name in (f"ossctl-lock-{s.name}", f"ossctl-frontdoor-{s.name}"):
            for c in e.client.containers.list(all=True, filters={"name": name}):
                c.remove(force=True)


def test_canary_refused_by_the_gate_leaves_the_other_hosts_untouched(fs):
    fs.write(canary=1, max_unavailable=2, bench={"users": [1], "requests": 3, "max_tokens": 8, "regress": "50%"})
    r = fs.cli("deploy", "-p", fs.name)
    assert r.code == 0, r.err
    assert r.err.count("this release's bench is the baseline") == 3, r.err
    assert "canary passed on " in r.err, r.err
    canary = fs.hosts[0]["docker_host"]

    with clients(fs.endpoint, api_key=KEY) as polled:
        r = fs.cli("upgrade", "-p", fs.name, "--image", fs.slow_image)
    assert r.code == 7, r.err
    assert "performance gate: 1 user: output " in r.err and "tok/s before (-" in r.err, r.err
    assert "canary passed" not in r.err and "fleet rollout" in r.err, r.err
    assert polled.requests > 0 and polled.failed == 0, polled.to_dict()

    rows = fs.cli("--json", "releases", "-p", fs.name).json()["releases"]
    by_host: dict[str, list[tuple[str, str]]] = {}
    for x in rows:
        by_host.setdefault(x["docker_host"], []).append((x["id"], x["state"]))
    assert sorted(by_host[canary]) == [("r0001", "ok"), ("r0002", "failed")], by_host
    others = [h["docker_host"] for h in fs.hosts[1:]]
    assert all(by_host[h] == [("r0001", "ok")] for h in others), by_host
    for e in fs.fleet.engines:  # the canary's failed release left no container either
        cs = e.client.containers.list(all=True, filters={"label": [f"ossctl.profile={fs.name}", "ossctl.release"]})
        assert [c.labels["ossctl.release"] for c in cs] == ["r0001"], e.name
    st = fs.cli("--json", "status", "-p", fs.name).json()["releases"]
    assert {(x["source"], x["health"]) for x in st} == {("r0001", "ok")}
    assert _answer(fs.endpoint)["choices"]

    # the same build again through `upgrade` (no allowance to trip on a busy machine): old vs new per host
    fs.write(canary=1, max_unavailable=2, bench={"users": [1], "requests": 2, "max_tokens": 8})
    r = fs.cli("--json", "upgrade", "-p", fs.name, "--image", fs.fleet.llama_image)
    assert r.code == 0, r.err
    up = r.json()
    assert sorted(h["docker_host"] for h in up["hosts"]) == sorted(h["docker_host"] for h in fs.hosts)
    new_ids = {h["docker_host"]: h["new"]["release"] for h in up["hosts"]}
    assert new_ids[canary] == "r0003" and all(new_ids[h] == "r0002" for h in others), new_ids
    assert all(h["old"]["release"] == "r0001" and h["old"]["digest"] == h["new"]["digest"] for h in up["hosts"])
