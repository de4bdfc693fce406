"""register / registry status / list / deactivate / reactivate against a real anvil."""

from __future__ import annotations

import pytest

from tests.plugins.anvil import DEV_ADDRESSES, DEV_KEYS, make_model_dir
from tests.support.cli import run_cli

pytestmark = pytest.mark.anvil

REGISTER_KEYS = ["action", "model_id", "repo", "file", "composite_sha256", "onchain_sha256", "registry",
                 "chain_id", "from", "active", "tx"]
TX_KEYS = ["function", "args", "from", "to", "nonce", "gas", "fee_mode", "max_fee_per_gas",
           "max_priority_fee_per_gas", "gas_price", "hash", "block_number", "gas_used"]
STATUS_KEYS = ["model_id", "repo", "file", "registry", "chain_id", "registered", "approved", "trusted", "active",
               "tier", "onchain_sha256", "local_sha256", "hash", "registered_at"]
LIST_KEYS = ["registry", "chain_id", "models"]
LIST_MODEL_KEYS = ["model_id", "repo", "file", "sha256", "tier", "active", "registered_at"]
SET_ACTIVE_KEYS = ["action", "model_id", "registry", "chain_id", "from", "repo", "file", "active", "tx"]
DEPLOY_KEYS = ["action", "address", "chain_id", "from", "owner", "compiler", "tx"]


def _manifest(d):
    from ossctl.artifacts.manifest import read_manifest

    return read_manifest(d)


def test_deploy_register_status_list_and_idempotent_rerun(chain, tiny_model):
    node, addr, env = chain
    m = _manifest(tiny_model)
    owner = DEV_ADDRESSES[0]

    r = run_cli("--json", "register", str(tiny_model), "--yes", env=env)
    assert r.code == 0, r.err
    res = r.json()
    assert list(res) == REGISTER_KEYS and list(res["tx"]) == TX_KEYS
    assert res["action"] == "registered"
    assert res["model_id"] == m.model_id
    assert res["onchain_sha256"] == res["composite_sha256"] == m.composite_sha256
    assert res["from"] == owner and res["registry"] == addr and res["chain_id"] == node.chain_id
    assert res["tx"]["function"] == "addTrustedModel"
    assert res["tx"]["args"] == [m.repo, m.first_file, "0x" + m.composite_sha256]
    assert res["tx"]["fee_mode"] == "eip1559" and res["tx"]["gas_price"] is None
    receipt = node.rpc("eth_getTransactionReceipt", [res["tx"]["hash"]])
    assert int(receipt["status"], 16) == 1 and receipt["to"].lower() == addr.lower()
    assert int(node.rpc("eth_getTransactionByHash", [res["tx"]["hash"]])["type"], 16) == 2  # EIP-1559

    st = run_cli("--json", "registry", "status", str(tiny_model), env=env)
    assert st.code == 0, st.err
    s = st.json()
    assert list(s) == STATUS_KEYS + ["signature"]  # the CLI adds the signed composite
    assert (s["registered"], s["approved"], s["trusted"], s["active"], s["hash"]) == (True, True, True, True, "match")
    assert s["onchain_sha256"] == s["local_sha256"] == m.composite_sha256
    assert s["repo"] == m.repo and s["file"] == m.first_file and s["tier"] == 1 and s["registered_at"]

    # a re-run sends nothing: the sender's nonce and the chain height do not move
    nonce, height = node.nonce(owner), node.block_number()
    again = run_cli("--json", "register", str(tiny_model), env=env)  # no --yes needed: nothing to send
    assert again.code == 0, again.err
    assert again.json()["action"] == "already-registered" and again.json()["tx"] is None
    assert list(again.json()) == REGISTER_KEYS
    assert (node.nonce(owner), node.block_number()) == (nonce, height)

    human = run_cli("register", str(tiny_model), env=env)
    assert human.code == 0 and "already registered" in human.out and m.model_id in human.out

    ls = run_cli("--json", "registry", "list", env=env)
    assert ls.code == 0, ls.err
    doc = ls.json()
    assert list(doc) == LIST_KEYS and len(doc["models"]) == 1
    assert list(doc["models"][0]) == LIST_MODEL_KEYS
    assert doc["models"][0]["model_id"] == m.model_id and doc["models"][0]["sha256"] == m.composite_sha256
    table = run_cli("registry", "list", env=env)
    assert table.code == 0 and m.repo in table.out and "ACTIVE" in table.out


