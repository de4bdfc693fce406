"""Which address the fleet rollout gives the front door for a release: the bridge address
on the front door's own engine, the published port elsewhere (and for a front door that
still lists that)."""

from __future__ import annotations

from types import SimpleNamespace

from ossctl.errors import RemoteError
from ossctl.fleet.frontdoor.base import Upstream
from ossctl.fleet.rollout import Member


class _Runtime:
    """DockerRuntime.inspect: the engine's inspect document, read without the SDK."""

    def __init__(self, attrs):
        self.attrs = attrs
        self.asked = []

    def inspect(self, cid):
        self.asked.append(cid)
        if isinstance(self.attrs, Exception):
            raise self.attrs
        return self.attrs


def _rt(attrs):
    return _Runtime(attrs)


ATTRS = {"NetworkSettings": {"IPAddress": "172.17.0.9",
                             "Ports": {"18480/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18480"}]}}}
REL = SimpleNamespace(port=18480, container_id="c1")


def _member(rt):
    return Member("unix:///x.sock", {"name": "p", "port": 18480}, "10.0.0.5", engine=SimpleNamespace(rt=rt))


class _Door:
    def __init__(self, rt, urls):
        self.rt, self.urls = rt, urls

    def upstreams(self):
        return [Upstream(u) for u in self.urls]


def test_same_engine_gets_the_bridge_address_other_engines_the_published_port():
    rt = _rt(ATTRS)
    m = _member(rt)
    assert m.door_url(_Door(rt, []), REL) == "http://172.17.0.9:18480"
    assert m.door_url(_Door(_rt(ATTRS), []), REL) == "http://10.0.0.5:18480"  # the front door is elsewhere
    assert m.door_url(_Door(rt, []), SimpleNamespace(port=18480, container_id=None)) == "http://10.0.0.5:18480"


def test_an_engine_that_cannot_say_keeps_the_published_port():
    rt = _rt(RemoteError("engine went away"))
    assert _member(rt).door_url(_Door(rt, []), REL) == "http://10.0.0.5:18480"
    rt = _rt({"NetworkSettings": {"IPAddress": "", "Ports": {}}})  # host network
    assert _member(rt).door_url(_Door(rt, []), REL) == "http://10.0.0.5:18480"
    rt = _rt(None)  # the container is gone
    assert _member(rt).door_url(_Door(rt, []), REL) == "http://10.0.0.5:18480"


def test_in_door_names_the_entry_the_front_door_has():
    rt = _rt(ATTRS)
    m = _member(rt)
    assert m.in_door(_Door(rt, ["http://172.17.0.9:18480"]), REL) == "http://172.17.0.9:18480"
    # a front door set up before bridge routing still lists the published port
    assert m.in_door(_Door(rt, ["http://10.0.0.5:18480"]), REL) == "http://10.0.0.5:18480"
