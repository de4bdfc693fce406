"""Where a signing key may come from, and keeping it secret.

Sources, first match wins:
1. ``--keystore FILE``: an encrypted JSON keystore (Web3 Secret Storage); the password
   comes from ``OSSCTL_KEYSTORE_PASSWORD`` or, on a terminal, a prompt the CLI supplies.
2. ``OSSCTL_PRIVATE_KEY``, then ``OWNER_PRIVATE_KEY`` (the name existing setups use):
   32 bytes as hex, with or without ``0x``.

There is deliberately no flag that takes the key itself: argv is visible to every user
of the machine (``ps``) and lands in shell history. Every loaded key and password is
registered with :func:`ossctl.redact.register_secret`, and no error raised here ever
contains one (exceptions are re-raised ``from None`` so SDK messages cannot leak it).

The key is loaded lazily: a command that turns out to send nothing (an already
registered model) never decrypts a keystore or asks for its password.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ossctl.errors import NotFoundError, UsageError
from ossctl.redact import register_secret, shown

KEY_ENV_VARS = ("OSSCTL_PRIVATE_KEY", "OWNER_PRIVATE_KEY")
PASSWORD_ENV = "OSSCTL_KEYSTORE_PASSWORD"
_HEX_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_ADDRESS = re.compile(r"^(0x)?[0-9a-fA-F]{40}$")

PasswordPrompt = Callable[[str], str]


@dataclass
class KeySource:
    """A signing key not yet loaded. ``describe`` names the source (never the key)."""

    kind: str  # "env" | "keystore"
    describe: str
    note: str | None = None  # for the user (stderr), e.g. which of two configured sources is used
    _env_value: str | None = field(default=None, repr=False)
    _keystore: Path | None = None
    _password_env: str | None = field(default=None, repr=False)
    _prompt: PasswordPrompt | None = field(default=None, repr=False)
    _key: bytes | None = field(default=None, repr=False)
    _address: str | None = None

    def __repr__(self) -> str:  # never show key material, even in a debugger
        return f"KeySource({self.describe})"

    def address(self) -> str:
        """The sender address (checksummed), without decrypting a keystore when the
        keystore records it."""
        if self._address is None:
            if self.kind == "keystore":
                doc = _read_keystore(self._keystore)
                addr = str(doc.get("address", ""))
                if _ADDRESS.match(addr):
                    self._address = _checksum(addr)
                    return self._address
            self._address = _address_of(self.private_key())
        return self._address

    def private_key(self) -> bytes:
        """The 32-byte key. Raises :class:`UsageError` (malformed key, wrong password,
        no password available) or :class:`NotFoundError` (keystore file missing)."""
        if self._key is None:
            if self.kind == "env":
                self._key = _parse_hex_key(self._env_value or "", self.describe)
            else:
                self._key = _decrypt_keystore(self._keystore, self._password_env, self._prompt)
            register_secret(self._key.hex())
            addr = _address_of(self._key)
            if self._address is not None and self._address.lower() != addr.lower():
                raise UsageError(f"{self.describe} records address {self._address} but decrypts to {addr}",
                                 hint="the keystore file is inconsistent; re-create it")
            self._address = addr
        return self._key


def key_source(env: Mapping[str, str], keystore: str | None = None,
               prompt: PasswordPrompt | None = None) -> KeySource | None:
    """Pick the key source (see module doc), or ``None`` when none is configured.

    ``prompt(text) -> password`` is called only when a keystore must be decrypted and
    ``OSSCTL_KEYSTORE_PASSWORD`` is unset; pass ``None`` when there is no terminal."""
    for name in (PASSWORD_ENV, *KEY_ENV_VARS):
        register_secret(env.get(name))
    if keystore:
        path = Path(keystore).expanduser()
        also = [n for n in KEY_ENV_VARS if (env.get(n) or "").strip()]
        note = (f"signing with --keystore; {' and '.join(also)} {'is' if len(also) == 1 else 'are'} also set "
                "and ignored") if also else None
        return KeySource("keystore", f"keystore {_label(path)}", note=note, _keystore=path,
                         _password_env=env.get(PASSWORD_ENV) or None, _prompt=prompt)
    for name in KEY_ENV_VARS:
        value = env.get(name)
        if value and value.strip():
            return KeySource("env", name, _env_value=value.strip())
    return None


def require_key_source(src: KeySource | None) -> KeySource:
    if src is None:
        raise UsageError("no signing key: this command sends a transaction",
                         hint="set OSSCTL_PRIVATE_KEY (or OWNER_PRIVATE_KEY) in the environment, "
                              "or pass --keystore FILE")
    return src


def _parse_hex_key(value: str, name: str) -> bytes:
    if not _HEX_KEY.match(value):
        raise UsageError(f"{name} is not a private key (expected 64 hex digits, optionally 0x-prefixed)",
                         hint=f"check the value of {name}; it is not shown here on purpose")
    key = bytes.fromhex(value[2:] if value[:2].lower() == "0x" else value)
    register_secret(value)
    try:
        _address_of(key)
    except UsageError:
        raise UsageError(f"{name} is not a valid secp256k1 private key (out of range)",
                         hint=f"check the value of {name}; it is not shown here on purpose") from None
    return key


def _address_of(key: bytes) -> str:
    from eth_account import Account

    try:
        return Account.from_key(key).address
    except Exception:  # eth_keys raises ValidationError for 0 / >= curve order
        raise UsageError("the private key is out of range for secp256k1") from None


def _checksum(addr: str) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address("0x" + addr[-40:])


def _label(path: Path | None) -> str:
    """A keystore path for messages; never a private key pasted as ``--keystore``."""
    text = shown(path)
    return str(path) if text.startswith("'") else text


_CRYPTO_KEYS = ("cipher", "cipherparams", "ciphertext", "kdf", "kdfparams", "mac")
_KEYSTORE_HINT = ("pass an encrypted JSON keystore (Web3 Secret Storage, e.g. from `cast wallet new` or geth), "
                  "or set OSSCTL_PRIVATE_KEY instead")


def _read_keystore(path: Path | None) -> dict[str, Any]:
    assert path is not None
    label = _label(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(f"keystore {label} does not exist", hint="check --keystore") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"keystore {label} is not a readable JSON keystore ({type(exc).__name__})",
                         hint=_KEYSTORE_HINT) from None
    crypto = doc.get("crypto", doc.get("Crypto")) if isinstance(doc, dict) else None
    if not isinstance(crypto, dict):
        raise UsageError(f"keystore {label} is not an encrypted JSON keystore (no 'crypto' section)",
                         hint=_KEYSTORE_HINT)
    missing = [k for k in _CRYPTO_KEYS if k not in crypto]
    if missing:
        raise UsageError(f"keystore {label} is incomplete: its 'crypto' section lacks {', '.join(missing)}",
                         hint="export the keystore again from the wallet that made it, or set OSSCTL_PRIVATE_KEY "
                              "instead")
    return doc


def _decrypt_keystore(path: Path | None, password: str | None, prompt: PasswordPrompt | None) -> bytes:
    doc = _read_keystore(path)
    if password is None:
        if prompt is None:
            raise UsageError(f"keystore {_label(path)} needs a password and there is no terminal to ask for it",
                             hint=f"set {PASSWORD_ENV}")
        password = prompt(f"Password for keystore {_label(path)}: ")
    register_secret(password)
    from eth_account import Account

    try:
        key = bytes(Account.decrypt(doc, password))
    except ValueError as exc:
        wrong = "MAC mismatch" in str(exc)
        raise UsageError(f"cannot decrypt keystore {_label(path)}: " + ("wrong password" if wrong else "unsupported format"),
                         hint=f"check {PASSWORD_ENV} or the password you typed" if wrong else None) from None
    except Exception as exc:  # malformed crypto params (a KeyError names only a field)
        raise UsageError(f"cannot decrypt keystore {_label(path)}: its 'crypto' parameters are malformed "
                         f"({type(exc).__name__})",
                         hint="export the keystore again from the wallet that made it, or set OSSCTL_PRIVATE_KEY "
                              "instead") from None
    return key
