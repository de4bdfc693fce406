"""A fleet: one profile rolled across several Docker engines behind one front door.

The profile's ``[[hosts]]`` name the engines (a DOCKER_HOST URL or a ``docker context``
name each, with per-host overrides); its ``[frontdoor]`` table says where clients connect.
Each engine keeps its own ledger and lock (:mod:`ossctl.serve.releases`), and each host is
changed by the same rollout step as a single engine (:func:`ossctl.serve.rollout.deploy_locked`).
What this module adds is the order and the safety around it:

1. **Preflight every host first**, concurrently, each within its own time limit, so one slow
   or unreachable host never hangs the command: engine reachable, image present and the
   same image id everywhere, the same llama.cpp build everywhere, the model files on that
   host hashed *on that host* (``sha256sum`` in a short-lived container: model bytes never
   cross the network) and compared with the manifest, the on-chain hash when
   ``require_registered``. Nothing changes unless every host passes.
2. **The lock of every host** is taken before the first change and held to the end, so two
   rollouts of one fleet never interleave anywhere.
3. **Host by host** (``max_unavailable`` at a time): ``recreate`` drains it at the front
   door (no new requests; wait for those in flight), deploys, gates, puts it back;
   ``blue-green`` gates the new release on the other port of the pair beside the old one,
   puts it in, then drains and stops the old one. A profile with a ``[frontdoor]`` and no
   ``[[hosts]]`` is a fleet of one host (:func:`as_fleet`).
4. **On the first failure**: that host's previous release is already back (the rollout step
   does that); the hosts already updated are rolled back the same way, so the fleet serves
   one version; exit 7 with a per-host account. ``keep_going`` leaves the updated ones.

Library code: reports progress through ``log``, never prints.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ossctl import labels as L
from ossctl.errors import ConflictError, DeployError, IntegrityError, Interrupted, OssctlError, RemoteError, UsageError
from ossctl.artifacts import signing
from ossctl.artifacts.manifest import locate_model_dir, read_manifest, require_verified
from ossctl.fleet.account import FleetDeploy, FleetRollback, FleetView, HostAccount, HostReach, HostState, summary
from ossctl.fleet.frontdoor import open_frontdoor
from ossctl.fleet.frontdoor.base import FrontDoorSpec, Upstream
from ossctl.fleet.frontdoor.bridge import bridge_url
from ossctl.serve import Log, ctrl_c_deferred, image_flags, nolog
from ossctl.serve.docker_runtime import docker_host, engine_address
from ossctl.serve.engine import Engine, open_engine
from ossctl.serve.llama_flags import parse_build
from ossctl.serve.preflight import check_registered, check_strategy, gate_timeout, profile_api_key, signed_statement
from ossctl.serve.profiles import Profile, host_profile
from ossctl.serve.releases import LEDGER_IMAGE
from ossctl.serve.rollout import bench_baseline, deploy_locked, rollback_locked, rollback_target
from ossctl.serve.results import EngineHistory, EngineStatus
from ossctl.serve.status import engine_history, engine_status

PREFLIGHT_TIMEOUT_S = 120.0  # one host's preflight, hashing its model files included
STATUS_TIMEOUT_S = 15.0
DRAIN_TIMEOUT_S = 300.0


@dataclass
class Member:
    """One host of the fleet: its endpoint, its profile (overrides applied), the address
    the front door and this machine reach its release on."""

    docker_host: str
    profile: dict[str, Any]
    reach: str
    engine: Engine | None = None  # once connected
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def upstream(self) -> str:
        return self.url(self.profile["port"])

    def url(self, port: int) -> str:
        """The upstream URL of this host's release on ``port``."""
        host = f"[{self.reach}]" if ":" in self.reach else self.reach
        return f"http://{host}:{port}"

    def door_url(self, fd, rel) -> str:
        """The URL the front door ``fd`` reaches release ``rel`` (one of this host's) at: the
        container's bridge address when ``fd`` runs on this host's engine (no docker-proxy
        between them, see :mod:`ossctl.fleet.frontdoor.bridge`), else :meth:`url` of its
        published port."""
        published = self.url(rel.port)
        if self.engine is None or self.engine.rt is not fd.rt or not rel.container_id:
            return published
        try:
            attrs = self.engine.rt.inspect(rel.container_id)
        except OssctlError:  # the published port is always right: keep it
            return published
        return (bridge_url(attrs, rel.port) if attrs else None) or published

    def in_door(self, fd, rel) -> str:
        """The URL under which ``fd`` lists ``rel`` now: :meth:`door_url`, or the published
        port where the front door still has that (set up by an ossctl before bridge
        routing; the next deploy's :meth:`~ossctl.fleet.frontdoor.base.ProxyFrontDoor.prepare`
        moves it)."""
        want, published = self.door_url(fd, rel), self.url(rel.port)
        if want != published and want not in {u.url for u in fd.upstreams()}:
            return published
        return want

    def current(self):
        """(current release, whether its container runs) on this host."""
        book = self.engine.book(self.profile["name"])
        cur = book.current(self.profile["name"])
        return cur, self.engine.running(cur) is not None


