"""Typer (>= 0.29) checks every option value with a pydantic TypeAdapter, built on the
first value it sees: the first command run with any non-flag option imports pydantic
(0.07-0.11 s here, a third of ``ossctl status``), even when the value is already what the
option wants (a ``str`` for a ``str`` option, Click's ``int`` for ``-v``, ``None`` for an
option not given). :func:`install` lets those values through as they are and leaves every
other value to Typer's own coercion, made when first needed (same result, same errors).
Measured with ``python -X importtime -m ossctl status`` (bench/status_latency.py).

It wraps a private Typer function; when a Typer release no longer has it, nothing is
changed and everything still works, only slower.
"""

from __future__ import annotations

from typing import Any


class _AsIsFirst:
    """A Typer runtime parameter: values already of the plain type the option wants pass
    as they are; anything else goes to Typer's own (pydantic) coercion."""

    __slots__ = ("_descriptor", "_build", "_real")

    def __init__(self, descriptor: Any, build):
        self._descriptor, self._build, self._real = descriptor, build, None

    def _plain(self, value: Any) -> tuple[bool, Any]:
        d = self._descriptor
        info = d.parameter_info
        ann = d.annotation
        if d.file_annotation is not None or getattr(info, "parser", None) is not None:
            return False, None
        if ann is str and type(value) is str:
            return True, value
        if ann in (int, float) and all(getattr(info, k, None) in (None, False) for k in ("min", "max", "clamp")):
            if type(value) is ann:
                return True, value
            if ann is float and type(value) is int:  # a default written 600 for a float option
                return True, float(value)
        return False, None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        if value is None and not (param.multiple or param.nargs == -1):
            return None  # as Typer's RuntimeParam.coerce
        if not (param.multiple or param.nargs != 1):
            plain, out = self._plain(value)
            if plain:
                return out
        if self._real is None:
            self._real = self._build(self._descriptor)
        return self._real.coerce(value, param=param, ctx=ctx)


def install() -> bool:
    """Put :class:`_AsIsFirst` in front of Typer's coercion; False when this Typer has no
    such hook (nothing is changed then)."""
    try:
        import typer.core as core
    except ImportError:  # pragma: no cover - typer is a dependency
        return False
    build = getattr(core, "build_runtime_param", None)
    if build is None or not hasattr(getattr(core, "_TyperParameter", None), "get_runtime_param"):
        return False
    if getattr(build, "_ossctl", False):
        return True

    def build_runtime_param(descriptor):
        return _AsIsFirst(descriptor, build)

    build_runtime_param._ossctl = True  # type: ignore[attr-defined]
    core.build_runtime_param = build_runtime_param
    return True
