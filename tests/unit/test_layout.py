"""The layout rules of shared/ARCHITECTURE.md that code can check: modules use each
other's public names only, and command modules do not import the root app."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "ossctl"


def _private_uses(tree: ast.Module) -> list[str]:
    """``from ossctl.x import _y`` and ``mod._y`` where ``mod`` names an ossctl import."""
    found, mods = [], set()
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("ossctl"):
            for a in n.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    found.append(f"line {n.lineno}: from {n.module} import {a.name}")
                mods.add(a.asname or a.name)
        elif isinstance(n, ast.Import):
            mods.update((a.asname or a.name).split(".")[0] for a in n.names if a.name.startswith("ossctl"))
    for n in ast.walk(tree):
        if (isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in mods
                and n.attr.startswith("_") and not n.attr.startswith("__")):
            found.append(f"line {n.lineno}: {n.value.id}.{n.attr}")
    return found


def test_the_checker_sees_private_uses():
    tree = ast.parse("from ossctl.serve import rollout\nfrom ossctl.x import _y\nrollout._port_free(1)\n")
    assert _private_uses(tree) == ["line 2: from ossctl.x import _y", "line 3: rollout._port_free"]


def test_no_module_reaches_another_modules_private_names():
    bad = [f"{p.relative_to(ROOT)}: {use}" for p in sorted(ROOT.rglob("*.py"))
           for use in _private_uses(ast.parse(p.read_text(encoding="utf-8")))]
    assert bad == []


def test_command_modules_do_not_import_the_root_app():
    importers = sorted(p.name for p in (ROOT / "cli").glob("*.py")
                       if p.name != "app.py" and "ossctl.cli.app" in p.read_text(encoding="utf-8"))
    assert importers == []


# -- rooms and outside libraries (shared/ARCHITECTURE.md, "Layout") ----------------------

def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import in ``path``, top level and inside
    functions alike; relative imports resolved."""
    out = []
    for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(n, ast.Import):
            out += [(a.name, n.lineno) for a in n.names]
        elif isinstance(n, ast.ImportFrom) and n.module:
            out.append((n.module, n.lineno))
            # `from ossctl.serve import rollout` imports ossctl.serve.rollout
            out += [(f"{n.module}.{a.name}", n.lineno) for a in n.names if n.module.startswith("ossctl")]
    return out


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# Each outside SDK has one home; nothing else imports it.
OWNERS = {
    "docker": {"ossctl.serve.docker_runtime"},
    "web3": {"ossctl.registry.rpc"},
    "eth_account": {"ossctl.registry.rpc", "ossctl.registry.keys"},
    "huggingface_hub": {"ossctl.artifacts.hub"},
    "pynvml": {"ossctl.gpu.nvml"},
    "prometheus_client": {"ossctl.metrics.promclient"},
    "model_signing": {"ossctl.artifacts.signing"},
}

# The rooms from the top down; a module may import its own room and any room below it.
# Rooms on one line are peers that must not import each other.
RANKS = [
    ["ossctl.cli"],
    ["ossctl.doctor", "ossctl.metrics"],  # each reads the ops' results (status) for its own command
    ["ossctl.ops"],
    ["ossctl.fleet"],
    ["ossctl.serve"],
    ["ossctl.gpu", "ossctl.registry", "ossctl.loadtest"],
    ["ossctl.artifacts"],
    ["ossctl.catalog", "ossctl.settings", "ossctl.units", "ossctl.labels", "ossctl.fsutil"],
    ["ossctl.redact"],
    ["ossctl.errors"],
]


def _room(mod: str) -> tuple[int, str] | None:
    for rank, rooms in enumerate(RANKS):
        for r in rooms:
            if mod == r or mod.startswith(r + "."):
                return rank, r
    return None


def _upward(mod: str, imports: list[tuple[str, int]]) -> list[str]:
    """The imports of ``mod`` that reach a room above it, or a peer room."""
    here, bad = _room(mod), []
    for name, line in imports:
        there = _room(name) if name.startswith("ossctl.") else None
        if there is None or there[1] == here[1]:
            continue
        if there[0] < here[0] or (there[0] == here[0] and here[0] > 0):
            bad.append(f"{mod} line {line} imports {name} ({there[1]} is not below {here[1]})")
    return bad


def test_the_room_checker_sees_an_upward_import():
    assert _room("ossctl.serve.rollout") == (4, "ossctl.serve")
    assert _room("ossctl.fleet.frontdoor.caddy") == (3, "ossctl.fleet")
    assert _upward("ossctl.serve.rollout", [("ossctl.fleet.rollout", 3), ("ossctl.serve.engine", 4),
                                            ("ossctl.artifacts.manifest", 5), ("json", 6)]) == [
        "ossctl.serve.rollout line 3 imports ossctl.fleet.rollout (ossctl.fleet is not below ossctl.serve)"]
    assert _upward("ossctl.gpu.fit", [("ossctl.registry.rpc", 9)]) == [
        "ossctl.gpu.fit line 9 imports ossctl.registry.rpc (ossctl.registry is not below ossctl.gpu)"]


def test_each_outside_sdk_is_imported_by_its_one_module():
    bad = []
    for p in sorted(ROOT.rglob("*.py")):
        mod = _module(p)
        for name, line in _imports(p):
            top = name.split(".")[0]
            if top in OWNERS and mod not in OWNERS[top]:
                bad.append(f"{mod} line {line} imports {name} (only {', '.join(sorted(OWNERS[top]))} may)")
    assert bad == []


def test_no_module_imports_a_room_above_it_or_a_peer_room():
    unplaced, bad = [], []
    for p in sorted(ROOT.rglob("*.py")):
        mod = _module(p)
        if mod in ("ossctl", "ossctl.__main__"):
            continue
        if _room(mod) is None:
            unplaced.append(mod)
            continue
        bad += _upward(mod, _imports(p))
    assert unplaced == [], "place these modules in RANKS"
    assert bad == []


def test_no_two_test_files_share_a_name():
    # tests/unit and tests/integration are not packages: pytest imports each test file by its
    # basename, and a second file of the same name fails the whole collection
    tests = Path(__file__).resolve().parents[1]
    names = [p.name for p in tests.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_the_engine_read_path_imports_only_the_standard_library():
    # ossctl.serve.engine_api is what read-only commands reach the Docker engine through so
    # that they do not pay for the SDK (docker, requests, urllib3, paramiko): it stays
    # standard library only; the SDK's one importer is still docker_runtime (OWNERS above)
    import sys

    path = ROOT / "serve" / "engine_api.py"
    outside = sorted({name.split(".")[0] for name, _ in _imports(path)} - set(sys.stdlib_module_names) - {"__future__"})
    assert outside == []
