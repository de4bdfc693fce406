"""What the VRAM estimate needs to know about a model, read from its GGUF files (through
:mod:`ossctl.artifacts.gguf`: headers and tensor table only, no numpy), or from
the catalog's published architecture when the model is not downloaded (approximate:
see :func:`synthetic_tensors`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ossctl.artifacts.gguf import read_gguf_kv, tensor_bytes, tensor_entries
from ossctl.artifacts.manifest import model_files
from ossctl.catalog import Architecture, CatalogEntry
from ossctl.errors import IntegrityError

EXPS_RE = re.compile(r"\.ffn_(up|down|gate|gate_up)_(ch|)exps")  # llama.cpp LLM_FFN_EXPS_REGEX


@dataclass
class ModelFacts:
    """Architecture numbers plus (name, bytes) of every tensor."""

    name: str
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: list[int]  # per layer
    head_dim_k: int
    head_dim_v: int
    n_vocab: int
    n_ctx_train: int
    n_swa: int = 0  # sliding window (tokens); 0 = none
    swa_layers: list[bool] = field(default_factory=list)  # per layer: uses the sliding window
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff_exp: int = 0
    n_ff: int = 0  # dense feed-forward width (0 for MoE layers)
    tensors: list[tuple[str, int]] = field(default_factory=list)
    source: str = "gguf"  # "gguf" | "known-architecture"
    approximate: bool = False

    @property
    def size_bytes(self) -> int:
        return sum(b for _, b in self.tensors)


def swa_pattern(n_layer: int, n_pattern: int, dense_first: bool = False) -> list[bool]:
    """Which layers use the sliding window, as llama.cpp's ``set_swa_pattern``: with
    pattern 2 (gpt-oss) even layers are SWA and odd layers full attention."""
    if dense_first:
        return [n_pattern == 0 or i % n_pattern != 0 for i in range(n_layer)]
    return [n_pattern == 0 or i % n_pattern < n_pattern - 1 for i in range(n_layer)]


def from_known(entry: CatalogEntry, total_bytes: int) -> ModelFacts:
    """Approximate facts of a catalog model that is not downloaded: its published
    architecture (``entry.architecture``, which must be set) and trained context, tensors
    synthesised from ``total_bytes``."""
    a = entry.architecture
    assert a is not None, entry.alias
    return ModelFacts(
        name=a.name, arch=a.arch, n_layer=a.n_layer, n_embd=a.n_embd, n_head=a.n_head,
        n_head_kv=[a.n_head_kv] * a.n_layer, head_dim_k=a.head_dim, head_dim_v=a.head_dim,
        n_vocab=a.n_vocab, n_ctx_train=entry.context_length, n_swa=a.n_swa,
        swa_layers=swa_pattern(a.n_layer, a.swa_pattern), n_expert=a.n_expert,
        n_expert_used=a.n_expert_used, n_ff_exp=a.n_ff_exp, tensors=synthetic_tensors(a, total_bytes),
        source="known-architecture", approximate=True)


# MXFP4: 32 weights in 17 bytes (4.25 bits each).
_MXFP4 = 17 / 32


def synthetic_tensors(a: Architecture, total_bytes: int) -> list[tuple[str, int]]:
    """(name, bytes) for a model of architecture ``a`` whose files total ``total_bytes``:
    expert tensors at MXFP4 from the parameter count, the rest (embeddings, output,
    attention, norms) scaled so that everything sums to ``total_bytes``.

    APPROXIMATE: the per-tensor split is synthesised from the catalog's total size, so
    per-layer weights are within a few percent, not exact. A plan built from these carries
    ``approximate: true`` and a warning; once the model is downloaded, the plan reads the
    real GGUF instead."""
    L, e, ff = a.n_layer, a.n_embd, a.n_ff_exp
    hd, nh, nkv = a.head_dim, a.n_head, a.n_head_kv
    expert_each = int(e * ff * a.n_expert * _MXFP4)  # one of gate / up / down, per layer
    experts = 3 * expert_each * L
    embd = a.n_vocab * e  # parameters of token_embd, and of output
    attn = e * hd * (2 * nh + 2 * nkv)  # q, k, v, o per layer
    rest = max(total_bytes - experts, 0)
    dense_params = 2 * embd + attn * L
    scale = rest / dense_params if dense_params else 0.0
    out = [("token_embd.weight", int(embd * scale))]
    for i in range(L):
        out += [(f"blk.{i}.attn.weight", int(attn * scale))]
        out += [(f"blk.{i}.ffn_{w}_exps.weight", expert_each) for w in ("gate", "up", "down")]
    out.append(("output.weight", total_bytes - sum(b for _, b in out)))  # rounding lands here
    return out


def read_facts(paths: list[Path]) -> ModelFacts:
    """Architecture from the first part's header; tensor sizes from every part's tensor
    table. Raises :class:`IntegrityError` for a malformed file or missing key."""
    kv = read_gguf_kv(paths[0])
    # the architecture first: a header without one is refused before any tensor table is read
    arch = kv.get("general.architecture")
    if not arch or not isinstance(arch, str):
        raise IntegrityError(f"{paths[0].name}: GGUF header has no general.architecture")
    try:
        return _facts(paths, kv, arch)
    except (TypeError, ValueError) as exc:  # a key of the wrong type (a string where a count belongs)
        raise IntegrityError(f"{paths[0].name}: GGUF header has a {arch}.* key of the wrong type ({exc})",
                             hint="the file is corrupt or not a model: move it aside, or fetch it again "
                                  "with `ossctl download`") from None


def _facts(paths: list[Path], kv: dict[str, Any], arch: str) -> ModelFacts:
    tensors: list[tuple[str, int]] = []
    for p in paths:
        tensors += tensor_bytes(p)

    def key(name: str, default: Any = None, required: bool = True) -> Any:
        v = kv.get(f"{arch}.{name}", default)
        if v is None and required:
            raise IntegrityError(f"{paths[0].name}: GGUF header lacks {arch}.{name}",
                                 hint="the file is not a complete model header; re-download it")
        return v

    n_layer = int(key("block_count"))
    n_embd = int(key("embedding_length"))
    n_head = int(key("attention.head_count"))
    hkv = key("attention.head_count_kv", n_head)
    n_head_kv = [int(x) for x in hkv] if isinstance(hkv, list) else [int(hkv)] * n_layer
    head_k = int(key("attention.key_length", n_embd // n_head))
    head_v = int(key("attention.value_length", head_k))
    n_swa = int(key("attention.sliding_window", 0, required=False) or 0)
    pattern = kv.get(f"{arch}.attention.sliding_window_pattern")
    if n_swa == 0:
        swa = [False] * n_layer
    elif isinstance(pattern, list):
        swa = [bool(x) for x in pattern][:n_layer]
    else:
        # llama.cpp's per-arch default: gpt-oss alternates SWA / full (pattern 2)
        swa = swa_pattern(n_layer, int(pattern) if pattern is not None else 2)
    n_expert = int(key("expert_count", 0, required=False) or 0)
    if any(EXPS_RE.search(n) for n, _ in tensors):
        for k in ("expert_count", "expert_used_count", "expert_feed_forward_length"):
            if not kv.get(f"{arch}.{k}"):
                raise IntegrityError(f"{paths[0].name}: the model has expert tensors but its GGUF header lacks "
                                     f"{arch}.{k}", hint="the header is incomplete or from an old converter; "
                                     "re-download the model (`ossctl download MODEL`)")
    vocab = kv.get("tokenizer.ggml.tokens")
    n_vocab = len(vocab) if isinstance(vocab, list) else 0
    if not n_vocab:  # the token list is too long to return: derive from the embedding tensor
        n_vocab = _vocab_from_shapes(paths[0]) or 0
    return ModelFacts(
        name=str(kv.get("general.name") or paths[0].stem), arch=str(arch), n_layer=n_layer, n_embd=n_embd,
        n_head=n_head, n_head_kv=n_head_kv, head_dim_k=head_k, head_dim_v=head_v, n_vocab=n_vocab,
        n_ctx_train=int(key("context_length", 0, required=False) or 0), n_swa=n_swa, swa_layers=swa,
        n_expert=n_expert,
        n_expert_used=int(key("expert_used_count", 0, required=False) or 0),
        n_ff_exp=int(key("expert_feed_forward_length", 0, required=False) or 0),
        n_ff=_first(key("feed_forward_length", 0, required=False)), tensors=tensors)


def _first(v: Any) -> int:
    """A per-layer array key as its largest value; a scalar as is."""
    if isinstance(v, list):
        return int(max(v)) if v else 0
    return int(v or 0)


def read_model_dir(model_dir: Path) -> ModelFacts:
    """:func:`read_facts` of the model's parts, in order (see
    :func:`ossctl.artifacts.manifest.model_files`)."""
    return read_facts(model_files(model_dir))


def _vocab_from_shapes(path: Path) -> int | None:
    for name, dims, _ in tensor_entries(path):
        if name == "token_embd.weight" and len(dims) == 2:
            return int(dims[1])
    return None
