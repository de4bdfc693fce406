"""Releases, their states, and the ledger that keeps them **on the Docker engine**.

Why on the engine: the engine is what runs the containers, so any ossctl pointed at it
(another operator's home, another machine, a CI runner) must see the same history, the same
current release and the same lock. ``OSSCTL_HOME`` only keeps models and caches.
(kubectl keeps rollout history in the cluster, not in the client.)

Layout on each engine (all created by ossctl on first use, no registry needed):
- image ``ossctl/ledger:1``: imported from an empty tar (0 bytes); nothing ever runs it.
- volume ``ossctl-ledger`` and container ``ossctl-ledger`` (created, never started) that
  mounts it at ``/ledger``: one JSON file per release, ``/ledger/<profile>/<id>.json``,
  written and read through the engine's archive API (``docker cp``), so a whole history is
  one request. The volume outlives the holder container (``docker container prune``): a
  missing holder is recreated over the same volume.
- per profile a lock: a container named ``ossctl-lock-<profile>`` (never started) whose
  labels say who holds it. Creating a uniquely named container is atomic on the engine, so
  two ossctl processes on any two machines cannot both hold it.
- the release containers carry small labels (:mod:`ossctl.labels`): release id, profile,
  kind, source, model id, composite, ctx, port — enough to say what runs even without
  the ledger, and to tie every container to its record.

The current release of a profile is derived, never stored: the newest release (by id)
whose state is ``ok``. A record is written ``pending`` before its container starts and
turns ``ok`` only after the health gate (the commit point), so a process killed at any
step leaves either the old current release or the new one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import getpass
import hashlib
import json
import os
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ossctl import labels as L
from ossctl.errors import ConflictError, OssctlError

ID_RE = re.compile(r"^r(\d+)$")
LEDGER_IMAGE = "ossctl/ledger:1"
LEDGER_NAME = "ossctl-ledger"
LEDGER_DIR = "/ledger"
LOCK_INFO = "ossctl.lock.info"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


class State(str, Enum):
    """A release's lifecycle. ``pending`` is written before its container starts; the
    health gate decides ``ok`` or ``failed``; a pending release found by the next run
    (whose process died) becomes ``interrupted``. ``ok``, ``failed`` and ``interrupted``
    are final."""

    PENDING = "pending"
    OK = "ok"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


ALLOWED: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.OK, State.FAILED, State.INTERRUPTED}),
    State.OK: frozenset(),
    State.FAILED: frozenset(),
    State.INTERRUPTED: frozenset(),
}


class RecordError(ValueError):
    """A ledger record that does not parse or does not have the shape of a release."""


@dataclass
class Release:
    """One deploy or rollback of a profile on one engine. ``source`` is the release whose
    container (or spec) it runs: itself for a deploy, the target for a rollback."""

    id: str
    profile: str
    kind: str = "deploy"  # deploy | rollback
    state: State = State.PENDING
    source: str = ""
    created: str = ""
    owner: str = ""  # user@host that made it
    docker_host: str = ""
    endpoint: str = ""
    host: str = "127.0.0.1"
    port: int = 0
    container_id: str | None = None
    container_name: str | None = None
    container_removed: bool = False
    image: str = ""
    image_id: str | None = None
    image_digests: list[str] = field(default_factory=list)
    build: int | None = None  # llama.cpp build number the image reports (None: unknown)
    model_dir: str = ""
    model_id: str | None = None
    composite_sha256: str | None = None
    repo: str | None = None
    revision: str | None = None
    ctx: int | None = None
    api_key_file: str | None = None
    strategy: str | None = None
    previous: str | None = None
    rollback_to: str | None = None
    rolled_back: bool = False
    error: str | None = None
    ready_s: float | None = None
    deploy_s: float | None = None
    props: dict[str, Any] | None = None
    bench: dict[str, Any] | None = None
    preflight: dict[str, Any] = field(default_factory=dict)
    vram: dict[str, Any] | None = None
    profile_resolved: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)

    def to(self, new: State, error: str | None = None) -> None:
        """Move to ``new``; raises ``ValueError`` for a transition the lifecycle does not allow."""
        if new not in ALLOWED[self.state]:
            raise ValueError(f"release {self.id}: {self.state.value} → {new.value} is not allowed")
        self.state = new
        if error is not None:
            self.error = error

    @property
    def number(self) -> int:
        return int(ID_RE.match(self.id).group(1))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["state"] = self.state.value
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Release:
        """Raises :class:`RecordError` for anything that is not a release record."""
        if not isinstance(d, dict):
            raise RecordError("not a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        for key in ("id", "profile", "state"):
            if not isinstance(d.get(key), str):
                raise RecordError(f"missing field {key!r}")
        if not ID_RE.match(d["id"]):
            raise RecordError(f"bad release id {d['id']!r}")
        try:
            state = State(d["state"])
        except ValueError:
            raise RecordError(f"unknown state {d['state']!r}") from None
        rec = cls(**{k: v for k, v in d.items() if k in names and k != "state"}, state=state)
        if not isinstance(rec.profile_resolved, dict) or not isinstance(rec.spec, dict):
            raise RecordError("profile_resolved and spec must be objects")
        if rec.port is not None and not isinstance(rec.port, int):
            raise RecordError("port must be a number")
        return rec

    def summary(self, current_id: str | None) -> dict[str, Any]:
        """The ``ossctl --json releases`` row."""
        return {
            "id": self.id, "profile": self.profile, "kind": self.kind, "state": self.state.value,
            "current": self.id == current_id, "source": self.source, "created": self.created,
            "image": self.image, "image_id": self.image_id, "build": self.build, "model_id": self.model_id,
            "composite_sha256": self.composite_sha256, "ctx": self.ctx, "endpoint": self.endpoint,
            "container_id": self.container_id, "rolled_back": self.rolled_back, "error": self.error,
            "owner": self.owner, "vram": self.vram,
        }

    def public(self) -> dict[str, Any]:
        """The ``deploy`` / ``rollback`` ``--json`` shape."""
        return {
            "id": self.id, "profile": self.profile, "kind": self.kind, "state": self.state.value,
            "source": self.source, "previous": self.previous, "strategy": self.strategy,
            "docker_host": self.docker_host, "endpoint": self.endpoint, "container_id": self.container_id,
            "container_name": self.container_name, "image": self.image, "image_id": self.image_id,
            "model_id": self.model_id, "composite_sha256": self.composite_sha256, "ctx": self.ctx,
            "api_key_file": self.api_key_file, "created": self.created, "ready_s": self.ready_s,
        }

    def labels(self) -> dict[str, str]:
        """The small facts its container carries (the full record is in the ledger)."""
        return {L.MANAGED: "1", L.RELEASE: self.id, L.PROFILE: self.profile, L.KIND: self.kind,
                L.SOURCE: self.source or self.id}


@dataclass
class Unreadable:
    profile: str
    name: str
    reason: str


class Book:
    """Everything the ledger holds, read in one request."""

    def __init__(self, recs: list[Release], unreadable: list[Unreadable]):
        self.unreadable = unreadable
        self._by_profile: dict[str, list[Release]] = {}
        for r in sorted(recs, key=lambda r: r.number):
            self._by_profile.setdefault(r.profile, []).append(r)

    def profiles(self) -> list[str]:
        return sorted(self._by_profile)

    def history(self, profile: str) -> list[Release]:
        """Oldest first."""
        return self._by_profile.setdefault(profile, [])

    def find(self, profile: str, rid: str) -> Release | None:
        return next((r for r in self.history(profile) if r.id == rid), None)

    def current(self, profile: str) -> Release | None:
        """The newest ``ok`` release of ``profile``: what should serve."""
        return next((r for r in reversed(self.history(profile)) if r.state is State.OK), None)

    def next_id(self, profile: str, seen_ids: list[str] = ()) -> str:
        """``r0001``, ``r0002``, ... after every id in the ledger and on container labels
        (unreadable records included, so an id is never reused)."""
        n = 0
        ids = [r.id for r in self.history(profile)] + list(seen_ids)
        ids += [u.name for u in self.unreadable if u.profile == profile]
        for rid in ids:
            m = ID_RE.match(rid or "")
            if m:
                n = max(n, int(m.group(1)))
        return f"r{n + 1:04d}"

    def add(self, rec: Release) -> None:
        hist = self.history(rec.profile)
        if all(r.id != rec.id for r in hist):
            hist.append(rec)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_start(pid: int) -> str:
    """The process's start time in clock ticks since boot ("" when unknown): with the pid it
    tells a live lock holder from a new process that reused its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def whoami() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def process_owner() -> dict[str, Any]:
    """This process as the engine is told about it (a lock holder, a trial's owner):
    ``{"owner": user@host, "pid", "boot_id", "start"}``; :func:`holder_is_dead` reads it back."""
    return {"owner": whoami(), "pid": os.getpid(), "boot_id": _boot_id(), "start": _proc_start(os.getpid())}


