"""VRAM estimate: exact bytes on tiny GGUF files the tests write. Expected values are
worked out by hand in the comments from the models' shapes (not taken from the code)."""

from __future__ import annotations

import pytest

from ossctl.artifacts.gguf import GGML_TYPE_SIZE
from ossctl.errors import NotFoundError, UsageError
from ossctl.gpu import fit, model_facts
from ossctl.gpu.fit import Device

MiB = 1024 ** 2
GiB = 1024 ** 3

# tiny llama (tests/support/ggufgen defaults): n_embd 64, 2 layers, n_ff 128, 265 tokens, f32
EMBD = 265 * 64 * 4  # token_embd = output = 67_840 bytes
LAYER = 2 * 64 * 4 + 4 * 64 * 64 * 4 + 3 * 128 * 64 * 4  # norms + q,k,v,o + gate,up,down = 164_352
OUT_NORM = 64 * 4


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    return model_facts.read_model_dir(tiny_llama_dir)


@pytest.fixture(scope="module")
def oss_meta(oss_meta_path):
    return model_facts.read_facts([oss_meta_path])


@pytest.fixture(scope="module")
def oss(tiny_oss_dir):
    return model_facts.read_model_dir(tiny_oss_dir)


def test_ggml_type_table_matches_the_gguf_package():
    import gguf

    expected = {int(t): v for t, v in gguf.GGML_QUANT_SIZES.items()}
    assert GGML_TYPE_SIZE == expected


def test_facts_from_split_llama(llama):
    assert (llama.arch, llama.n_layer, llama.n_embd, llama.n_head, llama.n_vocab, llama.n_ff) == ("llama", 2, 64, 4, 265, 128)
    assert llama.n_head_kv == [4, 4] and llama.head_dim_k == 16 and llama.n_swa == 0
    assert llama.size_bytes == 2 * EMBD + 2 * LAYER + OUT_NORM == 464_640
    assert len(llama.tensors) == 3 + 2 * 9  # tensors of all 3 parts


def test_facts_from_gpt_oss_header(oss_meta):
    f = oss_meta
    assert (f.arch, f.n_layer, f.n_head, f.head_dim_k, f.n_swa, f.n_expert, f.n_expert_used) == ("gpt-oss", 4, 4, 32, 128, 4, 2)
    assert f.n_head_kv == [2, 2, 2, 2]
    assert f.swa_layers == [True, False, True, False]  # llama.cpp pattern 2: even layers slide
    assert f.tensors == []


def test_all_layers_on_one_gpu(llama):
    p = fit.estimate(llama, fit.params_from_profile({"ctx": 4096}, llama), [Device(0, "g", 8 * GiB, 8 * GiB)])
    g = p.gpus[0]
    assert g.layers == [0, 1] and g.output
    assert g.weights == 2 * LAYER + EMBD + OUT_NORM == 396_800  # token_embd stays in RAM
    assert p.host_weights == EMBD
    assert g.kv == 2 * 4096 * (64 * 2 + 64 * 2) == 2_097_152  # 2 layers x cells x (K + V row, f16)
    # mask 4096 x 512 x f16 + activations 512 x (4 x (3 x n_ff 128 + 3 x n_embd 64) + 4864)
    # + logits of one output (one slot) 265 x 4
    assert g.compute == 4_194_304 + 512 * (4 * 576 + 4864) + 1060 == 7_865_380
    assert g.runtime == fit.RUNTIME_OVERHEAD
    assert g.total == 396_800 + 2_097_152 + 7_865_380 + fit.RUNTIME_OVERHEAD
    assert not p.pipeline_parallel  # one GPU
    assert g.fits and p.fits and g.headroom == 8 * GiB - g.total


