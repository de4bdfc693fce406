"""Split GGUF names (``name-0000N-of-0000M.gguf``), ordering, completeness, and the GGUF
header keys ``split.no`` / ``split.count``.

The header reader is a small stdlib parser of the GGUF key/value section: it reads only
the first kilobytes of a part (array values are skipped by seeking), so checking a 60 GB
set costs milliseconds and needs no numpy.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from ossctl.errors import IntegrityError, UsageError

SPLIT_RE = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class SplitName:
    prefix: str
    no: int  # 1-based
    count: int


def parse_split(name: str) -> SplitName | None:
    m = SPLIT_RE.match(PurePosixPath(name).name)
    if not m:
        return None
    return SplitName(m["prefix"], int(m["no"]), int(m["count"]))


def part_name(prefix: str, no: int, count: int) -> str:
    return f"{prefix}-{no:05d}-of-{count:05d}.gguf"


def order_parts(names: list[str]) -> list[str]:
    """Sort split parts by part number (00001 first); a single unsplit file stays as is.
    Raises :class:`IntegrityError` when names mix different split sets, or a set is
    incomplete (naming the missing parts)."""
    if not names:
        raise IntegrityError("no model files")
    parsed = [(n, parse_split(n)) for n in names]
    if all(p is None for _, p in parsed):
        if len(names) > 1:
            raise UsageError(
                f"{len(names)} unsplit GGUF files: {', '.join(sorted(names))}",
                hint="keep one model: one file, or one split set (name-0000N-of-0000M.gguf)",
            )
        return list(names)
    if any(p is None for _, p in parsed):
        odd = sorted(n for n, p in parsed if p is None)
        raise UsageError(f"split parts mixed with unsplit files: {', '.join(odd)}",
                         hint="keep one model: one file, or one split set")
    sets = {(p.prefix, p.count) for _, p in parsed}
    if len(sets) > 1:
        raise UsageError("more than one split set selected: " + ", ".join(f"{a} ({c} parts)" for a, c in sorted(sets)),
                         hint="keep one split set")
    prefix, count = sets.pop()
    by_no = {p.no: n for n, p in parsed}
    missing = [part_name(prefix, i, count) for i in range(1, count + 1) if i not in by_no]
    if missing:
        raise IntegrityError(f"incomplete split set: missing {', '.join(missing)}",
                             hint="every part of a split set is needed")
    extra = sorted(n for n, p in parsed if not 1 <= p.no <= count)
    if extra:
        raise IntegrityError(f"part number out of range: {', '.join(extra)}")
    return [by_no[i] for i in range(1, count + 1)]


def safe_relpath(name: str) -> PurePosixPath:
    """A hub file name as a relative path that cannot escape the model directory.
    Raises :class:`UsageError` for absolute paths, ``..`` components, or backslashes."""
    p = PurePosixPath(name)
    if not name or p.is_absolute() or "\\" in name or any(part in ("..", "") for part in name.split("/")) \
            or name.startswith("~") or ":" in p.parts[0]:
        raise UsageError(f"refusing hub file name {name!r}: it would escape the target directory",
                         hint="the repository is malformed or hostile; report it to its owner")
    return p


# --- GGUF header -----------------------------------------------------------------

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


def check_split_headers(directory: Path, ordered: list[str]) -> None:
    """:func:`check_split_files` for parts named relative to ``directory``."""
    check_split_files([Path(directory) / n for n in ordered])


def check_split_files(paths: list[Path]) -> None:
    """Check GGUF magic on every part (in part order), that ``split.no`` (0-based) /
    ``split.count`` agree with the order, and that every part names the same
    ``split.tensors.count`` (parts of two different models usually do not). Raises
    :class:`IntegrityError` naming the part."""
    count = len(paths)
    tensors: tuple[str, int] | None = None
    for i, path in enumerate(paths):
        name = path.name
        kv = read_gguf_kv(path, {"split.no", "split.count", "split.tensors.count"})
        if count == 1 and parse_split(name) is None:
            continue
        no, cnt = kv.get("split.no"), kv.get("split.count")
        if no is None or cnt is None:
            raise IntegrityError(f"{name}: GGUF header lacks split.no / split.count",
                                 hint="the part was not written by gguf-split; re-download it")
        if int(no) != i or int(cnt) != count:
            raise IntegrityError(
                f"{name}: GGUF header says part {int(no) + 1} of {int(cnt)}, the name says part {i + 1} of {count}",
                hint="the parts were renamed or mixed from different sets; re-download them")
        n_t = kv.get("split.tensors.count")
        if n_t is not None:
            if tensors is not None and int(n_t) != tensors[1]:
                raise IntegrityError(
                    f"{name}: GGUF header says the model has {int(n_t)} tensors, {tensors[0]} says {tensors[1]}: "
                    "the parts come from different models",
                    hint="use the parts of one model, all from the same download")
            tensors = tensors or (name, int(n_t))
