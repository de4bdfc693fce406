"""Issue 13, registry and keys (items 9, 10): a dry run checks the keystore password, a
broken keystore says what is wrong, two key sources say which is used, and a private
key pasted into the wrong argument is never printed back. Each: exit code, one line,
nothing sent."""

from __future__ import annotations

import json

import pytest

from tests.plugins.anvil import DEV_ADDRESSES, DEV_KEYS
from tests.support.cli import run_cli

pytestmark = pytest.mark.anvil


def _one_error(r, code: int, *needles: str) -> str:
    assert r.code == code, (r.code, r.out, r.err)
    errs = [ln for ln in r.err.splitlines() if ln.startswith("error: ")]
    assert len(errs) == 1 and "Traceback" not in r.err, r.err
    for n in needles:
        assert n in r.err, (n, r.err)
    return errs[0]


def test_dry_run_with_a_wrong_keystore_password_fails(chain, tiny_model, tmp_path):
    from eth_account import Account

    node, _, env = chain
    no_key = {k: v for k, v in env.items() if k != "OSSCTL_PRIVATE_KEY"}
    ks = tmp_path / "owner.json"
    ks.write_text(json.dumps(Account.encrypt(DEV_KEYS[0], "right", kdf="pbkdf2", iterations=2)))
    nonce = node.nonce(DEV_ADDRESSES[0])
    r = run_cli("register", str(tiny_model), "--keystore", str(ks), "--dry-run",
                env={**no_key, "OSSCTL_KEYSTORE_PASSWORD": "wrong"})
    _one_error(r, 2, "wrong password", "OSSCTL_KEYSTORE_PASSWORD")
    assert DEV_ADDRESSES[0] not in r.out and r.out == ""
    assert node.nonce(DEV_ADDRESSES[0]) == nonce


def test_keystore_with_an_empty_crypto_section_says_what_is_missing(chain, tiny_model, tmp_path):
    _, _, env = chain
    no_key = {k: v for k, v in env.items() if k != "OSSCTL_PRIVATE_KEY"}
    ks = tmp_path / "empty.json"
    ks.write_text(json.dumps({"address": DEV_ADDRESSES[0][2:].lower(), "crypto": {}, "version": 3}))
    r = run_cli("register", str(tiny_model), "--keystore", str(ks), "--dry-run",
                env={**no_key, "OSSCTL_KEYSTORE_PASSWORD": "x"})
    line = _one_error(r, 2, "hint: ")
    assert "its 'crypto' section lacks cipher, cipherparams, ciphertext, kdf, kdfparams, mac" in line
    assert "KeyError" not in r.err
    assert ks.read_text().startswith("{")  # untouched


def test_both_key_sources_set_says_which_one_signs(chain, tiny_model, tmp_path):
    from eth_account import Account

    _, _, env = chain
    ks = tmp_path / "owner.json"
    ks.write_text(json.dumps(Account.encrypt(DEV_KEYS[0], "pw", kdf="pbkdf2", iterations=2)))
    r = run_cli("register", str(tiny_model), "--keystore", str(ks), "--dry-run",
                env={**env, "OSSCTL_KEYSTORE_PASSWORD": "pw"})
    assert r.code == 0, r.err
    assert "note: signing with --keystore; OSSCTL_PRIVATE_KEY is also set and ignored" in r.err


@pytest.mark.parametrize("where", ["model", "keystore", "registry"])
def test_a_private_key_pasted_in_the_wrong_place_is_never_printed(chain, tiny_model, where):
    from eth_account import Account

    _, _, env = chain
    pasted = "0x" + bytes(Account.create().key).hex()
    args = {"model": ["register", pasted, "--dry-run"],
            "keystore": ["register", str(tiny_model), "--keystore", pasted, "--dry-run"],
            "registry": ["register", str(tiny_model), "--registry", pasted, "--dry-run"]}[where]
    r = run_cli(*args, env=env)
    line = _one_error(r, {"model": 3, "keystore": 3, "registry": 2}[where], "not shown")
    body = pasted[2:].lower()
    assert body not in (r.out + r.err).lower() and body[:32] not in (r.out + r.err).lower(), line