@pytest.mark.parametrize("ngl,gpu_layers,output,gpu_weights", [
    (1, [], True, EMBD + OUT_NORM),  # only the output layer
    (2, [1], True, LAYER + EMBD + OUT_NORM),  # the last layer and the output layer
    (0, [], False, 0),  # a CUDA build still copies RAM weights to the GPU for prompt batches (op offload)
])
def test_partial_offload_follows_llama_cpp(llama, ngl, gpu_layers, output, gpu_weights):
    p = fit.estimate(llama, fit.params_from_profile({"ctx": 4096, "n_gpu_layers": ngl}, llama), [Device(0)])
    g = p.gpus[0]
    assert (g.layers, g.output, g.weights) == (gpu_layers, output, gpu_weights)
    assert g.kv == len(gpu_layers) * 4096 * 256
    assert p.host_kv == (2 - len(gpu_layers)) * 4096 * 256
    assert p.host_weights == 464_640 - gpu_weights
    assert g.runtime == fit.RUNTIME_OVERHEAD


@pytest.mark.parametrize("split,first,second", [
    ((1.0, 1.0), [0, 1], []),  # 3 slots: x = 0, 1/3 < 0.5 on GPU 0; the output (2/3) on GPU 1
    ((1.0, 3.0), [0], [1]),  # cumulative 0.25: layer 1 (1/3) already on GPU 1
])
def test_tensor_split(llama, split, first, second):
    prof = {"ctx": 4096, "tensor_split": list(split)}
    p = fit.estimate(llama, fit.params_from_profile(prof, llama), [Device(0), Device(1)])
    assert p.gpus[0].layers == first and p.gpus[1].layers == second
    assert p.gpus[1].output and not p.gpus[0].output
    assert p.gpus[0].weights == len(first) * LAYER


def test_default_split_follows_free_memory(llama):
    p = fit.estimate(llama, fit.params_from_profile({"ctx": 4096}, llama),
                     [Device(0, free=1 * GiB, total=1 * GiB), Device(1, free=3 * GiB, total=3 * GiB)])
    assert p.gpus[0].layers == [0] and p.gpus[1].layers == [1]


# gpt-oss: K and V rows of 2 kv heads x 32 = 64 f16 values each -> 256 bytes per cell per layer
ROW = 2 * (2 * 32 * 2)


@pytest.mark.parametrize("prof,full,swa,streams,kv", [
    ({"ctx": 4096, "parallel": 1}, 4096, 768, 1, 2 * 4096 * ROW + 2 * 768 * ROW),  # swa: pad(128 + 512)
    ({"ctx": 4096, "parallel": 1, "extra_args": ["--swa-full"]}, 4096, 4096, 1, 4 * 4096 * ROW),
    ({"ctx": 4096, "parallel": 3}, 1536, 768, 3, 3 * (2 * 1536 * ROW + 2 * 768 * ROW)),  # pad(4096/3)
    ({"ctx": 4096, "parallel": -1}, 4096, 1024, 1, 2 * 4096 * ROW + 2 * 1024 * ROW),  # auto: 4 slots, unified
    ({"ctx": 4096, "parallel": 2, "extra_args": ["--kv-unified"]}, 4096, 768, 1, 2 * 4096 * ROW + 2 * 768 * ROW),
    ({"ctx": 8192, "ubatch": 256, "cache_type_k": "q8_0", "cache_type_v": "q8_0"}, 8192, 512, 1,
     2 * 8192 * 136 + 2 * 512 * 136),  # q8_0 row of 64 = 2 blocks x 34 bytes, twice (K, V)
    ({"ctx": 5000, "ubatch": 128}, 5120, 256, 1, 2 * 5120 * ROW + 2 * 256 * ROW),  # ctx padded to 256
])
def test_sliding_window_kv_cache(oss_meta, prof, full, swa, streams, kv):
    p = fit.estimate(oss_meta, fit.params_from_profile(prof, oss_meta), [Device(0)])
    assert p.kv_cells == {"full": full, "swa": swa, "streams": streams}
    assert p.gpus[0].kv == kv


def test_kv_can_stay_in_ram(oss_meta):
    p = fit.estimate(oss_meta, fit.params_from_profile({"ctx": 4096, "extra_args": ["--no-kv-offload"]}, oss_meta),
                     [Device(0)])
    assert p.gpus[0].kv == 0 and p.host_kv == 2 * 4096 * ROW + 2 * 768 * ROW