def test_status_by_id_and_not_registered(chain, tiny_model):
    _, _, env = chain
    m = _manifest(tiny_model)
    r = run_cli("--json", "registry", "status", str(tiny_model), env=env)
    assert r.code == 3  # not registered: the report still comes out on stdout
    assert r.json()["hash"] == "not-registered" and r.json()["registered"] is False
    r = run_cli("--json", "registry", "status", m.model_id, env=env)
    assert r.code == 3 and r.json()["local_sha256"] is None


def test_dry_run_sends_nothing(chain, tiny_model):
    node, addr, env = chain
    m = _manifest(tiny_model)
    nonce, height = node.nonce(DEV_ADDRESSES[0]), node.block_number()
    r = run_cli("--json", "register", str(tiny_model), "--dry-run", env=env)
    assert r.code == 0, r.err
    res = r.json()
    assert res["action"] == "dry-run" and list(res) == REGISTER_KEYS and list(res["tx"]) == TX_KEYS
    tx = res["tx"]
    assert tx["function"] == "addTrustedModel" and tx["to"] == addr and tx["from"] == DEV_ADDRESSES[0]
    assert tx["args"] == [m.repo, m.first_file, "0x" + m.composite_sha256]
    assert tx["gas"] > 21000 and tx["hash"] is None and tx["nonce"] == nonce
    assert (node.nonce(DEV_ADDRESSES[0]), node.block_number()) == (nonce, height)
    human = run_cli("register", str(tiny_model), "--dry-run", env=env)
    assert human.code == 0 and "addTrustedModel" in human.out and "nothing sent" in human.out
    assert run_cli("registry", "status", str(tiny_model), env=env).code == 3


def test_no_terminal_without_yes_refuses_and_sends_nothing(chain, tiny_model):
    node, _, env = chain
    nonce = node.nonce(DEV_ADDRESSES[0])
    r = run_cli("register", str(tiny_model), env=env)
    assert r.code == 2
    assert r.err.startswith("error: refusing to send") and "--yes" in r.err and r.out == ""
    assert node.nonce(DEV_ADDRESSES[0]) == nonce


def test_different_hash_is_a_conflict(chain, tiny_model, tmp_path):
    node, _, env = chain
    assert run_cli("register", str(tiny_model), "--yes", env=env).code == 0
    # same repo and file name, different bytes: the same model id with another hash
    other = make_model_dir(tmp_path / "other", seed=7)
    assert _manifest(other).model_id == _manifest(tiny_model).model_id
    assert _manifest(other).composite_sha256 != _manifest(tiny_model).composite_sha256
    nonce = node.nonce(DEV_ADDRESSES[0])
    r = run_cli("register", str(other), "--yes", env=env)
    assert r.code == 6, r.err
    assert "different hash" in r.err and "hint: " in r.err and "deactivate" in r.err
    assert node.nonce(DEV_ADDRESSES[0]) == nonce
    st = run_cli("--json", "registry", "status", str(other), env=env)
    assert st.code == 6 and st.json()["hash"] == "mismatch"


