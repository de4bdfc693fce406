"""bridge_url: the address a front door on the same engine reaches a release at."""

from __future__ import annotations

from ossctl.fleet.frontdoor.bridge import bridge_url


def _attrs(ip="172.18.0.5", ports=None, nets=None):
    return {"NetworkSettings": {"IPAddress": ip, "Networks": nets or {},
                                "Ports": ports if ports is not None else
                                {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18480"}]}}}


def test_bridge_address_and_the_container_port_the_published_one_maps_to():
    assert bridge_url(_attrs(), 18480) == "http://172.18.0.5:8080"
    # blue-green: the other port of the pair, published from the same inner port number
    two = {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18480"}], "18481/tcp": [{"HostPort": "18481"}]}
    assert bridge_url(_attrs(ports=two), 18481) == "http://172.18.0.5:18481"


def test_address_from_the_networks_table_when_the_default_bridge_has_none():
    nets = {"other": {"IPAddress": ""}, "ossnet": {"IPAddress": "10.216.3.66"}}
    assert bridge_url(_attrs(ip="", nets=nets), 18480) == "http://10.216.3.66:8080"
    assert bridge_url(_attrs(ip="fd00::5"), 18480) == "http://[fd00::5]:8080"


def test_none_without_the_mapping_or_an_address():
    assert bridge_url(_attrs(), 9999) is None  # not this container's published port
    assert bridge_url(_attrs(ip=""), 18480) is None  # host network, no network
    assert bridge_url(_attrs(ports={}), 18480) is None
    assert bridge_url({}, 18480) is None
