"""The front door's seam: what every proxy behind it shares. Pure types (:class:`Upstream`,
:class:`FrontDoorSpec` and the states), the URL rule, and :class:`ProxyFrontDoor`, the
interface the fleet rollout uses with what both proxies do alike; each proxy is one module
beside this one (``haproxy.py``, ``caddy.py``) and
:func:`ossctl.fleet.frontdoor.open_frontdoor` picks it by the profile's ``[frontdoor] kind``."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from ossctl import labels as L
from ossctl.errors import ConflictError, NotFoundError, OssctlError, RemoteError, UsageError
from ossctl.serve.profiles import FRONTDOOR_IMAGES as DEFAULT_IMAGES  # per kind: the image a [frontdoor] gets

MAX_WEIGHT = 100
DEFAULT_ADMIN_PORT = 2019
HEALTH_URI = "/health"
RESTART_POLICY = {"Name": "unless-stopped"}  # a front door comes back with the engine
HTTP_TIMEOUT_S = 10  # one admin or /slots request made from inside the front-door container
ROLE_LABEL = L.ROLE
# Upstream keep-alive. llama-server (cpp-httplib 0.58 in llama-cpp-python 0.3.36) closes a
# kept-alive connection after CPPHTTPLIB_KEEPALIVE_TIMEOUT_SECOND = 5 s idle, without a
# word; after CPPHTTPLIB_KEEPALIVE_MAX_COUNT = 100 requests, saying so in that last
# response (``Connection: close``, which every proxy honours); and right after every
# streamed response, although that response announced keep-alive (its chunk provider
# returns false once done, which cpp-httplib takes for an aborted write). A request sent
# on a connection the server is closing fails after it left the proxy, and a POST may not
# be retried (the completion may have run), so the proxy never keeps an upstream
# connection idle longer than this: well inside the 5 s, with room for a busy machine's
# delays. (Only HAProxy keeps them: see haproxy.py and caddy.py for why.)
UPSTREAM_IDLE_S = 2
LLAMA_KEEPALIVE_S = 5  # the server's side of the margin above (a unit test pins the order)


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




class ProxyFrontDoor:
    """The interface the fleet rollout uses; every method raises
    :class:`~ossctl.errors.OssctlError` (NotFoundError: no container; RemoteError: not
    running or its API failed; ConflictError: it cannot listen on its port).

    What every proxy's front door does the same way: the upstream-list edits (swap,
    enable, drain and its wait), reading one upstream's load, and the container checks.
    A proxy module subclasses it and supplies :meth:`_create`, :meth:`_read_other`,
    :meth:`_wait_up`, :meth:`state`, :meth:`upstreams`, :meth:`route`,
    :meth:`set_upstreams` and :meth:`_watch` (apply a changed list, when given, and count
    what one upstream serves: ideally one exec)."""

    def __init__(self, runtime, spec: FrontDoorSpec, log=None):
        self.rt = runtime
        self.spec = spec
        self.log = log or (lambda _msg: None)

    # what a proxy module supplies ---------------------------------------------------------
    def _create(self, upstreams: list[Upstream], timeout: float) -> str:
        """Run a new container routing to ``upstreams`` and wait until its proxy answers
        (and is one ossctl can drive); returns its id."""
        raise NotImplementedError

    def _read_other(self, c: dict[str, Any]) -> list[Upstream] | None:
        """The upstream list of the running container ``c`` that is about to be replaced
        (another image, address or kind), so the new one keeps it."""
        raise NotImplementedError

    def state(self) -> FrontDoorState:
        raise NotImplementedError

    def upstreams(self) -> list[Upstream]:
        raise NotImplementedError

    def route(self, upstreams: list[Upstream]) -> None:
        raise NotImplementedError

    def set_upstreams(self, upstreams: list[Upstream]) -> FrontDoorState:
        raise NotImplementedError

    def _wait_up(self, timeout: float, cid: str, created: bool) -> None:
        """Wait until container ``cid``'s proxy answers on its API (``created``: it was
        just made, so one that exits while starting is removed); raises the reason."""
        raise NotImplementedError

    def _watch(self, target: str, api_key: str | None, change: list[Upstream] | None) -> int:
        """Make ``change`` the upstream list when given, then return how many requests
        ``target`` serves: the larger of the proxy's in-flight count and llama-server's
        processing slots (0 where ``/slots`` cannot tell)."""
        raise NotImplementedError

    # shared -------------------------------------------------------------------------------
    def prepare(self, upstreams: list[Upstream] | None = None, timeout: float = 30.0) -> None:
        """Make the front door run as ``spec`` says. A stopped container is started again
        (it comes back with its last upstreams); one whose image, listen address or kind
        differ is replaced (keeping its upstreams); none is created. ``upstreams``, when
        given, then becomes the upstream list."""
        c = self.rt.find(self.spec.name)
        if c is not None and not self._matches(c):
            if upstreams is None and c["running"]:
                upstreams = self._read_other(c)
            self.rt.remove(c["id"])
            c = None
        if c is None:
            cid = self._create(list(upstreams or []), timeout)
            self.rt.set_restart(cid, RESTART_POLICY)
            return
        if not c["running"]:
            self.rt.start(c["id"])
            self._wait_up(timeout, c["id"], created=False)
        self.rt.set_restart(c["id"], RESTART_POLICY)
        if upstreams is not None:
            self.route(upstreams)  # a running one answers at once; it was checked when it was made

    def ensure(self, upstreams: list[Upstream] | None = None, timeout: float = 30.0) -> FrontDoorState:
        """:meth:`prepare`, then the state."""
        self.prepare(upstreams, timeout)
        return self.state()

    def remove(self) -> None:
        """Remove the container (clients lose the endpoint); nothing when there is none."""
        c = self.rt.find(self.spec.name)
        if c is not None and c["labels"].get(ROLE_LABEL) == "frontdoor":
            self.rt.remove(c["id"])

    def busy(self, url: str, api_key: str | None = None) -> int:
        """Requests ``url`` serves now: the larger of the front door's in-flight count and
        llama-server's processing slots (``/slots`` asked from the front door's host, with
        ``api_key`` when the server needs one; 0 when it cannot tell)."""
        return self._watch(canonical_url(url), api_key, None)

    def swap(self, old: str | None, new: str) -> None:
        """Make ``new`` an enabled upstream and drop ``old`` when it differs (one change)."""
        old = canonical_url(old) if old else None
        new = canonical_url(new)
        ups = [u for u in self.upstreams() if u.url != old or old == new]
        if any(u.url == new for u in ups):
            ups = [replace(u, enabled=True) if u.url == new else u for u in ups]
        else:
            ups.append(Upstream(new))
        self.route(ups)

    def enable(self, url: str, weight: int | None = None) -> FrontDoorState:
        """Send new requests to ``url`` again (optionally with a new weight)."""
        ups = self._changed(url, lambda u: replace(u, enabled=True, weight=u.weight if weight is None else weight))
        return self.set_upstreams(ups)

    def drain(self, url: str, timeout: float = 120.0, api_key: str | None = None, poll: float = 0.2) -> DrainResult:
        """Stop sending new requests to ``url``, then wait until it is idle: no request in
        flight through the front door and no llama-server slot processing (``/slots``,
        asked from the front door's host; ``api_key`` when the server needs one). The
        change and the first look are one :meth:`_watch`, each later look one more. Raises
        :class:`DrainTimeout` after ``timeout`` seconds (it stays disabled)."""
        target = canonical_url(url)
        change: list[Upstream] | None = self._changed(target, lambda u: replace(u, enabled=False))
        t0 = time.monotonic()
        first: int | None = None
        while True:
            busy = self._watch(target, api_key, change)
            change = None
            if first is None:
                first = busy
            waited = time.monotonic() - t0
            if busy == 0:
                return DrainResult(target, waited, first)
            if waited > timeout:
                raise DrainTimeout(f"upstream {target} still has {busy} request(s) in flight after {timeout:g} s of draining",
                                   hint="wait for the long requests and drain again, or pass a longer drain timeout")
            time.sleep(poll)

    def _exited_while_starting(self, c: dict[str, Any] | None, cid: str, created: bool, error_of) -> OssctlError:
        """The error for container ``cid`` (state ``c``) that stopped while it was
        starting, from its last log lines (``error_of(logs)``: the proxy's own error line);
        one that was just ``created`` never served and is removed."""
        logs = self.rt.logs(cid, tail=10)
        if created and c is not None:
            self.rt.remove(cid)  # ours, just made, never served: nothing is lost
        if "address already in use" in logs.lower():
            return ConflictError(f"the front door cannot listen on {self.spec.listen}: the port is in use",
                                 hint="another process holds it; pick another [frontdoor] port in the profile")
        return RemoteError(f"the front door {self.spec.name} exited while starting: {error_of(logs)}",
                           hint=f"check the image ({self.spec.image}) and `docker logs {self.spec.name}`")

    def _revive(self) -> bool:
        """After an exec that Docker refused: start the front door again when it stopped
        (killed, crashed, stopped by hand) and wait for its API; the proxy starts from the
        last upstream list it was given. False when there is none (the caller says so)."""
        c = self.rt.find(self.spec.name)
        if c is None or c["labels"].get(ROLE_LABEL) != "frontdoor":
            return False
        if not c["running"]:
            self.log(f"the front door {self.spec.name} on {self.rt.host} was not running "
                     f"({c['status']}, exit code {c['exit_code']}); starting it again with its last upstreams")
            self.rt.start(c["id"])
        self._wait_up(30.0, c["id"], created=False)
        return True

    def _changed(self, url: str, change) -> list[Upstream]:
        target = canonical_url(url)
        ups = self.upstreams()
        if target not in {u.url for u in ups}:
            raise NotFoundError(f"{target} is not an upstream of the front door {self.spec.name}",
                                hint="its upstreams: " + (", ".join(u.url for u in ups) or "none"))
        return [change(u) if u.url == target else u for u in ups]

    def _matches(self, c: dict[str, Any]) -> bool:
        """Whether container ``c`` runs this spec (image, listen address, kind, ...)."""
        want = self.spec.labels()
        return c["image"] == self.spec.image and all(c["labels"].get(k) == v for k, v in want.items())

    def _raise_not_running(self) -> None:
        c = self.rt.find(self.spec.name)
        if c is None:
            raise NotFoundError(f"no front door for profile {self.spec.profile} on {self.rt.host}",
                                hint=f"`ossctl deploy --profile {self.spec.profile}` starts it")
        if not c["running"]:
            raise RemoteError(f"the front door {self.spec.name} on {self.rt.host} is not running "
                              f"({c['status']}, exit code {c['exit_code']})",
                              hint=f"`docker start {self.spec.name}` brings it back with its last upstreams; "
                                   f"`docker logs {self.spec.name}` says why it stopped")
