"""Keep secrets (signing keys, HF tokens, API keys, keystore passwords) out of every
output stream. Whatever loads a secret registers it; error and log rendering pass text
through :func:`redact`. Values from the well-known secret variables are registered at
start-up so even an SDK error that echoes them is cleaned."""

from __future__ import annotations

from collections.abc import Mapping

SECRET_ENV_VARS = (
    "OSSCTL_PRIVATE_KEY",
    "OWNER_PRIVATE_KEY",
    "OSSCTL_KEYSTORE_PASSWORD",
    "OSSCTL_SIGN_KEY_PASSPHRASE",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "OSSCTL_API_KEY",
)

_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember ``value`` (and its 0x-less / 0x-prefixed twin) so it is masked."""
    if not value or len(value) < 6:
        return
    v = value.strip()
    _secrets.add(v)
    if v.lower().startswith("0x"):
        _secrets.add(v[2:])
    elif all(c in "0123456789abcdefABCDEF" for c in v):
        _secrets.add("0x" + v)


def register_env(env: Mapping[str, str]) -> None:
    for name in SECRET_ENV_VARS:
        register_secret(env.get(name))


def redact(text: str) -> str:
    import re

    for s in sorted(_secrets, key=len, reverse=True):
        # keys are hex: also catch a differently-cased echo
        text = re.sub(re.escape(s), "***", text, flags=re.IGNORECASE)
    return text


_KEY_LIKE = None


def shown(value: object) -> str:
    """``value`` quoted for an error message, unless it holds 64 hex digits in a row: a
    private key pasted into the wrong argument must never be printed back (it is also
    registered, so nothing else prints it either)."""
    import re

    global _KEY_LIKE
    if _KEY_LIKE is None:
        _KEY_LIKE = re.compile(r"[0-9a-fA-F]{64}")
    text = str(value)
    m = _KEY_LIKE.search(text)
    if m:
        register_secret(m.group(0))
        return "(a value with 64 hex digits, not shown: a private key?)"
    return repr(text)


_KEY_RUN = None


def mask_key_like(text: str) -> str:
    """``text`` with every run of 64 or more hex digits (``0x`` or not) replaced by
    ``***`` and registered as a secret: for messages that echo what the user typed
    (Click's usage errors quote an unexpected argument or a bad option value), where a
    private key pasted into the wrong place must not be printed back. Only for such
    echoes: ossctl's own messages print SHA-256 digests, which are 64 hex digits too."""
    import re

    global _KEY_RUN
    if _KEY_RUN is None:
        _KEY_RUN = re.compile(r"(?<![0-9a-fA-F])(?:0[xX])?[0-9a-fA-F]{64,}(?![0-9a-fA-F])")

    def sub(m) -> str:
        register_secret(m.group(0))
        return "***"

    return _KEY_RUN.sub(sub, text)
