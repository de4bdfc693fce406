"""``manifest.toml``: the hand-off between stages, written next to the shards.

Later stages (register, deploy, vram plan) read it instead of re-deriving facts. It also
records each file's size and mtime (ns) so that re-verification can trust unchanged files
without re-hashing them (``full=True`` always re-hashes).
"""

from __future__ import annotations

import datetime as _dt
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ossctl import __version__
from ossctl.artifacts import hashing
from ossctl.artifacts.shards import order_parts
from ossctl.errors import IntegrityError, NotFoundError, UsageError
from ossctl.fsutil import atomic_write

MANIFEST_NAME = "manifest.toml"
PARTIAL_SUFFIX = ".part"
QUARANTINE_MARK = ".bad-"


@dataclass
class FileEntry:
    name: str
    size: int  # bytes
    sha256: str
    mtime_ns: int = 0

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


@dataclass
class Manifest:
    repo: str | None
    revision: str | None  # the pinned commit
    files: list[FileEntry]  # in part order
    composite_sha256: str
    model_id: str | None
    created: str = ""
    ossctl_version: str = __version__
    gguf: dict[str, Any] = field(default_factory=dict)  # a few header facts (split count, ...)

    @property
    def first_file(self) -> str:
        return self.files[0].name

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def public(self, directory: Path | None = None) -> dict[str, Any]:
        """The ``--json`` shape shared by download / verify / hash."""
        return {
            "repo": self.repo,
            "revision": self.revision,
            "dir": str(directory) if directory is not None else None,
            "files": [f.public() for f in self.files],
            "composite_sha256": self.composite_sha256,
            "model_id": self.model_id,
        }

    def to_toml(self) -> str:
        import tomli_w

        doc: dict[str, Any] = {
            "repo": self.repo or "",
            "revision": self.revision or "",
            "composite_sha256": self.composite_sha256,
            "model_id": self.model_id or "",
            "created": self.created,
            "ossctl_version": self.ossctl_version,
            "files": [{"name": f.name, "size": f.size, "sha256": f.sha256, "mtime_ns": f.mtime_ns} for f in self.files],
        }
        if self.gguf:
            doc["gguf"] = self.gguf
        return "# written by ossctl; do not edit by hand\n" + tomli_w.dumps(doc)


def build_manifest(repo: str | None, revision: str | None, directory: Path, entries: list[FileEntry],
                   gguf: dict[str, Any] | None = None) -> Manifest:
    """Order ``entries`` by part number and derive composite and model id."""
    by_name = {e.name: e for e in entries}
    ordered = [by_name[n] for n in order_parts(list(by_name))]
    composite = hashing.composite_sha256([e.sha256 for e in ordered])
    mid = hashing.model_id(repo, ordered[0].name) if repo else None
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    return Manifest(repo, revision, ordered, composite, mid, now, __version__, dict(gguf or {}))


def manifest_path(directory: Path) -> Path:
    return Path(directory) / MANIFEST_NAME


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    path = manifest_path(directory)
    atomic_write(path, manifest.to_toml())
    return path


def read_manifest(directory: Path) -> Manifest:
    """Raises :class:`NotFoundError` when absent, :class:`IntegrityError` when unreadable."""
    path = manifest_path(directory)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(f"no manifest in {directory}",
                            hint="download the model first: `ossctl download MODEL`") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{path} is not a valid manifest: {exc}",
                             hint="re-run `ossctl download` to rewrite it") from None
    try:
        files = [FileEntry(f["name"], int(f["size"]), str(f["sha256"]).lower(), int(f.get("mtime_ns", 0)))
                 for f in doc["files"]]
        return Manifest(doc.get("repo") or None, doc.get("revision") or None, files,
                        str(doc["composite_sha256"]).lower(), doc.get("model_id") or None,
                        doc.get("created", ""), doc.get("ossctl_version", ""), dict(doc.get("gguf", {})))
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"{path} is missing field {exc}", hint="re-run `ossctl download` to rewrite it") from None


def model_dir_for_repo(models_dir: Path, repo: str) -> Path:
    owner, name = repo.split("/", 1)
    return Path(models_dir) / owner / name


