"""Issue 25: the cost of OpenSSF model signing next to `ossctl hash` of the same files.

A 3 x 1 GiB model (random bytes, split names, a manifest written from `ossctl hash`),
an EC P-256 key made here. Every command runs as `python -m ossctl ...` (start-up
included), best of --runs, page cache warm (the files are read once before timing):

- hash:                 `ossctl hash` of the three parts (the baseline: one pass over 3 GiB)
- sign:                 `ossctl sign DIR --key K` (parts trusted by size + mtime, as deploy does)
- sign --full:          `ossctl sign DIR --key K --full` (parts re-hashed once first)
- verify:               `ossctl verify DIR --signer P` (fast path + the signature)
- verify --full:        `ossctl verify DIR --full --signer P`
- verify --full (none): `ossctl verify DIR --full` of the same model unsigned (what the signature adds)
- library verify:       `python -m model_signing verify key DIR ...`: the library hashing every
                        file itself (what a second pass over the bytes would cost)

    python bench/sign_verify.py [--size-mib 1024] [--dir /tmp/ossctl-bench-sign] [--runs 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_parts(d: Path, size: int) -> list[Path]:
    """The tiny test model's three split parts (`ossctl hash` checks the GGUF split keys),
    each padded with pseudo-random bytes to ``size``."""
    from tests.support.ggufgen import write_model

    d.mkdir(parents=True, exist_ok=True)
    parts = [d / f"bench-{i:05d}-of-00003.gguf" for i in range(1, 4)]
    if all(p.exists() and p.stat().st_size == size for p in parts):
        return parts
    written = write_model(d, "bench", parts=3)
    assert [p.name for p in written] == [p.name for p in parts], written
    block = os.urandom(1 << 20)
    for p in parts:
        with open(p, "ab") as fh:
            j = 0
            while fh.tell() < size:
                chunk = block[j % 251:] + block[: j % 251]
                fh.write(chunk[: size - fh.tell()])
                j += 1
    return parts


def run(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, cwd=ROOT)


def best(fn, runs: int) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds of the child: user + system). CPU time is
    the figure to compare on a shared machine: other people's load stretches wall time."""
    walls, cpus = [], []
    for _ in range(runs):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
    return min(walls), min(cpus)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--dir", default="/tmp/ossctl-bench-sign")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sign_verify.txt"))
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from cryptography.hazmat.primitives import serialization as S
    from cryptography.hazmat.primitives.asymmetric import ec

    from ossctl.artifacts.local import hash_paths
    from ossctl.artifacts.manifest import FileEntry, build_manifest, write_manifest

    d = Path(a.dir)
    model = d / "model"
    parts = make_parts(model, a.size_mib << 20)
    for stale in ("model.sig", "manifest.toml"):
        (model / stale).unlink(missing_ok=True)
    m, _ = hash_paths(parts)
    write_manifest(model, build_manifest("bench/bench-GGUF", None, model,
                                         [FileEntry(f.name, f.size, f.sha256, (model / f.name).stat().st_mtime_ns)
                                          for f in m.files]))
    key = ec.generate_private_key(ec.SECP256R1())
    priv, pub = d / "key.pem", d / "key.pub"
    priv.write_bytes(key.private_bytes(S.Encoding.PEM, S.PrivateFormat.PKCS8, S.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(S.Encoding.PEM, S.PublicFormat.SubjectPublicKeyInfo))
    unsigned = d / "unsigned"
    shutil.rmtree(unsigned, ignore_errors=True)
    unsigned.mkdir()
    for p in [*parts, model / "manifest.toml"]:
        os.link(p, unsigned / p.name)  # the same bytes, no model.sig
    for p in parts:  # warm the page cache
        with open(p, "rb") as fh:
            while fh.read(8 << 20):
                pass

    py, oss = sys.executable, [sys.executable, "-m", "ossctl"]
    rows: list[tuple[str, float, float]] = []

    def measure(name: str, *args: str) -> None:
        rows.append((name, *best(lambda: run(*args), a.runs)))
        print(f"{name:<24} wall {rows[-1][1]:7.2f} s  cpu {rows[-1][2]:7.2f} s", flush=True)

    measure("hash", *oss, "--json", "hash", *map(str, parts))
    measure("sign", *oss, "--json", "sign", str(model), "--key", str(priv))
    measure("sign --full", *oss, "--json", "sign", str(model), "--key", str(priv), "--full")
    measure("verify", *oss, "--json", "verify", str(model), "--signer", str(pub))
    measure("verify --full", *oss, "--json", "verify", str(model), "--full", "--signer", str(pub))
    measure("verify --full (none)", *oss, "--json", "verify", str(unsigned), "--full")
    measure("library verify", py, "-m", "model_signing", "verify", "key", str(model), "--signature",
            str(model / "model.sig"), "--public_key", str(pub))
    wall0, cpu0 = rows[0][1], rows[0][2]
    lines = [f"# bench/sign_verify.py  {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC  "
             f"3 x {a.size_mib} MiB, best of {a.runs}, page cache warm, {os.cpu_count()} cores, "
             f"python -m ossctl start-up included, load average {os.getloadavg()[0]:.1f} at the end",
             "# cpu: user + system seconds of the command (the figure to compare on a shared machine)",
             f"{'command':<24} {'wall s':>8} {'x hash':>7} {'cpu s':>8} {'x hash':>7}"]
    lines += [f"{n:<24} {w:8.2f} {w / wall0:7.2f} {c:8.2f} {c / cpu0:7.2f}" for n, w, c in rows]
    text = "\n".join(lines) + "\n"
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
