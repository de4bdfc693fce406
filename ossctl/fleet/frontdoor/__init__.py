"""The front door: one stable endpoint for a fleet profile, an existing reverse proxy run as
a container and reconfigured at runtime. :mod:`.base` holds the interface and the shared
types; each proxy is one module; :func:`open_frontdoor` picks it by the profile's
``[frontdoor] kind``:

- ``haproxy`` (default): upstream changes through HAProxy's runtime API, no reload —
  requests that arrive during a drain, enable or swap are never dropped.
- ``caddy``: each change replaces Caddy's whole configuration; requests that start in
  its reload window can fail (bench/frontdoor_reload.py counts them).
"""

from __future__ import annotations

from ossctl.errors import UsageError
from ossctl.fleet.frontdoor.base import FrontDoorSpec, ProxyFrontDoor
from ossctl.fleet.frontdoor.caddy import CaddyFrontDoor
from ossctl.fleet.frontdoor.haproxy import HAProxyFrontDoor
from ossctl.serve.profiles import FRONTDOOR_DEFAULTS

_CLASSES = {"haproxy": HAProxyFrontDoor, "caddy": CaddyFrontDoor}
KINDS = tuple(_CLASSES)
DEFAULT_KIND = FRONTDOOR_DEFAULTS["kind"]


def open_frontdoor(runtime, spec: FrontDoorSpec, log=None) -> ProxyFrontDoor:
    """The front door of ``spec`` (run by the proxy ``spec.kind``) on the engine
    ``runtime`` talks to; nothing is started yet. Raises :class:`UsageError` for a kind
    ossctl does not know."""
    cls = _CLASSES.get(spec.kind)
    if cls is None:
        raise UsageError(f"unknown front door kind {spec.kind!r}", hint=f"use one of: {', '.join(KINDS)}")
    return cls(runtime, spec, log)
