"""The front door: one stable endpoint for a profile, served by Caddy running as a
container on one Docker engine and reconfigured at runtime through its admin API. Not a
proxy of our own: Caddy load-balances (least connections, or weighted round robin),
checks each upstream's ``/health`` every second, retries a request whose upstream refused
the connection on another one, and swaps its configuration without dropping the
connections it is serving.

The container uses the engine host's network (``network_mode = host``): it listens on the
profile's ``[frontdoor] host:port`` there and reaches upstreams at the addresses they
publish; its admin API listens on ``127.0.0.1:admin_port`` of that host only. ossctl talks
to the admin API from inside the container (``docker exec … wget``, present in the
official Alpine-based ``caddy:2`` image), so it works the same over ``unix://``,
``tcp://`` and ``ssh://`` and never opens the admin port to the network.

The upstream list ossctl set (url, weight, enabled — disabled ones included) is kept in
Caddy's own configuration (a ``vars`` handler in front of the proxy), which Caddy saves
and reloads with ``--resume`` when the container restarts: the front door itself is the
record of what it routes to.

Pure parts (:func:`caddy_config`, :func:`container_spec`, :func:`upstreams_from_config`;
the shared types are in :mod:`ossctl.fleet.frontdoor.base`) take no I/O;
:class:`CaddyFrontDoor` does the Docker calls through
:class:`~ossctl.serve.docker_runtime.DockerRuntime`.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict
from typing import Any

from ossctl.errors import OssctlError, RemoteError, UsageError
from ossctl.fleet.frontdoor.base import (
    DEFAULT_IMAGES, HEALTH_URI, HTTP_TIMEOUT_S, RESTART_POLICY, FrontDoorSpec, FrontDoorState,
    ProxyFrontDoor, Upstream, UpstreamState, check_unique,
)

DEFAULT_IMAGE = DEFAULT_IMAGES["caddy"]
CONFIG_PATH = "/etc/ossctl/frontdoor.json"
SERVER = "frontdoor"
META_KEY = "ossctl_frontdoor"
# Caddy before 2.7 aborts streaming responses in flight whenever its configuration is
# replaced (caddyserver/caddy#5663), i.e. on every drain: token streams would break.
MIN_CADDY = (2, 7)


# -- pure ------------------------------------------------------------------------------

def _selection(active: list[Upstream]) -> tuple[str, list[str]]:
    """(Caddy selection policy, dial list). Equal weights: least connections (LLM
    requests vary a lot in length). Otherwise round robin over a list where each upstream
    appears weight/gcd times, interleaved (Caddy 2.6, Debian's, has no weighted policy)."""
    weights = [u.weight for u in active]
    if len(set(weights)) == 1:
        return "least_conn", [u.dial for u in active]
    g = math.gcd(*weights)
    reps = [w // g for w in weights]
    order = [u.dial for r in range(max(reps)) for u, n in zip(active, reps) if n > r]
    return "round_robin", order


def caddy_config(spec: FrontDoorSpec, upstreams: list[Upstream]) -> dict[str, Any]:
    """Caddy's JSON configuration for ``spec`` routing to the enabled ``upstreams``
    (503 with Retry-After when none is enabled). Pure.

    The first route never matches a request: it records the whole list (a ``vars``
    handler) and names every upstream, disabled ones included, in a proxy that never
    runs. Caddy keeps one request counter per upstream address for as long as some
    handler names it, so a drained upstream's in-flight count survives the reload that
    disabled it."""
    check_unique(upstreams)
    record = {
        "match": [{"expression": "false"}],
        "handle": [
            {"handler": "vars", META_KEY: {"profile": spec.profile, "upstreams": [asdict(u) for u in upstreams]}},
            *([{"handler": "reverse_proxy", "upstreams": [{"dial": u.dial} for u in upstreams]}] if upstreams else []),
        ],
    }
    active = [u for u in upstreams if u.enabled]
    if active:
        policy, dials = _selection(active)
        handler: dict[str, Any] = {
            "handler": "reverse_proxy",
            "upstreams": [{"dial": d} for d in dials],
            "load_balancing": {"selection_policy": {"policy": policy}, "try_duration": "10s", "try_interval": "100ms"},
            # active checks only: a passive one would take an upstream out for its whole
            # window after one failed request; a dead upstream refuses the dial, and Caddy
            # retries that on another upstream (try_duration)
            "health_checks": {
                "active": {"uri": HEALTH_URI, "interval": "1s", "timeout": "2s", "expect_status": 200},
            },
            # a fresh connection per request. llama-server closes its connection right
            # after every streamed response (while announcing keep-alive), and Go's
            # transport hands a just-released connection to another client's request
            # before it sees that close: a POST on it is a 502 Caddy must not retry (the
            # completion may have run). Measured with keep-alive on: 332 of 3664 streamed
            # requests failed, 2 users, loopback. HAProxy keeps each upstream connection to
            # its own client connection, which is why it can keep them alive.
            "transport": {"protocol": "http", "keep_alive": {"enabled": False}},
            # no flush_interval: Caddy flushes text/event-stream (token streaming) at once by
            # itself, and with -1 Caddy before 2.7 cut every proxied request on a reload
        }
    else:
        handler = {"handler": "static_response", "status_code": 503, "headers": {"Retry-After": ["1"]},
                   "body": "no upstream is enabled at the front door\n"}
    return {
        "admin": {"listen": f"127.0.0.1:{spec.admin_port}"},
        "apps": {"http": {"servers": {SERVER: {
            "listen": [spec.listen],
            "automatic_https": {"disable": True},
            "routes": [record, {"handle": [handler]}],
        }}}},
    }


def upstreams_from_config(config: dict[str, Any]) -> list[Upstream]:
    """The upstream list ossctl recorded in a Caddy configuration. Pure; raises
    :class:`RemoteError` when the configuration is not an ossctl front door's."""
    try:
        handle = config["apps"]["http"]["servers"][SERVER]["routes"][0]["handle"]
        meta = next(h[META_KEY] for h in handle if h.get("handler") == "vars" and META_KEY in h)
        return [Upstream(u["url"], u["weight"], u["enabled"]) for u in meta["upstreams"]]
    except (KeyError, IndexError, TypeError, StopIteration, UsageError):
        raise RemoteError("the front door's Caddy configuration was not written by ossctl",
                          hint="remove that container (`docker rm -f NAME`) and let ossctl start it again") from None


def container_spec(spec: FrontDoorSpec, upstreams: list[Upstream]) -> dict[str, Any]:
    """The container spec (for :meth:`DockerRuntime.run`): Caddy on the host network,
    starting from ``upstreams`` (``--resume``: after a restart, from the last
    configuration it was given instead). Pure."""
    config = json.dumps(caddy_config(spec, upstreams), sort_keys=True).encode()
    return {
        "name": spec.name,
        "image": spec.image,
        "command": ["caddy", "run", "--resume", "--config", CONFIG_PATH],
        "environment": {"XDG_CONFIG_HOME": "/config", "XDG_DATA_HOME": "/data"},
        "network_mode": "host",
        "files": {CONFIG_PATH: config},
        "restart_policy": RESTART_POLICY,
        "labels": spec.labels(),
    }


# -- Docker + admin API -----------------------------------------------------------------

# One exec in the front-door container per operation: an optional POST /load ($2, the new
# configuration), then, when $3 names an upstream, Caddy's live counters and that
# upstream's llama-server /slots (the key, when there is one, comes in the environment),
# separated by a record separator. Exit 3: /load failed; 4: the counters could not be read.
_SCRIPT = (
    'a=$1; t=$0\n'
    'if [ -n "$2" ]; then timeout "$t" wget -q -O /dev/null --header "Content-Type: application/json" '
    '--post-data "$2" "$a/load" || exit 3; fi\n'
    '[ -n "$3" ] || exit 0\n'
    'timeout "$t" wget -q -O - "$a/reverse_proxy/upstreams" || exit 4\n'
    "printf '\\036'\n"
    'if [ -n "$OSSCTL_FRONTDOOR_KEY" ]; then timeout "$t" wget -q -O - '
    '--header "Authorization: Bearer $OSSCTL_FRONTDOOR_KEY" "$3/slots"; else timeout "$t" wget -q -O - "$3/slots"; fi\n'
    'exit 0\n')


class CaddyFrontDoor(ProxyFrontDoor):
    """The front door of ``spec.profile`` on the engine ``runtime`` talks to. Every method
    raises :class:`OssctlError`: NotFoundError when the container does not exist,
    RemoteError when it is not running or the admin API fails, ConflictError when it
    cannot listen on its port.

    The object remembers the upstream list it last read or set, so a rollout (which holds
    the profile's lock: nobody else changes the list meanwhile) pays one ``docker exec``
    per change instead of a read, a write and a read back."""

    def __init__(self, runtime, spec: FrontDoorSpec, log=None):
        super().__init__(runtime, spec, log)
        self._known: list[Upstream] | None = None

    # lifecycle ------------------------------------------------------------------------
    def _create(self, upstreams: list[Upstream], timeout: float) -> str:
        cid = self.rt.run(container_spec(self.spec, upstreams))
        self._wait_up(timeout, cid, created=True)
        self._check_version(cid, created=True)
        self._known = upstreams
        return cid

    def _read_other(self, c: dict[str, Any]) -> list[Upstream] | None:
        return self._read_upstreams()  # a Caddy front door's; another proxy's list is not read

    # reading ----------------------------------------------------------------------------
    def state(self) -> FrontDoorState:
        """The recorded upstreams with Caddy's live counters."""
        return self._state(self._read_upstreams())

    def _state(self, ups: list[Upstream]) -> FrontDoorState:
        live = {u.get("address"): u for u in self._admin("/reverse_proxy/upstreams") or []}
        return FrontDoorState(
            self.spec.name, self.rt.host, self.spec.endpoint, self.spec.image, True,
            [UpstreamState(u.url, u.weight, u.enabled, int(live.get(u.dial, {}).get("num_requests", 0)),
                           int(live.get(u.dial, {}).get("fails", 0))) for u in ups])

    def upstreams(self) -> list[Upstream]:
        """The upstream list (as this object last read or set it)."""
        return list(self._known) if self._known is not None else self._read_upstreams()

    # changing -------------------------------------------------------------------------
    def route(self, upstreams: list[Upstream]) -> None:
        """Replace the upstream list (one admin request). Caddy swaps its configuration
        gracefully: requests in flight finish on the upstream they started on."""
        self._run(load=list(upstreams))

    def set_upstreams(self, upstreams: list[Upstream]) -> FrontDoorState:
        """:meth:`route`, then the state."""
        self.route(upstreams)
        return self._state(list(upstreams))

    def _watch(self, target: str, api_key: str | None, change: list[Upstream] | None) -> int:
        return self._run(load=change, watch=target, api_key=api_key)

    # internals ------------------------------------------------------------------------
    def _read_upstreams(self) -> list[Upstream]:
        self._known = upstreams_from_config(self._admin("/config/") or {})
        return list(self._known)

    def _run(self, load: list[Upstream] | None = None, watch: str | None = None, api_key: str | None = None) -> int:
        """One exec of :data:`_SCRIPT`: set ``load`` as the upstream list, then, for
        ``watch``, return how many requests it still serves (the larger of the front door's
        in-flight count and llama-server's processing slots; /slots that cannot tell
        counts 0). Returns 0 without ``watch``."""
        body = json.dumps(caddy_config(self.spec, load), sort_keys=True) if load is not None else ""
        argv = ["sh", "-c", _SCRIPT, str(HTTP_TIMEOUT_S), self.spec.admin_url, body, watch or ""]
        env = {"OSSCTL_FRONTDOOR_KEY": api_key} if api_key else None
        try:
            rc, out, err = self.rt.exec(self.spec.name, argv, env=env)
        except OssctlError:
            if not self._revive():
                self._raise_not_running()
                raise
            rc, out, err = self.rt.exec(self.spec.name, argv, env=env)
        if rc != 0:
            raise self._failed("/load" if rc == 3 else "/reverse_proxy/upstreams" if rc == 4 else "request", rc, err)
        if load is not None:
            self._known = list(load)
        if not watch:
            return 0
        counters, _, slots = out.partition(b"\x1e")
        try:
            live = json.loads(counters) or []
        except ValueError:
            raise RemoteError(f"front door {self.spec.name}: admin API /reverse_proxy/upstreams answered non-JSON: "
                              f"{counters[:80]!r}") from None
        dial = watch.split("://", 1)[1]
        proxied = sum(int(u.get("num_requests", 0)) for u in live if isinstance(u, dict) and u.get("address") == dial)
        try:
            busy = sum(1 for x in json.loads(slots) if isinstance(x, dict) and x.get("is_processing"))
        except (ValueError, TypeError):
            busy = 0  # unreachable, disabled: the front door's own count still holds
        return max(proxied, busy)

    def _admin(self, path: str) -> Any:
        """GET ``path`` of the admin API, as JSON."""
        rc, out, err = self._wget(self.spec.admin_url + path)
        if rc != 0:
            raise self._failed(path, rc, err)
        text = out.decode("utf-8", "replace").strip()
        try:
            return json.loads(text) if text else None
        except ValueError:
            raise RemoteError(f"front door {self.spec.name}: admin API {path} answered non-JSON: {text[:80]}") from None

    def _wget(self, url: str) -> tuple[int, bytes, bytes]:
        """One GET made from inside the front-door container (its network is the engine
        host's)."""
        # `timeout`, not wget -T: Debian's static busybox wget crashes with -T
        try:
            return self.rt.exec(self.spec.name, ["timeout", str(HTTP_TIMEOUT_S), "wget", "-q", "-O", "-", url])
        except OssctlError:
            self._raise_not_running()
            raise

    def _failed(self, what: str, rc: int, err: bytes) -> RemoteError:
        """The error for an admin request ``what`` that exited ``rc``; raises the
        not-running error instead when the container stopped."""
        self._raise_not_running()
        why = (err.decode("utf-8", "replace").strip().splitlines() or [f"exit {rc}"])[-1]
        return RemoteError(f"front door {self.spec.name} on {self.rt.host}: admin API {what} failed: {why}",
                           hint=f"see `docker logs {self.spec.name}`")

    def _check_version(self, cid: str, created: bool) -> None:
        rc, out, _ = self.rt.exec(cid, ["caddy", "version"])
        version = caddy_version(out.decode("utf-8", "replace")) if rc == 0 else None
        if version is None or version >= MIN_CADDY:
            return  # a custom build that does not say: trust it
        if created:
            self.rt.remove(cid)
        text = ".".join(map(str, version))
        raise UsageError(f"the front-door image {self.spec.image} runs Caddy {text}; ossctl needs Caddy "
                         f"{'.'.join(map(str, MIN_CADDY))} or later (older ones cut streaming responses "
                         "whenever the upstream list changes)",
                         hint=f"use the official image: `[frontdoor] image = \"{DEFAULT_IMAGE}\"` in the profile")

    def _wait_up(self, timeout: float, cid: str, created: bool) -> None:
        t0 = time.monotonic()
        while True:
            c = self.rt.find(cid)
            if c is None or not c["running"]:
                raise self._exited_while_starting(c, cid, created, _caddy_error)
            try:
                if self._wget(self.spec.admin_url + "/config/")[0] == 0:
                    return
            except OssctlError:
                pass  # it stopped between the two calls: the next turn says why
            if time.monotonic() - t0 > timeout:
                raise RemoteError(f"the front door {self.spec.name} did not answer on its admin port "
                                  f"127.0.0.1:{self.spec.admin_port} within {timeout:g} s",
                                  hint="another process may hold the admin port; pick another [frontdoor] admin_port")
            time.sleep(0.1)


def caddy_version(text: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) from ``caddy version`` output ("v2.11.7 h1:..."); None when
    it names no version. Pure."""
    m = re.search(r"\bv?(\d+)\.(\d+)\.(\d+)", text)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def _caddy_error(logs: str) -> str:
    """The message of Caddy's last error log line (JSON logs), else the last line."""
    lines = [ln for ln in logs.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        try:
            rec = json.loads(ln[ln.index("{"):])
        except ValueError:
            continue
        if rec.get("level") in ("error", "fatal") or "error" in rec:
            return str(rec.get("error") or rec.get("msg"))
    return lines[-1] if lines else "no log output"
