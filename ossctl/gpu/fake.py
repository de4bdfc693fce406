"""A fake NVML behind the same :class:`~ossctl.gpu.backend.NvmlBackend` interface as the real
adapter, for machines without a GPU (tests, benches, demos).

Select it with ``OSSCTL_FAKE_NVML=<scenario>`` (one of :data:`SCENARIOS`) or
``OSSCTL_FAKE_NVML=/path/scenario.json`` (the same shape as the dicts below).

Scenario shape::

    {"driver": "550.54.15", "init_error": null, "time": 1767225600.0, "lost_from": null,
     "gpus": [{"name", "uuid", "total", "used" | "used_seq": [...], "util": [gpu, mem],
               "temp", "power", "power_limit",
               "unsupported": ["utilization", "temperature", "power", "power_limit", "processes"],
               "fail": "message" | null, "fail_from": sample number (0-based) | null,
               "processes": [[pid, bytes | null, "compute" | "graphics"], ...]}],
     "proc": {"<pid>": {"comm": "...", "cgroup": "..."}},
     "labels": {"<64-hex container id>": {"ossctl.release": "...", "ossctl.profile": "..."}}}

``lost_from`` makes every snapshot from that sample on fail as a whole (driver gone).
``used_seq`` gives the used bytes of successive samples (the last value repeats), so a
watch can cross an alert threshold deterministically. The sample counter advances each
time :meth:`FakeNvml.device_count` is called (once per snapshot).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ossctl.errors import UsageError
from ossctl.gpu.backend import GpuUnavailable, NotSupported, NvmlError

GiB = 1024 ** 3
MiB = 1024 ** 2
_H100_TOTAL = 81_559_453_696  # what NVML reports for an 80 GB H100 SXM (79.6 GiB)
_CID = "3f4e1a2b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f"
_CID2 = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b"


def _h100(i: int, used: int, procs: list | None = None, **kw: Any) -> dict[str, Any]:
    d = {"name": "NVIDIA H100 80GB HBM3", "uuid": f"GPU-00000000-0000-0000-0000-00000000000{i}",
         "total": _H100_TOTAL, "used": used, "util": [0 if not procs else 37, 0 if not procs else 12],
         "temp": 31 + i, "power": 71.5 + i, "power_limit": 700.0, "processes": procs or []}
    d.update(kw)
    return d


_PROC = {
    "4242": {"comm": "llama-server", "cgroup": f"0::/system.slice/docker-{_CID}.scope"},
    "4343": {"comm": "llama-server", "cgroup": f"12:memory:/docker/{_CID2}\n0::/docker/{_CID2}"},
    "5151": {"comm": "python3", "cgroup": "0::/user.slice/user-1000.slice/session-2.scope"},
}
_LABELS = {
    _CID: {"ossctl.release": "prod-20260101T000000Z", "ossctl.profile": "prod"},
    _CID2: {"ossctl.release": "dev-20260101T000500Z", "ossctl.profile": "dev"},
}

SCENARIOS: dict[str, dict[str, Any]] = {
    # four 80 GB GPUs: prod on GPU 0, dev on GPU 1, a stray notebook on GPU 1, 2-3 idle
    "4x80gb": {
        "driver": "550.54.15", "time": 1767225600.0, "proc": _PROC, "labels": _LABELS,
        "gpus": [
            _h100(0, 70_116_884_480, [[4242, 69_474_697_216, "compute"]]),
            _h100(1, 15_530_000_384, [[4343, 13_421_772_800, "compute"], [5151, 1_465_909_248, "compute"]]),
            _h100(2, 566_231_040),
            _h100(3, 566_231_040),
        ],
    },
    # GPU 2 has fallen off the bus: every query fails; the others still show
    "one-failing": {
        "driver": "550.54.15", "time": 1767225600.0, "proc": _PROC, "labels": _LABELS,
        "gpus": [
            _h100(0, 70_116_884_480, [[4242, 69_474_697_216, "compute"]]),
            _h100(1, 566_231_040),
            _h100(2, 566_231_040, fail="GPU is lost"),
            _h100(3, 566_231_040),
        ],
    },
    # an older / consumer board: no utilization, temperature or power; process memory hidden
    "unsupported": {
        "driver": "535.183.01", "time": 1767225600.0, "proc": _PROC, "labels": {},
        "gpus": [
            {"name": "NVIDIA A10G", "uuid": "GPU-aaaaaaaa-0000-0000-0000-000000000000", "total": 24_146_608_128,
             "used": 1_073_741_824, "unsupported": ["utilization", "temperature", "power", "power_limit"],
             "processes": [[5151, None, "compute"]]},
        ],
    },
    "no-driver": {"init_error": "NVML Shared Library Not Found"},
    # one 97 GB-class GPU (H100 NVL, 94 GiB usable), memory climbing during a watch
    "1x97gb": {
        "driver": "550.54.15", "time": 1767225600.0, "proc": _PROC, "labels": _LABELS,
        "gpus": [{"name": "NVIDIA H100 NVL", "uuid": "GPU-11111111-0000-0000-0000-000000000000",
                  "total": 100_485_038_080, "used_seq": [566_231_040, 70_000_000_000, 90_000_000_000, 91_000_000_000,
                                                         60_000_000_000],
                  "util": [5, 1], "temp": 40, "power": 90.0, "power_limit": 400.0,
                  "processes": [[4242, 69_474_697_216, "compute"]]}],
    },
    # the whole driver goes away at sample 1 and comes back at... never
    "driver-lost": {
        "driver": "550.54.15", "time": 1767225600.0, "proc": {}, "labels": {}, "lost_from": 1,
        "gpus": [_h100(0, 566_231_040)],
    },
    # memory query starts failing at sample 1 (NVML error mid-watch)
    "fail-mid-watch": {
        "driver": "550.54.15", "time": 1767225600.0, "proc": {}, "labels": {},
        "gpus": [_h100(0, 566_231_040), _h100(1, 566_231_040, fail="Unknown Error", fail_from=1)],
    },
}


class FakeNvml:
    """A scripted NVML. Handles are GPU indexes."""

    def __init__(self, scenario: dict[str, Any]):
        self.sc = copy.deepcopy(scenario)
        self.sample = -1
        self.initialised = False

    @classmethod
    def load(cls, spec: str) -> "FakeNvml":
        """``spec`` is a scenario name or a path to a JSON file. Raises :class:`UsageError`."""
        if spec in SCENARIOS:
            return cls(SCENARIOS[spec])
        p = Path(spec)
        if p.suffix == ".json" or p.exists():
            try:
                return cls(json.loads(p.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:
                raise UsageError(f"cannot read fake NVML scenario {spec}: {exc}") from None
        raise UsageError(f"unknown fake NVML scenario {spec!r}",
                         hint="OSSCTL_FAKE_NVML takes one of " + ", ".join(SCENARIOS) + " or a .json file")

    # -- lifecycle
    def init(self) -> None:
        if self.sc.get("init_error"):
            raise GpuUnavailable(f"NVML is not available: {self.sc['init_error']}",
                                 hint="install the NVIDIA driver (nvidia-smi must work), or run on a GPU host")
        self.initialised = True

    def shutdown(self) -> None:
        self.initialised = False

    def now(self) -> float:
        return float(self.sc.get("time", 0.0)) + max(self.sample, 0)

    # -- system
    def driver_version(self) -> str | None:
        return self.sc.get("driver")

    def device_count(self) -> int:
        self.sample += 1
        lost = self.sc.get("lost_from")
        if lost is not None and self.sample >= lost:
            raise NvmlError("Driver Not Loaded")
        return len(self.sc.get("gpus", []))

    def handle(self, index: int) -> int:
        if not 0 <= index < len(self.sc.get("gpus", [])):
            raise NvmlError("Invalid Argument")
        return index

    # -- per device
    def _gpu(self, h: int, what: str) -> dict[str, Any]:
        g = self.sc["gpus"][h]
        if g.get("fail") and self.sample >= int(g.get("fail_from") or 0):
            raise NvmlError(g["fail"])
        if what in g.get("unsupported", ()):
            raise NotSupported(what)
        return g

    def name(self, h: int) -> str:
        return self._gpu(h, "name")["name"]

    def uuid(self, h: int) -> str:
        return self._gpu(h, "uuid")["uuid"]

    def memory(self, h: int) -> tuple[int, int, int]:
        g = self._gpu(h, "memory")
        seq = g.get("used_seq")
        used = seq[min(self.sample, len(seq) - 1)] if seq else g["used"]
        return g["total"], used, g["total"] - used

    def utilization(self, h: int) -> tuple[int, int]:
        u = self._gpu(h, "utilization").get("util", [0, 0])
        return int(u[0]), int(u[1])

    def temperature(self, h: int) -> int:
        return self._gpu(h, "temperature").get("temp", 30)

    def power(self, h: int) -> float:
        return float(self._gpu(h, "power").get("power", 60.0))

    def power_limit(self, h: int) -> float:
        return float(self._gpu(h, "power_limit").get("power_limit", 700.0))

    def processes(self, h: int) -> list[tuple[int, int | None, str]]:
        return [(int(p[0]), p[1], p[2]) for p in self._gpu(h, "processes").get("processes", [])]

    # -- what the host would tell about a PID and a container
    def read_proc(self, pid: int) -> tuple[str | None, str | None]:
        p = self.sc.get("proc", {}).get(str(pid))
        return (p.get("comm"), p.get("cgroup")) if p else (None, None)

    def container_labels(self, container_id: str) -> dict[str, str] | None:
        return self.sc.get("labels", {}).get(container_id)
