"""GPU state through NVML: the ONLY importer of ``pynvml`` (package ``nvidia-ml-py``).

:func:`snapshot` takes one :class:`NvmlBackend` (the real :class:`PynvmlBackend`, or the
fake in :mod:`ossctl.gpu.fake`) and returns every GPU with its memory (bytes),
utilization (%), temperature (°C), power (W) and the processes holding GPU memory, mapped
PID → ``/proc/PID/cgroup`` → container id → the ``ossctl.release`` / ``ossctl.profile``
labels when a ``container_labels`` callable is given.

Rules: a field the GPU does not support is ``None`` (shown as n/a); a GPU whose queries
fail is returned with ``error`` set and does not hide the others; no driver / no GPU
raises :class:`GpuUnavailable` with a hint.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ossctl import labels as L
from ossctl.errors import UsageError
from ossctl.gpu.backend import GpuUnavailable, NotSupported, NvmlBackend, NvmlError
from ossctl.gpu.fake import FakeNvml

_CONTAINER_RE = re.compile(r"(?<![0-9a-f])([0-9a-f]{64})(?![0-9a-f])")


@dataclass
class GpuProcess:
    pid: int
    used_bytes: int | None
    type: str  # "compute" | "graphics" | "compute+graphics"
    name: str | None = None
    container_id: str | None = None  # 12-char short id
    release: str | None = None
    profile: str | None = None


@dataclass
class GpuDevice:
    index: int
    name: str | None = None
    uuid: str | None = None
    memory_total: int | None = None  # bytes
    memory_used: int | None = None
    memory_free: int | None = None
    utilization_gpu: int | None = None  # %
    utilization_memory: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    error: str | None = None
    processes: list[GpuProcess] = field(default_factory=list)

    @property
    def used_fraction(self) -> float | None:
        if self.memory_used is None or not self.memory_total:
            return None
        return self.memory_used / self.memory_total


@dataclass
class Snapshot:
    time: float  # epoch seconds
    driver_version: str | None
    devices: list[GpuDevice]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the real adapter --------------------------------------------------------------


class PynvmlBackend:
    """NVML through ``pynvml``; imported on :meth:`init` only."""

    def __init__(self) -> None:
        self._nv: Any = None

    def init(self) -> None:
        try:
            import pynvml
        except ImportError:
            raise GpuUnavailable("the NVML Python bindings are not installed",
                                 hint="pip install nvidia-ml-py") from None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise GpuUnavailable(f"NVML is not available: {_err_text(exc)}",
                                 hint="install the NVIDIA driver (nvidia-smi must work), or run on a GPU host") from None
        self._nv = pynvml

    def shutdown(self) -> None:
        if self._nv is not None:
            try:
                self._nv.nvmlShutdown()
            except self._nv.NVMLError:
                pass
            self._nv = None

    def _call(self, fn: str, *args: Any) -> Any:
        nv = self._nv
        try:
            return getattr(nv, fn)(*args)
        except nv.NVMLError as exc:
            if getattr(exc, "value", None) == nv.NVML_ERROR_NOT_SUPPORTED:
                raise NotSupported(fn) from None
            raise NvmlError(_err_text(exc)) from None

    def driver_version(self) -> str | None:
        return _text(self._call("nvmlSystemGetDriverVersion"))

    def device_count(self) -> int:
        return int(self._call("nvmlDeviceGetCount"))

    def handle(self, index: int) -> Any:
        return self._call("nvmlDeviceGetHandleByIndex", index)

    def name(self, h: Any) -> str:
        return _text(self._call("nvmlDeviceGetName", h))

    def uuid(self, h: Any) -> str:
        return _text(self._call("nvmlDeviceGetUUID", h))

    def memory(self, h: Any) -> tuple[int, int, int]:
        m = self._call("nvmlDeviceGetMemoryInfo", h)
        return int(m.total), int(m.used), int(m.free)

    def utilization(self, h: Any) -> tuple[int, int]:
        u = self._call("nvmlDeviceGetUtilizationRates", h)
        return int(u.gpu), int(u.memory)

    def temperature(self, h: Any) -> int:
        return int(self._call("nvmlDeviceGetTemperature", h, self._nv.NVML_TEMPERATURE_GPU))

    def power(self, h: Any) -> float:
        return self._call("nvmlDeviceGetPowerUsage", h) / 1000.0  # mW -> W

    def power_limit(self, h: Any) -> float:
        return self._call("nvmlDeviceGetEnforcedPowerLimit", h) / 1000.0

    def processes(self, h: Any) -> list[tuple[int, int | None, str]]:
        out: list[tuple[int, int | None, str]] = []
        for fn, kind in (("nvmlDeviceGetComputeRunningProcesses", "compute"),
                         ("nvmlDeviceGetGraphicsRunningProcesses", "graphics")):
            try:
                procs = self._call(fn, h)
            except NotSupported:
                continue
            for p in procs:
                used = getattr(p, "usedGpuMemory", None)
                out.append((int(p.pid), int(used) if used is not None else None, kind))
        return out


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _err_text(exc: Exception) -> str:
    try:
        return str(exc)
    except Exception:  # pynvml's __str__ can itself fail on odd codes
        return type(exc).__name__


def open_backend(env: Mapping[str, str] | None = None) -> NvmlBackend:
    """The backend to use: the fake when ``OSSCTL_FAKE_NVML`` names a scenario or a JSON
    file (tests, benches, demos), else real NVML. Not yet initialised."""
    env = os.environ if env is None else env
    fake = env.get("OSSCTL_FAKE_NVML")
    if fake:
        return FakeNvml.load(fake)
    return PynvmlBackend()


class Session:
    """One NVML session: ``with nvml.Session(env) as backend: nvml.snapshot(backend)``.
    Entering initialises the backend (raises :class:`GpuUnavailable`: no driver, no
    library, no GPU), leaving shuts it down, whatever happened; a query that fails inside
    the block outside :func:`snapshot` (which keeps a failing GPU to itself) leaves it as
    :class:`GpuUnavailable`. The backend is chosen when the session is made, not when it
    is entered, so an unknown ``OSSCTL_FAKE_NVML`` raises :class:`UsageError` there."""

    def __init__(self, env: Mapping[str, str] | None = None, backend: NvmlBackend | None = None):
        self.backend = backend if backend is not None else open_backend(env)

    def __enter__(self) -> NvmlBackend:
        self.backend.init()
        return self.backend

    def __exit__(self, exc_type, exc, tb) -> None:
        self.backend.shutdown()
        if isinstance(exc, (NvmlError, NotSupported)):
            raise GpuUnavailable(f"NVML query failed: {exc or type(exc).__name__}", hint="check `nvidia-smi`") from None


# --- snapshot ----------------------------------------------------------------------


def read_proc(pid: int, proc_root: Path = Path("/proc")) -> tuple[str | None, str | None]:
    """``(comm, cgroup text)`` of a process, ``None`` for what cannot be read (the
    process exited, or lives in another PID namespace)."""
    out: list[str | None] = []
    for name in ("comm", "cgroup"):
        try:
            out.append((proc_root / str(pid) / name).read_text(encoding="utf-8", errors="replace").strip())
        except OSError:
            out.append(None)
    return out[0], out[1]


def container_id_from_cgroup(text: str | None) -> str | None:
    """The 64-hex container id in a ``/proc/PID/cgroup`` text (docker, containerd,
    podman, cgroup v1 and v2 layouts), or ``None`` for a host process."""
    if not text:
        return None
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        m = _CONTAINER_RE.findall(path)
        if m:
            return m[-1]
    return None


def snapshot(backend: NvmlBackend, gpus: list[int] | None = None,
             container_labels: Callable[[str], Mapping[str, str] | None] | None = None,
             proc_reader: Callable[[int], tuple[str | None, str | None]] | None = None) -> Snapshot:
    """One sample of every GPU (or only the indexes in ``gpus``; empty or None = all)
    from an initialised backend. ``container_labels(container_id)`` returns a container's labels (optional;
    lookups are cached per call). Raises :class:`GpuUnavailable` when the device count
    cannot be read or is zero, :class:`~ossctl.errors.UsageError` for an unknown index."""
    try:
        count = backend.device_count()
    except (NvmlError, NotSupported) as exc:
        raise GpuUnavailable(f"cannot count GPUs: {exc}", hint="check `nvidia-smi`") from None
    if count == 0:
        raise GpuUnavailable("NVML reports no GPU", hint="check `nvidia-smi`; inside a container, pass --gpus")
    if gpus:
        unknown = [i for i in gpus if not 0 <= i < count]
        if unknown:
            raise UsageError(f"unknown GPU id {', '.join(map(str, unknown))}: this host has GPU "
                             + (f"0-{count - 1}" if count > 1 else "0"),
                             hint="pick indexes from `ossctl vram watch --once`")
    try:
        driver = backend.driver_version()
    except (NvmlError, NotSupported):
        driver = None
    reader = proc_reader or getattr(backend, "read_proc", None) or read_proc
    labels_cache: dict[str, Mapping[str, str] | None] = {}
    devices = []
    for i in range(count):
        if gpus and i not in gpus:
            continue
        devices.append(_device(backend, i, reader, container_labels, labels_cache))
    clock = getattr(backend, "now", None) or time.time  # the fake's clock is scripted
    return Snapshot(clock(), driver, devices)


def _device(backend: NvmlBackend, i: int, reader, container_labels, labels_cache) -> GpuDevice:
    d = GpuDevice(index=i)
    try:
        h = backend.handle(i)
    except (NvmlError, NotSupported) as exc:
        d.error = str(exc) or "unavailable"
        return d
    errors: list[str] = []

    def get(fn: Callable[[Any], Any]) -> Any:
        try:
            return fn(h)
        except NotSupported:
            return None
        except NvmlError as exc:
            errors.append(str(exc))
            return None

    d.name = get(backend.name)
    d.uuid = get(backend.uuid)
    mem = get(backend.memory)
    if mem is not None:
        d.memory_total, d.memory_used, d.memory_free = mem
    util = get(backend.utilization)
    if util is not None:
        d.utilization_gpu, d.utilization_memory = util
    d.temperature_c = get(backend.temperature)
    d.power_w = get(backend.power)
    d.power_limit_w = get(backend.power_limit)
    procs = get(backend.processes) or []
    merged: dict[int, GpuProcess] = {}
    for pid, used, kind in procs:
        if pid in merged:  # a process in both lists: count its memory once
            p = merged[pid]
            p.type = "compute+graphics" if p.type != kind else p.type
            if used is not None:
                p.used_bytes = max(p.used_bytes or 0, used)
            continue
        comm, cgroup = reader(pid)
        p = GpuProcess(pid=pid, used_bytes=used, type=kind, name=comm)
        cid = container_id_from_cgroup(cgroup)
        if cid:
            p.container_id = cid[:12]
            if container_labels is not None:
                if cid not in labels_cache:
                    try:
                        labels_cache[cid] = container_labels(cid)
                    except Exception:  # labels are a nicety; the process row still shows
                        labels_cache[cid] = None
                labels = labels_cache[cid] or {}
                p.release = labels.get(L.RELEASE)
                p.profile = labels.get(L.PROFILE)
        merged[pid] = p
    d.processes = sorted(merged.values(), key=lambda p: (-(p.used_bytes or 0), p.pid))
    if errors:
        d.error = errors[0]
    return d
