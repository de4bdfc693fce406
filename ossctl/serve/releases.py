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
import math
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
from ossctl.serve.image_pin import image_digest

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
    image_digest: str | None = None  # repo digest (else image id) the image resolved to: the build
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
    fit: dict[str, Any] | None = None  # what llama.cpp's --fit chose (fit = true), from the server log
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
        for k, v in d.items():
            if k in _FIELD_CHECKS and not _FIELD_CHECKS[k][0](v):
                raise RecordError(f"field {k!r} must be {_FIELD_CHECKS[k][1]}, got {_short(v)}")
        _check_nested(d)
        return cls(**{k: v for k, v in d.items() if k in names and k != "state"}, state=state)

    def summary(self, current_id: str | None) -> dict[str, Any]:
        """The ``ossctl --json releases`` row."""
        return {
            "id": self.id, "profile": self.profile, "kind": self.kind, "state": self.state.value,
            "current": self.id == current_id, "source": self.source, "created": self.created,
            "image": self.image, "image_id": self.image_id, "build": self.build, "model_id": self.model_id,
            "composite_sha256": self.composite_sha256, "ctx": self.ctx, "endpoint": self.endpoint,
            "container_id": self.container_id, "rolled_back": self.rolled_back, "error": self.error,
            "owner": self.owner, "vram": self.vram, "digest": self.digest,
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
            "digest": self.digest,
        }

    @property
    def digest(self) -> str | None:
        """The build this release runs: its repo digest, else its image id (records written
        before ``image_digest`` was kept: from their image id / digests)."""
        if self.image_digest:
            return self.image_digest
        return image_digest(self.image, self.image_id, self.image_digests)

    def labels(self) -> dict[str, str]:
        """The small facts its container carries (the full record is in the ledger)."""
        return {L.MANAGED: "1", L.RELEASE: self.id, L.PROFILE: self.profile, L.KIND: self.kind,
                L.SOURCE: self.source or self.id}


def _short(v: Any) -> str:
    t = json.dumps(v, default=str)
    return t if len(t) <= 40 else t[:37] + "..."


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _opt(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_obj(v: Any) -> bool:
    return isinstance(v, dict)


# every field of a record, checked before anything reads it: one wrong type (a number for
# `created`) would otherwise fail later, far from the record, for every profile
_FIELD_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{k: (_is_str, "a string") for k in ("kind", "source", "created", "owner", "docker_host", "endpoint", "host",
                                            "image", "model_dir")},
    **{k: (_opt(_is_str), "a string or null") for k in (
        "container_id", "container_name", "image_id", "model_id", "composite_sha256", "repo", "revision",
        "api_key_file", "strategy", "previous", "rollback_to", "error", "image_digest")},
    **{k: (lambda v: isinstance(v, bool), "true or false") for k in ("container_removed", "rolled_back")},
    "port": (lambda v: _is_int(v) and 0 <= v <= 65535, "a port number"),
    **{k: (_opt(lambda v: _is_int(v) and v >= 0), "a whole number or null") for k in ("build", "ctx")},
    **{k: (_opt(lambda v: _is_num(v) and v >= 0), "a number of seconds or null") for k in ("ready_s", "deploy_s")},
    **{k: (_opt(_is_obj), "an object or null") for k in ("props", "bench", "vram", "fit")},
    "preflight": (_is_obj, "an object"),
    "image_digests": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings"),
    "profile_resolved": (_is_obj, "an object"),
    "spec": (_is_obj, "an object"),
}
# what a rollback reads of the recorded profile and container spec
_PROFILE_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "health_timeout": (lambda v: _is_num(v) and v > 0, "a number of seconds"),
    "host": (_is_str, "a string"),
    "ctx": (lambda v: _is_int(v) and v > 0, "a whole number"),
    "parallel": (lambda v: _is_int(v) and v > 0, "a whole number"),
}
_SPEC_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (lambda v: isinstance(v, str) and bool(v), "a container name"),
    "image": (lambda v: isinstance(v, str) and bool(v), "an image"),
    "command": (lambda v: isinstance(v, list) and len(v) >= 2 and all(isinstance(x, str) for x in v),
                "a list of arguments"),
    "labels": (lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()), "an object of strings"),
    "restart_policy": (lambda v: isinstance(v, dict) and isinstance(v.get("Name"), str), "an object with a Name"),
}


def _check_nested(d: dict[str, Any]) -> None:
    """The recorded profile and spec, when there, hold what a rollback to this release
    reads (a release recorded without them is one a rollback cannot go to)."""
    for table, checks in (("profile_resolved", _PROFILE_CHECKS), ("spec", _SPEC_CHECKS)):
        sub = d.get(table) or {}
        if not sub:
            continue
        for k, (ok, what) in checks.items():
            if k not in sub:
                raise RecordError(f"field {table}.{k} is missing")
            if not ok(sub[k]):
                raise RecordError(f"field {table}.{k} must be {what}, got {_short(sub[k])}")


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


