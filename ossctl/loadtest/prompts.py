"""The prompt set a bench cycles through: a built-in one with five categories (factual,
code, creative, reasoning, list) or a JSONL file, one object per line:
``{"category": "code", "messages": [{"role": "user", "content": "..."}], "max_tokens": 128}``
(``max_tokens`` optional)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ossctl.errors import UsageError

CATEGORIES = ("factual", "code", "creative", "reasoning", "list")
_ROLES = {"system", "user", "assistant", "developer", "tool"}


@dataclass(frozen=True)
class Prompt:
    category: str
    messages: tuple[dict, ...]
    max_tokens: int | None = None


def _user(text: str) -> tuple[dict, ...]:
    return ({"role": "user", "content": text},)


# Two per category, interleaved so that any run of five or more requests touches each
# category (users take prompts round-robin).
_BUILTIN = [
    ("factual", "What is the capital of Australia, and why was it chosen over Sydney and Melbourne?"),
    ("code", "Write a Python function that returns the n-th Fibonacci number iteratively, with a docstring."),
    ("creative", "Write a four-line poem about a lighthouse keeper who has never seen the sea in daylight."),
    ("reasoning", "A train leaves at 09:40 and arrives at 13:05, with a 20-minute stop. How long is it moving? Explain."),
    ("list", "List seven practical tips for reducing the memory use of a large language model server."),
    ("factual", "Explain in three sentences how a GGUF file stores tensors and metadata."),
    ("code", "Write a bash one-liner that prints the ten largest files under the current directory."),
    ("creative", "Describe a city where it rains upwards, in one short paragraph."),
    ("reasoning", "If all bloops are razzies and some razzies are lazzies, must some bloops be lazzies? Why?"),
    ("list", "List the planets of the solar system with one fact about each."),
]


def builtin_prompts() -> list[Prompt]:
    return [Prompt(cat, _user(text)) for cat, text in _BUILTIN]


def load_prompts(path: str | Path) -> list[Prompt]:
    """Read a JSONL prompt file. Raises :class:`UsageError` naming the first bad line."""
    path = Path(path)
    hint = 'one JSON object per line: {"category": "code", "messages": [{"role": "user", "content": "..."}]}'
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"prompt file {path} does not exist", hint=hint) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read prompt file {path}: {getattr(exc, 'strerror', None) or exc}",
                         hint=hint) from None
    out: list[Prompt] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"prompt file {path} line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{where} is not JSON ({exc.msg})", hint=hint) from None
        if not isinstance(obj, dict):
            raise UsageError(f"{where} is not a JSON object", hint=hint)
        cat = obj.get("category", "default")
        msgs = obj.get("messages")
        if not isinstance(cat, str) or not cat.strip():
            raise UsageError(f"{where}: \"category\" must be a non-empty string", hint=hint)
        if (not isinstance(msgs, list) or not msgs
                or not all(isinstance(m, dict) and m.get("role") in _ROLES and isinstance(m.get("content"), str)
                           for m in msgs)):
            raise UsageError(f"{where}: \"messages\" must be a non-empty list of "
                             "{\"role\": ..., \"content\": \"...\"} objects", hint=hint)
        mt = obj.get("max_tokens")
        if mt is not None and (isinstance(mt, bool) or not isinstance(mt, int) or mt < 1):
            raise UsageError(f"{where}: \"max_tokens\" must be a positive integer", hint=hint)
        out.append(Prompt(cat.strip(), tuple(msgs), mt))
    if not out:
        raise UsageError(f"prompt file {path} has no prompts", hint=hint)
    return out
