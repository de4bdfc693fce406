"""Issue 23 on a real GPU: what llama.cpp's ``--fit`` moves when a profile leaves it to
llama.cpp, and whether the deploy's measured-vs-plan check catches it.

Runs on the device machine (one H200) next to a CUDA llama-server built from the pinned
sources (``bench/fit_device.sh`` builds it and writes the model): a full-size
gpt-oss-20b-shaped GGUF (``vram_multi_gpu.py gen``, 24 layers, 32 MXFP4 experts). To make
the GPU tight without a bigger model, a ballast process holds GPU memory (``cuMemAlloc``
through the driver's libcuda) so that ossctl's plan for the profile leaves ``--leave`` MiB
(< 1 GiB: less than llama.cpp's 1 GiB fit margin) of the free memory NVML reports. Then,
each with llama-server started with the argv ``ossctl deploy`` builds
(``vram_multi_gpu.run_case``: ``llama_server.llama_args``, ``-lv 4``):

- ``default`` (``fit = false``): ``-ngl 99 --fit off``: the plan must hold, NVML per process
  within 0 … +3 % of it (plan − measured over measured, as ``vram plan`` reports drift);
- ``fit`` (``fit = true``): no ``-ngl``, ``--fit on``: llama.cpp keeps 1 GiB free by moving
  MoE experts to the CPU (the context is the profile's, so it is not shrunk); what it
  chose is read from its log with ``ossctl.serve.fit_log`` and the deploy's check
  (``ossctl.gpu.release_vram.below_plan``) must fail.

    python3 bench/fit_device.py --dir /tmp/m20 --bin /tmp/lcpbuild/bin --out results.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import vram_multi_gpu as V  # noqa: E402 - the case runner and model writer of issue 12's bench

MiB = 1024 ** 2

BALLAST = r"""
import ctypes, sys, time
cu = ctypes.CDLL("libcuda.so.1")
def ok(r, what):
    if r != 0:
        print(f"{what} failed: {r}", flush=True); sys.exit(1)
ok(cu.cuInit(0), "cuInit")
dev, ctx, ptr = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
ok(cu.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
ok(cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
ok(cu.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
ok(cu.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(int(sys.argv[1]))), "cuMemAlloc")
print("ready", flush=True)
time.sleep(3600)
"""


def ballast(nbytes: int) -> subprocess.Popen:
    """A process holding ``nbytes`` on GPU 0 until it is killed."""
    p = subprocess.Popen([sys.executable, "-c", BALLAST, str(nbytes)], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    if line != "ready":
        p.kill()
        raise RuntimeError(f"ballast of {nbytes // MiB} MiB: {line or 'exited'}")
    return p


def plan_total(case: dict, model_dir: Path, nv) -> tuple[int, int]:
    """(bytes ossctl plans on GPU 0 for ``case``, bytes NVML says are free there now)."""
    from ossctl.gpu import fit

    st = V._nvml_state(nv)[0]
    prof = V.resolve(case, model_dir)
    plan = fit.plan_profile(prof, model_dir, devices=[fit.Device(0, st["name"], st["total"], st["free"])],
                            compared_against="nvml").to_dict()
    return int(plan["gpus"][0]["total"]), int(st["free"])


def main() -> None:
    import pynvml as nv

    from ossctl.gpu.release_vram import below_plan, plan_per_gpu
    from ossctl.serve.fit_log import parse_fit_log
    from ossctl.serve.llama_flags import check_flags, parse_help_flags

    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ctx", type=int, default=32768)
    ap.add_argument("--leave", type=int, default=128, help="MiB the plan leaves free (< 1024)")
    ap.add_argument("--prompt-tokens", type=int, default=4096)
    a = ap.parse_args()
    model_dir, bin_dir = Path(a.dir), Path(a.bin)
    nv.nvmlInit()
    help_text = subprocess.run([str(bin_dir / "llama-server"), "--help"], capture_output=True, text=True).stdout
    known = parse_help_flags(help_text)
    base = {"ctx": a.ctx, "gpus": [0]}
    cases = [("default", base), ("fit", {**base, "fit": True})]
    from ossctl.serve.llama_server import llama_args

    for name, case in cases:  # the argv as deploy spells it for this build's --help
        argv = llama_args(V.resolve(case, model_dir), "m.gguf", 8080, False, help_text)
        bad = check_flags(argv, known)
        print(f"{name} argv: {' '.join(argv)}" + (f"  PROBLEMS: {bad}" if bad else ""), flush=True)

    total, free = plan_total(base, model_dir, nv)
    hold = free - total - a.leave * MiB
    b = ballast(hold)
    try:
        # the ballast's own CUDA context takes some too: correct once so the plan leaves --leave MiB
        total, free = plan_total(base, model_dir, nv)
        off = free - total - a.leave * MiB
        if abs(off) > 16 * MiB:
            b.kill()
            b.wait()
            hold += off
            b = ballast(hold)
            total, free = plan_total(base, model_dir, nv)
        print(f"ballast holds {hold // MiB} MiB; GPU 0 free {free // MiB} MiB; plan {total // MiB} MiB "
              f"-> leaves {(free - total) // MiB} MiB (llama.cpp's fit margin: 1024 MiB)", flush=True)
        with open(a.out, "a") as out:
            for name, case in cases:
                rec = V.run_case(f"fit-{name}", case, model_dir, bin_dir, nv, 18100, a.prompt_tokens)
                log_path = Path(os.environ.get("BENCH_LOGDIR", "/tmp")) / f"fit-{name}.log"
                fit_choice = parse_fit_log(log_path.read_text(errors="replace"))
                vram = {"plan": plan_per_gpu(rec["plan"]), "measured": {int(k): v for k, v in rec["measured"].items()}}
                rec.update(ballast_bytes=hold, fit=fit_choice.to_dict(), check=below_plan(vram),
                           plan_leaves=free - total)
                out.write(json.dumps(rec) + "\n")
                out.flush()
                p, m = vram["plan"].get(0), vram["measured"].get(0)
                drift = f"{(p - m) / m * 100:+.1f} %" if p and m else "-"
                print(f"{name}: {'ERROR ' + rec['error'] if rec.get('error') else ''}plan {p and p // MiB} MiB, "
                      f"measured {m and m // MiB} MiB (plan - measured = {drift} of measured); "
                      f"{fit_choice.describe()}; deploy check: "
                      f"{'FAILS: ' + '; '.join(rec['check']) if rec['check'] else 'passes'}", flush=True)
    finally:
        b.kill()
        b.wait()


if __name__ == "__main__":
    main()