def lock_name(profile: str) -> str:
    return f"ossctl-lock-{profile}"


class Ledger:
    """The release ledger and the per-profile lock on one engine (``rt`` is a
    :class:`~ossctl.serve.docker_runtime.DockerRuntime`)."""

    def __init__(self, rt):
        self.rt = rt
        self._holder: str | None = None

    # storage --------------------------------------------------------------------------
    def _holder_id(self, create: bool) -> str | None:
        if self._holder:
            return self._holder
        st = self.rt.find(LEDGER_NAME)
        if st is None:
            if not create:
                return None
            self.rt.ensure_empty_image(LEDGER_IMAGE, {L.LEDGER: "1"})
            self.rt.create_marker(LEDGER_NAME, LEDGER_IMAGE, {L.LEDGER: "1"}, volume=(LEDGER_NAME, LEDGER_DIR))
            st = self.rt.find(LEDGER_NAME)
        self._holder = st["id"]
        return self._holder

    def load(self, profile: str | None = None) -> Book:
        """Every record on the engine (of ``profile`` when given), in one request. Records
        that do not parse are kept aside in ``Book.unreadable`` (never acted on)."""
        hid = self._holder_id(create=False)
        if profile:
            files = {f"{profile}/{k}": v for k, v in self.rt.read_tree(hid, f"{LEDGER_DIR}/{profile}").items()} \
                if hid else {}
        else:
            files = self.rt.read_tree(hid, LEDGER_DIR) if hid else {}
        recs: list[Release] = []
        bad: list[Unreadable] = []
        for path, data in files.items():
            parts = path.split("/")
            if len(parts) != 2 or not parts[1].endswith(".json") or parts[0].startswith("."):
                continue  # ".verified/": what the model directories held when last hashed
            profile, name = parts[0], parts[1][:-5]
            try:
                rec = Release.from_dict(json.loads(data.decode("utf-8")))
                if (rec.profile, rec.id) != (profile, name):
                    raise RecordError(f"holds release {rec.profile}/{rec.id}")
            except (ValueError, UnicodeDecodeError, TypeError) as exc:
                bad.append(Unreadable(profile, name, str(exc).splitlines()[0][:120]))
                continue
            recs.append(rec)
        return Book(recs, bad)

    def save(self, *recs: Release) -> None:
        """Write records (one request). A record is a few KB, written by the engine in one
        piece; a reader that finds one half-written reports it unreadable and leaves it alone."""
        hid = self._holder_id(create=True)
        self.rt.write_tree(hid, LEDGER_DIR, {f"{r.profile}/{r.id}.json":
                                              (json.dumps(r.to_dict(), indent=1, sort_keys=True) + "\n").encode()
                                              for r in recs})

    def verified(self, model_dir: str) -> dict[str, Any]:
        """What ``model_dir`` on this engine's host held when it was last hashed there:
        ``{file name: {"size", "mtime", "sha256"}}``, {} when never (or unreadable)."""
        hid = self._holder_id(create=False)
        data = self.rt.read_tree(hid, f"{LEDGER_DIR}/.verified").get(_verified_name(model_dir)) if hid else None
        try:
            rec = json.loads(data.decode("utf-8")) if data else {}
        except (ValueError, UnicodeDecodeError):
            return {}
        return rec.get("files", {}) if isinstance(rec, dict) and rec.get("dir") == model_dir else {}

    def save_verified(self, model_dir: str, files: dict[str, dict[str, Any]]) -> None:
        """Record what ``model_dir`` held when hashed (see :meth:`verified`)."""
        hid = self._holder_id(create=True)
        body = json.dumps({"dir": model_dir, "at": now_iso(), "files": files}, indent=1, sort_keys=True) + "\n"
        self.rt.write_tree(hid, LEDGER_DIR, {f".verified/{_verified_name(model_dir)}": body.encode()})

    # the lock -------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, profile: str, op: str, log: Callable[[str], None] = lambda _m: None) -> Iterator[None]:
        """Hold the engine-side lock of ``profile`` for ``op`` (deploy / rollback). A lock
        left by a dead process on this machine is broken (and said so); one held by a live
        process, or by another machine, raises :class:`ConflictError` naming the holder."""
        me = {"op": op, **process_owner(), "since": now_iso()}
        self.rt.ensure_empty_image(LEDGER_IMAGE, {L.LEDGER: "1"})
        cid = None
        for _ in range(3):
            cid = self.rt.create_marker(lock_name(profile), LEDGER_IMAGE,
                                        {L.LOCK: profile, LOCK_INFO: json.dumps(me, sort_keys=True)})
            if cid:
                break
            held = self.rt.find(lock_name(profile))
            if held is None:
                continue  # released between our try and our look
            info = lock_info(held)
            if holder_is_dead(info):
                log(f"broke a stale lock on profile {profile}: {describe_holder(info)} is gone")
                self.rt.remove(held["id"])
                continue
            raise ConflictError(f"profile {profile} on {self.rt.host} is locked: {describe_holder(info)}",
                                hint=f"wait for it to finish; if that process is gone, `ossctl unlock --profile {profile}`")
        if not cid:
            raise ConflictError(f"could not take the lock of profile {profile} on {self.rt.host}",
                                hint="another ossctl keeps taking it; try again")
        try:
            yield
        finally:
            try:
                self.rt.remove(cid)
            except OssctlError as exc:
                log(f"warning: could not release the lock of profile {profile} on {self.rt.host} ({exc.message}); "
                    f"the next deploy or rollback from this machine breaks it, another machine needs "
                    f"`ossctl unlock --profile {profile}`")

    def unlock(self, profile: str) -> dict[str, Any] | None:
        """Break the lock of ``profile`` whoever holds it; returns the holder's info, or
        None when it was not locked."""
        held = self.rt.find(lock_name(profile))
        if held is None:
            return None
        self.rt.remove(held["id"])
        return lock_info(held)


