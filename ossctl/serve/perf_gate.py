"""PURE: the performance gate (issue 23): the new release's bench against the bench the
serving release recorded, under the same bench settings, on the same engine (each engine
keeps its own ledger, so a record read there was measured on that host).

A profile turns it on with ``regress = "10%"`` in its ``[bench]`` table: the bench table
already says how to measure (users, requests, max_tokens, reasoning effort per level), so
the allowance sits next to it (one table, one validator, and a ``[gate]`` without a bench
would have nothing to compare). Per level (users, reasoning effort): output tokens/s lower
than the baseline by more than the allowance, or p95 latency higher by more than it,
fails. The first release (nothing comparable recorded) records its figures as the
baseline.

What a release records (``Release.bench``)::

    {"summary": "...", "settings": {...the bench settings...},
     "levels": [{"users": 1, "effort": null, "output_tps": 812.4, "latency_p95_s": 0.021}]}
"""

from __future__ import annotations

from typing import Any

# the bench settings that make two benches comparable (not the SLA or the allowance)
SETTINGS_KEYS = ("users", "requests", "duration_s", "max_tokens", "stream", "efforts")


def settings_of(cfg: dict[str, Any]) -> dict[str, Any]:
    """The comparable settings of a validated bench table (:func:`validate_bench_cfg`)."""
    return {k: cfg.get(k) for k in SETTINGS_KEYS}


def figures(report: dict[str, Any], cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Per level of a bench ``report`` (:func:`ossctl.loadtest.engine.run_levels`): users,
    reasoning effort (None when none was sent), output tokens/s, p95 latency (s)."""
    efforts = cfg.get("efforts") or [None] * len(report.get("levels", []))
    out = []
    for i, lv in enumerate(report.get("levels", [])):
        lat = lv.get("latency_s") or {}
        out.append({"users": lv["users"], "effort": efforts[i] if i < len(efforts) else None,
                    "output_tps": round(float(lv.get("output_tps") or 0.0), 3),
                    "latency_p95_s": None if lat.get("p95") is None else round(float(lat["p95"]), 4)})
    return out


def _key(lv: dict[str, Any]) -> tuple[int, str | None]:
    return lv["users"], lv.get("effort")


def _where(lv: dict[str, Any]) -> str:
    return f"{lv['users']} user{'s' if lv['users'] != 1 else ''}" + (f", effort {lv['effort']}" if lv.get("effort") else "")


def baseline(serving: Any | None, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The serving release's recorded bench when it was measured with ``settings``; None
    when there is none to compare with."""
    rec = getattr(serving, "bench", None) if serving is not None else None
    if not isinstance(rec, dict) or rec.get("settings") != settings or not rec.get("levels"):
        return None
    return rec


def compare(base: list[dict[str, Any]], new: list[dict[str, Any]], allow: float) -> list[str]:
    """What regressed beyond ``allow`` (a fraction: 0.10 for "10%"), one phrase per figure
    with both values; empty when nothing did. Levels are matched by (users, effort)."""
    old = {_key(lv): lv for lv in base}
    out = []
    for lv in new:
        b = old.get(_key(lv))
        if b is None:
            continue
        if b["output_tps"] > 0 and lv["output_tps"] < b["output_tps"] * (1 - allow):
            drop = 100 * (1 - lv["output_tps"] / b["output_tps"])
            out.append(f"{_where(lv)}: output {lv['output_tps']:.1f} tok/s vs {b['output_tps']:.1f} tok/s "
                       f"before (-{drop:.0f} %)")
        p_new, p_old = lv.get("latency_p95_s"), b.get("latency_p95_s")
        if p_new is not None and p_old and p_new > p_old * (1 + allow):
            rise = 100 * (p_new / p_old - 1)
            out.append(f"{_where(lv)}: p95 latency {p_new:.3f} s vs {p_old:.3f} s before (+{rise:.0f} %)")
    return out
