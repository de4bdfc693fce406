"""One writer per model directory: ``download`` and ``adopt`` hold an exclusive
``fcntl.flock`` on ``DIR/.ossctl.lock`` while they change the directory.

A second writer does not wait: it exits 6 naming the holder (pid, command, since when),
so two terminals never interleave bytes into the same parts. The lock is released by
the kernel when the holder exits, even after ``kill -9``, so a stale lock file is
harmless (its content is only informative). Model directories are local disk here;
flock over NFS is not relied on for anything but this courtesy.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path

from ossctl.errors import ConflictError, OssctlError

LOCK_NAME = ".ossctl.lock"


@contextlib.contextmanager
def model_dir_lock(directory: Path, command: str) -> Iterator[None]:
    """Hold the directory's lock for the ``with`` body. Raises :class:`ConflictError`
    (exit 6) when another process holds it, :class:`OssctlError` when the lock file
    cannot be created."""
    import fcntl

    path = Path(directory) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OssctlError(f"cannot create {path}: {exc.strerror}",
                          hint="choose another place with --dir or --home, or fix its permissions") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise ConflictError(f"{directory} is in use by {_holder(fd)}",
                                hint="wait for it to finish (or stop it), then re-run; "
                                     "two writers in one model directory would corrupt its parts") from None
        info = {"pid": os.getpid(), "command": command,
                "since": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"another ossctl {info['command']} (pid {int(info['pid'])}, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another ossctl process"
