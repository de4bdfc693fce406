"""Issue 23's pure parts, exact values: the fit flag spelled from --help, what llama.cpp's
fit chose read from its log (lines in the format strings of build b11312's
common/fit.cpp, src/llama-context.cpp, src/llama-model.cpp), images named by digest,
the performance gate's comparison, GPU memory below the plan, the fleet's canary phases."""

from __future__ import annotations

import pytest

from ossctl.errors import ConflictError, UsageError
from ossctl.fleet.rollout import _phases
from ossctl.gpu.release_vram import below_plan
from ossctl.loadtest.gate import parse_regress, validate_bench_cfg
from ossctl.serve import llama_flags as F
from ossctl.serve import llama_server as L
from ossctl.serve.fit_log import parse_fit_log
from ossctl.serve.image_pin import image_change, image_digest, pull_ref, refuse_unpinned, short
from ossctl.serve.perf_gate import baseline, compare, figures, settings_of
from ossctl.serve.profiles import validate
from ossctl.serve.releases import Release, State

# the lines of `llama-server --help` of b11312 that matter here, verbatim
HELP_FIT = """\
-m,    --model FNAME                    model path
-c,    --ctx-size N                     size of the prompt context
-ngl,  --gpu-layers, --n-gpu-layers N   max. number of layers to store in VRAM, either an exact number,
-fit,  --fit [on|off]                   whether to adjust unset arguments to fit in device memory ('on' or
-fitt, --fit-target MiB0,MiB1,MiB2,...
-lv,   --verbosity, --log-verbosity N   Set the verbosity threshold. Messages with a higher verbosity will be
-b,    --batch-size N                   logical maximum batch size
-ub,   --ubatch-size N                  physical maximum batch size
-np,   --parallel N                     number of server slots
-fa,   --flash-attn [on|off|auto]       set Flash Attention use
--jinja, --no-jinja                     whether to use jinja template engine for chat
--host HOST                             ip address to listen
--port PORT                             port to listen
"""
HELP_NO_FIT = "\n".join(x for x in HELP_FIT.splitlines() if "fit" not in x) + "\n"


def prof(**over):
    raw = {"model": "120b", "image": "img:b1", "ctx": 4096}
    raw.update(over)
    return validate(raw, "t")


def argv(help_text, **over):
    return L.llama_args(prof(**over), "m.gguf", 8080, False, help_text)


# ------------------------------------------------------------------ fit flag

def test_fit_off_is_stated_on_builds_with_fit_and_absent_without():
    assert argv(HELP_FIT)[:10] == ["-m", "/models/m.gguf", "-c", "4096", "-ngl", "99", "--fit", "off", "-b", "2048"]
    assert argv(HELP_NO_FIT)[:8] == ["-m", "/models/m.gguf", "-c", "4096", "-ngl", "99", "-b", "2048"]
    assert not any("fit" in a for a in argv(HELP_NO_FIT))
    # the why of the dry run
    assert "stated" in F.plan(prof(), HELP_FIT)["fit"].why
    assert F.plan(prof(), HELP_NO_FIT)["fit"].args == ()


def test_fit_on_leaves_ngl_and_experts_to_llama_cpp_and_logs_its_choice():
    a = argv(HELP_FIT, fit=True, n_cpu_moe=4)
    assert a[:8] == ["-m", "/models/m.gguf", "-c", "4096", "--fit", "on", "-lv", "4"]
    assert "-ngl" not in a and "--n-cpu-moe" not in a
    # a build without -lv: still on, the log then shows no decision
    assert argv(HELP_FIT.replace("-lv,   --verbosity, --log-verbosity N", "--verbose-x"), fit=True)[4:6] == \
        ["--fit", "on"]
    with pytest.raises(UsageError, match="`fit` = true cannot be honoured: this llama-server build has no --fit"):
        argv(HELP_NO_FIT, fit=True)


def test_fit_keys_validate_and_fit_is_managed():
    assert (prof()["fit"], prof()["pin_image"]) == (False, False)
    with pytest.raises(UsageError, match="`fit` must be true or false"):
        prof(fit="on")
    with pytest.raises(UsageError, match="`pin_image` must be true or false"):
        prof(pin_image=1)
    with pytest.raises(UsageError, match="must not set --fit: ossctl sets it from the profile key `fit`"):
        prof(extra_args=["--fit", "on"])


# ------------------------------------------------------------------ the fit log

