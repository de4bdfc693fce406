"""Sizes and durations, both ways: ``parse_size("95GiB")``, ``human_size(63387346464) ==
"59.0 GiB"``, ``parse_duration("1m30s") == 90.0``, ``format_seconds(0.25) == "250ms"``.
Parsers raise :class:`~ossctl.errors.UsageError` with a hint on malformed input."""

from __future__ import annotations

import re

from ossctl.errors import UsageError

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000 ** 2, "mb": 1000 ** 2, "g": 1000 ** 3, "gb": 1000 ** 3, "t": 1000 ** 4, "tb": 1000 ** 4,
    "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4,
}
# patterns compile on first use (re caches them): `ossctl --help` imports this module
_SIZE_RE = r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$"

# seconds per time unit, for durations and for the times in an SLA
TIME_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DUR = r"([0-9]*\.?[0-9]+)\s*(ms|min|s|m|h)?"


def human_size(n: int | float | None) -> str:
    """Bytes as a short binary size; ``None`` → ``"n/a"``."""
    if n is None:
        return "n/a"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def parse_size(text: str, what: str = "size") -> int:
    """``"95GiB"`` → bytes. Decimal (GB) and binary (GiB) units; a bare number is bytes."""
    m = re.match(_SIZE_RE, text or "")
    unit = m.group(2).lower() if m else None
    if not m or unit not in _SIZE_UNITS:
        raise UsageError(f"malformed {what} {text!r}", hint="write a size like 95GiB, 80GB or 81920MiB")
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


def format_seconds(v: float) -> str:
    if v < 1:
        return f"{v * 1000:.0f}ms" if v >= 0.01 else f"{v * 1000:.2f}ms"
    return f"{v:.2f}s"


def parse_duration(text: str) -> float:
    """``"60s"``, ``"2m"``, ``"1m30s"``, ``"500ms"``, ``"90"`` (seconds) → seconds (> 0).
    Raises :class:`UsageError`."""
    raw = (text or "").strip().lower()
    hint = "write a duration like 60s, 2m, 1m30s or 500ms"
    dur = re.compile(_DUR)
    pos, total, n = 0, 0.0, 0
    while pos < len(raw):
        m = dur.match(raw, pos)
        if not m or m.end() == pos:
            raise UsageError(f"duration {text!r} is malformed", hint=hint)
        if m.group(2) is None and (pos != 0 or m.end() != len(raw)):
            raise UsageError(f"duration {text!r} is malformed", hint=hint)
        total += float(m.group(1)) * TIME_UNITS[m.group(2) or "s"]
        pos, n = m.end(), n + 1
    if n == 0 or total <= 0:
        raise UsageError(f"duration {text!r} is malformed" if n == 0 else f"duration {text!r} must be more than 0",
                         hint=hint)
    return total
