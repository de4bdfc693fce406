"""``ossctl bench`` as a library call: check the options before anything is sent, find
the endpoint (a profile's serving release, or a URL), run the levels, judge them by the
SLA and keep the result as the profile's last bench (which ``ossctl metrics`` exports).
Nothing here prints; progress goes to the callback."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ossctl.errors import EXIT_SLA, OssctlError, UsageError
from ossctl.loadtest import DEFAULT_DURATION, DEFAULT_USERS, capacity as capmod, engine, openai, report, sla as slamod
from ossctl.loadtest.prompts import Prompt, builtin_prompts, load_prompts
from ossctl.ops.endpoint import client_endpoint
from ossctl.units import format_seconds, parse_duration


@dataclass(frozen=True)
class BenchOptions:
    levels: list[int]  # users per level, in turn
    duration_s: float | None  # per level; None when ``requests`` counts instead
    requests: int | None
    timeout_s: float  # one whole request
    efforts: list[str] | None  # reasoning effort per level; None: none sent
    prompts: list[Prompt]
    stream: bool
    max_tokens: int | None
    sla: str | None
    model: str | None


def bench_options(settings, *, users: str | None, duration: str | None, requests: int | None, timeout: str,
                  sla: str | None, plot: str | None, prompts: str | None, reasoning_effort: str | None,
                  stream: bool, max_tokens: int | None, model: str | None) -> BenchOptions:
    """Check every option (``bench.users`` / ``bench.duration`` from the settings when not
    given) before a request is sent. Raises :class:`UsageError`; a ``plot`` path needs
    matplotlib (checked here too)."""
    if requests is not None and duration is not None:
        raise UsageError("give --duration or --requests, not both")
    users_spec = users or settings.value("bench.users", "OSSCTL_BENCH_USERS", default=DEFAULT_USERS)
    if isinstance(users_spec, list):  # config file: users = [1, 5, 10]
        users_spec = ",".join(map(str, users_spec))
    levels = slamod.parse_users(str(users_spec))
    efforts = openai.parse_efforts(reasoning_effort, len(levels)) if reasoning_effort is not None else None
    duration_s = None
    if requests is None:
        duration_s = parse_duration(duration or str(settings.value("bench.duration", None,
                                                                          default=DEFAULT_DURATION)))
    timeout_s = parse_duration(timeout)
    if sla is not None:
        slamod.parse_sla(sla)
    if plot is not None:
        report.require_matplotlib()
    prompt_set = load_prompts(prompts) if prompts else builtin_prompts()
    return BenchOptions(levels, duration_s, requests, timeout_s, efforts, prompt_set, stream, max_tokens, sla, model)


def run_bench(settings, opts: BenchOptions, *, profile: str | None, url: str | None, api_key_file: str | None,
              progress: Callable[[str], None]) -> tuple[dict, str | None]:
    """Bench the endpoint (see :func:`ossctl.ops.endpoint.client_endpoint`). Returns the
    report (see :func:`ossctl.loadtest.report.build`, with ``sla`` applied when asked)
    and a warning line when the result could not be kept for ``ossctl metrics``, else
    None. Raises what ``client_endpoint`` and ``run_levels`` raise."""
    where = client_endpoint(settings, profile, url, api_key_file)
    result = engine.run_levels(openai.Target(where.url, where.api_key, opts.model, opts.timeout_s), opts.prompts,
                               opts.levels, duration_s=opts.duration_s, requests=opts.requests, stream=opts.stream,
                               max_tokens=opts.max_tokens, progress=progress, efforts=opts.efforts, env=settings.env)
    if opts.sla is not None:
        report.apply_sla(result, opts.sla, opts.levels)
    warning = None
    if profile and result["levels"]:
        try:  # a cache: the report is what matters
            report.store_last(settings.cache_dir, report.last_summary(result, profile, where.release, time.time()))
        except OSError as exc:
            warning = f"warning: cannot keep the result for `ossctl metrics`: {exc.strerror or exc}"
    return result, warning


# ------------------------------------------------------------------ bench --capacity

CAPACITY_KEYS = ("sla", "users", "first_fail_users", "steps", "stopped", "max_users")


def capacity_options(opts: BenchOptions, *, users: str | None, max_users: int | None) -> int:
    """Check what ``--capacity`` needs on top of :func:`bench_options`: an SLA, no
    ``--users`` list (the search picks the levels), one reasoning effort at most. Returns
    the largest level to try (``--max-users``, default
    :data:`ossctl.loadtest.capacity.DEFAULT_MAX_USERS`). Raises :class:`UsageError`."""
    if opts.sla is None:
        raise UsageError("--capacity needs --sla: capacity is the most users that meet it",
                         hint='e.g. ossctl bench --capacity --sla "p95<30s,errors<1%"')
    if users is not None:
        raise UsageError("--capacity picks the levels itself: give --max-users N instead of --users")
    if opts.efforts is not None and len(set(opts.efforts)) > 1:
        raise UsageError("--capacity takes one --reasoning-effort for every level")
    top = capmod.DEFAULT_MAX_USERS if max_users is None else max_users
    if not 1 <= top <= 10000:
        raise UsageError(f"--max-users {top}: give a whole number from 1 to 10000")
    return top


def level_requests(requests: int | None, users: int) -> int | None:
    """Requests of one capacity level: ``--requests`` but at least one per user (fewer
    would leave users idle and measure a smaller level than it says). None in duration mode."""
    return None if requests is None else max(requests, users)


def run_capacity(settings, opts: BenchOptions, *, max_users: int, profile: str | None, url: str | None,
                 api_key_file: str | None, progress: Callable[[str], None]) -> dict:
    """``ossctl bench --capacity``: the largest number of users meeting ``opts.sla``
    (see :mod:`ossctl.loadtest.capacity`), one level per step. Returns a bench report
    (levels sorted by users, ``sla`` applied) with ``capacity``: ``{"sla", "users",
    "first_fail_users", "steps" (users in the order measured), "stopped", "max_users"}``.
    Ctrl-C ends the search with what was measured (``interrupted``). Raises what
    ``client_endpoint`` and ``run_levels`` raise."""
    where = client_endpoint(settings, profile, url, api_key_file)
    target = openai.Target(where.url, where.api_key, opts.model, opts.timeout_s)
    conditions = slamod.parse_sla(opts.sla)
    effort = opts.efforts[:1] if opts.efforts else None
    state: dict = {"interrupted": False, "aborted": None, "model": opts.model}

    def measure(users: int) -> dict | None:
        rep = engine.run_levels(target, opts.prompts, [users], duration_s=opts.duration_s,
                                requests=level_requests(opts.requests, users), stream=opts.stream,
                                max_tokens=opts.max_tokens, progress=progress, efforts=effort, env=settings.env)
        state["model"] = rep["model"]
        if rep["interrupted"] or rep["aborted"] or not rep["levels"]:
            state["interrupted"] = rep["interrupted"]
            state["aborted"] = rep["aborted"]
            if rep["levels"] and not rep["interrupted"]:
                return rep["levels"][0]  # the server went away: a failing level, and the end
            return None
        lv = rep["levels"][0]
        progress(f"bench: {users} users: " + ("meets the SLA" if not slamod.evaluate(conditions, lv) else
                                              "fails the SLA: " + "; ".join(slamod.evaluate(conditions, lv))))
        return lv

    cap = capmod.find_capacity(measure, lambda lv: not slamod.evaluate(conditions, lv) and not state["aborted"],
                               max_users=max_users)
    levels = sorted((s.figures for s in cap.steps), key=lambda lv: lv["users"])
    result = report.build(where.url, state["model"], opts.stream, opts.max_tokens, opts.duration_s, opts.requests,
                          levels, interrupted=state["interrupted"], aborted=state["aborted"])
    report.apply_sla(result, opts.sla, [lv["users"] for lv in levels])
    result["capacity"] = {"sla": opts.sla, "users": cap.users, "first_fail_users": cap.first_fail,
                          "steps": [s.users for s in cap.steps], "stopped": cap.stopped, "max_users": max_users}
    return result


def capacity_outcome(result: dict) -> OssctlError | None:
    """Why ``bench --capacity`` exits non-zero (interrupted aside): no level met the SLA
    (exit 9), or what :func:`report.outcome_error` says of a run that could not go on."""
    if result["aborted"] or report.all_unauthorized(result):
        return report.outcome_error(result)
    cap = result["capacity"]
    if cap["users"] is None:
        return OssctlError(f"SLA {cap['sla']} is not met even at {min(cap['steps'], default=1)} user(s)",
                           hint="relax the SLA, or check the server (`ossctl status`)", exit_code=EXIT_SLA)
    return None


def capacity_lines(result: dict) -> list[str]:
    """The human verdict under the table: the users at the SLA, the first failing level."""
    cap = result["capacity"]
    if cap["users"] is None:
        line = f"capacity at SLA {cap['sla']}: none (fails at {cap['first_fail_users']} user(s))"
    else:
        lv = next(lv for lv in result["levels"] if lv["users"] == cap["users"])
        lat = lv["latency_s"] or {}
        line = (f"capacity at SLA {cap['sla']}: {cap['users']} users ({lv['output_tps']:.1f} output tok/s, "
                f"p95 {format_seconds(lat['p95']) if lat.get('p95') is not None else '-'}); "
                + (f"first failing level: {cap['first_fail_users']} users" if cap["first_fail_users"] is not None
                   else f"no level failed up to --max-users {cap['max_users']}"))
    if cap["stopped"] == "max_steps":
        line += f" (search stopped after {len(cap['steps'])} levels)"
    elif cap["stopped"] == "measure":
        line += " (search stopped early)"
    return [line]
