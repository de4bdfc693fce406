"""``vram plan`` and ``vram watch`` as library calls: a profile (or a bare model) with the
command line's overrides, planned against the GPUs (live NVML, or sizes given as
``--gpus``), next to how far the last release's plan was off (from the engine's ledger);
and the labels of the containers that hold GPU memory, for the watch.

It sits in ``serve/`` because it reads profiles and the release ledger; the plan itself
is :func:`ossctl.gpu.fit.plan_profile`. Nothing here prints: notes and warnings go to the
``log`` callback, in the order they arise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ossctl.artifacts.manifest import locate_model_dir
from ossctl.errors import OssctlError, UsageError
from ossctl.gpu import fit, nvml
from ossctl.gpu.release_vram import drift
from ossctl.serve.engine import Engine, open_engine
from ossctl.serve.profiles import resolve_profile

# what `vram plan` may override in the profile (None: keep the profile's)
PLAN_OVERRIDES = ("model", "ctx", "parallel", "n_gpu_layers", "n_cpu_moe", "ubatch", "cache_type_k", "cache_type_v",
                  "flash_attn")


@dataclass
class VramPlan:
    plan: Any  # ossctl.gpu.fit.Plan
    profile: str | None  # the profile's name; None for a bare --model
    last_release: dict[str, Any] | None  # {"release", "gpus": drift rows}; None without a measurement

    def to_dict(self) -> dict[str, Any]:
        """``Plan.to_dict()`` plus ``profile`` and ``last_release`` (keys pinned by tests)."""
        data = self.plan.to_dict()
        data["profile"] = self.profile
        data["last_release"] = self.last_release
        return data


def plan_vram(settings, *, profile: str | None, gpus: str | None, overrides: Mapping[str, Any],
              log: Callable[[str], None] = lambda _m: None) -> VramPlan:
    """Plan ``profile`` (or ``overrides["model"]`` alone) with ``overrides`` (keys of
    :data:`PLAN_OVERRIDES`; None keeps the profile's value) against ``gpus`` (a
    ``--gpus`` spec such as ``4x80GiB``), else the live GPUs the profile names, else none
    (``gpus = "none"``). When NVML cannot start, the plan goes on without free-memory
    figures and says so through ``log``. Raises :class:`UsageError` for bad input (nothing
    to plan, a malformed spec, ``flash_attn`` not on/off/auto), :class:`NotFoundError`
    for an unknown profile or a model neither downloaded nor in the catalog."""
    specs = fit.parse_gpu_spec(gpus) if gpus is not None else None
    if profile:
        prof = dict(resolve_profile(settings, profile))
    elif overrides.get("model"):
        prof = {"name": None, "model": overrides["model"], "gpus": "all"}
    else:
        raise UsageError("nothing to plan", hint="pass --profile NAME, or --model MODEL (with --ctx, --parallel, ...)")
    prof.update({k: v for k, v in overrides.items() if v is not None})
    flash_attn = overrides.get("flash_attn")
    if flash_attn is not None and flash_attn not in ("on", "off", "auto"):
        raise UsageError(f"--flash-attn {flash_attn!r}", hint="use on, off or auto")

    model_dir = _model_dir(settings, str(prof["model"]))
    want = prof.get("gpus", "all")
    if specs is not None:
        devices, against = [fit.Device(i, "", s, s) for i, s in enumerate(specs)], "--gpus"
    elif want == "none":
        devices, against = [], None
    else:
        devices, against = _live_devices(settings, want, log)
    result = fit.plan_profile(prof, model_dir, devices=devices, compared_against=against)
    for msg in result.warnings:
        log(f"warning: {msg}")
    record = last_release_record(settings, prof.get("name")) if profile else None
    rows = drift(record)
    last = {"release": (record or {}).get("release") or (record or {}).get("id"), "gpus": rows} if rows else None
    return VramPlan(result, prof.get("name"), last)


def _model_dir(settings, model: str) -> Path | None:
    try:
        return locate_model_dir(settings, model)
    except OssctlError:
        return None  # not downloaded: the plan uses the catalog's size and architecture


def _live_devices(settings, want, log: Callable[[str], None]) -> tuple[list, str | None]:
    """The GPUs ``want`` names (a list of indexes, or all) with their free memory now.
    Raises :class:`OssctlError` when NVML starts but the snapshot fails."""
    session, started = nvml.Session(settings.env), False
    try:
        with session as be:
            started = True
            snap = nvml.snapshot(be, want if isinstance(want, list) else None)
    except OssctlError as exc:
        if started:  # NVML is there but the snapshot failed: that is an error
            raise
        log(f"note: {exc.message}; planning without free-memory figures (pass --gpus 1x80GiB to compare)")
        return [fit.Device(i) for i in (want if isinstance(want, list) else [0])], None
    return [fit.Device(d.index, d.name or "", d.memory_total, d.memory_free) for d in snap.devices], "nvml"


def last_release_record(settings, profile_name: str | None) -> dict | None:
    """The last release record of ``profile_name`` holding ``plan`` / ``measured``
    (see :mod:`ossctl.gpu.release_vram`), for "how far off was the plan last time".
    Read from the Docker engine's release ledger; None when there is none or the engine
    does not answer (the plan itself never depends on it)."""
    if not profile_name:
        return None
    try:
        book = _engine(settings).ledger.load(profile_name)
    except OssctlError:
        return None
    rec = next((r for r in reversed(book.history(profile_name)) if r.vram and r.vram.get("measured")), None)
    return {"release": rec.id, **rec.vram} if rec else None


def container_labels(backend, settings) -> Callable[[str], dict | None]:
    """``container_id -> labels`` for ``vram watch``: the fake NVML's own, else through the
    Docker engine when it answers (its read path: no SDK; the first failure turns the
    lookup off: rows then show the container id only); cached for the whole watch."""
    own = getattr(backend, "container_labels", None)
    if own is not None:
        return own
    cache: dict[str, dict | None] = {}
    state: dict[str, object] = {}

    def lookup(cid: str) -> dict | None:
        if cid in cache:
            return cache[cid]
        if state.get("broken"):
            return None
        try:
            if "rt" not in state:
                state["rt"] = _engine(settings).rt
            info = state["rt"].find(cid)  # type: ignore[attr-defined]
        except Exception:  # no docker SDK / engine: rows show the container id only
            state["broken"] = True
            return None
        cache[cid] = info["labels"] if info else None
        return cache[cid]

    return lookup


def _engine(settings) -> Engine:
    """The Docker engine of ``settings`` with a short timeout: what the plan and the
    watch read from it is a nicety they go on without."""
    return open_engine(settings, timeout=5)
