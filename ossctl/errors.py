"""One error type for everything the user should see as a clear line.

Adapters translate SDK errors into these; ``cli.app.main`` is the only place that
catches them. Exit codes are part of the public interface (README lists them).
"""

from __future__ import annotations

# Exit codes: 1 generic, 2 usage / bad input, 3 not found, 4 integrity (hash / size
# mismatch), 5 remote service (hub, RPC, docker) unreachable or refusing, 6 conflict
# (on-chain hash differs, lock held), 7 deploy failed and was rolled back,
# 8 alert threshold crossed, 9 SLA failed, 10 `vram plan`: the profile does not fit,
# 130 interrupted.
EXIT_GENERIC = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INTEGRITY = 4
EXIT_REMOTE = 5
EXIT_CONFLICT = 6
EXIT_DEPLOY_FAILED = 7
EXIT_ALERT = 8
EXIT_SLA = 9
EXIT_NO_FIT = 10
EXIT_INTERRUPTED = 130


class OssctlError(Exception):
    """An error with a one-line message, an optional hint (the next thing to run) and an
    exit code."""

    exit_code: int = EXIT_GENERIC

    def __init__(self, message: str, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(OssctlError):
    exit_code = EXIT_USAGE


class NotFoundError(OssctlError):
    exit_code = EXIT_NOT_FOUND


class IntegrityError(OssctlError):
    exit_code = EXIT_INTEGRITY


class RemoteError(OssctlError):
    exit_code = EXIT_REMOTE


class ConflictError(OssctlError):
    exit_code = EXIT_CONFLICT


class DeployError(OssctlError):
    exit_code = EXIT_DEPLOY_FAILED


class Interrupted(OssctlError):
    """Ctrl-C, saying what was kept (partial files, the release still serving).
    Raised instead of ``KeyboardInterrupt``, which the CLI framework swallows silently."""

    exit_code = EXIT_INTERRUPTED


class TrialError(OssctlError):
    """A trial container (:mod:`ossctl.serve.trial`) failed its gate or its bench; it was
    removed, nothing else changed."""

    exit_code = EXIT_DEPLOY_FAILED
