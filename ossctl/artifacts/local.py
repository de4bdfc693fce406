"""Files already on disk: ``ossctl hash`` (hash local parts, no hub) and ``ossctl adopt``
(write the manifest for a model fetched another way: wget, shared storage, an air-gapped
copy), so ``verify``, ``register`` and ``deploy`` work without downloading again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ossctl import catalog
from ossctl.artifacts import hashing, manifest as mf, signing
from ossctl.artifacts.dirlock import model_dir_lock
from ossctl.artifacts.download import check_same_repo, gguf_facts, int_setting
from ossctl.artifacts.gguf import not_regular
from ossctl.artifacts.hub import Hub
from ossctl.artifacts.shards import check_split_files, order_parts
from ossctl.errors import IntegrityError, NotFoundError, OssctlError, RemoteError, UsageError
from ossctl.settings import Settings


def _ordered(names: list[str], fix: str, as_integrity: bool = False) -> list[str]:
    """Part order of local files; the hints say ``fix`` (these commands have no --include).
    ``as_integrity``: files that are not one model are exit 4 (a model directory's
    content), not 2 (the paths given on the command line)."""
    try:
        return order_parts(names)
    except (IntegrityError, UsageError) as exc:
        raise (IntegrityError if as_integrity else type(exc))(exc.message, hint=fix) from None


def hash_paths(paths: Sequence[Path], repo: str | None = None, workers: int | None = None) -> tuple[mf.Manifest, Path]:
    """Hash ``paths`` (GGUF files, or one directory of ``*.gguf``) in part order and return
    a manifest-shaped result and the directory. The parts must be one model: GGUF magic,
    a complete split set whose ``split.*`` keys agree (as ``download`` checks). Model id
    needs ``repo``, or a manifest in the directory naming one. Raises NotFoundError /
    UsageError / IntegrityError."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(x for x in p.glob("*.gguf") if not mf.is_side_file(x.name) and not x.is_dir())
            if not found:
                raise NotFoundError(f"no .gguf files in {p}")
            files += found
        elif p.is_file():
            files.append(p)
        elif p.exists():  # a FIFO or a device: opening it could wait forever
            raise not_regular(p, p.stat().st_mode)
        else:
            raise NotFoundError(f"{p} does not exist")
    for f in files:
        if f.exists() and not f.is_file():
            raise not_regular(f, f.stat().st_mode)
    parents = {f.parent.resolve() for f in files}
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise UsageError("two files share a name", hint="hash one split set at a time")
    directory = next(iter(parents)) if len(parents) == 1 else Path.cwd()
    by_name = {f.name: f for f in files}
    ordered = _ordered(names, "pass the parts of one model: one file, or every part of one split set")
    check_split_files([by_name[n] for n in ordered])
    digests = hashing.sha256_files([by_name[n] for n in ordered], workers=workers)
    if repo is None and len(parents) == 1 and mf.manifest_path(directory).exists():
        try:
            repo = mf.read_manifest(directory).repo
        except OssctlError:  # a broken manifest must not stop a plain hash
            repo = None
    entries = [mf.FileEntry(n, by_name[n].stat().st_size, d) for n, d in zip(ordered, digests)]
    m = mf.Manifest(repo, None, entries, hashing.composite_sha256(digests),
                    hashing.model_id(repo, ordered[0]) if repo else None)
    return m, directory


@dataclass
class AdoptResult:
    manifest: mf.Manifest
    directory: Path
    hub: str  # "agreed" | "unreachable" | "skipped" (--offline)
    hub_detail: str | None  # why the hub could not be asked
    signature: signing.SignatureCheck | None = None  # an existing model.sig, kept because it matches


