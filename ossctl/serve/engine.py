"""One Docker engine with its release ledger, and the one factory that opens it from the
settings and an optional ``--docker-host``: every command that talks to an engine starts
here, so the endpoint's precedence (flag > DOCKER_HOST > config > default socket) and its
checks are said once."""

from __future__ import annotations

from typing import Any

from ossctl import labels as L
from ossctl.serve import Log, nolog
from ossctl.serve.docker_runtime import DockerRuntime, docker_host
from ossctl.serve.releases import Book, Ledger, Release, import_legacy


class Engine:
    """One Docker engine with its ledger. Open it with :func:`open_engine`."""

    def __init__(self, settings, host: str, rt: DockerRuntime, log: Log = nolog):
        self.host = host
        self.rt = rt
        self.ledger = Ledger(rt)
        self.settings = settings
        self.log = log

    def book(self, profile: str | None = None) -> Book:
        """The ledger, with releases kept by ossctl 0.1 in ``OSSCTL_HOME`` imported once.
        Unreadable records (of ``profile``, else of any) are reported through ``log``."""
        import_legacy(self.settings, self.host, self.ledger, self.log)
        book = self.ledger.load(profile)
        for u in book.unreadable:
            if profile and u.profile != profile:
                continue
            self.log(f"warning: the engine-side record {u.profile}/{u.name} is unreadable ({u.reason}); "
                     "it is left alone, and so is its container")
        return book

    def containers(self, profile: str) -> list[dict[str, Any]]:
        return self.rt.list({L.MANAGED: "1", L.PROFILE: profile})

    def current_release(self, profile: str | None = None) -> dict[str, Any] | None:
        """The release serving now for ``profile`` — or the newest current release of any
        profile when ``profile`` is None — as a record dict; None when nothing is
        deployed."""
        book = self.ledger.load()
        recs = [r for r in (book.current(n) for n in ([profile] if profile else book.profiles())) if r]
        return max(recs, key=lambda r: r.created).to_dict() if recs else None

    def running(self, rec: Release | None) -> dict[str, Any] | None:
        """The container state of ``rec`` when it is running, else None."""
        st = self.rt.find(rec.container_id) if rec and rec.container_id else None
        return st if st and st["running"] else None


def open_engine(settings, docker_host_flag: str | None = None, log: Log = nolog, timeout: int = 60) -> Engine:
    """The engine ``--docker-host`` (``docker_host_flag``: a URL or a ``docker context``
    name) names, else ``DOCKER_HOST``, else ``[serve] docker_host``, else the default
    socket. ``timeout``: seconds one engine request may take (short for read paths that
    go on without the engine). Raises as :class:`DockerRuntime` does (UsageError for an
    endpoint no Docker client could use, RemoteError when it cannot be reached)."""
    host = docker_host(settings, docker_host_flag)
    return Engine(settings, host, DockerRuntime(host, dict(settings.env), timeout=timeout), log)


def endpoint_url(host: str, port: int) -> str:
    """``http://HOST:PORT``, with an IPv6 address in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
