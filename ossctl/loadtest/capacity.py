"""Capacity at an SLA: the largest number of concurrent users a server serves inside it.

A pure search over ``measure(users) -> figures`` (one bench level at that many users) and
``ok(figures) -> bool`` (the SLA verdict of that level): doubling from ``start`` until a
level fails (or ``max_users`` passes), then bisection between the last passing and the
first failing level, down to one user. Bounded: at most ``max_steps`` levels and, with a
``deadline`` (seconds on ``clock``), no new level once it has passed. ``measure`` returns
None to stop the search (Ctrl-C, a server that went away): what was measured is kept.

Latency grows with users, so the verdict is taken as monotone; a noisy level that breaks
that is reported as measured (``first_fail`` is the smallest failing level seen, which may
then lie below ``users``). Used by ``ossctl bench --capacity`` and by the tuner.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_USERS = 256
DEFAULT_MAX_STEPS = 16  # 1..256 by doubling is 9 levels, bisection of 128..256 down to one user 7 more


@dataclass(frozen=True)
class Step:
    users: int
    ok: bool
    figures: Any


@dataclass(frozen=True)
class Capacity:
    """``users``: the largest level that met the SLA (None: not even ``start`` did);
    ``first_fail``: the smallest level that failed (None: none failed up to
    ``max_users``); ``steps``: every level in the order measured; ``stopped``: why the
    search ended before it had narrowed ``users`` to one (``"max_steps"``,
    ``"deadline"``, ``"measure"`` when ``measure`` said stop), None when it converged."""

    users: int | None
    first_fail: int | None
    steps: tuple[Step, ...]
    stopped: str | None

    def at(self, users: int | None) -> Any:
        """The figures measured at ``users`` (None when not measured)."""
        return next((s.figures for s in self.steps if s.users == users), None)

    @property
    def converged(self) -> bool:
        return self.stopped is None


def find_capacity(measure: Callable[[int], Any], ok: Callable[[Any], bool], *, start: int = 1,
                  max_users: int = DEFAULT_MAX_USERS, max_steps: int = DEFAULT_MAX_STEPS,
                  deadline: float | None = None, clock: Callable[[], float] = time.monotonic) -> Capacity:
    """See the module docstring. ``start`` / ``max_users``: the range searched, users
    (1 <= start <= max_users); ``max_steps``: levels at most (>= 1). Raises ValueError for
    a range or a step count that makes no sense (the callers check their options first)."""
    if not 1 <= start <= max_users or max_steps < 1:
        raise ValueError(f"capacity search over {start}..{max_users} users in {max_steps} steps")
    steps: list[Step] = []
    lo: int | None = None  # largest passing level
    hi: int | None = None  # smallest failing level

    def probe(u: int) -> str | None:
        nonlocal lo, hi
        if len(steps) >= max_steps:
            return "max_steps"
        if deadline is not None and clock() >= deadline:
            return "deadline"
        fig = measure(u)
        if fig is None:
            return "measure"
        good = bool(ok(fig))
        steps.append(Step(u, good, fig))
        if good:
            lo = u if lo is None else max(lo, u)
        else:
            hi = u if hi is None else min(hi, u)
        return None

    u = start
    while True:  # doubling
        why = probe(u)
        if why is not None:
            return Capacity(lo, hi, tuple(steps), why)
        if hi is not None:
            break
        if u >= max_users:
            return Capacity(lo, hi, tuple(steps), None)  # passes everywhere it may look
        u = min(u * 2, max_users)
    if lo is None:
        return Capacity(None, hi, tuple(steps), None)  # the first level failed already
    while hi - lo > 1:  # bisection
        why = probe((lo + hi) // 2)
        if why is not None:
            return Capacity(lo, hi, tuple(steps), why)
    return Capacity(lo, hi, tuple(steps), None)
