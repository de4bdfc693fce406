"""Architecture facts of the catalog models, for planning before a model is downloaded.

APPROXIMATIONS: the numbers below are the published gpt-oss architecture (as in the GGUF
headers of ggml-org/gpt-oss-{20b,120b}-GGUF); the per-tensor byte split is synthesised from
the catalog's total size (see :func:`synthetic_tensors`), so per-layer weights are within a
few percent, not exact. A plan built from these carries ``approximate: true`` and a
warning. Once the model is downloaded, the plan reads the real GGUF instead.
"""

from __future__ import annotations

from typing import Any

# MXFP4: 32 weights in 17 bytes (4.25 bits each). Q8_0: 32 weights in 34 bytes.
_MXFP4 = 17 / 32
_Q8_0 = 34 / 32

KNOWN_ARCH: dict[str, dict[str, Any]] = {
    "120b": {
        "name": "gpt-oss-120b", "arch": "gpt-oss", "n_layer": 36, "n_embd": 2880, "n_head": 64, "n_head_kv": 8,
        "head_dim": 64, "n_swa": 128, "swa_pattern": 2, "n_expert": 128, "n_expert_used": 4, "n_ff_exp": 2880,
        "n_vocab": 201088, "n_ctx_train": 131072,
    },
    "20b": {
        "name": "gpt-oss-20b", "arch": "gpt-oss", "n_layer": 24, "n_embd": 2880, "n_head": 64, "n_head_kv": 8,
        "head_dim": 64, "n_swa": 128, "swa_pattern": 2, "n_expert": 32, "n_expert_used": 4, "n_ff_exp": 2880,
        "n_vocab": 201088, "n_ctx_train": 131072,
    },
}


def synthetic_tensors(a: dict[str, Any], total_bytes: int) -> list[tuple[str, int]]:
    """(name, bytes) for a model of architecture ``a`` whose files total ``total_bytes``:
    expert tensors at MXFP4 from the parameter count, the rest (embeddings, output,
    attention, norms) scaled so that everything sums to ``total_bytes``."""
    L, e, ff = a["n_layer"], a["n_embd"], a["n_ff_exp"]
    hd, nh, nkv = a["head_dim"], a["n_head"], a["n_head_kv"]
    expert_each = int(e * ff * a["n_expert"] * _MXFP4)  # one of gate / up / down, per layer
    experts = 3 * expert_each * L
    embd = a["n_vocab"] * e  # parameters of token_embd, and of output
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
