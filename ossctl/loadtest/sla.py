"""Parse and evaluate an SLA such as ``"p95<90s,errors<5%,avg<=90s,ttft_p95<2s,rpm>10"``.

Metrics (all per concurrency level):
- latency: ``avg``, ``p50``, ``p90``, ``p95``, ``p99``; time to first token ``ttft_p50``,
  ``ttft_p95`` (streaming runs only); values take ``ms``, ``s`` (default) or ``m``.
- ``errors``: error rate, in percent (``5%`` or ``5``).
- ``rpm``: completed requests per minute; ``tps``: output tokens per second.
Operators: ``<``, ``<=``, ``>``, ``>=``. Also the ``--users`` list parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ossctl.errors import UsageError
from ossctl.units import TIME_UNITS, format_seconds

LATENCY_METRICS = ("avg", "p50", "p90", "p95", "p99", "ttft_p50", "ttft_p95")
RATE_METRICS = ("rpm", "tps")
METRICS = LATENCY_METRICS + ("errors",) + RATE_METRICS
_OPS = ("<=", ">=", "<", ">")
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
            if unit not in ("", *TIME_UNITS):
                raise UsageError(f"SLA condition {raw!r}: {metric} takes a time (us, ms, s, m)", hint=_HINT)
            value *= TIME_UNITS.get(unit, 1.0)
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
