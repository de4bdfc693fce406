"""`ossctl tune` on a GPU host without Docker (the device machine): llama-server runs as
native processes (ossctl.serve.native.NativeRuntime) from the same argv deploy builds,
everything else is ossctl's own tune (plan, trials, descent, records, tuned profile).

    python3 bench/tune_device.py --model-dir /tmp/m20 --bin /tmp/lcpbuild/bin --out $OUT \
        --users 16 --sla "p95<60s,errors<1%" --time 240s --space "parallel=1,16,32 ubatch=512,2048"

The model directory gets a manifest.toml if it has none (placeholder digests: a trial
reads the manifest's file list, never verifies it). The profile tuned is the shipped
`prod` with that model and --ctx (``--cpu``: the shipped `cpu` one, for a dry run here).
Writes to --out: tune.json (the --json shape), tune.txt (the table), the tuned profile,
tune.log (every progress line), server logs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def ensure_manifest(model_dir: Path) -> None:
    from ossctl.artifacts.manifest import FileEntry, build_manifest, write_manifest

    if (model_dir / "manifest.toml").exists():
        return
    paths = sorted(model_dir.glob("*.gguf"))
    entries = [FileEntry(p.name, p.stat().st_size, "0" * 64, p.stat().st_mtime_ns) for p in paths]
    write_manifest(model_dir, build_manifest("bench/gpt-oss-20b-shaped", "0" * 40, model_dir, entries,
                                             {"split.count": len(paths)}))


def bench_home(home: Path, model_dir: Path, ctx: int, base: str = "prod", name: str = "tunebench") -> str:
    """Point OSSCTL_HOME at ``home`` with one profile, ``name``: the shipped ``base`` with the
    bench model and ``ctx`` (port 18080, a 300 s gate). Returns ``name``."""
    (home / "profiles").mkdir(parents=True, exist_ok=True)
    (home / "profiles" / f"{name}.toml").write_text(
        f'extends = "{base}"\nmodel = "{model_dir}"\nctx = {ctx}\nhealth_timeout = 300\nport = 18080\n')
    os.environ["OSSCTL_HOME"] = str(home)
    return name


def line_log(path: Path):
    """A progress callback: each line time-stamped to stderr and appended to ``path``."""
    logf = open(path, "a", encoding="utf-8")

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, file=sys.stderr, flush=True)
        logf.write(line + "\n")
        logf.flush()

    return log


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--home", default="/tmp/tune-home")
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--sla", default="p95<60s,errors<1%")
    ap.add_argument("--time", default="240s")
    ap.add_argument("--space", default="parallel=1,16,32 ubatch=512,2048")
    ap.add_argument("--ctx", type=int, default=32768)
    ap.add_argument("--min-ctx-per-slot", type=int, default=4096)
    ap.add_argument("--requests", type=int, default=None)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--max-trials", type=int, default=12)
    ap.add_argument("--cpu", action="store_true", help="tune the shipped cpu profile (a dry run without a GPU)")
    a = ap.parse_args()

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(a.model_dir).resolve()
    ensure_manifest(model_dir)
    name = bench_home(Path(a.home), model_dir, a.ctx, "cpu" if a.cpu else "prod")

    from ossctl.ops.tune import tune, tune_options
    from ossctl.serve.native import NativeRuntime
    from ossctl.settings import load_settings

    log = line_log(out / "tune.log")

    settings = load_settings(dict(os.environ))
    opts = tune_options(profile=name, sla=a.sla, users=a.users, capacity=False, space=[a.space], time=a.time,
                        max_trials=a.max_trials, min_ctx_per_slot=a.min_ctx_per_slot, margin=None, take_over=False,
                        requests=a.requests if a.requests else 2 * a.users, max_tokens=a.max_tokens)
    rt = NativeRuntime(a.bin, out / "server-logs")
    t0 = time.monotonic()
    result = tune(settings, opts, runtime=rt, log=log)
    doc = result.to_dict()
    doc["wall_s"] = round(time.monotonic() - t0, 1)
    (out / "tune.json").write_text(json.dumps(doc, indent=1, default=str))
    try:
        from ossctl.cli.tune import render

        (out / "tune.txt").write_text(render(result) + "\n")
        print(render(result))
    except ImportError:  # no typer here: the JSON says it all
        pass
    if result.tuned_profile:
        (out / Path(result.tuned_profile).name).write_text(Path(result.tuned_profile).read_text())
    for t in result.trials:
        if t.plan_vs_nvml_pct is not None:
            log(f"plan vs NVML {t.plan_vs_nvml_pct:+.2f}% at {t.point}")
    log(f"trials {len(result.trials)}, skipped {len(result.skipped)}, speedup {result.speedup}, "
        f"wall {doc['wall_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
