"""Byte sizes for people: ``human_size(63387346464) == "59.0 GiB"``."""

from __future__ import annotations


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
