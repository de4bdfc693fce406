"""Pure statistics over the samples of one concurrency level.

A :class:`Sample` is one finished request. :func:`summarize` turns a level's samples
into the plain dict that the table, ``--json``, the plot and the SLA all read, so every
view shows the same numbers. Times are seconds; rates per second unless named ``rpm``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Error kinds besides "http_<status>"; the human labels are in ERROR_LABELS.
TIMEOUT = "timeout"
BROKEN_STREAM = "broken_stream"
BAD_RESPONSE = "bad_response"
CONNECT = "connect"
DISCONNECTED = "disconnected"
ERROR_LABELS = {TIMEOUT: "timeout", BROKEN_STREAM: "broken stream", BAD_RESPONSE: "bad response",
                CONNECT: "connect failed", DISCONNECTED: "disconnected"}


def error_label(kind: str) -> str:
    if kind.startswith("http_"):
        return "HTTP " + kind[5:]
    return ERROR_LABELS.get(kind, kind)


@dataclass(slots=True)
class Sample:
    category: str
    latency: float  # seconds, request sent → last byte
    error: str | None = None  # None = success; else an error kind
    ttft: float | None = None  # seconds to the first streamed token
    output_tokens: int = 0
    prompt_tokens: int = 0
    gen_tps: float | None = None  # server-reported generation speed (llama-server "timings")
    prompt_tps: float | None = None  # server-reported prompt processing speed
    effort: str | None = None  # reasoning effort the request asked for (None: not sent)


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); ``None`` if empty."""
    n = len(sorted_values)
    if n == 0:
        return None
    if n == 1:
        return sorted_values[0]
    rank = p / 100.0 * (n - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (rank - lo)


def _dist(values: list[float], keys: tuple[str, ...]) -> dict | None:
    if not values:
        return None
    s = sorted(values)
    out = {}
    for k in keys:
        out[k] = sum(s) / len(s) if k == "avg" else percentile(s, float(k[1:]))
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


EFFORT_ORDER = ["low", "medium", "high"]


def _groups(samples: list[Sample], key, order: list[str] | None) -> dict[str, dict]:
    """Per group (prompt category, reasoning effort): requests, errors, tokens, speeds;
    in ``order`` (else first seen first)."""
    out: dict[str, dict] = {}
    seen = list(dict.fromkeys(key(s) for s in samples))
    if order:
        seen.sort(key=lambda c: order.index(c) if c in order else len(order))
    for name in seen:
        cs = [s for s in samples if key(s) == name]
        cok = [s for s in cs if s.error is None]
        lat = sorted(s.latency for s in cok)
        out[name] = {
            "requests": len(cs),
            "errors": len(cs) - len(cok),
            "output_tokens": sum(s.output_tokens for s in cok),
            "prompt_tokens": sum(s.prompt_tokens for s in cok),
            "latency_p50_s": percentile(lat, 50),
            # per request, as the user sees it: tokens over that request's latency
            "output_tps": _mean([s.output_tokens / s.latency for s in cok if s.latency > 0]),
            # as the server measured it, when it says (llama-server "timings")
            "server_gen_tps": _mean([s.gen_tps for s in cok if s.gen_tps is not None]),
            "server_prompt_tps": _mean([s.prompt_tps for s in cok if s.prompt_tps is not None]),
        }
    return out


def summarize(samples: list[Sample], users: int, elapsed_s: float, stream: bool,
              cpu_s: float | None = None, order: list[str] | None = None) -> dict:
    """One level's numbers. ``elapsed_s`` is the level's wall time (first request sent →
    last one finished); ``cpu_s`` the load generator's own CPU time for the level;
    ``order`` the category order for ``categories`` (else first seen first)."""
    ok = [s for s in samples if s.error is None]
    errors: dict[str, int] = {}
    for s in samples:
        if s.error is not None:
            errors[s.error] = errors.get(s.error, 0) + 1
    n = len(samples)
    out_tokens = sum(s.output_tokens for s in ok)
    per_min = 60.0 / elapsed_s if elapsed_s > 0 else 0.0
    return {
        "users": users,
        "requests": n,
        "successes": len(ok),
        "errors": n - len(ok),
        "error_pct": round(100.0 * (n - len(ok)) / n, 3) if n else 0.0,
        "errors_by_kind": dict(sorted(errors.items())),
        "elapsed_s": elapsed_s,
        "rpm": len(ok) * per_min,
        "output_tokens": out_tokens,
        "prompt_tokens": sum(s.prompt_tokens for s in ok),
        "output_tps": out_tokens / elapsed_s if elapsed_s > 0 else 0.0,
        "latency_s": _dist([s.latency for s in ok], ("avg", "p50", "p90", "p95", "p99")),
        "ttft_s": _dist([s.ttft for s in ok if s.ttft is not None], ("p50", "p95")) if stream else None,
        "categories": _groups(samples, lambda s: s.category, order),
        "efforts": _groups([s for s in samples if s.effort is not None], lambda s: s.effort, EFFORT_ORDER),
        "client_cpu_ms_per_request": (1000.0 * cpu_s / n) if (cpu_s is not None and n) else None,
    }