def as_fleet(settings, profile: Profile, docker_host_flag: str | None) -> Profile:
    """``profile`` with ``hosts``: a profile with a ``[frontdoor]`` but no ``[[hosts]]`` is a
    fleet of one host, the engine it targets (``--docker-host``, DOCKER_HOST, ...)."""
    if profile.get("hosts"):
        return profile
    here = str(locate_model_dir(settings, profile["model"]).resolve())
    return profile.replace(hosts=[{"docker_host": docker_host(settings, docker_host_flag), "model": here}],
                           max_unavailable=1)


def members(settings, profile: dict[str, Any]) -> list[Member]:
    """The profile's hosts; each is reached at its ``upstream`` override, else at its
    engine's address."""

    return [Member(h["docker_host"], host_profile(profile, h),
                   h.get("upstream") or engine_address(h["docker_host"], dict(settings.env)))
            for h in profile["hosts"]]


class BatchInterrupted(Exception):
    """Ctrl-C came while hosts were in a step; they finished it (``results`` as
    :func:`per_host` returns them) so that none is left half-changed."""

    def __init__(self, results: list[tuple[Member, Any, OssctlError | None]]):
        super().__init__("interrupted")
        self.results = results


def per_host(ms: list[Member], fn: Callable[[Member], Any], timeout: float | None,
             finish: Callable[[], None] | None = None) -> list[tuple[Member, Any, OssctlError | None]]:
    """``fn(member)`` for every member concurrently; a host that raises or does not answer
    within ``timeout`` seconds (None: wait, for steps that bound themselves) gets an error
    instead of stalling the others. With ``finish``: Ctrl-C (which only the main thread
    sees) lets the running calls end, calling ``finish()`` first, then raises
    :class:`BatchInterrupted` with their results; more Ctrl-Cs meanwhile are ignored."""
    pool = cf.ThreadPoolExecutor(max_workers=max(1, len(ms)), thread_name_prefix="ossctl-host")
    futs = {pool.submit(fn, m): m for m in ms}
    interrupted = False
    try:
        done, _ = cf.wait(futs, timeout=timeout)
    except (KeyboardInterrupt, Interrupted):
        if finish is None:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        interrupted = True
        finish()
        while True:
            try:
                done, _ = cf.wait(futs)
                break
            except (KeyboardInterrupt, Interrupted):
                continue
    out = []
    for f, m in futs.items():
        if f not in done:
            out.append((m, None, RemoteError(f"{m.docker_host} did not answer within {timeout:g} s")))
            continue
        exc = f.exception()
        if exc is None:
            out.append((m, f.result(), None))
        elif isinstance(exc, OssctlError):
            out.append((m, None, exc))
        else:
            out.append((m, None, RemoteError(f"{m.docker_host}: {type(exc).__name__}: {exc}")))
    pool.shutdown(wait=False, cancel_futures=True)
    if interrupted:
        raise BatchInterrupted(out)
    return out


# ---------------------------------------------------------------------- preflight

