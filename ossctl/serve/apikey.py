"""The one reader of an API key file (a profile's ``api_key_file``, ``bench
--api-key-file``): the same file llama-server reads with ``--api-key-file``, one key per
line. Blank lines and ``#`` comments are skipped; the first key is the one clients send.
Every key in the file is registered for redaction."""

from __future__ import annotations

from pathlib import Path

from ossctl.errors import UsageError
from ossctl.redact import register_secret


def read_api_key(path: str | Path | None, what: str = "api_key_file") -> str | None:
    """The first key in ``path`` (``None`` when no path is given). ``what`` names the
    setting in messages. Raises :class:`UsageError` when the file cannot be read or
    holds no key."""
    if not path:
        return None
    p = Path(path).expanduser()
    try:
        lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} {p}: {getattr(exc, 'strerror', None) or type(exc).__name__}",
                         hint="point it at a text file with one key per line (chmod 600)") from None
    keys = [ln for ln in lines if ln and not ln.startswith("#")]
    if not keys:
        raise UsageError(f"{what} {p} holds no key", hint="write the key on one line (lines starting with # are comments)")
    for k in keys:
        register_secret(k)
    return keys[0]
