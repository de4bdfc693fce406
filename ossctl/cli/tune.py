"""``ossctl tune``: find the llama-server settings of a profile that serve the most inside
an SLA, one throw-away trial container per point, and write them as PROFILE-tuned."""

from __future__ import annotations

from typing import List, Optional

import typer

from ossctl.cli import output
from ossctl.cli.options import DockerHost, Profile

# Library modules are imported inside the command: `ossctl --help` imports this module,
# and they would cost it start-up time (python -X importtime -m ossctl --help).


def tune(
    ctx: typer.Context,
    profile: Profile,
    sla: Optional[str] = typer.Option(None, "--sla", metavar="SPEC",
                                      help='The SLA every point is judged by, e.g. "p95<30s,errors<1%" '
                                           "(as `ossctl bench --sla`)."),
    users: Optional[int] = typer.Option(None, "--users", "-u", metavar="N",
                                        help="Bench each point at N concurrent users; the best serves the most "
                                             "output tokens/s inside the SLA."),
    capacity: bool = typer.Option(False, "--capacity",
                                  help="Score each point by its users at the SLA instead (as `bench --capacity`)."),
    space: Optional[List[str]] = typer.Option(
        None, "--space", metavar="KNOB=V,V",
        help="The knobs and values to try, e.g. --space 'parallel=1,4,8,16 ubatch=512,2048' (repeatable; "
             "knobs: parallel, ubatch, batch, flash_attn, cache_type, cache_type_k, cache_type_v, n_cpu_moe, "
             "threads). Only the knobs named are tried (default: parallel up to --users, ubatch 256-2048, "
             "flash_attn on a GPU, threads on CPU)."),
    more_space: Optional[List[str]] = typer.Argument(None, metavar="[KNOB=V,V ...]",
                                                     help="More --space knobs.", show_default=False),
    time_budget: Optional[str] = typer.Option(None, "--time", metavar="TIME",
                                              help="Stop starting trials once this is spent, e.g. 30m."),
    max_trials: Optional[int] = typer.Option(None, "--max-trials", metavar="N", help="At most N trials (default: 12)."),
    min_ctx_per_slot: Optional[int] = typer.Option(
        None, "--min-ctx-per-slot", metavar="TOKENS",
        help="Context each slot keeps: ctx = parallel x this (default: the profile's ctx / its parallel)."),
    margin: Optional[str] = typer.Option(None, "--margin", metavar="SIZE",
                                         help="GPU memory each point must leave free beyond its VRAM plan; points "
                                              "that do not fit are skipped, never started (default: 512MiB)."),
    take_over: bool = typer.Option(False, "--take-over",
                                   help="Stop the profile's serving release for the tune and start it again at "
                                        "the end (also after a failure or Ctrl-C). Without it tune refuses while "
                                        "it serves."),
    requests: Optional[int] = typer.Option(None, "--requests", "-n", metavar="N",
                                           help="Requests per bench level (default: 3 per user)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", metavar="N",
                                             help="max_tokens of every request (default: 256)."),
    max_users: Optional[int] = typer.Option(None, "--max-users", metavar="N",
                                            help="With --capacity: the largest level tried (default: 256)."),
    grid: bool = typer.Option(False, "--grid", help="Try every point of the space instead of coordinate descent."),
    plot: Optional[str] = typer.Option(None, "--plot", metavar="FILE.png",
                                       help="Write a PNG of throughput against each knob, SLA-failing points marked "
                                            "(needs the plot extra: pip install 'ossctl\\[plot]')."),
    docker_host: DockerHost = None,
) -> None:
    """Find the llama-server settings of --profile that serve the most inside --sla.

    Each point is planned first (points that do not fit the GPUs' free memory with
    --margin are skipped, never started), then run as a throw-away trial container (never
    in the ledger, never on the profile's port), gated, its GPU memory measured next to
    its plan, benched at the SLA, removed. The walk is coordinate descent from the
    profile's own settings (--grid: every point). Prints a table of every trial and the
    best point, and writes it as PROFILE-tuned (`extends` PROFILE, the changed keys only,
    the measured figures as comments) into the profiles directory.

    Trials are recorded as they finish: a rerun with the same arguments skips them;
    Ctrl-C keeps them (exit 130). Exit 9 when no point meets the SLA."""
    st = output.state(ctx)
    from ossctl.errors import EXIT_NO_FIT, EXIT_SLA, OssctlError, UsageError
    from ossctl.loadtest.report import require_matplotlib
    from ossctl.ops.tune import tune as run_tune, tune_options

    spaces = list(space or []) + list(more_space or [])
    if any("=" not in s for s in more_space or []):
        bad = next(s for s in more_space or [] if "=" not in s)
        raise UsageError(f"unexpected argument {bad!r}", hint="knobs to try look like parallel=1,4,8 (see --space)")
    if max_users is not None and not capacity:
        raise UsageError("--max-users goes with --capacity")
    opts = tune_options(profile=profile, sla=sla, users=users, capacity=capacity, space=spaces or None,
                        time=time_budget, max_trials=max_trials, min_ctx_per_slot=min_ctx_per_slot, margin=margin,
                        take_over=take_over, requests=requests, max_tokens=max_tokens, grid=grid, max_users=max_users)
    if plot is not None:
        require_matplotlib()
    result = run_tune(st.settings, opts, docker_host_flag=docker_host, log=output.info)
    output.emit(st, result.to_dict(), lambda: render(result))
    if plot is not None and result.trials:
        from ossctl.ops.tune_plot import plot as draw

        draw(result, plot)
        output.info(f"wrote {plot}")
    if not result.trials and result.skipped:
        raise OssctlError(f"no point of the space fits the GPUs: {len(result.skipped)} skipped without starting "
                          f"them ({result.skipped[0]['reason']})",
                          hint="narrow --space (smaller parallel, ubatch, ctx per slot), lower --margin, "
                               "or free GPU memory (`ossctl vram watch`)", exit_code=EXIT_NO_FIT)
    if result.best is None:
        raise OssctlError(f"no point met the SLA {opts.sla} ({len(result.trials)} trial(s))",
                          hint="relax the SLA, fewer --users, or widen --space", exit_code=EXIT_SLA)


