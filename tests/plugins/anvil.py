"""A real anvil (from the npm package @foundry-rs/anvil in $OSSCTL_TEST_NODE_BIN) on a
free 127.0.0.1 port, plus helpers to talk to it and to make a registrable model dir.

Anvil's well-known dev accounts (mnemonic "test test ... junk") are used as keys.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.net import free_port

# anvil's default dev accounts 0 and 1 (public test keys, funded with 10000 ETH)
DEV_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
)
DEV_ADDRESSES = ("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8")


@dataclass
class Anvil:
    url: str
    chain_id: int
    proc: subprocess.Popen

    def rpc(self, method: str, params: list | None = None):
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
        req = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            doc = json.loads(r.read())
        if "error" in doc:
            raise RuntimeError(f"{method}: {doc['error']}")
        return doc["result"]

    def nonce(self, address: str) -> int:
        return int(self.rpc("eth_getTransactionCount", [address, "pending"]), 16)

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def set_balance(self, address: str, wei: int) -> None:
        self.rpc("anvil_setBalance", [address, hex(wei)])


@contextmanager
def start_anvil(node_bin: str | Path, *extra: str, chain_id: int = 31337):
    """Start anvil and yield an :class:`Anvil`; stop it (its whole process group: the npm
    wrapper is node spawning the native binary) on exit."""
    exe = Path(node_bin) / "anvil"
    for _ in range(3):  # a port taken between free_port() and bind: try another
        port = free_port()
        proc = subprocess.Popen([str(exe), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(chain_id),
                                 "--silent", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        node = Anvil(f"http://127.0.0.1:{port}", chain_id, proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                node.rpc("eth_chainId")
                break
            except OSError:
                time.sleep(0.05)
        if proc.poll() is None:
            break
    else:
        raise RuntimeError("anvil did not start: " + (proc.stderr.read().decode(errors="replace") if proc.stderr else ""))
    try:
        yield node
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


def node_bin() -> str:
    from tests.conftest import require_env

    return require_env("OSSCTL_TEST_NODE_BIN")


@pytest.fixture(scope="session")
def anvil():
    """One anvil for the session; tests deploy their own registry to stay independent."""
    with start_anvil(node_bin()) as node:
        yield node


@pytest.fixture
def anvil_factory():
    """Start private anvils (e.g. with --no-mining or another chain id) for one test."""
    bin_dir = node_bin()
    stack = []

    def make(*extra: str, chain_id: int = 31337) -> Anvil:
        cm = start_anvil(bin_dir, *extra, chain_id=chain_id)
        node = cm.__enter__()
        stack.append(cm)
        return node

    yield make
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def make_model_dir(root: Path, repo: str = "test-org/tiny-GGUF", name: str = "tiny", parts: int = 2,
                   seed: int = 0) -> Path:
    """A model directory with real split GGUF parts and a manifest (no hub needed)."""
    from ossctl.artifacts import hashing
    from ossctl.artifacts.manifest import FileEntry, build_manifest, write_manifest
    from tests.support.ggufgen import write_model

    d = Path(root)
    d.mkdir(parents=True, exist_ok=True)
    files = write_model(d, name, parts=parts, n_embd=32, n_layer=1, n_ff=64, seed=seed)
    entries = []
    for f in files:
        entries.append(FileEntry(f.name, f.stat().st_size, hashing.sha256_file(f), f.stat().st_mtime_ns))
    write_manifest(d, build_manifest(repo, "0" * 40, d, entries))
    return d


def deploy_registry(node: Anvil, key: str = DEV_KEYS[0]) -> str:
    """Deploy a fresh ModelRegistry with ``key`` through the CLI; return its address."""
    from tests.support.cli import run_cli

    r = run_cli("--json", "registry", "deploy-contract", "--yes",
                env={"OSSCTL_RPC_URL": node.url, "OSSCTL_PRIVATE_KEY": key})
    assert r.code == 0, r.err
    return r.json()["address"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A verified 2-part model directory shared by tests that only read it."""
    return make_model_dir(tmp_path_factory.mktemp("registry-model") / "tiny")


@pytest.fixture
def chain(anvil, home):
    """A fresh registry on the session anvil (owner: dev account 0) and the environment
    that points ossctl at it with the owner's key."""
    addr = deploy_registry(anvil)
    env = {"OSSCTL_RPC_URL": anvil.url, "OSSCTL_REGISTRY_ADDRESS": addr, "OSSCTL_PRIVATE_KEY": DEV_KEYS[0]}
    return anvil, addr, env
