"""A throw-away llama-server container: start it from a resolved profile (with a few
settings overridden), gate it as deploy does, measure it, and always remove it.

What a tuner (many settings tried one after another), an upgrade canary or doctor needs,
without touching what serves:
- never in the ledger and never under a profile's lock: nothing is recorded on the
  engine but the container itself, whose labels (``ossctl.role=trial``, its owner
  process, its creation time; no ``ossctl.managed`` / ``ossctl.release``) keep it out of
  ``status``, ``releases``, the reconcile of an interrupted deploy and ``vram watch``'s
  release column;
- never on a port a profile or a release of this engine uses (nor on a busy one);
- always removed: when the ``with`` block ends, whatever ended it (an error, Ctrl-C);
  after ``kill -9`` of ossctl the next trial (any process, see :func:`reap_trials`, which
  doctor may call too) removes containers whose owner process is provably gone: same
  machine, same boot, pid gone or reused. Another live ossctl's trial is never touched,
  nor one owned on another machine.

Usage::

    with Trial(settings, rt, profile, manifest, model_dir, overrides={"parallel": 4}, log=log) as t:
        t.measure_vram()
        t.bench({"users": [1, 4], "requests": 8})
        result = t.result()

or :func:`run_trial` for the three steps at once. Library code: progress goes to ``log``,
results are returned (:class:`TrialResult`), nothing is printed.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ossctl import labels as L
from ossctl.errors import ConflictError, DeployError, Interrupted, OssctlError, TrialError, UsageError
from ossctl.gpu.release_vram import measure_pids, measure_release
from ossctl.loadtest.gate import run_gate, validate_bench_cfg
from ossctl.serve import Log, ctrl_c_deferred, health, image_flags, llama_server, nolog
from ossctl.serve.apikey import read_api_key
from ossctl.serve.docker_runtime import engine_address
from ossctl.serve.llama_flags import parse_build
from ossctl.serve.profiles import DEFAULTS, check_against_model, list_profiles, load_raw, validate
from ossctl.serve.releases import holder_is_dead, now_iso, process_owner
from ossctl.serve.engine import endpoint_url
from ossctl.serve.preflight import port_free_locally

ROLE = "trial"  # the value of labels.ROLE on a trial container
NAME_PREFIX = "ossctl-trial-"
# Profile keys a trial may change: what reaches llama-server's argv or its devices. The
# rest (model, image, host, port, api key, ...) says what is tried, not how.
TUNABLE = ("ctx", "n_gpu_layers", "batch", "ubatch", "parallel", "flash_attn", "jinja", "cache_type_k",
           "cache_type_v", "n_cpu_moe", "gpus", "tensor_split", "threads", "extra_args",
           "temperature", "top_p", "top_k", "min_p", "repeat_penalty", "reasoning_effort", "reasoning_format")
_NOT_TRIED = ("hosts", "max_unavailable", "canary", "frontdoor", "bench")  # one engine, no front door, own bench

# container names of the trials this process has running: what reap_trials leaves alone
# when the owner is this very process (anything else it owns is a leftover of a failed removal)
_ACTIVE: set[str] = set()


# ------------------------------------------------------------------ results

@dataclass(frozen=True)
class GateTimes:
    """Seconds, measured here: ``start_s`` create + start of the container, ``ready_s``
    from then until ``/health`` said 200, ``checks_s`` ``/props`` + smoke completions;
    ``healthy_s`` from asking the engine to healthy (start + ready)."""

    start_s: float
    ready_s: float
    checks_s: float
    healthy_s: float


@dataclass(frozen=True)
class BenchLevel:
    """One concurrency level of the trial's bench (see :func:`ossctl.loadtest.stats.summarize`)."""

    users: int
    requests: int
    errors: int
    error_pct: float
    rpm: float  # successful requests per minute
    output_tps: float  # output tokens per second, all users together
    latency_p50_s: float | None
    latency_p95_s: float | None
    ttft_p50_s: float | None  # None without streaming


@dataclass(frozen=True)
class BenchFigures:
    levels: tuple[BenchLevel, ...]
    sla: str
    sla_ok: bool
    summary: str  # one line, as the deploy gate says it


