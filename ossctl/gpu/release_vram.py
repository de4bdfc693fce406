"""Predicted vs measured GPU memory of a release, for the release record.

:func:`measure_release` is called by the rollout step after the health gate: it sums
NVML's per-process memory of the release container's processes per GPU (processes are
mapped to containers through ``/proc/PID/cgroup``, as ``vram watch`` does) and puts it
next to the plan's per-GPU totals. :func:`drift` reads those two fields back from a
release record (a plain dict, as stored) and says how far the plan was off, for
``vram plan`` to print.

Record shape (bytes; GPU indexes as NVML numbers them, string keys after a JSON round
trip are accepted)::

    {"plan": {"0": 8908439552, "1": 8620105728}, "measured": {"0": 8895070208, "1": 8602394624}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ossctl.errors import OssctlError
from ossctl.gpu import nvml


def plan_per_gpu(plan: Mapping[str, Any] | Mapping[int, int] | None) -> dict[int, int]:
    """``{gpu index: bytes}`` from a plan dict (``Plan.to_dict()``, as the deploy
    preflight keeps it) or from a ``{gpu: bytes}`` mapping already."""
    if not plan:
        return {}
    if "gpus" in plan:
        return {int(g["index"]): int(g["total"]) for g in plan["gpus"]}  # type: ignore[index]
    return {int(k): int(v) for k, v in plan.items()}


def _measure(settings, backend, mine) -> dict[int, int] | None:
    """NVML's memory per GPU of the processes ``mine(process)`` picks, or None when NVML
    is not available on this host. Never raises for the GPU stack."""
    session = nvml.Session(settings.env, backend)
    try:
        with session as be:
            snap = nvml.snapshot(be)
    except OssctlError:
        return None
    measured: dict[int, int] = {}
    for dev in snap.devices:
        used = [p.used_bytes for p in dev.processes if mine(p) and p.used_bytes is not None]
        if used:
            measured[dev.index] = sum(used)
    return measured


def measure_release(settings, container_id: str, plan: Mapping[str, Any] | None = None,
                    backend=None) -> dict[str, dict[int, int]] | None:
    """``{"plan": {gpu: bytes}, "measured": {gpu: bytes}}`` for the release running in
    ``container_id`` (full or 12-character id), or ``None`` when NVML is not available
    on this host (no driver, no GPU). ``plan`` is the release's plan (see
    :func:`plan_per_gpu`); ``measured`` holds the GPUs where the container's processes
    hold memory (empty when NVML shows none of them, e.g. ossctl runs in a container
    that cannot read the host's ``/proc``). ``backend`` defaults to the one
    ``OSSCTL_FAKE_NVML`` in ``settings.env`` selects. Never raises for the GPU stack."""
    short = container_id[:12]
    measured = _measure(settings, backend, lambda p: p.container_id == short)
    return None if measured is None else {"plan": plan_per_gpu(plan), "measured": measured}


def measure_pids(settings, pids: list[int], backend=None) -> dict[str, dict[int, int]] | None:
    """As :func:`measure_release`, for processes started without a container (a trial
    of :class:`ossctl.serve.native.NativeRuntime`): NVML's memory of ``pids`` per GPU."""
    want = set(pids)
    measured = _measure(settings, backend, lambda p: p.pid in want)
    return None if measured is None else {"plan": {}, "measured": measured}


BELOW_PLAN = 0.03  # measured below the plan by more than this fraction: the plan did not decide


def below_plan(vram: Mapping[str, Any] | None, tolerance: float = BELOW_PLAN) -> list[str]:
    """GPUs where the release holds less than its plan by more than ``tolerance`` (issue
    23: llama.cpp's fit, or a build, moved context or experts elsewhere), one phrase each
    with both figures (MiB); empty when within it, or when nothing was measured (NVML
    shows none of the container's processes: no conclusion)."""
    if not vram or not vram.get("measured"):
        return []
    planned = plan_per_gpu(vram.get("plan"))
    measured = {int(k): int(v) for k, v in vram["measured"].items()}
    out = []
    for gpu in sorted(planned):
        p, m = planned[gpu], measured.get(gpu, 0)
        if p > 0 and m < p * (1 - tolerance):
            out.append(f"GPU {gpu}: {m / 2**20:.0f} MiB measured vs {p / 2**20:.0f} MiB planned "
                       f"({(m - p) / p * 100:+.1f} %)")
    return out


def drift(record: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """How far the plan was off in ``record`` (a release record holding ``plan`` and
    ``measured``, at the top level or under ``"vram"``): one row per GPU with both
    figures, ``{"gpu", "plan", "measured", "diff_bytes", "diff_pct"}`` (plan − measured,
    in % of measured). Empty when the record has no measurement."""
    if not record:
        return []
    vram = record.get("vram") if isinstance(record.get("vram"), Mapping) else record
    planned = plan_per_gpu(vram.get("plan"))
    measured = {int(k): int(v) for k, v in (vram.get("measured") or {}).items()}
    rows = []
    for gpu in sorted(set(planned) & set(measured)):
        p, m = planned[gpu], measured[gpu]
        rows.append({"gpu": gpu, "plan": p, "measured": m, "diff_bytes": p - m,
                     "diff_pct": round((p - m) / m * 100, 1) if m else None})
    return rows


def describe_drift(rows: list[dict[str, Any]], release: str | None = None) -> str | None:
    """One line for ``vram plan``: ``last release prod-…: plan − measured GPU 0 +0.2 %
    (+16 MiB), GPU 1 -0.4 % (-32 MiB)``; None without rows."""
    if not rows:
        return None
    parts = [f"GPU {r['gpu']} {r['diff_pct']:+.1f} % ({r['diff_bytes'] / 1024 ** 2:+.0f} MiB)"
             if r["diff_pct"] is not None else f"GPU {r['gpu']} n/a" for r in rows]
    return f"last release{' ' + release if release else ''}: plan − measured " + ", ".join(parts)
