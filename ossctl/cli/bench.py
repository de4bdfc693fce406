"""``ossctl bench``: load-test a deployment (or any OpenAI-compatible URL) with
closed-loop concurrent users; percentiles, throughput, error kinds and an SLA gate."""

from __future__ import annotations

from typing import Optional

import typer

from ossctl.cli import output
from ossctl.cli.options import ProfileOpt
from ossctl.loadtest import DEFAULT_DURATION, DEFAULT_USERS

# Library modules are imported inside the commands: `ossctl --help` imports this module,
# and they would cost it start-up time (python -X importtime -m ossctl --help).


def bench(
    ctx: typer.Context,
    profile: ProfileOpt = None,
    url: Optional[str] = typer.Option(None, "--url", metavar="URL",
                                      help="Bench any OpenAI-compatible server instead, e.g. http://127.0.0.1:8080."),
    users: Optional[str] = typer.Option(None, "--users", "-u", metavar="N,N,...",
                                        help=f"Concurrency levels, run in turn (default: {DEFAULT_USERS})."),
    duration: Optional[str] = typer.Option(None, "--duration", "-d", metavar="TIME",
                                           help=f"How long each level runs (default: {DEFAULT_DURATION})."),
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
    capacity: bool = typer.Option(False, "--capacity",
                                  help="Find the most concurrent users that meet --sla: levels 1, 2, 4, ... until "
                                       "one fails, then bisection (at most 16 levels; each runs --duration, or "
                                       "--requests but at least one request per user)."),
    max_users: Optional[int] = typer.Option(None, "--max-users", metavar="N", min=1, max=10000,
                                            help="With --capacity: the largest level tried (default: 256)."),
) -> None:
    """Load-test a deployment: closed-loop users per concurrency level, latency
    avg/p50/p90/p95/p99, time to first token, errors by kind, requests/min and tokens/s.

    Benches the release serving --profile (without --profile or --url: the newest
    serving release of any profile), or any OpenAI-compatible server at --url.

    With --capacity (and --sla): the largest number of users that meets the SLA, with
    the figures at that level and the first level that fails (exit 9 when none meets it).

    Ctrl-C stops the run and still prints what was measured (exit 130)."""
    st = output.state(ctx)
    from ossctl.errors import EXIT_INTERRUPTED, UsageError
    from ossctl.loadtest import report as rep
    from ossctl.ops.bench import bench_options, run_bench

    if max_users is not None and not capacity:
        raise UsageError("--max-users goes with --capacity")
    opts = bench_options(st.settings, users=users if not capacity else "1", duration=duration, requests=requests,
                         timeout=timeout, sla=sla, plot=plot, prompts=prompts, reasoning_effort=reasoning_effort,
                         stream=stream, max_tokens=max_tokens, model=model)
    if capacity:
        _capacity(st, opts, users, max_users, profile, url, api_key_file, plot)
        return
    result, warning = run_bench(st.settings, opts, profile=profile, url=url, api_key_file=api_key_file,
                                progress=output.info)
    output.emit(st, result, lambda: render(result))
    if warning:
        output.info(warning)
    if plot is not None and result["levels"]:
        rep.plot(result, plot)
        output.info(f"wrote {plot}")
    if result["interrupted"]:
        raise typer.Exit(EXIT_INTERRUPTED)
    failure = rep.outcome_error(result)
    if failure is not None:
        raise failure


def _capacity(st, opts, users, max_users, profile, url, api_key_file, plot) -> None:
    from ossctl.errors import EXIT_INTERRUPTED
    from ossctl.loadtest import report as rep
    from ossctl.ops.bench import capacity_lines, capacity_options, capacity_outcome, run_capacity

    top = capacity_options(opts, users=users, max_users=max_users)
    result = run_capacity(st.settings, opts, max_users=top, profile=profile, url=url, api_key_file=api_key_file,
                          progress=output.info)
    output.emit(st, result, lambda: render(result) + "\n" + "\n".join(capacity_lines(result)))
    if plot is not None and result["levels"]:
        rep.plot(result, plot)
        output.info(f"wrote {plot}")
    if result["interrupted"]:
        raise typer.Exit(EXIT_INTERRUPTED)
    failure = capacity_outcome(result)
    if failure is not None:
        raise failure


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
