"""Release history and the deploy lock, under ``settings.state_dir``.

One JSON file per Docker host (``state/releases/<host-slug>.json``), holding per profile
the id of the current release and the history (oldest first). Releases are keyed by
(docker host, profile). Every change rewrites the file atomically, so a crash leaves the
old history or the new one.

A release record (dict) carries: id, profile, kind ("deploy" | "rollback"), state
("pending" | "ok" | "failed" | "interrupted"), source (the release whose container it runs),
created (ISO time), docker_host, endpoint, host, port, container_id, container_name,
image, image_id, image_digests, model_dir, model_id, composite_sha256, repo, revision,
ctx, api_key_file, strategy, ready_s, error, rolled_back, container_removed, profile_resolved
and spec (to recreate the container).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ossctl.errors import ConflictError, OssctlError
from ossctl.fsutil import atomic_write

ID_RE = re.compile(r"^r(\d+)$")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def host_slug(host: str) -> str:
    """A file-name-safe key for a Docker endpoint."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", host).strip("-")[-48:]
    return f"{readable}-{hashlib.sha256(host.encode()).hexdigest()[:8]}"


def _path(settings, host: str) -> Path:
    return Path(settings.state_dir) / "releases" / f"{host_slug(host)}.json"


def load(settings, host: str) -> dict[str, Any]:
    p = _path(settings, host)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"docker_host": host, "profiles": {}}
    except (ValueError, UnicodeDecodeError) as exc:
        raise OssctlError(f"release history {p} is unreadable: {exc}",
                          hint="move the file aside; containers are still labelled and will be reconciled") from None
    doc.setdefault("profiles", {})
    return doc


def save(settings, host: str, doc: dict[str, Any]) -> None:
    doc["docker_host"] = host
    atomic_write(_path(settings, host), json.dumps(doc, indent=1, sort_keys=True) + "\n", mode=0o600)


def profile_doc(doc: dict[str, Any], profile: str) -> dict[str, Any]:
    return doc["profiles"].setdefault(profile, {"current": None, "history": []})


def find(doc: dict[str, Any], profile: str, rid: str) -> dict[str, Any] | None:
    for r in profile_doc(doc, profile)["history"]:
        if r["id"] == rid:
            return r
    return None


def current(doc: dict[str, Any], profile: str) -> dict[str, Any] | None:
    pd = doc["profiles"].get(profile)
    if not pd or not pd.get("current"):
        return None
    return find(doc, profile, pd["current"])


def next_id(doc: dict[str, Any], profile: str, seen_ids: list[str] = ()) -> str:
    """``r0001``, ``r0002``, ... after every id in the history and on container labels."""
    n = 0
    for rid in [r["id"] for r in profile_doc(doc, profile)["history"]] + list(seen_ids):
        m = ID_RE.match(rid or "")
        if m:
            n = max(n, int(m.group(1)))
    return f"r{n + 1:04d}"


def upsert(doc: dict[str, Any], profile: str, rec: dict[str, Any]) -> None:
    hist = profile_doc(doc, profile)["history"]
    for i, r in enumerate(hist):
        if r["id"] == rec["id"]:
            hist[i] = rec
            return
    hist.append(rec)


def current_release(settings, profile: str | None = None, host: str | None = None) -> dict[str, Any] | None:
    """The release serving now for ``profile`` on the Docker host (``DOCKER_HOST`` or the
    default socket), or the most recently created current release of any profile when
    ``profile`` is None. None when nothing is deployed. Reads the history only."""
    from ossctl.serve.docker_runtime import docker_host

    host = host or docker_host(settings)
    doc = load(settings, host)
    names = [profile] if profile else list(doc["profiles"])
    recs = [r for r in (current(doc, n) for n in names) if r]
    if not recs:
        return None
    return dict(max(recs, key=lambda r: r.get("created", "")))


def summary(rec: dict[str, Any], current_id: str | None) -> dict[str, Any]:
    """The ``ossctl --json releases`` row."""
    return {
        "id": rec["id"],
        "profile": rec["profile"],
        "kind": rec.get("kind", "deploy"),
        "state": rec.get("state"),
        "current": rec["id"] == current_id,
        "source": rec.get("source"),
        "created": rec.get("created"),
        "image": rec.get("image"),
        "image_id": rec.get("image_id"),
        "model_id": rec.get("model_id"),
        "composite_sha256": rec.get("composite_sha256"),
        "ctx": rec.get("ctx"),
        "endpoint": rec.get("endpoint"),
        "container_id": rec.get("container_id"),
        "rolled_back": bool(rec.get("rolled_back")),
        "error": rec.get("error"),
    }


def history(settings, host: str, profile: str | None = None) -> list[dict[str, Any]]:
    """Summaries of every release on ``host`` (of ``profile`` when given), newest first."""
    doc = load(settings, host)
    out = []
    for name, pd in doc["profiles"].items():
        if profile and name != profile:
            continue
        out += [summary(r, pd.get("current")) for r in pd["history"]]
    return sorted(out, key=lambda r: (r["created"] or "", r["id"]), reverse=True)


@contextlib.contextmanager
def deploy_lock(settings, host: str) -> Iterator[None]:
    """An exclusive, non-blocking lock per Docker host (``fcntl.flock``: the kernel frees it
    when the holder dies, so a killed deploy never leaves it stuck). Raises
    :class:`ConflictError` when another deploy or rollback holds it."""
    import fcntl

    p = Path(settings.state_dir) / "locks" / f"deploy-{host_slug(host)}.lock"
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise ConflictError(f"another deploy or rollback is running on {host} (pid {holder})",
                                hint="wait for it to finish; `ossctl status` shows what serves now") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
