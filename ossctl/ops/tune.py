"""``ossctl tune`` as a library call: find the llama-server settings of a profile that
serve the most inside an SLA, on the engine's own GPUs (or CPU).

Each point of the space (:mod:`ossctl.ops.tune_search`) is first planned
(:func:`ossctl.gpu.fit.plan_profile` against the GPUs' free memory): a point that does not
fit with ``margin`` bytes to spare is counted and skipped, never started. A point that
fits is a trial (:mod:`ossctl.serve.trial`: a throw-away container, never in the ledger,
never on the profile's port): gated, its GPU memory measured per process next to its plan,
benched with the same prompts at the SLA (``users`` concurrent users, or its capacity at
the SLA), removed. The walk is coordinate descent from the profile's own point.

The serving release of the profile is never left down: it is measured next to (it shares
the GPU, or the cores), so tune refuses while it runs unless ``take_over``; then tune
holds the profile's lock (no deploy or rollback meanwhile), stops the release, and starts
it again at the end through the rollout's own restore step, whatever ended the tune (an
error, Ctrl-C, a trial that crashed its server); a detached guard
(:mod:`ossctl.ops.tune_guard`) starts it should the tune itself be killed.

Trials are recorded as they finish, one JSON line each, in
``OSSCTL_HOME/cache/tune/PROFILE-KEY.jsonl`` (KEY: a hash of the engine, the resolved
profile, the model and how points are measured: users or capacity, SLA, requests, max
tokens, ctx per slot). Why there and not on the engine: a trial's figures are a
measurement cache of this operator's search, not a fact about what serves (the ledger's
job, which ``status`` / ``rollback`` from any machine must agree on); they are only valid
for the same settings, which the key pins, and losing them costs time, never
correctness. The same place keeps the last bench result per profile. A rerun with the
same arguments (any search, any budget, a wider ``--space``) reuses every recorded point
instead of starting it again; Ctrl-C keeps what finished.

Library code: progress goes to ``log`` (one line per trial with an ETA), results are
returned (:class:`TuneResult`); nothing is printed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ossctl.artifacts.manifest import locate_model_dir, read_manifest
from ossctl.errors import ConflictError, Interrupted, OssctlError, UsageError
from ossctl.fsutil import atomic_write
from ossctl.gpu import fit
from ossctl.loadtest import capacity as capmod, sla as slamod
from ossctl.ops import tune_guard, tune_search as ts
from ossctl.serve import Log, ctrl_c_deferred, nolog
from ossctl.serve.profiles import NAME_RE, resolve_profile
from ossctl.serve.releases import process_owner
from ossctl.serve.trial import Trial, trial_profile
from ossctl.units import format_seconds, human_size, parse_duration, parse_size

DEFAULT_MAX_TRIALS = 12
DEFAULT_MARGIN = "512MiB"
DEFAULT_MAX_TOKENS = 256
MiB = 1024 ** 2


# ------------------------------------------------------------------ options

@dataclass(frozen=True)
class TuneOptions:
    profile: str
    sla: str
    users: int | None  # concurrent users each point is benched at; None with capacity
    capacity: bool  # score each point by its users at the SLA instead
    space: dict[str, tuple[Any, ...]] | None  # None: the default space of the profile
    time_s: float | None  # the whole tune's budget, seconds
    max_trials: int
    min_ctx_per_slot: int | None  # None: the profile's ctx / its parallel
    margin: int  # bytes each GPU keeps free beyond the plan
    take_over: bool
    requests: int | None  # per bench level; None: 3 per user
    max_tokens: int
    grid: bool  # score the whole grid instead of the descent (for comparison)
    max_users: int  # the capacity search's top level


def tune_options(*, profile: str, sla: str | None, users: int | None, capacity: bool, space: list[str] | None,
                 time: str | None, max_trials: int | None, min_ctx_per_slot: int | None, margin: str | None,
                 take_over: bool, requests: int | None, max_tokens: int | None, grid: bool = False,
                 max_users: int | None = None) -> TuneOptions:
    """Check every option before anything starts. Raises :class:`UsageError` (one line:
    what is wrong and what to write instead)."""
    if not sla:
        raise UsageError("tune needs --sla: it finds the settings that serve the most inside it",
                         hint='e.g. --sla "p95<30s,errors<1%"')
    slamod.parse_sla(sla)
    if (users is None) == (not capacity):
        raise UsageError("give --users N (score each point by its output tokens/s at N users) or --capacity "
                         "(by its users at the SLA), one of them")
    if users is not None and not 1 <= users <= 10000:
        raise UsageError(f"--users {users}: give a whole number from 1 to 10000")
    parsed = ts.parse_space(space) if space else None
    budget = parse_duration(time) if time else None
    if budget is not None and budget <= 0:
        raise UsageError(f"--time {time}: give a positive duration, e.g. 30m")
    trials = DEFAULT_MAX_TRIALS if max_trials is None else max_trials
    if trials < 1:
        raise UsageError(f"--max-trials {trials}: give at least 1")
    if min_ctx_per_slot is not None and min_ctx_per_slot < 1:
        raise UsageError(f"--min-ctx-per-slot {min_ctx_per_slot}: give a positive number of tokens")
    m = (margin or DEFAULT_MARGIN).strip()
    margin_b = parse_size(m, "--margin") if m not in ("0", "") else 0
    if requests is not None and requests < 1:
        raise UsageError(f"--requests {requests}: give at least 1")
    mt = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    if mt < 1:
        raise UsageError(f"--max-tokens {mt}: give at least 1")
    top = capmod.DEFAULT_MAX_USERS if max_users is None else max_users
    if not 1 <= top <= 10000:
        raise UsageError(f"--max-users {top}: give a whole number from 1 to 10000")
    return TuneOptions(profile, sla, users, capacity, parsed, budget, trials, min_ctx_per_slot, margin_b, take_over,
                       requests, mt, grid, top)


# ------------------------------------------------------------------ results

ROW_KEYS = ("point", "overrides", "baseline", "resumed", "status", "plan_bytes", "vram_bytes", "plan_vs_nvml_pct",
            "users", "capacity_users", "output_tps", "latency_p50_s", "latency_p95_s", "ttft_p50_s", "requests",
            "errors", "sla_ok", "sla_failures", "error", "seconds")
RESULT_KEYS = ("profile", "sla", "users", "capacity", "search", "space", "trials", "skipped", "best", "baseline",
               "speedup", "tuned_profile", "stopped", "records", "elapsed_s")


@dataclass
class TrialRow:
    """One trial: ``point`` the knobs' values, ``overrides`` what changed from the profile
    (derived ctx / batch included); ``status`` ok | failed (the server did not come up or
    the bench could not run: ``error`` says why); bytes for memory (``plan_bytes`` on all
    GPUs, ``vram_bytes`` NVML per process; None without GPUs); seconds for latencies."""

    point: dict[str, Any]
    overrides: dict[str, Any]
    baseline: bool = False
    resumed: bool = False
    status: str = "ok"
    plan_bytes: int | None = None
    vram_bytes: int | None = None
    plan_vs_nvml_pct: float | None = None
    users: int | None = None  # the level output_tps and the latencies were measured at
    capacity_users: int | None = None
    output_tps: float | None = None
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    ttft_p50_s: float | None = None
    requests: int = 0
    errors: int = 0
    sla_ok: bool = False
    sla_failures: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ROW_KEYS}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialRow:
        return cls(**{k: d[k] for k in ROW_KEYS})


@dataclass
class TuneResult:
    profile: str
    sla: str
    users: int | None
    capacity: bool
    search: str
    space: dict[str, list[Any]]
    trials: list[TrialRow]
    skipped: list[dict[str, Any]]  # {"point", "reason"}: planned and not started
    best: TrialRow | None
    baseline: TrialRow | None
    speedup: float | None  # best vs the profile's own point (tok/s, or users with capacity)
    tuned_profile: str | None  # path of PROFILE-tuned.toml, None when the profile's point was best
    stopped: str | None  # "max_trials" | "time" | None (the search converged)
    records: str  # the file trials are recorded in
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "sla": self.sla, "users": self.users, "capacity": self.capacity,
                "search": self.search, "space": self.space, "trials": [t.to_dict() for t in self.trials],
                "skipped": self.skipped, "best": self.best.to_dict() if self.best else None,
                "baseline": self.baseline.to_dict() if self.baseline else None, "speedup": self.speedup,
                "tuned_profile": self.tuned_profile, "stopped": self.stopped, "records": self.records,
                "elapsed_s": self.elapsed_s}


# ------------------------------------------------------------------ pure parts

def default_space(profile: Mapping[str, Any], users: int | None) -> dict[str, tuple[Any, ...]]:
    """The space tune walks without ``--space``, from the profile: ``parallel`` 1, 2, 4, ...
    up to the users (16 with capacity) and the profile's own; ``ubatch`` 256..2048 and the
    profile's; ``flash_attn`` on/off on a GPU; quantised KV cache types only when the
    profile already uses one (otherwise its f16 stays: quality is the operator's call);
    ``n_cpu_moe`` only when the profile sets it; ``threads`` on CPU only. Pure."""
    top = users or 16
    par = sorted({1, *(2 ** i for i in range(12) if 2 ** i <= top), int(profile["parallel"])})
    space: dict[str, tuple[Any, ...]] = {"parallel": tuple(par),
                                         "ubatch": tuple(sorted({256, 512, 1024, 2048, int(profile["ubatch"])}))}
    gpu = profile.get("gpus", "all") != "none" and int(profile.get("n_gpu_layers", 0)) > 0
    if gpu:
        space["flash_attn"] = ("on", "off")
        quant = [t for t in (profile["cache_type_k"], profile["cache_type_v"]) if t not in ("f32", "f16", "bf16")]
        if quant:
            space["cache_type"] = tuple(dict.fromkeys(["f16", *quant, "q8_0"]))
        n = int(profile.get("n_cpu_moe", 0))
        if n:
            space["n_cpu_moe"] = tuple(sorted({0, n // 2, n}))
    else:
        ncpu = os.cpu_count() or 1
        space["threads"] = tuple(sorted({int(profile.get("threads", 0)), ncpu}))
    return space


def start_point(profile: Mapping[str, Any], space: Mapping[str, tuple[Any, ...]]) -> dict[str, Any]:
    """The profile's own value of every knob of ``space``. Pure."""
    out = {}
    for k in space:
        if k == "cache_type":
            out[k] = profile["cache_type_k"] if profile["cache_type_k"] == profile["cache_type_v"] else "f16"
        else:
            out[k] = profile[k]
    return out


def point_overrides(profile: Mapping[str, Any], point: Mapping[str, Any], min_ctx_per_slot: int) -> dict[str, Any]:
    """What a point changes in the profile: its knobs (``cache_type`` sets both KV
    types), ``ctx`` = parallel x ``min_ctx_per_slot`` (each slot keeps at least the
    floor), never below the profile's ctx, ``batch`` raised to ``ubatch`` when below it (llama-server would clamp
    ubatch). Only keys whose value differs from the profile's. Pure."""
    want: dict[str, Any] = {}
    for k, v in point.items():
        if k == "cache_type":
            want["cache_type_k"] = want["cache_type_v"] = v
        else:
            want[k] = v
    parallel = int(want.get("parallel", profile["parallel"]))
    # never below the profile's own ctx: its own point stays exactly the profile
    want["ctx"] = max(parallel * min_ctx_per_slot, int(profile["ctx"]))
    ub = int(want.get("ubatch", profile["ubatch"]))
    if int(want.get("batch", profile["batch"])) < ub:
        want["batch"] = ub
    return {k: v for k, v in want.items() if profile.get(k) != v}


def plan_point(profile: Mapping[str, Any], point: Mapping[str, Any], floor: int, model_dir: Path,
               devices: list[fit.Device] | None, margin: int) -> tuple[int | None, str | None]:
    """Whether a point may be started: ``(planned bytes on all GPUs, None)``, or ``(None,
    why it is skipped)`` when the profile rules refuse it or the VRAM plan
    (:func:`ossctl.gpu.fit.plan_profile`) needs more than a GPU's free memory less
    ``margin`` bytes. ``devices``: the GPUs with their free memory (None: a CPU profile,
    planned as 0; [] or unknown free memory: nothing can be ruled out). Reads the
    model's GGUF header, nothing else."""
    try:
        tp = trial_profile(profile, point_overrides(profile, point, floor))
    except UsageError as exc:
        return None, exc.message
    if devices is None:
        return 0, None
    try:
        p = fit.plan_profile(tp, model_dir, devices=devices or None)
    except OssctlError as exc:
        return None, f"cannot plan it: {exc.message}"
    short = [g for g in p.gpus if g.free is not None and g.total + margin > g.free]
    if short:
        g = short[0]
        return None, (f"does not fit: GPU {g.index} needs {human_size(g.total)} + margin {human_size(margin)}, "
                      f"{human_size(g.free)} free")
    return p.total_bytes, None


def describe_point(point: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items())


def record_key(parts: Mapping[str, Any]) -> str:
    """A short stable hash of what makes two trials comparable. Pure."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def score_of(row: TrialRow, capacity: bool) -> tuple:
    """How rows rank (larger is better): meets the SLA first, then output tokens/s at the
    users asked for; with capacity, users at the SLA, then tokens/s there. A failed
    trial ranks last. Pure."""
    tps = row.output_tps if row.output_tps is not None else -1.0
    if row.status != "ok":
        return (-1, -1.0) if capacity else (False, -1.0)
    if capacity:
        return (row.capacity_users or 0, tps)
    return (bool(row.sla_ok), tps)


def verdict(rows: list[TrialRow], capacity: bool) -> tuple[TrialRow | None, TrialRow | None, float | None]:
    """(the best row: None when no trial met the SLA; the profile's own row; the best's
    tokens/s, or users with ``capacity``, over the profile's own, None when either is
    missing). Pure."""
    best = max(rows, key=lambda r: score_of(r, capacity), default=None)
    if best is not None and (best.status != "ok" or not best.sla_ok):
        best = None  # nothing met the SLA: no point to recommend
    baseline = next((r for r in rows if r.baseline), None)
    speedup = None
    if best is not None and baseline is not None and baseline.status == "ok":
        a, b = (best.capacity_users, baseline.capacity_users) if capacity else (best.output_tps, baseline.output_tps)
        if a is not None and b:
            speedup = round(a / b, 3)
    return best, baseline, speedup


def tuned_toml(profile_name: str, row: TrialRow, baseline: TrialRow | None, result_line: str,
               profile: Mapping[str, Any]) -> str:
    """The text of ``PROFILE-tuned.toml``: ``extends`` the profile, only the changed keys
    (each with the profile's value as a comment), the measured figures as comments. Pure."""
    import tomli_w  # only here: the one writer of a tuned profile (as Profile.to_toml)

    lines = [f"# written by ossctl tune: {result_line}",
             "# measured: " + figures_line(row)]
    if baseline is not None and baseline is not row:
        lines.append(f"# the profile {profile_name!r} itself: " + figures_line(baseline))
    if row.plan_bytes is not None:
        lines.append(f"# VRAM: plan {row.plan_bytes // MiB} MiB"
                     + (f", NVML {row.vram_bytes // MiB} MiB" if row.vram_bytes is not None else ""))
    lines.append(tomli_w.dumps({"extends": profile_name}).strip())
    for k, v in row.overrides.items():
        lines.append(tomli_w.dumps({k: v}).strip() + f"  # {profile_name}: {profile.get(k)!r}")
    return "\n".join(lines) + "\n"


def figures_line(row: TrialRow) -> str:
    def s(v):
        return "-" if v is None else format_seconds(v)

    cap = f"{row.capacity_users} users at the SLA, " if row.capacity_users is not None else ""
    tps = "-" if row.output_tps is None else f"{row.output_tps:.1f}"
    return (f"{cap}{tps} output tok/s at {row.users} users, p50 {s(row.latency_p50_s)}, p95 {s(row.latency_p95_s)}, "
            f"ttft p50 {s(row.ttft_p50_s)}, {row.errors} errors of {row.requests}, "
            f"SLA {'met' if row.sla_ok else 'failed'}")


# ------------------------------------------------------------------ records

class Records:
    """The trials of one tune key, one JSON line each (see the module docstring); a
    torn last line (a kill mid-write) is ignored."""

    def __init__(self, path: Path):
        self.path = path
        self.done: dict[tuple, TrialRow] = {}
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise OssctlError(f"cannot read the tune records {path}: {exc.strerror}") from None
        for line in text.splitlines():
            try:
                row = TrialRow.from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue
            self.done[ts.key(row.point)] = row

    def add(self, row: TrialRow) -> None:
        self.done[ts.key(row.point)] = row
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row.to_dict(), default=str) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise OssctlError(f"cannot record the trial in {self.path}: {exc.strerror}",
                              hint="free space there or point OSSCTL_HOME elsewhere") from None


# ------------------------------------------------------------------ the tune

def _measure(t: Trial, opts: TuneOptions, conditions, log: Log) -> tuple[Any, Any]:
    """Bench a running trial: at ``opts.users``, or its capacity at the SLA. Returns (the
    level the figures come from, the capacity or None)."""
    def bench_at(users: int):
        req = opts.requests if opts.requests is not None else 3 * users
        figs = t.bench({"users": [users], "requests": max(req, users), "max_tokens": opts.max_tokens,
                        "stream": True, "sla": opts.sla})
        return figs.levels[0] if figs.levels else None

    if not opts.capacity:
        return bench_at(int(opts.users)), None
    cap = capmod.find_capacity(bench_at, lambda lv: not slamod.evaluate(conditions, _level_dict(lv)),
                               max_users=opts.max_users)
    return cap.at(cap.users) or cap.at(cap.first_fail), cap


def _level_dict(lv) -> dict[str, Any]:
    """A trial's BenchLevel in the shape the SLA evaluator reads."""
    return {"error_pct": lv.error_pct, "rpm": lv.rpm, "output_tps": lv.output_tps,
            "latency_s": {"p50": lv.latency_p50_s, "p95": lv.latency_p95_s},
            "ttft_s": {"p50": lv.ttft_p50_s} if lv.ttft_p50_s is not None else None}


def tune(settings, opts: TuneOptions, *, docker_host_flag: str | None = None, runtime=None, log: Log = nolog,
         nvml_backend=None) -> TuneResult:
    """Run the tune (see the module docstring). ``runtime``: what trials run on, with the
    interface of :class:`~ossctl.serve.docker_runtime.DockerRuntime` that
    :class:`~ossctl.serve.trial.Trial` uses (default: the Docker engine of the settings
    and ``--docker-host``; :class:`ossctl.serve.native.NativeRuntime` runs llama-server
    processes where there is no Docker, and has no releases to take over).

    Raises :class:`UsageError` for bad input (nothing started), :class:`ConflictError`
    when the profile's release serves and ``take_over`` is not set, :class:`Interrupted`
    on Ctrl-C (recorded trials kept, the release serving again); errors of the engine as
    it raises them, after the release was started again."""
    t0 = time.monotonic()
    profile = resolve_profile(settings, opts.profile)
    name = profile["name"]
    tuned_name = f"{name}-tuned"
    if not NAME_RE.match(tuned_name):
        raise UsageError(f"profile name {name!r} is too long to write {tuned_name!r}",
                         hint="copy the profile under a shorter name and tune that")
    model_dir = locate_model_dir(settings, profile["model"]).resolve()
    manifest = read_manifest(model_dir)
    floor = opts.min_ctx_per_slot or max(int(profile["ctx"]) // int(profile["parallel"]), 1)
    space = opts.space or default_space(profile, opts.users)
    start = start_point(profile, space)
    engine = None
    if runtime is None:
        from ossctl.serve.engine import open_engine  # docker: only when trials run on an engine

        engine = open_engine(settings, docker_host_flag, log)
        runtime = engine.rt
    host = getattr(runtime, "host", "native")
    conditions = slamod.parse_sla(opts.sla)
    key = record_key({"engine": host, "profile": dict(profile), "model": str(model_dir),
                      "composite": getattr(manifest, "composite_sha256", None), "users": opts.users,
                      "capacity": opts.capacity, "max_users": opts.max_users if opts.capacity else None,
                      "sla": opts.sla, "requests": opts.requests, "max_tokens": opts.max_tokens, "floor": floor})
    records = Records(settings.cache_dir / "tune" / f"{name}-{key}.jsonl")
    if records.done:
        log(f"tune: {len(records.done)} trial(s) recorded by an earlier run with these arguments are reused "
            f"({records.path})")

    with contextlib.ExitStack() as stack:
        serving = None
        if engine is not None:
            serving = _take_over(stack, engine, name, opts, profile, log)
        devices = _devices(settings, profile, nvml_backend, log)
        result = _walk(settings, runtime, profile, manifest, model_dir, opts, space, start, floor, devices,
                       records, conditions, nvml_backend, serving, log, t0)
    result.elapsed_s = round(time.monotonic() - t0, 3)
    if result.best is not None and result.best.overrides and not result.best.baseline:
        result.tuned_profile = _write_tuned(settings, name, tuned_name, profile, result, opts)
        log(f"tune: wrote {result.tuned_profile} (deploy it with `ossctl deploy --profile {tuned_name}`)")
    return result


def _take_over(stack: contextlib.ExitStack, engine, name: str, opts: TuneOptions, profile, log: Log):
    """Refuse while the profile's release serves, unless ``take_over``: then hold the
    profile's lock, stop the release, and register its restart (the rollout's restore
    step) to run whatever ends the tune. Returns the stopped release, or None."""
    from ossctl.serve.rollout import restart_release

    cur = engine.book(name).current(name)
    if not engine.running(cur):
        return None
    if not opts.take_over:
        raise ConflictError(f"release {cur.id} of profile {name} serves on {engine.host}: trials there would be "
                            "measured next to it (its GPU memory, its load)",
                            hint=f"`ossctl tune --profile {name} --take-over ...` stops it for the tune and starts "
                                 "it again at the end")
    stack.enter_context(engine.ledger.lock(name, "tune", log))
    cur = engine.book(name).current(name)  # under the lock: what serves now
    if not engine.running(cur):
        return None
    timeout = float(profile["health_timeout"])

    def give_back() -> None:
        with ctrl_c_deferred(lambda: log("tune: Ctrl-C: starting the release again first")):
            said = restart_release(engine, cur, timeout)
            log(f"tune: {said}")
            if not engine.running(cur):
                raise OssctlError(f"tune could not start release {cur.id} of profile {name} again: {said}",
                                  hint=f"`ossctl rollback --profile {name} --to {cur.id}` starts it")

    log(f"tune: --take-over: stopping release {cur.id} of profile {name} for the tune; it is started again at the end")
    # what no `finally` covers (kill -9): a detached guard starts it when this process is
    # gone without having given it back; dismissed (last) once it has
    guard = tune_guard.spawn(process_owner(), engine.host, name, cur.container_id, dict(engine.settings.env))
    stack.callback(tune_guard.dismiss, guard)
    stack.callback(give_back)  # registered before the stop: a stop cut short is restarted too
    engine.rt.stop(cur.container_id)
    return cur


def _devices(settings, profile, nvml_backend, log: Log) -> list[fit.Device] | None:
    """The GPUs the profile uses with their free memory now (after a take-over: the
    release's memory is free), None for a CPU profile."""
    if profile.get("gpus", "all") == "none":
        return None
    from ossctl.gpu import nvml

    want = profile["gpus"]
    try:
        with nvml.Session(settings.env, nvml_backend) as be:
            snap = nvml.snapshot(be, want if isinstance(want, list) else None)
    except UsageError:
        raise
    except OssctlError as exc:
        log(f"tune: note: {exc.message}; points are planned without free-memory figures (none is skipped)")
        return []
    return [fit.Device(d.index, d.name or "", d.memory_total, d.memory_free) for d in snap.devices]


def _walk(settings, runtime, profile, manifest, model_dir, opts: TuneOptions, space, start, floor, devices,
          records: Records, conditions, nvml_backend, serving, log: Log, t0: float) -> TuneResult:
    rows: list[TrialRow] = []
    skipped: list[dict[str, Any]] = []
    plans: dict[tuple, tuple[int | None, str | None]] = {}
    started: list[float] = []  # seconds per trial run here
    deadline = t0 + opts.time_s if opts.time_s is not None else None
    total = min(opts.max_trials, ts.grid_size(space) + sum(len(v) for v in space.values()))  # off-grid start
    stop_reason: list[str] = []

    def plan_of(point) -> tuple[int | None, str | None]:
        k = ts.key(point)
        if k not in plans:
            plans[k] = plan_point(profile, point, floor, model_dir, devices, opts.margin)
        return plans[k]

    def fits(point) -> bool:
        return plan_of(point)[1] is None

    def stop() -> bool:
        if deadline is None:
            return False
        avg = sum(started) / len(started) if started else 0.0
        if time.monotonic() + avg > deadline:
            stop_reason.append("time")
            return True
        return False

    def score(point):
        planned, why = plan_of(point)
        if why is not None:
            skipped.append({"point": dict(point), "reason": why})
            log(f"tune: skipped {describe_point(point)}: {why}")
            return None
        k = ts.key(point)
        is_base = point == start
        if k in records.done:
            row = records.done[k]
            row.resumed, row.baseline = True, is_base
            rows.append(row)
            log(f"tune: {describe_point(point)}: recorded earlier: {figures_line(row)}")
            return score_of(row, opts.capacity)
        row = _trial(settings, runtime, profile, manifest, model_dir, point, floor, planned, opts, conditions,
                     nvml_backend, log)
        row.baseline = is_base
        records.add(row)
        rows.append(row)
        started.append(row.seconds)
        log(_progress(row, rows, started, min(total, opts.max_trials), deadline))
        return score_of(row, opts.capacity)

    walk = ts.grid if opts.grid else ts.coordinate_descent
    kwargs: dict[str, Any] = {"max_evals": opts.max_trials, "stop": stop}
    if not opts.grid:
        kwargs["fits"] = fits
    try:
        search = walk(space, score, **kwargs) if opts.grid else walk(space, start, score, **kwargs)
    except (KeyboardInterrupt, Interrupted):
        what = f"{len(rows)} trial(s) recorded in {records.path}; a rerun with the same arguments goes on from there"
        back = f"; release {serving.id} is started again" if serving is not None else ""
        raise Interrupted(f"interrupted: tune stopped; {what}{back}") from None
    best, baseline, speedup = verdict(rows, opts.capacity)
    stopped = search.stopped
    if stopped == "stop":
        stopped = stop_reason[0] if stop_reason else "time"
    elif stopped == "max_evals":
        stopped = "max_trials"
    return TuneResult(profile["name"], opts.sla, opts.users, opts.capacity, search.method,
                      {k: list(v) for k, v in space.items()}, rows, skipped, best, baseline, speedup, None, stopped,
                      str(records.path), 0.0)


def _progress(row: TrialRow, rows: list[TrialRow], started: list[float], total: int, deadline: float | None) -> str:
    """The line said after each trial: its figures, its time and the ETA of the rest
    (the mean trial time for the trials left, at most the time left)."""
    done = sum(1 for r in rows if not r.resumed)
    eta = sum(started) / len(started) * max(total - len(rows), 0)
    if deadline is not None:
        eta = min(eta, max(deadline - time.monotonic(), 0.0))
    return (f"tune: trial {done} ({len(rows)}/{total}): {describe_point(row.point)}: "
            + (figures_line(row) if row.status == "ok" else f"failed: {row.error}")
            + f" [{format_seconds(row.seconds)}; ETA {format_seconds(eta) if eta >= 1 else '0s'}]")


def _trial(settings, runtime, profile, manifest, model_dir, point, floor, planned, opts: TuneOptions, conditions,
           nvml_backend, log: Log) -> TrialRow:
    """One trial of ``point``: start, gate, measure, remove. A server that does not come
    up, crashes or cannot be benched is a failed row (the search goes on); Ctrl-C and
    engine errors propagate."""
    from ossctl.errors import TrialError

    over = point_overrides(profile, point, floor)
    row = TrialRow(dict(point), over, plan_bytes=planned if profile.get("gpus", "all") != "none" else None)
    t1 = time.monotonic()
    try:
        with Trial(settings, runtime, profile, manifest, model_dir, overrides=over, log=log) as t:
            # after the gate and again after the bench (CUDA graphs, cuBLAS workspaces grow
            # on the first full batches): the larger is what the plan must cover
            loaded = t.measure_vram(nvml_backend) or {}
            lv, cap = _measure(t, opts, conditions, log)
            vram = t.measure_vram(nvml_backend) or {}
            held = max(sum(loaded.values()), sum(vram.values()))
            if held:
                row.vram_bytes = held
                if planned:
                    row.plan_vs_nvml_pct = round((planned - held) / held * 100, 2)
    except TrialError as exc:
        row.status, row.error = "failed", exc.message
        row.seconds = round(time.monotonic() - t1, 3)
        return row
    row.seconds = round(time.monotonic() - t1, 3)
    if lv is None:
        row.status, row.error = "failed", "the bench measured nothing"
        return row
    row.users, row.output_tps = lv.users, lv.output_tps
    row.latency_p50_s, row.latency_p95_s, row.ttft_p50_s = lv.latency_p50_s, lv.latency_p95_s, lv.ttft_p50_s
    row.requests, row.errors = lv.requests, lv.errors
    row.sla_failures = slamod.evaluate(conditions, _level_dict(lv))
    row.sla_ok = not row.sla_failures
    if cap is not None:
        row.capacity_users = cap.users
        row.sla_ok = cap.users is not None
    if lv.requests and lv.errors == lv.requests:
        row.status, row.error = "failed", f"every request failed ({lv.errors} of {lv.requests})"
    return row


def _write_tuned(settings, name: str, tuned_name: str, profile, result: TuneResult, opts: TuneOptions) -> str:
    how = (f"capacity at SLA {opts.sla}" if opts.capacity else f"{opts.users} users at SLA {opts.sla}")
    line = (f"best of {len(result.trials)} trial(s) ({result.search} over "
            + " ".join(f"{k}={','.join(map(str, v))}" for k, v in result.space.items()) + f"), {how}"
            + (f"; {result.speedup:g}x the profile's own settings" if result.speedup else ""))
    text = tuned_toml(name, result.best, result.baseline, line, profile)
    path = settings.profiles_dir / f"{tuned_name}.toml"
    try:
        atomic_write(path, text)
    except OSError as exc:
        raise OssctlError(f"cannot write {path}: {exc.strerror}",
                          hint="the results above stand; point OSSCTL_HOME at a writable directory") from None
    return str(path)