def render(result) -> str:
    """The trials table, then the best point and what was written."""
    rows = []
    for i, t in enumerate(result.trials, 1):
        tag = "*" if t is result.best else ""
        rows.append([f"{i}{tag}", " ".join(f"{k}={v}" for k, v in t.point.items()) + (" (profile)" if t.baseline else ""),
                     t.status + (" (recorded)" if t.resumed else ""),
                     _mib(t.plan_bytes), _mib(t.vram_bytes),
                     "-" if t.plan_vs_nvml_pct is None else f"{t.plan_vs_nvml_pct:+.1f}%",
                     "-" if t.capacity_users is None else str(t.capacity_users),
                     "-" if t.output_tps is None else f"{t.output_tps:.1f}",
                     _s(t.latency_p50_s), _s(t.latency_p95_s), _s(t.ttft_p50_s), f"{t.errors}/{t.requests}",
                     "ok" if t.sla_ok else ("fail" if t.status == "ok" else "-")])
    headers = ["#", "settings", "status", "plan MiB", "NVML MiB", "plan-NVML", "users@SLA", "out tok/s",
               "p50", "p95", "ttft p50", "errors", "SLA"]
    if not result.capacity:
        headers.pop(6)
        for r in rows:
            r.pop(6)
    parts = [output.table(headers, rows, "rll" + "r" * (len(headers) - 4) + "l")]
    notes = []
    if result.skipped:
        notes.append(f"skipped {len(result.skipped)} point(s) without starting them: "
                     + "; ".join(f"{' '.join(f'{k}={v}' for k, v in s['point'].items())} ({s['reason']})"
                                 for s in result.skipped[:5]) + (" ..." if len(result.skipped) > 5 else ""))
    if result.best is not None:
        b = result.best
        notes.append("best: " + (" ".join(f"{k}={v}" for k, v in b.overrides.items()) or "the profile's own settings")
                     + (f" ({result.speedup:g}x the profile's own)" if result.speedup else ""))
    else:
        notes.append(f"no point met the SLA {result.sla}")
    if result.tuned_profile:
        notes.append(f"wrote {result.tuned_profile}")
    if result.stopped:
        notes.append({"max_trials": "stopped at --max-trials", "time": "stopped: --time spent"}.get(
            result.stopped, f"stopped: {result.stopped}") + f"; trials are recorded in {result.records}")
    parts.append("\n".join(notes))
    return "\n\n".join(parts)


def _mib(v) -> str:
    return "-" if v is None else str(v // (1024 * 1024))


def _s(v) -> str:
    if v is None:
        return "-"
    from ossctl.units import format_seconds

    return format_seconds(v)