@dataclass(frozen=True)
class TrialResult:
    """What one trial showed. ``vram``: bytes per GPU index held by the trial's
    processes (NVML per process), None when not measured (no GPU asked for, a remote
    engine, no NVML here); ``bench`` None when none was run."""

    profile: str
    overrides: Mapping[str, Any]
    container: str  # its name; removed by the time the trial ends
    image: str
    image_id: str
    build: int | None
    port: int
    endpoint: str
    argv: tuple[str, ...]  # llama-server's arguments
    docker_run: str  # the equivalent `docker run` line
    gate: GateTimes
    props: Mapping[str, Any]
    vram: Mapping[int, int] | None
    bench: BenchFigures | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["overrides"] = dict(self.overrides)
        d["props"] = dict(self.props)
        d["vram"] = {str(k): v for k, v in self.vram.items()} if self.vram is not None else None
        return d


@dataclass(frozen=True)
class Reaped:
    """What :func:`reap_trials` did: container names ``removed``, and ``kept`` with why
    (a live owner, an owner on another machine)."""

    removed: tuple[str, ...]
    kept: tuple[tuple[str, str], ...]


# ------------------------------------------------------------------ pure parts

def trial_profile(profile: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The resolved ``profile`` with ``overrides`` applied and validated by the profile
    validator, without the fleet, front-door and bench tables (a trial runs one
    container on one engine). Pure. Raises :class:`UsageError` for a key a trial may not
    change (see :data:`TUNABLE`) or a value the profile rules refuse."""
    overrides = dict(overrides or {})
    bad = [k for k in overrides if k not in TUNABLE]
    if bad:
        raise UsageError(f"a trial cannot change {bad[0]!r}",
                         hint="it changes llama-server settings only: " + ", ".join(TUNABLE))
    base = {k: v for k, v in profile.items() if k not in _NOT_TRIED}
    try:
        return validate({**base, **overrides}, profile["name"])
    except UsageError as exc:
        raise UsageError(f"trial of profile {profile['name']!r} with {describe(overrides)}: {exc.message}",
                         hint=exc.hint) from None


def describe(overrides: Mapping[str, Any]) -> str:
    """``parallel=4, ubatch=256`` (or ``the profile's settings``) for messages."""
    return ", ".join(f"{k}={v}" for k, v in overrides.items()) or "the profile's settings"


def trial_spec(profile: Mapping[str, Any], manifest, model_dir: Path | str, port: int, help_text: str | None,
               trial_id: str, owner: Mapping[str, Any], created: str) -> dict[str, Any]:
    """The container spec of a trial: deploy's (:func:`llama_server.build_spec`, so the
    same argv), under its own name, with restart policy "no" and trial labels only, so
    nothing takes it for a release. Pure."""
    spec = llama_server.build_spec(dict(profile), manifest, model_dir, "trial", port, help_text)
    spec["name"] = f"{NAME_PREFIX}{profile['name']}-{trial_id}"
    spec["restart_policy"] = {"Name": "no"}
    spec["labels"] = {L.ROLE: ROLE, L.TRIAL_OWNER: json.dumps(dict(owner), sort_keys=True),
                      L.TRIAL_CREATED: created, L.TRIAL_PROFILE: str(profile["name"]), L.PORT: str(port)}
    return spec


def owner_of(labels: Mapping[str, str]) -> dict[str, Any]:
    """The owner a trial container's labels name ({} when unreadable: never presumed dead)."""
    try:
        info = json.loads(labels.get(L.TRIAL_OWNER, "{}"))
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def profile_ports(raw: Mapping[str, Any]) -> list[int]:
    """The host ports a merged (``extends`` applied) profile publishes on: its ``port``
    (the default when unset), each ``[[hosts]]`` override, its front door's ports. Pure."""
    ports = [raw.get("port", DEFAULTS["port"])]
    ports += [h.get("port") for h in raw.get("hosts") or [] if isinstance(h, dict)]
    fd = raw.get("frontdoor")
    if isinstance(fd, dict):
        ports += [fd.get("port"), fd.get("admin_port")]
    return sorted({p for p in ports if isinstance(p, int) and not isinstance(p, bool)})


def bench_figures(report: Mapping[str, Any], sla: str, ok: bool, summary: str) -> BenchFigures:
    """The figures a trial keeps from a bench report (:func:`ossctl.loadtest.report.build`). Pure."""
    levels = []
    for lv in report.get("levels") or []:
        lat, tt = lv.get("latency_s") or {}, lv.get("ttft_s") or {}
        levels.append(BenchLevel(users=lv["users"], requests=lv["requests"], errors=lv["errors"],
                                 error_pct=lv["error_pct"], rpm=round(lv["rpm"], 3),
                                 output_tps=round(lv["output_tps"], 3), latency_p50_s=lat.get("p50"),
                                 latency_p95_s=lat.get("p95"), ttft_p50_s=tt.get("p50")))
    return BenchFigures(tuple(levels), sla, ok, summary)


# ------------------------------------------------------------------ the engine side

def reserved_ports(settings, rt) -> dict[int, str]:
    """Ports a trial must not take, with why: every profile's (the search path's, as
    ``ossctl profile list`` shows them; one that cannot be read is skipped) and every
    release container's on ``rt``, running or kept."""
    out: dict[int, str] = {}
    for row in list_profiles(settings):
        try:
            raw, _chain = load_raw(settings, row["name"])
        except OssctlError:
            continue
        for p in profile_ports(raw):
            out.setdefault(p, f"a port of profile {row['name']!r}")
    for c in rt.list({L.MANAGED: "1"}):
        try:
            p = int(c["labels"].get(L.PORT, ""))
        except ValueError:
            continue
        out.setdefault(p, f"the port of release {c['labels'].get(L.RELEASE, '?')} of profile "
                          f"{c['labels'].get(L.PROFILE, '?')!r} ({c['name']})")
    return out


def reap_trials(rt, log: Log = nolog) -> Reaped:
    """Remove trial containers on ``rt`` whose owner is provably gone (same machine and
    boot, its pid gone or now another process; see :func:`releases.holder_is_dead`), and
    those of this process that are not running a trial now (a removal that failed).
    Trials of a live process, of another machine or with an unreadable owner are kept.
    Raises :class:`RemoteError` when the engine cannot be reached."""
    removed, kept = [], []
    me = process_owner()
    for c in rt.list({L.ROLE: ROLE}):
        name, info = c["name"], owner_of(c["labels"])
        mine = info and all(info.get(k) == me[k] for k in ("owner", "pid", "boot_id", "start"))
        if name in _ACTIVE:
            kept.append((name, "running a trial in this process"))
        elif mine or holder_is_dead(info):
            rt.remove(c["id"])
            removed.append(name)
            log(f"trial: removed leftover {name} of this process" if mine else
                f"trial: removed leftover {name} (its owner {info.get('owner', '?')} pid {info.get('pid', '?')} is gone)")
        else:
            where = str(info.get("owner", "")).rpartition("@")[2]
            kept.append((name, f"owner {info.get('owner', '?')} pid {info.get('pid', '?')} is alive"
                         if where == socket.gethostname() and info.get("boot_id") == me["boot_id"]
                         else f"owned on another machine or boot ({info.get('owner', 'unknown owner')})"))
    return Reaped(tuple(removed), tuple(kept))


class Trial:
    """One trial container (see the module docstring). ``rt``: the engine
    (:class:`~ossctl.serve.docker_runtime.DockerRuntime`); ``profile``: resolved;
    ``manifest`` / ``model_dir``: the verified model on the engine's machine, as deploy
    takes them; ``port``: the host port to publish on, None = a free one (local engine
    only); ``timeout``: seconds the gate waits for /health (default: the profile's
    ``health_timeout``). Checks the overrides and the model at construction
    (:class:`UsageError`); entering reaps leftovers, checks the port, starts and gates."""

    def __init__(self, settings, rt, profile: Mapping[str, Any], manifest, model_dir: Path | str, *,
                 port: int | None = None, overrides: Mapping[str, Any] | None = None, timeout: float | None = None,
                 log: Log = nolog):
        self.settings, self.rt, self.manifest, self.log = settings, rt, manifest, log
        self.model_dir = Path(model_dir)
        self.overrides = dict(overrides or {})
        self.profile = trial_profile(profile, self.overrides)
        check_against_model(self.profile, self.model_dir, manifest.first_file)
        self.timeout = float(timeout if timeout is not None else self.profile["health_timeout"])
        if self.timeout <= 0:
            raise UsageError("a trial's gate timeout must be a positive number of seconds")
        self.api_key = read_api_key(self.profile["api_key_file"])
        self.port = port
        self.reach = engine_address(rt.host, dict(settings.env))
        self.id = uuid.uuid4().hex[:8]
        self.name = f"{NAME_PREFIX}{self.profile['name']}-{self.id}"
        self.url = ""
        self.spec: dict[str, Any] = {}
        self.container_id: str | None = None
        self.image_id = ""
        self.build: int | None = None
        self.gate: GateTimes | None = None
        self.props: dict[str, Any] = {}
        self.vram: dict[int, int] | None = None
        self.bench_figures: BenchFigures | None = None
        self.removed = False

    # -- lifecycle
    def __enter__(self) -> Trial:
        if self.container_id is not None or self.removed:
            raise UsageError("a Trial runs once: make a new one for the next try")
        what = f"trial of profile {self.profile['name']!r} with {describe(self.overrides)}"
        _ACTIVE.add(self.name)
        try:
            reap_trials(self.rt, self.log)
            self._start()
            self._gate()
        except BaseException as exc:
            self._remove()
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(f"interrupted: {what} stopped; its container was removed") from None
            if isinstance(exc, DeployError):  # the gate's verdict
                raise TrialError(f"{what} failed: {exc.message}",
                                 hint="its container was removed; `ossctl deploy --profile "
                                      f"{self.profile['name']} --dry-run` shows the command line") from None
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._remove()

    def _choose_port(self) -> int:
        reserved = reserved_ports(self.settings, self.rt)
        host = self.profile["host"]
        if self.port is None:
            if not self.rt.is_local:
                raise UsageError(f"a trial on the remote engine {self.rt.host} needs a port",
                                 hint="pass a port that is free on that host")
            for _ in range(50):
                fam = socket.AF_INET6 if ":" in host else socket.AF_INET
                with socket.socket(fam, socket.SOCK_STREAM) as s:
                    s.bind((host, 0))
                    p = s.getsockname()[1]
                if p not in reserved and not self.rt.host_port_users(p):
                    return p
            raise ConflictError(f"found no free port on {host} for a trial", hint="pass a port")
        port = self.port
        if not 1 <= port <= 65535:
            raise UsageError(f"port {port} is not a TCP port (1-65535)")
        if port in reserved:
            raise UsageError(f"port {port} is {reserved[port]}: a trial never runs there",
                             hint="pick another port, or none (a free one is chosen)")
        return port

    def _start(self) -> None:
        p = self.profile
        self.port = port = self._choose_port()
        users = self.rt.host_port_users(port)
        if users:
            raise ConflictError(f"port {port} is busy: published by container {users[0]}",
                                hint="pick another port for the trial")
        if self.rt.is_local and not port_free_locally(p["host"], port):
            raise ConflictError(f"port {port} on {p['host']} is busy (another process listens on it)",
                                hint=f"pick another port (`ss -ltnp 'sport = :{port}'` shows who holds it)")
        image = self.rt.image_info(p["image"])
        self.image_id = image["id"]
        help_text = image_flags.read_help(self.rt, p["image"], self.settings.cache_dir, image["id"])
        self.build = parse_build(image_flags.read_version(self.rt, p["image"], self.settings.cache_dir, image["id"]))
        spec = trial_spec(p, self.manifest, self.model_dir, port, help_text, self.id, process_owner(), now_iso())
        self.spec, self.url = spec, endpoint_url(self.reach, port)
        self.log(f"trial: starting {spec['name']} from {p['image']} on {self.url} ({describe(self.overrides)})")
        self._t0 = time.monotonic()
        self.container_id = self.rt.run(spec)
        self._t_started = time.monotonic()

    def _gate(self) -> None:
        cid = self.container_id
        facts = health.gate(self.url, self.api_key, self.timeout, lambda: self.rt.find(cid),
                            lambda: self.rt.logs(cid, 20), self.manifest.first_file, self.profile["ctx"],
                            self.profile["parallel"], self.log)
        done = time.monotonic()
        start_s = self._t_started - self._t0
        ready_s = facts["ready_s"]
        self.gate = GateTimes(start_s=round(start_s, 3), ready_s=ready_s,
                              checks_s=round(max(done - self._t_started - ready_s, 0.0), 3),
                              healthy_s=round(start_s + ready_s, 3))
        self.props = facts["props"]

    def _remove(self) -> None:
        """Remove the container (by name: also one whose start was cut off before its id
        came back). A failure is said, not raised: the next trial of this process, or any
        trial once this process is gone, removes it. A Ctrl-C that came while it was
        removed is raised (KeyboardInterrupt) once it is gone: deferred, not swallowed."""
        if self.removed:
            return
        ctrl_c = None
        try:
            with ctrl_c_deferred(lambda: self.log("trial: Ctrl-C: removing the trial container first")) as ctrl_c:
                self.rt.remove(self.name)
            self.removed = True
            self.log(f"trial: removed {self.name}")
        except OssctlError as exc:
            self.log(f"warning: could not remove trial container {self.name} ({exc.message}); "
                     "the next trial removes it")
        finally:
            _ACTIVE.discard(self.name)
        if ctrl_c is not None and ctrl_c.pressed:
            raise KeyboardInterrupt

    def _running(self) -> None:
        if self.gate is None or self.removed:
            raise UsageError("the trial is not running: measure it inside its `with` block")

    # -- measuring
    def measure_vram(self, backend=None) -> dict[int, int] | None:
        """GPU memory held by the trial's processes, bytes per GPU index (NVML per process,
        through ``backend``: the gpu backend interface, default the one the settings
        select, the fake under ``OSSCTL_FAKE_NVML``). None when the trial asks for no GPU
        or runs on a remote engine (unless ``backend`` is given), or NVML is not available."""
        self._running()
        if backend is None and (self.profile["gpus"] == "none" or not self.rt.is_local):
            self.vram = None
            return None
        pids = getattr(self.rt, "pids", None)  # a native runtime (no cgroup to match): by process id
        m = (measure_pids(self.settings, pids(self.container_id), backend=backend) if pids is not None else
             measure_release(self.settings, self.container_id, backend=backend))
        self.vram = dict(m["measured"]) if m is not None else None
        return self.vram

    def bench(self, cfg: Mapping[str, Any] | None = None) -> BenchFigures:
        """A short bench through ossctl's load generator, ``cfg`` shaped as a profile's
        ``[bench]`` table (users, requests or duration, max_tokens, stream, sla; defaults
        as there). An SLA that is not met is a figure (``sla_ok`` False), not an error.
        Raises :class:`UsageError` for a bad ``cfg``, :class:`TrialError` when the bench
        could not run at all."""
        self._running()
        checked = validate_bench_cfg(dict(cfg or {}))
        self.log(f"trial: bench, users {checked['users']}")
        g = run_gate(self.url, self.api_key, dict(cfg or {}), self.settings.env)
        if not g.report:
            raise TrialError(f"the bench of trial {self.name} could not run: {g.summary}",
                             hint="the trial container is removed when its `with` block ends")
        self.bench_figures = bench_figures(g.report, checked["sla"], g.ok, g.summary)
        self.log(f"trial: bench: {g.summary}")
        return self.bench_figures

    def result(self) -> TrialResult:
        """What the trial showed so far (call it after the measurements you want)."""
        if self.gate is None:
            raise UsageError("the trial has not passed its gate: nothing to report")
        return TrialResult(
            profile=self.profile["name"], overrides=dict(self.overrides), container=self.name,
            image=self.profile["image"], image_id=self.image_id, build=self.build, port=int(self.port),
            endpoint=self.url, argv=tuple(self.spec["command"]), docker_run=llama_server.docker_run_line(self.spec),
            gate=self.gate, props=dict(self.props), vram=self.vram, bench=self.bench_figures)


def run_trial(settings, rt, profile: Mapping[str, Any], manifest, model_dir: Path | str, *,
              port: int | None = None, overrides: Mapping[str, Any] | None = None,
              bench: Mapping[str, Any] | None = None, timeout: float | None = None, nvml_backend=None,
              log: Log = nolog) -> TrialResult:
    """Start, gate, measure (VRAM; a bench when ``bench`` is given, a ``[bench]``-shaped
    table) and remove one trial; see :class:`Trial`. Raises what it raises;
    :class:`Interrupted` on Ctrl-C (the container removed)."""
    t = Trial(settings, rt, profile, manifest, model_dir, port=port, overrides=overrides, timeout=timeout, log=log)
    try:
        with t:
            t.measure_vram(nvml_backend)
            if bench is not None:
                t.bench(bench)
            return t.result()
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: trial {t.name} stopped; its container was removed") from None
