"""``ossctl upgrade --profile P --image NEWTAG`` (issue 23): the one command an operator
runs to try a new llama.cpp build. It is a deploy of the profile with another image —
plan (preflight), canary (a fleet's ``canary`` hosts first), gate (health, bench, the
performance gate of ``bench.regress``, GPU memory against the plan), roll or roll back —
followed by what changed, per host: build, digest, tok/s, p95, GPU memory, old vs new.

Naming the image is the operator's consent to change the build, so a ``pin_image``
profile does not also need ``--allow-image-change`` here. A refused upgrade raises as the
deploy does (exit 7, both figures in the message, the previous release serving).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ossctl.fleet import rollout as fleet
from ossctl.ops import service
from ossctl.serve import Log, nolog
from ossctl.serve.engine import open_engine
from ossctl.serve.releases import Release
from ossctl.serve.rollout import bench_baseline


def side(rec: Release | None, bench_of: Release | None = None) -> dict[str, Any] | None:
    """One release as the upgrade summary shows it (None: nothing served); its bench
    figures are those of ``bench_of`` when given (a rollback serves the build and spec of
    the release it brought back, whose bench it stands on)."""
    if rec is None:
        return None
    levels = ((bench_of or rec).bench or {}).get("levels") or []
    first = levels[0] if levels else {}
    measured = (rec.vram or {}).get("measured") or {}
    return {"release": rec.id, "image": rec.image, "build": rec.build, "digest": rec.digest,
            "output_tps": first.get("output_tps"), "latency_p95_s": first.get("latency_p95_s"),
            "bench_levels": levels, "vram": {str(k): int(v) for k, v in sorted(measured.items(), key=lambda kv: int(kv[0]))},
            "fit": rec.fit}


@dataclass(frozen=True)
class Upgrade:
    """``upgrade``'s result: one row per host (one for a single engine), old vs new."""

    profile: str
    image: str
    hosts: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "image": self.image, "hosts": self.hosts}


def _currents(settings, name: str, docker_host_flag: str | None, log: Log) -> dict[str, tuple]:
    """The serving release of ``name`` per engine, with the release whose bench it stands
    on: docker host → (release, bench release), (None, None) where nothing serves."""
    fp = service.fleet_profile(settings, name, docker_host_flag)
    if fp is None:
        eng = open_engine(settings, docker_host_flag, log)
        book = eng.book(name)
        cur = book.current(name)
        return {eng.host: (cur, bench_baseline(book, cur))}
    return fleet.currents(settings, fp, log)


def upgrade(settings, profile: str, image: str, *, timeout: float | None = None, force: bool = False,
            strategy: str | None = None, docker_host_flag: str | None = None, keep_going: bool = False,
            log: Log = nolog) -> Upgrade:
    """Deploy ``profile`` with ``image`` (see the module docstring) and return old vs new
    per host. Raises what :func:`ossctl.ops.service.deploy` raises."""
    before = _currents(settings, profile, docker_host_flag, log)
    for host, (rec, _) in before.items():
        log(f"{host}: serving {rec.id} ({rec.image}, b{rec.build}) -> trying {image}" if rec else
            f"{host}: nothing serves yet -> deploying {image}")
    service.deploy(settings, profile, timeout=timeout, force=force, strategy=strategy,
                   docker_host_flag=docker_host_flag, keep_going=keep_going, log=log, image=image,
                   allow_image_change=True)
    after = _currents(settings, profile, docker_host_flag, log)
    rows = [{"docker_host": h, "old": side(*before.get(h, (None, None))), "new": side(*after[h])} for h in after]
    return Upgrade(profile, image, rows)