def _pid_ns() -> str:
    """This process's PID namespace ("pid:[4026531836]"; "" when unknown): a pid means a
    process only inside the namespace it was read in (a CI job in a container with the
    host's network shares the hostname and boot id, not the pids)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def whoami() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def process_owner() -> dict[str, Any]:
    """This process as the engine is told about it (a lock holder, a trial's owner):
    ``{"owner": user@host, "pid", "boot_id", "pid_ns", "start"}``; :func:`holder_is_dead`
    reads it back."""
    return {"owner": whoami(), "pid": os.getpid(), "boot_id": _boot_id(), "pid_ns": _pid_ns(),
            "start": _proc_start(os.getpid())}


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
            # never started, so `docker container prune` takes it; the records stay in the
            # volume, and a reader recreates the holder over it rather than see no history
            if not create and not self.rt.has_volume(LEDGER_NAME):
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

    def remove_records(self, recs: list[Release], image: str) -> None:
        """Delete the files of ``recs`` (one short-lived container of ``image``, which must
        have ``rm``, with the ledger volume mounted: the archive API cannot delete).
        Raises :class:`OssctlError` when that did not work."""
        if not recs:
            return
        code, out = self.rt.run_once(image, ["-f", "--", *(f"{LEDGER_DIR}/{r.profile}/{r.id}.json" for r in recs)],
                                     entrypoint=["rm"], volumes={LEDGER_NAME: LEDGER_DIR})
        if code != 0:
            raise OssctlError(f"`rm` in {image} exited {code}: {(out.strip().splitlines() or [''])[-1][:120]}")

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

    def unlock(self, profile: str, force: bool = False) -> dict[str, Any] | None:
        """Break the lock of ``profile``; returns the holder's info, or None when it was
        not locked. A holder provably alive on this machine keeps it (:class:`ConflictError`)
        unless ``force``."""
        held = self.rt.find(lock_name(profile))
        if held is None:
            return None
        info = lock_info(held)
        if not force and holder_is_alive(info):
            raise ConflictError(f"profile {profile} on {self.rt.host} is locked by a process that is still running "
                                f"on this machine: {describe_holder(info)}",
                                hint=f"wait for it to finish (or stop it); `ossctl unlock --profile {profile} --force` "
                                     "breaks the lock anyway")
        self.rt.remove(held["id"])
        return info


def prunable(history: list[Release], keep: int, protect: set[str]) -> list[Release]:
    """Records of one profile (``history``, oldest first) that retention removes: all but
    the newest ``keep`` ok releases and the newest ``keep`` failed or interrupted ones.
    Never a pending one (a killed run is finished from it), nor the serving one, nor one
    named in ``protect`` (release or container ids: the rollback target, containers still
    on the engine). The newest record is always among those kept, so ids are never reused."""
    cur = next((r for r in reversed(history) if r.state is State.OK), None)
    seen = {True: 0, False: 0}
    out: list[Release] = []
    for r in reversed(history):
        if r.state is State.PENDING:
            continue
        ok = r.state is State.OK
        seen[ok] += 1
        if seen[ok] <= keep or r is cur or r.id in protect or (r.container_id and r.container_id in protect):
            continue
        out.append(r)
    return out[::-1]


def retain_records(ledger: Ledger, book: Book, profile: str, keep: int, image: str,
                   containers: list[dict[str, Any]], previous: Release | None,
                   log: Callable[[str], None]) -> list[str]:
    """Remove the records :func:`prunable` picks (``keep``: the profile's ``keep_releases``),
    keeping ``previous`` (the rollback target) and every record a container on the engine
    (``containers``) belongs to; best effort: a failure is said and everything kept.
    Returns the removed ids."""
    protect = {previous.id} if previous else set()
    for c in containers:
        protect |= {c["id"], c["labels"].get(L.RELEASE, ""), c["labels"].get(L.SOURCE, "")}
    gone = prunable(book.history(profile), keep, protect - {""})
    if not gone:
        return []
    try:
        ledger.remove_records(gone, image)
    except OssctlError as exc:
        log(f"warning: could not remove {len(gone)} old ledger record(s) of profile {profile} ({exc.message}); "
            "they are kept")
        return []
    hist = book.history(profile)
    for r in gone:
        hist.remove(r)
    ids = [r.id for r in gone]
    log(f"removed {len(ids)} old ledger record(s) of profile {profile} (keep_releases={keep}): {', '.join(ids)}")
    return ids


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


def _same_pid_space(info: dict[str, Any]) -> bool:
    """The holder's pid names a process here: same boot, same hostname, same PID namespace
    (a lock written before the namespace was recorded counts as another namespace)."""
    if not info.get("boot_id") or info.get("boot_id") != _boot_id():
        return False
    if str(info.get("owner", "")).rpartition("@")[2] != socket.gethostname():
        return False
    if not info.get("pid_ns") or info.get("pid_ns") != _pid_ns():
        return False
    pid = info.get("pid")
    return isinstance(pid, int) and not isinstance(pid, bool) and pid > 0


def holder_is_dead(info: dict[str, Any]) -> bool:
    """Provably dead: same machine, boot and PID namespace, and its pid is gone or now
    another process. A holder elsewhere (another machine, another PID namespace) is never
    presumed dead."""
    if not _same_pid_space(info):
        return False
    start = _proc_start(info["pid"])
    return not start or (bool(info.get("start")) and start != info["start"])


def holder_is_alive(info: dict[str, Any]) -> bool:
    """Provably alive: same machine, boot and PID namespace, and its pid is the process
    that took the lock (same start time)."""
    if not _same_pid_space(info) or not info.get("start"):
        return False
    return _proc_start(info["pid"]) == info["start"]


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
