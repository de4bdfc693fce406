"""PURE: what a llama-server build accepts, and how each profile intent is spelled for it.

llama-server's flags change between builds (``-fa`` became ``-fa on|off|auto``, ``--jinja``
gained ``--no-jinja``, a native ``--reasoning-effort`` replaced the chat-template-kwargs
form). Rather than trusting a build number, ossctl reads the image's ``llama-server
--help`` (doctor and deploy both run it) and picks, per intent, the first spelling in
:data:`INTENTS` whose flags that help lists. The help text is an input here; running the
image is the caller's job.

:func:`plan` returns one :class:`Choice` per intent the profile uses: the arguments and a
sentence saying why that spelling was chosen. A profile key no spelling of this build can
honour is a :class:`UsageError` before anything starts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ossctl.catalog import REASONING_EFFORTS  # noqa: F401 - profiles validate against it here
from ossctl.errors import UsageError

# ------------------------------------------------------------------ reading a build

_BUILD_RES = (re.compile(r"version:\s*(\d+)\s*\(", re.I), re.compile(r"\(build\s+(\d+)", re.I),
              re.compile(r"\bb(\d{3,})\b"))


def parse_build(version_output: str) -> int | None:
    """The llama.cpp build number from ``llama-server --version`` output:
    ``version: 6100 (abc1234)`` or ``version: 0.5.0-dev (build 1, commit ...)``."""
    for rx in _BUILD_RES:
        m = rx.search(version_output)
        if m:
            return int(m.group(1))
    return None


def parse_pin(pin: str) -> int | None:
    """``"b6100"`` or ``"6100"`` → 6100; None when it is not a build tag."""
    m = re.fullmatch(r"b?(\d+)", (pin or "").strip())
    return int(m.group(1)) if m else None


def parse_help_flags(help_text: str) -> dict[str, bool]:
    """Flags listed by ``llama-server --help`` → whether each takes a value."""
    flags: dict[str, bool] = {}
    for line in help_text.splitlines():
        s = line.strip()
        if not s.startswith("-"):
            continue
        # "-m,    --model FNAME      description": join the aliases, then cut at the gap
        column = re.split(r"\s{2,}", re.sub(r",\s+", ", ", s), maxsplit=1)[0]
        names, takes_value = [], False
        for piece in column.split(","):
            toks = piece.split()
            if toks and toks[0].startswith("-") and not re.fullmatch(r"-\d.*", toks[0]):
                names.append(toks[0])
                takes_value = takes_value or len(toks) > 1
        for n in names:
            flags[n] = takes_value
    return flags


def check_flags(argv: list[str], known: dict[str, bool]) -> list[str]:
    """Problems with ``argv`` against a build's flags: unknown flags, values given to
    flags that take none."""
    problems = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok.startswith("-") and not re.fullmatch(r"-\d+(\.\d+)?", tok):
            flag = tok.split("=", 1)[0]
            has_value = "=" in tok or (i + 1 < len(argv) and not (argv[i + 1].startswith("-")
                                                                     and not re.fullmatch(r"-\d+(\.\d+)?", argv[i + 1])))
            if flag not in known:
                problems.append(f"{flag} is unknown to this build")
            elif has_value and not known[flag] and "=" not in tok:
                problems.append(f"{flag} takes no value in this build (got {argv[i + 1]!r})")
            if has_value and "=" not in tok and known.get(flag, True):
                i += 1
        i += 1
    return problems


# ------------------------------------------------------------------ the intent table

REASONING_FORMATS = ("auto", "none", "deepseek", "deepseek-legacy")


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class Spelling:
    """One way to say an intent. ``needs``: (flag, takes_value) pairs the build's --help
    must list (takes_value None = either); ``builds``: which builds spell it so (shown in
    the "why"); ``args``: the profile value → arguments."""

    needs: tuple[tuple[str, bool | None], ...]
    builds: str
    args: Callable[[Any], list[str]]

    def fits(self, known: dict[str, bool]) -> bool:
        return all(f in known and (tv is None or known[f] == tv) for f, tv in self.needs)


def _fa_switch(v: str) -> list[str]:
    # the old switch can only turn it on; off and auto were that build's default (off)
    return ["-fa"] if v == "on" else []


def _no_fit(v: bool) -> list[str]:
    # a build without --fit adjusts nothing: "off" is what it does anyway; "on" it cannot do
    if v:
        raise UsageError("profile key `fit` = true cannot be honoured: this llama-server build has no --fit",
                         hint="use an image whose build has --fit (b6800+), or set `fit = false`")
    return []


def _kwargs(v: str) -> list[str]:
    return ["--chat-template-kwargs", json.dumps({"reasoning_effort": v}, separators=(",", ":"))]


# intent (a profile key) → spellings, preferred first. Build ranges are where the
# spelling appeared upstream; the choice itself is made from --help, never from them.
INTENTS: dict[str, tuple[Spelling, ...]] = {
    "flash_attn": (
        Spelling((("-fa", True),), "builds since Aug 2025 (~b6300): -fa on|off|auto", lambda v: ["-fa", v]),
        Spelling((("-fa", False),), "older builds: -fa is an on-switch", _fa_switch),
    ),
    "jinja": (
        Spelling((("--jinja", False), ("--no-jinja", False)), "builds with --jinja / --no-jinja",
                 lambda v: ["--jinja" if v else "--no-jinja"]),
        Spelling((("--jinja", False),), "older builds: --jinja only, off by default",
                 lambda v: ["--jinja"] if v else []),
    ),
    # stated even when off: builds with --fit default to on, and would then move context and
    # MoE experts the profile and ossctl's VRAM plan placed (issue 23)
    "fit": (
        # on: llama.cpp logs what it chose only at verbosity 4 (LOG_TRC in common/fit.cpp),
        # and ossctl records that choice from the log (serve.fit_log)
        Spelling((("--fit", True), ("-lv", True)), "builds with --fit on|off: stated, so the profile decides the "
                 "placement (on: -lv 4, where llama.cpp logs what it chose)",
                 lambda v: ["--fit", "on", "-lv", "4"] if v else ["--fit", "off"]),
        Spelling((("--fit", True),), "builds with --fit on|off: stated, so the profile decides the placement",
                 lambda v: ["--fit", "on" if v else "off"]),
        Spelling((), "this build has no --fit: nothing adjusts the placement", _no_fit),
    ),
    "temperature": (Spelling((("--temp", True),), "all builds", lambda v: ["--temp", _num(v)]),),
    "top_p": (Spelling((("--top-p", True),), "all builds", lambda v: ["--top-p", _num(v)]),),
    "min_p": (Spelling((("--min-p", True),), "all builds", lambda v: ["--min-p", _num(v)]),),
    "top_k": (Spelling((("--top-k", True),), "all builds", lambda v: ["--top-k", _num(v)]),),
    "repeat_penalty": (Spelling((("--repeat-penalty", True),), "all builds",
                                lambda v: ["--repeat-penalty", _num(v)]),),
    "reasoning_effort": (
        Spelling((("--reasoning-effort", True),), "b10434+: native --reasoning-effort",
                 lambda v: ["--reasoning-effort", v]),
        Spelling((("--chat-template-kwargs", True),), "older builds: the chat template's reasoning_effort kwarg",
                 _kwargs),
    ),
    "reasoning_format": (Spelling((("--reasoning-format", True),), "builds with --reasoning-format",
                                  lambda v: ["--reasoning-format", v]),),
    "metrics": (
        Spelling((("--metrics", False),), "builds with --metrics: Prometheus /metrics for `ossctl metrics`",
                 lambda v: ["--metrics"] if v else []),
        Spelling((), "this build has no --metrics: llama-server's own metrics stay off", lambda v: []),
    ),
}
# argv order of the intents (flash_attn and jinja sit earlier, next to the memory flags)
SAMPLING = ("temperature", "top_p", "min_p", "top_k", "repeat_penalty", "reasoning_effort", "reasoning_format",
            "metrics")


# Every spelling (aliases included) of the llama-server flags ossctl sets from a profile key,
# flag → that key: in `extra_args` such a flag would fight the managed value (llama-server
# takes the last one) while the profile and the dry run say another. --chat-template-kwargs
# is managed only where `reasoning_effort` is set (older builds carry the level in it).
MANAGED_FLAGS: dict[str, str] = {
    **dict.fromkeys(("-m", "--model", "-mu", "--model-url", "-hf", "-hfr", "--hf-repo", "-hff", "--hf-file"), "model"),
    **dict.fromkeys(("--port",), "port"), **dict.fromkeys(("--host",), "host"),
    **dict.fromkeys(("-c", "--ctx-size"), "ctx"),
    **dict.fromkeys(("--api-key", "--api-key-file"), "api_key_file"),
    **dict.fromkeys(("-np", "--parallel"), "parallel"),
    **dict.fromkeys(("-ngl", "--gpu-layers", "--n-gpu-layers"), "n_gpu_layers"),
    **dict.fromkeys(("-b", "--batch-size"), "batch"), **dict.fromkeys(("-ub", "--ubatch-size"), "ubatch"),
    **dict.fromkeys(("-fa", "--flash-attn", "-no-fa", "--no-flash-attn"), "flash_attn"),
    **dict.fromkeys(("--jinja", "--no-jinja"), "jinja"),
    **dict.fromkeys(("--metrics",), "metrics"),
    **dict.fromkeys(("-fit", "--fit"), "fit"),
    **dict.fromkeys(("-ctk", "--cache-type-k"), "cache_type_k"),
    **dict.fromkeys(("-ctv", "--cache-type-v"), "cache_type_v"),
    **dict.fromkeys(("-ncmoe", "--n-cpu-moe"), "n_cpu_moe"),
    **dict.fromkeys(("-ts", "--tensor-split"), "tensor_split"),
    **dict.fromkeys(("-t", "--threads"), "threads"),
    **dict.fromkeys(("--temp", "--temperature"), "temperature"),
    **dict.fromkeys(("--top-p",), "top_p"), **dict.fromkeys(("--min-p",), "min_p"),
    **dict.fromkeys(("--top-k",), "top_k"), **dict.fromkeys(("--repeat-penalty",), "repeat_penalty"),
    **dict.fromkeys(("--reasoning-effort",), "reasoning_effort"),
    **dict.fromkeys(("--reasoning-format",), "reasoning_format"),
}
CONDITIONAL_FLAGS: dict[str, str] = {"--chat-template-kwargs": "reasoning_effort"}


def managed_flag(arg: str, profile: dict[str, Any]) -> str | None:
    """The profile key that sets the flag ``arg`` (``--flag`` or ``--flag=value``), or None
    when ossctl leaves that flag to ``extra_args``."""
    flag = arg.split("=", 1)[0]
    if flag in MANAGED_FLAGS:
        return MANAGED_FLAGS[flag]
    key = CONDITIONAL_FLAGS.get(flag)
    return key if key and key in profile else None


@dataclass(frozen=True)
class Choice:
    intent: str
    args: tuple[str, ...]
    why: str

    def public(self) -> dict[str, Any]:
        return {"intent": self.intent, "args": list(self.args), "why": self.why}


def plan(profile: dict[str, Any], help_text: str | None) -> dict[str, Choice]:
    """Intent → :class:`Choice` for every intent ``profile`` sets, spelled for the build
    whose ``llama-server --help`` is ``help_text`` (None: not read, so the current
    spelling, the first of each row, is assumed). Raises :class:`UsageError` when the
    build has no spelling for a key the profile sets."""
    known = parse_help_flags(help_text) if help_text else None
    out: dict[str, Choice] = {}
    for intent, spellings in INTENTS.items():
        if intent not in profile or profile[intent] is None:
            continue
        value = profile[intent]
        if known is None:
            sp = spellings[0]
            why = f"{sp.builds} (assumed: the image's --help was not read)"
        else:
            sp = next((s for s in spellings if s.fits(known)), None)
            if sp is None:
                wanted = " or ".join(dict.fromkeys(s.needs[0][0] for s in spellings))
                raise UsageError(
                    f"profile key `{intent}` = {value!r} cannot be honoured: this llama-server build has no {wanted}",
                    hint=f"use an image whose build has it (the shipped profiles pin one), or remove `{intent}` "
                         "from the profile; `ossctl doctor --profile NAME` shows the build")
            why = sp.builds if sp is spellings[0] else f"{sp.builds} (this build lacks {spellings[0].needs[0][0]})"
        out[intent] = Choice(intent, tuple(sp.args(value)), why)
    return out
