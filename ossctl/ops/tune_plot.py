"""``ossctl tune --plot``: output tokens/s (users at the SLA with ``--capacity``) against
each knob, one panel per knob, the points that fail the SLA marked, the best one ringed.
:func:`panels` is pure; :func:`plot` draws it (matplotlib, the optional plot extra, as
``ossctl bench --plot``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ossctl.loadtest.report import require_matplotlib, save_png


def panels(result) -> list[dict[str, Any]]:
    """One panel per knob of the space: ``{"knob", "ylabel", "values" (the knob's values,
    in order), "ok": [(value index, y)], "failing": [(value index, y)], "best": (value
    index, y) | None}``; a trial that failed to start has no y and is left out."""
    out = []
    ylabel = "users at the SLA" if result.capacity else "output tokens/s"
    for knob, values in result.space.items():
        vals = list(values)
        ok, failing, best = [], [], None
        for t in result.trials:
            y = t.capacity_users if result.capacity else t.output_tps
            v = t.point.get(knob)
            if y is None or t.status != "ok":
                continue
            if v not in vals:
                vals.append(v)  # the profile's own value, outside the space
            xy = (vals.index(v), y)
            (ok if t.sla_ok else failing).append(xy)
            if t is result.best:
                best = xy
        out.append({"knob": knob, "ylabel": ylabel, "values": vals, "ok": ok, "failing": failing, "best": best})
    return out


def plot(result, path: str | Path) -> None:
    """Write the PNG. Raises :class:`UsageError` when matplotlib is missing or the file
    cannot be written."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ps = panels(result)
    fig, axes = plt.subplots(1, max(len(ps), 1), figsize=(5 * max(len(ps), 1), 4), squeeze=False)
    for ax, p in zip(axes[0], ps):
        if p["ok"]:
            ax.scatter([x for x, _ in p["ok"]], [y for _, y in p["ok"]], marker="o", label="meets the SLA")
        if p["failing"]:
            ax.scatter([x for x, _ in p["failing"]], [y for _, y in p["failing"]], marker="x", s=90,
                       color="tab:red", linewidths=2, label="fails the SLA")
        if p["best"]:
            ax.scatter([p["best"][0]], [p["best"][1]], s=260, facecolors="none", edgecolors="tab:green",
                       linewidths=2, label="best")
        ax.set_xticks(range(len(p["values"])), [str(v) for v in p["values"]])
        ax.set_xlabel(p["knob"])
        ax.set_ylabel(p["ylabel"])
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    how = "capacity" if result.capacity else f"{result.users} users"
    fig.suptitle(f"ossctl tune {result.profile}: {how}, SLA {result.sla}")
    save_png(fig, path)
