"""Checking that an ``ossctl ...`` written in the source, the README or a hint is a real
command with real options: the Click tree the CLI builds is walked token by token."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def spans() -> list[tuple[str, str]]:
    out = []
    files = sorted((ROOT / "ossctl").rglob("*.py")) + [ROOT / "README.md"]
    for f in files:
        for m in re.finditer(r"`(ossctl(?: [^`\n]*)?)`", f.read_text(encoding="utf-8")):
            out.append((f"{f.relative_to(ROOT)}", m.group(1)))
    return out


def tokens(text: str) -> list[str]:
    toks = []
    for t in text.split():
        t = t.strip("[]()")
        if t and t not in ("...", "…", "|"):
            toks.append(t)
    return toks


def walk(root, toks: list[str]) -> str | None:
    """None when ``toks`` (after ``ossctl``) name a real command with real options, else
    what is wrong. Arguments and option values are not checked (they are placeholders)."""
    cmd, path = root, ["ossctl"]
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.startswith("-"):
            name = t.split("=", 1)[0]
            opt = next((p for p in cmd.params if name in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])),
                       None)
            if opt is None and name not in ("-h", "--help"):
                return f"{' '.join(path)} has no option {name}"
            if opt is not None and not getattr(opt, "is_flag", False) and not getattr(opt, "count", False) \
                    and "=" not in t:
                i += 1  # its value
        elif hasattr(cmd, "commands"):
            alts = t.split("|")
            for a in alts:
                if a not in cmd.commands:
                    return f"{' '.join(path)} has no command {a!r}"
            cmd = cmd.commands[alts[0]]
            path.append(alts[0])
        i += 1
    if hasattr(cmd, "commands") and len(path) == 1 and toks:
        return None
    return None


def cli_root():
    """The Click command tree ``ossctl`` runs (what :func:`walk` walks)."""
    import typer.main

    from ossctl.cli.app import app

    return typer.main.get_command(app)
