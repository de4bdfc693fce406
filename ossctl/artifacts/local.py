"""``ossctl hash``: hash local files or a directory without a hub."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence

from ossctl.artifacts import hashing
from ossctl.artifacts import manifest as mf
from ossctl.artifacts.shards import order_parts
from ossctl.errors import NotFoundError, UsageError


def hash_paths(paths: Sequence[Path], repo: str | None = None, workers: int | None = None) -> tuple[mf.Manifest, Path]:
    """Hash ``paths`` (files, or one directory of ``*.gguf``) in part order and return a
    manifest-shaped result and the directory. Model id needs ``repo``, or a manifest in
    the directory naming one. Raises NotFoundError / UsageError / IntegrityError."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(x for x in p.glob("*.gguf") if not mf.is_side_file(x.name))
            if not found:
                raise NotFoundError(f"no .gguf files in {p}")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise NotFoundError(f"{p} does not exist")
    parents = {f.parent.resolve() for f in files}
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise UsageError("two files share a name", hint="hash one split set at a time")
    directory = parents.pop() if len(parents) == 1 else Path.cwd()
    by_name = {f.name: f for f in files}
    ordered = order_parts(names) if len(names) > 1 or names[0].endswith(".gguf") else names
    digests = hashing.sha256_files([by_name[n] for n in ordered], workers=workers)
    if repo is None and len(parents) == 0 and mf.manifest_path(directory).exists():
        try:
            repo = mf.read_manifest(directory).repo
        except Exception:  # a broken manifest must not stop a plain hash
            repo = None
    entries = [mf.FileEntry(n, by_name[n].stat().st_size, d) for n, d in zip(ordered, digests)]
    m = mf.Manifest(repo, None, entries, hashing.composite_sha256(digests),
                    hashing.model_id(repo, ordered[0]) if repo else None)
    return m, directory
