"""The front door on HAProxy: one stable endpoint for a profile, served by HAProxy running
as a container on one Docker engine, whose upstreams change through HAProxy's runtime API
and never through a reload.

Why not Caddy's way: Caddy takes a new upstream list only as a whole new configuration,
and requests that start inside its reload window fail (``RemoteDisconnected``,
``ConnectionResetError``, a 502) — every drain, enable and swap of a rolling deploy opened
such a window. Here the backend has a fixed number of server slots (:data:`SLOTS`); an
upstream takes a slot with ``set server B/uNN addr IP port P``, goes in and out of service
with ``set server … state ready|drain|maint`` and gets its share with ``set server …
weight``. Those are changes to the running process: no listener is closed, no connection
is touched, nothing is re-read.

- Balancing: ``leastconn`` (weighted by the servers' weights). Health: ``GET /health``
  every second (two failures take an upstream out, one success puts it back). A request
  whose connection an upstream refused is retried on another one (``retries 3``,
  ``option redispatch 1``); nothing that reached an upstream is retried (the default
  ``retry-on conn-failure``): a completion may have run.
- Kept-alive upstream connections, each one private to the client connection that made
  it (``option http-keep-alive``, ``http-reuse never``): no pool of idle connections is
  shared between clients, so an upstream connection is idle only while its client is, and
  a client idle for :data:`~ossctl.fleet.frontdoor.base.UPSTREAM_IDLE_S` (2 s: ``timeout
  http-keep-alive``) is closed together with its upstream connections — well before
  llama-server closes them itself (5 s idle; after 100 requests it says so in the
  response). After a streamed response llama-server closes the connection at once (it
  announces keep-alive all the same); the next request on that client connection needs
  the client's round trip first, by which time HAProxy has seen the close and dials
  afresh (0 failures in 4692 streamed requests at load 6 on 2 cores; Caddy, whose Go
  transport hands a just-released connection to *another* client, failed 9 % of them:
  Caddy keeps its fresh connection per request). A request that still meets a closed
  connection with nothing answered is retried when it is a GET or HEAD
  (``retry-on conn-failure empty-response``), never a POST. Non-streamed requests skip
  the connect per request (twice through docker-proxy on a published port).
- The record: the upstream list ossctl set (url, weight, enabled — disabled ones
  included — and the slot each holds) is the first line of the configuration file in
  the container, and each change rewrites that file (atomically, before the runtime
  commands) so that a restarted container starts from the last upstreams it was given.
  One file is both the record a fresh ossctl reads and the configuration a restart reads:
  they cannot disagree. (``server-state-file`` would need the same write, since HAProxy
  does not save it by itself, and keeps no URL or order.)
- The admin socket is a unix socket inside the container, never on the network; ossctl
  talks to it with ``docker exec … perl`` (perl-base is part of every Debian image: the
  official ``haproxy:2.8`` image has it, and no socat), so it works the same over
  ``unix://``, ``tcp://`` and ``ssh://``.

Pure parts (:func:`haproxy_config`, :func:`record_from_config`, :func:`assign_slots`,
:func:`runtime_commands`, :func:`container_spec`, :func:`parse_stat`) take no I/O;
:class:`HAProxyFrontDoor` does the Docker calls.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from typing import Any
from urllib.parse import urlsplit

from ossctl import labels as L
from ossctl.errors import OssctlError, RemoteError, UsageError
from ossctl.fleet.frontdoor.base import (
    DEFAULT_IMAGES, HEALTH_URI, HTTP_TIMEOUT_S, RESTART_POLICY, UPSTREAM_IDLE_S, FrontDoorSpec, FrontDoorState,
    ProxyFrontDoor, Upstream, UpstreamState, canonical_url, check_unique,
)
from ossctl.fleet.frontdoor.caddy import CaddyFrontDoor

KIND = "haproxy"
DEFAULT_IMAGE = DEFAULT_IMAGES[KIND]  # the official image (Debian: has perl-base)
SLOTS = 32  # server slots of the backend: upstreams one front door can hold at once
BACKEND = "upstreams"
FRONTEND = "frontdoor"
STATE_DIR = "/var/lib/haproxy/ossctl"  # owned by the haproxy user in the official image
LIVE_CFG = f"{STATE_DIR}/haproxy.cfg"
SOCKET = f"{STATE_DIR}/admin.sock"
SEED_CFG = "/etc/ossctl/haproxy.cfg"  # the first configuration; copied to LIVE_CFG once
RECORD = "# ossctl-frontdoor "
PLACEHOLDER = ("127.0.0.1", 9)  # address of an empty slot (in maintenance: never dialled)
NO_UPSTREAM = "no upstream is enabled at the front door"

Table = dict[int, Upstream]  # slot number (1..SLOTS) -> the upstream that holds it


# -- pure ------------------------------------------------------------------------------

def slot_name(n: int) -> str:
    return f"u{n:02d}"


def _host_port(url: str) -> tuple[str, int]:
    u = urlsplit(url)
    return u.hostname or "", int(u.port or 0)


def haproxy_config(spec: FrontDoorSpec, table: Table, order: list[str] | None = None) -> str:
    """HAProxy's configuration for ``spec`` with ``table``'s upstreams in their slots (a
    disabled one in maintenance) and every other slot empty. The first line records the
    list (in ``order`` of URLs when given, else by slot). Pure."""
    if len(table) > SLOTS or any(not 1 <= n <= SLOTS for n in table):
        raise UsageError(f"the front door holds at most {SLOTS} upstreams, got {len(table)}")
    urls = order or [table[n].url for n in sorted(table)]
    slot_of = {u.url: n for n, u in table.items()}
    record = {"profile": spec.profile,
              "upstreams": [{**asdict(table[slot_of[url]]), "slot": slot_of[url]} for url in urls]}
    bind = f"{spec.host}:{spec.port}"  # HAProxy reads an IPv6 address's port after its last colon
    lines = [
        RECORD + json.dumps(record, sort_keys=True),
        "# Written by ossctl at every change of the upstream list (a restart starts from it);",
        "# the changes themselves go through the runtime API on the admin socket, without a reload.",
        "global",
        f"    stats socket {SOCKET} mode 600 level admin",
        "    stats timeout 30s",
        "    maxconn 4096",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 1h",
        "    timeout server 1h",
        "    timeout http-request 60s",
        f"    timeout http-keep-alive {UPSTREAM_IDLE_S}s",  # bounds the upstream connections' idle time too
        "    timeout queue 30s",
        "    timeout check 2s",
        "    retries 3",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response",  # empty-response: GET/HEAD only, see the backend
        "    option http-keep-alive",
        "    http-reuse never",
        f"frontend {FRONTEND}",
        f"    bind {bind}",
        f'    http-request return status 503 content-type text/plain string "{NO_UPSTREAM}" '
        f"hdr Retry-After 1 if {{ nbsrv({BACKEND}) eq 0 }}",
        f"    default_backend {BACKEND}",
        f"backend {BACKEND}",
        "    balance leastconn",
        "    http-request disable-l7-retry unless METH_GET",  # METH_GET: GET or HEAD; a POST may have run
        "    option httpchk",
        f"    http-check send meth GET uri {HEALTH_URI}",
        "    http-check expect status 200",
        "    default-server check inter 1s fastinter 500ms downinter 1s fall 2 rise 1 init-addr last,libc,none",
    ]
    for n in range(1, SLOTS + 1):
        u = table.get(n)
        if u is None:
            lines.append(f"    server {slot_name(n)} {PLACEHOLDER[0]}:{PLACEHOLDER[1]} disabled")
        else:
            host, port = _host_port(u.url)
            lines.append(f"    server {slot_name(n)} {host}:{port} weight {u.weight}" + ("" if u.enabled else " disabled"))
    return "\n".join(lines) + "\n"


def record_from_config(text: str) -> tuple[Table, list[str]]:
    """(table, URLs in recorded order) from a configuration :func:`haproxy_config` wrote.
    Pure; raises :class:`RemoteError` for any other file."""
    try:
        first = text.split("\n", 1)[0]
        if not first.startswith(RECORD):
            raise ValueError
        ups = json.loads(first[len(RECORD):])["upstreams"]
        table = {int(u["slot"]): Upstream(u["url"], u["weight"], u["enabled"]) for u in ups}
        order = [canonical_url(u["url"]) for u in ups]
        if len(table) != len(ups) or len(set(order)) != len(order) or any(not 1 <= n <= SLOTS for n in table):
            raise ValueError
        return table, order
    except (ValueError, KeyError, TypeError, UsageError):
        raise RemoteError("the front door's HAProxy configuration was not written by ossctl",
                          hint="remove that container (`docker rm -f NAME`) and let ossctl start it again") from None


def assign_slots(current: Table, upstreams: list[Upstream]) -> Table:
    """The table for ``upstreams``: an upstream already in ``current`` keeps its slot (its
    in-flight count stays with it); a new one takes a slot free in both the current and
    the new table, the first after the highest slot in use now (wrapping), so a slot just
    given up is not handed to another address while its last requests may still run.
    Pure; :class:`UsageError` for a URL listed twice or more than :data:`SLOTS`."""
    check_unique(upstreams)
    if len(upstreams) > SLOTS:
        raise UsageError(f"the front door holds at most {SLOTS} upstreams, got {len(upstreams)}")
    slot_of = {u.url: n for n, u in current.items()}
    table: Table = {slot_of[u.url]: u for u in upstreams if u.url in slot_of}
    start = max(current, default=0)
    free = [n for k in range(SLOTS) for n in [(start + k) % SLOTS + 1] if n not in current and n not in table]
    if len(free) < sum(1 for u in upstreams if u.url not in slot_of):
        # more new upstreams than slots left untouched by this change: reuse given-up ones
        free += [n for n in range(1, SLOTS + 1) if n not in table and n not in free]
    it = iter(free)
    for u in upstreams:
        if u.url not in slot_of:
            table[next(it)] = u
    return table


def runtime_commands(current: Table, new: Table) -> list[str]:
    """Runtime API commands that take the running HAProxy from ``current`` to ``new``:
    every slot of ``new`` gets its address, weight and state (the same value again is a
    no-op, so a change that failed half-way is completed by the next one), slots given up
    go to maintenance. Upstreams that take traffic come first, those that stop last, so
    there is never a moment with fewer of them than before and after. Pure."""
    up: list[str] = []
    down: list[str] = []
    for n in sorted(new):
        u, s = new[n], f"set server {BACKEND}/{slot_name(n)}"
        host, port = _host_port(u.url)
        cmds = [f"{s} addr {host} port {port}", f"{s} weight {u.weight}", f"{s} state {'ready' if u.enabled else 'drain'}"]
        (up if u.enabled else down).extend(cmds)
    gone = [f"set server {BACKEND}/{slot_name(n)} state maint" for n in sorted(current) if n not in new]
    return up + down + gone


def parse_stat(csv_text: str) -> dict[str, dict[str, str]]:
    """``show stat`` CSV -> {server name: {column: value}} for the backend's servers. Pure."""
    lines = [ln for ln in csv_text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("# "):
        return {}
    cols = lines[0][2:].split(",")
    out: dict[str, dict[str, str]] = {}
    for ln in lines[1:]:
        row = dict(zip(cols, ln.split(",")))
        if row.get("pxname") == BACKEND and row.get("svname") not in ("BACKEND", "FRONTEND"):
            out[row["svname"]] = row
    return out


def _int(v: str | None) -> int:
    try:
        return int(v or 0)
    except ValueError:
        return 0


def container_spec(spec: FrontDoorSpec, table: Table, order: list[str] | None = None) -> dict[str, Any]:
    """The container spec (for :meth:`DockerRuntime.run`): HAProxy on the host network. Its
    first configuration is written to :data:`SEED_CFG` and copied once to
    :data:`LIVE_CFG`, which ossctl rewrites at each change: a restarted container starts
    from the last upstreams. Pure."""
    start = (f'mkdir -p {STATE_DIR} && {{ [ -f {LIVE_CFG} ] || cp {SEED_CFG} {LIVE_CFG}; }} '
             f'&& exec haproxy -db -f {LIVE_CFG}')
    return {
        "name": spec.name,
        "image": spec.image,
        "command": ["sh", "-c", start],
        "network_mode": "host",
        "files": {SEED_CFG: haproxy_config(spec, table, order).encode()},
        "restart_policy": RESTART_POLICY,
        "labels": spec.labels(),
    }


# -- Docker + runtime API ---------------------------------------------------------------

# One exec in the front-door container per operation (perl-base: in every Debian image).
# Arguments: timeout s, socket, live cfg, new cfg ("" = none), runtime commands (one a
# line), read (1: print the cfg), stat (1: print `show stat`), host and port whose /slots
# to print (the API key, when there is one, comes in the environment). Output sections
# are separated by a record separator. Exit 3: the change failed; 4: reading failed.
_SCRIPT = r'''
use strict; use warnings;
use IO::Socket::UNIX; use IO::Socket::IP; use Socket qw(SOCK_STREAM getaddrinfo getnameinfo NI_NUMERICHOST NIx_NOSERV);
my ($t, $sock, $live, $cfg, $cmds, $read, $stat, $host, $port) = @ARGV;
$SIG{ALRM} = sub { die "timed out after $t s\n" };
alarm $t;
sub cli {
  my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $sock) or die "admin socket $sock: $!\n";
  print $s "$_[0]\n"; local $/; my $r = <$s>; close $s; return defined $r ? $r : "";
}
sub ip {
  my ($h) = @_; return $h if $h =~ /^[0-9.]+$/ || $h =~ /:/;
  my ($e, @r) = getaddrinfo($h, "", {socktype => SOCK_STREAM}); die "cannot resolve $h: $e\n" if $e || !@r;
  my ($e2, $a) = getnameinfo($r[0]{addr}, NI_NUMERICHOST, NIx_NOSERV); die "cannot resolve $h: $e2\n" if $e2; return $a;
}
eval {
  if (length $cfg) {
    open(my $f, '>', "$live.tmp") or die "cannot write $live.tmp: $!\n";
    print $f $cfg or die "cannot write $live.tmp: $!\n"; close $f or die "cannot write $live.tmp: $!\n";
    rename("$live.tmp", $live) or die "cannot replace $live: $!\n";
  }
  for my $c (split /\n/, $cmds) {
    $c =~ s/ addr (\S+)/" addr " . ip($1)/e;
    my $r = cli($c);
    my $ok = $c =~ / addr / ? $r =~ /changed|no need to change/ : $r !~ /\S/;
    (my $why = $r) =~ s/\s+/ /g; die "$c: $why\n" unless $ok;
  }
  1;
} or do { print STDERR $@; exit 3 };
eval {
  if ($read) { open(my $f, '<', $live) or die "cannot read $live: $!\n"; local $/; print <$f>; }
  print "\x1e";
  print cli("show stat") if $stat;
  print "\x1e";
  1;
} or do { print STDERR $@; exit 4 };
if (length $host) {
  my $s = IO::Socket::IP->new(PeerHost => $host, PeerPort => $port, Timeout => $t);
  if ($s) {
    my $k = $ENV{OSSCTL_FRONTDOOR_KEY};
    print $s "GET /slots HTTP/1.0\r\nHost: $host\r\n" . ($k ? "Authorization: Bearer $k\r\n" : "") . "\r\n";
    local $/; my $r = <$s>; $r = "" unless defined $r;
    my ($head, $body) = split /\r\n\r\n/, $r, 2;
    print $body if $head =~ m{^HTTP/1\.\d 200} && defined $body;
  }
}
exit 0;
'''


class HAProxyFrontDoor(ProxyFrontDoor):
    """The front door of ``spec.profile`` on the engine ``runtime`` talks to, on HAProxy.
    The same interface as :class:`ossctl.fleet.frontdoor.base.ProxyFrontDoor`; every method raises
    :class:`OssctlError`: NotFoundError when the container does not exist, RemoteError
    when it is not running or the runtime API fails, ConflictError when it cannot listen
    on its port.

    The object remembers the table it last read or set, so a rollout (which holds the
    profile's lock: nobody else changes the list meanwhile) pays one ``docker exec`` per
    change."""

    def __init__(self, runtime, spec: FrontDoorSpec, log=None):
        super().__init__(runtime, spec if spec.kind == KIND else replace(spec, kind=KIND), log)
        self._table: Table | None = None
        self._order: list[str] = []

    # lifecycle ------------------------------------------------------------------------
    def _create(self, upstreams: list[Upstream], timeout: float) -> str:
        table = assign_slots({}, upstreams)
        order = [u.url for u in upstreams]
        cid = self.rt.run(container_spec(self.spec, table, order))
        self._wait_up(timeout, cid, created=True)
        self._table, self._order = table, order
        return cid

    # reading ----------------------------------------------------------------------------
    def state(self) -> FrontDoorState:
        """The recorded upstreams with HAProxy's live counters (one exec)."""
        record, stat, _ = self._run(read=True, stat=True)
        self._table, self._order = record_from_config(record.decode("utf-8", "replace"))
        return self._state(self._table, self._order, parse_stat(stat.decode("utf-8", "replace")))

    def _state(self, table: Table, order: list[str], live: dict[str, dict[str, str]]) -> FrontDoorState:
        slot_of = {u.url: n for n, u in table.items()}
        rows = []
        for url in order:
            n = slot_of[url]
            u, row = table[n], live.get(slot_name(n), {})
            rows.append(UpstreamState(u.url, u.weight, u.enabled, _int(row.get("scur")),
                                      _int(row.get("econ")) + _int(row.get("eresp"))))
        return FrontDoorState(self.spec.name, self.rt.host, self.spec.endpoint, self.spec.image, True, rows)

    def upstreams(self) -> list[Upstream]:
        """The upstream list (as this object last read or set it)."""
        table, order = self._current()
        slot_of = {u.url: n for n, u in table.items()}
        return [table[slot_of[url]] for url in order]

    # changing -------------------------------------------------------------------------
    def route(self, upstreams: list[Upstream]) -> None:
        """Make ``upstreams`` the upstream list: one exec that rewrites the recorded
        configuration and sends the runtime commands. No reload: requests in flight, and
        those that arrive meanwhile, are not touched."""
        self._apply(list(upstreams))

    def set_upstreams(self, upstreams: list[Upstream]) -> FrontDoorState:
        """:meth:`route`, then the state."""
        self.route(upstreams)
        return self.state()

    # internals ------------------------------------------------------------------------
    def _current(self) -> tuple[Table, list[str]]:
        if self._table is None:
            record, _, _ = self._run(read=True)
            self._table, self._order = record_from_config(record.decode("utf-8", "replace"))
        return self._table, self._order

    def _plan(self, upstreams: list[Upstream]) -> tuple[Table, list[str], str, list[str]]:
        table, _ = self._current()
        new = assign_slots(table, upstreams)
        order = [u.url for u in upstreams]
        return new, order, haproxy_config(self.spec, new, order), runtime_commands(table, new)

    def _apply(self, upstreams: list[Upstream]) -> None:
        new, order, cfg, cmds = self._plan(upstreams)
        self._run(cfg=cfg, cmds=cmds)
        self._table, self._order = new, order

    def _watch(self, target: str, api_key: str | None, change: list[Upstream] | None) -> int:
        """How many requests ``target`` serves (after applying ``change``, in the same exec)."""
        plan = self._plan(change) if change is not None else None
        table = plan[0] if plan else self._current()[0]
        slot = next((n for n, u in table.items() if u.url == target), None)
        host, port = _host_port(target)
        _, stat, slots = self._run(cfg=plan[2] if plan else None, cmds=plan[3] if plan else (), stat=True,
                                   slots=(host, port), api_key=api_key)
        if plan:
            self._table, self._order = plan[0], plan[1]
        row = parse_stat(stat.decode("utf-8", "replace")).get(slot_name(slot), {}) if slot else {}
        try:
            processing = sum(1 for x in json.loads(slots) if isinstance(x, dict) and x.get("is_processing"))
        except (ValueError, TypeError):
            processing = 0  # unreachable, disabled: the front door's own count still holds
        return max(_int(row.get("scur")), processing)

    def _run(self, cfg: str | None = None, cmds=(), read: bool = False, stat: bool = False,
             slots: tuple[str, int] | None = None, api_key: str | None = None) -> tuple[bytes, bytes, bytes]:
        """One exec of :data:`_SCRIPT`; (recorded configuration, ``show stat``, /slots)."""
        host, port = slots if slots else ("", 0)
        argv = ["perl", "-e", _SCRIPT, "--", str(HTTP_TIMEOUT_S), SOCKET, LIVE_CFG, cfg or "", "\n".join(cmds),
                "1" if read else "", "1" if stat else "", host, str(port)]
        env = {"OSSCTL_FRONTDOOR_KEY": api_key} if api_key else None
        try:
            rc, out, err = self.rt.exec(self.spec.name, argv, env=env)
        except OssctlError:
            c = self.rt.find(self.spec.name)
            if c is not None and c["running"]:
                pass  # the exec's answer was lost (docker-py misreads one now and then): each exec here is safe to repeat
            elif not (cfg or cmds or slots) or not self._revive():
                # a change (or a drain's look) starts a stopped front door again, as Caddy's
                # does; reading the state says that it is not running
                self._raise_not_running()
                raise
            rc, out, err = self.rt.exec(self.spec.name, argv, env=env)
        if rc != 0:
            raise self._failed("change" if rc == 3 else "read", rc, err)
        parts = out.split(b"\x1e", 2)
        if len(parts) != 3:
            raise RemoteError(f"front door {self.spec.name} on {self.rt.host}: the runtime API answered "
                              f"{out[:80]!r}", hint=f"see `docker logs {self.spec.name}`")
        return parts[0], parts[1], parts[2]

    def _read_other(self, c: dict[str, Any]) -> list[Upstream] | None:
        """The upstreams of a front door that is to be replaced: ours (another image or
        address) or Caddy's (the profile changed ``[frontdoor] kind``)."""
        if c["labels"].get(L.FRONTDOOR_KIND, "caddy") == KIND:
            return self.upstreams()
        admin = int(c["labels"].get(L.FRONTDOOR_ADMIN_PORT) or self.spec.admin_port)
        return CaddyFrontDoor(self.rt, replace(self.spec, kind="caddy", image=c["image"], admin_port=admin)).upstreams()

    def _failed(self, what: str, rc: int, err: bytes) -> RemoteError:
        """The error for a runtime API exec ``what`` that exited ``rc``; raises the
        not-running error instead when the container stopped."""
        self._raise_not_running()
        why = (err.decode("utf-8", "replace").strip().splitlines() or [f"exit {rc}"])[-1]
        if rc in (126, 127) or "perl" in why and "not found" in why:
            why = f"the image {self.spec.image} has no perl (a Debian-based image such as {DEFAULT_IMAGE} has)"
        return RemoteError(f"front door {self.spec.name} on {self.rt.host}: runtime API {what} failed: {why}",
                           hint=f"see `docker logs {self.spec.name}`")

    def _wait_up(self, timeout: float, cid: str, created: bool) -> None:
        t0 = time.monotonic()
        argv = ["perl", "-e", _SCRIPT, "--", "5", SOCKET, LIVE_CFG, "", "", "", "1", "", "0"]
        while True:
            c = self.rt.find(cid)
            if c is None or not c["running"]:
                raise self._exited_while_starting(c, cid, created, _haproxy_error)
            try:
                rc, _, err = self.rt.exec(cid, argv)
            except OssctlError:
                rc, err = None, b""  # it stopped between the two calls: the next turn says why
            if rc == 0:
                return
            if (rc in (126, 127) or rc is not None and b"perl" in err and b"not found" in err) \
                    and (self.rt.find(cid) or {}).get("running"):
                raise self._failed("read", rc, err)  # no perl in the image (a container that stopped: next turn)
            if time.monotonic() - t0 > timeout:
                raise RemoteError(f"the front door {self.spec.name} did not answer on its admin socket within {timeout:g} s",
                                  hint=f"see `docker logs {self.spec.name}`")
            time.sleep(0.1)


def _haproxy_error(logs: str) -> str:
    """HAProxy's last ALERT line, else the last line."""
    lines = [ln.strip() for ln in logs.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "[ALERT]" in ln:
            return ln.split(" : ", 1)[-1].strip()
    return lines[-1] if lines else "no log output"
