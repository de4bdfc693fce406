"""Write a tiny but real GGUF model (llama architecture, random f32 weights, a byte-level
SPM vocabulary and a chat template) that llama-server can load, optionally split into
parts the way ``llama-gguf-split`` writes them (all metadata in part 1; every part
carries ``split.no`` / ``split.count`` / ``split.tensors.count``).

Used by tests and benches; ``python -m tests.support.ggufgen OUTDIR --parts 3``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

N_VOCAB_BYTES = 256
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _tensors(n_embd: int, n_layer: int, n_ff: int, n_vocab: int, seed: int) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    out = [("token_embd.weight", w(n_vocab, n_embd))]
    for i in range(n_layer):
        out += [
            (f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32)),
            (f"blk.{i}.attn_q.weight", w(n_embd, n_embd)),
            (f"blk.{i}.attn_k.weight", w(n_embd, n_embd)),
            (f"blk.{i}.attn_v.weight", w(n_embd, n_embd)),
            (f"blk.{i}.attn_output.weight", w(n_embd, n_embd)),
            (f"blk.{i}.ffn_norm.weight", np.ones(n_embd, np.float32)),
            (f"blk.{i}.ffn_gate.weight", w(n_ff, n_embd)),
            (f"blk.{i}.ffn_up.weight", w(n_ff, n_embd)),
            (f"blk.{i}.ffn_down.weight", w(n_embd, n_ff)),
        ]
    out += [("output_norm.weight", np.ones(n_embd, np.float32)), ("output.weight", w(n_vocab, n_embd))]
    return out


def _vocab() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"]
    types = [2, 3, 3]  # UNKNOWN, CONTROL, CONTROL
    tokens += [f"<0x{i:02X}>" for i in range(N_VOCAB_BYTES)]
    types += [6] * N_VOCAB_BYTES  # BYTE
    words = ["\u2581", "\u2581the", "\u2581a", "\u2581is", "\u2581hello", "\u2581world"]
    tokens += words
    types += [1] * len(words)
    scores = [0.0] * len(tokens)
    return tokens, scores, types


def add_tokenizer(wr, chat_template: str = CHAT_TEMPLATE) -> None:
    """The byte-level SPM vocabulary and a chat template, on a ``gguf.GGUFWriter``."""
    tokens, scores, types = _vocab()
    wr.add_tokenizer_model("llama")
    wr.add_token_list(tokens)
    wr.add_token_scores(scores)
    wr.add_token_types(types)
    wr.add_bos_token_id(1)
    wr.add_eos_token_id(2)
    wr.add_unk_token_id(0)
    wr.add_chat_template(chat_template)


def n_vocab() -> int:
    return len(_vocab()[0])


def write_model(outdir: Path, name: str = "tiny", parts: int = 3, *, n_embd: int = 64, n_layer: int = 2,
                n_head: int = 4, n_ff: int = 128, ctx: int = 4096, seed: int = 0,
                pad_bytes: int = 0) -> list[Path]:
    """Write the model into ``outdir``; returns the part paths in order. ``parts == 1``
    writes ``{name}.gguf``; otherwise ``{name}-0000N-of-0000M.gguf``. ``pad_bytes`` adds an
    extra unused tensor of about that many bytes (to make transfers long enough to
    interrupt)."""
    import gguf

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    tensors = _tensors(n_embd, n_layer, n_ff, n_vocab(), seed)
    if pad_bytes:
        rng = np.random.default_rng(seed + 1)
        tensors.insert(1, ("pad.weight", rng.standard_normal(max(1, pad_bytes // 4)).astype(np.float32)))
    n = len(tensors)
    if parts == 1:
        paths = [outdir / f"{name}.gguf"]
        groups = [tensors]
    else:
        paths = [outdir / f"{name}-{i:05d}-of-{parts:05d}.gguf" for i in range(1, parts + 1)]
        per = -(-n // parts)
        groups = [tensors[i * per:(i + 1) * per] for i in range(parts)]
    for i, (path, group) in enumerate(zip(paths, groups)):
        wr = gguf.GGUFWriter(str(path), "llama")
        if i == 0:
            wr.add_name(name)
            wr.add_context_length(ctx)
            wr.add_embedding_length(n_embd)
            wr.add_block_count(n_layer)
            wr.add_feed_forward_length(n_ff)
            wr.add_head_count(n_head)
            wr.add_head_count_kv(n_head)
            wr.add_rope_dimension_count(n_embd // n_head)
            wr.add_layer_norm_rms_eps(1e-5)
            wr.add_file_type(0)  # ALL_F32
            add_tokenizer(wr)
            wr.add_add_bos_token(True)
        else:
            # later parts carry only the split keys, like llama-gguf-split writes them
            wr.kv_data[0].pop("general.architecture", None)
        if parts > 1:
            wr.add_uint16("split.no", i)
            wr.add_uint16("split.count", parts)
            wr.add_int32("split.tensors.count", n)
        for tname, arr in group:
            wr.add_tensor(tname, arr)
        wr.write_header_to_file()
        wr.write_kv_data_to_file()
        wr.write_tensors_to_file()
        wr.close()
    return paths


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--name", default="tiny")
    ap.add_argument("--parts", type=int, default=3)
    ap.add_argument("--pad-bytes", type=int, default=0)
    a = ap.parse_args()
    for p in write_model(Path(a.outdir), a.name, a.parts, pad_bytes=a.pad_bytes):
        print(p)


if __name__ == "__main__":
    main()