def test_n_cpu_moe_keeps_expert_tensors_in_ram(oss):
    experts_per_layer = 3 * (4 * 32 * 64 * 4) + 2 * (4 * 32 * 4) + 4 * 64 * 4  # gate/up/down + their biases
    base = fit.estimate(oss, fit.params_from_profile({"ctx": 4096}, oss), [Device(0)])
    moe = fit.estimate(oss, fit.params_from_profile({"ctx": 4096, "n_cpu_moe": 2}, oss), [Device(0)])
    assert base.host_weights == 265 * 64 * 4
    assert moe.host_weights == 265 * 64 * 4 + 2 * experts_per_layer
    assert base.gpus[0].weights - moe.gpus[0].weights == 2 * experts_per_layer
    assert moe.gpus[0].kv == base.gpus[0].kv  # attention stays on the GPU


def test_flash_attention_off_adds_the_score_matrix(oss_meta):
    on = fit.estimate(oss_meta, fit.params_from_profile({"ctx": 4096}, oss_meta), [Device(0)]).gpus[0].compute
    off = fit.estimate(oss_meta, fit.params_from_profile({"ctx": 4096, "flash_attn": "off"}, oss_meta),
                       [Device(0)]).gpus[0].compute
    # f32 instead of f16 masks over (4096 + 768) cells, plus 4096 x 512 x 4 heads x 4 bytes
    assert off - on == 512 * (4096 + 768) * 2 + 512 * 4096 * 4 * 4


def test_cache_type_must_divide_the_head_size(llama):
    with pytest.raises(UsageError, match="head size 16"):
        fit.params_from_profile({"ctx": 4096, "cache_type_k": "q8_0"}, llama)
    with pytest.raises(UsageError, match="not a KV cache type"):
        fit.params_from_profile({"ctx": 4096, "cache_type_v": "q3"}, llama)


def test_known_120b_without_download():
    from ossctl import catalog

    p = fit.plan_profile({"model": "120b", "ctx": 131072, "parallel": 1}, None,
                         devices=[Device(0, "H100", 97 * 10 ** 9, 97 * 10 ** 9)])
    assert p.model.approximate and p.model.source == "known-architecture"
    assert p.model.size_bytes == catalog.CATALOG["120b"].approx_size
    assert any("approximate" in w for w in p.warnings)
    # 18 full layers x 131072 cells + 18 SWA layers x pad(128 + 512) cells, 8 kv heads x 64 x f16 x (K+V)
    assert p.gpus[0].kv == 18 * 131072 * 2048 + 18 * 768 * 2048
    assert p.fits is True
    # what operators saw: about 65 GB used at idle (nvidia-smi MiB); the plan must land near it
    assert 60 * GiB < p.total_bytes < 68 * GiB


def test_unknown_model_without_files_is_a_clear_error(tmp_path):
    with pytest.raises(NotFoundError, match="not downloaded"):
        fit.plan_profile({"model": "someone/else-GGUF", "ctx": 4096}, tmp_path / "missing")


def test_suggestions_when_it_does_not_fit():
    p = fit.plan_profile({"model": "120b", "ctx": 131072}, None, devices=[Device(0, "", 40 * GiB, 40 * GiB)])
    assert p.fits is False
    changes = {s["change"]: s["value"] for s in p.suggestions}
    assert "ctx" not in changes  # the weights alone do not fit: no ctx is small enough
    assert set(changes) >= {"n_cpu_moe", "gpus"}
    # each suggestion really makes it fit, and one step less does not
    n = changes["n_cpu_moe"]
    base = fit.params_from_profile({"model": "120b", "ctx": 131072}, p.model)
    from dataclasses import replace

    assert fit.estimate(p.model, replace(base, n_cpu_moe=n), [Device(0, "", 40 * GiB, 40 * GiB)]).fits
    assert not fit.estimate(p.model, replace(base, n_cpu_moe=n - 1), [Device(0, "", 40 * GiB, 40 * GiB)]).fits
    k = changes["gpus"]
    assert fit.estimate(p.model, base, [Device(i, "", 40 * GiB, 40 * GiB) for i in range(k)]).fits


