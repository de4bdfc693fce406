"""Issue 16: the shape of the code, for a before/after note.

    python bench/code_shape.py [--root DIR] [--top 10]

Prints the longest functions under ``ossctl/`` (lines, decorators excluded, nested
functions counted on their own as well as inside their parent), then the import graph
among ``ossctl`` modules and its cycles: once over module-level imports (what runs at
import time), once with imports inside functions too (what a call can pull in). A cycle
is a strongly connected component of more than one module; each is printed with its
members.

``--root`` points at another checkout (e.g. a ``git worktree`` of an older commit).
Stdlib only.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(pkg_root: Path, path: Path) -> str:
    rel = path.relative_to(pkg_root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def functions(tree: ast.Module) -> list[tuple[int, str, int]]:
    """(lines, qualified name, first line) of every function and method."""
    out: list[tuple[int, str, int]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                out.append((child.end_lineno - child.lineno + 1, name, child.lineno))
                walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(tree, "")
    return out


def _targets(node: ast.AST, mod: str, is_pkg: bool, known: set[str]) -> list[str]:
    """The ossctl modules an import statement names (``from a import b`` counts ``a.b``
    when that is a module, else ``a``)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
            pkg = pkg[: len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    out = []
    for n in names:
        while n and n not in known:  # `import ossctl.gpu.nvml` -> the deepest module known
            n = n.rpartition(".")[0]
        if n:
            out.append(n)
    return out


def import_graph(pkg_root: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module-level edges, edges from imports inside functions) among ossctl modules.
    Imports under ``if TYPE_CHECKING:`` are left out (they never run)."""
    files = {module_name(pkg_root, p): p for p in sorted(pkg_root.rglob("*.py"))}
    known = set(files)
    top: dict[str, set[str]] = {m: set() for m in files}
    inner: dict[str, set[str]] = {m: set() for m in files}

    def visit(node: ast.AST, mod: str, is_pkg: bool, in_func: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for t in _targets(child, mod, is_pkg, known):
                    if t != mod:
                        (inner if in_func else top)[mod].add(t)
            visit(child, mod, is_pkg,
                  in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    for mod, path in files.items():
        visit(ast.parse(path.read_text(encoding="utf-8")), mod, path.name == "__init__.py", False)
    return top, inner


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return sorted(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout holding ossctl/")
    ap.add_argument("--top", type=int, default=10)
    a = ap.parse_args()
    pkg = a.root / "ossctl"
    rows = []
    for p in sorted(pkg.rglob("*.py")):
        for lines, name, line in functions(ast.parse(p.read_text(encoding="utf-8"))):
            rows.append((lines, f"{p.relative_to(a.root)}:{line}", name))
    rows.sort(key=lambda r: (-r[0], r[1]))
    print(f"longest functions ({len(rows)} in all):")
    for lines, where, name in rows[: a.top]:
        print(f"  {lines:4d}  {name:32s} {where}")
    top, inner = import_graph(pkg)
    both = {m: top[m] | inner[m] for m in top}
    n_top = sum(map(len, top.values()))
    n_inner = sum(len(inner[m] - top[m]) for m in top)
    for title, g, n in (("module-level imports", top, n_top),
                        ("module-level + function-level imports", both, n_top + n_inner)):
        cyc = cycles(g)
        print(f"\nimport cycles, {title} ({n} edges): {len(cyc)}")
        for c in cyc:
            print("  " + " <-> ".join(c))


if __name__ == "__main__":
    main()
