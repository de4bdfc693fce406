"""`ossctl bench --capacity` on a GPU host without Docker (the device machine): the users at
an SLA of the shipped prod (with the gpt-oss-20b-shaped model, ctx 32768) and of the profile
`ossctl tune` wrote for it, side by side, each served natively (NativeRuntime, the argv deploy
builds) through a Trial, measured by ossctl's own capacity search (doubling, then bisection).

    python3 bench/capacity_device.py --model-dir /tmp/m20 --bin /tmp/lcpbuild/bin --out $OUT \
        --tuned bench/results/tune_h200/tunebench-tuned.toml --sla "p95<20s,errors<1%"

bench/results/capacity_h200 was measured when the shipped prod had ubatch 512 (it now has
2048, from that tune): the prod row there is that earlier prod.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tune_device import bench_home, ensure_manifest, line_log  # noqa: E402  (same folder)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tuned", required=True, help="the tuned profile tune wrote (extends tunebench)")
    ap.add_argument("--home", default="/tmp/cap-home")
    ap.add_argument("--sla", default="p95<20s,errors<1%")
    ap.add_argument("--ctx", type=int, default=32768)
    ap.add_argument("--base", default="prod", help="the shipped profile the bench profile extends")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--max-users", type=int, default=64)
    a = ap.parse_args()

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(a.model_dir).resolve()
    ensure_manifest(model_dir)
    bench_home(Path(a.home), model_dir, a.ctx, a.base)
    (Path(a.home) / "profiles" / "tunebench-tuned.toml").write_text(Path(a.tuned).read_text())

    from ossctl.artifacts.manifest import read_manifest
    from ossctl.ops.bench import bench_options, run_capacity
    from ossctl.serve.native import NativeRuntime
    from ossctl.serve.profiles import resolve_profile
    from ossctl.serve.trial import Trial
    from ossctl.settings import load_settings

    log = line_log(out / "capacity.log")

    settings = load_settings(dict(os.environ))
    manifest = read_manifest(model_dir)
    rt = NativeRuntime(a.bin, out / "server-logs")
    rows = []
    for name in ("tunebench", "tunebench-tuned"):
        profile = resolve_profile(settings, name)
        opts = bench_options(settings, users=None, duration=None, requests=a.requests, timeout="300s", sla=a.sla,
                             plot=None, prompts=None, reasoning_effort=None, stream=True, max_tokens=a.max_tokens,
                             model=None)
        t0 = time.monotonic()
        with Trial(settings, rt, profile, manifest, model_dir, log=log) as t:
            res = run_capacity(settings, opts, max_users=a.max_users, profile=None, url=t.url, api_key_file=None,
                               progress=log)
        cap = res["capacity"]
        at = next((lv for lv in res["levels"] if lv["users"] == cap["users"]), None)
        row = {"profile": name, "parallel": profile["parallel"], "ubatch": profile["ubatch"], "ctx": profile["ctx"],
               "sla": a.sla, "users_at_sla": cap["users"], "first_fail_users": cap["first_fail_users"],
               "steps": cap["steps"], "stopped": cap["stopped"], "wall_s": round(time.monotonic() - t0, 1),
               "at_capacity": at}
        rows.append(row)
        (out / "capacity.json").write_text(json.dumps(rows, indent=1, default=str))
        log(f"{name}: {cap['users']} users at {a.sla} (first failing level {cap['first_fail_users']}, "
            f"levels {cap['steps']}, {row['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