def test_ctx_suggestion_is_the_largest_that_fits():
    from dataclasses import replace

    dev = [Device(0, "", 62 * GiB, 62 * GiB)]
    p = fit.plan_profile({"model": "120b", "ctx": 131072}, None, devices=dev)
    ctx = {s["change"]: s["value"] for s in p.suggestions}["ctx"]
    assert ctx % 256 == 0
    base = fit.params_from_profile({"ctx": 131072}, p.model)
    assert fit.estimate(p.model, replace(base, ctx=ctx), dev).fits
    assert not fit.estimate(p.model, replace(base, ctx=ctx + 256), dev).fits


def test_plan_dict_keys_are_pinned():
    d = fit.plan_profile({"model": "20b", "ctx": 8192}, None, devices=[Device(0, "x", GiB * 24, GiB * 24)]).to_dict()
    assert list(d) == ["model", "params", "kv_cells", "pipeline_parallel", "gpus", "host", "total_bytes", "fits",
                       "compared_against", "warnings", "suggestions"]
    assert list(d["params"])[-2:] == ["tensor_split", "split_mode"]
    assert list(d["gpus"][0]) == ["index", "name", "free", "memory_total", "layers", "output_layer", "weights", "kv",
                                  "compute", "runtime", "total", "headroom", "fits"]
    assert list(d["model"]) == ["name", "arch", "source", "approximate", "size_bytes", "n_layer", "n_ctx_train",
                                "n_swa", "swa_layers", "n_expert"]
    assert list(d["host"]) == ["weights", "kv", "compute"]


# --- several GPUs, as llama.cpp's scheduler allocates them ---------------------------------

MASK_4K = 4096 * 512 * 2  # f16 KQ mask of 4096 cells x ubatch 512
ACT = 512 * (4 * (3 * 128 + 3 * 64) + 4864)  # tiny llama activations at ubatch 512


def test_pipeline_parallelism_keeps_four_copies_of_the_split_inputs(llama):
    # 2 GPUs, every layer and the output on them: llama.cpp turns pipeline parallelism on
    p = fit.estimate(llama, fit.params_from_profile({"ctx": 4096}, llama), [Device(0), Device(1)])
    assert p.pipeline_parallel
    g0, g1 = p.gpus
    assert g0.layers == [0, 1] and g1.layers == [] and g1.output  # slots 0, 1/3 -> GPU 0; 2/3 -> GPU 1
    # GPU 0: activations + 4 masks + 4 copies of the 512 x 64 f32 input
    assert g0.compute == ACT + 4 * MASK_4K + 4 * 512 * 64 * 4
    # GPU 1 (output layer only): 4 copies of the hidden state + the logits of one output
    assert g1.compute == 4 * 512 * 64 * 4 + 265 * 4
    assert g0.runtime == g1.runtime == fit.RUNTIME_OVERHEAD


@pytest.mark.parametrize("prof", [
    {"ctx": 4096, "n_gpu_layers": 2},  # the first layer in RAM
    {"ctx": 4096, "extra_args": ["-ot", "ffn=CPU"]},  # a tensor override
    {"ctx": 4096, "extra_args": ["--no-kv-offload"]},
    {"ctx": 4096, "extra_args": ["-sm", "row"]},
])
def test_no_pipeline_parallelism(llama, prof):
    p = fit.estimate(llama, fit.params_from_profile(prof, llama), [Device(0), Device(1)])
    assert not p.pipeline_parallel


