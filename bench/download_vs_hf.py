"""Download + verify three parts from a local hub on loopback (issue 24, row "download").

Baseline: `hf download REPO --local-dir DIR` alone (no verification at all). Candidate:
`ossctl download` (parts in parallel, each hashed while it is written, checked against
the hub's SHA-256, fsynced, the manifest written). Both fetch from the same in-process
hub server (os.sendfile) on 127.0.0.1; each run starts from an empty directory; the two
alternate, in an order that rotates between rounds. Prints medians over ``--runs``
rounds and the ratio (goal: <= 1.0x: the verification hidden behind the wire).
``--shell`` adds the seed's way, `hf download` then `sha256sum` of each part.

    python bench/download_vs_hf.py [--size-mib 170] [--runs 5] [--shell]
"""

from __future__ import annotations

import argparse
import os
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.hubserver import HubServer  # noqa: E402

REPO = "bench/model-GGUF"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=170)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--shell", action="store_true", help="also time hf download + sha256sum")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ossctl-bench-dl-"))
    try:
        src = work / "src"
        src.mkdir()
        parts = []
        block = os.urandom(1 << 20)
        for i in range(1, 4):
            p = src / f"bench-{i:05d}-of-00003.gguf"
            with open(p, "wb") as fh:
                fh.write(b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little") + (2).to_bytes(8, "little"))
                for key, val in (("split.no", i - 1), ("split.count", 3)):
                    fh.write(len(key).to_bytes(8, "little") + key.encode() + (2).to_bytes(4, "little") +
                             val.to_bytes(2, "little"))
                for j in range(a.size_mib):
                    fh.write(block[j:] + block[:j])
            parts.append(p)
        hub = HubServer().start()
        hub.add_repo(REPO, parts)
        env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                   HF_HOME=str(work / "hfhome"), OSSCTL_HOME=str(work / "ossctl-home"), OSSCTL_DISK_MARGIN="0")
        env.pop("HF_TOKEN", None)

        def hf_way(verify: bool) -> float:
            out = work / "hf-out"
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(work / "hfhome", ignore_errors=True)
            t = time.perf_counter()
            subprocess.run(["hf", "download", REPO, "--local-dir", str(out)], check=True, env=env,
                           capture_output=True)
            if verify:
                subprocess.run(["sha256sum", *sorted(map(str, out.glob("*.gguf")))], check=True, capture_output=True)
            return time.perf_counter() - t

        def ossctl_way() -> float:
            out = work / "ossctl-out"
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ossctl", "download", REPO, "--dir", str(out)], check=True,
                           env=env, capture_output=True, cwd=ROOT)
            return time.perf_counter() - t

        ways = {"hf download": lambda: hf_way(False), "ossctl download": ossctl_way}
        if a.shell:
            ways["hf + sha256sum"] = lambda: hf_way(True)
        names = list(ways)
        got: dict[str, list[float]] = {n: [] for n in names}
        loads = [os.getloadavg()[0]]
        for r in range(a.runs):
            for n in names[r % len(names):] + names[:r % len(names)]:
                got[n].append(ways[n]())
            loads.append(os.getloadavg()[0])
        hub.stop()
        total = 3 * a.size_mib
        base = statistics.median(got["hf download"])
        print(f"parts: 3 x {a.size_mib} MiB over 127.0.0.1, cores: {os.cpu_count()}, {a.runs} rounds (medians), "
              f"1-min load {min(loads):.1f}..{max(loads):.1f}")
        for n in names:
            t = statistics.median(got[n])
            print(f"{n:16} : {t:6.2f} s  ({total / t:6.0f} MiB/s)  {t / base:5.2f}x  runs {' '.join(f'{x:.2f}' for x in got[n])}")
        print("goal: ossctl download <= 1.0x hf download alone")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
