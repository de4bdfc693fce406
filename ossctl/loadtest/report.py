"""The bench report: one plain dict that ``--json`` prints as is and that the table, the
plot and the SLA gate read. Pure, except :func:`plot` (matplotlib, optional extra)."""

from __future__ import annotations

from pathlib import Path

from ossctl.errors import EXIT_SLA, OssctlError, RemoteError, UsageError
from ossctl.fsutil import atomic_write
from ossctl.loadtest import sla as _sla
from ossctl.loadtest.stats import Sample, error_label, summarize
from ossctl.units import format_seconds

REPORT_KEYS = ("target", "model", "stream", "max_tokens", "duration_s", "requests_per_level", "levels", "sla",
               "interrupted", "aborted")
LEVEL_KEYS = ("users", "requests", "successes", "errors", "error_pct", "errors_by_kind", "elapsed_s", "rpm",
              "output_tokens", "prompt_tokens", "output_tps", "latency_s", "ttft_s", "categories", "efforts",
              "client_cpu_ms_per_request", "reasoning_effort", "sla_failures")
GROUP_KEYS = ("requests", "errors", "output_tokens", "prompt_tokens", "latency_p50_s", "output_tps",
              "server_gen_tps", "server_prompt_tps")


def level(samples: list[Sample], users: int, elapsed_s: float, stream: bool, cpu_s: float | None = None,
          order: list[str] | None = None, effort: str | None = None) -> dict:
    """One level's numbers (see :func:`ossctl.loadtest.stats.summarize`); ``effort`` is the
    level's ``--reasoning-effort`` (low, medium, high, mixed, or None when not sent)."""
    lv = summarize(samples, users, elapsed_s, stream, cpu_s, order)
    lv["reasoning_effort"] = effort
    lv["sla_failures"] = None
    return lv


def build(target: str, model: str | None, stream: bool, max_tokens: int | None, duration_s: float | None,
          requests: int | None, levels: list[dict], *, interrupted: bool = False, aborted: str | None = None) -> dict:
    return {"target": target, "model": model, "stream": stream, "max_tokens": max_tokens, "duration_s": duration_s,
            "requests_per_level": requests, "levels": levels, "sla": None, "interrupted": interrupted,
            "aborted": aborted}


def apply_sla(report: dict, spec: str, users_requested: list[int]) -> dict:
    """Evaluate the SLA ``spec`` on every level; sets ``level["sla_failures"]`` (list,
    empty = met) and ``report["sla"] = {"spec", "ok", "max_users", "failed_users"}``.
    ``ok`` needs every *requested* level to have run and met it; ``max_users`` is the
    largest concurrency that met it (None if none did)."""
    conditions = _sla.parse_sla(spec)
    met, failed = [], []
    for lv in report["levels"]:
        lv["sla_failures"] = _sla.evaluate(conditions, lv)
        (failed if lv["sla_failures"] else met).append(lv["users"])
    ran = {lv["users"] for lv in report["levels"]}
    not_run = [u for u in users_requested if u not in ran]
    report["sla"] = {"spec": spec, "ok": not failed and not not_run, "max_users": max(met) if met else None,
                     "failed_users": failed, "not_run_users": not_run}
    return report


def _s(v: float | None) -> str:
    return "-" if v is None else format_seconds(v)


