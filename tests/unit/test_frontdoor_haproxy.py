"""Pure parts of the HAProxy front door: configuration (checked by the real ``haproxy -c``),
the record in its first line, slot assignment, runtime commands, ``show stat`` parsing,
and the factory that picks the proxy."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace

import pytest

from ossctl.errors import RemoteError, UsageError
from ossctl.fleet.frontdoor import open_frontdoor
from ossctl.fleet.frontdoor import haproxy as H
from ossctl.fleet.frontdoor.haproxy import HAProxyFrontDoor
from ossctl.fleet.frontdoor.base import FrontDoorSpec, Upstream
from ossctl.fleet.frontdoor.caddy import CaddyFrontDoor as FrontDoor

SPEC = FrontDoorSpec("prod", 8000, kind="haproxy", image="haproxy:2.8")
A, B, C = Upstream("127.0.0.1:8080"), Upstream("gpu1:8080", weight=3, enabled=False), Upstream("[::1]:8082")


def test_config_record_round_trip_keeps_order_slots_and_disabled():
    table = {1: A, 7: B, 3: C}
    text = H.haproxy_config(SPEC, table, [B.url, A.url, C.url])
    assert H.record_from_config(text) == (table, [B.url, A.url, C.url])
    lines = text.splitlines()
    assert "    server u01 127.0.0.1:8080 weight 1" in lines
    assert "    server u07 gpu1:8080 weight 3 disabled" in lines  # disabled: maintenance after a restart
    assert "    server u03 ::1:8082 weight 1" in lines
    assert "    server u02 127.0.0.1:9 disabled" in lines and sum(ln.startswith("    server u") for ln in lines) == H.SLOTS
    assert "    bind 127.0.0.1:8000" in lines and "    balance leastconn" in lines
    # kept-alive upstream connections, private to their client connection, whose idle
    # timeout (2 s) closes them well before llama-server does (5 s)
    assert "    option http-keep-alive" in lines and "    http-reuse never" in lines
    assert "    timeout http-keep-alive 2s" in lines and "    option http-server-close" not in lines
    assert "    retries 3" in lines and "    option redispatch 1" in lines
    # a request that met a closed upstream connection with nothing answered: retried only
    # when it is idempotent
    assert any(ln.startswith("    retry-on conn-failure empty-response") for ln in lines)
    assert any(ln.startswith("    http-request disable-l7-retry unless METH_GET") for ln in lines)
    assert "    http-check send meth GET uri /health" in lines
    assert any("check inter 1s" in ln and "fall 2 rise 1" in ln for ln in lines)
    assert f"    stats socket {H.SOCKET} mode 600 level admin" in lines


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed (scripts/test.sh installs it)")
def test_config_is_valid_for_haproxy(tmp_path):
    for table in ({}, {1: A, 2: B, 32: C}):
        cfg = tmp_path / "h.cfg"
        cfg.write_text(H.haproxy_config(SPEC, table).replace(H.SOCKET, str(tmp_path / "s.sock")))
        r = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("text", ["", "global\n", "# ossctl-frontdoor {}\n", "# ossctl-frontdoor {\"upstreams\": [{\"url\": \"x\"}]}",
                                  '# ossctl-frontdoor {"upstreams": [{"url": "h:1", "weight": 1, "enabled": true, "slot": 99}]}'])
def test_foreign_config_is_a_remote_error(text):
    with pytest.raises(RemoteError, match="not written by ossctl"):
        H.record_from_config(text)


def test_slots_are_kept_and_new_ones_do_not_reuse_a_slot_just_given_up():
    t1 = H.assign_slots({}, [A, B])
    assert t1 == {1: A, 2: B}
    t2 = H.assign_slots(t1, [A, C])  # B gone, C new: not in B's slot 2
    assert t2 == {1: A, 3: C}
    t3 = H.assign_slots(t2, [C, B, A])
    assert t3 == {1: A, 3: C, 4: B}
    full = {n: Upstream(f"10.0.0.{n}:1") for n in range(1, H.SLOTS + 1)}
    wrapped = H.assign_slots(full, [*list(full.values())[1:], A])  # slot 1 given up and the only one free
    assert wrapped[1] == A
    with pytest.raises(UsageError, match="listed twice"):
        H.assign_slots({}, [A, A])
    with pytest.raises(UsageError, match=f"at most {H.SLOTS} upstreams"):
        H.assign_slots({}, [Upstream(f"10.0.1.{n}:1") for n in range(H.SLOTS + 1)])


def test_runtime_commands_bring_up_first_and_take_down_last():
    assert H.runtime_commands({1: A, 2: C}, {1: Upstream(A.url, enabled=False), 3: B, 4: Upstream("10.0.0.9:9", weight=5)}) == [
        "set server upstreams/u04 addr 10.0.0.9 port 9", "set server upstreams/u04 weight 5",
        "set server upstreams/u04 state ready",
        "set server upstreams/u01 addr 127.0.0.1 port 8080", "set server upstreams/u01 weight 1",
        "set server upstreams/u01 state drain",
        "set server upstreams/u03 addr gpu1 port 8080", "set server upstreams/u03 weight 3",
        "set server upstreams/u03 state drain",
        "set server upstreams/u02 state maint",
    ]
    assert H.runtime_commands({1: A}, {}) == ["set server upstreams/u01 state maint"]


def test_parse_stat_reads_the_backend_servers():
    csv = ("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,status\n"
           "frontdoor,FRONTEND,,,3,4,,9,0,0,0,0,0,,,OPEN\n"
           "upstreams,u01,0,0,2,2,,7,0,0,,0,,1,2,UP\n"
           "upstreams,u02,0,0,0,0,,0,0,0,,0,,0,0,MAINT\n"
           "upstreams,BACKEND,0,0,2,2,,7,0,0,0,0,,1,2,UP\n")
    rows = H.parse_stat(csv)
    assert set(rows) == {"u01", "u02"} and rows["u01"]["scur"] == "2" and rows["u01"]["econ"] == "1"
    assert H.parse_stat("") == {} and H.parse_stat("Unknown command.\n") == {}


def test_container_spec():
    spec = H.container_spec(SPEC, {1: A}, [A.url])
    assert spec["name"] == "ossctl-frontdoor-prod" and spec["image"] == "haproxy:2.8"
    assert spec["network_mode"] == "host" and "ports" not in spec
    assert spec["files"] == {H.SEED_CFG: H.haproxy_config(SPEC, {1: A}, [A.url]).encode()}
    assert spec["command"][:2] == ["sh", "-c"] and spec["command"][2].endswith(f"exec haproxy -db -f {H.LIVE_CFG}")
    assert spec["restart_policy"] == {"Name": "unless-stopped"}
    assert spec["labels"]["ossctl.frontdoor.kind"] == "haproxy" and spec["labels"]["ossctl.role"] == "frontdoor"


def test_open_frontdoor_picks_the_proxy():
    caddy = open_frontdoor(None, replace(SPEC, kind="caddy", image="caddy:2"))
    assert type(caddy) is FrontDoor and caddy.spec.kind == "caddy"
    hap = open_frontdoor(None, FrontDoorSpec("p", 1, kind="haproxy"))
    assert type(hap) is HAProxyFrontDoor and hap.spec.kind == "haproxy"
    with pytest.raises(UsageError, match="unknown front door kind 'nginx'"):
        open_frontdoor(None, replace(SPEC, kind="nginx"))
