"""The front door behind one interface: :func:`open_frontdoor` picks the proxy a profile's
``[frontdoor] kind`` names. Both classes have the interface of
:class:`ossctl.serve.frontdoor.FrontDoor` (prepare, ensure, remove, state, upstreams,
busy, route, set_upstreams, swap, enable, drain; ``spec``, ``rt``).

- ``haproxy`` (default): upstream changes through HAProxy's runtime API, no reload —
  requests that arrive during a drain, enable or swap are never dropped.
- ``caddy``: each change replaces Caddy's whole configuration; requests that start in
  its reload window can fail (bench/frontdoor_reload.py counts them).
"""

from __future__ import annotations

KINDS = ("haproxy", "caddy")
DEFAULT_KIND = "haproxy"


def open_frontdoor(kind: str, runtime, spec, log=None):
    """The front door of ``spec`` (a :class:`~ossctl.serve.frontdoor.FrontDoorSpec`) on the
    engine ``runtime`` talks to, run by the proxy ``kind``. Raises :class:`UsageError` for
    an unknown kind."""
    from dataclasses import replace

    from ossctl.errors import UsageError

    if kind == "haproxy":
        from ossctl.fleet.frontdoor.haproxy import HAProxyFrontDoor

        return HAProxyFrontDoor(runtime, replace(spec, kind=kind), log)
    if kind == "caddy":
        from ossctl.serve.frontdoor import FrontDoor

        return FrontDoor(runtime, replace(spec, kind=kind), log)
    raise UsageError(f"unknown front door kind {kind!r}", hint=f"use one of: {', '.join(KINDS)}")
