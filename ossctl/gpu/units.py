"""Parsing of the GPU options: sizes (``95GiB``), alert thresholds (``95GiB`` / ``90%``),
GPU id lists (``0,2``) and planning targets (``4x80GiB``, ``80GiB,40GiB``).
All raise :class:`~ossctl.errors.UsageError` with a hint on malformed input."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ossctl.errors import UsageError

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000 ** 2, "mb": 1000 ** 2, "g": 1000 ** 3, "gb": 1000 ** 3, "t": 1000 ** 4, "tb": 1000 ** 4,
    "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str, what: str = "size") -> int:
    """``"95GiB"`` → bytes. Decimal (GB) and binary (GiB) units; a bare number is bytes."""
    m = _SIZE_RE.match(text or "")
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS:
        raise UsageError(f"malformed {what} {text!r}", hint="write a size like 95GiB, 80GB or 81920MiB")
    return int(float(m.group(1)) * _UNITS[unit])


@dataclass(frozen=True)
class Threshold:
    """An alert level: bytes used, or a percentage of a GPU's memory."""

    bytes: int | None = None
    percent: float | None = None

    def limit(self, total: int | None) -> int | None:
        """The threshold in bytes for a GPU of ``total`` bytes (None when unknown)."""
        if self.bytes is not None:
            return self.bytes
        if total is None or self.percent is None:
            return None
        return int(total * self.percent / 100)

    def __str__(self) -> str:
        if self.percent is not None:
            return f"{self.percent:g}%"
        return f"{self.bytes / 1024 ** 3:.1f} GiB"


def parse_threshold(text: str) -> Threshold:
    """``"90%"`` or a size (``"95GiB"``)."""
    t = (text or "").strip()
    if t.endswith("%"):
        try:
            pct = float(t[:-1])
        except ValueError:
            pct = -1.0
        if not 0 < pct <= 100:
            raise UsageError(f"malformed --alert-above {text!r}", hint="a percentage is between 0 and 100, e.g. 90%")
        return Threshold(percent=pct)
    try:
        return Threshold(bytes=parse_size(t, "--alert-above"))
    except UsageError:
        raise UsageError(f"malformed --alert-above {text!r}", hint="use a size like 95GiB or a percentage like 90%") from None


def parse_gpu_ids(text: str) -> list[int]:
    """``"0,2"`` → [0, 2]; ``"all"`` → [] (meaning every GPU)."""
    t = (text or "").strip()
    if t.lower() == "all":
        return []
    try:
        ids = [int(x) for x in t.split(",")]
    except ValueError:
        ids = []
    if not ids or any(i < 0 for i in ids):
        raise UsageError(f"malformed --gpu {text!r}", hint="list GPU indexes like 0 or 0,2 (see `ossctl vram watch --once`)")
    return sorted(set(ids))


def parse_gpu_spec(text: str) -> list[int]:
    """Planning targets: ``"4x80GiB"``, ``"1x97GB"`` or ``"80GiB,40GiB"`` → memory per GPU
    in bytes."""
    t = (text or "").strip()
    hint = "write COUNTxSIZE like 1x97GiB or 4x80GiB, or sizes like 80GiB,40GiB"
    m = re.match(r"^(\d+)\s*[xX*]\s*(.+)$", t)
    try:
        if m:
            n = int(m.group(1))
            if not 1 <= n <= 64:
                raise UsageError(f"malformed --gpus {text!r}: {n} GPUs", hint=hint)
            sizes = [parse_size(m.group(2), "--gpus size")] * n
        else:
            sizes = [parse_size(x, "--gpus size") for x in t.split(",")]
    except UsageError as exc:
        raise UsageError(f"malformed --gpus {text!r}", hint=hint) from exc
    if any(s <= 0 for s in sizes):
        raise UsageError(f"malformed --gpus {text!r}: a GPU needs memory", hint=hint)
    return sizes