def verify_on_host(rt, image: str, model_dir: str, manifest, ledger) -> bool:
    """Check the manifest's files where they are, without moving model bytes: their sizes
    and mtimes are read on the host (no container started); when a file changed since it
    was last hashed there (``ledger``, the host's, keeps what ``model_dir`` held then), or
    was never hashed, a short-lived container of ``image`` with the directory mounted
    read-only runs ``sha256sum`` and the result is compared and recorded. The same trust as
    the local fast re-verify: size + mtime as last hashed. Returns True when it hashed.
    Raises :class:`IntegrityError` naming the file."""
    names = [f.name for f in manifest.files]
    rt.ensure_empty_image(LEDGER_IMAGE, {L.LEDGER: "1"})
    seen = rt.stat_files(model_dir, names, LEDGER_IMAGE)
    for f in manifest.files:
        st = seen[f.name]
        if st is None:
            raise IntegrityError(f"{rt.host}: {model_dir}/{f.name} is missing",
                                 hint="copy the model there, or point the host's `model` at its directory")
        if st["size"] != f.size:
            raise IntegrityError(f"{rt.host}: {model_dir}/{f.name} differs from the manifest "
                                 f"({st['size']} bytes, expected {f.size})",
                                 hint="copy the verified files there again (the composite must be the registered one)")
    last = ledger.verified(model_dir)
    if all(last.get(f.name) == {**seen[f.name], "sha256": f.sha256} for f in manifest.files):
        return False
    try:
        code, out = rt.run_once(image, [f"/models/{n}" for n in names], timeout=3600, entrypoint=["sha256sum"],
                                read_only={model_dir: "/models"})
    except OssctlError as exc:
        low = exc.message.lower()
        if "sha256sum" in low and ("not found" in low or "no such file" in low):
            raise UsageError(f"{rt.host}: the image {image} has no `sha256sum`, which a remote host's preflight runs "
                             "in it to hash the model files there",
                             hint="use a release image with sha256sum on its PATH (coreutils or busybox; the official "
                                  "llama.cpp images have it), the same image on every host") from None
        raise
    got: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 64:
            got[Path(parts[1].lstrip("*")).name] = parts[0].lower()
    for f in manifest.files:
        if f.name not in got:
            raise IntegrityError(f"{rt.host}: {model_dir}/{f.name} is missing or unreadable"
                                 + (f" (sha256sum exited {code})" if code else ""),
                                 hint="copy the model there, or point the host's `model` at its directory")
        if got[f.name] != f.sha256:
            raise IntegrityError(f"{rt.host}: {model_dir}/{f.name} differs from the manifest "
                                 f"(sha256 {got[f.name][:12]}…, expected {f.sha256[:12]}…)",
                                 hint="copy the verified files there again (the composite must be the registered one)")
    # the stat taken before hashing: a file changed meanwhile is hashed again next time
    ledger.save_verified(model_dir, {f.name: {**seen[f.name], "sha256": f.sha256} for f in manifest.files})
    return True


def _open(settings, m: Member, log: Log) -> None:
    """Connect ``m`` (its engine logs with the host's prefix, as every line about a host
    does) and note which engine answered (``facts["engine"]``, see :func:`_refuse_duplicates`)."""
    m.engine = open_engine(settings, m.docker_host, lambda msg: log(f"[{m.docker_host}] {msg}"))
    info = m.engine.rt.engine_info()
    m.facts["engine"] = (info.get("id"), info.get("name"), info.get("root_dir"))


def _refuse_duplicates(ms: list[Member]) -> None:
    """Two ``[[hosts]]`` entries that reach one engine (two URLs, a URL and a context) would
    wait on their own lock: refuse them before anything changes. An engine is its ``info``
    ID with its name and data root: engines of one machine can share the ID (docker 20.10
    derives it from /etc/docker/key.json, which they share), never the data root. Raises
    :class:`UsageError` (exit 2) naming both entries."""
    seen: dict[Any, tuple[int, Member]] = {}
    for i, m in enumerate(ms, 1):
        key = m.facts.get("engine")
        if not key or key[0] is None:
            continue
        if key in seen:
            j, first = seen[key]
            raise UsageError(f"[[hosts]] entries {j} ({first.docker_host}) and {i} ({m.docker_host}) reach the "
                             f"same Docker engine (ID {key[0]}, data root {key[2]}); "
                             "nothing was changed",
                             hint="list each engine once: remove one of the two entries from the profile")
        seen[key] = (i, m)


