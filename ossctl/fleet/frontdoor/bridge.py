"""Where the front door reaches a release that runs on its own engine: the container's
address on the engine's bridge network, not the port it publishes. A published port on
``127.0.0.1`` or the host's address is served by docker-proxy, a userland copy of every
byte both ways (issue 24 measured 0.81 of direct throughput through it, 0.95 on the
bridge); the front door runs with the engine host's network, where the bridge is
reachable. Releases on other engines are reached at their published port, as before.

Pure: :func:`bridge_url` reads a container's inspect record; the caller fetches it."""

from __future__ import annotations

from typing import Any


def bridge_url(attrs: dict[str, Any], published_port: int) -> str | None:
    """``http://IP:PORT`` of the container whose ``docker inspect`` record is ``attrs``:
    its bridge IP and the container port that ``published_port`` maps to; None when it
    has no such mapping or no bridge address (host network, no network)."""
    ns = attrs.get("NetworkSettings") or {}
    inner = None
    for key, binds in (ns.get("Ports") or {}).items():
        if any(str((b or {}).get("HostPort")) == str(published_port) for b in binds or []):
            inner = key.split("/", 1)[0]
            break
    if not inner or not inner.isdigit():
        return None
    ip = ns.get("IPAddress") or ""
    if not ip:
        nets = ns.get("Networks") or {}
        ip = next((n.get("IPAddress") for n in nets.values() if isinstance(n, dict) and n.get("IPAddress")), "")
    if not ip:
        return None
    return f"http://[{ip}]:{inner}" if ":" in ip else f"http://{ip}:{inner}"
