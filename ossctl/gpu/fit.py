"""VRAM estimate for a llama-server profile: PURE (no I/O in :func:`estimate`).

Follows what llama.cpp allocates at start-up (sources of the pinned llama.cpp:
``llama_model::load_tensors`` layer placement, ``llama_kv_cache`` / ``llama_kv_cache_iswa``
sizes, ``llama_context::sched_reserve`` and ``ggml_backend_sched``), per device, in bytes:

- weights: every tensor of a layer goes where the layer goes. With ``n_gpu_layers = N``
  the last N of the ``n_layer + 1`` slots (the +1 is the output layer) are on GPUs,
  split across GPUs by ``tensor_split`` (else by free memory, as llama.cpp does; the
  split points are computed in float32 like llama.cpp's); ``token_embd`` always stays in
  RAM; ``n_cpu_moe = N`` keeps the expert tensors (``blk.i.ffn_{gate,up,down}_exps``) of
  layers ``0..N-1`` in RAM.
- KV cache: per layer ``cells × streams × (k_row + v_row)``, rows of
  ``head_dim × n_head_kv`` elements in the cache type, on the device of the layer.
  ``ctx`` is padded to 256; with ``parallel`` slots and no unified cache there is one
  stream per slot of ``pad(ctx / parallel, 256)`` cells. Sliding-window layers (gpt-oss:
  every even layer, window 128) only hold ``pad(min(cells, window × (slots if unified
  else 1) + ubatch), 256)`` cells, unless ``--swa-full``.
- compute buffer of a CUDA device (:func:`gpu_compute`), fitted to the buffer sizes a
  CUDA llama-server logs (bench/vram_multi_gpu.py, results in bench/results/): the KQ
  mask(s) ``ubatch × (full + sliding-window cells) × (2 bytes with flash attention, else
  4)`` (without flash attention also the KQ scores ``ubatch × cells × n_head × 4``), the
  feed-forward activations ``ubatch × (4 × (3 × ff + 3 × n_embd) + 4864)`` with ``ff =
  n_expert_used × n_ff_exp`` (MoE) or ``n_ff`` (dense), and the logits of
  ``min(ubatch, parallel)`` outputs (llama-server reserves one output per slot) on the
  device holding the output layer.
  *Pipeline parallelism* (several GPUs, every layer and the output on GPUs, layer split,
  KV offloaded, no tensor overrides such as ``n_cpu_moe``) makes the scheduler keep
  ``GGML_SCHED_MAX_COPIES = 4`` copies of every split input on each GPU: the masks and
  the ``ubatch × n_embd`` f32 hidden state, 4 times.
  *Weights in RAM* (``n_cpu_moe``, partial offload) are copied to the first GPU for each
  matrix product of a batch of 32 tokens or more (ggml's op offload): that GPU also
  holds the largest such tensor while it runs.
- runtime: :data:`RUNTIME_OVERHEAD` per GPU used (CUDA context, cuBLAS workspace, ggml's
  CUDA memory pool), measured.

The CPU backend's compute buffer (layers in RAM) keeps the older heuristic checked
against the CPU llama-server in tests/integration/test_gpu_llama_buffers.py.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ossctl.catalog import CATALOG
from ossctl.errors import NotFoundError, UsageError
from ossctl.gpu import model_facts
from ossctl.gpu.model_facts import EXPS_RE as _EXPS_RE, ModelFacts
from ossctl.units import parse_size

MiB = 1024 ** 2
GiB = 1024 ** 3
# per GPU: CUDA context + cuBLAS workspace + ggml's CUDA pool. NVML's per-process figure
# minus the buffers llama-server logs was 696-713 MiB on H200s in every case of
# bench/results/vram_multi_gpu.md (CUDA 13, driver 580); rounded up to stay on the safe side.
RUNTIME_OVERHEAD = 716 * MiB
SCHED_COPIES = 4  # GGML_SCHED_MAX_COPIES: split-input copies with pipeline parallelism
OP_OFFLOAD_MIN_BATCH = 32  # ggml-cuda: weights in RAM are copied to the GPU from this batch size
ACT_EXTRA_PER_TOKEN = 4864  # bytes per ubatch token beyond the feed-forward terms (router, norms; fitted)
TIGHT_FRACTION = 0.05  # headroom below 5% of a GPU's memory is flagged as tight

# cache type -> (block elements, bytes per block): ggml_row_size of the KV cache types
CACHE_TYPES: dict[str, tuple[int, int]] = {
    "f32": (1, 4), "f16": (1, 2), "bf16": (1, 2), "q8_0": (32, 34), "q4_0": (32, 18), "q4_1": (32, 20),
    "iq4_nl": (32, 18), "q5_0": (32, 22), "q5_1": (32, 24),
}
_BLK_RE = re.compile(r"^blk\.(\d+)\.")
CPU = -1  # device key for host RAM
_PLAIN = ("f32", "f16", "bf16")  # KV cache types that are not block-quantised


@dataclass(frozen=True)
class Device:
    """A GPU to plan against. ``free`` / ``total`` in bytes (``None`` when unknown)."""

    index: int
    name: str = ""
    total: int | None = None
    free: int | None = None


def parse_gpu_spec(text: str) -> list[int]:
    """Planning targets: ``"4x80GiB"``, ``"1x97GB"`` or ``"80GiB,40GiB"`` → memory per GPU
    in bytes."""
    t = (text or "").strip()
    hint = "write COUNTxSIZE like 1x97GiB or 4x80GiB, or sizes like 80GiB,40GiB"
    m = re.match(r"^(\d+)\s*[xX*]\s*(.+)$", t)
    try:
        if m:
            n = int(m.group(1))
            if not 1 <= n <= 64:
                raise UsageError(f"malformed --gpus {text!r}: {n} GPUs", hint=hint)
            sizes = [parse_size(m.group(2), "--gpus size")] * n
        else:
            sizes = [parse_size(x, "--gpus size") for x in t.split(",")]
    except UsageError as exc:
        raise UsageError(f"malformed --gpus {text!r}", hint=hint) from exc
    if any(s <= 0 for s in sizes):
        raise UsageError(f"malformed --gpus {text!r}: a GPU needs memory", hint=hint)
    return sizes


@dataclass(frozen=True)
class Params:
    ctx: int
    parallel: int = 1
    kv_unified: bool = False
    n_gpu_layers: int = 99
    n_cpu_moe: int = 0
    batch: int = 2048
    ubatch: int = 512
    flash_attn: bool = True
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    swa_full: bool = False
    offload_kqv: bool = True
    tensor_split: tuple[float, ...] = ()
    split_mode: str = "layer"  # -sm: layer | row | none
    tensor_overrides: bool = False  # -ot / --override-tensor in extra_args (n_cpu_moe is one too)
    op_offload: bool = True  # --no-op-offload turns ggml's copy of RAM weights to the GPU off


@dataclass
class GpuPlan:
    index: int
    name: str
    free: int | None
    memory_total: int | None
    layers: list[int] = field(default_factory=list)  # repeating layers placed here
    output: bool = False  # holds the output layer (logits)
    weights: int = 0
    kv: int = 0
    compute: int = 0
    runtime: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute + self.runtime

    @property
    def headroom(self) -> int | None:
        return None if self.free is None else self.free - self.total

    @property
    def fits(self) -> bool | None:
        return None if self.free is None else self.total <= self.free

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "name": self.name, "free": self.free, "memory_total": self.memory_total,
            "layers": _ranges(self.layers), "output_layer": self.output,
            "weights": self.weights, "kv": self.kv, "compute": self.compute, "runtime": self.runtime,
            "total": self.total, "headroom": self.headroom, "fits": self.fits,
        }


@dataclass
class Plan:
    model: ModelFacts
    params: Params
    gpus: list[GpuPlan]
    host_weights: int = 0
    host_kv: int = 0
    host_compute: int = 0  # the CPU backend's compute buffer (only estimated when layers run there)
    kv_cells: dict[str, int] = field(default_factory=dict)  # {"full": .., "swa": .., "streams": ..}
    pipeline_parallel: bool = False  # llama.cpp keeps 4 copies of split inputs (several GPUs)
    compared_against: str | None = None  # "nvml" | "--gpus" | None
    warnings: list[str] = field(default_factory=list)
    suggestions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        """Bytes on all GPUs together."""
        return sum(g.total for g in self.gpus)

    @property
    def fits(self) -> bool | None:
        states = [g.fits for g in self.gpus]
        if not states or any(s is None for s in states):
            return None
        return all(states)

    def to_dict(self) -> dict[str, Any]:
        f, p = self.model, self.params
        return {
            "model": {"name": f.name, "arch": f.arch, "source": f.source, "approximate": f.approximate,
                      "size_bytes": f.size_bytes, "n_layer": f.n_layer, "n_ctx_train": f.n_ctx_train,
                      "n_swa": f.n_swa, "swa_layers": sum(f.swa_layers), "n_expert": f.n_expert},
            "params": {"ctx": p.ctx, "parallel": p.parallel, "kv_unified": p.kv_unified,
                       "n_gpu_layers": p.n_gpu_layers, "n_cpu_moe": p.n_cpu_moe, "batch": p.batch,
                       "ubatch": p.ubatch, "flash_attn": p.flash_attn, "cache_type_k": p.cache_type_k,
                       "cache_type_v": p.cache_type_v, "swa_full": p.swa_full,
                       "tensor_split": list(p.tensor_split), "split_mode": p.split_mode},
            "kv_cells": dict(self.kv_cells),
            "pipeline_parallel": self.pipeline_parallel,
            "gpus": [g.to_dict() for g in self.gpus],
            "host": {"weights": self.host_weights, "kv": self.host_kv, "compute": self.host_compute},
            "total_bytes": self.total_bytes,
            "fits": self.fits,
            "compared_against": self.compared_against,
            "warnings": list(self.warnings),
            "suggestions": list(self.suggestions),
        }


def _ranges(xs: list[int]) -> str:
    """[0,1,2,5] -> "0-2,5" (layer lists stay short in JSON and tables)."""
    out, start = [], None
    for i, x in enumerate(xs):
        if start is None:
            start = x
        if i + 1 == len(xs) or xs[i + 1] != x + 1:
            out.append(f"{start}" if start == x else f"{start}-{x}")
            start = None
    return ",".join(out)


def _pad(n: int, to: int = 256) -> int:
    return (n + to - 1) // to * to


def _row_bytes(cache_type: str, n: int) -> int:
    block, size = CACHE_TYPES[cache_type]
    return n // block * size


# --- profile -> params ---------------------------------------------------------------

def params_from_profile(profile: dict[str, Any], facts: ModelFacts) -> Params:
    """Read the estimate's inputs from a resolved profile (contract defaults for missing
    keys) and the few ``extra_args`` that change memory (``--swa-full``, ``--kv-unified``,
    ``--no-kv-offload``). Raises :class:`UsageError` for values llama-server would reject."""
    extra = [str(a) for a in profile.get("extra_args") or []]
    ctx = int(profile.get("ctx") or 0) or facts.n_ctx_train or 4096
    parallel = int(profile.get("parallel", 1) or 1)
    unified = "--kv-unified" in extra or "-kvu" in extra
    if parallel < 0:  # llama-server "auto": 4 slots sharing one unified cache
        parallel, unified = 4, True
    ngl = profile.get("n_gpu_layers", 99)
    ngl = 999 if ngl is None or (isinstance(ngl, str) and ngl in ("all", "auto")) else int(ngl)
    if ngl < 0:
        ngl = 999
    fa = str(profile.get("flash_attn", "auto")).lower()
    ck, cv = str(profile.get("cache_type_k", "f16")).lower(), str(profile.get("cache_type_v", "f16")).lower()
    for name, t in (("cache_type_k", ck), ("cache_type_v", cv)):
        if t not in CACHE_TYPES:
            raise UsageError(f"{name} {t!r} is not a KV cache type", hint="use one of " + ", ".join(CACHE_TYPES))
    for name, t in (("cache_type_k", ck), ("cache_type_v", cv)):
        head = facts.head_dim_k if name == "cache_type_k" else facts.head_dim_v
        if head % CACHE_TYPES[t][0]:
            raise UsageError(f"{name} {t!r} does not fit head size {head} of {facts.name} (llama-server refuses it)",
                             hint="use f16 or a cache type whose block divides the head size")
    batch = int(profile.get("batch", 2048) or 2048)
    ubatch = min(int(profile.get("ubatch", 512) or 512), batch)
    n_cpu_moe = int(profile.get("n_cpu_moe", 0) or 0)
    for flag in ("-ncmoe", "--n-cpu-moe"):
        if flag in extra[:-1]:
            n_cpu_moe = _int_arg(extra, flag)
    if "-cmoe" in extra or "--cpu-moe" in extra:
        n_cpu_moe = facts.n_layer
    if n_cpu_moe < 0:
        raise UsageError(f"n_cpu_moe {n_cpu_moe} is negative", hint="use 0 (experts on the GPU) up to the layer count")
    if n_cpu_moe > facts.n_layer:
        raise UsageError(f"n_cpu_moe {n_cpu_moe} is above the layer count of {facts.name} ({facts.n_layer})",
                         hint=f"use 0..{facts.n_layer} ({facts.n_layer} keeps every layer's experts in RAM)")
    if n_cpu_moe and not facts.n_expert:
        raise UsageError(f"n_cpu_moe {n_cpu_moe} is set but {facts.name} has no experts (not a mixture-of-experts "
                         f"model)", hint="remove n_cpu_moe from the profile, or lower n_gpu_layers instead")
    split_mode = "layer"
    for flag in ("-sm", "--split-mode"):
        if flag in extra[:-1]:
            split_mode = extra[extra.index(flag) + 1].lower()
    overrides = n_cpu_moe > 0 or any(a in extra for a in ("-ot", "--override-tensor"))
    return Params(
        ctx=ctx, parallel=max(parallel, 1), kv_unified=unified, n_gpu_layers=ngl,
        n_cpu_moe=n_cpu_moe, batch=batch, ubatch=ubatch,
        flash_attn=fa not in ("off", "false", "0"), cache_type_k=ck, cache_type_v=cv,
        swa_full="--swa-full" in extra, offload_kqv=not ("--no-kv-offload" in extra or "-nkvo" in extra),
        tensor_split=tuple(float(x) for x in profile.get("tensor_split") or ()), split_mode=split_mode,
        tensor_overrides=overrides, op_offload="--no-op-offload" not in extra)


def _int_arg(args: list[str], flag: str) -> int:
    value = args[args.index(flag) + 1]
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"extra_args: {flag} {value!r} is not a number", hint=f"write {flag} N, e.g. {flag} 8") from None


# --- the estimate ----------------------------------------------------------------------

def _f32(x: float) -> float:
    """``x`` rounded to float32, as llama.cpp holds split points."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def check_split(tensor_split: tuple[float, ...], n_devices: int) -> None:
    """Raise :class:`UsageError` unless ``tensor_split`` is empty or has one positive-sum
    weight per GPU."""
    if not tensor_split:
        return
    if len(tensor_split) != n_devices:
        raise UsageError(f"tensor_split has {len(tensor_split)} entries for {n_devices} GPU(s)",
                         hint="give one weight per GPU in `gpus`, e.g. tensor_split = [3, 1] for two GPUs")
    if not any(tensor_split):
        raise UsageError("tensor_split is all zeros: no GPU would get a layer",
                         hint="give positive weights, e.g. [1, 1], or remove tensor_split to split by free memory")


