"""Resumable ranged HTTP download that hashes while it writes.

Partial data lives next to the target as ``NAME.part`` with a small sidecar
``NAME.part.json`` naming the expected size and sha256, so a partial is only ever
continued for the same file version. A restarted process re-reads the bytes already on
local disk to rebuild the hash state (hashlib cannot persist it), then continues over
the network with ``Range: bytes=N-``: bytes on disk are never fetched again.

huggingface_hub deletes partial files on failure, so this module does its own transfer
with httpx, using the hub module's URLs and headers.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ossctl.artifacts.hashing import sha256_stream
from ossctl.artifacts.manifest import FileEntry, PARTIAL_SUFFIX, QUARANTINE_MARK
from ossctl.errors import IntegrityError, NotFoundError, OssctlError, RemoteError

PROGRESS_STEP = 1024 * 1024  # bytes between progress reports
SYNC_STEP = 64 * 1024 * 1024  # bytes written between background flushes to disk


class Cancelled(Exception):
    """Raised inside a worker when the user interrupted the download."""


@dataclass
class Job:
    name: str  # relative path in the model dir
    url: str
    size: int  # bytes
    sha256: str | None


def quarantine(path: Path) -> Path:
    """Keep a bad file aside (renamed, never deleted) and return its new path."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    base = path.name.removesuffix(PARTIAL_SUFFIX)
    target = path.with_name(f"{base}{QUARANTINE_MARK}{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{base}{QUARANTINE_MARK}{stamp}.{n}")
        n += 1
    os.replace(path, target)
    return target


def quarantine_bad(path: Path, digest: str) -> tuple[Path, bool]:
    """Keep a transfer whose SHA-256 is ``digest`` (not the expected one) aside, but only
    once: when an identical copy (same size and digest) was already kept aside by an
    earlier run, the new one is dropped and the earlier one returned. Returns
    ``(aside, is_new)``. Each re-run against a corrupt source would otherwise keep
    another full-size copy."""
    base = path.name.removesuffix(PARTIAL_SUFFIX)
    size = path.stat().st_size
    for old in sorted(path.parent.glob(f"{base}{QUARANTINE_MARK}*")):
        if old.is_file() and old.stat().st_size == size and sha256_stream(old)[0].hexdigest() == digest:
            path.unlink()
            return old, False
    return quarantine(path), True


def _disk_full(path: Path) -> OssctlError:
    return OssctlError(f"disk full while writing {path.name}; the partial download is kept",
                       hint=f"free space on {path.parent} and re-run the same command to resume")


def fetch(client, job: Job, directory: Path, headers: dict[str, str], **kw) -> FileEntry:
    """:func:`_fetch`, with local file-system errors (disk full anywhere: the partial, its
    sidecar, the final rename; a read-only directory) turned into one clear line; the
    partial data is kept."""
    try:
        return _fetch(client, job, directory, headers, **kw)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(directory / job.name) from None
        raise OssctlError(f"cannot write {job.name} in {directory}: {exc.strerror}",
                          hint="check permissions and free space, then re-run to resume") from None


def _fetch(client, job: Job, directory: Path, headers: dict[str, str], *,
           on_progress: Callable[[int], None] | None = None, cancel: threading.Event | None = None,
           retries: int = 5, backoff: float = 0.5) -> FileEntry:
    """Download ``job`` into ``directory`` and return its verified entry.

    Bytes already in ``NAME.part`` are kept and continued. Connection drops and 5xx are
    retried ``retries`` times with exponential backoff (the partial grows each time).
    On a size or sha256 mismatch the data is moved aside (``NAME.bad-TIMESTAMP``) and
    :class:`IntegrityError` names the part. 401/403/404 raise at once. Disk full raises
    with the partial kept. ``on_progress(n)`` reports bytes newly on disk."""
    final = directory / job.name
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + PARTIAL_SUFFIX)
    meta = final.with_name(final.name + PARTIAL_SUFFIX + ".json")
    want = {"size": job.size, "sha256": job.sha256}

    if part.exists():
        try:
            recorded = json.loads(meta.read_text())
        except (OSError, ValueError):
            recorded = None
        if recorded != want or part.stat().st_size > job.size:
            quarantine(part)  # a partial of another file version: keep it aside, start anew
    if not part.exists():
        meta.write_text(json.dumps(want))
        part.touch()
    try:
        return _continue(client, job, final, part, meta, headers, on_progress=on_progress, cancel=cancel,
                         retries=retries, backoff=backoff)
    except BaseException:
        # a partial that never got a byte (a 404, a refusal, Ctrl-C before the first
        # chunk) holds nothing to resume: leave no empty .part behind
        try:
            if part.exists() and part.stat().st_size == 0:
                part.unlink()
                meta.unlink(missing_ok=True)
        except OSError:
            pass
        raise


def _continue(client, job: Job, final: Path, part: Path, meta: Path, headers: dict[str, str], *,
              on_progress: Callable[[int], None] | None, cancel: threading.Event | None,
              retries: int, backoff: float) -> FileEntry:
    """The transfer loop of :func:`_fetch`, from the bytes already in ``part``."""
    import httpx

    h, offset = sha256_stream(part, on_progress)

    delay = backoff
    attempt = 0
    while offset < job.size:
        if cancel is not None and cancel.is_set():
            raise Cancelled
        req_headers = dict(headers)
        if offset:
            req_headers["Range"] = f"bytes={offset}-"
        try:
            with client.stream("GET", job.url, headers=req_headers, follow_redirects=True) as resp:
                status = resp.status_code
                if status in (401, 403):
                    raise RemoteError(f"{job.name}: the hub refused the download (HTTP {status})",
                                      hint="set HF_TOKEN to a token with access to this repository")
                if status == 404:
                    raise NotFoundError(f"{job.name}: not found on the hub (HTTP 404)",
                                        hint="the file may have been removed; re-run to resolve the listing again")
                if status == 416 and offset == job.size:
                    break
                if status >= 500 or status == 429 or status == 416:
                    raise _Retry(f"HTTP {status}")
                if status == 200 and offset:
                    # the server ignored Range: start this part over
                    with open(part, "wb"):
                        pass
                    h, offset = hashlib.sha256(), 0
                elif status == 206:
                    start = _content_range_start(resp.headers.get("content-range", ""))
                    if start != offset:
                        raise _Retry(f"server resumed at byte {start}, expected {offset}")
                elif status != 200:
                    raise RemoteError(f"{job.name}: unexpected HTTP {status} from the hub")
                with open(part, "ab", buffering=0) as fh:
                    flush = _Flusher(fh.fileno(), offset)
                    # the body as it comes off the socket: asking httpx for 1 MiB chunks costs
                    # a copy of every byte into them, more CPU than hashing the byte does
                    # (bench/download_vs_hf.py), on a transfer that is CPU-bound on loopback
                    unreported = 0
                    for chunk in resp.iter_bytes():
                        if cancel is not None and cancel.is_set():
                            raise Cancelled
                        if offset + len(chunk) > job.size:
                            chunk = chunk[: job.size - offset]
                        _write_all(fh, chunk)
                        h.update(chunk)
                        offset += len(chunk)
                        flush.wrote(len(chunk))
                        unreported += len(chunk)
                        if on_progress and unreported >= PROGRESS_STEP:
                            on_progress(unreported)
                            unreported = 0
                        if offset >= job.size:
                            break
                    if on_progress and unreported:
                        on_progress(unreported)
                    os.fsync(fh.fileno())
            if offset < job.size:
                raise _Retry("connection closed early")
        except (httpx.TransportError, _Retry) as exc:
            attempt += 1
            if attempt > retries:
                raise RemoteError(
                    f"{job.name}: transfer failed after {retries} retries ({_reason(exc)}); "
                    f"{offset} of {job.size} bytes kept",
                    hint="re-run the same command to resume from there") from None
            time.sleep(delay)
            delay = min(delay * 2, 8.0)

    digest = h.hexdigest()
    if offset != job.size:
        aside = quarantine(part)
        raise IntegrityError(f"{job.name}: size {offset} != expected {job.size}; kept aside as {aside.name}",
                             hint="re-run `ossctl download` to fetch it again")
    if job.sha256 and digest != job.sha256:
        aside, new = quarantine_bad(part, digest)
        meta.unlink(missing_ok=True)
        kept = f"kept aside as {aside.name}" if new else f"the same bad bytes are already kept aside as {aside.name}"
        raise IntegrityError(f"{job.name}: sha256 {digest} != hub's {job.sha256}; {kept}",
                             hint="re-run `ossctl download` to fetch it again; if it repeats, the hub copy or a proxy is corrupt")
    os.replace(part, final)
    meta.unlink(missing_ok=True)
    return FileEntry(job.name, job.size, digest, final.stat().st_mtime_ns)


def _write_all(fh, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = fh.write(view)
        view = view[n:]


class _Flusher:
    """Starts writing a file's dirty pages to disk every :data:`SYNC_STEP` bytes
    (``sync_file_range(SYNC_FILE_RANGE_WRITE)``: asynchronous, data only, no journal
    commit), so that the ``fsync`` a finished part needs finds little left to write: the
    disk works while the wire does. (A background ``fdatasync`` every 64 MiB was slower
    than none: each one commits the journal for the grown file.) Does nothing where libc
    has no ``sync_file_range``; errors are left to the final ``fsync``."""

    _call = None  # libc's sync_file_range, once looked up; False: not available

    def __init__(self, fd: int, start: int = 0):
        self.fd = fd
        self.done = start  # file offset up to which writeback was started
        self.written = start  # file offset written up to (a resumed part starts past 0)

    def wrote(self, n: int) -> None:
        self.written += n
        if self.written - self.done >= SYNC_STEP:
            call = _Flusher._lookup()
            if call:
                call(self.fd, self.done, self.written - self.done)
            self.done = self.written

    @staticmethod
    def _lookup():
        if _Flusher._call is None:
            _Flusher._call = False
            try:
                import ctypes  # only here: a download is the one user, and it pays once
                import ctypes.util

                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
                fn = libc.sync_file_range
                fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
                fn.restype = ctypes.c_int
                _Flusher._call = lambda fd, off, n: fn(fd, off, n, 2)  # SYNC_FILE_RANGE_WRITE
            except (OSError, AttributeError):
                pass
        return _Flusher._call


class _Retry(Exception):
    pass


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _content_range_start(value: str) -> int | None:
    # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None
