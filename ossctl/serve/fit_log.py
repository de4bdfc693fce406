"""PURE: what llama.cpp's ``--fit`` chose, read from a llama-server log (issue 23).

With ``fit = true`` a profile leaves ``-ngl`` and the MoE expert placement to llama.cpp,
which may shrink the context and move experts to the CPU so that a margin (1 GiB by
default) stays free per GPU. What it decided is only in the server's log, and only at
verbosity 4 (``LOG_TRC`` in ``common/fit.cpp``; ossctl passes ``-lv 4`` with ``fit =
true``). The lines read here are those of build b11312 (``common/fit.cpp``,
``src/llama-context.cpp``, ``src/llama-model.cpp``)::

    common_fit_params: successfully fit params to free device memory
    common_fit_params: failed to fit params to free device memory: n_gpu_layers already set by user to 99, abort
    common_params_fit_impl: context size reduced from 131072 to 32768 -> need 4608 MiB less memory in total
    common_params_fit_impl: with only dense weights in device memory there is a total surplus of 50000 MiB
    common_params_fit_impl:   - CUDA0 (NVIDIA H200): 37 layers (12 overflowing), 142000 MiB used,   1024 MiB free
    common_params_fit_impl: will leave 80000 >= 1024 MiB of free device memory, no changes needed
    llama_context: n_ctx                 = 32768
    load_tensors: offloaded 37/37 layers to GPU

A line prefix (``0.00.004.878 I ``, a container log's timestamp) is ignored.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

_OK = re.compile(r"common_fit_params: successfully fit params to free device memory")
_FAIL = re.compile(r"common_fit_params: (?:failed to fit params to free device memory|"
                   r"encountered an error while trying to fit params to free device memory): (.*)$")
_NO_CHANGE = re.compile(r"common_params_fit_impl: (?:will leave -?\d+ >= -?\d+ MiB of (?:free device|system) memory|"
                        r"targets for free memory can be met on all devices), no changes needed")
_CTX = re.compile(r"common_params_fit_impl: context size reduced from (\d+) to (\d+) -> need (-?\d+) MiB less")
_DENSE = re.compile(r"common_params_fit_impl: with only dense weights in device memory there is")
_DEV = re.compile(r"common_params_fit_impl:\s+- (.+?):\s+(\d+) layers(?: \(\s*(\d+) overflowing\))?,\s+(-?\d+) MiB used,"
                  r"\s+(-?\d+) MiB free")
_NCTX = re.compile(r"llama_context: n_ctx\s+= (\d+)")
_OFFLOAD = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")


@dataclass
class FitChoice:
    """``status``: ``changed`` (fit moved something), ``unchanged`` (it found nothing to
    do), ``failed`` (it gave up: ``reason``; the argv's settings stand), ``not-seen`` (no
    fit line in the log: fit off, or a log below verbosity 4). ``ctx_from``/``ctx_to``:
    the context it shrank (tokens); ``devices``: per device the layers it placed there,
    how many of them overflow to the CPU (MoE experts), MiB used and left free;
    ``experts_to_cpu``: it placed MoE expert tensors in system memory; ``n_ctx``,
    ``offloaded`` / ``layers``: what the model load then reported."""

    status: str = "not-seen"
    reason: str | None = None
    ctx_from: int | None = None
    ctx_to: int | None = None
    experts_to_cpu: bool = False
    devices: list[dict[str, Any]] = field(default_factory=list)
    n_ctx: int | None = None
    offloaded: int | None = None
    layers: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for the deploy log."""
        if self.status == "not-seen":
            return "llama.cpp's fit: no decision in the server log"
        if self.status == "failed":
            return f"llama.cpp's fit gave up ({self.reason}); the argv's settings stand"
        parts = []
        if self.ctx_to is not None:
            parts.append(f"context {self.ctx_from} -> {self.ctx_to}")
        if self.experts_to_cpu or any(d["overflowing"] for d in self.devices):
            parts.append("MoE experts partly on the CPU")
        for d in self.devices:
            parts.append(f"{d['device'].split(' ')[0]}: {d['layers']} layers"
                         + (f" ({d['overflowing']} overflowing)" if d["overflowing"] else "")
                         + f", {d['used_mib']} MiB used, {d['free_mib']} MiB free")
        if self.offloaded is not None:
            parts.append(f"offloaded {self.offloaded}/{self.layers} layers")
        if self.status == "unchanged":
            return "llama.cpp's fit changed nothing" + (f" ({'; '.join(parts)})" if parts else "")
        return "llama.cpp's fit changed the placement: " + "; ".join(parts)


def parse_fit_log(text: str) -> FitChoice:
    """What ``--fit`` chose, from llama-server's log ``text`` (see the module docstring)."""
    c = FitChoice()
    moved = False
    for line in text.splitlines():
        if m := _FAIL.search(line):
            c.status, c.reason = "failed", m.group(1).strip()
        elif _OK.search(line):
            if c.status != "failed":
                c.status = "changed" if moved else "unchanged"
        elif _NO_CHANGE.search(line):
            c.status = "unchanged"
        elif m := _CTX.search(line):
            c.ctx_from, c.ctx_to = int(m.group(1)), int(m.group(2))
            moved = True
        elif _DENSE.search(line):
            moved = True
        elif m := _DEV.search(line):
            name = m.group(1).strip()
            dev = {"device": name, "layers": int(m.group(2)), "overflowing": int(m.group(3) or 0),
                   "used_mib": int(m.group(4)), "free_mib": int(m.group(5))}
            c.devices = [d for d in c.devices if d["device"] != name] + [dev]  # the last figures win
            c.experts_to_cpu = c.experts_to_cpu or dev["overflowing"] > 0
            moved = True
        elif m := _NCTX.search(line):
            c.n_ctx = int(m.group(1))
        elif m := _OFFLOAD.search(line):
            c.offloaded, c.layers = int(m.group(1)), int(m.group(2))
    if c.status == "unchanged" and moved:
        c.status = "changed"
    return c
