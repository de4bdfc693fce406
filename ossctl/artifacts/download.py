"""``ossctl download``: resolve at a pinned commit, preflight disk space, transfer parts in
parallel (resumable, hashed while written), check the split set, write the manifest."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from ossctl import catalog
from ossctl.artifacts import manifest as mf
from ossctl.artifacts.dirlock import model_dir_lock
from ossctl.artifacts.gguf import int_value, read_gguf_kv
from ossctl.artifacts.hashing import sha256_file
from ossctl.artifacts.hub import Hub, RemoteModel, check_patterns
from ossctl.artifacts.shards import check_split_headers, order_parts, safe_relpath
from ossctl.artifacts.transfer import Cancelled, Job, fetch, quarantine
from ossctl.errors import ConflictError, IntegrityError, Interrupted, OssctlError, UsageError
from ossctl.settings import Settings
from ossctl.units import human_size

DISK_MARGIN = 1 << 30  # bytes kept free beyond what the download needs


@dataclass
class DownloadResult:
    manifest: mf.Manifest
    directory: Path
    transferred: int  # bytes fetched over the network in this run
    reused: list[str] = field(default_factory=list)  # files already complete on disk
    up_to_date: bool = False  # nothing to do: manifest matched the pinned commit


class Progress:
    """Callbacks the CLI passes in (the library never prints)."""

    def start(self, files: list[tuple[str, int, int]]) -> None:  # (name, size, already on disk)
        pass

    def advance(self, name: str, n: int) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass


def plan_dir(settings: Settings, entry: catalog.CatalogEntry, directory: str | None) -> Path:
    return Path(directory).expanduser() if directory else mf.model_dir_for_repo(settings.models_dir, entry.repo)


def download(settings: Settings, model: str, *, directory: str | None = None, revision: str | None = None,
             include: Sequence[str] = (), workers: int = 4, full: bool = False,
             progress: Progress | None = None, cancel: threading.Event | None = None) -> DownloadResult:
    """Download ``model`` (alias or owner/repo) into its directory and return the result.
    See the module doc; errors are OssctlError subclasses, partials are always kept (on
    Ctrl-C :class:`Interrupted` names them). Holds the directory's lock throughout:
    a second download into the same directory raises :class:`ConflictError`."""
    progress = progress or Progress()
    entry = catalog.resolve(model)
    patterns = list(include) or [entry.pattern]
    check_patterns(patterns)
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    target = plan_dir(settings, entry, directory)
    _ensure_writable(target)
    with model_dir_lock(target, f"download {entry.repo}"):
        try:
            return _download(settings, entry, target, revision, patterns, bool(include), workers, full,
                              progress, cancel)
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted: {_kept_partials(target)}") from None


def _download(settings: Settings, entry: catalog.CatalogEntry, target: Path, revision: str | None,
              patterns: list[str], narrowed: bool, workers: int, full: bool, progress: Progress,
              cancel: threading.Event | None) -> DownloadResult:
    import httpx

    existing = _read_manifest_or_none(target)
    check_same_repo(target, existing, entry.repo)
    retries = int_setting(settings, "download.retries", "OSSCTL_DOWNLOAD_RETRIES", 5)
    margin = int_setting(settings, "download.disk_margin", "OSSCTL_DISK_MARGIN", DISK_MARGIN)
    hub = Hub(settings.env, retries=min(retries, 3))
    remote = hub.resolve(entry.repo, revision, patterns)
    ordered_names = _order_remote(remote, patterns, narrowed)
    by_name = {f.name: f for f in remote.files}
    remote_files = [by_name[n] for n in ordered_names]
    if entry.parts and not narrowed and len(remote_files) != entry.parts:
        progress.note(f"note: {entry.repo} has {len(remote_files)} part(s) where the catalog expects {entry.parts}")
    check_no_strays(target, ordered_names, f"{entry.repo}@{remote.commit[:12]}")

    # Fast path: manifest for the same commit and files, files unchanged since verified.
    if existing is not None and existing.revision == remote.commit and \
            [(f.name, f.size, f.sha256) for f in existing.files] == [(f.name, f.size, f.sha256 or "") for f in remote_files]:
        res = mf.verify_dir(target, existing, full=full)
        if res.ok:
            return DownloadResult(existing, target, 0, [f.name for f in existing.files], up_to_date=True)

    # Files already complete on disk (e.g. from another tool) are hashed, not fetched.
    entries: dict[str, mf.FileEntry] = {}
    reused: list[str] = []
    jobs: list[Job] = []
    on_disk: dict[str, int] = {}
    for f in remote_files:
        path = target / safe_relpath(f.name)
        bad = mf.layout_problem(target, f.name) if path.is_symlink() else None
        if bad:  # reusing it would give a manifest that deploy cannot serve; replacing it would lose the link
            raise IntegrityError(f"{f.name} {bad}", hint=mf.layout_hint(target, f.name, bad))
        if path.is_file() and path.stat().st_size == f.size:
            prior = next((e for e in (existing.files if existing else []) if e.name == f.name), None)
            st = path.stat()
            if prior and prior.sha256 == f.sha256 and prior.mtime_ns == st.st_mtime_ns and not full:
                entries[f.name] = mf.FileEntry(f.name, f.size, prior.sha256, st.st_mtime_ns)
                reused.append(f.name)
                continue
        jobs.append(Job(f.name, f.url, f.size, f.sha256))
        part = path.with_name(path.name + mf.PARTIAL_SUFFIX)
        on_disk[f.name] = part.stat().st_size if part.exists() and part.stat().st_size <= f.size else 0

    # A complete file already at the final path is adopted when its hash matches.
    for job in list(jobs):
        path = target / job.name
        if path.is_file() and path.stat().st_size == job.size:
            digest = sha256_file(path)
            if job.sha256 is None or digest == job.sha256:
                entries[job.name] = mf.FileEntry(job.name, job.size, digest, path.stat().st_mtime_ns)
                reused.append(job.name)
                jobs.remove(job)
                on_disk.pop(job.name, None)
            else:
                aside = quarantine(path)
                progress.note(f"{job.name}: sha256 does not match the hub's; kept aside as {aside.name}, fetching again")

    needed = sum(j.size - on_disk.get(j.name, 0) for j in jobs)
    _preflight_disk(target, needed, margin)

    transferred = 0
    lock = threading.Lock()
    cancel = cancel or threading.Event()
    if jobs:
        progress.start([(j.name, j.size, on_disk.get(j.name, 0)) for j in jobs])
        headers = hub.headers()
        limits = httpx.Limits(max_connections=max(workers, 1) * 2, max_keepalive_connections=max(workers, 1))
        timeout = httpx.Timeout(60.0, connect=15.0)
        counted: dict[str, int] = {j.name: 0 for j in jobs}

        def run(job: Job) -> mf.FileEntry:
            nonlocal transferred
            rehash_left = on_disk.get(job.name, 0)

            def cb(n: int, name=job.name) -> None:
                nonlocal transferred, rehash_left
                if rehash_left > 0:  # re-reading the local partial: not network bytes
                    take = min(n, rehash_left)
                    rehash_left -= take
                    n -= take
                    if not n:
                        return
                with lock:
                    transferred += n
                    counted[name] += n
                progress.advance(name, n)

            return fetch(client, job, target, headers, on_progress=cb, cancel=cancel, retries=retries)

        with httpx.Client(limits=limits, timeout=timeout, http2=False) as client:
            pool = ThreadPoolExecutor(max_workers=min(workers, len(jobs)), thread_name_prefix="download")
            futures = {pool.submit(run, j): j for j in jobs}
            try:
                done, pending = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f for f in done if f.exception() is not None]
                if failed:
                    # let other parts reach a clean stopping point; their partials stay
                    cancel.set()
                    wait(pending)
                    exc = failed[0].exception()
                    if isinstance(exc, Cancelled):
                        raise KeyboardInterrupt
                    raise exc
                for fut in done:
                    e = fut.result()
                    entries[e.name] = e
            except KeyboardInterrupt:
                cancel.set()
                wait(futures)
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                progress.close()

    ordered = [entries[n] for n in ordered_names]
    check_split_headers(target, ordered_names)
    m = mf.build_manifest(entry.repo, remote.commit, target, ordered, gguf=gguf_facts(target, ordered_names))
    mf.save_manifest(target, m, then="re-run (no file will be fetched again)")
    return DownloadResult(m, target, transferred, reused)


def _order_remote(remote: RemoteModel, patterns: list[str], narrowed: bool) -> list[str]:
    """The hub files in part order. A split set cut short by ``--include`` is a usage
    error (the fix is the pattern); one the hub itself lacks is an integrity error of
    the repository (downloading again cannot fix it)."""
    try:
        return order_parts([f.name for f in remote.files])
    except IntegrityError as exc:
        where = f"{remote.repo}@{remote.commit[:12]}"
        if narrowed:
            raise UsageError(f"--include {' '.join(patterns)} selects an {exc.message}; a split model needs every part",
                             hint="drop --include, or widen it to match all parts (e.g. '*-of-*.gguf')") from None
        raise IntegrityError(f"{where} has an {exc.message}",
                             hint="the repository lacks them at this revision: pick another --revision, "
                                  "or tell its owner") from None
    except UsageError as exc:
        raise UsageError(exc.message, hint="select one model with --include GLOB") from None


def check_same_repo(directory: Path, existing: mf.Manifest | None, repo: str) -> None:
    """Refuse to put ``repo`` into a directory whose manifest names another repo (its
    manifest would be overwritten and the model in it lost to verify and deploy)."""
    if existing is not None and existing.repo and existing.repo != repo:
        raise ConflictError(f"{directory} holds {existing.repo} (manifest.toml); refusing to put {repo} there",
                            hint=f"choose another directory with --dir, or move {existing.repo} elsewhere first")


def check_no_strays(directory: Path, names: list[str], what: str) -> None:
    """Refuse a model directory holding ``.gguf`` files that are not part of the model:
    verify and deploy would refuse the directory for them later. Raises
    :class:`IntegrityError` naming the first one and what to do with it."""
    wanted = set(names)
    strays = sorted(p.relative_to(directory).as_posix() for p in mf.gguf_candidates(directory)
                    if p.relative_to(directory).as_posix() not in wanted)
    if strays:
        more = f" (+{len(strays) - 1} more)" if len(strays) > 1 else ""
        raise IntegrityError(f"{directory} holds {strays[0]}{more}, which is not part of {what}",
                             hint=f"move {strays[0]} out of {directory} (or delete it), then re-run; "
                                  "a model directory holds one model")


def _kept_partials(target: Path) -> str:
    """What an interrupted download leaves behind, for the one line after Ctrl-C."""
    parts = sorted(target.rglob("*" + mf.PARTIAL_SUFFIX))
    if not parts:
        return f"nothing partial left in {target}; re-run the same command to continue"
    shown = ", ".join(f"{p.name} ({human_size(p.stat().st_size)})" for p in parts[:3])
    more = f" +{len(parts) - 3} more" if len(parts) > 3 else ""
    return f"partial downloads kept in {target}: {shown}{more}; re-run the same command to resume"


def gguf_facts(directory: Path, ordered: list[str]) -> dict:
    first = directory / ordered[0]
    kv = read_gguf_kv(first)
    arch = kv.get("general.architecture")
    facts = {"parts": len(ordered)}
    if isinstance(arch, str) and arch:
        facts["architecture"] = arch
        ctx = int_value(kv, f"{arch}.context_length", first)
        if ctx:
            facts["context_length"] = ctx
    return facts


def _read_manifest_or_none(directory: Path) -> mf.Manifest | None:
    if not mf.manifest_path(directory).exists():
        return None
    try:
        return mf.read_manifest(directory)
    except OssctlError:
        return None


def _ensure_writable(target: Path) -> None:
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OssctlError(f"cannot create {target}: {exc.strerror}",
                          hint="choose another place with --dir or --home, or fix its permissions") from None
    if not os.access(target, os.W_OK | os.X_OK):
        raise OssctlError(f"directory {target} is not writable",
                          hint="choose another place with --dir or --home, or fix its permissions")


def int_setting(settings: Settings, key: str, env: str, default: int) -> int:
    raw = settings.value(key, env, default=default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise UsageError(f"{env} / [{key.split('.')[0]}] {key.split('.')[1]} must be an integer, got {raw!r}") from None
    if value < 0:
        raise UsageError(f"{env} / [{key.split('.')[0]}] {key.split('.')[1]} must not be negative")
    return value


def _preflight_disk(target: Path, needed: int, margin: int) -> None:
    free = shutil.disk_usage(target).free
    if needed > 0 and needed + margin > free:
        raise OssctlError(
            f"not enough disk space in {target}: need {human_size(needed)} more (+{human_size(margin)} margin), "
            f"{human_size(free)} free",
            hint="free space, or download elsewhere with --dir / --home (partial downloads are kept)")
