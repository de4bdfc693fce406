"""``manifest.toml``: the hand-off between stages, written next to the shards.

Later stages (register, deploy, vram plan) read it instead of re-deriving facts. It also
records each file's size and mtime (ns) so that re-verification can trust unchanged files
without re-hashing them (``full=True`` always re-hashes).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ossctl import __version__, catalog
from ossctl.artifacts import hashing
from ossctl.artifacts.gguf import file_kind
from ossctl.artifacts.shards import order_parts
from ossctl.errors import IntegrityError, NotFoundError, OssctlError, UsageError
from ossctl.fsutil import atomic_write
from ossctl.redact import shown

MANIFEST_NAME = "manifest.toml"
PARTIAL_SUFFIX = ".part"
QUARANTINE_MARK = ".bad-"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


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
    # set by `adopt`: "agreed" (the Hub's sizes and SHA-256 match) or "unchecked" (Hub not
    # reachable: local hashes only); empty for downloads, which check every byte
    hub_check: str = ""

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
        if self.hub_check:
            doc["hub_check"] = self.hub_check
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


def save_manifest(directory: Path, manifest: Manifest, then: str = "re-run") -> Path:
    """:func:`write_manifest` with a file-system error (disk full, read-only) as one
    clear line; ``then`` completes the hint ("check free space and permissions, then …")."""
    try:
        return write_manifest(directory, manifest)
    except OSError as exc:
        raise OssctlError(f"cannot write manifest in {directory}: {exc.strerror}",
                          hint=f"check free space and permissions, then {then}") from None


def read_manifest(directory: Path) -> Manifest:
    """Raises :class:`NotFoundError` when absent, :class:`IntegrityError` when unreadable."""
    path = manifest_path(directory)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(f"no manifest in {directory}",
                            hint="download the model first (`ossctl download MODEL`), or write a manifest for files "
                                 "already there (`ossctl adopt DIR --repo OWNER/REPO`)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{path} is not valid TOML: {exc}", hint=_REWRITE_HINT) from None
    return _parse(doc, path)


_REWRITE_HINT = ("rewrite it from the files on disk: `ossctl adopt DIR --repo OWNER/REPO` "
                 "(or fetch the model again with `ossctl download MODEL`)")


def _parse(doc: dict[str, Any], path: Path) -> Manifest:
    def bad(what: str) -> IntegrityError:
        return IntegrityError(f"{path} is not an ossctl manifest: {what}", hint=_REWRITE_HINT)

    files_doc = doc.get("files")
    if not isinstance(files_doc, list) or not files_doc:
        raise bad("`files` must be a non-empty array of tables")
    files = []
    for i, f in enumerate(files_doc, start=1):
        if not isinstance(f, dict):
            raise bad(f"files[{i}] is not a table")
        name, size, sha = f.get("name"), f.get("size"), f.get("sha256")
        mtime = f.get("mtime_ns", 0)
        if not isinstance(name, str) or not name:
            raise bad(f"files[{i}] has no `name`")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise bad(f"files[{i}] ({name}) has no integer `size`")
        if not isinstance(sha, str) or not _HEX64.match(sha):
            raise bad(f"files[{i}] ({name}) has no 64-hex-digit `sha256`")
        if isinstance(mtime, bool) or not isinstance(mtime, int):
            raise bad(f"files[{i}] ({name}) has a non-integer `mtime_ns`")
        files.append(FileEntry(name, size, sha.lower(), mtime))
    composite = doc.get("composite_sha256")
    if not isinstance(composite, str) or not _HEX64.match(composite):
        raise bad("no 64-hex-digit `composite_sha256`")
    text = {k: doc.get(k) for k in ("repo", "revision", "model_id", "created", "ossctl_version", "hub_check")}
    for k, v in text.items():
        if v is not None and not isinstance(v, str):
            raise bad(f"`{k}` must be a string")
    gguf = doc.get("gguf", {})
    if not isinstance(gguf, dict):
        raise bad("`gguf` must be a table")
    return Manifest(text["repo"] or None, text["revision"] or None, files, composite.lower(),
                    text["model_id"] or None, text["created"] or "", text["ossctl_version"] or "", dict(gguf),
                    text["hub_check"] or "")


def consistency_problems(manifest: Manifest) -> list[dict[str, Any]]:
    """What the manifest says about itself that does not add up: the per-file hashes
    must produce its composite, and its model id must be keccak256(repo/first file)."""
    out = []
    try:
        ordered = order_parts([f.name for f in manifest.files])
    except (IntegrityError, UsageError) as exc:
        return [{"file": MANIFEST_NAME, "kind": "manifest", "detail": exc.message}]
    by_name = {f.name: f for f in manifest.files}
    composite = hashing.composite_sha256([by_name[n].sha256 for n in ordered])
    if composite != manifest.composite_sha256:
        out.append({"file": MANIFEST_NAME, "kind": "manifest",
                    "detail": f"its per-file hashes give composite {composite}, it records {manifest.composite_sha256}"})
    if manifest.repo and manifest.model_id:
        mid = hashing.model_id(manifest.repo, ordered[0])
        if mid != manifest.model_id.lower():
            out.append({"file": MANIFEST_NAME, "kind": "manifest",
                        "detail": f"model_id {manifest.model_id} is not keccak256({manifest.repo}/{ordered[0]})"})
    return out


def model_dir_for_repo(models_dir: Path, repo: str) -> Path:
    owner, name = repo.split("/", 1)
    return Path(models_dir) / owner / name


def locate_model_dir(settings, model_or_dir: str) -> Path:
    """``MODEL|DIR`` as the commands take it: an existing directory, else a catalog alias
    or ``owner/repo`` mapped under the models directory."""
    p = Path(model_or_dir).expanduser()
    if p.is_dir():
        return p
    if model_or_dir.startswith((".", "/", "~")) or os.sep in model_or_dir.strip("/") and not catalog.is_repo_id(model_or_dir):
        raise NotFoundError(f"directory {shown(model_or_dir)} does not exist")
    try:
        entry = catalog.resolve(model_or_dir)
    except UsageError:
        raise NotFoundError(f"{shown(model_or_dir)} is neither a directory nor a known model",
                            hint="pass a model directory, an alias from `ossctl models`, or owner/repo") from None
    return model_dir_for_repo(settings.models_dir, entry.repo)


@dataclass
class VerifyResult:
    ok: bool
    problems: list[dict[str, Any]]
    rehashed: list[str]  # files whose bytes were read this time
    manifest: Manifest


def model_files(model_dir: Path) -> list[Path]:
    """The GGUF parts of a model directory in order (manifest order when there is one).
    Raises :class:`NotFoundError` when there is none."""
    model_dir = Path(model_dir)
    if (model_dir / MANIFEST_NAME).exists():
        return [model_dir / f.name for f in read_manifest(model_dir).files]
    names = [p.name for p in model_dir.glob("*.gguf") if not p.is_dir()] if model_dir.is_dir() else []
    if not names:
        raise NotFoundError(f"no GGUF files in {model_dir}", hint="download the model first: `ossctl download MODEL`")
    return [model_dir / n for n in order_parts(names)]


def gguf_candidates(directory: Path) -> list[Path]:
    """Every ``*.gguf`` under ``directory`` that may be a model part, sorted: ossctl's side
    files are left out, and so are directories (a directory named ``dir.gguf`` is not a
    model file). FIFOs, sockets and links are kept: :func:`layout_problem` says why they
    cannot be served."""
    return sorted(p for p in Path(directory).rglob("*.gguf") if not is_side_file(p.name) and not p.is_dir())


def layout_problem(directory: Path, rel: str) -> str | None:
    """Why the part ``rel`` cannot be served from ``directory``, or None: a symlink whose
    target is outside the directory (a deploy mounts only the directory, so the link
    would point at nothing inside the container), or not a regular file (a FIFO would
    block every reader). Never opens the file."""
    import stat as _stat


    p = Path(directory) / rel
    try:
        lst = p.lstat()
    except FileNotFoundError:
        return None  # missing: the caller says so
    if _stat.S_ISLNK(lst.st_mode):
        target = Path(os.path.realpath(p))
        if not target.is_relative_to(Path(os.path.realpath(directory))):
            return (f"is a symlink to {target}, outside {directory}: a deploy mounts only the model "
                    "directory, where the link points at nothing")
        if os.path.isabs(os.readlink(p)):
            return (f"is a symlink by absolute path ({os.readlink(p)}): the model directory is mounted "
                    "elsewhere in the container, where the link points at nothing")
    try:
        st = p.stat()
    except OSError:
        return "is a symlink that points at nothing"
    if not _stat.S_ISREG(st.st_mode):
        return f"is {file_kind(st.st_mode)}, not a regular file"
    return None


def layout_hint(directory: Path, rel: str, problem: str) -> str:
    """The fix for a :func:`layout_problem`."""
    if "symlink" in problem:
        return (f"copy the parts into {directory} (`cp --dereference`), or use the directory the links "
                "point to as the model directory")
    return f"move {rel} out of {directory}: a model part is a plain file"


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
    problems: list[dict[str, Any]] = consistency_problems(manifest)
    to_hash: list[FileEntry] = []
    stats: dict[str, os.stat_result] = {}
    for f in manifest.files:
        bad = layout_problem(directory, f.name)
        if bad:
            problems.append({"file": f.name, "kind": "layout", "detail": bad})
            continue
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
    for p in gguf_candidates(directory):
        rel = p.relative_to(directory).as_posix()
        if rel not in known:
            problems.append({"file": rel, "kind": "extra",
                             "detail": f"not part of this model: move it out of {directory} (or delete it)"})
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
        raise IntegrityError(f"{directory}: {p['file']}: {p['detail']}{more}", hint=repair_hint(p, directory))
    return res.manifest


def repair_hint(problem: dict[str, Any], directory: Path) -> str:
    """The next thing to run for one verify problem: a stray file is moved, not
    re-downloaded; a manifest that does not add up is rewritten from the files."""
    if problem["kind"] == "extra":
        return f"move {problem['file']} out of {directory} (or delete it); `ossctl verify {directory}` lists every problem"
    if problem["kind"] == "manifest":
        return _REWRITE_HINT.replace("DIR", str(directory))
    if problem["kind"] == "layout":
        return layout_hint(directory, problem["file"], problem["detail"])
    return f"`ossctl verify {directory}` lists every problem; `ossctl download MODEL --dir {directory}` fetches bad parts again"
