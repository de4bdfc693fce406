"""The pure parts of ``ossctl tune`` (ossctl/ops/tune.py): the default space, the
overrides a point makes (ctx per slot kept, batch raised), the VRAM plan that skips a
point, the ranking, the tuned profile's text, the options' one-line errors."""

from __future__ import annotations

import tomllib

import pytest

from ossctl.errors import UsageError
from ossctl.gpu.fit import Device
from ossctl.ops.tune import (
    TrialRow, default_space, plan_point, point_overrides, score_of, start_point, tune_options, tuned_toml,
)
from ossctl.serve.profiles import DEFAULTS, validate

MiB = 1 << 20


def _profile(**over):
    return validate({**DEFAULTS, "model": "20b", "image": "ghcr.io/ggml-org/llama.cpp:server-b11312",
                     "ctx": 4096, **over}, "p")


def test_default_space_gpu_and_cpu():
    gpu = _profile(ctx=32768, parallel=1, ubatch=512, gpus="all", cache_type_k="q8_0", cache_type_v="q8_0",
                   n_cpu_moe=8)
    assert default_space(gpu, 16) == {"parallel": (1, 2, 4, 8, 16), "ubatch": (256, 512, 1024, 2048),
                                      "flash_attn": ("on", "off"), "cache_type": ("f16", "q8_0"),
                                      "n_cpu_moe": (0, 4, 8)}
    assert start_point(gpu, default_space(gpu, 16)) == {"parallel": 1, "ubatch": 512, "flash_attn": "auto",
                                                        "cache_type": "q8_0", "n_cpu_moe": 8}
    cpu = _profile(gpus="none", n_gpu_layers=0, parallel=3, ubatch=64)
    s = default_space(cpu, 4)
    assert s["parallel"] == (1, 2, 3, 4) and s["ubatch"] == (64, 256, 512, 1024, 2048) and "threads" in s
    assert "flash_attn" not in s and "cache_type" not in s


def test_point_overrides_keep_ctx_per_slot_and_batch_above_ubatch():
    p = _profile(ctx=8192, parallel=2, batch=512, ubatch=512)
    assert point_overrides(p, {"parallel": 2, "ubatch": 512}, 4096) == {}
    assert point_overrides(p, {"parallel": 8, "ubatch": 2048}, 4096) == {"parallel": 8, "ubatch": 2048,
                                                                          "ctx": 32768, "batch": 2048}
    assert point_overrides(p, {"cache_type": "q8_0"}, 4096) == {"cache_type_k": "q8_0", "cache_type_v": "q8_0"}


def test_plan_point_skips_what_does_not_fit(tmp_path):
    from tests.support.ggufgen import write_model

    write_model(tmp_path, "tiny", parts=1)  # 2 layers, ctx 4096: KV 512 bytes per token
    p = _profile(model=str(tmp_path), gpus="all", ctx=4096, parallel=1)
    dev = [Device(0, "small", 1 << 30, 800 * MiB)]
    small, why = plan_point(p, {"parallel": 1}, 4096, tmp_path, dev, 0)
    assert why is None and 700 * MiB < small < 800 * MiB
    big, why = plan_point(p, {"parallel": 64}, 4096, tmp_path, dev, 0)
    assert big is None and why.startswith("does not fit: GPU 0 needs ") and why.endswith("800.0 MiB free")
    # the margin counts: the small point no longer fits with 100 MiB kept free
    assert plan_point(p, {"parallel": 1}, 4096, tmp_path, dev, 100 * MiB)[0] is None
    # a CPU profile plans nothing; a point the profile rules refuse is skipped with their reason
    assert plan_point(p, {"parallel": 1}, 4096, tmp_path, None, 0) == (0, None)
    bad, why = plan_point(p, {"threads": -1}, 4096, tmp_path, None, 0)
    assert bad is None and "threads" in why


def test_ranking():
    ok = TrialRow({}, {}, output_tps=100.0, sla_ok=True)
    faster_failing = TrialRow({}, {}, output_tps=300.0, sla_ok=False)
    crashed = TrialRow({}, {}, status="failed")
    assert sorted([crashed, faster_failing, ok], key=lambda r: score_of(r, False)) == [crashed, faster_failing, ok]
    more_users = TrialRow({}, {}, output_tps=50.0, capacity_users=12, sla_ok=True)
    fewer = TrialRow({}, {}, output_tps=90.0, capacity_users=8, sla_ok=True)
    assert max([fewer, more_users], key=lambda r: score_of(r, True)) is more_users


