"""The short bench that ``serve deploy`` runs after its health gate when a profile has a
``bench`` table; failing it fails the deploy (and rolls it back).

Profile table (all optional)::

    [bench]
    users = [1, 2]          # concurrency levels            [ [1] ]
    requests = 8            # per level, or duration = "30s" [ 4 requests ]
    max_tokens = 16         # per request                    [ 16 ]
    stream = true           #                                [ true ]
    sla = "p95<30s,errors<5%"  #                              [ "errors<5%" ]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ossctl.errors import OssctlError, UsageError
from ossctl.loadtest import sla as _sla

DEFAULTS = {"users": [1], "requests": 4, "max_tokens": 16, "stream": True, "sla": "errors<5%"}
_KEYS = {"users", "requests", "duration", "max_tokens", "stream", "sla"}


@dataclass
class GateResult:
    ok: bool
    summary: str  # one line for the deploy log (the caller adds "bench gate passed/failed: ")
    report: dict = field(default_factory=dict)  # the bench report (same shape as `ossctl --json bench`)


def validate_bench_cfg(cfg: dict) -> dict:
    """Check a profile's ``bench`` table and fill defaults. Returns a new dict with keys
    users (list[int]), requests (int | None), duration_s (float | None), max_tokens,
    stream, sla. Raises :class:`UsageError` naming the bad key (serve's profile
    validation may call this too)."""
    if not isinstance(cfg, dict):
        raise UsageError("the profile's [bench] must be a table")
    unknown = set(cfg) - _KEYS
    if unknown:
        raise UsageError(f"[bench] has unknown key(s): {', '.join(sorted(unknown))}",
                         hint="allowed: " + ", ".join(sorted(_KEYS)))
    users = cfg.get("users", DEFAULTS["users"])
    if isinstance(users, str):
        users = _sla.parse_users(users)
    if (not isinstance(users, list) or not users
            or not all(isinstance(u, int) and not isinstance(u, bool) and 1 <= u <= 10000 for u in users)):
        raise UsageError("[bench] users must be a list of positive integers, e.g. users = [1, 4]")
    if "requests" in cfg and "duration" in cfg:
        raise UsageError("[bench] takes requests or duration, not both")
    duration_s = None
    requests = None
    if "duration" in cfg:
        duration_s = _sla.parse_duration(str(cfg["duration"]))
    else:
        requests = cfg.get("requests", DEFAULTS["requests"])
        if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
            raise UsageError("[bench] requests must be a positive integer")
    mt = cfg.get("max_tokens", DEFAULTS["max_tokens"])
    if isinstance(mt, bool) or not isinstance(mt, int) or mt < 1:
        raise UsageError("[bench] max_tokens must be a positive integer")
    stream = cfg.get("stream", DEFAULTS["stream"])
    if not isinstance(stream, bool):
        raise UsageError("[bench] stream must be true or false")
    spec = cfg.get("sla", DEFAULTS["sla"])
    if not isinstance(spec, str):
        raise UsageError("[bench] sla must be a string like \"p95<90s,errors<5%\"")
    _sla.parse_sla(spec)
    return {"users": users, "requests": requests, "duration_s": duration_s, "max_tokens": mt, "stream": stream,
            "sla": spec}


def run_gate(base_url: str, api_key: str | None, bench_cfg: dict) -> GateResult:
    """Run the profile's short bench against ``base_url`` and judge it by its SLA.

    Raises :class:`UsageError` for a malformed ``bench_cfg`` (before any request).
    Everything the server does wrong (unreachable, errors, too slow) gives ``ok=False``
    with a one-line summary instead of raising."""
    from ossctl.loadtest.engine import Target, run_levels
    from ossctl.loadtest.prompts import builtin_prompts
    from ossctl.loadtest.report import apply_sla

    cfg = validate_bench_cfg(bench_cfg)
    try:
        report = run_levels(Target(base_url, api_key, timeout_s=300.0), builtin_prompts(), cfg["users"],
                            duration_s=cfg["duration_s"], requests=cfg["requests"], stream=cfg["stream"],
                            max_tokens=cfg["max_tokens"], handle_sigint=False)
    except OssctlError as exc:
        return GateResult(False, exc.message, {})
    apply_sla(report, cfg["sla"], cfg["users"])
    s = report["sla"]
    total = sum(lv["requests"] for lv in report["levels"])
    errs = sum(lv["errors"] for lv in report["levels"])
    if s["ok"]:
        return GateResult(True, f"SLA {cfg['sla']} met up to {s['max_users']} users "
                                f"({total} requests, {errs} errors)", report)
    why = next((f"at {lv['users']} users: " + "; ".join(lv["sla_failures"])
                for lv in report["levels"] if lv["sla_failures"]), None)
    if why is None:
        why = report["aborted"] or "not every level ran"
    return GateResult(False, f"SLA {cfg['sla']} not met {why}", report)
