"""Bad input and bad chains: one clear line, a distinct non-zero exit, nothing sent."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.plugins.anvil import DEV_ADDRESSES, DEV_KEYS, deploy_registry
from tests.support.net import free_port
from tests.support.cli import run_cli

pytestmark = pytest.mark.anvil


def _one_error(r, code: int, *needles: str) -> None:
    assert r.code == code, (r.code, r.out, r.err)
    lines = r.err.splitlines()
    assert lines[0].startswith("error: ") and "Traceback" not in r.err, r.err
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), r.err
    for n in needles:
        assert n in r.err, (n, r.err)


def _new_account(node, wei: int) -> tuple[str, str]:
    from eth_account import Account

    acct = Account.create()
    node.set_balance(acct.address, wei)
    return "0x" + bytes(acct.key).hex(), acct.address


def test_non_owner_is_refused_before_sending(chain, tiny_model):
    node, addr, env = chain
    nonce = node.nonce(DEV_ADDRESSES[1])
    r = run_cli("register", str(tiny_model), "--yes", env={**env, "OSSCTL_PRIVATE_KEY": DEV_KEYS[1]})
    _one_error(r, 2, "not the owner", DEV_ADDRESSES[1], DEV_ADDRESSES[0])
    assert node.nonce(DEV_ADDRESSES[1]) == nonce
    d = run_cli("register", str(tiny_model), "--dry-run", env={**env, "OSSCTL_PRIVATE_KEY": DEV_KEYS[1]})
    _one_error(d, 2, "not the owner")


def test_wrong_chain_id(chain, tiny_model):
    node, _, env = chain
    r = run_cli("register", str(tiny_model), "--yes", "--chain-id", "8453", env=env)
    _one_error(r, 2, f"chain {node.chain_id}", "expected chain 8453")
    ok = run_cli("register", str(tiny_model), "--dry-run", env={**env, "OSSCTL_CHAIN_ID": str(node.chain_id)})
    assert ok.code == 0, ok.err
    bad = run_cli("registry", "list", "--chain-id", "mainnet", env=env)
    _one_error(bad, 2, "not a positive integer")


def test_address_without_code(chain, tiny_model):
    _, _, env = chain
    for cmd in (("register", str(tiny_model), "--yes"), ("registry", "status", str(tiny_model)), ("registry", "list")):
        r = run_cli(*cmd, env={**env, "OSSCTL_REGISTRY_ADDRESS": DEV_ADDRESSES[1]})
        _one_error(r, 3, "no contract code", DEV_ADDRESSES[1])


def test_malformed_and_misspelled_address(chain, tiny_model):
    _, addr, env = chain
    r = run_cli("register", str(tiny_model), "--registry", "0x1234", env=env)
    _one_error(r, 2, "not an address")
    # flip the case of one letter: a typo the EIP-55 checksum catches
    i = next(i for i, c in enumerate(addr) if i > 1 and c.isalpha())
    typo = addr[:i] + addr[i].swapcase() + addr[i + 1:]
    r = run_cli("registry", "list", "--registry", typo, env=env)
    _one_error(r, 2, "checksum")
    assert run_cli("registry", "list", "--registry", addr.lower(), env=env).code == 0


def test_rpc_down(home, tiny_model):
    url = f"http://127.0.0.1:{free_port()}"
    env = {"OSSCTL_RPC_URL": url, "OSSCTL_REGISTRY_ADDRESS": DEV_ADDRESSES[0], "OSSCTL_PRIVATE_KEY": DEV_KEYS[0]}
    for cmd in (("register", str(tiny_model), "--yes"), ("registry", "list")):
        _one_error(run_cli(*cmd, env=env), 5, "cannot reach the RPC endpoint", url)
    _one_error(run_cli("registry", "list", "--rpc-url", "127.0.0.1:8545", env=env), 2, "http(s)")
    _one_error(run_cli("registry", "list", env={"OSSCTL_REGISTRY_ADDRESS": DEV_ADDRESSES[0]}), 2, "no RPC URL")


def test_rpc_url_secret_path_is_not_printed(home, tiny_model):
    url = f"http://127.0.0.1:{free_port()}/v2/sup3rs3cretapikey"
    r = run_cli("registry", "list", env={"OSSCTL_RPC_URL": url, "OSSCTL_REGISTRY_ADDRESS": DEV_ADDRESSES[0]})
    _one_error(r, 5, "cannot reach")
    assert "sup3rs3cret" not in r.err + r.out


def test_missing_and_malformed_key(chain, tiny_model):
    _, _, env = chain
    no_key = {k: v for k, v in env.items() if k != "OSSCTL_PRIVATE_KEY"}
    os.environ.pop("OSSCTL_PRIVATE_KEY", None)
    _one_error(run_cli("register", str(tiny_model), "--yes", env=no_key), 2, "no signing key", "OSSCTL_PRIVATE_KEY")
    bad = "0x" + "zz" * 32
    r = run_cli("register", str(tiny_model), "--yes", env={**no_key, "OWNER_PRIVATE_KEY": bad})
    _one_error(r, 2, "OWNER_PRIVATE_KEY is not a private key")
    assert "zzzz" not in r.err
    zero = run_cli("register", str(tiny_model), "--yes", env={**no_key, "OSSCTL_PRIVATE_KEY": "00" * 32})
    _one_error(zero, 2, "not a valid secp256k1 private key")


def test_insufficient_funds(anvil, home, tiny_model):
    key, address = _new_account(anvil, 10**18)
    addr = deploy_registry(anvil, key)
    anvil.set_balance(address, 0)
    env = {"OSSCTL_RPC_URL": anvil.url, "OSSCTL_REGISTRY_ADDRESS": addr, "OSSCTL_PRIVATE_KEY": key}
    nonce = anvil.nonce(address)
    r = run_cli("register", str(tiny_model), "--yes", env=env)
    _one_error(r, 5, "insufficient funds", address)
    assert anvil.nonce(address) == nonce


def test_receipt_timeout_prints_hash_and_how_to_check(anvil_factory, home, tiny_model):
    node = anvil_factory()
    addr = deploy_registry(node)
    env = {"OSSCTL_RPC_URL": node.url, "OSSCTL_REGISTRY_ADDRESS": addr, "OSSCTL_PRIVATE_KEY": DEV_KEYS[0]}
    node.rpc("evm_setAutomine", [False])
    r = run_cli("register", str(tiny_model), "--yes", "--timeout", "1.5", env=env)
    _one_error(r, 5, "no receipt arrived within 1.5 s", "ossctl registry status")
    tx_hash = re.search(r"transaction (0x[0-9a-f]{64})", r.err).group(1)
    assert node.rpc("eth_getTransactionByHash", [tx_hash])["blockNumber"] is None  # pending, as reported
    node.rpc("evm_mine")
    st = run_cli("--json", "registry", "status", str(tiny_model), env=env)
    assert st.code == 0 and st.json()["hash"] == "match"


def test_files_that_do_not_verify_are_refused(chain, tmp_path):
    from tests.plugins.anvil import make_model_dir

    _, _, env = chain
    d = make_model_dir(tmp_path / "m")
    part = sorted(d.glob("*.gguf"))[-1]
    data = bytearray(part.read_bytes())
    data[-1] ^= 0xFF
    part.write_bytes(bytes(data))
    _one_error(run_cli("register", str(d), "--yes", env=env), 4, part.name)
    _one_error(run_cli("register", str(tmp_path / "nope"), "--yes", env=env), 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_error(run_cli("register", str(empty), "--yes", env=env), 3, "no manifest")


def test_keystore_flow(chain, tiny_model, tmp_path):
    from eth_account import Account

    node, _, env = chain
    password = "correct horse battery staple"
    ks = tmp_path / "owner.json"
    ks.write_text(json.dumps(Account.encrypt(DEV_KEYS[0], password, kdf="pbkdf2", iterations=2)))
    no_key = {k: v for k, v in env.items() if k != "OSSCTL_PRIVATE_KEY"}

    # a dry run checks the key as a real run would: the password is needed and checked
    _one_error(run_cli("register", str(tiny_model), "--keystore", str(ks), "--dry-run", env=no_key), 2,
               "needs a password")
    dry = run_cli("--json", "register", str(tiny_model), "--keystore", str(ks), "--dry-run",
                  env={**no_key, "OSSCTL_KEYSTORE_PASSWORD": password})
    assert dry.code == 0, dry.err
    assert dry.json()["from"] == DEV_ADDRESSES[0]

    _one_error(run_cli("register", str(tiny_model), "--keystore", str(ks), "--yes", env=no_key), 2,
               "needs a password", "OSSCTL_KEYSTORE_PASSWORD")
    wrong = run_cli("register", str(tiny_model), "--keystore", str(ks), "--yes",
                    env={**no_key, "OSSCTL_KEYSTORE_PASSWORD": "not the password"})
    _one_error(wrong, 2, "wrong password")
    _one_error(run_cli("register", str(tiny_model), "--keystore", str(tmp_path / "missing.json"), "--yes",
                       env=no_key), 3, "does not exist")
    (tmp_path / "junk.json").write_text("{not json")
    _one_error(run_cli("register", str(tiny_model), "--keystore", str(tmp_path / "junk.json"), "--yes",
                       env=no_key), 2, "not a readable JSON keystore")

    ok = run_cli("--json", "register", str(tiny_model), "--keystore", str(ks), "--yes",
                 env={**no_key, "OSSCTL_KEYSTORE_PASSWORD": password})
    assert ok.code == 0, ok.err
    assert ok.json()["action"] == "registered" and ok.json()["from"] == DEV_ADDRESSES[0]
    assert password not in ok.out + ok.err
