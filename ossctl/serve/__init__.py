"""Serving: profiles, releases and their rollout on one engine or a fleet."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

Log = Callable[[str], None]  # where an operation says what it does, one line at a time


def nolog(_msg: str) -> None:
    """A :data:`Log` that says nothing."""


class CtrlC:
    """What :func:`ctrl_c_deferred` yields: ``pressed`` once a SIGINT came in its block."""

    pressed = False


@contextlib.contextmanager
def ctrl_c_deferred(say: Callable[[], None]) -> Iterator[CtrlC]:
    """Inside the block, SIGINT calls ``say`` instead of interrupting: for work that must
    not stop half-way (removing a trial container, rolling a fleet back to one version).
    The block's value says whether one came, for a caller that acts on it afterwards.
    Main thread only; elsewhere nothing changes."""
    seen = CtrlC()
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def deferred(_sig, _frame) -> None:
        seen.pressed = True
        say()

    previous = signal.signal(signal.SIGINT, deferred)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)