FIT_MOVED = """\
0.00.004.813 I cmn  common_init_: fitting params to device memory ...
0.00.004.878 I common_params_fit_impl: getting device memory data for initial parameters:
0.00.007.459 I common_params_fit_impl: projected to use 146512 MiB of device memory vs. 143156 MiB of free device memory
0.00.007.460 I common_params_fit_impl: cannot meet free memory target of 1024 MiB, need to reduce device memory by 4380 MiB
0.00.007.461 I common_params_fit_impl: context size set by user to 131072 -> no change
0.00.007.470 I common_params_fit_impl: with only dense weights in device memory there is a total surplus of 78000 MiB
0.00.007.471 I common_params_fit_impl: id=0, target=142132 MiB
0.00.007.472 I common_params_fit_impl: filling dense-only layers back-to-front:
0.00.007.473 I common_params_fit_impl:   - CUDA0 (NVIDIA H200): 37 layers, 64000 MiB used,  79156 MiB free
0.00.007.474 I common_params_fit_impl: converting dense-only layers to full layers and filling them front-to-back with overflow to next device/system memory:
0.00.007.475 I common_params_fit_impl:   - CUDA0 (NVIDIA H200): 37 layers ( 3 overflowing), 141900 MiB used,   1256 MiB free
0.00.007.475 I common_fit_params: successfully fit params to free device memory
0.00.007.477 I common_fit_params: fitting params to free memory took 0.41 seconds
0.00.108.632 I llama_context: n_ctx                 = 131072
0.00.108.700 I load_tensors: offloaded 37/37 layers to GPU
"""


def test_fit_log_that_moved_experts():
    c = parse_fit_log(FIT_MOVED)
    assert c.to_dict() == {
        "status": "changed", "reason": None, "ctx_from": None, "ctx_to": None, "experts_to_cpu": True,
        "devices": [{"device": "CUDA0 (NVIDIA H200)", "layers": 37, "overflowing": 3, "used_mib": 141900,
                     "free_mib": 1256}],
        "n_ctx": 131072, "offloaded": 37, "layers": 37}
    assert c.describe() == ("llama.cpp's fit changed the placement: MoE experts partly on the CPU; CUDA0: 37 layers "
                            "(3 overflowing), 141900 MiB used, 1256 MiB free; offloaded 37/37 layers")


def test_fit_log_context_reduced_gave_up_and_unchanged():
    c = parse_fit_log("common_params_fit_impl: context size reduced from 131072 to 32768 -> need 4608 MiB less "
                      "memory in total\ncommon_params_fit_impl: entire model can be fit by reducing context\n"
                      "common_fit_params: successfully fit params to free device memory\n"
                      "llama_context: n_ctx                 = 32768\n")
    assert (c.status, c.ctx_from, c.ctx_to, c.n_ctx, c.experts_to_cpu) == ("changed", 131072, 32768, 32768, False)
    assert c.describe() == "llama.cpp's fit changed the placement: context 131072 -> 32768"
    g = parse_fit_log("0.00.005 W common_fit_params: failed to fit params to free device memory: "
                      "n_gpu_layers already set by user to 99, abort\n")
    assert (g.status, g.reason) == ("failed", "n_gpu_layers already set by user to 99, abort")
    # the CPU build of b11312 at -lv 4 (what the tests' container prints)
    u = parse_fit_log("0.00.007.459 I common_params_fit_impl: projected to use 2 MiB of host memory vs. 24105 MiB of "
                      "total host memory\n0.00.007.473 I common_params_fit_impl: will leave 24102 >= 1024 MiB of system "
                      "memory, no changes needed\n0.00.007.475 I common_fit_params: successfully fit params to free "
                      "device memory\n0.00.008.632 I llama_context: n_ctx                 = 512\n")
    assert (u.status, u.n_ctx, u.devices) == ("unchanged", 512, [])
    assert parse_fit_log("srv  llama_server: model loaded\n").status == "not-seen"


# ------------------------------------------------------------------ images by digest

def rel(**kw):
    return Release(id="r0001", profile="prod", state=State.OK, **kw)


def test_image_digest_prefers_the_images_own_repo_digest_then_the_id():
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    assert image_digest("ghcr.io/ggml-org/llama.cpp:server-cuda-b11312", "sha256:" + "c" * 64,
                        [f"docker.io/x/y@{b}", f"ghcr.io/ggml-org/llama.cpp@{a}"]) == a
    assert image_digest("reg:5000/x/y:t", None, [f"reg:5000/x/y@{a}"]) == a
    assert image_digest("local/img:1", b, []) == b
    assert image_digest("local/img:1", None, None) is None
    assert short(a) == "sha256:aaaaaaaaaaaa…" and short(None) == "-"
    assert pull_ref("reg:5000/x/y:t", a) == f"reg:5000/x/y@{a}"
    assert pull_ref("ghcr.io/ggml-org/llama.cpp:server-cuda-b11312", a) == f"ghcr.io/ggml-org/llama.cpp@{a}"


def test_image_change_lines():
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    img = "ghcr.io/ggml-org/llama.cpp:server-cuda-b11312"
    cur = rel(image=img, image_id="sha256:" + "9" * 64, image_digests=[f"ghcr.io/ggml-org/llama.cpp@{b}"])
    assert image_change("prod", img, a, cur) == \
        f"prod: image {img} is now sha256:aaaaaaaaaaaa… (was sha256:bbbbbbbbbbbb…)"
    assert image_change("prod", img, b, cur) is None
    assert image_change("prod", "x:2", a, cur) == f"prod: image x:2 (sha256:aaaaaaaaaaaa…) replaces {img} (sha256:bbbbbbbbbbbb…)"
    assert image_change("prod", img, a, None) is None
    err = refuse_unpinned("prod: image x is now …", "prod")
    assert isinstance(err, ConflictError) and err.exit_code == 6
    assert "--allow-image-change" in err.hint and err.message.endswith("the profile sets pin_image = true")
    assert rel(image="x:1", image_id=a).digest == a  # a record written before image_digest was kept