def place_layers(n_layer: int, ngl: int, devices: list[Device], tensor_split: tuple[float, ...]) -> list[int]:
    """Device slot (0..len(devices)-1, or CPU) of each of the ``n_layer + 1`` layers (the
    last is the output layer), as ``llama_model::load_tensors`` assigns them."""
    n_dev = len(devices)
    if n_dev == 0 or ngl <= 0:
        return [CPU] * (n_layer + 1)
    if any(tensor_split):
        splits = [float(tensor_split[i]) if i < len(tensor_split) else 0.0 for i in range(n_dev)]
    elif all(d.free for d in devices):
        splits = [float(d.free) for d in devices]  # llama.cpp's default: by free memory
    else:
        splits = [1.0] * n_dev
    acc, cum = 0.0, []
    for s in splits:  # float32 running sum and division, as llama.cpp does
        acc = _f32(acc + _f32(s))
        cum.append(acc)
    cum = [_f32(c / acc) for c in cum]
    start = max(n_layer + 1 - ngl, 0)
    act = min(ngl, n_layer + 1)
    out = []
    for il in range(n_layer + 1):
        if il < start or il - start >= act:
            out.append(CPU)
            continue
        x = _f32((il - start) / act)
        slot = next((i for i, c in enumerate(cum) if c > x), n_dev - 1)  # std::upper_bound
        out.append(slot)
    return out


