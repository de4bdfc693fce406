"""Rendering: data on stdout (a table or ``--json``); progress, hints and errors on stderr.

Progress bars are off when stderr is not a TTY or ``--json`` is set.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import typer

from typing import TYPE_CHECKING
from ossctl.units import human_size  # noqa: F401  (re-exported for commands)

# Library modules are imported inside the commands: `ossctl --help` imports this module,
# and they would cost it start-up time (python -X importtime -m ossctl --help).

if TYPE_CHECKING:  # settings (tomllib, pathlib) load only when a command needs them
    from ossctl.settings import Settings


@dataclass
class State:
    """What the global options decided; stored on the Typer context as ``obj``."""

    json: bool = False
    verbose: int = 0
    home: str | None = None
    _settings: "Settings | None" = field(default=None, repr=False)

    @property
    def settings(self) -> "Settings":
        if self._settings is None:
            from ossctl.settings import load_settings

            self._settings = load_settings(home=self.home)
            for w in self._settings.warnings:
                info(f"warning: {w}")
        return self._settings

    @property
    def bars(self) -> bool:
        return not self.json and sys.stderr.isatty()


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = State()
        ctx.find_root().obj = obj
    return obj


# whether this run printed its JSON data on stdout: an error after that (a command that
# reports every result, then fails) is not printed as a second JSON document
_json_written = False


def json_written(reset: bool = False) -> bool:
    """Whether :func:`emit` / :func:`json_line` wrote JSON on stdout in this run;
    ``reset`` starts a new run (``main`` is called many times in one test process)."""
    global _json_written
    was = _json_written
    if reset:
        _json_written = False
    return was


def emit(st: State, data: Any, human: Callable[[], str | None] | None = None) -> None:
    """Print ``data`` as JSON when ``--json`` is set, else the human rendering."""
    global _json_written
    if st.json:
        _json_written = True
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    elif human is not None:
        text = human()
        if text:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def json_line(data: Any) -> None:
    """One compact JSON object per line (streams such as ``vram watch``)."""
    global _json_written
    _json_written = True
    sys.stdout.write(json.dumps(data, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    """A progress note or hint, on stderr."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A plain aligned text table. ``align`` is one char per column, 'l' or 'r'."""
    rows = [["" if c is None else str(c) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    align = align or "l" * len(headers)

    def fmt(cells: Sequence[str]) -> str:
        out = []
        for i, c in enumerate(cells):
            out.append(c.rjust(widths[i]) if align[i] == "r" else c.ljust(widths[i]))
        return "  ".join(out).rstrip()

    return "\n".join([fmt(headers)] + [fmt(r) for r in rows])


def progress_factory(st: State):
    """Return ``make(total, desc, position)`` giving a tqdm bar on stderr, or a no-op
    object when bars are off."""

    def make(total: int | None, desc: str, position: int = 0, unit: str = "B"):
        if not st.bars:
            return _NullBar()
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, position=position, unit=unit, unit_scale=True,
                    unit_divisor=1024, leave=True, file=sys.stderr, dynamic_ncols=True)

    return make


class _NullBar:
    def update(self, n: int = 1) -> None:  # noqa: D401 - tqdm-compatible no-op
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass
