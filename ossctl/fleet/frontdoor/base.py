"""The front door's seam: what every proxy behind it shares. Pure types (:class:`Upstream`,
:class:`FrontDoorSpec` and the states), the URL rule, and :class:`FrontDoor`, the interface
the fleet rollout uses; each proxy is one module beside this one (``caddy.py``) and
:func:`ossctl.fleet.frontdoor.open_frontdoor` picks it by the profile's ``[frontdoor] kind``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from ossctl import labels as L
from ossctl.errors import OssctlError, UsageError
from ossctl.serve.profiles import FRONTDOOR_IMAGES as DEFAULT_IMAGES  # per kind: the image a [frontdoor] gets

MAX_WEIGHT = 100
DEFAULT_ADMIN_PORT = 2019
HEALTH_URI = "/health"
HTTP_TIMEOUT_S = 10  # one admin or /slots request made from inside the front-door container
ROLE_LABEL = L.ROLE


class DrainTimeout(OssctlError):
    """An upstream still had requests in flight when the drain timeout ran out (it stays
    disabled; the caller decides whether to wait longer or put it back)."""


@dataclass(frozen=True)
class Upstream:
    """One llama-server behind the front door. ``url`` is ``http://HOST:PORT`` as the
    front door reaches it (from the engine host it runs on); ``weight`` 1..100 (relative
    share of requests); ``enabled`` False: no new requests. Raises :class:`UsageError`."""

    url: str
    weight: int = 1
    enabled: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", canonical_url(self.url))
        if isinstance(self.weight, bool) or not isinstance(self.weight, int) or not 1 <= self.weight <= MAX_WEIGHT:
            raise UsageError(f"upstream {self.url}: weight must be an integer from 1 to {MAX_WEIGHT}, got {self.weight!r}")
        if not isinstance(self.enabled, bool):
            raise UsageError(f"upstream {self.url}: enabled must be true or false")

    @property
    def dial(self) -> str:
        """``HOST:PORT`` as Caddy dials it (and reports it in its upstream counters)."""
        return self.url.split("://", 1)[1]


def canonical_url(url: str) -> str:
    """``http://HOST:PORT`` for ``HOST:PORT`` or ``http://HOST:PORT[/]``. Pure; raises
    :class:`UsageError` for anything else (https, a path, no port)."""
    raw = url.strip() if isinstance(url, str) else ""
    text = raw if "://" in raw else f"http://{raw}"
    try:
        u = urlsplit(text)
        port = u.port
    except ValueError:
        port, u = None, None
    if u is None or u.scheme != "http" or not u.hostname or port is None or u.path not in ("", "/") \
            or u.query or u.fragment or u.username:
        raise UsageError(f"invalid upstream URL {url!r}", hint="give http://HOST:PORT, as the front door's host reaches it")
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    return f"http://{host}:{port}"


@dataclass(frozen=True)
class FrontDoorSpec:
    """Where the front door of one profile runs: ``host:port`` clients use,
    ``127.0.0.1:admin_port`` for the admin API (both on the engine's host), and the image
    (the official ``caddy:2`` unless the profile's ``[frontdoor] image`` says otherwise)."""

    profile: str
    port: int
    host: str = "127.0.0.1"
    admin_port: int = DEFAULT_ADMIN_PORT
    image: str = DEFAULT_IMAGES["caddy"]
    kind: str = "caddy"

    @classmethod
    def from_profile(cls, profile: dict[str, Any]) -> FrontDoorSpec:
        """From a resolved profile (its ``[frontdoor]`` table); :class:`UsageError` when it
        has none."""
        fd = profile.get("frontdoor")
        if not fd:
            raise UsageError(f"profile {profile['name']!r} has no [frontdoor] table",
                             hint=f"add `[frontdoor]` with `port = ...` to it, then `ossctl profile validate {profile['name']}`")
        return cls(profile["name"], fd["port"], fd["host"], fd["admin_port"], fd["image"], fd.get("kind", "caddy"))

    @property
    def name(self) -> str:
        """The container's name."""
        return f"ossctl-frontdoor-{self.profile}"

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """The URL clients use, as seen from the engine's host."""
        return f"http://{self.listen}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def labels(self) -> dict[str, str]:
        # no ossctl.managed: that marks release containers, which the ledger accounts for
        return {ROLE_LABEL: "frontdoor", L.PROFILE: self.profile,
                L.FRONTDOOR_LISTEN: self.listen, L.FRONTDOOR_ADMIN_PORT: str(self.admin_port),
                L.FRONTDOOR_KIND: self.kind}


@dataclass(frozen=True)
class UpstreamState:
    url: str
    weight: int
    enabled: bool
    in_flight: int  # requests the front door is proxying to it now
    fails: int      # recent failures Caddy counted (passive health)


@dataclass(frozen=True)
class FrontDoorState:
    name: str
    docker_host: str
    endpoint: str
    image: str
    running: bool
    upstreams: list[UpstreamState] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DrainResult:
    url: str
    waited_s: float
    in_flight_at_start: int


def check_unique(upstreams: list[Upstream]) -> None:
    seen: set[str] = set()
    for u in upstreams:
        if u.url in seen:
            raise UsageError(f"upstream {u.url} is listed twice")
        seen.add(u.url)




class FrontDoor(Protocol):
    """What the fleet rollout needs of a front door, whichever proxy runs it. Every method
    raises :class:`~ossctl.errors.OssctlError` (NotFoundError: no container; RemoteError:
    not running or its API failed; ConflictError: it cannot listen on its port)."""

    spec: FrontDoorSpec
    rt: Any  # the DockerRuntime of the engine it runs on

    def prepare(self, upstreams: list[Upstream] | None = None, timeout: float = 30.0) -> None:
        """Make it run as ``spec`` says (create, start, or replace it); ``upstreams``, when
        given, then becomes the upstream list."""

    def ensure(self, upstreams: list[Upstream] | None = None, timeout: float = 30.0) -> FrontDoorState:
        """:meth:`prepare`, then :meth:`state`."""

    def remove(self) -> None:
        """Remove the container; nothing when there is none."""

    def state(self) -> FrontDoorState:
        """The recorded upstreams with the proxy's live counters."""

    def upstreams(self) -> list[Upstream]:
        """The upstream list."""

    def busy(self, url: str, api_key: str | None = None) -> int:
        """Requests ``url`` serves now (in flight through the proxy, or slots processing)."""

    def route(self, upstreams: list[Upstream]) -> None:
        """Replace the upstream list."""

    def set_upstreams(self, upstreams: list[Upstream]) -> FrontDoorState:
        """:meth:`route`, then the state."""

    def swap(self, old: str | None, new: str) -> None:
        """Make ``new`` an enabled upstream and drop ``old`` when it differs."""

    def enable(self, url: str, weight: int | None = None) -> FrontDoorState:
        """Send new requests to ``url`` again (optionally with a new weight)."""

    def drain(self, url: str, timeout: float = 120.0, api_key: str | None = None, poll: float = 0.2) -> DrainResult:
        """Stop new requests to ``url`` and wait until it is idle; :class:`DrainTimeout`
        after ``timeout`` seconds (it stays disabled)."""
