"""The shipped artifact is what the pinned solc makes of the shipped source, and the
contract agrees with ossctl on the model id."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import require_env

ROOT = Path(__file__).resolve().parents[2]


def _build_module():
    spec = importlib.util.spec_from_file_location("build_contract", ROOT / "scripts" / "build_contract.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_artifact_matches_a_fresh_compile():
    node_bin = require_env("OSSCTL_TEST_NODE_BIN")
    build = _build_module()
    fresh = build.compile_artifact(str(Path(node_bin) / "solcjs"))
    shipped = json.loads(build.ARTIFACT.read_text(encoding="utf-8"))
    assert fresh["sourceSha256"] == shipped["sourceSha256"], "ModelRegistry.sol changed: run scripts/build_contract.py"
    assert fresh["abi"] == shipped["abi"]
    assert fresh["bytecode"] == shipped["bytecode"]
    assert fresh["deployedBytecode"] == shipped["deployedBytecode"]
    assert build.render(fresh) == build.ARTIFACT.read_text(encoding="utf-8")


@pytest.mark.anvil
def test_contract_model_id_agrees_with_manifest(chain, tiny_model):
    from ossctl.artifacts.manifest import read_manifest
    from ossctl.artifacts import hashing
    from ossctl.registry import rpc

    node, addr, _ = chain
    m = read_manifest(tiny_model)
    conn = rpc.connect(node.url, addr)
    for repo, name in [(m.repo, m.first_file), ("ggml-org/gpt-oss-120b-GGUF", "gpt-oss-120b-mxfp4-00001-of-00003.gguf"),
                       ("ünï/cödé", "weights.gguf")]:
        (onchain,) = conn.call("getModelId", [repo, name])
        assert "0x" + bytes(onchain).hex() == hashing.model_id(repo, name)
    (onchain,) = conn.call("getModelId", [m.repo, m.first_file])
    assert "0x" + bytes(onchain).hex() == m.model_id
