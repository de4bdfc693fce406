"""`ossctl --help` start-up vs `python -c "import typer"` (issue 24 row 3: <= 1.2x).

    python bench/help_startup.py [--runs 21] [--before DIR] [--out bench/results/help_startup.txt]

Both run as fresh processes, interleaved (bench/interleave.py: round-robin, medians, the
load average recorded, byte code cached outside the tree as in an install). Wall time is
the goal's figure; CPU time (user + sys of the child) is printed too: on a shared,
loaded machine it moves less than wall. ``--before DIR`` also times the checkout in DIR
(e.g. the main branch) in the same rounds.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.interleave import interleaved, load, python_env, report  # noqa: E402

GOAL = 1.2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--before", metavar="DIR")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "help_startup.txt"))
    a = ap.parse_args()
    py = sys.executable
    cmds = {"import typer": [py, "-c", "import typer"], "ossctl --help": [py, "-m", "ossctl", "--help"]}
    if a.before:
        cmds["before --help"] = [py, "-c", f"import sys; sys.path.insert(0, {a.before!r}); "
                                 "from ossctl.cli.app import main; sys.exit(main())", "--help"]
    before = load()
    res = interleaved(cmds, a.runs, python_env(dict(os.environ)), cwd=ROOT)
    base = res["import typer"]
    lines = [f"runs per figure: {a.runs}, interleaved, medians; {before} (before), {load()} (after)"]
    for name, r in res.items():
        lines.append(f"{name:<15}: wall {r['wall'] * 1000:7.1f} ms ({r['wall'] / base['wall']:.2f}x)  "
                     f"CPU {r['cpu'] * 1000:7.1f} ms ({r['cpu'] / base['cpu']:.2f}x)  fastest {r['min'] * 1000:7.1f} ms")
    ours = res["ossctl --help"]
    ratio = ours["wall"] / base["wall"]
    lines.append(f"ratio (wall)   : {ratio:.2f}x   goal <= {GOAL}x -> {'OK' if ratio <= GOAL else 'MISSED'}")
    report(lines, a.out)


if __name__ == "__main__":
    main()
