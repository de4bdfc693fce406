"""``vram watch``: the sampling loop, alert state, and what one sample looks like as a
JSON line or as table rows. Nothing here prints; the CLI writes what these return.

JSON line (one per sample; keys pinned by tests/unit/test_gpu_watch.py)::

    {"time": "2026-01-01T00:00:00Z", "driver_version": "550.54.15", "error": null,
     "gpus": [{"index", "name", "uuid", "memory_total", "memory_used", "memory_free",
               "memory_used_pct", "utilization_gpu", "utilization_memory", "temperature_c",
               "power_w", "power_limit_w", "error", "alert",
               "processes": [{"pid", "name", "type", "used_bytes", "container_id",
                              "release", "profile"}]}],
     "alerts": [{"gpu", "state": "above" | "recovered", "memory_used", "threshold_bytes"}]}

Memory in bytes, utilization in %, temperature in °C, power in W; unsupported fields null.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ossctl.errors import UsageError
from ossctl.gpu.nvml import GpuUnavailable, Snapshot
from ossctl.units import parse_size

SPARK = "▁▂▃▄▅▆▇█"
SPARK_ASCII = "_.-:=+*#"
HISTORY = 30  # samples kept for the sparkline
GPU_HEADERS = ("GPU", "NAME", "MEMORY USED", "USE%", "UTIL", "TEMP", "POWER", "HISTORY")
GPU_ALIGN = "llrrrrrl"
PROC_HEADERS = ("GPU", "PID", "PROCESS", "MEMORY", "CONTAINER", "RELEASE", "PROFILE")
PROC_ALIGN = "rrlrlll"


# --- the options of `vram watch`: --alert-above and --gpu

@dataclass(frozen=True)
class Threshold:
    """An alert level: bytes used, or a percentage of a GPU's memory."""

    bytes: int | None = None
    percent: float | None = None

    def limit(self, total: int | None) -> int | None:
        """The threshold in bytes for a GPU of ``total`` bytes (None when unknown)."""
        if self.bytes is not None:
            return self.bytes
        if total is None or self.percent is None:
            return None
        return int(total * self.percent / 100)

    def __str__(self) -> str:
        if self.percent is not None:
            return f"{self.percent:g}%"
        return f"{self.bytes / 1024 ** 3:.1f} GiB"


def parse_threshold(text: str) -> Threshold:
    """``"90%"`` or a size (``"95GiB"``)."""
    t = (text or "").strip()
    if t.endswith("%"):
        try:
            pct = float(t[:-1])
        except ValueError:
            pct = -1.0
        if not 0 < pct <= 100:
            raise UsageError(f"malformed --alert-above {text!r}", hint="a percentage is between 0 and 100, e.g. 90%")
        return Threshold(percent=pct)
    try:
        return Threshold(bytes=parse_size(t, "--alert-above"))
    except UsageError:
        raise UsageError(f"malformed --alert-above {text!r}", hint="use a size like 95GiB or a percentage like 90%") from None


def parse_gpu_ids(text: str) -> list[int]:
    """``"0,2"`` → [0, 2]; ``"all"`` → [] (meaning every GPU)."""
    t = (text or "").strip()
    if t.lower() == "all":
        return []
    try:
        ids = [int(x) for x in t.split(",")]
    except ValueError:
        ids = []
    if not ids or any(i < 0 for i in ids):
        raise UsageError(f"malformed --gpu {text!r}", hint="list GPU indexes like 0 or 0,2 (see `ossctl vram watch --once`)")
    return sorted(set(ids))


@dataclass
class Alert:
    gpu: int
    state: str  # "above" | "recovered"
    memory_used: int
    threshold_bytes: int

    def message(self) -> str:
        word = "above" if self.state == "above" else "back under"
        return (f"GPU {self.gpu}: memory used {_gib(self.memory_used)} is {word} the alert threshold "
                f"{_gib(self.threshold_bytes)}")


@dataclass
class WatchState:
    """History and alert edges across samples. Alerts fire when a GPU crosses the
    threshold (not on every sample above it) and once more when it drops back under."""

    threshold: Threshold | None = None
    history: dict[int, deque] = field(default_factory=dict)
    above: dict[int, bool] = field(default_factory=dict)
    failing: dict[int, str | None] = field(default_factory=dict)

    def update(self, snap: Snapshot) -> tuple[list[Alert], list[str]]:
        """Record one sample. Returns (alert edges, notes about GPUs that started or
        stopped failing)."""
        alerts, notes = [], []
        for d in snap.devices:
            h = self.history.setdefault(d.index, deque(maxlen=HISTORY))
            h.append(d.used_fraction)
            was = self.failing.get(d.index)
            if d.error and not was:
                notes.append(f"GPU {d.index}: NVML error: {d.error} (still watching the others)")
            elif was and not d.error:
                notes.append(f"GPU {d.index}: answering again")
            self.failing[d.index] = d.error
            limit = self.threshold.limit(d.memory_total) if self.threshold else None
            if limit is None or d.memory_used is None:
                continue
            now_above = d.memory_used > limit
            if now_above != self.above.get(d.index, False):
                alerts.append(Alert(d.index, "above" if now_above else "recovered", d.memory_used, limit))
            self.above[d.index] = now_above
        return alerts, notes

    def sparkline(self, index: int, ascii_only: bool = False) -> str:
        ramp = SPARK_ASCII if ascii_only else SPARK
        out = []
        for f in self.history.get(index, ()):
            out.append(" " if f is None else ramp[min(len(ramp) - 1, int(f * len(ramp)))])
        return "".join(out)