def test_split_points_are_float32_like_llama_cpp():
    # 24 layers + output = 25 slots; split 1:2 -> cumulative 1/3 as float32 (0.33333334):
    # slot 8 (x = 8/25 = 0.32) on GPU 0, slot 9 (0.36) on GPU 1
    place = fit.place_layers(24, 99, [Device(0), Device(1)], (1.0, 2.0))
    assert place.count(0) == 9 and place.count(1) == 16
    # free memory 2:1 over 3 slots: x = 2/3 as float32 is 0.6666667 > split 0.6666667? equal -> upper_bound
    place = fit.place_layers(2, 99, [Device(0, free=2, total=2), Device(1, free=1, total=1)], ())
    assert place == [0, 0, 1]


def test_experts_in_ram_are_staged_on_the_first_gpu(oss):
    # n_cpu_moe: the largest expert tensor in RAM (4 experts x 32 x 64 f32 = 32_768 bytes) is
    # copied to GPU 0 for each product; the activation after it is not live meanwhile
    cells = {"full": 4096, "swa": 768}
    ff = 2 * 32  # n_expert_used x n_ff_exp
    act = 512 * (4 * (3 * ff + 3 * 64) + 4864)
    mask = 512 * (4096 + 768) * 2
    base = fit.estimate(oss, fit.params_from_profile({"ctx": 4096}, oss), [Device(0), Device(1)])
    moe = fit.estimate(oss, fit.params_from_profile({"ctx": 4096, "n_cpu_moe": 2}, oss), [Device(0), Device(1)])
    assert base.pipeline_parallel and not moe.pipeline_parallel  # n_cpu_moe is a tensor override
    staged = 4 * 32 * 64 * 4
    assert moe.gpus[0].compute == max(act, act - 4 * 512 * ff + staged) + mask
    assert moe.gpus[1].compute == act + mask + 265 * 4  # GPU 1 holds the output layer
    assert cells["full"] == moe.kv_cells["full"]


def test_runtime_without_flash_attention_counts_the_f16_scores(oss_meta):
    p = fit.estimate(oss_meta, fit.params_from_profile({"ctx": 4096, "flash_attn": "off"}, oss_meta), [Device(0)])
    assert p.gpus[0].runtime == fit.RUNTIME_OVERHEAD + 512 * 4096 * 4 * 2  # ubatch x cells x n_head x f16


# --- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("split,msg", [((1.0,), "1 entries for 2 GPU"), ((1.0, 1.0, 1.0), "3 entries"),
                                       ((0.0, 0.0), "all zeros")])
def test_bad_tensor_split(llama, split, msg):
    with pytest.raises(UsageError, match=msg) as e:
        fit.estimate(llama, fit.params_from_profile({"ctx": 4096, "tensor_split": list(split)}, llama),
                     [Device(0), Device(1)])
    assert e.value.hint


def test_n_cpu_moe_above_the_layer_count(oss):
    with pytest.raises(UsageError, match="above the layer count .* \\(4\\)") as e:
        fit.params_from_profile({"ctx": 4096, "n_cpu_moe": 5}, oss)
    assert "0..4" in e.value.hint
    assert fit.params_from_profile({"ctx": 4096, "n_cpu_moe": 4}, oss).n_cpu_moe == 4
    assert fit.params_from_profile({"ctx": 4096, "extra_args": ["--cpu-moe"]}, oss).n_cpu_moe == 4


def test_n_cpu_moe_on_a_dense_model(llama):
    with pytest.raises(UsageError, match="has no experts"):
        fit.params_from_profile({"ctx": 4096, "n_cpu_moe": 1}, llama)


def test_gguf_with_experts_but_no_expert_keys(tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "noexp.gguf"
    wr = gguf.GGUFWriter(str(path), "gpt-oss")
    for k, v in (("block_count", 1), ("embedding_length", 8), ("attention.head_count", 2)):
        wr.add_uint32(f"gpt-oss.{k}", v)
    wr.add_tensor("blk.0.ffn_gate_exps.weight", np.zeros((2, 4, 8), np.float32))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    from ossctl.errors import IntegrityError

    with pytest.raises(IntegrityError, match="expert tensors but its GGUF header lacks gpt-oss.expert_count"):
        model_facts.read_facts([path])
