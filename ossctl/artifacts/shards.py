"""Split GGUF names (``name-0000N-of-0000M.gguf``), ordering, and completeness: that the
names and the split keys in each part's header (read by :mod:`ossctl.artifacts.gguf`)
agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ossctl.artifacts.gguf import SPLIT_COUNT, SPLIT_NO, SPLIT_TENSORS_COUNT, int_value, read_gguf_kv
from ossctl.errors import IntegrityError, UsageError

SPLIT_RE = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


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


def _is_control(c: str) -> bool:
    # C0, DEL, C1, and the bidirectional overrides that reorder what a terminal shows
    o = ord(c)
    return o < 0x20 or 0x7F <= o < 0xA0 or 0x202A <= o <= 0x202E or 0x2066 <= o <= 0x2069


def printable_name(name: str) -> str:
    """``name`` as it may be printed: as is, or escaped (``'a\\x1b[31mb.gguf'``) when it holds
    control characters (an ANSI escape from a hostile repository must not reach the
    terminal)."""
    return repr(name) if any(_is_control(c) for c in name) else name


def safe_relpath(name: str) -> PurePosixPath:
    """A hub file name as a relative path that cannot escape the model directory.
    Raises :class:`UsageError` for absolute paths, ``..`` components, backslashes, or
    control characters (never written as a file name; the message shows them escaped)."""
    if any(_is_control(c) for c in name):
        raise UsageError(f"refusing hub file name {name!r}: it holds control characters",
                         hint="the repository is malformed or hostile; report it to its owner")
    p = PurePosixPath(name)
    if not name or p.is_absolute() or "\\" in name or any(part in ("..", "") for part in name.split("/")) \
            or name.startswith("~") or ":" in p.parts[0]:
        raise UsageError(f"refusing hub file name {name!r}: it would escape the target directory",
                         hint="the repository is malformed or hostile; report it to its owner")
    return p


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
        kv = read_gguf_kv(path, {SPLIT_NO, SPLIT_COUNT, SPLIT_TENSORS_COUNT})
        if count == 1 and parse_split(name) is None:
            continue
        no, cnt = int_value(kv, SPLIT_NO, path), int_value(kv, SPLIT_COUNT, path)
        if no is None or cnt is None:
            raise IntegrityError(f"{name}: GGUF header lacks split.no / split.count",
                                 hint="the part was not written by gguf-split; re-download it")
        if int(no) != i or int(cnt) != count:
            raise IntegrityError(
                f"{name}: GGUF header says part {int(no) + 1} of {int(cnt)}, the name says part {i + 1} of {count}",
                hint="the parts were renamed or mixed from different sets; re-download them")
        n_t = int_value(kv, SPLIT_TENSORS_COUNT, path)
        if n_t is not None:
            if tensors is not None and int(n_t) != tensors[1]:
                raise IntegrityError(
                    f"{name}: GGUF header says the model has {int(n_t)} tensors, {tensors[0]} says {tensors[1]}: "
                    "the parts come from different models",
                    hint="use the parts of one model, all from the same download")
            tensors = tensors or (name, int(n_t))
