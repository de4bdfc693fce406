"""Hash three cached parts: `ossctl hash` and the library against a plain threaded
`readinto` loop, in the same run (issue 24, row "hash").

    python bench/hash_parts.py [--size-mib 1024] [--rounds 5] [--dir /tmp/ossctl-bench-hash] [--shell]

Every contender runs as its own process (a fresh interpreter each, so start-up is in
every figure), from the page cache (the parts are read once before timing), in an order
that rotates between rounds so drift hits all alike:

- ``plain 8M`` / ``plain 1M``: one thread per part, ``readinto`` a preallocated buffer
  of that size, ``update`` a memoryview of it — the loop the issue names as the
  baseline; the better of the two in each round is "best plain";
- ``library``: ``ossctl.artifacts.hashing.sha256_files`` in a bare interpreter;
- ``ossctl hash``: the whole command (CLI start-up, GGUF split checks, output);
- ``sha256sum`` (``--shell``): the seed's shell way, one part after another.

Prints medians over rounds of GB/s (wall) and of GB per CPU-second (user + system of
the process: what a busy machine cannot take away), and the ratios to best plain (goal:
ossctl hash >= 0.95x). The parts are valid GGUF split parts (a tiny model's headers)
padded with random bytes to the size asked.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PLAIN = r'''
import hashlib, sys
from concurrent.futures import ThreadPoolExecutor
chunk = int(sys.argv[1])
def one(p):
    h = hashlib.sha256(); buf = bytearray(chunk); view = memoryview(buf)
    with open(p, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()
with ThreadPoolExecutor(len(sys.argv) - 2) as ex:
    print(list(ex.map(one, sys.argv[2:])))
'''
LIBRARY = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
           "from ossctl.artifacts.hashing import sha256_files; print(sha256_files([Path(p) for p in sys.argv[2:]]))")


def make_parts(d: Path, size: int) -> list[Path]:
    """Three GGUF split parts of ``size`` bytes each: a tiny model's parts (real headers,
    which `ossctl hash` checks) with random bytes appended."""
    sys.path.insert(0, str(ROOT))
    from tests.support.ggufgen import write_model

    d.mkdir(parents=True, exist_ok=True)
    parts = [d / f"bench-{i:05d}-of-00003.gguf" for i in range(1, 4)]
    if all(p.exists() and p.stat().st_size == size for p in parts):
        return parts
    with tempfile.TemporaryDirectory() as tmp:
        heads = write_model(Path(tmp), "bench", parts=3)
        block = os.urandom(1 << 20)
        for head, p in zip(heads, parts):
            data = head.read_bytes()
            if len(data) > size:
                raise SystemExit(f"--size-mib too small: a part's header alone is {len(data)} bytes")
            with open(p, "wb") as fh:
                fh.write(data)
                left, j = size - len(data), 0
                while left:
                    piece = (block[j % 251:] + block[:j % 251])[:left]
                    fh.write(piece)
                    left -= len(piece)
                    j += 1
    return parts


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the child) of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--dir", default="/tmp/ossctl-bench-hash")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--shell", action="store_true", help="also time sha256sum, one part after another")
    a = ap.parse_args()
    size = a.size_mib << 20
    parts = [str(p) for p in make_parts(Path(a.dir), size)]
    for p in parts:  # warm the page cache
        with open(p, "rb") as fh:
            while fh.read(8 << 20):
                pass
    total = 3 * size
    py = sys.executable
    runs = {
        "plain 8M": [py, "-c", PLAIN, str(8 << 20), *parts],
        "plain 1M": [py, "-c", PLAIN, str(1 << 20), *parts],
        "library": [py, "-c", LIBRARY, str(ROOT), *parts],
        "ossctl hash": [py, "-m", "ossctl", "--json", "hash", *parts],
    }
    if a.shell:
        runs["sha256sum"] = ["bash", "-c", 'for f in "$@"; do sha256sum "$f"; done | cut -d" " -f1 | tr -d "\\n" | sha256sum',
                             "_", *parts]
    names = list(runs)
    got: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    best_plain: list[tuple[float, float]] = []
    loads = [os.getloadavg()[0]]
    for r in range(a.rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            got[n].append(timed(runs[n]))
        pw = min(got["plain 8M"][-1][0], got["plain 1M"][-1][0])
        pc = min(got["plain 8M"][-1][1], got["plain 1M"][-1][1])
        best_plain.append((pw, pc))
        loads.append(os.getloadavg()[0])

    def med(rows, i):
        return statistics.median(total / x[i] / 1e9 for x in rows)

    bw, bc = med(best_plain, 0), med(best_plain, 1)
    print(f"3 parts x {a.size_mib} MiB, cached; {a.rounds} rounds, order rotating; cores {os.cpu_count()}; "
          f"1-min load {min(loads):.1f}..{max(loads):.1f}")
    print(f"{'':12} {'GB/s':>7} {'x plain':>8}   {'GB/CPU-s':>8} {'x plain':>8}")
    for n in names:
        w, c = med(got[n], 0), med(got[n], 1)
        print(f"{n:12} {w:7.3f} {w / bw:8.3f}   {c:8.3f} {c / bc:8.3f}")
    print(f"{'best plain':12} {bw:7.3f} {1:8.3f}   {bc:8.3f} {1:8.3f}")
    print("goal: ossctl hash >= 0.95x best plain (wall)")


if __name__ == "__main__":
    main()