def check_host_signature(m: Member, model_dir: str, digests: dict[str, str], statement) -> None:
    """The digests ``m``'s host computed for its own copy (``digests``: name -> sha256)
    against the signed ``statement``: only the bundle's digests travel, never the model
    bytes. Raises :class:`IntegrityError` naming the host and the first file."""
    bad = signing.compare(statement.files, digests)
    if bad:
        p = bad[0]
        raise IntegrityError(f"{m.docker_host}: {model_dir}/{p['file']}: {p['detail']}",
                             hint="copy the signed files there again (`ossctl verify DIR --signer PUB.pem` "
                                  "checks a copy against the signature)")


def _preflight_host(settings, m: Member, manifest, log: Log, statement=None) -> dict[str, Any]:
    _open(settings, m, log)
    image = m.engine.rt.image_info(m.profile["image"])
    build = parse_build(image_flags.read_version(m.engine.rt, m.profile["image"], settings.cache_dir, image["id"]))
    image_flags.read_help(m.engine.rt, m.profile["image"], settings.cache_dir, image["id"])
    model_dir = m.profile["model"] if m.profile["model"].startswith("/") else None
    if model_dir is None:
        raise UsageError(f"{m.docker_host}: the model directory on that host is not known",
                         hint="give the host a `model = \"/path/on/that/host\"` in its [[hosts]] entry")
    if m.engine.rt.is_local and Path(model_dir, "manifest.toml").exists():
        # this machine's files: the fast path (size + mtime as last hashed), then the same composite
        here = require_verified(Path(model_dir))
        if here.composite_sha256 != manifest.composite_sha256:
            raise IntegrityError(f"{m.docker_host}: {model_dir} holds another model than the manifest")
        digests = {f.name: f.sha256 for f in here.files}
    else:
        hashed = verify_on_host(m.engine.rt, m.profile["image"], model_dir, manifest, m.engine.ledger)
        log(f"[{m.docker_host}] {model_dir}: " + ("hashed on the host, matches the manifest" if hashed else
            "unchanged since it was hashed on the host (size and mtime)"))
        digests = {n: rec.get("sha256") for n, rec in m.engine.ledger.verified(model_dir).items()}
    if statement is not None:
        check_host_signature(m, model_dir, digests, statement)
        log(f"[{m.docker_host}] {model_dir}: its digests are the signed ones")
    m.facts.update({"image_id": image["id"], "image_digests": image["digests"], "build": build})
    return {k: v for k, v in m.facts.items() if k != "engine"}


def preflight(settings, ms: list[Member], manifest, log: Log = nolog, statement=None) -> list[dict[str, Any]]:
    """Check every host (concurrently, each within :data:`PREFLIGHT_TIMEOUT_S`) and that
    they agree; with ``statement`` (a signed one, :func:`signed_statement`), each host's
    digests must be the signed ones. Returns one row per host; raises the first host's
    error (its exit code) with every host's account when any fails, :class:`UsageError`
    when two entries are one engine."""
    res = per_host(ms, lambda m: _preflight_host(settings, m, manifest, log, statement), PREFLIGHT_TIMEOUT_S)
    _refuse_duplicates(ms)
    rows = [{"docker_host": m.docker_host, "ok": err is None, "error": err.message if err else None,
             **(facts or {})} for m, facts, err in res]
    bad = [(m, err) for m, _, err in res if err is not None]
    if bad:
        first = bad[0][1]
        raise type(first)(f"preflight failed on {len(bad)} of {len(ms)} hosts; nothing was changed: "
                          + "; ".join(f"{m.docker_host}: {e.message}" for m, e in bad), hint=first.hint)
    for key, what in (("image_id", "image"), ("build", "llama.cpp build")):
        seen = {m.docker_host: m.facts[key] for m in ms}
        if len(set(seen.values())) > 1:
            raise ConflictError(f"the hosts disagree on the {what}: "
                                + ", ".join(f"{h} {str(v)[:19]}" for h, v in seen.items()),
                                hint="load the same image on every host (`docker save | ssh HOST docker load`), "
                                     "then deploy again")
    return rows


