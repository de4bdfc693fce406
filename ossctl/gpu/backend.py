"""The small NVML interface that both backends implement, the real one in
:mod:`ossctl.gpu.nvml` and the fake in :mod:`ossctl.gpu.fake`, with the errors its
methods raise. It sits below both so that neither imports the other at import time
(``nvml.open_backend`` picks the fake; the fake raises these errors).
"""

from __future__ import annotations

from typing import Any, Protocol

from ossctl.errors import EXIT_REMOTE, OssctlError


class GpuUnavailable(OssctlError):
    """No NVIDIA driver, no NVML library, or no GPU."""

    exit_code = EXIT_REMOTE


class NotSupported(Exception):
    """The GPU does not support this query (rendered as n/a)."""


class NvmlError(Exception):
    """A query failed (GPU lost, permission, ...): the GPU is marked, others go on."""


class NvmlBackend(Protocol):
    """The small slice of NVML ossctl uses. Handles are opaque. Every per-device method
    may raise :class:`NotSupported` or :class:`NvmlError`."""

    def init(self) -> None: ...  # raises GpuUnavailable
    def shutdown(self) -> None: ...
    def driver_version(self) -> str | None: ...
    def device_count(self) -> int: ...
    def handle(self, index: int) -> Any: ...
    def name(self, h: Any) -> str: ...
    def uuid(self, h: Any) -> str: ...
    def memory(self, h: Any) -> tuple[int, int, int]: ...  # total, used, free (bytes)
    def utilization(self, h: Any) -> tuple[int, int]: ...  # gpu %, memory %
    def temperature(self, h: Any) -> int: ...  # °C
    def power(self, h: Any) -> float: ...  # W
    def power_limit(self, h: Any) -> float: ...  # W
    def processes(self, h: Any) -> list[tuple[int, int | None, str]]: ...  # pid, bytes, "compute"|"graphics"