def locate_model_dir(settings, model_or_dir: str) -> Path:
    """``MODEL|DIR`` as the commands take it: an existing directory, else a catalog alias
    or ``owner/repo`` mapped under the models directory."""
    from ossctl import catalog

    p = Path(model_or_dir).expanduser()
    if p.is_dir():
        return p
    if model_or_dir.startswith((".", "/", "~")) or os.sep in model_or_dir.strip("/") and not catalog.is_repo_id(model_or_dir):
        raise NotFoundError(f"directory {model_or_dir} does not exist")
    try:
        entry = catalog.resolve(model_or_dir)
    except UsageError:
        raise NotFoundError(f"{model_or_dir!r} is neither a directory nor a known model",
                            hint="pass a model directory, an alias from `ossctl models`, or owner/repo") from None
    return model_dir_for_repo(settings.models_dir, entry.repo)


@dataclass
class VerifyResult:
    ok: bool
    problems: list[dict[str, Any]]
    rehashed: list[str]  # files whose bytes were read this time
    manifest: Manifest


def is_side_file(name: str) -> bool:
    """Files ossctl itself keeps next to the parts (partials, quarantined copies)."""
    return name.endswith(PARTIAL_SUFFIX) or QUARANTINE_MARK in name or name.startswith(".")


def verify_dir(directory: Path, manifest: Manifest | None = None, full: bool = False,
               workers: int | None = None, update_cache: bool = True) -> VerifyResult:
    """Check the files in ``directory`` against its manifest: missing, extra ``.gguf``
    files, size and hash mismatches. A file whose size and mtime equal those recorded is
    trusted without re-hashing unless ``full``. When files were re-hashed and all match,
    their new mtimes are written back (``update_cache``) so the next check is fast."""
    directory = Path(directory)
    manifest = manifest or read_manifest(directory)
    problems: list[dict[str, Any]] = []
    to_hash: list[FileEntry] = []
    stats: dict[str, os.stat_result] = {}
    for f in manifest.files:
        try:
            st = (directory / f.name).stat()
        except FileNotFoundError:
            problems.append({"file": f.name, "kind": "missing", "detail": "file is missing"})
            continue
        stats[f.name] = st
        if st.st_size != f.size:
            problems.append({"file": f.name, "kind": "size", "detail": f"size {st.st_size} != expected {f.size}"})
        elif full or st.st_mtime_ns != f.mtime_ns:
            to_hash.append(f)
    known = {f.name for f in manifest.files}
    for p in sorted(directory.rglob("*.gguf")):
        rel = p.relative_to(directory).as_posix()
        if rel not in known and not is_side_file(p.name):
            problems.append({"file": rel, "kind": "extra", "detail": "not in the manifest"})
    digests = hashing.sha256_files([directory / f.name for f in to_hash], workers=workers)
    changed = False
    for f, d in zip(to_hash, digests):
        if d != f.sha256:
            problems.append({"file": f.name, "kind": "sha256", "detail": f"sha256 {d} != expected {f.sha256}"})
        elif stats[f.name].st_mtime_ns != f.mtime_ns:
            f.mtime_ns = stats[f.name].st_mtime_ns
            changed = True
    ok = not problems
    if ok and changed and update_cache:
        try:
            write_manifest(directory, manifest)
        except OSError:
            pass  # read-only model dir: verification still stands, only the cache is stale
    return VerifyResult(ok, problems, [f.name for f in to_hash], manifest)


def require_verified(directory: Path, full: bool = False) -> Manifest:
    """For later stages: the manifest if the files verify, else :class:`IntegrityError`
    naming the first problem."""
    res = verify_dir(directory, full=full)
    if not res.ok:
        p = res.problems[0]
        more = f" (+{len(res.problems) - 1} more)" if len(res.problems) > 1 else ""
        raise IntegrityError(f"{directory}: {p['file']}: {p['detail']}{more}",
                             hint=f"run `ossctl verify {directory}` for details, or `ossctl download` to repair")
    return res.manifest
