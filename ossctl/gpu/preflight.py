"""The VRAM check of a deploy's preflight: the profile's plan against the free memory
NVML reports now.

``check_vram`` never raises for a missing GPU stack: no driver / no GPU / a GPU not
answering / a model it cannot read → ``status="skipped"`` with the reason, so the caller
decides (serve refuses only on ``"fail"``, unless ``--force``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ossctl.errors import OssctlError, UsageError
from ossctl.gpu import fit, nvml


@dataclass
class VramCheck:
    status: str  # "pass" | "fail" | "skipped"
    message: str
    plan: dict[str, Any] | None = None
    hint: str | None = None  # what to change, for a "fail" that is bad input


def _gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1024 ** 3:.1f} GiB"


def breakdown(plan) -> str:
    """One line per GPU: ``GPU 0: 64.0 GiB = weights 58.4 + KV 4.5 + compute 0.6 + runtime
    0.5, free 93.1 GiB, headroom 29.1 GiB``."""
    lines = []
    for g in plan.gpus:
        lines.append(f"GPU {g.index}: {_gib(g.total)} = weights {g.weights / 1024 ** 3:.1f} + KV {g.kv / 1024 ** 3:.1f}"
                     f" + compute {g.compute / 1024 ** 3:.1f} + runtime {g.runtime / 1024 ** 3:.1f} GiB"
                     f", free {_gib(g.free)}, headroom {_gib(g.headroom)}")
    return "\n".join(lines)


def check_vram(settings, profile: dict[str, Any], model_dir: Path | None,
               backend=None) -> VramCheck:
    """Plan ``profile`` against the free GPU memory NVML reports now (a running release
    of the same profile still counts as used: serve re-checks after stopping it when it
    recreates). ``backend`` defaults to
    :func:`ossctl.gpu.nvml.open_backend` (``OSSCTL_FAKE_NVML`` in ``settings.env`` selects
    the fake; an unknown one raises :class:`UsageError`)."""
    gpus = profile.get("gpus", "all")
    if gpus == "none":
        return VramCheck("skipped", "VRAM check skipped: the profile runs without GPUs (gpus = \"none\")")
    session = nvml.Session(settings.env, backend)
    try:
        with session as be:
            snap = nvml.snapshot(be, gpus if isinstance(gpus, list) else None)
    except UsageError as exc:  # the profile names a GPU this host does not have
        return VramCheck("fail", f"{exc.message} (profile `gpus` = {gpus})", hint=exc.hint)
    except OssctlError as exc:  # no driver, no GPU
        return VramCheck("skipped", f"VRAM check skipped: {exc.message}")
    bad = [d for d in snap.devices if d.memory_free is None]
    if bad:
        return VramCheck("skipped", "VRAM check skipped: " + "; ".join(
            f"GPU {d.index} does not report its memory ({d.error or 'not supported'})" for d in bad))
    devices = [fit.Device(d.index, d.name or "", d.memory_total, d.memory_free) for d in snap.devices]
    try:
        plan = fit.plan_profile(profile, model_dir, devices=devices, compared_against="nvml")
    except UsageError as exc:  # tensor_split / n_cpu_moe that do not match the GPUs or the model
        return VramCheck("fail", exc.message, hint=exc.hint)
    except OssctlError as exc:
        return VramCheck("skipped", f"VRAM check skipped: {exc.message}")
    if plan.fits:
        worst = min(plan.gpus, key=lambda g: g.headroom if g.headroom is not None else 0)
        return VramCheck("pass", f"VRAM fits: {_gib(plan.total_bytes)} on {len(plan.gpus)} GPU(s), "
                                 f"least headroom {_gib(worst.headroom)} on GPU {worst.index}", plan.to_dict())
    tips = "; ".join(s["text"] for s in plan.suggestions) or "use a GPU with more free memory"
    return VramCheck("fail", f"VRAM does not fit:\n{breakdown(plan)}\ntry: {tips}", plan.to_dict())
