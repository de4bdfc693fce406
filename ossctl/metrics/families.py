"""PURE: what one scrape knows (an NVML snapshot, the releases, llama-server's metrics and
slots, bench summaries, per-source errors) → metric families as plain data.

Units follow Prometheus conventions: bytes, seconds, watts, degrees Celsius, percent
where NVML reports percent, ratios for error shares. Label values never carry secrets:
release labels are ``profile, release, model_id, composite_sha256`` (first 12 hex),
``ctx`` and ``host`` (the engine's host name, without user or port).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

PREFIX = "ossctl_"
RELEASE_LABELS = ("profile", "release", "model_id", "composite_sha256", "ctx", "host")
GPU_LABELS = ("gpu", "uuid", "name", "host")
SHORT_SHA = 12


@dataclass
class Family:
    """One metric family. ``samples`` are ``(sample name, labels, value)``; for a counter
    the family name has no ``_total`` and its samples do."""

    name: str
    type: str  # "gauge" | "counter" | "untyped" | ... (as in the text format)
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def add(self, labels: dict[str, str], value: float | int | None, suffix: str = "") -> None:
        if value is not None:
            self.samples.append((self.name + suffix, labels, float(value)))


class Families:
    """Families by name, in first-seen order; samples of the same family from several
    sources (e.g. every release's llama-server) merge into one family."""

    def __init__(self) -> None:
        self._by_name: dict[str, Family] = {}

    def get(self, name: str, type_: str, help_: str) -> Family:
        f = self._by_name.get(name)
        if f is None:
            f = self._by_name[name] = Family(name, type_, help_)
        return f

    def gauge(self, name: str, help_: str) -> Family:
        return self.get(PREFIX + name, "gauge", help_)

    def __iter__(self):
        return iter(f for f in self._by_name.values() if f.samples)


def host_label(docker_host: str | None, local_name: str) -> str:
    """The host a release runs on, for the ``host`` label: the local machine for a unix
    socket / npipe, else the URL's host name (no user, no port)."""
    if not docker_host:
        return local_name
    u = urlsplit(docker_host)
    if u.scheme in ("unix", "npipe", "") or not u.hostname:
        return local_name
    return u.hostname


def release_labels(rel: dict[str, Any], host: str) -> dict[str, str]:
    """The label set of one release (keys of :data:`RELEASE_LABELS`) from a
    ``service.status`` entry."""
    return {"profile": str(rel.get("profile") or ""), "release": str(rel.get("release") or ""),
            "model_id": str(rel.get("model_id") or ""),
            "composite_sha256": str(rel.get("composite_sha256") or "")[:SHORT_SHA],
            "ctx": "" if rel.get("ctx") is None else str(rel["ctx"]), "host": host}


def gpu_families(out: Families, snap, host: str, rel_labels: dict[str, dict[str, str]]) -> None:
    """Per GPU memory / utilisation / temperature / power, and GPU memory per release.
    ``snap`` is a :class:`~ossctl.gpu.nvml.Snapshot`; ``rel_labels`` maps a release's
    12-char container id to its labels (processes of other containers that the NVML
    backend labelled still count per release, with the labels it knows)."""
    fams = [
        ("gpu_memory_total_bytes", "GPU memory in total (bytes).", "memory_total"),
        ("gpu_memory_used_bytes", "GPU memory in use (bytes).", "memory_used"),
        ("gpu_memory_free_bytes", "GPU memory free (bytes).", "memory_free"),
        ("gpu_utilization_percent", "GPU compute utilisation over the last sample period (%).", "utilization_gpu"),
        ("gpu_memory_utilization_percent", "GPU memory-controller utilisation (%).", "utilization_memory"),
        ("gpu_temperature_celsius", "GPU temperature (degrees Celsius).", "temperature_c"),
        ("gpu_power_watts", "GPU power draw (W).", "power_w"),
        ("gpu_power_limit_watts", "GPU enforced power limit (W).", "power_limit_w"),
    ]
    up = out.gauge("gpu_up", "1 when every NVML query of this GPU answered, 0 when one failed.")
    for name, help_, _attr in fams:
        out.gauge(name, help_)
    per_release = out.gauge("release_gpu_memory_used_bytes",
                            "GPU memory held by the processes of a release, per GPU (bytes, NVML).")
    other = out.gauge("gpu_other_memory_used_bytes",
                      "GPU memory held by processes that belong to no ossctl release (bytes).")
    for d in snap.devices:
        labels = {"gpu": str(d.index), "uuid": d.uuid or "", "name": d.name or "", "host": host}
        up.add(labels, 0 if d.error else 1)
        for name, help_, attr in fams:
            out.gauge(name, help_).add(labels, getattr(d, attr))
        sums: dict[tuple, int] = {}
        stray = 0
        for p in d.processes:
            if p.used_bytes is None:
                continue
            lab = rel_labels.get(p.container_id or "")
            if lab is None and p.release:
                lab = {**{k: "" for k in RELEASE_LABELS}, "profile": p.profile or "", "release": p.release,
                       "host": host}
            if lab is None:
                stray += p.used_bytes
                continue
            key = tuple(sorted(lab.items()))
            sums[key] = sums.get(key, 0) + p.used_bytes
        for key, v in sums.items():
            per_release.add({**dict(key), "gpu": str(d.index)}, v)
        other.add({"gpu": str(d.index), "host": host}, stray)


def plan_families(out: Families, labels: dict[str, str], planned: dict[int, int]) -> None:
    """The VRAM plan's predicted bytes per GPU for one release (from ``gpu.fit``)."""
    f = out.gauge("release_gpu_memory_planned_bytes",
                  "GPU memory the VRAM plan predicts for a release, per GPU (bytes, `ossctl vram plan`).")
    for gpu, n in sorted(planned.items()):
        f.add({**labels, "gpu": str(gpu)}, n)


def release_families(out: Families, labels: dict[str, str], rel: dict[str, Any]) -> None:
    out.gauge("release_up", "1 when the release's container runs and /health answers ok.").add(
        labels, 1 if rel.get("health") == "ok" else 0)


def slots_counts(payload: Any) -> tuple[int, int] | None:
    """``(busy, total)`` from llama-server's ``/slots`` JSON (``is_processing`` in current
    builds, ``state`` != 0 in older ones); None for an unexpected shape."""
    if not isinstance(payload, list):
        return None
    busy = 0
    for s in payload:
        if not isinstance(s, dict):
            return None
        if "is_processing" in s:
            busy += bool(s["is_processing"])
        else:
            busy += bool(s.get("state", 0))
    return busy, len(payload)


def slot_families(out: Families, labels: dict[str, str], busy: int, total: int) -> None:
    out.gauge("release_slots_busy", "llama-server slots processing a request (/slots).").add(labels, busy)
    out.gauge("release_slots_total", "llama-server slots (/slots).").add(labels, total)


def relabel(out: Families, parsed: Iterable[Family], labels: dict[str, str]) -> None:
    """llama-server's own families (``llamacpp:*``), each sample given the release labels
    (the release's labels win over a same-named label of the server)."""
    for f in parsed:
        target = out.get(f.name, f.type, f.help)
        for name, lab, value in f.samples:
            target.samples.append((name, {**lab, **labels}, value))


def bench_families(out: Families, summaries: dict[str, dict]) -> None:
    """The last ``ossctl bench --profile`` result per profile (see
    :func:`ossctl.loadtest.report.last_summary`), one series per concurrency level."""
    lat = out.gauge("bench_latency_seconds", "Last bench: request latency quantile per concurrency level (s).")
    tps = out.gauge("bench_output_tokens_per_second", "Last bench: output tokens/s per request, mean, per level.")
    err = out.gauge("bench_error_ratio", "Last bench: share of requests that failed, per level (0-1).")
    lvl_ok = out.gauge("bench_level_sla_pass", "Last bench: 1 when the level met the SLA, 0 when it failed.")
    sla = out.gauge("bench_sla_pass", "Last bench: 1 when every level met the SLA, 0 when one failed.")
    ts = out.gauge("bench_timestamp_seconds", "Last bench: when it finished (Unix time).")
    for profile, s in sorted(summaries.items()):
        base = {"profile": profile, "release": s.get("release") or ""}
        ts.add(base, s.get("time"))
        if s.get("sla") is not None:
            sla.add({**base, "sla": s["sla"]["spec"]}, 1 if s["sla"]["ok"] else 0)
        for lv in s.get("levels", []):
            lab = {**base, "users": str(lv["users"])}
            lat.add({**lab, "quantile": "0.5"}, lv.get("latency_p50_s"))
            lat.add({**lab, "quantile": "0.95"}, lv.get("latency_p95_s"))
            tps.add(lab, lv.get("output_tps"))
            err.add(lab, None if lv.get("error_pct") is None else lv["error_pct"] / 100.0)
            if lv.get("sla_ok") is not None:
                lvl_ok.add(lab, 1 if lv["sla_ok"] else 0)


def exporter_families(out: Families, duration_s: float, sources: list[dict[str, Any]],
                      error_counts: dict[str, int]) -> None:
    """The exporter's own health: how long collecting took, and per source whether it
    answered this time (``source``: nvml, docker, llama_metrics, llama_slots, profile,
    plan, bench; ``target``: the profile, or empty) and how often it failed so far."""
    out.gauge("exporter_scrape_duration_seconds", "Time this scrape spent collecting (s).").add({}, duration_s)
    up = out.gauge("exporter_source_up", "1 when the source answered this scrape, 0 when it failed.")
    for s in sources:
        up.add({"source": s["source"], "target": s["target"]}, 1 if s["error"] is None else 0)
    total = out.get(PREFIX + "exporter_source_errors", "counter", "Failures of each source since the exporter started.")
    for src, n in sorted(error_counts.items()):
        total.add({"source": src}, n, "_total")
