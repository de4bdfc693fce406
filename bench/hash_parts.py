"""Bench 1 (issue 2): hash three parts.

`ossctl hash` vs the seed's shell way (sha256sum each part, then sha256sum of the
concatenated hex), and vs the ceiling: cores x single-core hashlib SHA-256 throughput.
Everything runs from the page cache (files are read once before timing).

    python bench/hash_parts.py [--size-mib 1024] [--dir /tmp/ossctl-bench-hash]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_parts(d: Path, size: int) -> list[Path]:
    d.mkdir(parents=True, exist_ok=True)
    parts = []
    block = os.urandom(1 << 20)
    for i in range(1, 4):
        p = d / f"bench-{i:05d}-of-00003.gguf"
        if not p.exists() or p.stat().st_size != size:
            with open(p, "wb") as fh:
                for j in range(size >> 20):
                    fh.write(block[j % 251:] + block[: j % 251])
        parts.append(p)
    return parts


def best(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--dir", default="/tmp/ossctl-bench-hash")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    size = a.size_mib << 20
    parts = make_parts(Path(a.dir), size)
    for p in parts:  # warm the page cache
        with open(p, "rb") as fh:
            while fh.read(8 << 20):
                pass
    cores = os.cpu_count() or 1
    total = 3 * size

    def single_core():
        h = hashlib.sha256()
        buf = bytearray(8 << 20)
        with open(parts[0], "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                h.update(memoryview(buf)[:n])

    def shell():
        script = ('for f in "$@"; do sha256sum "$f"; done | cut -d" " -f1 | tr -d "\\n" | sha256sum')
        subprocess.run(["bash", "-c", script, "_", *map(str, parts)], check=True, capture_output=True)

    def ossctl():
        subprocess.run([sys.executable, "-m", "ossctl", "--json", "hash", *map(str, parts)], check=True,
                       capture_output=True, cwd=ROOT)

    sys.path.insert(0, str(ROOT))
    from ossctl.artifacts.hashing import sha256_files

    def library():
        sha256_files(parts)

    t_single = best(single_core, a.runs)
    t_lib = best(library, a.runs)
    t_shell = best(shell, a.runs)
    t_ossctl = best(ossctl, a.runs)
    single_speed = size / t_single
    ceiling = cores * single_speed
    ossctl_speed = total / t_ossctl
    print(f"parts: 3 x {a.size_mib} MiB, cores: {cores}")
    print(f"hashlib single core : {single_speed / 2**20:8.0f} MiB/s")
    print(f"shell sha256sum     : {t_shell:6.2f} s  {total / t_shell / 2**20:8.0f} MiB/s")
    print(f"ossctl hash         : {t_ossctl:6.2f} s  {ossctl_speed / 2**20:8.0f} MiB/s")
    print(f"speed-up vs shell   : {t_shell / t_ossctl:.2f}x   (target >= 3x)")
    print(f"of cores x 1-core   : {ossctl_speed / ceiling:.0%}   (target >= 85%; whole command, start-up included)")
    print(f"library, in-process : {t_lib:6.2f} s  {total / t_lib / 2**20:8.0f} MiB/s = {total / t_lib / ceiling:.0%} of cores x 1-core")


if __name__ == "__main__":
    main()
