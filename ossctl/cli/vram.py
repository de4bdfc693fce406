"""``ossctl vram watch`` and ``ossctl vram plan``: GPU memory now, and whether a profile
fits. Library imports happen inside the commands (typer + stdlib at import time)."""

from __future__ import annotations

import io
import shutil
import sys
import time
from typing import Optional

import typer

from ossctl.cli import output
from ossctl.cli.options import ProfileOpt

vram_app = typer.Typer(help="GPU memory: watch usage live, plan whether a profile fits.",
                       no_args_is_help=True, pretty_exceptions_show_locals=False)


@vram_app.command("watch", short_help="GPU memory, processes and ossctl releases, live.")
def watch(
    ctx: typer.Context,
    interval: float = typer.Option(1.0, "--interval", "-n", min=0.05, help="Seconds between samples."),
    count: Optional[int] = typer.Option(None, "--count", "-c", min=1, help="Stop after N samples (default: until Ctrl-C)."),
    once: bool = typer.Option(False, "--once", help="One sample, then exit (same as --count 1)."),
    gpu: Optional[str] = typer.Option(None, "--gpu", metavar="IDS", help="Only these GPU indexes, e.g. 0,2."),
    alert_above: Optional[str] = typer.Option(None, "--alert-above", metavar="X",
                                              help="Alert on stderr when a GPU's used memory crosses X (95GiB or 90%)."),
    exit_on_alert: bool = typer.Option(False, "--exit-on-alert", help="Exit with code 8 at the first alert (cron / CI)."),
) -> None:
    """GPU memory, utilization, temperature, power and the processes (and ossctl releases)
    holding memory. A table refreshed in place on a terminal; `ossctl --json vram watch`
    prints one JSON object per sample per line."""
    from ossctl.errors import UsageError
    from ossctl.gpu import nvml, watch as w
    from ossctl.ops.vram import container_labels

    st = output.state(ctx)
    ids = w.parse_gpu_ids(gpu) if gpu is not None else []
    threshold = w.parse_threshold(alert_above) if alert_above is not None else None
    if exit_on_alert and threshold is None:
        raise UsageError("--exit-on-alert needs --alert-above", hint="e.g. --alert-above 95GiB --exit-on-alert")
    n = 1 if once else count
    with nvml.Session(st.settings.env) as backend:
        labels = container_labels(backend, st.settings)
        _show(st, w, w.samples(lambda: nvml.snapshot(backend, ids, container_labels=labels), interval, n),
              threshold, exit_on_alert)


def _show(st, w, samples, threshold, exit_on_alert: bool) -> None:
    """Render each sample (a table in place on a terminal, else frames or JSON lines);
    alerts go to stderr."""
    from ossctl.errors import EXIT_ALERT

    state = w.WatchState(threshold=threshold)
    tty = not st.json and sys.stdout.isatty()
    enc = getattr(sys.stdout, "encoding", None)
    ascii_only = bool(enc) and "utf" not in enc.lower()  # e.g. LANG=C: no block characters
    drawn = 0
    try:
        if tty:
            sys.stdout.write(w.HIDE_CURSOR)
        for k, snap in enumerate(samples):
            if isinstance(snap, Exception):
                output.info(f"warning: {snap}")
                if st.json:
                    output.json_line(w.error_record(time.time(), str(snap)))
                continue
            alerts, notes = state.update(snap)
            for note in notes:
                output.info(f"warning: {note}")
            if st.json:
                output.json_line(w.record(snap, alerts, state))
            else:
                frame = _frame(w, snap, state, threshold, ascii_only)
                if tty:
                    size = shutil.get_terminal_size()
                    frame = w.clip(frame, size.columns, size.lines - 1)
                    sys.stdout.write(w.repaint(frame, drawn))
                    drawn = frame.count("\n") + 1
                else:
                    sys.stdout.write(("\n" if k else "") + frame + "\n")
                sys.stdout.flush()
            for a in alerts:
                output.info(("alert: " if a.state == "above" else "ok: ") + a.message())
            if exit_on_alert and any(a.state == "above" for a in alerts):
                raise typer.Exit(EXIT_ALERT)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watch ends: leave the last frame and exit 0
    except BrokenPipeError:  # `ossctl vram watch | head -3`: the reader is done, so are we
        _silence_stdout()
        tty = False
    finally:
        if tty:
            sys.stdout.write(w.SHOW_CURSOR)
            sys.stdout.flush()


def _silence_stdout() -> None:
    # Further writes (and the interpreter's final flush) would raise again.
    try:
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


def _frame(w, snap, state, threshold, ascii_only: bool) -> str:
    parts = [w.header_line(snap, threshold), output.table(w.GPU_HEADERS, w.gpu_rows(snap, state, ascii_only), w.GPU_ALIGN)]
    procs = w.process_rows(snap)
    if procs:
        parts += ["", output.table(w.PROC_HEADERS, procs, w.PROC_ALIGN)]
    return "\n".join(parts)


