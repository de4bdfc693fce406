"""Pure parts of the front door (Caddy config, container spec, upstream list), the
[frontdoor] profile table, and Docker endpoint checking."""

from __future__ import annotations

import json

import pytest

from ossctl.errors import EXIT_USAGE, RemoteError, UsageError
from ossctl.fleet.frontdoor import caddy as F
from ossctl.fleet.frontdoor.base import canonical_url
from ossctl.serve import profiles as P
from ossctl.serve.docker_runtime import check_docker_host
from ossctl.settings import load_settings
from tests.support.cli import run_cli

SPEC = F.FrontDoorSpec("prod", 8000, admin_port=2020, image="caddy:2")


@pytest.mark.parametrize("raw,want", [
    ("127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://10.0.0.5:8080/", "http://10.0.0.5:8080"),
    (" http://gpu1:9000 ", "http://gpu1:9000"),
    ("[::1]:8080", "http://[::1]:8080"),
])
def test_upstream_urls_are_canonical(raw, want):
    assert canonical_url(raw) == want
    assert F.Upstream(raw).url == want


@pytest.mark.parametrize("raw", ["https://h:1", "h", "http://h", "http://h:1/v1", "http://u@h:1", "", "http://h:x"])
def test_bad_upstream_urls(raw):
    with pytest.raises(UsageError, match="invalid upstream URL"):
        F.Upstream(raw)


@pytest.mark.parametrize("w", [0, 101, 1.5, True])
def test_bad_weights(w):
    with pytest.raises(UsageError, match="weight must be an integer from 1 to 100"):
        F.Upstream("h:1", weight=w)


def test_caddy_config_exact():
    cfg = F.caddy_config(SPEC, [F.Upstream("127.0.0.1:8080"), F.Upstream("10.0.0.2:8080", enabled=False)])
    assert cfg == {
        "admin": {"listen": "127.0.0.1:2020"},
        "apps": {"http": {"servers": {"frontdoor": {
            "listen": ["127.0.0.1:8000"],
            "automatic_https": {"disable": True},
            "routes": [
                {"match": [{"expression": "false"}],
                 "handle": [
                     {"handler": "vars", "ossctl_frontdoor": {"profile": "prod", "upstreams": [
                         {"url": "http://127.0.0.1:8080", "weight": 1, "enabled": True},
                         {"url": "http://10.0.0.2:8080", "weight": 1, "enabled": False}]}},
                     {"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:8080"}, {"dial": "10.0.0.2:8080"}]}]},
                {"handle": [{
                    "handler": "reverse_proxy",
                    "upstreams": [{"dial": "127.0.0.1:8080"}],
                    "load_balancing": {"selection_policy": {"policy": "least_conn"},
                                       "try_duration": "10s", "try_interval": "100ms"},
                    "health_checks": {"active": {"uri": "/health", "interval": "1s", "timeout": "2s",
                                                 "expect_status": 200}},
                    "transport": {"protocol": "http", "keep_alive": {"enabled": False}},
                }]},
            ],
        }}}},
    }


def test_unequal_weights_are_round_robin_over_repeats():
    ups = [F.Upstream("a:1", weight=30), F.Upstream("b:1", weight=10), F.Upstream("c:1", weight=20)]
    assert F._selection(ups) == ("round_robin", ["a:1", "b:1", "c:1", "a:1", "c:1", "a:1"])
    assert F._selection([F.Upstream("a:1", weight=5), F.Upstream("b:1", weight=5)]) == ("least_conn", ["a:1", "b:1"])


def test_no_enabled_upstream_is_a_503():
    cfg = F.caddy_config(SPEC, [F.Upstream("a:1", enabled=False)])
    handler = cfg["apps"]["http"]["servers"]["frontdoor"]["routes"][1]["handle"][0]
    assert handler == {"handler": "static_response", "status_code": 503, "headers": {"Retry-After": ["1"]},
                       "body": "no upstream is enabled at the front door\n"}
    assert F.caddy_config(SPEC, [])["apps"]["http"]["servers"]["frontdoor"]["routes"][0]["handle"][1:] == []


def test_duplicate_upstream_is_refused():
    with pytest.raises(UsageError, match="listed twice"):
        F.caddy_config(SPEC, [F.Upstream("a:1"), F.Upstream("http://a:1/")])


def test_upstreams_round_trip_through_the_config():
    ups = [F.Upstream("a:1", weight=3), F.Upstream("b:2", enabled=False)]
    assert F.upstreams_from_config(json.loads(json.dumps(F.caddy_config(SPEC, ups)))) == ups
    with pytest.raises(RemoteError, match="not written by ossctl"):
        F.upstreams_from_config({"apps": {"http": {"servers": {"srv0": {}}}}})


def test_container_spec():
    ups = [F.Upstream("a:1")]
    spec = F.container_spec(SPEC, ups)
    assert spec["name"] == "ossctl-frontdoor-prod" and spec["image"] == "caddy:2"
    assert spec["network_mode"] == "host" and "ports" not in spec
    assert spec["command"] == ["caddy", "run", "--resume", "--config", F.CONFIG_PATH]
    assert json.loads(spec["files"][F.CONFIG_PATH]) == F.caddy_config(SPEC, ups)
    assert spec["restart_policy"] == {"Name": "unless-stopped"}
    assert spec["labels"] == {"ossctl.role": "frontdoor", "ossctl.profile": "prod",
                              "ossctl.frontdoor.listen": "127.0.0.1:8000", "ossctl.frontdoor.admin_port": "2020",
                              "ossctl.frontdoor.kind": "caddy"}
    v6 = F.FrontDoorSpec("p", 80, host="::1")
    assert v6.listen == "[::1]:80" and v6.endpoint == "http://[::1]:80"


