"""Write a tiny but real gpt-oss-architecture GGUF (alternating sliding-window / full
attention layers, mixture of experts, attention sinks) that llama-server can load on the
CPU; or, with ``metadata_only=True``, only its header (for pure fit tests).

Shapes follow ``llama_model_openai_moe::load_arch_tensors`` of the pinned llama.cpp.
``python -m tests.support.ossgen OUTDIR``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tests.support.ggufgen import add_tokenizer, n_vocab

ARCH = "gpt-oss"
# Shaped like the harmony template of the real gpt-oss models where it matters here: the
# system message carries "Reasoning: <level>" from the ``reasoning_effort`` template
# variable (default medium), so a test can read the level the server used off the
# rendered prompt (/apply-template) or its token count.
HARMONY_TEMPLATE = (
    "<|start|>system<|message|>Reasoning: {{ reasoning_effort | default('medium') }}<|end|>"
    "{% for m in messages %}<|start|>{{ m['role'] }}<|message|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant{% endif %}"
)


def _tensors(n_embd, n_layer, n_head, n_head_kv, head_dim, n_expert, n_ff_exp, n_vocab, seed):
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:  # numpy shape = ggml ne reversed
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    out = [("token_embd.weight", w(n_vocab, n_embd))]
    for i in range(n_layer):
        b = f"blk.{i}."
        out += [
            (b + "attn_norm.weight", np.ones(n_embd, np.float32)),
            (b + "post_attention_norm.weight", np.ones(n_embd, np.float32)),
            (b + "attn_q.weight", w(n_head * head_dim, n_embd)),
            (b + "attn_k.weight", w(n_head_kv * head_dim, n_embd)),
            (b + "attn_v.weight", w(n_head_kv * head_dim, n_embd)),
            (b + "attn_output.weight", w(n_embd, n_head * head_dim)),
            (b + "attn_output.bias", w(n_embd)),
            (b + "attn_sinks.weight", w(n_head)),
            (b + "ffn_gate_inp.weight", w(n_expert, n_embd)),
            (b + "ffn_gate_inp.bias", w(n_expert)),
            (b + "ffn_gate_exps.weight", w(n_expert, n_ff_exp, n_embd)),
            (b + "ffn_down_exps.weight", w(n_expert, n_embd, n_ff_exp)),
            (b + "ffn_up_exps.weight", w(n_expert, n_ff_exp, n_embd)),
            (b + "ffn_gate_exps.bias", w(n_expert, n_ff_exp)),
            (b + "ffn_down_exps.bias", w(n_expert, n_embd)),
            (b + "ffn_up_exps.bias", w(n_expert, n_ff_exp)),
        ]
    out += [("output_norm.weight", np.ones(n_embd, np.float32)), ("output.weight", w(n_vocab, n_embd))]
    return out


def write_oss(outdir: Path, name: str = "tiny-oss", *, n_embd: int = 64, n_layer: int = 4, n_head: int = 4,
              n_head_kv: int = 2, head_dim: int = 32, n_expert: int = 4, n_expert_used: int = 2, n_ff_exp: int = 32,
              ctx: int = 8192, sliding_window: int = 128, seed: int = 0, metadata_only: bool = False) -> Path:
    """Write ``outdir/{name}.gguf``; returns its path."""
    import gguf

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / f"{name}.gguf"
    wr = gguf.GGUFWriter(str(path), ARCH)
    wr.add_name(name)
    wr.add_context_length(ctx)
    wr.add_embedding_length(n_embd)
    wr.add_block_count(n_layer)
    wr.add_feed_forward_length(n_ff_exp)
    wr.add_head_count(n_head)
    wr.add_head_count_kv(n_head_kv)
    wr.add_key_length(head_dim)
    wr.add_value_length(head_dim)
    wr.add_rope_dimension_count(head_dim)
    wr.add_rope_freq_base(150000.0)
    wr.add_layer_norm_rms_eps(1e-5)
    wr.add_sliding_window(sliding_window)
    wr.add_expert_count(n_expert)
    wr.add_expert_used_count(n_expert_used)
    wr.add_expert_feed_forward_length(n_ff_exp)
    wr.add_file_type(0)
    add_tokenizer(wr, HARMONY_TEMPLATE)
    if not metadata_only:
        for tname, arr in _tensors(n_embd, n_layer, n_head, n_head_kv, head_dim, n_expert, n_ff_exp, n_vocab(), seed):
            wr.add_tensor(tname, arr)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--metadata-only", action="store_true")
    a = ap.parse_args()
    print(write_oss(Path(a.outdir), metadata_only=a.metadata_only))


if __name__ == "__main__":
    main()