def _n(v: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def table_rows(report: dict) -> tuple[list[str], list[list[str]], str]:
    """The main table: one row per concurrency level."""
    headers = ["users", "requests", "errors", "err %", "req/min", "out tok/s", "avg", "p50", "p90", "p95", "p99"]
    stream = report["stream"]
    if stream:
        headers += ["ttft p50", "ttft p95"]
    has_sla = report.get("sla") is not None
    if has_sla:
        headers.append("SLA")
    has_effort = any(lv.get("reasoning_effort") for lv in report["levels"])
    if has_effort:
        headers.insert(1, "effort")
    rows = []
    for lv in report["levels"]:
        lat = lv["latency_s"] or {}
        row = [str(lv["users"]), *([lv["reasoning_effort"] or "-"] if has_effort else []), str(lv["requests"]),
               str(lv["errors"]), _n(lv["error_pct"]), _n(lv["rpm"]),
               _n(lv["output_tps"]), _s(lat.get("avg")), _s(lat.get("p50")), _s(lat.get("p90")),
               _s(lat.get("p95")), _s(lat.get("p99"))]
        if stream:
            tt = lv["ttft_s"] or {}
            row += [_s(tt.get("p50")), _s(tt.get("p95"))]
        if has_sla:
            row.append("fail" if lv["sla_failures"] else "ok")
        rows.append(row)
    align = "r" * (len(headers) - (1 if has_sla else 0)) + ("l" if has_sla else "")
    return headers, rows, align[:1] + "l" + align[2:] if has_effort else align


def category_rows(report: dict, by: str = "categories") -> tuple[list[str], list[list[str]], str]:
    """Per prompt category (``by="efforts"``: per reasoning effort) at each level:
    requests, errors, median latency, output tokens/s per request (client-side) and the
    server's own generation / prompt speeds when it reports them."""
    headers = ["users", "category" if by == "categories" else "effort", "requests", "errors", "p50",
               "out tok/s", "server gen tok/s", "server prompt tok/s"]
    rows = []
    for lv in report["levels"]:
        for name, c in lv[by].items():
            rows.append([str(lv["users"]), name, str(c["requests"]), str(c["errors"]), _s(c["latency_p50_s"]),
                         _n(c["output_tps"]), _n(c["server_gen_tps"]), _n(c["server_prompt_tps"])])
    return headers, rows, "rlrrrrrr"


def notes(report: dict) -> list[str]:
    """Lines printed under the tables: error kinds, SLA verdict, why the run stopped."""
    out = []
    for lv in report["levels"]:
        if lv["errors_by_kind"]:
            kinds = ", ".join(f"{error_label(k)} x{n}" for k, n in lv["errors_by_kind"].items())
            out.append(f"errors at {lv['users']} users: {kinds}")
    s = report.get("sla")
    if s is not None:
        if s["max_users"] is None:
            out.append(f"SLA {s['spec']}: not met at any level")
        else:
            out.append(f"SLA {s['spec']}: met up to {s['max_users']} users")
        for lv in report["levels"]:
            if lv["sla_failures"]:
                out.append(f"SLA fails at {lv['users']} users: " + "; ".join(lv["sla_failures"]))
        if s["not_run_users"]:
            out.append("SLA not checked at " + ", ".join(map(str, s["not_run_users"])) + " users (not run)")
    if report["aborted"]:
        out.append(f"run stopped: {report['aborted']}")
    if report["interrupted"]:
        out.append("run interrupted: partial results")
    return out


def all_unauthorized(report: dict) -> bool:
    """True when requests were sent and every one was refused with 401/403."""
    total = sum(lv["requests"] for lv in report["levels"])
    auth = sum(lv["errors_by_kind"].get(k, 0) for lv in report["levels"] for k in ("http_401", "http_403"))
    return total > 0 and auth == total


def all_failed(report: dict) -> str | None:
    """When requests were sent and not one succeeded: a short summary ("12 of 12
    requests failed: connection refused x12"), else ``None``."""
    total = sum(lv["requests"] for lv in report["levels"])
    errors = sum(lv["errors"] for lv in report["levels"])
    if total == 0 or errors < total:
        return None
    kinds: dict[str, int] = {}
    for lv in report["levels"]:
        for k, n in lv["errors_by_kind"].items():
            kinds[k] = kinds.get(k, 0) + n
    what = ", ".join(f"{error_label(k)} x{n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    return f"{errors} of {total} requests failed" + (f": {what}" if what else "")


def outcome_error(report: dict) -> OssctlError | None:
    """Why a finished (not interrupted) run exits non-zero, or ``None``: every request
    refused as unauthorized, the run stopped early, every request failed (without an
    SLA), or the SLA failed (exit 9)."""
    if all_unauthorized(report):
        return RemoteError("every request was refused as unauthorized (HTTP 401)",
                           hint="check the API key: --api-key-file FILE or OSSCTL_API_KEY")
    if report["aborted"]:
        return RemoteError(f"the run stopped early: {report['aborted']}",
                           hint="the numbers above count the failures; check the server (`ossctl status`)")
    failed = all_failed(report)
    if failed and report["sla"] is None:  # with --sla, the SLA verdict (exit 9) says it
        return RemoteError(f"every request failed ({failed})",
                           hint="the server is not answering completions: check it (`ossctl status`, its logs) "
                                "and the --url / --model")
    s = report["sla"]
    if s is not None and not s["ok"]:
        where = ", ".join(map(str, s["failed_users"] + s["not_run_users"]))
        best = f"; largest passing level: {s['max_users']} users" if s["max_users"] else ""
        return OssctlError(f"SLA {s['spec']} failed at {where} users{best}", exit_code=EXIT_SLA)
    return None


LAST_KEYS = ("profile", "release", "time", "stream", "sla", "levels")
LAST_LEVEL_KEYS = ("users", "requests", "error_pct", "output_tps", "latency_p50_s", "latency_p95_s", "sla_ok")


def last_summary(report: dict, profile: str, release: str | None, now: float) -> dict:
    """What ``ossctl metrics`` shows of a finished run: per level p50/p95 latency (s),
    output tokens/s, error %, and whether it met the SLA (None without one)."""
    levels = []
    for lv in report["levels"]:
        lat = lv["latency_s"] or {}
        fails = lv.get("sla_failures")
        levels.append({"users": lv["users"], "requests": lv["requests"], "error_pct": lv["error_pct"],
                       "output_tps": lv["output_tps"], "latency_p50_s": lat.get("p50"),
                       "latency_p95_s": lat.get("p95"), "sla_ok": None if fails is None else not fails})
    sla = report.get("sla")
    return {"profile": profile, "release": release, "time": now, "stream": report["stream"],
            "sla": None if sla is None else {"spec": sla["spec"], "ok": sla["ok"]}, "levels": levels}


def _last_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "bench"


def store_last(cache_dir: Path, summary: dict) -> Path:
    """Keep ``summary`` as the profile's last bench result (``cache_dir/bench/PROFILE.json``,
    written atomically). Raises ``OSError``."""
    import json


    path = _last_dir(cache_dir) / f"{summary['profile']}.json"
    atomic_write(path, json.dumps(summary, indent=1) + "\n")
    return path


def load_last(cache_dir: Path, profile: str | None = None) -> dict[str, dict]:
    """Last bench result per profile (``{profile: summary}``); unreadable or foreign files
    are skipped (a cache, not a record)."""
    import json

    out: dict[str, dict] = {}
    d = _last_dir(cache_dir)
    names = [d / f"{profile}.json"] if profile else sorted(d.glob("*.json"))
    for path in names:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and tuple(doc) == LAST_KEYS and doc["profile"] == path.stem:
            out[path.stem] = doc
    return out


def require_matplotlib() -> None:
    """Raises :class:`UsageError` with the install line when matplotlib is missing."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib, which is not installed",
                         hint="pip install 'ossctl[plot]'  (or drop --plot)")


def plot_panels(report: dict) -> list[dict]:
    """What :func:`plot` draws, as data (pure): four panels against users, each
    ``{"title", "ylabel", "lines": {label: [y per level]}, "thresholds": [(label, y)],
    "failing": [(users, y)]}``. Latency shows avg and median, plus each latency metric
    the SLA names, with its threshold; error rate and the two throughputs get their own
    panels (with the SLA's errors / rpm / tps threshold when it has one). ``failing``
    marks the levels that fail the SLA on that panel's first line."""
    levels = report["levels"]
    users = [lv["users"] for lv in levels]
    conds = _sla.parse_sla(report["sla"]["spec"]) if report.get("sla") else []
    failing = {lv["users"] for lv in levels if lv["sla_failures"]}

    def series(metric: str) -> list[float | None]:
        return [_sla.actual_value(metric, lv) for lv in levels]

    def thresholds(metrics: tuple[str, ...]) -> list[tuple[str, float]]:
        return [(f"SLA {c.text}", c.value) for c in conds if c.metric in metrics]

    lat_metrics = ["avg", "p50"] + [c.metric for c in conds if c.metric in _sla.LATENCY_METRICS
                                    and c.metric not in ("avg", "p50")]
    lat_lines = {("median" if m == "p50" else m): series(m) for m in dict.fromkeys(lat_metrics)}
    panels = [
        {"title": "Latency", "ylabel": "seconds", "lines": lat_lines,
         "thresholds": thresholds(_sla.LATENCY_METRICS)},
        {"title": "Error rate", "ylabel": "% of requests", "lines": {"errors": series("errors")},
         "thresholds": thresholds(("errors",))},
        {"title": "Output throughput", "ylabel": "tokens/s", "lines": {"output tok/s": series("tps")},
         "thresholds": thresholds(("tps",))},
        {"title": "Request throughput", "ylabel": "requests/min", "lines": {"req/min": series("rpm")},
         "thresholds": thresholds(("rpm",))},
    ]
    judged = next((c.metric for c in conds if c.metric in _sla.LATENCY_METRICS), "avg")
    for p in panels:
        # on the latency panel the marks sit on the line the SLA judges
        ys = lat_lines["median" if judged == "p50" else judged] if p is panels[0] else next(iter(p["lines"].values()))
        p["failing"] = [(u, y) for u, y in zip(users, ys) if u in failing and y is not None]
        p["users"] = users
    return panels


def plot(report: dict, path: str | Path) -> None:
    """Write a PNG of :func:`plot_panels`: latency (avg, median, SLA line), error rate,
    output tokens/s and requests/min against users, levels failing the SLA marked.
    Raises :class:`UsageError` if matplotlib is missing or the file cannot be written."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    panels = plot_panels(report)
    efforts = [lv.get("reasoning_effort") for lv in report["levels"]]
    ticks = [f"{lv['users']}\n{e}" if e else str(lv["users"]) for lv, e in zip(report["levels"], efforts)] \
        if any(efforts) else [str(u) for u in panels[0]["users"]]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    # levels evenly spaced (1, 10, 50, 100 would crowd the left on a linear axis)
    xpos = {u: i for i, u in enumerate(panels[0]["users"])}
    for ax, p in zip(axes.flat, panels):
        for label, ys in p["lines"].items():
            pts = [(xpos[u], y) for u, y in zip(p["users"], ys) if y is not None]
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=label)
        for label, y in p["thresholds"]:
            ax.axhline(y, color="tab:red", linestyle="--", linewidth=1.2, label=label)
        if p["failing"]:
            ax.scatter([xpos[u] for u, _ in p["failing"]], [y for _, y in p["failing"]], s=160, marker="x",
                       color="tab:red", linewidths=2.5, zorder=5, label="level fails the SLA")
        ax.set_title(p["title"])
        ax.set_xlabel("concurrent users" + (" / reasoning effort" if efforts else ""))
        ax.set_ylabel(p["ylabel"])
        ax.set_xticks(range(len(ticks)), ticks)
        ax.set_xlim(-0.3, len(ticks) - 0.7)
        top = max([y for ys in p["lines"].values() for y in ys if y is not None] + [y for _, y in p["thresholds"]]
                  + [0.0])
        ax.set_ylim(0, top * 1.15 or 1.0)
        ax.grid(alpha=0.3)
        if len(p["lines"]) > 1 or p["thresholds"] or p["failing"]:
            ax.legend(loc="best", fontsize="small")
    fig.suptitle(f"ossctl bench {report['target']}" + (f" ({report['model']})" if report.get("model") else ""))
    save_png(fig, path)


def save_png(fig, path: str | Path) -> None:
    """Write the matplotlib figure ``fig`` to ``path`` as a PNG, atomically, and close it.
    Raises :class:`UsageError` when ``path`` cannot be written."""
    import io

    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    try:
        atomic_write(Path(path), buf.getvalue())
    except OSError as exc:
        raise UsageError(f"cannot write plot {path}: {exc.strerror}") from None
