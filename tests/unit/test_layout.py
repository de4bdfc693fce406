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
