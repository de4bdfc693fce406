"""Issue 26, items 10 and 11: crafted GGUF headers give exit 4 and one line (never
"unexpected error"), and the tensor table is bounded as llama.cpp's reader bounds it,
so a small file claiming millions of tensors is refused fast and in little memory."""

from __future__ import annotations

import hashlib
import resource
import struct
import time
from pathlib import Path

import pytest

from tests.support.cli import run_cli


def _s(text: str | bytes) -> bytes:
    b = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(b)) + b


def _kv_str(key: str, value: str) -> bytes:
    return _s(key) + struct.pack("<I", 8) + _s(value)


def _kv_u32(key: str, value: int) -> bytes:
    return _s(key) + struct.pack("<II", 4, value)


def header(kvs: list[bytes], n_tensors: int = 0, tail: bytes = b"") -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, len(kvs)) + b"".join(kvs) + tail


def error_line(r) -> str:
    errs = [ln for ln in r.err.splitlines() if ln.startswith("error: ")]
    assert len(errs) == 1 and "Traceback" not in r.err and "unexpected error" not in r.err, r.err
    return errs[0]


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


# --- 10. crafted headers -> exit 4, one line ------------------------------------------

@pytest.mark.parametrize("name,blob,needle", [
    ("key-2e63", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", (1 << 63) - 1) + b"x" * 64,
     "a key of 9223372036854775807 bytes, longer than the rest of the file"),
    ("key-2e62", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 62) + b"x" * 64,
     "longer than the rest of the file"),
    ("kv-count", b"GGUF" + struct.pack("<IQQ", 3, 0, 1 << 60) + b"\0" * 64,
     "it claims 1152921504606846976 key/value pairs, more than the file can hold"),
    ("array", header([_s("a") + struct.pack("<IIQ", 9, 4, 1 << 61)]), "an array of 2305843009213693952 values"),
    ("split-no-string", header([_kv_str("split.no", "one"), _kv_u32("split.count", 2)]),
     "GGUF key split.no is a string, not an integer"),
    ("split-count-list", header([_kv_u32("split.no", 0),
                                 _s("split.count") + struct.pack("<IIQ", 9, 4, 2) + struct.pack("<II", 1, 2)]),
     "GGUF key split.count is a list, not an integer"),
])
def test_crafted_headers_are_exit_4_with_one_line(home, tmp_path, name, blob, needle):
    d = tmp_path / name
    d.mkdir()
    # a split name, so the split keys are read (an unsplit single file skips them)
    paths = [d / f"m-0000{i}-of-00002.gguf" for i in (1, 2)]
    for p in paths:
        p.write_bytes(blob)
    before = [digest(p) for p in paths]
    for args in (("hash", *map(str, paths)), ("adopt", str(d), "--repo", "acme/m", "--offline")):
        r = run_cli(*args)
        assert r.code == 4, (args, r.err)
        line = error_line(r)
        assert needle in line and line.startswith(f"error: {paths[0].name}"), line
        assert len(line) < 300
    assert [digest(p) for p in paths] == before and not (d / "manifest.toml").exists()


# --- 11. the tensor table is bounded ----------------------------------------------------

def _sparse_model(path: Path, n_tensors: int) -> Path:
    """4 KB of real header (architecture and all) claiming ``n_tensors`` tensors, made as
    long as that claim needs with a hole (a sparse file: no disk used)."""
    kvs = [_kv_str("general.architecture", "llama"), _kv_u32("llama.block_count", 1),
           _kv_u32("llama.embedding_length", 64), _kv_u32("llama.attention.head_count", 4),
           _kv_u32("llama.context_length", 4096)]
    blob = header(kvs, n_tensors)
    blob += b"\0" * (4096 - len(blob))
    with open(path, "wb") as fh:
        fh.write(blob)
        fh.truncate(len(blob) + n_tensors * 24 + 4096)
    return path


def test_a_4kb_sparse_file_claiming_4m_tensors_is_refused_fast_and_small(home, tmp_path):
    from ossctl.artifacts.gguf import read_gguf
    from ossctl.errors import IntegrityError

    d = tmp_path / "sparse"
    d.mkdir()
    p = _sparse_model(d / "sparse.gguf", 4_000_000)
    assert p.stat().st_blocks * 512 <= 64 * 1024  # really sparse
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(IntegrityError) as info:
        read_gguf(p, tensors=True)
    took = time.perf_counter() - t0
    grew_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    assert took < 0.5 and grew_kib < 20_000, (took, grew_kib)
    assert "appears twice" in info.value.message or "data offset" in info.value.message
    # through the command a new user runs: one line, exit 4
    r = run_cli("vram", "plan", "--model", str(d), "--gpus", "1x80gb", env={"OSSCTL_FAKE_NVML": "4x80gb"})
    assert r.code == 4, r.err
    assert "sparse.gguf: malformed GGUF header (tensor" in error_line(r)


def test_a_claim_larger_than_the_file_is_refused_before_any_table_is_read(tmp_path):
    from ossctl.artifacts.gguf import read_gguf
    from ossctl.errors import IntegrityError

    p = tmp_path / "small.gguf"
    p.write_bytes(header([_kv_str("general.architecture", "llama")], n_tensors=4_000_000) + b"\0" * 4000)
    with pytest.raises(IntegrityError) as info:
        read_gguf(p, tensors=True)
    assert "truncated or malformed: it claims 4000000 tensors, more than the file can hold" in info.value.message


@pytest.mark.parametrize("entry,needle", [
    (_s("x" * 64) + struct.pack("<I", 1) + struct.pack("<Q", 32) + struct.pack("<IQ", 0, 0), "longer than 63 bytes"),
    (_s("t") + struct.pack("<I", 5) + struct.pack("<5Q", 1, 1, 1, 1, 1) + struct.pack("<IQ", 0, 0),
     "has 5 dimensions (at most 4)"),
    (_s("t") + struct.pack("<I", 2) + struct.pack("<2Q", 1 << 40, 1 << 40) + struct.pack("<IQ", 0, 0),
     "more elements than int64 holds"),
    (_s("t") + struct.pack("<I", 1) + struct.pack("<Q", 32) + struct.pack("<IQ", 0, 64), "data offset 64, expected 0"),
])
def test_tensor_entries_are_checked_as_llama_cpp_does(tmp_path, entry, needle):
    from ossctl.artifacts.gguf import read_gguf
    from ossctl.errors import IntegrityError

    p = tmp_path / "t.gguf"
    p.write_bytes(header([_kv_str("general.architecture", "llama")], n_tensors=1, tail=entry) + b"\0" * 256)
    with pytest.raises(IntegrityError) as info:
        read_gguf(p, tensors=True)
    assert needle in info.value.message


def test_the_generated_model_still_reads(tmp_path):
    from ossctl.artifacts.gguf import tensor_bytes
    from tests.support.ggufgen import write_model

    parts = write_model(tmp_path, "tiny", parts=2)
    assert sum(len(tensor_bytes(p)) for p in parts) > 10
