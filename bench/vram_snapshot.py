#!/usr/bin/env python3
"""Cost of one NVML snapshot (ms) and CPU use of `ossctl vram watch` at 1 Hz.

Runs on the fake NVML (OSSCTL_FAKE_NVML=<scenario>, default 4x80gb when no driver is
found) or on the real one (a GPU host: leave OSSCTL_FAKE_NVML unset). Prints ratios
against baselines measured in the same run:

- snapshot: median / p95 ms over N snapshots, and the duty cycle at 1 Hz (ms / 1000 ms);
  baseline: the same loop reading /proc/self/stat (a syscall-sized unit of work).
- watch: CPU seconds of `python -m ossctl vram watch --interval 1 --count K` minus those
  of `--count 1` (process start-up, measured in the same run), divided by the wall time
  of the extra samples = % of one core; target < 1 %.

usage: python3 bench/vram_snapshot.py [--seconds 60] [--iterations 300] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pick_backend(env: dict[str, str]) -> tuple[str, dict[str, str]]:
    """'real' when NVML initialises, else the fake (4x80gb unless one is set)."""
    from ossctl.errors import OssctlError
    from ossctl.gpu import nvml

    if env.get("OSSCTL_FAKE_NVML"):
        return f"fake:{env['OSSCTL_FAKE_NVML']}", env
    be = nvml.PynvmlBackend()
    try:
        be.init()
        be.shutdown()
        return "real", env
    except OssctlError as exc:
        print(f"note: {exc.message}; using the fake NVML (4x80gb)", file=sys.stderr)
        env = dict(env, OSSCTL_FAKE_NVML="4x80gb")
        return "fake:4x80gb", env


def time_loop(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def bench_snapshot(env: dict[str, str], n: int) -> dict:
    from ossctl.gpu import nvml

    be = nvml.open_backend(env)
    t = time.perf_counter()
    be.init()
    init_ms = (time.perf_counter() - t) * 1000
    labels = getattr(be, "container_labels", None)
    nvml.snapshot(be, container_labels=labels)  # warm-up
    snap = time_loop(lambda: nvml.snapshot(be, container_labels=labels), n)
    be.shutdown()
    base = time_loop(lambda: Path("/proc/self/stat").read_bytes(), n)
    med, bmed = statistics.median(snap), statistics.median(base)
    return {"init_ms": round(init_ms, 3), "snapshot_median_ms": round(med, 4),
            "snapshot_p95_ms": round(sorted(snap)[int(0.95 * (n - 1))], 4),
            "baseline_proc_read_median_ms": round(bmed, 4), "ratio_vs_baseline": round(med / bmed, 1),
            "duty_cycle_at_1hz_pct": round(med / 1000 * 100, 4), "iterations": n}


def child_cpu(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one `python -m ossctl ...` run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    subprocess.run([sys.executable, "-m", "ossctl", *args], env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True, cwd=ROOT)
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def bench_watch(env: dict[str, str], seconds: int, json_mode: bool) -> dict:
    pre = ["--json"] if json_mode else []
    base_cpu, base_wall = child_cpu(pre + ["vram", "watch", "--once"], env)
    cpu, wall = child_cpu(pre + ["vram", "watch", "--interval", "1", "--count", str(seconds + 1)], env)
    extra_cpu, extra_wall = cpu - base_cpu, wall - base_wall
    pct = extra_cpu / extra_wall * 100 if extra_wall > 0 else float("nan")
    return {"mode": "json" if json_mode else "table", "samples": seconds + 1, "startup_cpu_s": round(base_cpu, 3),
            "total_cpu_s": round(cpu, 3), "wall_s": round(wall, 2), "steady_cpu_pct_of_one_core": round(pct, 3),
            "ratio_vs_target_1pct": round(pct / 1.0, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60, help="watch duration at 1 Hz (default 60)")
    ap.add_argument("--iterations", type=int, default=300, help="snapshots to time (default 300)")
    ap.add_argument("--json-out", help="also write the results as JSON here")
    ap.add_argument("--skip-watch", action="store_true")
    a = ap.parse_args()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    backend, env = pick_backend(env)
    res = {"backend": backend, "python": sys.version.split()[0], "snapshot": bench_snapshot(env, a.iterations)}
    s = res["snapshot"]
    print(f"backend {backend}")
    print(f"snapshot: median {s['snapshot_median_ms']:.3f} ms, p95 {s['snapshot_p95_ms']:.3f} ms "
          f"(init {s['init_ms']:.1f} ms once); {s['ratio_vs_baseline']}x a /proc/self/stat read "
          f"({s['baseline_proc_read_median_ms']:.4f} ms); duty cycle at 1 Hz {s['duty_cycle_at_1hz_pct']:.4f} %")
    if not a.skip_watch:
        res["watch"] = [bench_watch(env, a.seconds, True), bench_watch(env, a.seconds, False)]
        for w in res["watch"]:
            verdict = "OK" if w["steady_cpu_pct_of_one_core"] < 1.0 else "OVER TARGET"
            print(f"watch --{w['mode']} at 1 Hz for {w['samples']} samples: {w['steady_cpu_pct_of_one_core']:.3f} % of one "
                  f"core after start-up ({w['startup_cpu_s']:.2f} s CPU start-up, baseline in this run); "
                  f"{w['ratio_vs_target_1pct']:.3f}x the 1 % target: {verdict}")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
