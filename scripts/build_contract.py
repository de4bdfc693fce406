#!/usr/bin/env python3
"""Rebuild ossctl/registry/contracts/ModelRegistry.json from ModelRegistry.sol with the
pinned solc (the npm package ``solc``, run as ``solcjs --standard-json``).

    python3 scripts/build_contract.py [--solcjs PATH] [--check]

``--solcjs`` defaults to ``$OSSCTL_TEST_NODE_BIN/solcjs``, else ``solcjs`` on PATH.
``--check`` compiles and exits 1 if the shipped artifact differs (what the test does).
The compiler settings live here (and are recorded in the artifact) so a rebuild is
byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "ossctl" / "registry" / "contracts"
SOURCE = CONTRACTS / "ModelRegistry.sol"
ARTIFACT = CONTRACTS / "ModelRegistry.json"
SOLC_VERSION = "0.8.30"  # keep in step with scripts/test.sh SOLC_VERSION and the pragma
SETTINGS = {
    "optimizer": {"enabled": True, "runs": 200},
    # cancun: deployable on every chain ossctl targets (L2s lag mainnet hardforks)
    "evmVersion": "cancun",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


def find_solcjs(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    node_bin = os.environ.get("OSSCTL_TEST_NODE_BIN")
    if node_bin and (Path(node_bin) / "solcjs").exists():
        return str(Path(node_bin) / "solcjs")
    found = shutil.which("solcjs")
    if not found:
        raise SystemExit("solcjs not found: npm install solc@%s, or pass --solcjs" % SOLC_VERSION)
    return found


def compile_artifact(solcjs: str, source: Path = SOURCE) -> dict:
    """Compile ``source`` and return the artifact dict (what ModelRegistry.json holds)."""
    text = source.read_text(encoding="utf-8")
    version = subprocess.run([solcjs, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if not version.startswith(SOLC_VERSION + "+"):
        raise SystemExit(f"solcjs is {version}, this artifact is pinned to {SOLC_VERSION}")
    std_in = {"language": "Solidity", "sources": {"ModelRegistry.sol": {"content": text}}, "settings": SETTINGS}
    proc = subprocess.run([solcjs, "--standard-json"], input=json.dumps(std_in), capture_output=True,
                          text=True, check=True)
    # solcjs may print warnings before the JSON document
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    errors = [e for e in out.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise SystemExit("solc failed:\n" + "\n".join(e.get("formattedMessage", str(e)) for e in errors))
    c = out["contracts"]["ModelRegistry.sol"]["ModelRegistry"]
    return {
        "contractName": "ModelRegistry",
        "sourceName": "ModelRegistry.sol",
        "sourceSha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "compiler": {"name": "solc", "version": version.replace(".Emscripten.clang", ""), "settings": {
            k: v for k, v in SETTINGS.items() if k != "outputSelection"}},
        "abi": c["abi"],
        "bytecode": "0x" + c["evm"]["bytecode"]["object"],
        "deployedBytecode": "0x" + c["evm"]["deployedBytecode"]["object"],
    }


def render(artifact: dict) -> str:
    return json.dumps(artifact, indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--solcjs")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    artifact = render(compile_artifact(find_solcjs(args.solcjs)))
    if args.check:
        same = ARTIFACT.exists() and ARTIFACT.read_text(encoding="utf-8") == artifact
        print("artifact is current" if same else f"{ARTIFACT} is stale: run scripts/build_contract.py")
        return 0 if same else 1
    tmp = ARTIFACT.with_suffix(".json.tmp")
    tmp.write_text(artifact, encoding="utf-8")
    os.replace(tmp, ARTIFACT)
    print(f"wrote {ARTIFACT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
