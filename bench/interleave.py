"""Timing fresh processes fairly, for the benches that compare a command with its baseline:
the commands run round-robin (one of each, then again), so a busy minute on a shared
machine weighs on both; medians; the load average is recorded with the figures.

Byte code: a user's installed ossctl runs from compiled ``.pyc`` files; a checkout run with
``PYTHONDONTWRITEBYTECODE=1`` (as CI and some sandboxes set) compiles every module on
every start (~0.15 s for ``ossctl status``), which no user pays. :func:`python_env` drops
that variable and keeps the byte code in a cache directory of its own
(``PYTHONPYCACHEPREFIX``), so nothing is written into the checkout; one warm-up run per
command fills it.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def python_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for timing Python processes: byte code cached (see the module doc)."""
    out = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / f"ossctl-bench-pyc-{os.getuid()}")
    return out


def load() -> str:
    """The 1/5/15-minute load average and the core count, as one line."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def run_once(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, float]:
    """(wall s, CPU s of the child: user + sys) of one run; raises SystemExit when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=cwd)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def interleaved(cmds: dict[str, list[str]], runs: int, env: dict[str, str], cwd: Path | None = None,
                warmup: int = 1) -> dict[str, dict[str, float]]:
    """Run each of ``cmds`` (name -> argv) ``runs`` times, round-robin, after ``warmup``
    untimed rounds. Returns name -> {"wall": median s, "cpu": median s, "min": s, "runs"}."""
    for _ in range(warmup):
        for argv in cmds.values():
            run_once(argv, env, cwd)
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
    for _ in range(runs):
        for name, argv in cmds.items():
            samples[name].append(run_once(argv, env, cwd))
    return {name: {"wall": statistics.median(w for w, _ in s), "cpu": statistics.median(c for _, c in s),
                   "min": min(w for w, _ in s), "runs": len(s)} for name, s in samples.items()}


def report(lines: list[str], out: str | None) -> None:
    """Print the result lines, and write them to ``out`` too when given (its folder made)."""
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
