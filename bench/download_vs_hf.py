"""Bench 2 (issue 2): download + verify three parts from a local hub on loopback.

Baseline: `hf download REPO --local-dir DIR` followed by `sha256sum` of each part (the
seed's way to verify). Candidate: `ossctl download` (hashes while writing, parts in
parallel). Both fetch from the same in-process hub server (os.sendfile) on 127.0.0.1;
each run starts from an empty directory.

    python bench/download_vs_hf.py [--size-mib 256] [--runs 2]
"""

from __future__ import annotations

import argparse
import os
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
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=2)
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

        def hf_way() -> float:
            out = work / "hf-out"
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(work / "hfhome", ignore_errors=True)
            t = time.perf_counter()
            subprocess.run(["hf", "download", REPO, "--local-dir", str(out)], check=True, env=env,
                           capture_output=True)
            subprocess.run(["sha256sum", *sorted(map(str, out.glob("*.gguf")))], check=True, capture_output=True)
            return time.perf_counter() - t

        def ossctl_way() -> float:
            out = work / "ossctl-out"
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ossctl", "download", REPO, "--dir", str(out)], check=True,
                           env=env, capture_output=True, cwd=ROOT)
            return time.perf_counter() - t

        t_hf = min(hf_way() for _ in range(a.runs))
        t_os = min(ossctl_way() for _ in range(a.runs))
        hub.stop()
        total = 3 * a.size_mib
        print(f"parts: 3 x {a.size_mib} MiB over 127.0.0.1, cores: {os.cpu_count()}")
        print(f"hf download + sha256sum : {t_hf:6.2f} s  ({total / t_hf:6.0f} MiB/s)")
        print(f"ossctl download         : {t_os:6.2f} s  ({total / t_os:6.0f} MiB/s)")
        print(f"ratio ossctl / baseline : {t_os / t_hf:.2f}x   (target <= 0.6x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