@vram_app.command("plan", short_help="Will a profile fit in GPU memory? Breakdown and fixes.")
def plan(
    ctx: typer.Context,
    profile: ProfileOpt = None,
    model: Optional[str] = typer.Option(None, "--model", "-m", metavar="MODEL|DIR", help="Model instead of the profile's (alias, owner/repo, dir)."),
    gpus: Optional[str] = typer.Option(None, "--gpus", metavar="SPEC",
                                       help="Plan for these GPUs instead of the live ones: 1x97GiB, 4x80GiB, 80GiB,40GiB."),
    ctx_size: Optional[int] = typer.Option(None, "--ctx", min=1, help="Context size (tokens)."),
    parallel: Optional[int] = typer.Option(None, "--parallel", help="Slots (-1 = llama-server auto: 4, unified KV)."),
    n_gpu_layers: Optional[int] = typer.Option(None, "--n-gpu-layers", "-ngl", help="Layers on GPU (99 = all)."),
    n_cpu_moe: Optional[int] = typer.Option(None, "--n-cpu-moe", min=0, help="Keep expert weights of the first N layers in RAM."),
    ubatch: Optional[int] = typer.Option(None, "--ubatch", min=1, help="Physical batch size (tokens)."),
    cache_type_k: Optional[str] = typer.Option(None, "--cache-type-k", help="KV cache type for K (f16, q8_0, ...)."),
    cache_type_v: Optional[str] = typer.Option(None, "--cache-type-v", help="KV cache type for V."),
    flash_attn: Optional[str] = typer.Option(None, "--flash-attn", help="on | off | auto."),
) -> None:
    """Estimate the GPU memory a profile needs (weights, KV cache, compute buffers, per
    GPU), compare it with free memory (live NVML, or --gpus), and say what to change when
    it does not fit (exit code 10, so scripts can gate on it; --json keeps `fits`).
    Works before the model is downloaded (from the catalog size; a warning says the
    figures are approximate). Without --profile, --model names what to plan."""
    from ossctl.errors import EXIT_NO_FIT
    from ossctl.ops.vram import plan_vram

    st = output.state(ctx)
    overrides = {"model": model, "ctx": ctx_size, "parallel": parallel, "n_gpu_layers": n_gpu_layers,
                 "n_cpu_moe": n_cpu_moe, "ubatch": ubatch, "cache_type_k": cache_type_k,
                 "cache_type_v": cache_type_v, "flash_attn": flash_attn}
    result = plan_vram(st.settings, profile=profile, gpus=gpus, overrides=overrides, log=output.info)
    output.emit(st, result.to_dict(), lambda: _render_plan(result.plan, result.profile, result.last_release))
    if result.plan.fits is False:  # scripts gate on it: `ossctl vram plan -p prod || exit`
        raise typer.Exit(EXIT_NO_FIT)


def _g(n) -> str:
    return output.human_size(n)


def _render_plan(p, profile_name, last_release=None) -> str:
    f, q = p.model, p.params
    swa = f", {sum(f.swa_layers)} sliding-window layers (window {f.n_swa})" if f.n_swa else ""
    src = "GGUF header" if f.source == "gguf" else "catalog size + known architecture: approximate"
    lines = [
        f"profile   {profile_name or '-'}",
        f"model     {f.name} ({f.arch}, {f.n_layer} layers{swa}, {_g(f.size_bytes)}; {src})",
        f"settings  ctx {q.ctx}, parallel {q.parallel}{' (unified KV)' if q.kv_unified else ''}, ubatch {q.ubatch}, "
        f"flash-attn {'on' if q.flash_attn else 'off'}, KV {q.cache_type_k}/{q.cache_type_v}, "
        f"n_gpu_layers {q.n_gpu_layers}, n_cpu_moe {q.n_cpu_moe}",
        f"KV cells  {p.kv_cells['full']} full" + (f" + {p.kv_cells['swa']} sliding-window" if p.kv_cells["swa"] else "")
        + f" per stream, {p.kv_cells['streams']} stream(s)",
        "",
    ]
    rows = []
    for g in p.gpus:
        d = g.to_dict()
        layers = d["layers"] + ("+out" if g.output else "")
        rows.append([str(g.index), g.name or "-", layers or "-", _g(g.weights), _g(g.kv), _g(g.compute), _g(g.runtime),
                     _g(g.total), _g(g.free), _g(g.headroom), {True: "yes", False: "NO", None: "?"}[g.fits]])
    ram = p.host_weights + p.host_kv + p.host_compute
    rows.append(["RAM", "host", "", _g(p.host_weights), _g(p.host_kv), _g(p.host_compute) if p.host_compute else "", "",
                 _g(ram), "", "", ""])
    lines.append(output.table(("GPU", "NAME", "LAYERS", "WEIGHTS", "KV", "COMPUTE", "RUNTIME", "TOTAL", "FREE",
                               "HEADROOM", "FITS"), rows, "lllrrrrrrrl"))
    lines.append("")
    against = {"nvml": "free memory reported by NVML now", "--gpus": "--gpus (all memory free)"}
    if p.fits is None:
        lines.append(f"total on GPUs {_g(p.total_bytes)}; no free-memory figures to compare with "
                     f"(pass --gpus 1x80GiB)")
    else:
        verdict = "fits" if p.fits else "does NOT fit"
        lines.append(f"total on GPUs {_g(p.total_bytes)}: {verdict}; compared against "
                     f"{against.get(p.compared_against or '', p.compared_against)}")
    if p.pipeline_parallel:
        lines.append("pipeline parallelism: llama.cpp keeps 4 copies of the KQ masks and inputs on each GPU")
    if last_release:
        from ossctl.gpu.release_vram import describe_drift

        lines.append(describe_drift(last_release["gpus"], last_release.get("release")) or "")
    if p.suggestions:
        lines.append("to make it fit:")
        lines += [f"  - {s['text']}" for s in p.suggestions]
    return "\n".join(lines)
