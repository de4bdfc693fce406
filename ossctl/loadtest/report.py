"""The bench report: one plain dict that ``--json`` prints as is and that the table, the
plot and the SLA gate read. Pure, except :func:`plot` (matplotlib, optional extra)."""

from __future__ import annotations

from pathlib import Path

from ossctl.errors import UsageError
from ossctl.loadtest import sla as _sla
from ossctl.loadtest.stats import Sample, error_label, summarize

REPORT_KEYS = ("target", "model", "stream", "max_tokens", "duration_s", "requests_per_level", "levels", "sla",
               "interrupted", "aborted")
LEVEL_KEYS = ("users", "requests", "successes", "errors", "error_pct", "errors_by_kind", "elapsed_s", "rpm",
              "output_tokens", "prompt_tokens", "output_tps", "latency_s", "ttft_s", "categories",
              "client_cpu_ms_per_request", "sla_failures")


def level(samples: list[Sample], users: int, elapsed_s: float, stream: bool, cpu_s: float | None = None,
          order: list[str] | None = None) -> dict:
    lv = summarize(samples, users, elapsed_s, stream, cpu_s, order)
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
    return "-" if v is None else _sla.format_seconds(v)


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
    rows = []
    for lv in report["levels"]:
        lat = lv["latency_s"] or {}
        row = [str(lv["users"]), str(lv["requests"]), str(lv["errors"]), _n(lv["error_pct"]), _n(lv["rpm"]),
               _n(lv["output_tps"]), _s(lat.get("avg")), _s(lat.get("p50")), _s(lat.get("p90")),
               _s(lat.get("p95")), _s(lat.get("p99"))]
        if stream:
            tt = lv["ttft_s"] or {}
            row += [_s(tt.get("p50")), _s(tt.get("p95"))]
        if has_sla:
            row.append("fail" if lv["sla_failures"] else "ok")
        rows.append(row)
    return headers, rows, "r" * (len(headers) - (1 if has_sla else 0)) + ("l" if has_sla else "")


def category_rows(report: dict) -> tuple[list[str], list[list[str]], str]:
    """Per prompt category at each level: requests, errors, output tokens/s per request
    (client-side) and the server's own generation / prompt speeds when it reports them."""
    headers = ["users", "category", "requests", "errors", "out tok/s", "server gen tok/s", "server prompt tok/s"]
    rows = []
    for lv in report["levels"]:
        for cat, c in lv["categories"].items():
            rows.append([str(lv["users"]), cat, str(c["requests"]), str(c["errors"]), _n(c["output_tps"]),
                         _n(c["server_gen_tps"]), _n(c["server_prompt_tps"])])
    return headers, rows, "rlrrrrr"


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

    from ossctl.fsutil import atomic_write

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


def plot(report: dict, path: str | Path) -> None:
    """Write a PNG: latency avg/p50/p95/p99 and output tokens/s against users. Raises
    :class:`UsageError` if matplotlib is missing or the file cannot be written."""
    require_matplotlib()
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ossctl.fsutil import atomic_write

    levels = [lv for lv in report["levels"] if lv["latency_s"]]
    users = [lv["users"] for lv in levels]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for key in ("avg", "p50", "p95", "p99"):
        ax1.plot(users, [lv["latency_s"][key] for lv in levels], marker="o", label=key)
    ax1.set_xlabel("concurrent users")
    ax1.set_ylabel("latency (s)")
    ax1.set_title("Latency")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(users, [lv["output_tps"] for lv in levels], marker="o", color="tab:green", label="output tok/s")
    ax2.set_xlabel("concurrent users")
    ax2.set_ylabel("output tokens/s")
    ax2.set_title("Throughput")
    ax3 = ax2.twinx()
    ax3.plot(users, [lv["rpm"] for lv in levels], marker="s", color="tab:orange", label="req/min")
    ax3.set_ylabel("requests/min")
    lines = ax2.get_lines() + ax3.get_lines()
    ax2.legend(lines, [ln.get_label() for ln in lines], loc="best")
    ax2.grid(alpha=0.3)
    fig.suptitle(f"ossctl bench {report['target']}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    try:
        atomic_write(Path(path), buf.getvalue())
    except OSError as exc:
        raise UsageError(f"cannot write plot {path}: {exc.strerror}") from None