# ---------------------------------------------------------------------- rolling

def _frontdoor(settings, profile: dict[str, Any], ms: list[Member], log: Log):
    spec = FrontDoorSpec.from_profile(profile)
    where = profile["frontdoor"].get("docker_host") or ms[0].docker_host
    eng = next((m.engine for m in ms if m.docker_host == where and m.engine), None) or open_engine(settings, where, log)
    return open_frontdoor(eng.rt, spec, log)


@contextlib.contextmanager
def _locks(ms: list[Member], name: str, op: str, log: Log):
    """The profile's lock on every host, taken (and given back) on all hosts at once; when
    one is held elsewhere, the others taken here are given back and its error raised."""
    cms = {id(m): m.engine.ledger.lock(name, op, m.engine.log) for m in ms}  # its lines carry the host

    def release(held: list[Member]) -> None:
        per_host(held, lambda m: cms[id(m)].__exit__(None, None, None), None)

    res = per_host(ms, lambda m: cms[id(m)].__enter__(), None)
    errors = [err for _, _, err in res if err is not None]
    if errors:
        release([m for m, _, err in res if err is None])
        raise errors[0]
    try:
        yield
    finally:
        release(ms)


def _strategy(profile: dict[str, Any], requested: str | None, ms: list[Member], model_size: int, log: Log) -> str:
    """``blue-green`` (the new release on the other port of the pair beside the old one,
    which is drained and stopped once the new one is in the front door) or ``recreate``
    (drain, stop, start on the same port). ``auto``: blue-green on a single local host of a
    CPU profile when host RAM holds two copies of the model (``model_size`` bytes), else
    recreate (room on a remote host's, or on GPUs, is not checked from here)."""
    s = check_strategy(requested or profile["strategy"])
    if s != "auto":
        return s
    if len(ms) == 1 and ms[0].engine.rt.is_local and profile["gpus"] == "none":
        avail = _mem_available()
        s = "blue-green" if avail and 2 * model_size < 0.8 * avail else "recreate"
    else:
        s = "recreate"
    log(f"strategy auto → {s}")
    return s