def test_tuned_profile_text():
    p = _profile(parallel=1, ubatch=512)
    best = TrialRow({"parallel": 16, "ubatch": 2048}, {"parallel": 16, "ubatch": 2048, "ctx": 65536},
                    plan_bytes=15019 * MiB, vram_bytes=14880 * MiB, users=16, output_tps=339.1, latency_p50_s=11.9,
                    latency_p95_s=13.2, ttft_p50_s=0.41, requests=48, errors=0, sla_ok=True)
    base = TrialRow({"parallel": 1, "ubatch": 512}, {}, baseline=True, users=16, output_tps=171.0, requests=48,
                    sla_ok=True)
    text = tuned_toml("prod", best, base, "best of 7 trial(s)", p)
    assert tomllib.loads(text) == {"extends": "prod", "parallel": 16, "ubatch": 2048, "ctx": 65536}
    assert text.splitlines()[:4] == [
        "# written by ossctl tune: best of 7 trial(s)",
        "# measured: 339.1 output tok/s at 16 users, p50 11.90s, p95 13.20s, ttft p50 410ms, 0 errors of 48, SLA met",
        "# the profile 'prod' itself: 171.0 output tok/s at 16 users, p50 -, p95 -, ttft p50 -, 0 errors of 48, "
        "SLA met",
        "# VRAM: plan 15019 MiB, NVML 14880 MiB"]
    assert 'parallel = 16  # prod: 1' in text


@pytest.mark.parametrize("kw, message", [
    ({"sla": None, "users": 4}, "tune needs --sla"),
    ({"sla": "p95<", "users": 4}, "SLA condition 'p95<' is malformed"),
    ({"sla": "errors<5%"}, "give --users N"),
    ({"sla": "errors<5%", "users": 0}, "--users 0: give a whole number from 1 to 10000"),
    ({"sla": "errors<5%", "users": 4, "max_trials": 0}, "--max-trials 0: give at least 1"),
    ({"sla": "errors<5%", "users": 4, "space": ["ubatch=0"]}, "--space 'ubatch=0'"),
    ({"sla": "errors<5%", "users": 4, "min_ctx_per_slot": 0}, "--min-ctx-per-slot 0"),
])
def test_bad_options(kw, message):
    base = {"profile": "p", "sla": None, "users": None, "capacity": False, "space": None, "time": None,
            "max_trials": None, "min_ctx_per_slot": None, "margin": None, "take_over": False, "requests": None,
            "max_tokens": None}
    with pytest.raises(UsageError) as e:
        tune_options(**{**base, **kw})
    assert e.value.message.startswith(message) and e.value.exit_code == 2


def test_plot_panels():
    from ossctl.ops.tune import TuneResult
    from ossctl.ops.tune_plot import panels

    a = TrialRow({"parallel": 1, "ubatch": 512}, {}, baseline=True, output_tps=171.0, sla_ok=True)
    b = TrialRow({"parallel": 16, "ubatch": 512}, {}, output_tps=319.0, sla_ok=True)
    c = TrialRow({"parallel": 32, "ubatch": 512}, {}, output_tps=350.0, sla_ok=False)
    d = TrialRow({"parallel": 16, "ubatch": 2048}, {}, output_tps=339.0, sla_ok=True)
    e = TrialRow({"parallel": 8, "ubatch": 512}, {}, status="failed")
    res = TuneResult("prod", "p95<60s", 16, False, "coordinate-descent", {"parallel": [1, 8, 16, 32],
                                                                          "ubatch": [512, 2048]},
                     [a, b, c, d, e], [], d, a, 1.98, None, None, "/x", 1.0)
    par, ub = panels(res)
    assert par == {"knob": "parallel", "ylabel": "output tokens/s", "values": [1, 8, 16, 32],
                   "ok": [(0, 171.0), (2, 319.0), (2, 339.0)], "failing": [(3, 350.0)], "best": (2, 339.0)}
    assert ub["ok"] == [(0, 171.0), (0, 319.0), (1, 339.0)] and ub["failing"] == [(0, 350.0)] and ub["best"] == (1, 339.0)


def test_verdict():
    from ossctl.ops.tune import verdict

    base = TrialRow({"parallel": 1}, {}, baseline=True, output_tps=171.0, sla_ok=True, capacity_users=4)
    best = TrialRow({"parallel": 16}, {"parallel": 16}, output_tps=339.0, sla_ok=True, capacity_users=9)
    fails = TrialRow({"parallel": 32}, {"parallel": 32}, output_tps=400.0, sla_ok=False)
    assert verdict([base, best, fails], False) == (best, base, 1.982)
    assert verdict([base, best], True) == (best, base, 2.25)
    assert verdict([fails, TrialRow({}, {}, status="failed")], False) == (None, None, None)
    assert verdict([], False) == (None, None, None)
