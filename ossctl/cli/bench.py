"""``ossctl bench``: load-test a deployment (or any OpenAI-compatible URL) with
closed-loop concurrent users; percentiles, throughput, error kinds and an SLA gate."""

from __future__ import annotations

from typing import Optional

import typer

from ossctl.cli import output
from ossctl.cli.options import ProfileOpt

_DEFAULT_USERS = "1,5,10,15,25"
_DEFAULT_DURATION = "60s"


def bench(
    ctx: typer.Context,
    profile: ProfileOpt = None,
    url: Optional[str] = typer.Option(None, "--url", metavar="URL",
                                      help="Bench any OpenAI-compatible server instead, e.g. http://127.0.0.1:8080."),
    users: Optional[str] = typer.Option(None, "--users", "-u", metavar="N,N,...",
                                        help=f"Concurrency levels, run in turn (default: {_DEFAULT_USERS})."),
    duration: Optional[str] = typer.Option(None, "--duration", "-d", metavar="TIME",
                                           help=f"How long each level runs (default: {_DEFAULT_DURATION})."),
    requests: Optional[int] = typer.Option(None, "--requests", "-n", metavar="N", min=1,
                                           help="Requests per level (instead of --duration)."),
    prompts: Optional[str] = typer.Option(None, "--prompts", metavar="FILE",
                                          help='JSONL prompts: {"category", "messages", "max_tokens"} per line '
                                               "(default: built-in factual/code/creative/reasoning/list set)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", metavar="N", min=1,
                                             help="max_tokens for every request (default: the prompt's, else 256)."),
    stream: bool = typer.Option(True, "--stream/--no-stream", help="Stream responses (measures time to first token)."),
    sla: Optional[str] = typer.Option(None, "--sla", metavar="SPEC",
                                      help='SLA per level, e.g. "p95<90s,errors<5%,avg<=90s,ttft_p95<2s,rpm>10"; '
                                           "exit 9 if any level fails it."),
    plot: Optional[str] = typer.Option(None, "--plot", metavar="FILE.png",
                                       help="Write a PNG of latency and throughput against users "
                                            "(needs the plot extra: pip install 'ossctl\\[plot]')."),
    api_key_file: Optional[str] = typer.Option(None, "--api-key-file", metavar="FILE",
                                               help="File holding the server's API key (default: $OSSCTL_API_KEY, "
                                                    "else the release's key file)."),
    timeout: str = typer.Option("300s", "--timeout", metavar="TIME", help="Give up on one request after this long."),
    model: Optional[str] = typer.Option(None, "--model", metavar="NAME",
                                        help="\"model\" field of requests (default: the server's first model)."),
    reasoning_effort: Optional[str] = typer.Option(
        None, "--reasoning-effort", metavar="low|medium|high|mixed[,...]",
        help="Reasoning effort asked for in each request (chat_template_kwargs and reasoning_effort): one for "
             "every level, or one per level of --users; mixed = low, medium, high in turn "
             "(default: none sent, the server's own)."),
) -> None:
    """Load-test a deployment: closed-loop users per concurrency level, latency
    avg/p50/p90/p95/p99, time to first token, errors by kind, requests/min and tokens/s.

    Benches the release serving --profile (without --profile or --url: the newest
    serving release of any profile), or any OpenAI-compatible server at --url.

    Ctrl-C stops the run and still prints what was measured (exit 130)."""
    st = output.state(ctx)
    from ossctl.errors import EXIT_INTERRUPTED, EXIT_SLA, OssctlError, RemoteError, UsageError
    from ossctl.loadtest import engine, openai, report as rep, sla as slamod
    from ossctl.loadtest.prompts import builtin_prompts, load_prompts

    settings = st.settings
    if requests is not None and duration is not None:
        raise UsageError("give --duration or --requests, not both")
    users_spec = users or settings.value("bench.users", "OSSCTL_BENCH_USERS", default=_DEFAULT_USERS)
    if isinstance(users_spec, list):  # config file: users = [1, 5, 10]
        users_spec = ",".join(map(str, users_spec))
    levels = slamod.parse_users(str(users_spec))
    efforts = openai.parse_efforts(reasoning_effort, len(levels)) if reasoning_effort is not None else None
    duration_s = None
    if requests is None:
        duration_s = slamod.parse_duration(duration or str(settings.value("bench.duration", None,
                                                                          default=_DEFAULT_DURATION)))
    timeout_s = slamod.parse_duration(timeout)
    if sla is not None:
        slamod.parse_sla(sla)
    if plot is not None:
        rep.require_matplotlib()
    prompt_set = load_prompts(prompts) if prompts else builtin_prompts()
    from ossctl.serve.endpoint import client_endpoint

    where = client_endpoint(settings, profile, url, api_key_file)
    result = engine.run_levels(openai.Target(where.url, where.api_key, model, timeout_s), prompt_set, levels,
                               duration_s=duration_s, requests=requests, stream=stream, max_tokens=max_tokens,
                               progress=output.info, efforts=efforts, env=settings.env)
    if sla is not None:
        rep.apply_sla(result, sla, levels)
    output.emit(st, result, lambda: render(result))
    if profile and result["levels"]:
        _keep_last(settings, result, profile, where.release)
    if plot is not None and result["levels"]:
        rep.plot(result, plot)
        output.info(f"wrote {plot}")
    if result["interrupted"]:
        raise typer.Exit(EXIT_INTERRUPTED)
    if rep.all_unauthorized(result):
        raise RemoteError("every request was refused as unauthorized (HTTP 401)",
                          hint="check the API key: --api-key-file FILE or OSSCTL_API_KEY")
    if result["aborted"]:
        raise RemoteError(f"the run stopped early: {result['aborted']}",
                          hint="the numbers above count the failures; check the server (`ossctl status`)")
    failed = rep.all_failed(result)
    if failed and result["sla"] is None:  # with --sla, the SLA verdict (exit 9) says it
        raise RemoteError(f"every request failed ({failed})",
                          hint="the server is not answering completions: check it (`ossctl status`, its logs) "
                               "and the --url / --model")
    if result["sla"] is not None and not result["sla"]["ok"]:
        s = result["sla"]
        where = ", ".join(map(str, s["failed_users"] + s["not_run_users"]))
        best = f"; largest passing level: {s['max_users']} users" if s["max_users"] else ""
        raise OssctlError(f"SLA {sla} failed at {where} users{best}", exit_code=EXIT_SLA)


def _keep_last(settings, result: dict, profile: str, release: str | None) -> None:
    """The run becomes the profile's last bench result, which `ossctl metrics` exports."""
    import time

    from ossctl.loadtest import report as rep

    try:
        rep.store_last(settings.cache_dir, rep.last_summary(result, profile, release, time.time()))
    except OSError as exc:  # a cache: the report above is what matters
        output.info(f"warning: cannot keep the result for `ossctl metrics`: {exc.strerror or exc}")


def render(result: dict) -> str:
    """The human report: levels table, per-category and per-effort tables, notes."""
    from ossctl.loadtest import report as rep

    parts = [output.table(*rep.table_rows(result))]
    for by in ("categories", "efforts"):
        h, rows, align = rep.category_rows(result, by)
        if rows:
            parts.append(output.table(h, rows, align))
    n = rep.notes(result)
    if n:
        parts.append("\n".join(n))
    return "\n\n".join(parts)