def adopt(settings: Settings, directory: str | Path, repo: str, revision: str | None = None,
          offline: bool = False, workers: int | None = None,
          trust: signing.Trust | None = None) -> AdoptResult:
    """Write ``manifest.toml`` for the GGUF parts already in ``directory``: check the split
    set and GGUF keys, hash the parts, compare them with the Hub's size and LFS SHA-256 at
    ``revision`` when the Hub answers, and record ``repo`` (the model id needs it).

    The Hub unreachable (or ``offline``) is not an error: the manifest records the local
    hashes, no pinned commit, and ``hub_check = "unchecked"``; the result says why.
    Raises :class:`IntegrityError` (exit 4) when the Hub disagrees (a part's size or hash,
    or a part it does not have), :class:`NotFoundError` when the Hub has no such repo or
    revision, :class:`ConflictError` when the directory holds another repo's manifest or
    another ossctl writes there. Nothing is written unless everything checks out.

    An existing ``model.sig`` is kept when the digests it signs are the files' (and, with
    ``trust``, a trusted signer made it); otherwise :class:`IntegrityError` (exit 4)
    names the first file it does not cover or covers with another digest."""
    d = Path(directory).expanduser()
    if not d.is_dir():
        raise NotFoundError(f"directory {d} does not exist", hint="pass the directory that holds the .gguf parts")
    repo = catalog.resolve(repo).repo
    with model_dir_lock(d, f"adopt {repo}"):
        try:
            existing = mf.read_manifest(d) if mf.manifest_path(d).exists() else None
        except OssctlError:
            existing = None  # a broken manifest is what adopt rewrites
        check_same_repo(d, existing, repo)
        names = [p.relative_to(d).as_posix() for p in mf.gguf_candidates(d)]
        if not names:
            raise NotFoundError(f"no .gguf files in {d}", hint="adopt the directory that holds the model's parts")
        for n in names:  # before anything opens them: a FIFO would block the first read
            bad = mf.layout_problem(d, n)
            if bad:
                raise IntegrityError(f"{n} {bad}; nothing written", hint=mf.layout_hint(d, n, bad))
        # an extra .gguf is exit 4 as in `download` and `verify`: the directory, not the
        # command line, is what is wrong
        ordered = _ordered(names, f"a model directory holds one model: move other .gguf files out of {d}",
                           as_integrity=True)
        check_split_files([d / n for n in ordered])
        stats = {n: (d / n).stat() for n in ordered}
        digests = hashing.sha256_files([d / n for n in ordered], workers=workers)
        local = {n: (stats[n].st_size, h) for n, h in zip(ordered, digests)}
        sig = None
        if signing.sig_path(d).exists():
            sig = signing.check_files(d, {n: h for n, (_, h) in local.items()}, trust or signing.Trust())
            if not sig.ok:
                p = sig.problems[0]
                more = f" (+{len(sig.problems) - 1} more)" if len(sig.problems) > 1 else ""
                raise IntegrityError(f"{d / signing.SIG_NAME} does not sign these files: {p['file']}: {p['detail']}"
                                     f"{more}; nothing written",
                                     hint=f"fetch the files it signs, or move {signing.SIG_NAME} out of {d} "
                                          f"and sign the files yourself (`ossctl sign {d} --key KEY.pem`)")

        status, detail, commit = "skipped", "--offline", None
        if not offline:
            retries = int_setting(settings, "download.retries", "OSSCTL_DOWNLOAD_RETRIES", 5)
            hub = Hub(settings.env, retries=min(retries, 3))
            try:
                remote = hub.resolve(repo, revision, ["*"])  # every file: a missing part is a disagreement
            except RemoteError as exc:
                status, detail = "unreachable", exc.message
            else:
                _compare(remote, local, d)
                status, detail, commit = "agreed", None, remote.commit
        if commit is None and revision and _is_commit(revision):
            commit = revision.lower()
        entries = [mf.FileEntry(n, stats[n].st_size, local[n][1], stats[n].st_mtime_ns) for n in ordered]
        m = mf.build_manifest(repo, commit, d, entries, gguf=gguf_facts(d, ordered))
        m.hub_check = "agreed" if status == "agreed" else "unchecked"
        mf.save_manifest(d, m)
    return AdoptResult(m, d, status, detail, sig)


def _compare(remote, local: dict[str, tuple[int, str]], d: Path) -> None:
    where = f"{remote.repo}@{remote.commit[:12]}"
    by_name = {f.name: f for f in remote.files}
    fix = (f"fetch the Hub's copy with `ossctl download {remote.repo} --dir {d}` (a bad part is kept aside), "
           "or adopt under the right --repo / --revision")
    for name, (size, digest) in local.items():
        f = by_name.get(name)
        if f is None:
            raise IntegrityError(f"{name} is not in {where}; nothing written", hint=fix)
        if f.size != size:
            raise IntegrityError(f"{name}: size {size} != {f.size} on the Hub ({where}); nothing written", hint=fix)
        if f.sha256 and f.sha256 != digest:
            raise IntegrityError(f"{name}: sha256 {digest} != the Hub's {f.sha256} ({where}); nothing written",
                                 hint=fix)


def _is_commit(rev: str) -> bool:
    return len(rev) == 40 and all(c in "0123456789abcdefABCDEF" for c in rev)