def _verified_name(model_dir: str) -> str:
    return hashlib.sha256(model_dir.encode()).hexdigest()[:16] + ".json"


def lock_info(container: dict[str, Any]) -> dict[str, Any]:
    try:
        info = json.loads(container["labels"].get(LOCK_INFO, "{}"))
        return info if isinstance(info, dict) else {}
    except ValueError:
        return {}


def describe_holder(info: dict[str, Any]) -> str:
    return (f"{info.get('op', '?')} by {info.get('owner', '?')} (pid {info.get('pid', '?')}) "
            f"since {info.get('since', '?')}")


def holder_is_dead(info: dict[str, Any]) -> bool:
    """Provably dead: same machine and boot, and its pid is gone or now another process.
    A holder on another machine is never presumed dead."""
    if not info.get("boot_id") or info.get("boot_id") != _boot_id():
        return False
    if str(info.get("owner", "")).rpartition("@")[2] != socket.gethostname():
        return False
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    start = _proc_start(pid)
    return not start or (bool(info.get("start")) and start != info["start"])


def current_release(settings, profile: str | None = None, host: str | None = None) -> dict[str, Any] | None:
    """The release serving now for ``profile`` on the Docker host (``host``, else
    ``DOCKER_HOST`` or the default socket) — or the newest current release of any profile
    when ``profile`` is None — as a record dict read from the engine's ledger; None when
    nothing is deployed."""
    from ossctl.serve.docker_runtime import DockerRuntime, docker_host

    host = host or docker_host(settings)
    book = Ledger(DockerRuntime(host, dict(settings.env))).load()
    recs = [r for r in (book.current(n) for n in ([profile] if profile else book.profiles())) if r]
    return max(recs, key=lambda r: r.created).to_dict() if recs else None


