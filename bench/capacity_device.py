"""`ossctl bench --capacity` on a GPU host without Docker (the device machine): the users at
an SLA of the shipped prod (with the gpt-oss-20b-shaped model, ctx 32768) and of the profile
`ossctl tune` wrote for it, side by side, each served natively (NativeRuntime, the argv deploy
builds) through a Trial, measured by ossctl's own capacity search (doubling, then bisection).

    python3 bench/capacity_device.py --model-dir /tmp/m20 --bin /tmp/lcpbuild/bin --out $OUT \
        --tuned bench/results/tune_h200/tunebench-tuned.toml --sla "p95<20s,errors<1%"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tune_device import ensure_manifest  # noqa: E402  (same folder)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tuned", required=True, help="the tuned profile tune wrote (extends tunebench)")
    ap.add_argument("--home", default="/tmp/cap-home")
    ap.add_argument("--sla", default="p95<20s,errors<1%")
    ap.add_argument("--ctx", type=int, default=32768)
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--max-users", type=int, default=64)
    a = ap.parse_args()

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(a.model_dir).resolve()
    ensure_manifest(model_dir)
    home = Path(a.home)
    (home / "profiles").mkdir(parents=True, exist_ok=True)
    (home / "profiles" / "tunebench.toml").write_text(
        f'extends = "prod"\nmodel = "{model_dir}"\nctx = {a.ctx}\nhealth_timeout = 300\nport = 18080\n')
    (home / "profiles" / "tunebench-tuned.toml").write_text(Path(a.tuned).read_text())
    os.environ["OSSCTL_HOME"] = str(home)

    from ossctl.artifacts.manifest import read_manifest
    from ossctl.ops.bench import bench_options, run_capacity
    from ossctl.serve.native import NativeRuntime
    from ossctl.serve.profiles import resolve_profile
    from ossctl.serve.trial import Trial
    from ossctl.settings import load_settings

    logf = open(out / "capacity.log", "a", encoding="utf-8")

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, file=sys.stderr, flush=True)
        logf.write(line + "\n")
        logf.flush()

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
