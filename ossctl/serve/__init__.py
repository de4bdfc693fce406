"""Serving: profiles, releases and their rollout on one engine or a fleet."""

from __future__ import annotations

from collections.abc import Callable

Log = Callable[[str], None]  # where an operation says what it does, one line at a time


def nolog(_msg: str) -> None:
    """A :data:`Log` that says nothing."""