# ------------------------------------------------------------------ the performance gate

def test_regress_and_effort_keys():
    assert parse_regress("10%") == 0.10 and parse_regress(5) == 0.05 and parse_regress(" 2.5 % ") == 0.025
    for bad in ("ten", "100%", -1, True):
        with pytest.raises(UsageError, match="`bench.regress` must be a percentage"):
            parse_regress(bad)
    cfg = validate_bench_cfg({"users": [1, 2], "regress": "10%", "reasoning_effort": "low,high"})
    assert (cfg["regress"], cfg["efforts"]) == (0.10, ["low", "high"])
    assert "regress" not in validate_bench_cfg({})
    with pytest.raises(UsageError, match="`bench.reasoning_effort`: .* 2 levels"):
        validate_bench_cfg({"users": [1, 2], "reasoning_effort": "low,high,medium"})
    assert settings_of(cfg) == {"users": [1, 2], "requests": 4, "duration_s": None, "max_tokens": 16,
                                "stream": True, "efforts": ["low", "high"]}


def test_figures_and_compare_per_level_and_effort():
    report = {"levels": [{"users": 1, "output_tps": 300.04, "latency_s": {"p95": 0.05321}},
                         {"users": 2, "output_tps": 500.0, "latency_s": {"p95": None}}]}
    cfg = {"efforts": ["low", "high"]}
    figs = figures(report, cfg)
    assert figs == [{"users": 1, "effort": "low", "output_tps": 300.04, "latency_p95_s": 0.0532},
                    {"users": 2, "effort": "high", "output_tps": 500.0, "latency_p95_s": None}]
    new = [{"users": 1, "effort": "low", "output_tps": 30.0, "latency_p95_s": 0.5},
           {"users": 2, "effort": "high", "output_tps": 460.0, "latency_p95_s": 0.1}]
    assert compare(figs, new, 0.10) == [
        "1 user, effort low: output 30.0 tok/s vs 300.0 tok/s before (-90 %)",
        "1 user, effort low: p95 latency 0.500 s vs 0.053 s before (+840 %)"]
    # within 10 %: 460 >= 450; another effort is another level (not compared)
    assert compare(figs, [{"users": 1, "effort": "high", "output_tps": 1.0, "latency_p95_s": 9.0}], 0.10) == []
    assert compare([{"users": 1, "effort": None, "output_tps": 100.0, "latency_p95_s": 1.0}],
                   [{"users": 1, "effort": None, "output_tps": 89.0, "latency_p95_s": 1.11}], 0.10) == [
        "1 user: output 89.0 tok/s vs 100.0 tok/s before (-11 %)",
        "1 user: p95 latency 1.110 s vs 1.000 s before (+11 %)"]


def test_baseline_only_under_the_same_settings():
    s = {"users": [1], "requests": 4}
    rec = rel(bench={"summary": "x", "settings": s, "levels": [{"users": 1}]})
    assert baseline(rec, s) is rec.bench
    assert baseline(rec, {"users": [1], "requests": 8}) is None
    assert baseline(rel(bench={"summary": "old record"}), s) is None
    assert baseline(None, s) is None


# ------------------------------------------------------------------ GPU memory against the plan

def test_below_plan_by_more_than_3_percent():
    gib = 2**30
    assert below_plan({"plan": {"0": 100 * gib, "1": 100 * gib}, "measured": {"0": 97 * gib, "1": 103 * gib}}) == []
    assert below_plan({"plan": {"0": 100 * gib, "1": 100 * gib}, "measured": {"0": 96 * gib}}) == [
        "GPU 0: 98304 MiB measured vs 102400 MiB planned (-4.0 %)",
        "GPU 1: 0 MiB measured vs 102400 MiB planned (-100.0 %)"]
    assert below_plan({"plan": {"0": gib}, "measured": {}}) == []  # nothing seen: no conclusion
    assert below_plan(None) == []


# ------------------------------------------------------------------ fleet canary

def test_canary_key_and_phases():
    hosts = [{"docker_host": "unix:///a.sock"}, {"docker_host": "unix:///b.sock"}, {"docker_host": "unix:///c.sock"}]
    assert prof(hosts=hosts, canary=1)["canary"] == 1
    with pytest.raises(UsageError, match="`canary` must be between 0 and 2, got 3"):
        prof(hosts=hosts, canary=3)
    with pytest.raises(UsageError, match="`canary` needs a fleet"):
        prof(canary=1)
    assert _phases(3, 1) == [(0, 1), (1, 3)]
    assert _phases(3, 0) == [(0, 3)]
