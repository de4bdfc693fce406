"""The front door: one stable endpoint for a fleet profile, an existing reverse proxy run as
a container and reconfigured at runtime. :mod:`.base` holds the interface and the shared
types; each proxy is one module (:mod:`.caddy`); :func:`open_frontdoor` picks it by the
profile's ``[frontdoor] kind``."""

from __future__ import annotations

from ossctl.errors import UsageError
from ossctl.fleet.frontdoor.base import FrontDoor, FrontDoorSpec
from ossctl.fleet.frontdoor.caddy import CaddyFrontDoor

KINDS = ("caddy",)


def open_frontdoor(runtime, spec: FrontDoorSpec, log=None) -> FrontDoor:
    """The front door of ``spec.kind`` on the engine ``runtime`` talks to (nothing is
    started yet). Raises :class:`UsageError` for a kind ossctl does not know."""
    if spec.kind == "caddy":
        return CaddyFrontDoor(runtime, spec, log)
    raise UsageError(f"unknown front-door kind {spec.kind!r}", hint="use one of: " + ", ".join(KINDS))
