"""``ossctl bench`` as a library call: check the options before anything is sent, find
the endpoint (a profile's serving release, or a URL), run the levels, judge them by the
SLA and keep the result as the profile's last bench (which ``ossctl metrics`` exports).
Nothing here prints; progress goes to the callback."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ossctl.errors import UsageError
from ossctl.loadtest import DEFAULT_DURATION, DEFAULT_USERS, engine, openai, report, sla as slamod
from ossctl.loadtest.prompts import Prompt, builtin_prompts, load_prompts
from ossctl.ops.endpoint import client_endpoint
from ossctl.units import parse_duration


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