def _mem_available() -> int | None:
    """Host MemAvailable in bytes (Linux), else None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def deploy(settings, profile: Profile, *, timeout: float | None = None, force: bool = False,
           keep_going: bool = False, strategy: str | None = None, log: Log = nolog,
           allow_image_change: bool = False) -> FleetDeploy:
    """Roll ``profile`` (resolved, with ``hosts``) across its hosts; see the module
    docstring. Returns the per-host account. Raises preflight errors (nothing changed),
    :class:`DeployError` (exit 7) with the per-host account when a host failed, and
    :class:`Interrupted` on Ctrl-C (after putting the fleet back on one version)."""
    name = profile["name"]
    gate_s = gate_timeout(profile, timeout)
    local_dir = locate_model_dir(settings, profile["model"]).resolve()
    manifest = read_manifest(local_dir)
    statement = signed_statement(profile, local_dir, manifest, log)
    api_key = profile_api_key(profile)
    ms = members(settings, profile)
    log(f"preflight of {len(ms)} host(s)")
    rows = preflight(settings, ms, manifest, log, statement)
    if profile["require_registered"]:
        check_registered(settings, manifest, log)
    strat = _strategy(profile, strategy, ms, manifest.total_size, log)
    fd = _frontdoor(settings, profile, ms, log)
    account = [HostAccount(m.docker_host, m.upstream, extra={"build": r.get("build")}) for m, r in zip(ms, rows)]
    t0 = time.monotonic()
    with _locks(ms, name, "deploy", log):
        res = per_host(ms, Member.current, None)
        for _, _, err in res:
            if err is not None:
                raise err
        now = {m.docker_host: cur for m, cur, _ in res}
        fd.prepare([Upstream(m.door_url(fd, cur)) for m in ms for cur, running in [now[m.docker_host]]
                   if cur and running])
        log(f"front door {fd.spec.endpoint} on {fd.rt.host} over {sum(r for _, r in now.values())} serving host(s)")
        done: list[tuple[Member, HostAccount]] = []
        try:
            gate = dict(timeout=gate_s, force=force, api_key=api_key, allow_image_change=allow_image_change)
            for a, b in _phases(len(ms), profile.get("canary", 0)):
                _roll_batches(ms[a:b], account[a:b], profile["max_unavailable"], done, log, lambda m: _deploy_host(
                    m, now[m.docker_host], fd, manifest, strat, gate, log))
                if b < len(ms):
                    log(f"canary passed on {', '.join(m.docker_host for m in ms[a:b])}; "
                        f"rolling the other {len(ms) - b} host(s)")
        except BaseException as exc:
            interrupted = isinstance(exc, (KeyboardInterrupt, Interrupted))
            if not keep_going or interrupted:
                _undo(done, fd, timeout, api_key, log)
            said = summary(account)
            if interrupted:
                raise Interrupted(f"interrupted: fleet rollout of {name!r} stopped; {said}") from None
            if isinstance(exc, OssctlError):
                raise DeployError(f"fleet rollout of {name!r} failed: {said}", hint=_serving_hint(
                    ms, name, "the fleet serves the previous release everywhere" if not keep_going else
                    "--keep-going: the hosts updated before the failure keep the new release")) from None
            raise
    return FleetDeploy(name, fd.spec.endpoint, fd.rt.host, strat, account, round(time.monotonic() - t0, 3))


def _phases(n: int, canary: int) -> list[tuple[int, int]]:
    """Host index ranges rolled one after another: with ``canary`` hosts, those first (the
    rest only once every one of them passed its gate), then the others (issue 23)."""
    return [(0, canary), (canary, n)] if 0 < canary < n else [(0, n)]


def _serving_hint(ms: list[Member], name: str, fine: str) -> str:
    """What is true after a failed fleet step, asked of every host at once (each within
    :data:`STATUS_TIMEOUT_S`): ``fine`` when every host serves, else which hosts serve
    nothing (a killed engine, a release that did not come back) and the command that
    serves there again."""
    down, mute = [], []
    for m, res, err in per_host(ms, Member.current, STATUS_TIMEOUT_S):
        if err is not None:
            down.append((m, "its engine does not answer"))
            mute.append(m.docker_host)
        elif not res[1]:
            down.append((m, f"its release {res[0].id} is not running" if res[0] else "nothing was deployed there"))
    if not down:
        return fine
    return ("; ".join(f"{m.docker_host} serves nothing ({why})" for m, why in down)
            + ("; the other hosts serve" if len(down) < len(ms) else "")
            + f"; `ossctl deploy --profile {name}` serves there again"
            + (f" once {' and '.join(mute)} answers" if mute else ""))


def _deploy_host(m: Member, now, fd, manifest, strat: str, gate: dict[str, Any], log: Log):
    """One host's turn: drain it at the front door (recreate), run the rollout step,
    swap the front door over to the new release (blue-green: add it, then drain and stop
    the old one). ``now``: (its current release, whether it runs); ``gate``: timeout,
    force, api_key. A failed step has brought the old release back: it is enabled again."""
    cur, running = now
    old = m.door_url(fd, cur) if cur and running else None  # prepare() has just listed it so
    side = strat == "blue-green" and old is not None
    hp = m.profile
    if side and cur.port == hp.port:
        hp = hp.replace(port=hp.port + 1)  # the other port of the pair
    if old and not side:
        log(f"draining {old} at the front door")
        fd.drain(old, timeout=DRAIN_TIMEOUT_S, api_key=gate["api_key"])
    try:
        rec = deploy_locked(m.engine, hp, manifest, Path(hp["model"]), strategy=strat, local_vram=m.engine.rt.is_local,
                            reach=m.reach, side_by_side=side, **gate)
    except BaseException:
        if old and not side:
            _put_back(m, fd, old)
        raise
    new = m.door_url(fd, rec)
    if side:
        fd.swap(None, new)
        log(f"{m.docker_host}: {new} in the front door; draining {old}")
        fd.drain(old, timeout=DRAIN_TIMEOUT_S, api_key=gate["api_key"])
        m.engine.rt.stop(cur.container_id)
    fd.swap(old, new)
    return rec


def _put_back(m: Member, fd, old: str) -> None:
    """After a failed step brought the previous release back: enable it at the front door
    again, under the address it has now (a restarted container may have another bridge
    address than ``old``, the one drained). Errors are left to the step's own."""
    with contextlib.suppress(OssctlError):
        back, running = m.current()
        fd.swap(old, m.door_url(fd, back) if back and running else old)


