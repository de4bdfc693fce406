"""The short bench that ``ossctl deploy`` runs after its health gate when a profile has a
``bench`` table; failing it fails the deploy (and rolls it back).

Profile table (all optional)::

    [bench]
    users = [1, 2]          # concurrency levels            [ [1] ]
    requests = 8            # per level, or duration = "30s" [ 4 requests ]
    max_tokens = 16         # per request                    [ 16 ]
    stream = true           #                                [ true ]
    sla = "p95<30s,errors<5%"  #                              [ "errors<5%" ]
    regress = "10%"         # performance gate: output tok/s lower or p95 latency  [ off ]
                            # higher than the serving release's bench by more than this fails
    reasoning_effort = "low,high"  # per level (as `bench --reasoning-effort`); the
                            # performance gate compares level by level, so per effort
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ossctl.errors import OssctlError, UsageError
from ossctl.loadtest import sla as _sla
from ossctl.units import parse_duration

DEFAULTS = {"users": [1], "requests": 4, "max_tokens": 16, "stream": True, "sla": "errors<5%"}
KEYS = ("users", "requests", "duration", "max_tokens", "stream", "sla", "regress", "reasoning_effort")


@dataclass
class GateResult:
    ok: bool
    summary: str  # one line for the deploy log (the caller adds "bench gate passed/failed: ")
    report: dict = field(default_factory=dict)  # the bench report (same shape as `ossctl --json bench`)


def validate_bench_cfg(cfg: dict) -> dict:
    """The one validator of a profile's ``[bench]`` table (``profile validate`` and the
    deploy gate both call it, so what validates also runs). Returns a new dict with keys
    users (list[int]), requests (int | None), duration_s (float | None), max_tokens,
    stream, sla, defaults filled in. Raises :class:`UsageError` naming the bad key.

    ``users`` takes a list, one integer or ``"1,2"``; ``duration`` anything ``--duration``
    takes (``"30s"``, ``"1m30s"``); ``sla`` anything ``--sla`` takes."""
    import difflib

    if not isinstance(cfg, dict):
        raise UsageError(f"`bench` must be a table, got {type(cfg).__name__}")
    for k in cfg:
        if k not in KEYS:
            close = difflib.get_close_matches(k, KEYS, n=1, cutoff=0.6)
            raise UsageError(f"unknown key {k!r} in [bench]",
                             hint=f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(KEYS))
    users = cfg.get("users", DEFAULTS["users"])
    if isinstance(users, int) and not isinstance(users, bool):
        users = [users]
    if isinstance(users, str):
        users = _sla.parse_users(users)
    if (not isinstance(users, list) or not users
            or not all(isinstance(u, int) and not isinstance(u, bool) and 1 <= u <= 10000 for u in users)):
        raise UsageError(f"`bench.users` must be a list of integers from 1 to 10000, got {users!r}",
                         hint="e.g. users = [1, 4]")
    if "requests" in cfg and "duration" in cfg:
        raise UsageError("`bench` takes `requests` or `duration`, not both")
    duration_s = None
    requests = None
    if "duration" in cfg:
        if not isinstance(cfg["duration"], str):
            raise UsageError(f"`bench.duration` must be a string like \"30s\" or \"1m30s\", got {cfg['duration']!r}")
        duration_s = parse_duration(cfg["duration"])
    else:
        requests = cfg.get("requests", DEFAULTS["requests"])
        if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
            raise UsageError(f"`bench.requests` must be a positive integer, got {requests!r}")
    mt = cfg.get("max_tokens", DEFAULTS["max_tokens"])
    if isinstance(mt, bool) or not isinstance(mt, int) or mt < 1:
        raise UsageError(f"`bench.max_tokens` must be a positive integer, got {mt!r}")
    stream = cfg.get("stream", DEFAULTS["stream"])
    if not isinstance(stream, bool):
        raise UsageError(f"`bench.stream` must be true or false, got {stream!r}")
    spec = cfg.get("sla", DEFAULTS["sla"])
    try:
        if not isinstance(spec, str):
            raise UsageError(f"a {type(spec).__name__}")
        _sla.parse_sla(spec)
    except UsageError as exc:
        raise UsageError(f"`bench.sla` must look like \"p95<90s,errors<5%\": {exc.message}", hint=exc.hint) from None
    out = {"users": users, "requests": requests, "duration_s": duration_s, "max_tokens": mt, "stream": stream,
           "sla": spec}
    # issue 23's keys, only when set (the shape above is what every caller already reads)
    if "regress" in cfg:
        out["regress"] = parse_regress(cfg["regress"])
    if "reasoning_effort" in cfg:
        eff = cfg["reasoning_effort"]
        if not isinstance(eff, str):
            raise UsageError(f"`bench.reasoning_effort` must be a string like \"low\" or \"low,high\", got {eff!r}")
        from ossctl.loadtest.openai import parse_efforts  # here: see run_gate's imports

        try:
            out["efforts"] = parse_efforts(eff, len(users))
        except UsageError as exc:
            raise UsageError(f"`bench.reasoning_effort`: {exc.message.removeprefix('--reasoning-effort: ')}",
                             hint="one effort for every level, or one per level in the order of `users`") from None
    return out


def parse_regress(v: object) -> float:
    """``bench.regress``: ``"10%"`` (or a number of percent) → 0.10. Raises :class:`UsageError`."""
    s = v.strip().removesuffix("%").strip() if isinstance(v, str) else v
    try:
        if isinstance(s, bool):
            raise ValueError
        pct = float(s)
    except (TypeError, ValueError):
        pct = -1.0
    if not (0 <= pct < 100) or pct != pct:
        raise UsageError(f"`bench.regress` must be a percentage from 0 to 99, like \"10%\", got {v!r}")
    return pct / 100


def run_gate(base_url: str, api_key: str | None, bench_cfg: dict, env: Mapping[str, str] | None = None) -> GateResult:
    """Run the profile's short bench against ``base_url`` and judge it by its SLA
    (``env``: the settings' environment, passed on to :func:`engine.run_levels`).

    Raises :class:`UsageError` for a malformed ``bench_cfg`` (before any request).
    Everything the server does wrong (unreachable, errors, too slow) gives ``ok=False``
    with a one-line summary instead of raising."""
    # here, not at the top: profiles.py validates [bench] with this module on every
    # command that reads a profile (`status` too), and the load generator (asyncio, ssl,
    # the report) is ~25 ms of imports that only a gate uses (python -X importtime)
    from ossctl.loadtest.engine import run_levels
    from ossctl.loadtest.openai import Target
    from ossctl.loadtest.prompts import builtin_prompts
    from ossctl.loadtest.report import apply_sla

    cfg = validate_bench_cfg(bench_cfg)
    try:
        report = run_levels(Target(base_url, api_key, timeout_s=300.0), builtin_prompts(), cfg["users"],
                            duration_s=cfg["duration_s"], requests=cfg["requests"], stream=cfg["stream"],
                            max_tokens=cfg["max_tokens"], handle_sigint=False, env=env,
                            efforts=cfg.get("efforts"))
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