def kv_cells(facts: ModelFacts, p: Params) -> dict[str, int]:
    """Cells per stream of the full-attention and sliding-window caches, and the number
    of streams (one per slot unless the cache is unified)."""
    n_ctx = _pad(p.ctx)
    if p.kv_unified:
        streams, per_stream = 1, n_ctx
    else:
        streams = p.parallel
        per_stream = _pad(n_ctx // p.parallel)
    swa = 0
    if facts.n_swa and any(facts.swa_layers):
        swa = per_stream if p.swa_full else _pad(min(per_stream, facts.n_swa * (p.parallel if p.kv_unified else 1)
                                                     + p.ubatch))
    return {"full": per_stream, "swa": swa, "streams": streams}


def pipeline_parallel(facts: ModelFacts, p: Params, n_devices: int) -> bool:
    """Whether llama.cpp turns on pipeline parallelism (``llama_context`` constructor):
    several GPUs, every layer and the output on them, layer split, KV cache offloaded,
    no tensor overrides."""
    return (n_devices > 1 and p.n_gpu_layers > facts.n_layer and p.split_mode == "layer" and p.offload_kqv
            and not p.tensor_overrides)


def estimate(facts: ModelFacts, p: Params, devices: list[Device]) -> Plan:
    """The plan of ``facts`` run with ``p`` on ``devices`` (may be empty: all in RAM).
    Raises :class:`UsageError` for a ``tensor_split`` that does not match ``devices``."""
    check_split(p.tensor_split, len(devices))
    if p.split_mode == "none" and devices:  # -sm none: everything on the main GPU (the first)
        devices = devices[:1]
    place = place_layers(facts.n_layer, p.n_gpu_layers, devices, p.tensor_split)
    out_slot = place[facts.n_layer]
    gpus = [GpuPlan(d.index, d.name, d.free, d.total) for d in devices]
    weights = {CPU: 0, **{i: 0 for i in range(len(devices))}}
    has_output = any(n == "output.weight" for n, _ in facts.tensors)
    staged = 0  # the largest layer weight in RAM: op offload copies it to the first GPU
    for name, nbytes in facts.tensors:
        m = _BLK_RE.match(name)
        if m:
            il = int(m.group(1))
            slot = place[il] if il < facts.n_layer else out_slot
            if il < p.n_cpu_moe and _EXPS_RE.search(name):
                slot = CPU
            if slot == CPU and name.endswith(".weight") and "norm" not in name:
                staged = max(staged, nbytes)
        elif name == "token_embd.weight":
            slot = CPU
            if not has_output:  # tied embeddings: llama.cpp loads a copy for the output layer
                weights[out_slot] += nbytes
        else:
            slot = out_slot
        weights[slot] += nbytes

    cells = kv_cells(facts, p)
    kv = {k: 0 for k in weights}
    for il in range(facts.n_layer):
        n_cells = cells["swa"] if facts.swa_layers and facts.swa_layers[il] and cells["swa"] else cells["full"]
        row = _row_bytes(p.cache_type_k, facts.head_dim_k * facts.n_head_kv[il]) + \
            _row_bytes(p.cache_type_v, facts.head_dim_v * facts.n_head_kv[il])
        slot = place[il] if p.offload_kqv else CPU
        kv[slot] += n_cells * cells["streams"] * row

    pp = pipeline_parallel(facts, p, len(devices))
    if not (p.op_offload and p.ubatch >= OP_OFFLOAD_MIN_BATCH):
        staged = 0
    cpu_layers = CPU in place[:facts.n_layer]
    for slot, g in enumerate(gpus):
        g.layers = [il for il in range(facts.n_layer) if place[il] == slot]
        g.output = out_slot == slot
        g.weights, g.kv = weights[slot], kv[slot]
        if not g.layers and not g.output and not (slot == 0 and staged):
            continue
        moe_here = not facts.n_expert or any(il >= p.n_cpu_moe for il in g.layers)
        g.compute = gpu_compute(facts, p, cells, layers=bool(g.layers), output=g.output, pipeline=pp,
                                staged=staged if slot == 0 else 0, cpu_layers=cpu_layers, moe_here=moe_here)
        g.runtime = runtime_bytes(facts, p, cells)
    host_compute = 0
    if out_slot == CPU or CPU in place[:facts.n_layer]:
        host_compute = _compute(facts, p, cells, out_slot == CPU, 2 if p.flash_attn else 4, p.ubatch)
    plan = Plan(facts, p, gpus, host_weights=weights[CPU], host_kv=kv[CPU], host_compute=host_compute,
                kv_cells=cells, pipeline_parallel=pp)
    if facts.approximate:
        plan.warnings.append(f"model not downloaded: planned from the catalog size and known {facts.name} "
                             f"architecture (approximate)")
    if facts.n_ctx_train and _pad(p.ctx) // (1 if p.kv_unified else p.parallel) > facts.n_ctx_train:
        plan.warnings.append(f"ctx per slot exceeds the trained context ({facts.n_ctx_train})")
    if p.split_mode == "row":
        plan.warnings.append("split_mode row (-sm row) is planned as a layer split: figures per GPU are approximate")
    for g in gpus:
        if g.fits and g.memory_total and g.headroom is not None and g.headroom < TIGHT_FRACTION * g.memory_total:
            plan.warnings.append(f"GPU {g.index}: headroom {g.headroom / GiB:.1f} GiB is under "
                                 f"{TIGHT_FRACTION:.0%} of its memory; generation can need more (CUDA pools)")
    return plan


def gpu_compute(facts: ModelFacts, p: Params, cells: dict[str, int], *, layers: bool, output: bool,
                pipeline: bool, staged: int = 0, cpu_layers: bool = False, moe_here: bool = True) -> int:
    """Bytes of one CUDA device's compute buffer (see the module docstring). ``layers``:
    the device runs repeating layers; ``output``: it holds the output layer;
    ``pipeline``: pipeline parallelism is on; ``staged``: bytes of the largest RAM weight
    this device receives for op offload (0 for none); ``cpu_layers``: whole layers run
    in RAM (their feed-forward activations then cross to this device and back);
    ``moe_here``: the feed-forward of this device's layers runs here (False when all
    their experts are in RAM: op offload runs those products on the first GPU)."""
    ub = p.ubatch
    cell_count = cells["full"] + cells["swa"]
    mask = ub * cell_count * (2 if p.flash_attn else 4)
    ff = facts.n_expert_used * facts.n_ff_exp if facts.n_expert else facts.n_ff
    copies = SCHED_COPIES if pipeline else 1
    n = 0
    if layers or staged:
        if moe_here or staged:
            act = ub * (4 * (3 * ff + 3 * facts.n_embd) + ACT_EXTRA_PER_TOKEN)
        else:  # attention only: q and its output, the hidden state and the residual
            act = ub * 4 * (2 * facts.n_head * facts.head_dim_k + 2 * facts.n_embd)
        if staged:  # while a staged weight's product runs, the activation after it is not live yet
            act = max(act, act - 4 * ub * ff + staged + (2 * 4 * ub * ff if cpu_layers else 0))
        n += act + copies * mask
        if not p.flash_attn:  # the KQ score matrix of one layer at a time
            n += ub * cells["full"] * facts.n_head * 4
        if p.cache_type_k not in _PLAIN or p.cache_type_v not in _PLAIN:
            # quantised KV cache: the CUDA buffer grows by up to 1.5 rows of K and V per cell
            # (measured 1.0 with 64k cells and pipeline parallelism, 1.44 with 128k cells on
            # one GPU, nothing with 8k); an upper bound fitted to those, cause not identified
            rows = _row_bytes(p.cache_type_k, facts.head_dim_k * max(facts.n_head_kv)) + \
                _row_bytes(p.cache_type_v, facts.head_dim_v * max(facts.n_head_kv))
            n += cell_count * rows * 3 // 2
    if pipeline or not layers:  # the hidden state that arrives from the previous device (4 copies with pp)
        n += copies * ub * facts.n_embd * 4
    if output:
        n += min(ub, p.parallel) * facts.n_vocab * 4
    return n


def runtime_bytes(facts: ModelFacts, p: Params, cells: dict[str, int]) -> int:
    """Per-GPU memory outside ggml's buffers: :data:`RUNTIME_OVERHEAD`, plus, without
    flash attention, the f16 copy of the softmaxed KQ scores that the CUDA backend makes
    in its pool for the KQV product (``ubatch × cells × n_head × 2``: measured exactly at
    16k cells, 2/3 of it at 32k, so plans without flash attention err high)."""
    n = RUNTIME_OVERHEAD
    if not p.flash_attn:
        n += p.ubatch * cells["full"] * facts.n_head * 2
    return n


def _compute(facts: ModelFacts, p: Params, cells: dict[str, int], output: bool, mask_elem: int, ub: int) -> int:
    """The CPU backend's compute buffer (checked against the CPU llama-server's log)."""
    masks = cells["full"] + cells["swa"]
    n = ub * masks * mask_elem
    if mask_elem == 4:  # no flash attention: the KQ score matrix of one layer at a time
        n += ub * cells["full"] * facts.n_head * 4
    dense_ff = 0 if facts.n_expert else facts.n_ff
    n += ub * 4 * (facts.n_embd + facts.n_head * facts.head_dim_k + dense_ff)
    if output:
        n += ub * facts.n_vocab * 4
    return n


# --- what to change when it does not fit -------------------------------------------------

def suggest(facts: ModelFacts, p: Params, devices: list[Device]) -> list[dict[str, Any]]:
    """Smallest changes that make the plan fit: a smaller ctx, ``n_cpu_moe``, a quantised
    KV cache, more GPUs of the same size. Empty when it fits or free memory is unknown."""
    if not devices or estimate(facts, p, devices).fits is not False:
        return []

    def fits(q: Params, devs: list[Device] = devices) -> bool:
        return bool(estimate(facts, q, devs).fits)

    out: list[dict[str, Any]] = []
    lo, hi = 1, _pad(p.ctx) // 256 - 1  # search ctx in steps of 256
    best = 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(replace(p, ctx=mid * 256)):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    if best:
        out.append({"change": "ctx", "value": best * 256, "text": f"lower ctx to {best * 256} (the largest that fits)"})
    if facts.n_expert and p.n_cpu_moe < facts.n_layer:
        for n in range(p.n_cpu_moe + 1, facts.n_layer + 1):
            q = replace(p, n_cpu_moe=n)
            if fits(q):
                ram = estimate(facts, q, devices).host_weights
                out.append({"change": "n_cpu_moe", "value": n,
                            "text": f"set n_cpu_moe = {n} (--n-cpu-moe {n}): expert weights of the first {n} layers "
                                    f"stay in RAM ({ram / GiB:.1f} GiB of RAM)"})
                break
    if p.cache_type_k == "f16" and p.cache_type_v == "f16" and p.flash_attn:
        q = replace(p, cache_type_k="q8_0", cache_type_v="q8_0")
        if fits(q):
            out.append({"change": "cache_type", "value": "q8_0",
                        "text": "quantise the KV cache: cache_type_k = cache_type_v = \"q8_0\" (halves the KV cache)"})
    big = max(devices, key=lambda d: d.total or d.free or 0)
    size = big.total or big.free
    if size:
        for k in range(len(devices) + 1, 9):
            devs = [Device(i, big.name, size, size) for i in range(k)]
            if fits(replace(p, tensor_split=()), devs):
                out.append({"change": "gpus", "value": k,
                            "text": f"spread over {k} GPUs of {size / GiB:.0f} GiB (gpus = [{', '.join(map(str, range(k)))}],"
                                    f" tensor_split by free memory)"})
                break
    return out


def plan(facts: ModelFacts, p: Params, devices: list[Device], compared_against: str | None = None) -> Plan:
    """:func:`estimate` plus suggestions when it does not fit."""
    result = estimate(facts, p, devices)
    result.compared_against = compared_against
    result.suggestions = suggest(facts, p, devices)
    return result


def load_facts(model: str | None, model_dir: Path | None, catalog_entry=None) -> ModelFacts:
    """Facts from the GGUF files in ``model_dir`` when there are any, else from the known
    architecture of the catalog alias and its catalog size (approximate). Raises
    :class:`~ossctl.errors.NotFoundError` when neither is possible."""
    if model_dir is not None and Path(model_dir).is_dir() and any(Path(model_dir).glob("*.gguf")):
        return model_facts.read_model_dir(Path(model_dir))
    alias = getattr(catalog_entry, "alias", None) or model
    known = CATALOG.get(alias) if alias else None
    if known is not None and known.architecture is None:
        known = None
    if known is not None and catalog_entry is None:
        catalog_entry = known
    size = getattr(catalog_entry, "approx_size", 0)
    if known is not None and size:
        return model_facts.from_known(known, size)
    raise NotFoundError(f"model {model or model_dir} is not downloaded and its architecture is unknown",
                        hint=f"download it first: `ossctl download {model or 'MODEL'}`")


def plan_profile(profile: dict[str, Any], model_dir: Path | None, catalog_entry=None,
                 devices: list[Device] | None = None, compared_against: str | None = None) -> Plan:
    """Plan ``profile`` (a resolved profile dict) for the model in ``model_dir`` (or, if
    absent, the catalog entry's size and known architecture). ``devices`` are the GPUs to
    place layers on; without them one GPU of unknown size is assumed (``fits`` is
    ``None``)."""
    facts = load_facts(str(profile.get("model") or ""), model_dir, catalog_entry)
    if devices is None:
        gpus = profile.get("gpus", "all")
        n = 0 if gpus == "none" else (len(gpus) if isinstance(gpus, list) else 1)
        devices = [Device(i) for i in range(n)]
    return plan(facts, params_from_profile(profile, facts), devices, compared_against)
