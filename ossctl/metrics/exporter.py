"""One scrape: ask every source, each under a deadline, and return what answered plus one
error entry per source that did not. A scrape never fails as a whole: NVML gone, the
Docker engine down, a llama-server down or stuck each become ``ossctl_exporter_source_up
{source=...} 0`` next to everything else.

Sources, in one scrape:
- releases: ``ossctl.ops.service.status`` (the engine's view, with /health), in a
  worker thread, waited for ``status_timeout`` seconds; when it is late, the releases it
  returned last are shown (with the docker source marked failing);
- NVML: one :func:`ossctl.gpu.nvml.snapshot` (the session stays open between scrapes and
  is reopened after a failure);
- per release: llama-server ``/metrics`` and ``/slots``, all fetched at once, waited for
  ``fetch_timeout`` seconds in total; a fetch still running from an earlier scrape is not
  started again, so a stuck server never piles up threads;
- the VRAM plan of each release (``gpu.fit``), computed once per release;
- the last bench result per profile (``ossctl bench --profile`` keeps it in the cache).
"""

from __future__ import annotations

import datetime as _dt
import json
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from ossctl.artifacts.manifest import locate_model_dir
from ossctl.errors import OssctlError
from ossctl.gpu import fit, nvml
from ossctl.loadtest.report import load_last
from ossctl.metrics import families as F
from ossctl.metrics.promclient import parse_text
from ossctl.ops import service
from ossctl.serve.apikey import read_api_key
from ossctl.serve.docker_runtime import docker_host
from ossctl.serve.profiles import resolve_profile

SOURCES = ("nvml", "docker", "llama_metrics", "llama_slots", "profile", "plan", "bench")
JSON_KEYS = ("time", "duration_s", "sources", "metrics")
_UNSUPPORTED = (404, 501)  # built without /slots, or started without --metrics


