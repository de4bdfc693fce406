"""The GGUF format, read with the stdlib: the header, the key/value section, the tensor
table, the split keys ``gguf-split`` writes, and the ggml type sizes.

It reads only the first kilobytes of a file (array values are skipped by seeking), so
reading every part of a 60 GB split set costs milliseconds and needs no numpy.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from ossctl.errors import IntegrityError

GGUF_MAGIC = b"GGUF"

# the keys gguf-split writes in every part: part number (0-based), parts in the set, and
# tensors in the whole model
SPLIT_NO, SPLIT_COUNT, SPLIT_TENSORS_COUNT = "split.no", "split.count", "split.tensors.count"

# ggml type id -> (block size in elements, bytes per block); as gguf.GGML_QUANT_SIZES
# (a unit test checks this table against the gguf package).
GGML_TYPE_SIZE: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 40),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18),
}

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFValueReader:
    def __init__(self, fh: BinaryIO):
        self.fh = fh

    def read(self, n: int) -> bytes:
        b = self.fh.read(n)
        if len(b) != n:
            raise EOFError
        return b

    def u32(self) -> int:
        return struct.unpack("<I", self.read(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.read(8))[0]

    def string(self) -> str:
        return self.read(self.u64()).decode("utf-8", "replace")

    def skip_string(self) -> None:
        self.fh.seek(self.u64(), 1)

    def value(self, vtype: int, want: bool) -> Any:
        if vtype in _SCALAR:
            fmt = _SCALAR[vtype]
            return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]
        if vtype == _STRING:
            if want:
                return self.string()
            self.skip_string()
            return None
        if vtype == _ARRAY:
            etype, n = self.u32(), self.u64()
            if etype in _SCALAR:
                size = struct.calcsize(_SCALAR[etype])
                if want and n <= 4096:
                    return list(struct.unpack(f"<{n}{_SCALAR[etype][1]}", self.read(size * n)))
                self.fh.seek(size * n, 1)
                return None
            if etype == _STRING:
                out = [] if want and n <= 4096 else None
                for _ in range(n):
                    if out is not None:
                        out.append(self.string())
                    else:
                        self.skip_string()
                return out
            raise ValueError(f"unsupported nested GGUF array type {etype}")
        raise ValueError(f"unknown GGUF value type {vtype}")


def read_gguf(path: Path, keys: set[str] | None = None,
              tensors: bool = False) -> tuple[dict[str, Any], list[tuple[str, list[int], int]] | None]:
    """Read the GGUF key/value metadata of ``path`` (only ``keys`` if given; large arrays
    come back as ``None``; ``"__version__"`` and ``"__tensor_count__"`` are added) and,
    with ``tensors``, the tensor table as (name, dims, ggml type).
    Raises :class:`IntegrityError` when the file is not GGUF or its header is truncated."""
    try:
        with open(path, "rb") as fh:
            r = GGUFValueReader(fh)
            if r.read(4) != GGUF_MAGIC:
                raise IntegrityError(f"{path.name} is not a GGUF file (bad magic)",
                                     hint="the file is corrupt or not a model: move it aside, or fetch it again with `ossctl download`")
            version = r.u32()
            n_tensors, n_kv = r.u64(), r.u64()
            out: dict[str, Any] = {"__version__": version, "__tensor_count__": n_tensors}
            for _ in range(n_kv):
                key = r.string()
                want = keys is None or key in keys
                out_val = r.value(r.u32(), want)
                if want:
                    out[key] = out_val
            if not tensors:
                return out, None
            table = []
            for _ in range(n_tensors):
                name = r.string()
                dims = [r.u64() for _ in range(r.u32())]
                ttype = r.u32()
                r.u64()  # data offset
                table.append((name, dims, ttype))
            return out, table
    except EOFError:
        raise IntegrityError(f"{path.name}: GGUF header is truncated",
                             hint="the file is incomplete; re-run `ossctl download`") from None
    except (ValueError, UnicodeDecodeError, struct.error) as exc:
        raise IntegrityError(f"{path.name}: malformed GGUF header ({exc})") from None


def read_gguf_kv(path: Path, keys: set[str] | None = None) -> dict[str, Any]:
    """The key/value metadata of ``path``; see :func:`read_gguf`."""
    return read_gguf(path, keys)[0]


def arch_value(kv: dict[str, Any], name: str) -> Any:
    """The architecture-scoped key ``<general.architecture>.<name>`` of ``kv`` (e.g.
    ``context_length``, the trained context in tokens); None when absent."""
    arch = kv.get("general.architecture")
    return kv.get(f"{arch}.{name}") if arch else None


def tensor_entries(path: Path) -> list[tuple[str, list[int], int]]:
    """(name, dims, ggml type) of every tensor in one GGUF file. Raises
    :class:`IntegrityError` as :func:`read_gguf`."""
    return read_gguf(path, keys=set(), tensors=True)[1]


def tensor_bytes(path: Path) -> list[tuple[str, int]]:
    """(name, bytes) of every tensor in one GGUF file, from its dims and ggml type.
    Raises :class:`IntegrityError` for a ggml type this table does not know."""
    out = []
    for name, dims, ttype in tensor_entries(path):
        if ttype not in GGML_TYPE_SIZE:
            raise IntegrityError(f"{path.name}: tensor {name} has unknown ggml type {ttype}",
                                 hint="ossctl is older than this model's quantisation; upgrade ossctl")
        block, size = GGML_TYPE_SIZE[ttype]
        n = 1
        for d in dims:
            n *= d
        out.append((name, n // block * size))
    return out
