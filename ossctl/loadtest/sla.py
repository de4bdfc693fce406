"""Parse and evaluate an SLA such as ``"p95<90s,errors<5%,avg<=90s,ttft_p95<2s,rpm>10"``.

Metrics (all per concurrency level):
- latency: ``avg``, ``p50``, ``p90``, ``p95``, ``p99``; time to first token ``ttft_p50``,
  ``ttft_p95`` (streaming runs only); values take ``ms``, ``s`` (default) or ``m``.
- ``errors``: error rate, in percent (``5%`` or ``5``).
- ``rpm``: completed requests per minute; ``tps``: output tokens per second.
Operators: ``<``, ``<=``, ``>``, ``>=``. Also the duration parser used for ``--duration``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ossctl.errors import UsageError

LATENCY_METRICS = ("avg", "p50", "p90", "p95", "p99", "ttft_p50", "ttft_p95")
RATE_METRICS = ("rpm", "tps")
METRICS = LATENCY_METRICS + ("errors",) + RATE_METRICS
_OPS = ("<=", ">=", "<", ">")
_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_HINT = 'write conditions like "p95<90s,errors<5%,avg<=90s,ttft_p95<2s,rpm>10" (metrics: ' + ", ".join(METRICS) + ")"


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str
    value: float  # seconds for latency metrics, percent for errors, per-minute / per-second for rates
    text: str

    def holds(self, actual: float | None) -> bool:
        if actual is None:
            return False
        return {"<": actual < self.value, "<=": actual <= self.value,
                ">": actual > self.value, ">=": actual >= self.value}[self.op]


_COND = re.compile(r"^\s*([a-z_0-9]+)\s*(<=|>=|<|>)\s*([0-9]*\.?[0-9]+)\s*([a-zµ%]*)\s*$")


def parse_sla(text: str) -> list[Condition]:
    """Raises :class:`UsageError` for anything malformed (unknown metric, missing
    operator, unit that does not fit the metric, empty)."""
    if not text or not text.strip():
        raise UsageError("the SLA is empty", hint=_HINT)
    out = []
    for part in text.split(","):
        raw = part.strip()
        m = _COND.match(raw.lower())
        if not m:
            raise UsageError(f"SLA condition {raw!r} is malformed", hint=_HINT)
        metric, op, num, unit = m.groups()
        if metric not in METRICS:
            raise UsageError(f"SLA condition {raw!r}: unknown metric {metric!r}", hint=_HINT)
        value = float(num)
        if metric in LATENCY_METRICS:
            if unit not in ("", *_UNITS):
                raise UsageError(f"SLA condition {raw!r}: {metric} takes a time (us, ms, s, m)", hint=_HINT)
            value *= _UNITS.get(unit, 1.0)
        elif metric == "errors":
            if unit not in ("", "%"):
                raise UsageError(f"SLA condition {raw!r}: errors takes a percentage like 5%", hint=_HINT)
        elif unit:
            raise UsageError(f"SLA condition {raw!r}: {metric} takes a plain number", hint=_HINT)
        out.append(Condition(metric, op, value, raw))
    return out


def actual_value(metric: str, level: dict) -> float | None:
    """The number a condition compares against, from one level of a report."""
    if metric == "errors":
        return level["error_pct"]
    if metric == "rpm":
        return level["rpm"]
    if metric == "tps":
        return level["output_tps"]
    if metric.startswith("ttft_"):
        ttft = level.get("ttft_s")
        return None if not ttft else ttft.get(metric[5:])
    lat = level.get("latency_s")
    return None if not lat else lat.get(metric)


def evaluate(conditions: list[Condition], level: dict) -> list[str]:
    """The conditions ``level`` breaks, each as a short text (``"p95 112.3s, needs <90s"``);
    empty when it meets them all. A latency of a level with no successful request breaks
    every latency condition."""
    broken = []
    for c in conditions:
        actual = actual_value(c.metric, level)
        if not c.holds(actual):
            broken.append(f"{c.metric} {_fmt(c.metric, actual)}, needs {c.op}{_fmt(c.metric, c.value)}")
    return broken


def _fmt(metric: str, v: float | None) -> str:
    if v is None:
        return "n/a"
    if metric in LATENCY_METRICS:
        return format_seconds(v)
    if metric == "errors":
        return f"{v:g}%"
    return f"{v:.4g}"


def format_seconds(v: float) -> str:
    if v < 1:
        return f"{v * 1000:.0f}ms" if v >= 0.01 else f"{v * 1000:.2f}ms"
    return f"{v:.2f}s"


_DUR = re.compile(r"([0-9]*\.?[0-9]+)\s*(ms|min|s|m|h)?")


def parse_duration(text: str) -> float:
    """``"60s"``, ``"2m"``, ``"1m30s"``, ``"500ms"``, ``"90"`` (seconds) → seconds (> 0).
    Raises :class:`UsageError`."""
    raw = (text or "").strip().lower()
    hint = "write a duration like 60s, 2m, 1m30s or 500ms"
    pos, total, n = 0, 0.0, 0
    while pos < len(raw):
        m = _DUR.match(raw, pos)
        if not m or m.end() == pos:
            raise UsageError(f"duration {text!r} is malformed", hint=hint)
        if m.group(2) is None and (pos != 0 or m.end() != len(raw)):
            raise UsageError(f"duration {text!r} is malformed", hint=hint)
        total += float(m.group(1)) * _UNITS[m.group(2) or "s"]
        pos, n = m.end(), n + 1
    if n == 0 or total <= 0:
        raise UsageError(f"duration {text!r} is malformed" if n == 0 else f"duration {text!r} must be more than 0",
                         hint=hint)
    return total


def parse_users(text: str) -> list[int]:
    """``"1,5,10"`` → ``[1, 5, 10]`` (each 1..10000, no repeats). Raises :class:`UsageError`."""
    hint = "give concurrency levels as a comma list of positive integers, e.g. --users 1,5,10,15,25"
    out: list[int] = []
    for part in (text or "").split(","):
        p = part.strip()
        if not p.isdigit() or not 1 <= int(p) <= 10000:
            raise UsageError(f"--users {text!r}: {p!r} is not a whole number from 1 to 10000", hint=hint)
        if int(p) in out:
            raise UsageError(f"--users {text!r}: {p} appears twice", hint=hint)
        out.append(int(p))
    return out