def iso_time(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(snap: Snapshot, alerts: list[Alert], state: WatchState | None = None) -> dict[str, Any]:
    """The JSON-line object of one sample."""
    gpus = []
    for d in snap.devices:
        gpus.append({
            "index": d.index, "name": d.name, "uuid": d.uuid,
            "memory_total": d.memory_total, "memory_used": d.memory_used, "memory_free": d.memory_free,
            "memory_used_pct": None if d.used_fraction is None else round(d.used_fraction * 100, 1),
            "utilization_gpu": d.utilization_gpu, "utilization_memory": d.utilization_memory,
            "temperature_c": d.temperature_c, "power_w": d.power_w, "power_limit_w": d.power_limit_w,
            "error": d.error, "alert": bool(state and state.above.get(d.index)),
            "processes": [{"pid": p.pid, "name": p.name, "type": p.type, "used_bytes": p.used_bytes,
                           "container_id": p.container_id, "release": p.release, "profile": p.profile}
                          for p in d.processes],
        })
    return {"time": iso_time(snap.time), "driver_version": snap.driver_version, "error": None, "gpus": gpus,
            "alerts": [{"gpu": a.gpu, "state": a.state, "memory_used": a.memory_used,
                        "threshold_bytes": a.threshold_bytes} for a in alerts]}


def error_record(t: float, message: str) -> dict[str, Any]:
    """A sample where NVML as a whole failed (mid-watch); the watch goes on."""
    return {"time": iso_time(t), "driver_version": None, "error": message, "gpus": [], "alerts": []}


# --- table -----------------------------------------------------------------------------

def _gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1024 ** 3:.1f} GiB"


def _na(v: Any, fmt: str = "{}") -> str:
    return "n/a" if v is None else fmt.format(v)


def gpu_rows(snap: Snapshot, state: WatchState, ascii_only: bool = False) -> list[list[str]]:
    rows = []
    for d in snap.devices:
        if d.error and d.memory_used is None:
            rows.append([str(d.index), d.name or "n/a", f"error: {d.error}", "", "", "", "", state.sparkline(d.index, ascii_only)])
            continue
        mem = "n/a" if d.memory_used is None else f"{d.memory_used / 1024 ** 3:.1f} / {_gib(d.memory_total)}"
        pct = "n/a" if d.used_fraction is None else f"{d.used_fraction * 100:.0f}%"
        if state.above.get(d.index):
            pct += "!"
        power = "n/a" if d.power_w is None else (
            f"{d.power_w:.0f} W" if d.power_limit_w is None else f"{d.power_w:.0f}/{d.power_limit_w:.0f} W")
        rows.append([str(d.index), (d.name or "n/a") + (f" (error: {d.error})" if d.error else ""), mem, pct,
                     _na(d.utilization_gpu, "{}%"), _na(d.temperature_c, "{}C"), power,
                     state.sparkline(d.index, ascii_only)])
    return rows


def process_rows(snap: Snapshot) -> list[list[str]]:
    rows = []
    for d in snap.devices:
        for p in d.processes:
            rows.append([str(d.index), str(p.pid), p.name or "?", _gib(p.used_bytes), p.container_id or "-",
                         p.release or "-", p.profile or "-"])
    return rows


def header_line(snap: Snapshot, threshold: Threshold | None) -> str:
    parts = [iso_time(snap.time), f"driver {snap.driver_version or 'n/a'}"]
    if threshold is not None:
        parts.append(f"alert above {threshold}")
    return "  ".join(parts)


def repaint(text: str, previous_lines: int) -> str:
    """Escape sequences that redraw ``text`` over the previous frame without clearing the
    screen first (no flicker): cursor up to the frame's start, each line followed by
    erase-to-end-of-line, then erase below (when the new frame is shorter)."""
    lines = text.split("\n")
    up = f"\x1b[{previous_lines}F" if previous_lines else ""
    return up + "".join(line + "\x1b[K\n" for line in lines) + "\x1b[J"


def clip(text: str, columns: int, rows: int) -> str:
    """Cut a frame to the terminal, so that wrapped or scrolled lines cannot break the
    cursor arithmetic of :func:`repaint`."""
    lines = text.split("\n")
    if rows > 0 and len(lines) > rows:
        lines = lines[:max(rows - 1, 0)] + [f"... {len(lines) - rows + 1} more lines (enlarge the terminal)"]
    return "\n".join(line[:columns] if columns > 0 else line for line in lines)


HIDE_CURSOR = "\x1b[?25l"
SHOW_CURSOR = "\x1b[?25h"


# --- loop ------------------------------------------------------------------------------

def samples(take: Callable[[], Snapshot], interval: float, count: int | None,
            sleep: Callable[[float], None] | None = None,
            clock: Callable[[], float] | None = None) -> Iterator[Snapshot | GpuUnavailable]:
    """Yield a snapshot every ``interval`` seconds (on a fixed cadence, so a slow sample
    does not make the next one drift), ``count`` times or forever. A failure of NVML as
    a whole after the first sample is yielded as the exception and the loop goes on; at
    the first sample it is raised."""
    sleep = sleep or time.sleep
    clock = clock or time.monotonic
    start = clock()
    k = 0
    while count is None or k < count:
        if k:
            delay = start + k * interval - clock()
            if delay > 0:
                sleep(delay)
            else:  # fell behind (suspended, slow NVML): restart the cadence from now
                start = clock() - k * interval
        try:
            yield take()
        except GpuUnavailable as exc:
            if k == 0:
                raise
            yield exc
        k += 1
