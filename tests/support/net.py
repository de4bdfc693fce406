"""Loopback helpers the tests share: a free port (or a pair of them) on 127.0.0.1, and a
throw-away HTTP server answering with a handler class the test writes."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_pair() -> int:
    """A port P with P and P + 1 both free on 127.0.0.1 (blue-green uses both)."""
    for _ in range(50):
        p = free_port()
        if p >= 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    raise RuntimeError("no free port pair")


@contextlib.contextmanager
def http_server(handler: type[BaseHTTPRequestHandler], **attrs) -> Iterator[ThreadingHTTPServer]:
    """A threading HTTP server on a free 127.0.0.1 port serving ``handler``; ``attrs`` are
    set on the server (handlers read them as ``self.server.NAME``). Its base URL is
    :func:`url` of it. Shut down and closed on exit."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for k, v in attrs.items():
        setattr(srv, k, v)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def url(srv: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


def wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    """Until something accepts connections on 127.0.0.1:``port``; fails with ``log`` when
    ``proc`` exits first or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, log.read_text()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}:\n{log.read_text()}")