def _roll_batches(ms: list[Member], account: list[HostAccount], step: int,
                  done: list[tuple[Member, HostAccount]], log: Log, fn: Callable[[Member], Any]) -> None:
    """``fn`` over the hosts, ``step`` at a time, filling ``account`` and ``done`` (the
    updated hosts). Raises the first host error of a batch once the batch ended, and
    KeyboardInterrupt after a Ctrl-C (once the batch's steps finished)."""
    for i in range(0, len(ms), step):
        batch = list(zip(ms[i:i + step], account[i:i + step]))
        # no outer limit: a step bounds itself (health gate, drain), and one abandoned
        # half-way would keep changing its host while the others are rolled back
        try:
            results, stop = per_host([m for m, _ in batch], fn, timeout=None, finish=lambda: log(
                "Ctrl-C: the hosts in this batch finish their step, then the fleet is rolled back")), None
        except BatchInterrupted as bi:
            results, stop = bi.results, bi
        failed = None
        for (m, acc), (_, rec, err) in zip(batch, results):
            if err is None:
                acc.to(HostState.UPDATED, rec.id, m.url(rec.port))
                done.append((m, acc))
                log(f"{m.docker_host}: release {rec.id} serves at {m.url(rec.port)} behind the front door")
            else:
                acc.to(HostState.FAILED, error=err.message, note=err.hint)
                failed = failed or err
        if stop is not None:
            raise KeyboardInterrupt
        if failed is not None:
            raise failed


def _rollback_host(m: Member, fd, timeout: float | None, api_key: str | None):
    """Roll one host back behind the front door: drain what serves, roll back, put the
    restored release in (its port may differ: blue-green alternates)."""
    cur, running = m.current()
    old = m.in_door(fd, cur) if cur and running else None
    if old:
        fd.drain(old, timeout=DRAIN_TIMEOUT_S, api_key=api_key)
    try:
        rec = rollback_locked(m.engine, m.profile["name"], None, timeout)
    except BaseException:
        if old:
            _put_back(m, fd, old)
        raise
    fd.swap(old, m.door_url(fd, rec))
    return rec


def _undo(done: list[tuple[Member, HostAccount]], fd, timeout: float | None, api_key: str | None, log: Log) -> None:
    """Roll back the hosts already updated (newest first), each drained then put back.
    Ctrl-C meanwhile is said and ignored: stopping half-way would leave two versions."""
    with ctrl_c_deferred(lambda: log("Ctrl-C: still rolling the fleet back to one version; it ends by itself")):
        for m, acc in reversed(done):
            try:
                rec = _rollback_host(m, fd, timeout, api_key)
                acc.to(HostState.ROLLED_BACK, rec.id, m.url(rec.port))
                log(f"{m.docker_host}: rolled back to release {rec.source}")
            except OssctlError as exc:
                acc.to(HostState.ROLLBACK_FAILED, error=exc.message)