# ---------------------------------------------------------------------- before the ledger

def _legacy_path(settings, host: str) -> Path:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", host).strip("-")[-48:]
    slug = f"{readable}-{hashlib.sha256(host.encode()).hexdigest()[:8]}"
    return Path(settings.state_dir) / "releases" / f"{slug}.json"


def import_legacy(settings, host: str, ledger: Ledger, log: Callable[[str], None]) -> int:
    """Releases that ossctl 0.1 kept in ``OSSCTL_HOME/state/releases/<host>.json``: copy
    the ones the engine does not know yet into the ledger (once; the file is then renamed
    ``*.imported``, and where the home is read-only the ledger's own records keep a second
    run from writing anything). Returns how many were imported. Nothing running is touched."""
    p = _legacy_path(settings, host)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return 0
    known = ledger.load()
    new: list[Release] = []
    for profile, pd in (doc.get("profiles") or {}).items() if isinstance(doc, dict) else ():
        for d in (pd or {}).get("history") or []:
            try:
                rec = Release.from_dict({**d, "profile": profile})
            except RecordError:
                continue
            if known.find(profile, rec.id) is None and not any(
                    (u.profile, u.name) == (profile, rec.id) for u in known.unreadable):
                new.append(rec)
    if new:
        ledger.save(*new)
        log(f"imported {len(new)} release(s) from {p} into the engine-side ledger")
    with contextlib.suppress(OSError):
        p.rename(p.with_name(p.name + ".imported"))
    return len(new)