@pytest.mark.parametrize("text,want", [("v2.11.7 h1:yj0Y4f=", (2, 11, 7)), ("2.6.2\n", (2, 6, 2)), ("devel", None)])
def test_caddy_version(text, want):
    assert F.caddy_version(text) == want


# -- [frontdoor] in profiles ---------------------------------------------------------

BASE = {"model": "20b", "image": "img:1", "ctx": 4096}


def test_frontdoor_table_defaults_and_spec():
    p = P.validate({**BASE, "frontdoor": {"port": 8000}}, "prod")
    assert p["frontdoor"] == {"kind": "haproxy", "host": "127.0.0.1", "port": 8000, "admin_port": 2019,
                              "image": "haproxy:2.8", "docker_host": ""}
    assert F.FrontDoorSpec.from_profile(p) == F.FrontDoorSpec("prod", 8000, "127.0.0.1", 2019, "haproxy:2.8", "haproxy")
    p = P.validate({**BASE, "frontdoor": {"port": 8000, "kind": "caddy"}}, "prod")
    assert p["frontdoor"]["image"] == "caddy:2"
    assert F.FrontDoorSpec.from_profile(p) == F.FrontDoorSpec("prod", 8000, "127.0.0.1", 2019, "caddy:2", "caddy")
    with pytest.raises(UsageError, match=r"has no \[frontdoor\] table"):
        F.FrontDoorSpec.from_profile(P.validate(dict(BASE), "prod"))


@pytest.mark.parametrize("table,msg", [
    ({}, "`frontdoor.port` is required"),
    ({"port": 8000, "prot": 1}, "unknown key 'prot' in \\[frontdoor\\]"),
    ({"port": "8000"}, "`frontdoor.port` must be an integer"),
    ({"port": 8000, "host": "gpu1"}, "`frontdoor.host` must be an IP address"),
    ({"port": 8080}, "must differ"),
    ({"port": 8000, "admin_port": 8000}, "must differ"),
    ({"port": 8000, "image": "caddy 2"}, "`frontdoor.image` must be an image reference"),
    ({"port": 8000, "kind": "nginx"}, "`frontdoor.kind` must be one of haproxy, caddy, got 'nginx'"),
    ({"port": 8000, "kind": ["caddy"]}, "`frontdoor.kind` must be one of haproxy, caddy, got \\['caddy'\\]"),
    ({"port": 8000, "host": "0.0.0.0"}, "`frontdoor.host` 0.0.0.0 is not a loopback address, so `api_key_file` is required"),
])
def test_frontdoor_table_rules(table, msg):
    with pytest.raises(UsageError, match=msg):
        P.validate({**BASE, "frontdoor": table}, "prod")


def test_frontdoor_table_merges_along_extends(home):
    d = home / "profiles"
    d.mkdir()
    (d / "base.toml").write_text('model = "20b"\nimage = "img:1"\nctx = 4096\n[frontdoor]\nkind = "caddy"\nport = 8000\nimage = "caddy:2.10"\n')
    (d / "child.toml").write_text('extends = "base"\n[frontdoor]\nadmin_port = 2100\n')
    p = P.resolve_profile(load_settings(), "child")
    assert p["frontdoor"] == {"kind": "caddy", "host": "127.0.0.1", "port": 8000, "admin_port": 2100,
                              "image": "caddy:2.10", "docker_host": ""}


# -- Docker endpoints ----------------------------------------------------------------

@pytest.mark.parametrize("url", ["unix:///var/run/docker.sock", "tcp://gpu2:2376", "tcp://10.0.0.2", "ssh://me@gpu1",
                                 "ssh://gpu1:2222", "npipe:////./pipe/docker_engine", "tcp://[::1]:2375"])
def test_valid_docker_hosts(url):
    assert check_docker_host(url) == url


@pytest.mark.parametrize("url", ["foo://bar", "gpu1:2376", "unix://", "tcp://", "tcp://h:port", "ssh:///x",
                                 "tcp://h:2376/path", "tcp://u@h:1", ""])
def test_invalid_docker_hosts(url):
    with pytest.raises(UsageError, match="invalid DOCKER_HOST"):
        check_docker_host(url)


def test_invalid_docker_host_exits_2_not_unreachable(home):
    r = run_cli("status", "--docker-host", "foo://bar")
    assert r.code == EXIT_USAGE
    assert r.err.splitlines()[0] == "error: invalid DOCKER_HOST 'foo://bar'"
    r = run_cli("status", env={"DOCKER_HOST": "foo://bar"})
    assert r.code == EXIT_USAGE and "invalid DOCKER_HOST" in r.err


def test_upstream_idle_timeout_is_well_inside_llama_servers_keep_alive():
    from ossctl.fleet.frontdoor.base import LLAMA_KEEPALIVE_S, UPSTREAM_IDLE_S

    # a kept-alive upstream connection is dropped by the proxy long before llama-server
    # (cpp-httplib: 5 s idle) may close it under a request
    assert LLAMA_KEEPALIVE_S == 5 and 0 < UPSTREAM_IDLE_S <= LLAMA_KEEPALIVE_S - 3
