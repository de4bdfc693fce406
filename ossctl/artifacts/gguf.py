"""The GGUF format, read with the stdlib: the header, the key/value section, the tensor
table, the split keys ``gguf-split`` writes, and the ggml type sizes.

It reads only the first kilobytes of a file (array values are skipped by seeking), so
reading every part of a 60 GB split set costs milliseconds and needs no numpy.
"""

from __future__ import annotations

import os
import stat
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

# Bounds as llama.cpp's gguf reader (ggml/src/gguf.cpp) checks them: a tensor name is
# shorter than GGML_MAX_NAME bytes, a tensor has at most GGML_MAX_DIMS dimensions, each
# dimension is >= 0 and their product fits int64, names are unique, and each tensor's
# data offset is the running sum of the padded sizes before it. Counts and lengths are
# bounded by the bytes the file can still hold, so a header claiming 4 M tensors in a
# 4 KB file is refused before anything is allocated for them.
GGML_MAX_NAME = 64
GGML_MAX_DIMS = 4
GGUF_DEFAULT_ALIGNMENT = 32
_MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, the smallest value
_MIN_TENSOR_BYTES = 8 + 4 + 4 + 8  # name length, n_dims, ggml type, data offset
_INT64_MAX = (1 << 63) - 1

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class Short(ValueError):
    """A length or count larger than the rest of the file: truncated, or crafted."""


