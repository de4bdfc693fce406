"""SHA-256 of model parts (streaming, parallel across parts), the composite hash and the
model id.

Conventions (they must match what marketplaces registered):
- composite, N >= 2 parts: SHA-256 of the ASCII concatenation of the lowercase hex
  digests in part order; a single file: that file's own SHA-256.
- model id: keccak256 of UTF-8 ``repo + "/" + first_part_file_name``, as ``0x`` + hex
  (the ModelRegistry's ``getModelId(repo, fileName)``).
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CHUNK = 8 * 1024 * 1024  # bytes; large slices let hashlib release the GIL for long stretches


def sha256_stream(path: Path, on_progress: Callable[[int], None] | None = None,
                  chunk: int = CHUNK) -> tuple["hashlib._Hash", int]:
    """The running SHA-256 state of a file and the bytes read, ``chunk`` bytes at a time;
    ``on_progress(n_bytes)`` after each block. The state can be fed more data (a resumed
    download continues it). Raises ``OSError``.

    The file is mapped and hashed in place: hashing straight from the page cache skips
    the copy into a buffer that ``readinto`` makes, 12-15 % of the CPU time per byte here
    (bench/hash_parts.py), which is the whole budget when hashing is CPU-bound. Files that
    cannot be mapped (empty, a pipe) are read into one reused buffer."""
    with open(path, "rb", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > 0:
            try:
                mapped = mmap.mmap(fh.fileno(), size, prot=mmap.PROT_READ)
            except (OSError, ValueError, AttributeError):
                mapped = None
            if mapped is not None:
                with mapped:
                    return _hash_mapped(mapped, size, on_progress, chunk)
        return _hash_read(fh, on_progress, chunk)


def _hash_mapped(mapped: "mmap.mmap", size: int, on_progress, chunk: int) -> tuple["hashlib._Hash", int]:
    with contextlib.suppress(AttributeError, OSError):
        mapped.madvise(mmap.MADV_SEQUENTIAL)  # read-ahead for files not in the page cache
    h = hashlib.sha256()
    view = memoryview(mapped)
    try:
        for start in range(0, size, chunk):
            part = view[start:start + chunk]
            h.update(part)  # hashlib releases the GIL for the whole slice
            part.release()
            if on_progress:
                on_progress(min(chunk, size - start))
    finally:
        view.release()
    return h, size


def _hash_read(fh, on_progress, chunk: int) -> tuple["hashlib._Hash", int]:
    with contextlib.suppress(AttributeError, OSError):
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
    h = hashlib.sha256()
    total = 0
    buf = bytearray(chunk)
    view = memoryview(buf)
    while True:
        n = fh.readinto(buf)
        if not n:
            break
        h.update(view[:n])
        total += n
        if on_progress:
            on_progress(n)
    return h, total


def sha256_file(path: Path, on_progress: Callable[[int], None] | None = None, chunk: int = CHUNK) -> str:
    """Lowercase hex SHA-256 of a file (see :func:`sha256_stream`). Raises ``OSError``."""
    return sha256_stream(path, on_progress, chunk)[0].hexdigest()


def sha256_files(paths: Sequence[Path], workers: int | None = None,
                 on_progress: Callable[[int], None] | None = None) -> list[str]:
    """Hash several files in parallel threads (hashlib releases the GIL while hashing),
    returning digests in the order given.

    By default one thread per file (up to 32), even beyond the core count: SHA-256 of one
    file cannot be split, so with 3 equal parts on 2 cores, 3 time-shared threads finish
    together at ~100% of both cores, where 2 workers would leave one core idle for the
    last part."""
    if not paths:
        return []
    workers = max(1, min(len(paths), workers or 32))
    if workers == 1:
        return [sha256_file(p, on_progress) for p in paths]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sha256") as pool:
        return list(pool.map(lambda p: sha256_file(p, on_progress), paths))


def composite_sha256(digests: Sequence[str]) -> str:
    """Composite of per-part digests given in part order (see module doc)."""
    if not digests:
        raise ValueError("no digests")
    if len(digests) == 1:
        return digests[0].lower()
    return hashlib.sha256("".join(d.lower() for d in digests).encode("ascii")).hexdigest()


def keccak256(data: bytes) -> bytes:
    from eth_hash.auto import keccak

    return keccak(data)


def model_id(repo: str, first_file_name: str) -> str:
    """``0x``-prefixed keccak256 of ``repo/first_file_name`` (UTF-8)."""
    return "0x" + keccak256(f"{repo}/{first_file_name}".encode("utf-8")).hex()
