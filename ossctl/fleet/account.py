"""What happened to each host of a fleet rollout: a state with its allowed transitions,
and the row ``deploy`` / ``rollback`` report for it (``--json``: ``hosts``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class HostState(str, Enum):
    """A host's state in one fleet deploy or rollback (the value is what ``--json`` says)."""

    UNCHANGED = "unchanged"              # not reached (yet)
    UPDATED = "updated"                  # its new release serves behind the front door
    FAILED = "failed"                    # its step failed; its previous release serves
    ROLLED_BACK = "rolled back"          # updated, then rolled back (or a fleet rollback's step)
    ROLLBACK_FAILED = "rollback failed"  # updated, and its rollback failed: see `error`


# a deploy: unchanged -> updated | failed; updated -> rolled back | rollback failed.
# a fleet rollback: unchanged -> rolled back | failed.
TRANSITIONS: dict[HostState, frozenset[HostState]] = {
    HostState.UNCHANGED: frozenset({HostState.UPDATED, HostState.FAILED, HostState.ROLLED_BACK}),
    HostState.UPDATED: frozenset({HostState.ROLLED_BACK, HostState.ROLLBACK_FAILED}),
    HostState.FAILED: frozenset(),
    HostState.ROLLED_BACK: frozenset(),
    HostState.ROLLBACK_FAILED: frozenset(),
}


@dataclass
class HostAccount:
    """One host's row. ``extra`` holds the keys only some rows carry (``build`` in a
    deploy's, ``source`` in a rollback's, ``error`` / ``note`` after a failure)."""

    docker_host: str
    upstream: str | None
    state: HostState = HostState.UNCHANGED
    release: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to(self, state: HostState, release: str | None = None, upstream: str | None = None, **extra: Any) -> None:
        """Move to ``state`` (a transition :data:`TRANSITIONS` allows; ValueError
        otherwise: a bug, not an operator's error), recording what goes with it."""
        if state not in TRANSITIONS[self.state]:
            raise ValueError(f"{self.docker_host}: a host cannot go from {self.state.value} to {state.value}")
        self.state = state
        if release is not None:
            self.release = release
        if upstream is not None:
            self.upstream = upstream
        self.extra.update(extra)

    @property
    def error(self) -> str | None:
        return self.extra.get("error")

    def to_dict(self) -> dict[str, Any]:
        return {"docker_host": self.docker_host, "state": self.state.value, "release": self.release,
                "upstream": self.upstream, **self.extra}


def summary(account: list[HostAccount]) -> str:
    """``host: state (error); ...`` for an error line."""
    return "; ".join(f"{a.docker_host}: {a.state.value}" + (f" ({a.error})" if a.error else "") for a in account)


@dataclass(frozen=True)
class FleetDeploy:
    """A fleet ``deploy``: each host's row, the front door and what the rollout took."""

    profile: str
    frontdoor: str
    frontdoor_host: str
    strategy: str
    hosts: list[HostAccount]
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "frontdoor": self.frontdoor, "frontdoor_host": self.frontdoor_host,
                "strategy": self.strategy, "hosts": [h.to_dict() for h in self.hosts], "wall_s": self.wall_s}


@dataclass(frozen=True)
class FleetRollback:
    """A fleet ``rollback``: each host's row."""

    profile: str
    frontdoor: str
    hosts: list[HostAccount]

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "frontdoor": self.frontdoor, "hosts": [h.to_dict() for h in self.hosts]}


@dataclass(frozen=True)
class HostReach:
    """Whether a host answered a read (``status`` / ``releases`` of a fleet)."""

    docker_host: str
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class FleetView:
    """``status`` or ``releases`` of a fleet: every host's rows in one list (each carries
    its ``docker_host``), and which hosts answered. ``unreadable`` is None for ``releases``
    (its one-engine shape has no such key either)."""

    releases: list[dict[str, Any]]
    hosts: list[HostReach]
    unreadable: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"docker_host": None, "releases": self.releases,
                **({"unreadable": self.unreadable} if self.unreadable is not None else {}),
                "hosts": [{"docker_host": h.docker_host, "ok": h.ok, "error": h.error} for h in self.hosts]}
