"""What one engine says about its releases: what serves now (``status``), every release
(``releases``), and breaking a dead process's lock (``unlock``). Read paths: nothing here
changes a release."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ossctl import labels as L
from ossctl.serve import Log, health, nolog
from ossctl.serve.engine import open_engine
from ossctl.serve.preflight import release_api_key
from ossctl.serve.releases import State
from ossctl.serve.results import EngineHistory, EngineStatus


def engine_status(settings, profile: str | None, docker_host_flag: str | None, log: Log = nolog) -> EngineStatus:
    """What runs now on one Docker engine: one entry per profile with a current release
    (container state, /health, uptime), plus containers of releases that are not ok
    (leftovers of interrupted runs, or unknown to the ledger)."""
    eng = open_engine(settings, docker_host_flag, log)
    book = eng.book(profile)
    by_profile: dict[str, list[dict[str, Any]]] = {}
    for c in eng.rt.list({L.MANAGED: "1", **({L.PROFILE: profile} if profile else {})}):
        by_profile.setdefault(c["labels"].get(L.PROFILE, ""), []).append(c)
    out = []
    for name in sorted(set(book.profiles()) | set(by_profile)):
        if profile and name != profile:
            continue
        cur = book.current(name)
        if not cur:
            continue
        containers = {c["id"]: c for c in by_profile.get(name, [])}
        st = eng.rt.find(cur.container_id) if cur.container_id in containers else None
        running = bool(st and st["running"])
        ok_ids = {r.id for r in book.history(name) if r.state is State.OK}
        leftovers = [c["name"] for c in containers.values()
                     if c["labels"].get(L.RELEASE) not in ok_ids and c["id"] != cur.container_id]
        started = st["started_ts"] if st else None
        out.append({
            "profile": name, "release": cur.id, "kind": cur.kind, "source": cur.source,
            "model": cur.profile_resolved.get("model"), "model_id": cur.model_id,
            "composite_sha256": cur.composite_sha256, "ctx": cur.ctx, "image": cur.image, "image_id": cur.image_id,
            "build": cur.build,
            "endpoint": cur.endpoint, "port": cur.port, "container_id": cur.container_id,
            "container": st["status"] if st else "missing",
            "health": (cur.endpoint, release_api_key(cur)) if running else "down",
            "uptime_s": round(time.time() - started) if (running and started) else None,
            "leftovers": leftovers, "owner": cur.owner, "created": cur.created, "docker_host": eng.host,
            "vram": cur.vram, "digest": cur.digest,
        })
    probes = [r for r in out if isinstance(r["health"], tuple)]
    if len(probes) > 1:  # concurrently: one slow server must not delay the others' rows
        with ThreadPoolExecutor(max_workers=min(16, len(probes))) as pool:
            for r, h in zip(probes, pool.map(lambda r: health.probe(*r["health"]), probes)):
                r["health"] = h
    for r in probes[:1] if len(probes) == 1 else ():
        r["health"] = health.probe(*r["health"])
    return EngineStatus(eng.host, out, [f"{u.profile}/{u.name}: {u.reason}" for u in book.unreadable
                                        if not profile or u.profile == profile])


def engine_history(settings, profile: str | None, docker_host_flag: str | None, log: Log = nolog) -> EngineHistory:
    """Every release on one engine (of ``profile`` when given), newest first; each row
    carries its ``docker_host``."""
    eng = open_engine(settings, docker_host_flag, log)
    book = eng.book(profile)
    rows = []
    for name in book.profiles():
        if profile and name != profile:
            continue
        cur = book.current(name)
        rows += [{**r.summary(cur.id if cur else None), "docker_host": eng.host} for r in book.history(name)]
    rows.sort(key=lambda r: (r["created"] or "", r["id"]), reverse=True)
    return EngineHistory(eng.host, rows)


def unlock(settings, profile: str, docker_host_flag: str | None = None, force: bool = False) -> dict[str, Any]:
    """Break the engine-side lock of ``profile`` (left by a process that died on another
    machine; one alive here only with ``force``). Returns who held it (``holder`` is None
    when it was not locked)."""
    eng = open_engine(settings, docker_host_flag)
    return {"docker_host": eng.host, "profile": profile, "holder": eng.ledger.unlock(profile, force)}
