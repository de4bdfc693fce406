"""Read an image's ``llama-server --help`` (the input :mod:`ossctl.serve.llama_flags`
spells flags from), for deploy, its dry run and doctor alike."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ossctl.errors import OssctlError, RemoteError
from ossctl.fsutil import atomic_write
from ossctl.serve import llama_flags
from ossctl.serve.engine import open_engine


def read_help(rt, image: str, cache_dir: Path | None = None, image_id: str | None = None) -> str:
    """``llama-server --help`` as printed inside ``image`` (run with no network, removed
    afterwards). With ``cache_dir`` and the image's id (a content hash: the same id is the
    same binary) a help text read before is reused, which saves a container run on every
    deploy. Raises :class:`RemoteError` when the image does not print one."""
    def check(code: int, out: str) -> None:
        if not llama_flags.parse_help_flags(out):
            raise RemoteError(f"`llama-server --help` in {image} listed no flags (exit {code})",
                              hint="is it a llama.cpp server image? `ossctl doctor --profile NAME` checks it")

    return _cached_run(rt, image, "--help", "llama-help", check, cache_dir, image_id)


def read_version(rt, image: str, cache_dir: Path | None = None, image_id: str | None = None) -> str:
    """``llama-server --version`` as printed inside ``image`` (its build line), cached per
    image id like :func:`read_help`. Not checked: :func:`llama_flags.parse_build` says what
    it could read."""
    return _cached_run(rt, image, "--version", "llama-version", lambda _code, _out: None, cache_dir, image_id)


def _cached_run(rt, image: str, arg: str, kind: str, check, cache_dir: Path | None, image_id: str | None) -> str:
    cached = Path(cache_dir, kind, image_id.replace(":", "-") + ".txt") if cache_dir and image_id else None
    if cached is not None:
        try:
            return cached.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            pass
    code, out = rt.run_once(image, [arg])
    check(code, out)
    if cached is not None and code == 0:
        with contextlib.suppress(OSError):  # a cache: a read-only home only costs the next run
            atomic_write(cached, out)
    return out


def dry_run_help(settings, image: str, docker_host_flag: str | None = None) -> tuple[str | None, str]:
    """Best effort for ``deploy --dry-run``, which changes nothing and needs no engine:
    (help text or None, where the spellings come from)."""
    try:
        rt = open_engine(settings, docker_host_flag, timeout=15).rt
        rt.image_info(image)
        return read_help(rt, image), f"`llama-server --help` of {image}"
    except OssctlError as exc:
        return None, f"assumed current llama-server spellings: {exc.message}"


def explain(profile: dict[str, Any], help_text: str | None, source: str) -> dict[str, Any]:
    """What ``deploy --dry-run`` shows: where the spellings come from, and per intent the
    arguments and why. Raises :class:`UsageError` as :func:`llama_flags.plan` does."""
    return {"source": source, "choices": [c.public() for c in llama_flags.plan(profile, help_text).values()]}
