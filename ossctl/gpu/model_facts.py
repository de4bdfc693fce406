"""What the VRAM estimate needs to know about a model, read from its GGUF files (headers
and tensor table only: milliseconds even for a 60 GB split set, no numpy), or from
:mod:`ossctl.gpu.known_models` when the model is not downloaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ossctl.errors import IntegrityError, NotFoundError

EXPS_RE = re.compile(r"\.ffn_(up|down|gate|gate_up)_(ch|)exps")  # llama.cpp LLM_FFN_EXPS_REGEX

# ggml type id -> (block size in elements, bytes per block); as gguf.GGML_QUANT_SIZES
# (a unit test checks this table against the gguf package).
GGML_TYPE_SIZE: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 40),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18),
}


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


def from_known(alias: str, total_bytes: int) -> ModelFacts:
    from ossctl.gpu.known_models import KNOWN_ARCH, synthetic_tensors

    a = KNOWN_ARCH[alias]
    return ModelFacts(
        name=a["name"], arch=a["arch"], n_layer=a["n_layer"], n_embd=a["n_embd"], n_head=a["n_head"],
        n_head_kv=[a["n_head_kv"]] * a["n_layer"], head_dim_k=a["head_dim"], head_dim_v=a["head_dim"],
        n_vocab=a["n_vocab"], n_ctx_train=a["n_ctx_train"], n_swa=a["n_swa"],
        swa_layers=swa_pattern(a["n_layer"], a["swa_pattern"]), n_expert=a["n_expert"],
        n_expert_used=a["n_expert_used"], n_ff_exp=a["n_ff_exp"], tensors=synthetic_tensors(a, total_bytes),
        source="known-architecture", approximate=True)


def model_files(model_dir: Path) -> list[Path]:
    """The GGUF parts of a model directory in order (manifest order when there is one).
    Raises :class:`NotFoundError` when there is none."""
    from ossctl.artifacts.manifest import MANIFEST_NAME, read_manifest
    from ossctl.artifacts.shards import order_parts

    model_dir = Path(model_dir)
    if (model_dir / MANIFEST_NAME).exists():
        return [model_dir / f.name for f in read_manifest(model_dir).files]
    names = [p.name for p in model_dir.glob("*.gguf")] if model_dir.is_dir() else []
    if not names:
        raise NotFoundError(f"no GGUF files in {model_dir}", hint="download the model first: `ossctl download MODEL`")
    return [model_dir / n for n in order_parts(names)]


def read_facts(paths: list[Path]) -> ModelFacts:
    """Architecture from the first part's header; tensor sizes from every part's tensor
    table. Raises :class:`IntegrityError` for a malformed file or missing key."""
    from ossctl.artifacts.shards import read_gguf_kv

    kv = read_gguf_kv(paths[0])
    tensors: list[tuple[str, int]] = []
    for p in paths:
        tensors += _tensor_table(p)
    arch = kv.get("general.architecture")
    if not arch:
        raise IntegrityError(f"{paths[0].name}: GGUF header has no general.architecture")

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
    return read_facts(model_files(model_dir))


# --- tensor table (stdlib) -------------------------------------------------------------

def _tensor_entries(path: Path) -> list[tuple[str, list[int], int]]:
    """(name, dims, ggml type) of every tensor in one GGUF file."""
    from ossctl.artifacts.shards import read_gguf

    return read_gguf(path, keys=set(), tensors=True)[1]


def _tensor_table(path: Path) -> list[tuple[str, int]]:
    out = []
    for name, dims, ttype in _tensor_entries(path):
        if ttype not in GGML_TYPE_SIZE:
            raise IntegrityError(f"{path.name}: tensor {name} has unknown ggml type {ttype}",
                                 hint="ossctl is older than this model's quantisation; upgrade ossctl")
        block, size = GGML_TYPE_SIZE[ttype]
        n = 1
        for d in dims:
            n *= d
        out.append((name, n // block * size))
    return out


def _vocab_from_shapes(path: Path) -> int | None:
    for name, dims, _ in _tensor_entries(path):
        if name == "token_embd.weight" and len(dims) == 2:
            return int(dims[1])
    return None
