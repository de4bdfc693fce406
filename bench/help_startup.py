"""Bench 3 (issue 2): `ossctl --help` start-up vs `python -c "import typer"`.

    python bench/help_startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timeit(cmd: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    base = timeit([sys.executable, "-c", "import typer"], a.runs)
    ours = timeit([sys.executable, "-m", "ossctl", "--help"], a.runs)
    print(f'python -c "import typer" : {base * 1000:7.1f} ms (median of {a.runs})')
    print(f"ossctl --help            : {ours * 1000:7.1f} ms")
    print(f"ratio                    : {ours / base:.2f}x   (target <= 1.5x)")


if __name__ == "__main__":
    main()
