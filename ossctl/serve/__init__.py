"""Serving: profiles, releases and their rollout on one engine or a fleet."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

Log = Callable[[str], None]  # where an operation says what it does, one line at a time


def nolog(_msg: str) -> None:
    """A :data:`Log` that says nothing."""


@contextlib.contextmanager
def ctrl_c_deferred(say: Callable[[], None]) -> Iterator[None]:
    """Inside the block, SIGINT calls ``say`` instead of interrupting: for work that must
    not stop half-way (removing a trial container, rolling a fleet back to one version).
    Main thread only; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda _sig, _frame: say())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