class GGUFValueReader:
    """Reads little-endian GGUF values from ``fh``; every length is checked against the
    bytes left in the file (``size``) before anything is read or allocated. Raises
    ``EOFError`` (truncated) and ``ValueError`` (a length or count the file cannot hold,
    an unknown type), which :func:`read_gguf` turns into one line."""

    def __init__(self, fh: BinaryIO, size: int | None = None):
        self.fh = fh
        self.size = size if size is not None else os.fstat(fh.fileno()).st_size

    def left(self) -> int:
        return self.size - self.fh.tell()

    def read(self, n: int) -> bytes:
        if n > self.left():
            raise EOFError
        b = self.fh.read(n)
        if len(b) != n:
            raise EOFError
        return b

    def skip(self, n: int) -> None:
        if n > self.left():
            raise EOFError
        self.fh.seek(n, 1)

    def u32(self) -> int:
        return struct.unpack("<I", self.read(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.read(8))[0]

    def _length(self, what: str) -> int:
        n = self.u64()
        if n > self.left():
            raise Short(f"{what} of {n} bytes, longer than the rest of the file")
        return n

    def string(self, what: str = "a string") -> str:
        return self.read(self._length(what)).decode("utf-8", "replace")

    def skip_string(self) -> None:
        self.skip(self._length("a string"))

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
                if n * size > self.left():
                    raise Short(f"an array of {n} values, longer than the rest of the file")
                if want and n <= 4096:
                    return list(struct.unpack(f"<{n}{_SCALAR[etype][1]}", self.read(size * n)))
                self.skip(size * n)
                return None
            if etype == _STRING:
                if n * 8 > self.left():
                    raise Short(f"an array of {n} strings, longer than the rest of the file")
                out = [] if want and n <= 4096 else None
                for _ in range(n):
                    if out is not None:
                        out.append(self.string())
                    else:
                        self.skip_string()
                return out
            raise ValueError(f"unsupported nested GGUF array type {etype}")
        raise ValueError(f"unknown GGUF value type {vtype}")

    def tensor_info(self, expected_offset: int, alignment: int) -> tuple[str, list[int], int, int]:
        """One tensor table entry as (name, dims, ggml type, padded data bytes), checked
        as llama.cpp checks it. Raises ``ValueError`` / ``EOFError``."""
        name = self.string("a tensor name")
        if len(name.encode("utf-8", "replace")) >= GGML_MAX_NAME:
            raise ValueError(f"tensor name {name[:GGML_MAX_NAME]!r}... is longer than {GGML_MAX_NAME - 1} bytes")
        n_dims = self.u32()
        if n_dims > GGML_MAX_DIMS:
            raise ValueError(f"tensor {name!r} has {n_dims} dimensions (at most {GGML_MAX_DIMS})")
        dims = [self.u64() for _ in range(n_dims)]
        elements = 1
        for d in dims:
            if d > _INT64_MAX:
                raise ValueError(f"tensor {name!r} has a negative dimension")
            elements *= d
            if elements > _INT64_MAX:
                raise ValueError(f"tensor {name!r} has more elements than int64 holds")
        ttype = self.u32()
        if ttype not in GGML_TYPE_SIZE:
            raise UnknownType(name, ttype)
        block, per_block = GGML_TYPE_SIZE[ttype]
        if dims and dims[0] % block:
            raise ValueError(f"tensor {name!r}: its first dimension {dims[0]} is not a multiple of "
                             f"the type's block size {block}")
        offset = self.u64()
        if offset != expected_offset:
            raise ValueError(f"tensor {name!r} has data offset {offset}, expected {expected_offset}")
        nbytes = elements // block * per_block
        return name, dims, ttype, -(-nbytes // alignment) * alignment


class UnknownType(Exception):
    """A tensor of a ggml type this table does not know (newer than ossctl, or garbage)."""

    def __init__(self, name: str, ttype: int):
        super().__init__(name, ttype)
        self.name, self.ttype = name, ttype


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading, refused unless it is a regular file: opening a FIFO
    named ``x.gguf`` must not wait for a writer (the open does not block, then the type
    is checked on the open file). Raises :class:`IntegrityError` (not a regular file)
    and ``OSError``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise not_regular(Path(path), st.st_mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (``a FIFO``, ``a directory``...)."""
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return what
    return "not a regular file"


def not_regular(path: Path, mode: int) -> IntegrityError:
    return IntegrityError(f"{path.name} is {file_kind(mode)}, not a regular file",
                          hint=f"a model part is a plain file: move {path.name} out of {path.parent}")


def read_gguf(path: Path, keys: set[str] | None = None,
              tensors: bool = False) -> tuple[dict[str, Any], list[tuple[str, list[int], int]] | None]:
    """Read the GGUF key/value metadata of ``path`` (only ``keys`` if given; large arrays
    come back as ``None``; ``"__version__"`` and ``"__tensor_count__"`` are added) and,
    with ``tensors``, the tensor table as (name, dims, ggml type), bounded and checked as
    llama.cpp's reader does (see the constants above).
    Raises :class:`IntegrityError` when the file is not a regular file, not GGUF, or its
    header is truncated or malformed."""
    try:
        with open_regular(path) as fh:
            r = GGUFValueReader(fh)
            if r.read(4) != GGUF_MAGIC:
                raise IntegrityError(f"{path.name} is not a GGUF file (bad magic)",
                                     hint="the file is corrupt or not a model: move it aside, or fetch it again with `ossctl download`")
            version = r.u32()
            n_tensors, n_kv = r.u64(), r.u64()
            if n_kv * _MIN_KV_BYTES > r.left():
                raise Short(f"it claims {n_kv} key/value pairs, more than the file can hold")
            if n_tensors * _MIN_TENSOR_BYTES > r.left():
                raise Short(f"it claims {n_tensors} tensors, more than the file can hold")
            out: dict[str, Any] = {"__version__": version, "__tensor_count__": n_tensors}
            alignment = GGUF_DEFAULT_ALIGNMENT
            for _ in range(n_kv):
                key = r.string("a key")
                vtype = r.u32()
                want = keys is None or key in keys or key == "general.alignment"
                out_val = r.value(vtype, want)
                if key == "general.alignment":
                    if vtype != 4 or not out_val or out_val & (out_val - 1):
                        raise ValueError(f"general.alignment {out_val!r} is not a power of two (uint32)")
                    alignment = out_val
                    if keys is not None and key not in keys:
                        continue
                if want:
                    out[key] = out_val
            if not tensors:
                return out, None
            table = []
            seen: set[str] = set()
            offset = 0
            for _ in range(n_tensors):
                name, dims, ttype, padded = r.tensor_info(offset, alignment)
                if name in seen:
                    raise ValueError(f"tensor name {name!r} appears twice")
                seen.add(name)
                offset += padded
                table.append((name, dims, ttype))
            return out, table
    except EOFError:
        raise IntegrityError(f"{path.name}: GGUF header is truncated",
                             hint="the file is incomplete; re-run `ossctl download`") from None
    except Short as exc:
        raise IntegrityError(f"{path.name}: GGUF header is truncated or malformed: {exc}",
                             hint="the file is incomplete or corrupt; re-run `ossctl download`") from None
    except (ValueError, UnicodeDecodeError, struct.error, OverflowError, MemoryError) as exc:
        raise IntegrityError(f"{path.name}: malformed GGUF header ({exc})",
                             hint="the file is corrupt or not a model: move it aside, or fetch it again "
                                  "with `ossctl download`") from None
    except UnknownType as exc:
        raise _unknown_type(path, exc.name, exc.ttype) from None


def _unknown_type(path: Path, name: str, ttype: int) -> IntegrityError:
    return IntegrityError(f"{path.name}: tensor {name!r} has unknown ggml type {ttype}",
                          hint="ossctl is older than this model's quantisation; upgrade ossctl")


def read_gguf_kv(path: Path, keys: set[str] | None = None) -> dict[str, Any]:
    """The key/value metadata of ``path``; see :func:`read_gguf`."""
    return read_gguf(path, keys)[0]


def int_value(kv: dict[str, Any], key: str, path: Path) -> int | None:
    """``kv[key]`` as an integer (None when absent). A crafted header can store any type
    under any key: a string or a list where a count belongs raises
    :class:`IntegrityError` naming the key, never a ``ValueError``."""
    v = kv.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        what = "a list" if isinstance(v, list) else "a string" if isinstance(v, str) else type(v).__name__
        raise IntegrityError(f"{path.name}: GGUF key {key} is {what}, not an integer",
                             hint="the file is corrupt or was not written by a GGUF tool: move it aside, "
                                  "or fetch it again with `ossctl download`")
    return v


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
            raise _unknown_type(path, name, ttype)
        block, size = GGML_TYPE_SIZE[ttype]
        n = 1
        for d in dims:
            n *= d
        out.append((name, n // block * size))
    return out
