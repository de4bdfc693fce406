"""Pure cores: hashing conventions (fixed vectors), shard naming, GGUF header reading."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ossctl.artifacts import hashing
from ossctl.artifacts.gguf import read_gguf_kv
from ossctl.artifacts.shards import check_split_headers, order_parts, parse_split, safe_relpath
from ossctl.errors import IntegrityError, UsageError
from tests.support.ggufgen import write_model


def test_composite_vector_three_parts():
    # SHA-256 of the ASCII concatenation of the lowercase hex digests, in part order
    assert hashing.composite_sha256(["a" * 64, "B" * 64, "c" * 64]) == \
        "b20dd8bdd812e18599a5f4b49437265f5ef51619181f1b0f6f57775bf1fbae60"


def test_composite_single_file_is_its_own_hash():
    d = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert hashing.composite_sha256([d.upper()]) == d


def test_composite_depends_on_order():
    assert hashing.composite_sha256(["a" * 64, "b" * 64]) != hashing.composite_sha256(["b" * 64, "a" * 64])


def test_model_id_vector():
    assert hashing.model_id("ggml-org/gpt-oss-120b-GGUF", "gpt-oss-120b-mxfp4-00001-of-00003.gguf") == \
        "0x14a27756f6b24902cb060fc650b37abffc3319db5e966c9b0c6ecbe737e4183d"


def test_keccak_is_not_sha3():
    assert hashing.keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


@pytest.mark.parametrize("size", [0, 1, hashing.CHUNK - 1, hashing.CHUNK, hashing.CHUNK + 7])
def test_sha256_file_matches_hashlib(tmp_path, size):
    p = tmp_path / "f"
    data = bytes((i * 7) % 251 for i in range(size))
    p.write_bytes(data)
    seen = []
    assert hashing.sha256_file(p, seen.append) == hashlib.sha256(data).hexdigest()
    assert sum(seen) == size


def test_sha256_stream_mapped_and_read_agree_and_the_state_continues(tmp_path, monkeypatch):
    p = tmp_path / "f"
    data = bytes((i * 13) % 251 for i in range(3 * 1024 + 5))
    p.write_bytes(data)
    mapped, n = hashing.sha256_stream(p, chunk=1024)  # hashed in place, 4 slices
    assert n == len(data) and mapped.hexdigest() == hashlib.sha256(data).hexdigest()

    def refuse(*_a, **_k):
        raise OSError("no mmap here")

    monkeypatch.setattr(hashing.mmap, "mmap", refuse)  # e.g. a file system that cannot map
    seen = []
    read, n = hashing.sha256_stream(p, seen.append, chunk=1024)
    assert n == len(data) and seen == [1024, 1024, 1024, 5] and read.hexdigest() == mapped.hexdigest()
    read.update(b"more")  # a resumed download goes on from the returned state
    assert read.hexdigest() == hashlib.sha256(data + b"more").hexdigest()


def test_sha256_files_keeps_order(tmp_path):
    paths = []
    for i in range(5):
        p = tmp_path / f"f{i}"
        p.write_bytes(bytes([i]) * (1000 + i))
        paths.append(p)
    assert hashing.sha256_files(paths, workers=3) == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_parse_and_order_parts():
    names = ["m-00003-of-00003.gguf", "m-00001-of-00003.gguf", "m-00002-of-00003.gguf"]
    assert order_parts(names) == sorted(names)
    assert parse_split("dir/m-00002-of-00003.gguf").no == 2
    assert parse_split("m.gguf") is None
    assert order_parts(["m.gguf"]) == ["m.gguf"]


def test_order_parts_names_missing():
    with pytest.raises(IntegrityError, match="missing m-00002-of-00003.gguf"):
        order_parts(["m-00001-of-00003.gguf", "m-00003-of-00003.gguf"])


def test_order_parts_refuses_mixed_sets():
    with pytest.raises(UsageError, match="more than one split set"):
        order_parts(["a-00001-of-00001.gguf", "b-00001-of-00002.gguf", "b-00002-of-00002.gguf"])
    with pytest.raises(UsageError, match="unsplit"):
        order_parts(["a.gguf", "b.gguf"])


@pytest.mark.parametrize("name", ["../x.gguf", "/etc/passwd", "a/../../b.gguf", "a\\..\\b.gguf", "", "a//b.gguf"])
def test_safe_relpath_refuses_escapes(name):
    with pytest.raises(UsageError, match="escape"):
        safe_relpath(name)


def test_safe_relpath_allows_subdirs():
    assert str(safe_relpath("sub/m-00001-of-00002.gguf")) == "sub/m-00001-of-00002.gguf"


def test_gguf_header_and_split_keys(tmp_path):
    paths = write_model(tmp_path, "m", parts=3)
    kv = read_gguf_kv(paths[0])
    assert kv["general.architecture"] == "llama"
    assert kv["llama.context_length"] == 4096
    assert (kv["split.no"], kv["split.count"]) == (0, 3)
    last = read_gguf_kv(paths[2], {"split.no"})
    assert last["split.no"] == 2 and "general.architecture" not in last
    check_split_headers(tmp_path, [p.name for p in paths])


def test_split_headers_disagreeing_with_names(tmp_path):
    paths = write_model(tmp_path, "m", parts=3)
    # swap two parts' contents: names now disagree with split.no
    a, b = paths[1].read_bytes(), paths[2].read_bytes()
    paths[1].write_bytes(b)
    paths[2].write_bytes(a)
    with pytest.raises(IntegrityError, match="header says part 3 of 3, the name says part 2 of 3"):
        check_split_headers(tmp_path, [p.name for p in paths])


def test_bad_magic_and_truncated(tmp_path):
    p = tmp_path / "x-00001-of-00001.gguf"
    p.write_bytes(b"NOPE" + b"\0" * 64)
    with pytest.raises(IntegrityError, match="bad magic"):
        read_gguf_kv(p)
    good = write_model(tmp_path / "g", "m", parts=1)[0]
    p.write_bytes(good.read_bytes()[:40])
    with pytest.raises(IntegrityError, match="truncated"):
        read_gguf_kv(p)
