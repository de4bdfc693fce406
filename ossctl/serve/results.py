"""What the one-engine commands return, as types (``--json`` is their :meth:`to_dict`):
a deploy or rollback returns its :class:`~ossctl.serve.releases.Release`; these are the
others. Rows of ``status`` / ``releases`` stay dicts (tests/unit/test_json_shapes.py and
tests/integration/test_deploy.py pin their keys)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

@dataclass(frozen=True)
class DryRun:
    """``deploy --dry-run``: what would run, touching nothing."""

    docker_host: str
    release: str
    profile: str
    strategy: str
    endpoint: str
    spec: dict[str, Any]
    docker_run: str
    flags: dict[str, Any]
    dry_run: bool = True

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {"dry_run": d.pop("dry_run"), **d}


@dataclass(frozen=True)
class EngineStatus:
    """``status`` of one engine: one row per profile with a current release."""

    docker_host: str
    releases: list[dict[str, Any]]
    unreadable: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"docker_host": self.docker_host, "releases": self.releases, "unreadable": self.unreadable}


@dataclass(frozen=True)
class EngineHistory:
    """``releases`` of one engine, newest first."""

    docker_host: str
    releases: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"docker_host": self.docker_host, "releases": self.releases}
