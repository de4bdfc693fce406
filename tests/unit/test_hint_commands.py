"""Every ``ossctl ...`` a user is told to run is a real command with real options: the
ones written in backticks in the source and README, and every command a hint names,
backticked or not."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.support.commands import cli_root, spans, tokens, walk

ROOT = Path(__file__).resolve().parents[2]


def test_every_ossctl_command_written_in_source_and_readme_exists():
    root = cli_root()
    written = spans()
    assert len(written) > 30  # the scan finds them
    bad = []
    for where, span in written:
        alts = [a.strip() for a in span.split(" | ")]
        first = tokens(alts[0])[1:]
        problem = walk(root, first)
        # `ossctl profile list | show NAME`: later alternatives continue from the group
        group = [t for t in first if not t.startswith("-")][:1]
        for alt in alts[1:]:
            toks = tokens(alt)
            if toks and toks[0].split("|")[0] not in getattr(root.commands.get(group[0] if group else ""),
                                                             "commands", {}):
                break  # a shell pipe (`ossctl vram watch | head -3`), not alternatives
            problem = problem or walk(root, group + toks)
        if problem:
            bad.append(f"{where}: `{span}`: {problem}")
    assert bad == []


def test_the_walker_catches_the_old_wrong_hints():
    root = cli_root()
    for wrong in ("serve status", "serve deploy prod", "registry register MODEL", "registry activate",
                  "hash --include X"):
        assert walk(root, tokens(wrong)) is not None, wrong
    assert walk(root, tokens("--json registry status MODEL --rpc-url URL")) is None


# --- 16. every command a hint names exists, backticked or not --------------------------

def _string(node) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):  # placeholders become a word
        return "".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values)
    if isinstance(node, ast.BinOp):
        parts = [_string(node.left), _string(node.right)]
        return "".join(p for p in parts if p) or None
    if isinstance(node, ast.IfExp):
        return f"{_string(node.body) or ''} ; {_string(node.orelse) or ''}"
    return None


def _hint_texts() -> list[tuple[str, str]]:
    """Every hint written in the source: ``hint=`` arguments and variables named ``*hint*``."""
    out = []
    for f in sorted((ROOT / "ossctl").rglob("*.py")):
        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            values = []
            if isinstance(n, ast.Call):
                values += [k.value for k in n.keywords if k.arg == "hint"]
            elif isinstance(n, ast.Assign):
                if any(isinstance(t, ast.Name) and "hint" in t.id.lower() for t in n.targets):
                    values.append(n.value)
            for v in values:
                text = _string(v)
                if text:
                    out.append((str(f.relative_to(ROOT)), text))
    return out


# prose that names the tool, not a command ("ossctl is older than ...")
_PROSE = {"is", "keeps", "start", "itself", "will", "can", "does", "writes", "X"}


def _bare_commands(text: str) -> list[str]:
    """``ossctl ...`` spans written without backticks, up to the end of the clause."""
    plain = re.sub(r"`[^`]*`", " ", text)
    return [m.group(0) for m in re.finditer(r"\bossctl(?: [^;,.()\n]*)?", plain)
            if len(m.group(0).split()) > 1 and m.group(0).split()[1] not in _PROSE]


def test_every_command_named_in_a_hint_exists_backticked_or_not():
    root = cli_root()
    hints = _hint_texts()
    assert len(hints) > 150  # the scan finds them
    bad = []
    for where, text in hints:
        spans = re.findall(r"`(ossctl(?: [^`\n]*)?)`", text) + _bare_commands(text)
        for span in spans:
            problem = walk(root, tokens(span.split(" | ")[0])[1:])
            if problem:
                bad.append(f"{where}: {span!r}: {problem}")
    assert bad == []


def test_the_bare_scan_catches_the_old_bench_hint():
    root = cli_root()
    old = "check the URL and that the server is running (ossctl serve status)"
    (span,) = _bare_commands(old)
    assert walk(root, tokens(span)[1:]) == "ossctl has no command 'serve'"
