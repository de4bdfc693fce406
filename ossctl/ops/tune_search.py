"""The search of ``ossctl tune``, pure: the space (``--space parallel=1,4,8 ubatch=512,2048``)
and the walk through it.

The walk is **coordinate descent**: start at the profile's own point, try every value of
the first knob with the others held, move to the best, then the next knob, and so on;
pass over the knobs again while a pass moved; points already scored are never scored
again. On a space where each knob's best value does not flip with the others (the
llama-server knobs on one GPU: parallel, ubatch, flash attention, KV cache type) it ends
at the best point of the full grid after a fraction of it (the unit tests show it on
synthetic score functions, the issue's measured table among them). :func:`grid` scores
every point, for comparison.

``score(point)`` returns any comparable value (larger is better; tune uses ``(meets the
SLA, tokens/s)``) or None when the point is skipped without a trial (the VRAM plan says
it does not fit, the profile rules refuse it): a skipped point costs nothing and never
becomes the best. ``stop()`` (checked before each scored point) and ``max_evals`` (points
scored, skipped ones not counted) bound the walk.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ossctl.errors import UsageError

# knob -> value kind; the order is the order the descent walks them (the ones that move
# throughput most first)
KNOBS: dict[str, str] = {
    "parallel": "int", "ubatch": "int", "batch": "int", "flash_attn": "flash", "cache_type": "cache",
    "cache_type_k": "cache", "cache_type_v": "cache", "n_cpu_moe": "int", "threads": "int",
}
FLASH = ("on", "off", "auto")
CACHE = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
_HINT = ("write --space KNOB=V1,V2 ... (several knobs separated by spaces or repeated --space), "
         "e.g. --space parallel=1,4,8,16 ubatch=512,2048; knobs: " + ", ".join(KNOBS))

Point = dict[str, Any]


def _value(knob: str, text: str, spec: str) -> Any:
    kind = KNOBS[knob]
    t = text.strip()
    if kind == "int":
        if not t.isdigit() or (int(t) < 1 and knob not in ("n_cpu_moe", "threads")) or int(t) > 1 << 20:
            raise UsageError(f"--space {spec!r}: {knob} takes whole numbers"
                             f"{' from 0' if knob in ('n_cpu_moe', 'threads') else ' from 1'}, got {t!r}", hint=_HINT)
        return int(t)
    choices = FLASH if kind == "flash" else CACHE
    if t not in choices:
        raise UsageError(f"--space {spec!r}: {knob} takes {', '.join(choices)}, got {t!r}", hint=_HINT)
    return t


def parse_space(specs: list[str]) -> dict[str, tuple[Any, ...]]:
    """``["parallel=1,4,8 ubatch=512,2048"]`` (or one knob per item) → ``{"parallel": (1, 4,
    8), "ubatch": (512, 2048)}``, values in the order given, repeats dropped. Raises
    :class:`UsageError` (one line naming the bad part) for an unknown knob, a malformed
    item, a value of the wrong kind, a knob named twice, ``cache_type`` together with
    ``cache_type_k`` / ``cache_type_v``, or nothing at all."""
    import difflib

    out: dict[str, tuple[Any, ...]] = {}
    items = [p for s in specs for p in s.replace(";", " ").split()]
    if not items:
        raise UsageError("--space is empty", hint=_HINT)
    for item in items:
        knob, eq, values = item.partition("=")
        knob = knob.strip()
        if not eq or not knob or not values.strip(","):
            raise UsageError(f"--space {item!r} is malformed: it takes KNOB=V1,V2,...", hint=_HINT)
        if knob not in KNOBS:
            close = difflib.get_close_matches(knob, KNOBS, n=1, cutoff=0.6)
            raise UsageError(f"--space {item!r}: unknown knob {knob!r}" + (f" (did you mean {close[0]!r}?)" if close
                                                                           else ""), hint=_HINT)
        if knob in out:
            raise UsageError(f"--space names {knob} twice", hint=_HINT)
        vals = [_value(knob, v, item) for v in values.split(",") if v.strip()]
        out[knob] = tuple(dict.fromkeys(vals))
    if "cache_type" in out and ("cache_type_k" in out or "cache_type_v" in out):
        raise UsageError("--space: cache_type sets both KV cache types; drop cache_type_k / cache_type_v",
                         hint=_HINT)
    return out


def key(point: Mapping[str, Any]) -> tuple:
    """A hashable identity of a point (its knob values, order-free)."""
    return tuple(sorted(point.items()))


@dataclass
class Search:
    """What a walk did: ``scored`` every point scored or skipped, in order, with its
    score (None: skipped); ``best`` / ``best_score`` (None when no point was scored);
    ``stopped``: ``"max_evals"`` or ``"stop"`` when a bound ended it, else None;
    ``method``: ``"coordinate-descent"`` or ``"grid"``."""

    method: str
    scored: list[tuple[Point, Any]] = field(default_factory=list)
    best: Point | None = None
    best_score: Any = None
    stopped: str | None = None

    @property
    def evals(self) -> int:
        return sum(1 for _p, s in self.scored if s is not None)


class _Stop(Exception):
    pass


class _Scorer:
    def __init__(self, search: Search, score: Callable[[Point], Any], max_evals: int | None,
                 stop: Callable[[], bool]):
        self.search, self.score, self.max_evals, self.stop = search, score, max_evals, stop
        self.memo: dict[tuple, Any] = {}

    def __call__(self, point: Point) -> Any:
        k = key(point)
        if k in self.memo:
            return self.memo[k]
        if self.max_evals is not None and self.search.evals >= self.max_evals:
            self.search.stopped = "max_evals"
            raise _Stop
        if self.stop():
            self.search.stopped = "stop"
            raise _Stop
        s = self.score(dict(point))
        self.memo[k] = s
        self.search.scored.append((dict(point), s))
        if s is not None and (self.search.best_score is None or s > self.search.best_score):
            self.search.best, self.search.best_score = dict(point), s
        return s


def _better(a: Any, b: Any) -> bool:
    return a is not None and (b is None or a > b)


def _repair(space: Mapping[str, tuple[Any, ...]], cur: Point, p: Point, moved: str,
            fits: Callable[[Point], bool]) -> Point | None:
    """A point that does not fit (``p``, ``cur`` with ``moved`` changed), made to fit by
    changing one other knob as little as it can (the knobs in order, the values nearest
    to ``cur``'s first): None when no single change does."""
    for knob, values in space.items():
        if knob == moved:
            continue
        here = values.index(cur[knob]) if cur[knob] in values else 0
        for w in sorted(values, key=lambda v: (abs(values.index(v) - here), values.index(v))):
            if w != cur[knob] and fits({**p, knob: w}):
                return {**p, knob: w}
    return None


def coordinate_descent(space: Mapping[str, tuple[Any, ...]], start: Mapping[str, Any],
                       score: Callable[[Point], Any], *, max_evals: int | None = None,
                       stop: Callable[[], bool] = lambda: False, max_passes: int = 4,
                       fits: Callable[[Point], bool] | None = None) -> Search:
    """See the module docstring. ``start`` gives every knob of ``space`` a value (it
    need not be among the knob's values: the profile's own point is always scored
    first). At most ``max_passes`` passes over the knobs.

    ``fits(point)``: whether a point fits at all (free to ask: the VRAM plan). When a
    knob's value does not fit with the others held, the descent scores the nearest point
    that fits by changing one other knob (a larger ``parallel`` with a smaller ``ubatch``):
    the best points of a GPU lie on its memory's edge, where plain coordinate descent
    would stop short."""
    search = Search("coordinate-descent")
    ev = _Scorer(search, score, max_evals, stop)
    cur = {k: start[k] for k in space}
    try:
        cur_s = ev(cur)
        for _ in range(max_passes):
            moved = False
            for knob, values in space.items():
                best_p, best_s = cur, cur_s
                for v in values:
                    if v == cur[knob]:
                        continue
                    p = {**cur, knob: v}
                    s = ev(p)
                    if s is None and fits is not None and not fits(p):
                        fixed = _repair(space, cur, p, knob, fits)
                        if fixed is not None:
                            p, s = fixed, ev(fixed)
                    if _better(s, best_s):
                        best_p, best_s = p, s
                if best_p is not cur:
                    cur, cur_s, moved = best_p, best_s, True
            if not moved:
                break
    except _Stop:
        pass
    return search


def grid(space: Mapping[str, tuple[Any, ...]], score: Callable[[Point], Any], *, max_evals: int | None = None,
         stop: Callable[[], bool] = lambda: False) -> Search:
    """Score every point of the space (the product of the knobs' values), in order."""
    search = Search("grid")
    ev = _Scorer(search, score, max_evals, stop)
    knobs = list(space)
    try:
        for combo in itertools.product(*(space[k] for k in knobs)):
            ev(dict(zip(knobs, combo)))
    except _Stop:
        pass
    return search


def grid_size(space: Mapping[str, tuple[Any, ...]]) -> int:
    n = 1
    for values in space.values():
        n *= len(values)
    return n