def rollback(settings, profile: Profile, *, timeout: float | None = None, log: Log = nolog) -> FleetRollback:
    """Roll every host of the fleet back to its previous release, host by host behind the
    front door, health-gated. Raises as one engine's rollback does (:class:`NotFoundError`
    when a host has no previous release) before any host changes, :class:`UsageError` when
    two entries are one engine, and :class:`DeployError` with the per-host account when a
    host's rollback fails (that host serves what it served before)."""
    name = profile["name"]
    api_key = profile_api_key(profile)
    ms = members(settings, profile)
    res = per_host(ms, lambda m: _open(settings, m, log), PREFLIGHT_TIMEOUT_S)
    bad = [(m, e) for m, _, e in res if e is not None]
    if bad:
        raise type(bad[0][1])("; ".join(f"{m.docker_host}: {e.message}" for m, e in bad) + "; nothing was changed",
                              hint=bad[0][1].hint)
    _refuse_duplicates(ms)
    fd = _frontdoor(settings, profile, ms, log)
    account = [HostAccount(m.docker_host, m.upstream) for m in ms]
    with _locks(ms, name, "rollback", log):
        _check_targets(ms, name)
        for m, acc in zip(ms, account):
            try:
                rec = _rollback_host(m, fd, timeout, api_key)
                acc.to(HostState.ROLLED_BACK, rec.id, m.url(rec.port), source=rec.source)
                log(f"{m.docker_host}: release {rec.id} ({rec.source}) serves at {m.url(rec.port)} behind the front door")
            except OssctlError as exc:
                acc.to(HostState.FAILED, error=exc.message)
                raise DeployError(f"fleet rollback of {name!r} stopped at {m.docker_host}: {exc.message}",
                                  hint=_serving_hint(ms, name, "; ".join(f"{a.docker_host}: {a.state.value}"
                                                                           for a in account))) from None
    return FleetRollback(name, fd.spec.endpoint, account)


def _check_targets(ms: list[Member], name: str) -> None:
    """Every host has a release to go back to (the choice one engine's rollback makes), or
    nothing changes: raises that host's error (:class:`NotFoundError` exit 3 for none)."""
    def one(m: Member) -> None:
        book = m.engine.book(name)
        rollback_target(book, name, book.current(name), None)

    bad = [(m, err) for m, _, err in per_host(ms, one, PREFLIGHT_TIMEOUT_S) if err is not None]
    if bad:
        first = bad[0][1]
        raise type(first)(f"fleet rollback of {name!r} refused on {len(bad)} of {len(ms)} hosts; nothing was changed: "
                          + "; ".join(f"{m.docker_host}: {e.message}" for m, e in bad), hint=first.hint)


def status(settings, profile: Profile, log: Log = nolog) -> FleetView:
    """Every host's current release in one list (each row carries its ``docker_host``); a
    host that does not answer within :data:`STATUS_TIMEOUT_S` is reported, the others still
    are."""
    rows, hosts = _every_host(settings, profile, lambda m: engine_status(settings, profile["name"], m.docker_host, log))
    return FleetView(rows, hosts, unreadable=[])


def history(settings, profile: Profile, log: Log = nolog) -> FleetView:
    """Every host's releases of the profile in one list, newest first (as :func:`status`
    treats hosts that do not answer)."""
    rows, hosts = _every_host(settings, profile, lambda m: engine_history(settings, profile["name"], m.docker_host, log))
    rows.sort(key=lambda r: (r["created"] or "", r["id"]), reverse=True)
    return FleetView(rows, hosts)


def currents(settings, profile: Profile, log: Log = nolog) -> dict[str, Any]:
    """The serving release of the fleet on every host, with the release whose bench it
    stands on (a rollback: the one it brought back): docker host → (Release, Release), or
    (None, None) where nothing serves or the host did not answer within
    :data:`STATUS_TIMEOUT_S`. What ``upgrade`` compares before and after."""
    def one(m: Member):
        _open(settings, m, log)
        book = m.engine.book(m.profile["name"])
        cur = book.current(m.profile["name"])
        return cur, bench_baseline(book, cur)

    return {m.docker_host: ((None, None) if err else res) for m, res, err in per_host(members(settings, profile), one,
                                                                              STATUS_TIMEOUT_S)}


def _every_host(settings, profile: Profile, fn: Callable[[Member], EngineStatus | EngineHistory],
                ) -> tuple[list[dict[str, Any]], list[HostReach]]:
    """``fn`` on every host at once: the rows of those that answered within
    :data:`STATUS_TIMEOUT_S` (each with its ``docker_host``), and which answered."""
    rows: list[dict[str, Any]] = []
    hosts = []
    for m, res, err in per_host(members(settings, profile), fn, STATUS_TIMEOUT_S):
        hosts.append(HostReach(m.docker_host, err is None, err.message if err else None))
        rows += [{**r, "docker_host": m.docker_host} for r in (res.releases if res else [])]
    return rows, hosts
