"""Pure parts of the registry client, its RPC transport and key loading (no chain needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.support.net import http_server, url
from ossctl.errors import IntegrityError, NotFoundError, RemoteError, UsageError
from ossctl.registry import client, keys, rpc

KEY0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ADDR0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
KEY1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ADDR1 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def test_abi_is_compatible_with_the_marketplace_registry():
    from eth_utils import keccak

    want = {
        "getModelId(string,string)": ["bytes32"],
        "addTrustedModel(string,string,bytes32)": [],
        "isModelApproved(bytes32)": ["bool"],
        "isTrustedModel(bytes32)": ["bool"],
        "getModelHash(bytes32)": ["bytes32"],
        "getModel(bytes32)": ["(string,string,bytes32,uint256,bool,uint256)"],
        "getAllModels()": ["bytes32[]"],
        "deactivateModel(bytes32)": [],
        "reactivateModel(bytes32)": [],
        "owner()": ["address"],
    }
    for sig, outputs in want.items():
        name = sig.split("(")[0]
        sel, _, outs = rpc._fn(name)
        assert sel == keccak(text=sig)[:4].hex(), sig
        assert list(outs) == outputs, sig
    getmodel = next(f for f in rpc.artifact()["abi"] if f.get("name") == "getModel")
    assert [c["name"] for c in getmodel["outputs"][0]["components"]] == [
        "huggingfaceRepo", "fileName", "sha256Hash", "approvalTier", "active", "timestamp"]
    event = next(f for f in rpc.artifact()["abi"] if f.get("type") == "event" and f["name"] == "ModelAdded")
    assert [(i["type"], i["indexed"]) for i in event["inputs"]] == [
        ("bytes32", True), ("string", False), ("string", False), ("uint256", False)]


def test_model_id_is_keccak_of_repo_slash_file():
    from ossctl.artifacts import hashing

    assert hashing.model_id("a/b", "c") == "0x" + __import__("eth_utils").keccak(b"a/b/c").hex()
    assert hashing.model_id("a/b", "ü.gguf") == "0x" + __import__("eth_utils").keccak("a/b/ü.gguf".encode()).hex()
    assert not hasattr(client, "model_id_of")  # one model-id function (artifacts.hashing owns it)


def test_checksum_address():
    assert rpc.checksum_address(ADDR0.lower()) == ADDR0
    assert rpc.checksum_address(ADDR0) == ADDR0
    with pytest.raises(UsageError, match="not an address"):
        rpc.checksum_address("0x1234")
    with pytest.raises(UsageError, match="not an address"):
        rpc.checksum_address("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
    i = next(i for i, ch in enumerate(ADDR0) if i > 1 and ch.isalpha())
    typo = ADDR0[:i] + ADDR0[i].swapcase() + ADDR0[i + 1:]
    with pytest.raises(UsageError, match="checksum"):
        rpc.checksum_address(typo)


def test_parse_model_id_and_hash():
    mid = "0x" + "Ab" * 32
    assert client.parse_model_id(mid) == mid.lower()
    assert client.parse_model_id("120b") is None and client.parse_model_id("0x" + "a" * 63) is None
    assert client.hash_to_bytes32("AB" * 32) == bytes([0xAB]) * 32
    with pytest.raises(IntegrityError):
        client.hash_to_bytes32("ab" * 31)


def test_display_url_hides_credentials():
    assert rpc.display_url("https://user:pw@rpc.example.org/v2/KEY?x=1") == "https://rpc.example.org/…"
    assert rpc.display_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"
    assert rpc.display_url("http://[::1]:8545/") == "http://[::1]:8545"


def test_connect_validates_settings():
    c = rpc.connect("http://127.0.0.1:8545", ADDR0.lower(), "0x7a69", 5)
    assert (c.registry, c.expected_chain_id, c.receipt_timeout) == (ADDR0, 31337, 5.0)
    with pytest.raises(UsageError, match="no RPC URL"):
        rpc.connect(None)
    with pytest.raises(UsageError, match="http"):
        rpc.connect("ws://127.0.0.1:8545")
    with pytest.raises(UsageError, match="positive integer"):
        rpc.connect("http://127.0.0.1:8545", None, "-1")
    with pytest.raises(UsageError, match="no registry address"):
        rpc.connect("http://127.0.0.1:8545").need_registry()


def test_connection_from_settings_flag_beats_env_beats_config(tmp_path):
    from ossctl.settings import load_settings

    (tmp_path / "config.toml").write_text(
        f'[registry]\nrpc_url = "http://127.0.0.1:1"\naddress = "{ADDR1}"\nchain_id = 7\n')
    base = {"OSSCTL_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    c = client.from_settings(load_settings(base))
    assert (c.url, c.registry, c.expected_chain_id) == ("http://127.0.0.1:1", ADDR1, 7)
    env = {**base, "OSSCTL_RPC_URL": "http://127.0.0.1:2", "OSSCTL_REGISTRY_ADDRESS": ADDR0, "OSSCTL_CHAIN_ID": "8"}
    c = client.from_settings(load_settings(env), receipt_timeout=5)
    assert (c.url, c.registry, c.expected_chain_id, c.receipt_timeout) == ("http://127.0.0.1:2", ADDR0, 8, 5.0)
    c = client.from_settings(load_settings(env), rpc_url="http://127.0.0.1:3", chain_id="9", with_registry=False)
    assert (c.url, c.registry, c.expected_chain_id) == ("http://127.0.0.1:3", None, 9)
    assert client.configured_rpc_url(load_settings(base)) == "http://127.0.0.1:1"
    with pytest.raises(UsageError, match="no RPC URL"):
        client.from_settings(load_settings({**base, "OSSCTL_HOME": str(tmp_path / "empty")}))


def test_revert_reason_decoding():
    import eth_abi

    data = "0x08c379a0" + eth_abi.encode(["string"], ["Only owner"]).hex()
    assert rpc._revert_reason({"code": 3, "message": "execution reverted", "data": data}) == "Only owner"
    assert rpc._revert_reason({"message": "execution reverted: Model already exists"}) == "Model already exists"


def test_key_sources_and_precedence(tmp_path):
    from eth_account import Account

    from ossctl.redact import redact

    assert keys.key_source({}) is None
    with pytest.raises(UsageError, match="no signing key"):
        keys.require_key_source(None)
    both = keys.key_source({"OSSCTL_PRIVATE_KEY": KEY0, "OWNER_PRIVATE_KEY": KEY1})
    assert both.describe == "OSSCTL_PRIVATE_KEY" and both.address() == ADDR0
    owner = keys.key_source({"OWNER_PRIVATE_KEY": KEY1[2:]})
    assert owner.address() == ADDR1 and KEY1[2:] not in repr(owner)
    assert redact(f"oops {KEY1.upper()[2:]}") == "oops ***"

    ks = tmp_path / "k.json"
    ks.write_text(json.dumps(Account.encrypt(KEY1, "hunter2-long", kdf="pbkdf2", iterations=2)))
    src = keys.key_source({"OSSCTL_PRIVATE_KEY": KEY0}, str(ks))  # --keystore beats the env
    assert src.kind == "keystore" and src.address() == ADDR1  # from the file, no password needed
    with pytest.raises(UsageError, match="needs a password") as ei:
        src.private_key()
    assert "OSSCTL_KEYSTORE_PASSWORD" in ei.value.hint
    asked = []
    prompted = keys.key_source({}, str(ks), prompt=lambda text: asked.append(text) or "hunter2-long")
    assert prompted.private_key() == bytes.fromhex(KEY1[2:]) and len(asked) == 1
    with pytest.raises(UsageError, match="wrong password"):
        keys.key_source({"OSSCTL_KEYSTORE_PASSWORD": "nope-nope"}, str(ks)).private_key()
    with pytest.raises(NotFoundError):
        keys.key_source({}, str(tmp_path / "missing.json")).address()


def test_malformed_key_message_never_contains_it():
    bad = KEY0[:-1] + "g"
    with pytest.raises(UsageError) as ei:
        keys.key_source({"OSSCTL_PRIVATE_KEY": bad}).private_key()
    assert KEY0[2:20] not in str(ei.value) + str(ei.value.hint)
    assert ei.value.__cause__ is None and (ei.value.__context__ is None or ei.value.__suppress_context__)
    with pytest.raises(UsageError, match="out of range") as ei:
        keys.key_source({"OSSCTL_PRIVATE_KEY": "ff" * 32}).private_key()
    assert ei.value.__suppress_context__ and "ff" * 8 not in str(ei.value)


class _Flaky(BaseHTTPRequestHandler):
    failures = 2
    seen = 0

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen += 1
        if type(self).seen <= type(self).failures:
            self.send_response(503)
            self.end_headers()
            return
        out = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": "0x7a69"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


@pytest.fixture
def flaky_server():
    _Flaky.seen = 0
    with http_server(_Flaky) as srv:
        yield srv, url(srv)


def test_transient_http_errors_are_retried(flaky_server):
    _, url = flaky_server
    c = rpc.connect(url)
    c.backoff = 0.01
    assert c.chain_id() == 31337
    assert c.calls == ["eth_chainId"] * 3 and _Flaky.seen == 3

    _Flaky.seen = -10  # now it keeps failing: give up after the retries, one clear error
    c2 = rpc.connect(url)
    c2.backoff = 0.01
    with pytest.raises(RemoteError, match="HTTP 503 after 4 attempts"):
        c2.chain_id()


def test_cli_import_stays_light_and_only_rpc_imports_web3():
    code = ("import sys; import ossctl.cli.app, ossctl.cli.registry, ossctl.registry.keys; "
            "bad = [m for m in ('web3', 'eth_account', 'eth_abi', 'requests') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
    root = Path(__file__).resolve().parents[2] / "ossctl"
    importers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                       if any(line.strip().startswith(("import web3", "from web3"))
                              for line in p.read_text(encoding="utf-8").splitlines()))
    assert importers == ["registry/rpc.py"]
