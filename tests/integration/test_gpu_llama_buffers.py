"""The VRAM estimate against what the real llama-server (CPU build) allocates at start-up
for the tiny models: the model, KV and compute buffer sizes it logs.

Tolerances, and why:
- llama-server prints MiB with two decimals, so every logged line carries ±0.005 MiB of
  rounding: we allow 0.006 MiB per line summed (one per split part, one per KV cache).
- KV cache: the estimate follows llama.cpp's own sizing, so it must match to that
  rounding (the sliding-window cache of gpt-oss included).
- model buffer: the mapped region also spans the GGUF alignment padding (up to 32 bytes
  per tensor) that the estimate does not count: rounding + 32 bytes x tensors.
- compute buffer: a heuristic (masks + activations + logits, see ossctl/gpu/fit.py), not
  a replay of ggml's graph allocator: within 5% (+ rounding). On CUDA the real figure
  differs by backend-specific scratch; the mask and logits terms dominate there too.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from ossctl.artifacts.manifest import model_files
from ossctl.gpu import fit, model_facts
from tests.conftest import require_env
from tests.support.net import free_port

pytestmark = pytest.mark.llama
MiB = 1024 ** 2
ROUND = 0.006 * MiB
_LINE = re.compile(r"(CPU_Mapped model|CPU KV|CPU compute) buffer size =\s+([\d.]+) MiB")


def server_buffers(bin_dir: str, model: Path, args: list[str]) -> dict[str, float]:
    """Start llama-server, wait until the model is loaded, stop it; the logged buffer
    sizes in bytes (summed over parts / caches)."""
    cmd = [str(Path(bin_dir) / "llama-server"), "-m", str(model), "--host", "127.0.0.1", "--port", str(free_port()),
           "-lv", "4", "-t", "1", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 120
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "model loaded" in line or "exiting" in line or time.monotonic() > deadline:
                break
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out = {"model": 0.0, "kv": 0.0, "compute": 0.0, "model_lines": 0, "kv_lines": 0, "compute_lines": 0}
    for line in lines:
        m = _LINE.search(line)
        if m:
            key = {"CPU_Mapped model": "model", "CPU KV": "kv", "CPU compute": "compute"}[m.group(1)]
            out[key] += float(m.group(2)) * MiB
            out[key + "_lines"] += 1
    assert out["model"] and out["compute"], "".join(lines[-30:])
    return out


CASES = [
    # model, profile, llama-server flags
    ("llama", {"ctx": 4096, "parallel": 1}, ["-c", "4096", "-np", "1"]),
    ("llama", {"ctx": 4096, "parallel": 1, "flash_attn": "off"}, ["-c", "4096", "-np", "1", "-fa", "off"]),
    ("oss", {"ctx": 4096, "parallel": 1}, ["-c", "4096", "-np", "1"]),
    ("oss", {"ctx": 4096, "parallel": 3}, ["-c", "4096", "-np", "3"]),
    ("oss", {"ctx": 4096, "parallel": -1}, ["-c", "4096"]),  # server default: 4 slots, unified KV
    ("oss", {"ctx": 4096, "extra_args": ["--swa-full"]}, ["-c", "4096", "-np", "1", "--swa-full"]),
    ("oss", {"ctx": 8192, "ubatch": 256, "cache_type_k": "q8_0", "cache_type_v": "q8_0"},
     ["-c", "8192", "-np", "1", "-ub", "256", "-ctk", "q8_0", "-ctv", "q8_0", "-fa", "on"]),
    ("oss", {"ctx": 5000, "ubatch": 128}, ["-c", "5000", "-np", "1", "-ub", "128"]),
]


@pytest.mark.parametrize("which,profile,args", CASES, ids=[" ".join(c[2]) + f" [{c[0]}]" for c in CASES])
def test_estimate_matches_llama_server_log(which, profile, args, tiny_llama_dir, tiny_oss_dir):
    bin_dir = require_env("OSSCTL_TEST_LLAMA_BIN")
    model_dir = tiny_llama_dir if which == "llama" else tiny_oss_dir
    facts = model_facts.read_model_dir(model_dir)
    plan = fit.estimate(facts, fit.params_from_profile(profile, facts), [])  # no GPU: all on the CPU
    first = model_files(model_dir)[0]
    logged = server_buffers(bin_dir, first, args)

    assert logged["kv_lines"] == (2 if facts.n_swa else 1)  # one line per cache (full, sliding-window)
    assert abs(plan.host_kv - logged["kv"]) <= ROUND * logged["kv_lines"], (plan.host_kv, logged)
    assert abs(plan.host_weights - logged["model"]) <= ROUND * logged["model_lines"] + 32 * len(facts.tensors), \
        (plan.host_weights, logged)
    assert abs(plan.host_compute - logged["compute"]) <= 0.05 * logged["compute"] + ROUND, (plan.host_compute, logged)