def test_deactivate_reactivate(chain, tiny_model):
    node, _, env = chain
    m = _manifest(tiny_model)
    nf = run_cli("registry", "deactivate", m.model_id, "--yes", env=env)
    assert nf.code == 3 and "not registered" in nf.err
    assert run_cli("register", str(tiny_model), "--yes", env=env).code == 0

    r = run_cli("--json", "registry", "deactivate", str(tiny_model), "--yes", env=env)
    assert r.code == 0, r.err
    assert list(r.json()) == SET_ACTIVE_KEYS and r.json()["action"] == "deactivated"
    assert r.json()["tx"]["function"] == "deactivateModel" and r.json()["tx"]["hash"]
    s = run_cli("--json", "registry", "status", m.model_id, env=env).json()
    assert (s["active"], s["approved"], s["trusted"]) == (False, False, True)

    nonce = node.nonce(DEV_ADDRESSES[0])
    again = run_cli("--json", "registry", "deactivate", m.model_id, env=env)
    assert again.code == 0 and again.json()["action"] == "already-inactive"
    assert node.nonce(DEV_ADDRESSES[0]) == nonce
    reg = run_cli("register", str(tiny_model), env=env)  # same hash, inactive: says so, sends nothing
    assert reg.code == 0 and "reactivate" in reg.out

    r = run_cli("--json", "registry", "reactivate", m.model_id, "--yes", env=env)
    assert r.code == 0 and r.json()["action"] == "reactivated"
    assert run_cli("--json", "registry", "status", m.model_id, env=env).json()["active"] is True


def test_deploy_contract_json_and_dry_run(anvil, home):
    env = {"OSSCTL_RPC_URL": anvil.url, "OSSCTL_PRIVATE_KEY": DEV_KEYS[1]}
    nonce = anvil.nonce(DEV_ADDRESSES[1])
    dry = run_cli("--json", "registry", "deploy-contract", "--dry-run", env=env)
    assert dry.code == 0, dry.err
    assert list(dry.json()) == DEPLOY_KEYS and dry.json()["address"] is None
    assert anvil.nonce(DEV_ADDRESSES[1]) == nonce
    r = run_cli("--json", "registry", "deploy-contract", "--yes", env=env)
    assert r.code == 0, r.err
    doc = r.json()
    assert list(doc) == DEPLOY_KEYS and doc["owner"] == DEV_ADDRESSES[1] and doc["compiler"].startswith("0.8.30")
    code = anvil.rpc("eth_getCode", [doc["address"], "latest"])
    from ossctl.registry.rpc import artifact

    assert code == artifact()["deployedBytecode"]
    owner_env = {**env, "OSSCTL_REGISTRY_ADDRESS": doc["address"]}
    assert run_cli("--json", "registry", "list", env=owner_env).json()["models"] == []


def test_settings_from_config_file(chain, tiny_model, home):
    node, addr, env = chain
    (home / "config.toml").write_text(
        f'[registry]\nrpc_url = "{node.url}"\naddress = "{addr}"\nchain_id = {node.chain_id}\n')
    r = run_cli("--json", "registry", "list", env={"OSSCTL_PRIVATE_KEY": DEV_KEYS[0]})
    assert r.code == 0, r.err
    assert r.json()["registry"] == addr
    # a flag beats the config file
    bad = run_cli("registry", "list", "--chain-id", "5", env={})
    assert bad.code == 2 and "expected chain 5" in bad.err


def test_status_for_manifest_reads_settings(chain, tiny_model):
    from ossctl.registry.client import status_for_manifest
    from ossctl.settings import load_settings

    node, addr, env = chain
    m = _manifest(tiny_model)
    settings = load_settings({**env, "OSSCTL_CHAIN_ID": str(node.chain_id)})
    assert status_for_manifest(settings, m)["hash"] == "not-registered"
    assert run_cli("register", str(tiny_model), "--yes", env=env).code == 0
    s = status_for_manifest(settings, m)
    assert list(s) == STATUS_KEYS and (s["hash"], s["active"]) == ("match", True)


def test_legacy_gas_price_where_the_chain_has_no_base_fee(anvil_factory, home, tiny_model):
    from tests.plugins.anvil import deploy_registry

    node = anvil_factory("--block-base-fee-per-gas", "0")
    env = {"OSSCTL_RPC_URL": node.url, "OSSCTL_REGISTRY_ADDRESS": deploy_registry(node),
           "OSSCTL_PRIVATE_KEY": DEV_KEYS[0]}
    r = run_cli("--json", "register", str(tiny_model), "--yes", env=env)
    assert r.code == 0, r.err
    tx = r.json()["tx"]
    assert tx["fee_mode"] == "legacy" and tx["gas_price"] > 0 and tx["max_fee_per_gas"] is None
    assert int(node.rpc("eth_getTransactionByHash", [tx["hash"]])["type"], 16) == 0