@dataclass
class Scrape:
    time: float  # epoch seconds
    duration_s: float
    families: list[F.Family]
    sources: list[dict[str, Any]]  # {"source", "target", "error"}

    def to_dict(self) -> dict[str, Any]:
        """The ``metrics dump --json`` shape (keys: :data:`JSON_KEYS`)."""
        return {
            "time": _dt.datetime.fromtimestamp(self.time, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "duration_s": round(self.duration_s, 6),
            "sources": [{"source": s["source"], "target": s["target"], "ok": s["error"] is None,
                         "error": s["error"]} for s in self.sources],
            "metrics": [{"name": name, "type": f.type, "labels": labels, "value": value}
                        for f in self.families for name, labels, value in f.samples],
        }


def _spawn(fn: Callable[[], Any]) -> Future:
    """Run ``fn`` in a daemon thread (a stuck source must not hold the process at exit)."""
    fut: Future = Future()

    def run() -> None:
        try:
            fut.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting scrape
            fut.set_exception(exc)

    threading.Thread(target=run, name="ossctl-metrics", daemon=True).start()
    return fut


def _wait(fut: Future, until: float) -> tuple[Any, str | None]:
    """(result, None) or (None, error text) by the monotonic deadline ``until``."""
    try:
        return fut.result(timeout=max(0.0, until - time.monotonic())), None
    except TimeoutError:
        return None, "no answer in time"
    except OssctlError as exc:
        return None, exc.message
    except Exception as exc:  # noqa: BLE001 - any source failure becomes an error series
        return None, f"{type(exc).__name__}: {exc}"


class Exporter:
    """Collects one :class:`Scrape` per :meth:`scrape` call (thread-safe: concurrent
    scrapes run one after the other). ``releases`` and ``backend`` replace the Docker and
    NVML sources (benches); ``log`` receives one line when a source starts or stops
    failing."""

    def __init__(self, settings, profile: str | None = None, docker_host_flag: str | None = None, *,
                 releases: Callable[[], dict[str, Any]] | None = None, backend=None,
                 status_timeout: float = 5.0, fetch_timeout: float = 2.0,
                 log: Callable[[str], None] | None = None, hostname: str | None = None):
        self.settings = settings
        self.profile = profile
        self.status_timeout = status_timeout
        self.fetch_timeout = fetch_timeout
        self._releases = releases or (lambda: _status(settings, profile, docker_host_flag))
        self._docker_host = None if releases else _docker_host(settings, docker_host_flag)
        self._backend = backend
        self._nvml: ExitStack | None = None  # the NVML session, open from one scrape to the next
        self._log = log or (lambda _m: None)
        self._host = hostname or socket.gethostname()
        self._lock = threading.Lock()
        self._inflight: dict[str, Future] = {}
        self._last_status: tuple[float, dict[str, Any]] | None = None
        self._info: dict[tuple[str, str], dict[str, Any]] = {}
        self._plans: dict[tuple, tuple[dict[int, int] | None, str | None]] = {}
        self._failing: dict[tuple[str, str], str] = {}
        self.error_counts: dict[str, int] = {s: 0 for s in SOURCES}

    # -- sources -----------------------------------------------------------------------

    def _snapshot(self):
        try:
            if self._nvml is None:
                session = nvml.Session(self.settings.env, self._backend)
                self._backend = session.backend  # the same one after a failure (a fake keeps its script)
                self._nvml = ExitStack()
                self._nvml.enter_context(session)
            be = self._backend
            return nvml.snapshot(be, None, container_labels=getattr(be, "container_labels", None)), None
        except OssctlError as exc:
            self._close_nvml()
            return None, exc.message

    def _close_nvml(self) -> None:
        stack, self._nvml = self._nvml, None
        if stack is not None:
            try:
                stack.close()
            except Exception:  # noqa: BLE001 - the driver is already gone
                pass

    def _once(self, key: str, fn: Callable[[], Any]) -> Future:
        """The future of ``fn`` under ``key``: a new one, or the one an earlier scrape
        started and is still running (never two at once for one key)."""
        fut = self._inflight.get(key)
        if fut is None or fut.done():
            fut = self._inflight[key] = _spawn(fn)
        return fut

    def _get(self, url: str, key: str | None) -> tuple[int, str]:
        """One GET with the standard library: a tenth of httpx's CPU per request, which is
        most of a scrape's cost with several releases. The scrape stops waiting after
        ``fetch_timeout``; the socket gives up a second later, so a stuck server always
        reads "no answer in time" (and is not asked again while that request lives)."""
        import http.client
        from urllib.parse import urlsplit

        u = urlsplit(url)
        conn_type = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        if key and not _header_safe(key):
            # http.client would quote the whole header value in its ValueError
            raise OssctlError("the API key holds characters an HTTP header cannot carry (key not shown)")
        conn = conn_type(u.hostname, u.port, timeout=self.fetch_timeout + 1.0)
        try:
            conn.request("GET", u.path or "/", headers={"Authorization": f"Bearer {key}"} if key else {})
            r = conn.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            raise OssctlError(f"cannot read {u.path} from {u.hostname}:{u.port}: "
                              f"{getattr(exc, 'strerror', None) or exc or type(exc).__name__}") from None
        except ValueError as exc:  # its text may carry the request's headers, the key among them
            raise OssctlError(f"cannot send the request for {u.path} to {u.hostname}:{u.port}: "
                              f"{type(exc).__name__} (not shown: the request carries the API key)") from None
        finally:
            conn.close()

    def _fetch_metrics(self, endpoint: str, key: str | None) -> list[F.Family] | None:
        code, text = self._get(endpoint.rstrip("/") + "/metrics", key)
        if code in _UNSUPPORTED:
            return None
        if code != 200:
            raise OssctlError(f"/metrics answered HTTP {code}")
        return parse_text(text)

    def _fetch_slots(self, endpoint: str, key: str | None) -> tuple[int, int] | None:
        code, text = self._get(endpoint.rstrip("/") + "/slots", key)
        if code in _UNSUPPORTED:
            return None
        if code != 200:
            raise OssctlError(f"/slots answered HTTP {code}")
        counts = F.slots_counts(json.loads(text))
        if counts is None:
            raise OssctlError("/slots answered an unexpected shape")
        return counts

    def _release_info(self, rel: dict[str, Any]) -> dict[str, Any]:
        """The release's profile (resolved now, model and ctx as deployed) and API key,
        once per release. A profile that no longer resolves leaves both unknown."""
        k = (str(rel.get("profile")), str(rel.get("release")))
        info = self._info.get(k)
        if info is None:
            info = self._info[k] = _resolve(self.settings, rel)
        return info

    def _plan(self, rel: dict[str, Any], info: dict[str, Any], snap) -> tuple[dict[int, int] | None, str | None]:
        prof = info["profile"]
        if prof is None or snap is None or prof.get("gpus") == "none":
            return None, None
        devices = tuple((d.index, d.name or "", d.memory_total) for d in snap.devices
                        if prof["gpus"] == "all" or d.index in prof["gpus"])
        k = (rel.get("profile"), rel.get("release"), devices)
        if k not in self._plans:
            self._plans[k] = _plan(self.settings, prof, devices)
        return self._plans[k]

    # -- the scrape --------------------------------------------------------------------

    def scrape(self) -> Scrape:
        with self._lock:
            return self._scrape()

    def _scrape(self) -> Scrape:
        t0 = time.perf_counter()
        wall = time.time()
        sources: list[dict[str, Any]] = []

        def note(source: str, target: str, error: str | None) -> None:
            sources.append({"source": source, "target": target, "error": error})

        status_fut = self._once("status", self._releases)
        snap, err = self._snapshot()
        note("nvml", "", err)
        try:
            bench, err = load_last(self.settings.cache_dir, self.profile), None
        except OSError as exc:  # load_last skips bad files; only a broken cache dir gets here
            bench, err = {}, str(exc)
        note("bench", "", err)
        status, err = _wait(status_fut, time.monotonic() + self.status_timeout)
        if status is not None:
            self._last_status = (time.monotonic(), status)
        elif err == "no answer in time" and self._last_status is not None:
            # slow, not down (e.g. /health of a stuck server, probed one release after the
            # other): keep showing the releases seen last rather than none
            age, status = time.monotonic() - self._last_status[0], self._last_status[1]
            err = f"no answer in time; releases as of {age:.0f} s ago"
        docker_host = (status or {}).get("docker_host") or self._docker_host
        note("docker", F.host_label(docker_host, self._host) if docker_host else "", err)
        releases = (status or {}).get("releases") or []

        out = F.Families()
        labels_of: dict[str, dict[str, str]] = {}  # 12-char container id -> labels
        rows = []
        for rel in releases:
            lab = F.release_labels(rel, F.host_label(docker_host, self._host))
            if rel.get("container_id"):
                labels_of[str(rel["container_id"])[:12]] = lab
            info = self._release_info(rel)
            if info["error"]:
                note("profile", lab["profile"], info["error"])
            rows.append((rel, lab, info))
        fetches = []
        for rel, lab, info in rows:
            ep, key = rel.get("endpoint"), info["api_key"]
            if not ep or rel.get("health") == "down":
                continue
            m = self._once(f"{ep} metrics", lambda ep=ep, key=key: self._fetch_metrics(ep, key)) \
                if info["metrics"] else None
            s = self._once(f"{ep} slots", lambda ep=ep, key=key: self._fetch_slots(ep, key))
            fetches.append((rel, lab, m, s))

        if snap is not None:
            F.gpu_families(out, snap, self._host, labels_of)
        for rel, lab, info in rows:
            F.release_families(out, lab, rel)
            planned, perr = self._plan(rel, info, snap)
            if perr:
                note("plan", lab["profile"], perr)
            if planned:
                F.plan_families(out, lab, planned)
        for rel, lab, info in rows:
            if rel.get("health") == "down":
                note("llama_metrics", lab["profile"], "the release's container is not running")
        deadline = time.monotonic() + self.fetch_timeout
        for rel, lab, m, s in fetches:
            if m is not None:
                parsed, err = _wait(m, deadline)
                note("llama_metrics", lab["profile"], err)
                if parsed:
                    F.relabel(out, parsed, lab)
            counts, err = _wait(s, deadline)
            note("llama_slots", lab["profile"], err)
            if counts:
                F.slot_families(out, lab, *counts)
        F.bench_families(out, bench)
        self._account(sources)
        duration = time.perf_counter() - t0
        F.exporter_families(out, duration, sources, self.error_counts)
        return Scrape(wall, duration, list(out), sources)

    def _account(self, sources: list[dict[str, Any]]) -> None:
        seen = set()
        for s in sources:
            k = (s["source"], s["target"])
            seen.add(k)
            where = s["source"] + (f" ({s['target']})" if s["target"] else "")
            if s["error"] is not None:
                self.error_counts[s["source"]] = self.error_counts.get(s["source"], 0) + 1
                if self._failing.get(k) != s["error"]:
                    self._log(f"warning: {where}: {s['error']}")
                self._failing[k] = s["error"]
            elif k in self._failing:
                del self._failing[k]
                self._log(f"ok: {where} answers again")
        for k in [k for k in self._failing if k not in seen]:
            del self._failing[k]  # a release that went away is not "failing" any more

    def close(self) -> None:
        self._close_nvml()


def _status(settings, profile: str | None, docker_host_flag: str | None) -> dict[str, Any]:
    return service.status(settings, profile, docker_host_flag=docker_host_flag).to_dict()


def _docker_host(settings, flag: str | None) -> str:
    return docker_host(settings, flag)


def _resolve(settings, rel: dict[str, Any]) -> dict[str, Any]:
    """``{"profile": resolved dict | None, "api_key": str | None, "metrics": bool,
    "error": str | None}`` for one release."""
    try:
        prof = dict(resolve_profile(settings, str(rel.get("profile"))))
    except OssctlError as exc:
        return {"profile": None, "api_key": None, "metrics": True,
                "error": f"cannot read the profile (plan and API key unknown): {exc.message}"}
    if rel.get("model"):
        prof["model"] = rel["model"]
    if rel.get("ctx"):
        prof["ctx"] = int(rel["ctx"])
    key, err = None, None
    try:  # the one reader: comments skipped, the first key sent, every key registered as a secret
        key = read_api_key(prof.get("api_key_file"))
    except OssctlError as exc:
        err = exc.message
    return {"profile": prof, "api_key": key, "metrics": bool(prof.get("metrics", True)), "error": err}


def _header_safe(key: str) -> bool:
    """Whether ``key`` can be sent in an ``Authorization`` header as is (visible ASCII)."""
    return all(0x21 <= ord(c) <= 0x7E for c in key)


def _plan(settings, prof: dict[str, Any], devices: tuple) -> tuple[dict[int, int] | None, str | None]:
    """Planned bytes per GPU index for ``prof`` on ``devices`` ((index, name, total))."""
    try:
        try:
            model_dir = locate_model_dir(settings, str(prof["model"]))
        except OssctlError:
            model_dir = None  # not downloaded here: the catalog's size and architecture
        plan = fit.plan_profile(prof, model_dir, devices=[fit.Device(i, n, t, None) for i, n, t in devices])
    except OssctlError as exc:
        return None, f"cannot plan: {exc.message}"
    return {g.index: g.total for g in plan.gpus}, None
