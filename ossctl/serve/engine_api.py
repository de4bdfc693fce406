"""The Docker Engine API for reading, without the docker SDK: HTTP/1.1 over a unix socket,
over tcp (TLS as ``DOCKER_TLS_VERIFY`` / ``DOCKER_CERT_PATH`` say, the docker CLI's and the
SDK's rules), or over the stdin/stdout of ``ssh HOST docker system dial-stdio`` (the
command is built by :mod:`ossctl.serve.docker_runtime`, the same ssh transport its SDK
client uses).

Why: a read-only command (``status``, ``releases``, a metrics scrape) spent most of its
time importing the SDK and requests (~0.1-0.2 s in a fresh process) for four GET requests.
This module imports the standard library only (``ssl`` when TLS is on), keeps one
connection open for all requests, and returns the engine's JSON as it is, which is what
the SDK's low-level API returns too: the records built from it are the same.

Requests use the unversioned paths: the engine answers them at its own API version, the
version the SDK client negotiates (``docker_runtime`` asks ``/version`` first).

Errors: :class:`APIError` (an HTTP status >= 400, with the engine's message), ``OSError``
(incl. ``ssl.SSLError``, timeouts, a refused or closed connection) and
:class:`TLSFilesError`; :mod:`ossctl.serve.docker_runtime` turns them into one-line
:class:`~ossctl.errors.OssctlError` s, as it does the SDK's.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import threading
from typing import Any
from urllib.parse import quote, urlencode, urlsplit


class APIError(Exception):
    """The engine answered ``status`` >= 400; ``explanation`` is its ``message``."""

    def __init__(self, status: int, explanation: str):
        super().__init__(f"{status} {explanation}")
        self.status_code = status
        self.explanation = explanation


class TLSFilesError(ValueError):
    """TLS is asked for (DOCKER_TLS_VERIFY / DOCKER_CERT_PATH) but cert.pem / key.pem (or,
    when verifying, ca.pem) are not there."""


def tls_settings(env: dict[str, str]) -> tuple[str, str, str | None] | None:
    """(cert.pem, key.pem, ca.pem or None when not verifying) from ``env``'s
    DOCKER_TLS_VERIFY / DOCKER_CERT_PATH, or None when they ask for no TLS. The SDK's rules
    (``docker.utils.kwargs_from_env``): a cert path alone means TLS without verifying the
    engine; DOCKER_TLS_VERIFY set to anything but "" means verify, with ~/.docker as the
    default cert path. Raises :class:`TLSFilesError` for missing files."""
    cert_path = env.get("DOCKER_CERT_PATH") or None
    verify = env.get("DOCKER_TLS_VERIFY") is not None and env.get("DOCKER_TLS_VERIFY") != ""
    if not (cert_path or verify):
        return None
    cert_path = cert_path or os.path.join(os.path.expanduser("~"), ".docker")
    cert, key, ca = (os.path.join(cert_path, f) for f in ("cert.pem", "key.pem", "ca.pem"))
    if not (os.path.isfile(cert) and os.path.isfile(key)):
        raise TLSFilesError("DOCKER_CERT_PATH has no cert.pem / key.pem")
    if verify and not os.path.isfile(ca):
        raise TLSFilesError("DOCKER_CERT_PATH has no ca.pem")
    return cert, key, (ca if verify else None)


class _Socket:
    """A unix or tcp (optionally TLS) stream socket, connected on first use."""

    def __init__(self, connect):
        self._connect = connect
        self._sock: socket.socket | None = None

    def send(self, data: bytes) -> None:
        if self._sock is None:
            self._sock = self._connect()
        self._sock.sendall(data)

    def recv(self, n: int) -> bytes:
        return self._sock.recv(n)

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    @property
    def opened(self) -> bool:
        return self._sock is not None


class _Pipe:
    """A process's stdin/stdout as one connection (``ssh HOST docker system dial-stdio``),
    started on first use; ``timeout`` seconds for each read."""

    def __init__(self, argv: list[str], env: dict[str, str], timeout: float):
        self._argv, self._env, self._timeout = argv, env, timeout
        self.proc: subprocess.Popen | None = None

    def send(self, data: bytes) -> None:
        if self.proc is None or self.proc.poll() is not None:
            import signal

            self.close()
            self.proc = subprocess.Popen(self._argv, env=self._env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, bufsize=0,
                                         # Ctrl-C is ours to handle: ssh must not die half-way through a request
                                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise ConnectionError("ssh closed the connection") from None

    def recv(self, n: int) -> bytes:
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], self._timeout)[0]:
            raise TimeoutError(f"no answer over ssh within {self._timeout:g} s")
        return os.read(fd, n)

    def close(self) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        for f in (p.stdin, p.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            p.wait(timeout=2)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    @property
    def opened(self) -> bool:
        return self.proc is not None


class EngineAPI:
    """GET requests to one engine on one kept connection (reopened once when the engine
    closed it between requests). Thread-safe: one request at a time."""

    def __init__(self, conn, host_header: str = "docker"):
        self._conn = conn
        self._host = host_header
        self._buf = b""
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            self._buf = b""

    # -- the reads docker_runtime needs ---------------------------------------------
    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """The decoded JSON answer of ``GET path``; raises :class:`APIError` for >= 400."""
        return json.loads(self.get(path, params) or b"null")

    def get(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        """The body of ``GET path`` (``path`` pieces quoted by the caller, see :func:`seg`)."""
        status, body = self.request("GET", path + ("?" + urlencode(params) if params else ""))
        if status >= 400:
            raise APIError(status, _message(body))
        return body

    def request(self, method: str, target: str) -> tuple[int, bytes]:
        """(status, body) of one request without a body."""
        head = (f"{method} {target} HTTP/1.1\r\nHost: {self._host}\r\nUser-Agent: ossctl\r\n"
                "Accept: application/json\r\n\r\n").encode("latin-1")
        with self._lock:
            for attempt in (1, 2):
                reused = self._conn.opened
                try:
                    self._conn.send(head)
                    return self._response(method)
                except (ConnectionError, _Closed) as exc:
                    self._conn.close()
                    self._buf = b""
                    # a kept connection the engine (or ssh) closed since the last request is
                    # opened again, once (GETs only: nothing is sent twice that changes state)
                    if reused and attempt == 1:
                        continue
                    if isinstance(exc, _Closed):
                        raise ConnectionError("the Docker engine closed the connection") from None
                    raise
                except BaseException:
                    self._conn.close()
                    self._buf = b""
                    raise
        raise AssertionError("unreachable")

    # -- HTTP/1.1 -------------------------------------------------------------------
    def _fill(self) -> None:
        data = self._conn.recv(65536)
        if not data:
            raise _Closed()
        self._buf += data

    def _line(self) -> bytes:
        while (i := self._buf.find(b"\r\n")) < 0:
            if len(self._buf) > 65536:
                raise ConnectionError("the Docker engine sent a header line over 64 KiB")
            self._fill()
        line, self._buf = self._buf[:i], self._buf[i + 2:]
        return line

    def _take(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _response(self, method: str) -> tuple[int, bytes]:
        status_line = self._line()
        try:
            version, code, *_ = status_line.split(b" ", 2)
            status = int(code)
            if not version.startswith(b"HTTP/1."):
                raise ValueError
        except ValueError:
            raise ConnectionError(f"not an HTTP answer from the Docker engine: {status_line[:60]!r}") from None
        headers: dict[str, str] = {}
        while line := self._line():
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        close = headers.get("connection", "").lower() == "close" or version == b"HTTP/1.0"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while size := int(self._line().split(b";")[0].strip() or b"0", 16):
                parts.append(self._take(size))
                self._take(2)
            while self._line():  # trailers, then the blank line
                pass
            body = b"".join(parts)
        elif "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        else:  # the body runs to the end of the connection
            close = True
            try:
                while True:
                    self._fill()
            except _Closed:
                pass
            body, self._buf = self._buf, b""
        if close:
            self._conn.close()
            self._buf = b""
        return status, body


class _Closed(Exception):
    """The connection ended where an answer was expected."""


def _message(body: bytes) -> str:
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and isinstance(doc.get("message"), str):
            return doc["message"]
    except ValueError:
        pass
    return body.decode("utf-8", "replace").strip()[:300]


def seg(value: str) -> str:
    """``value`` as one piece of a request path (an image name keeps its ``/`` and ``:``,
    as the SDK sends it)."""
    return quote(value, safe="/:")


def open_api(url: str, env: dict[str, str], timeout: float, ssh_argv: list[str] | None = None,
             ssh_env: dict[str, str] | None = None) -> EngineAPI | None:
    """An :class:`EngineAPI` for ``url`` (``unix://PATH``, ``tcp://HOST:PORT`` with TLS from
    ``env``, or ``ssh://`` through ``ssh_argv``), or None for an endpoint it does not speak
    (npipe://, http(s)://, tcp:// without a port): the caller uses the SDK there. Nothing
    is connected yet. Raises :class:`TLSFilesError`."""
    u = urlsplit(url)
    if u.scheme == "unix":
        path = u.path if not u.netloc else f"/{u.netloc}{u.path}"

        def connect_unix() -> socket.socket:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(path)
            except BaseException:
                s.close()
                raise
            return s

        return EngineAPI(_Socket(connect_unix), "localhost")
    if u.scheme == "ssh":
        return EngineAPI(_Pipe(ssh_argv, ssh_env if ssh_env is not None else dict(os.environ), timeout)) \
            if ssh_argv else None
    if u.scheme != "tcp" or not u.port or not u.hostname:
        return None
    host, port = u.hostname, u.port
    tls = tls_settings(env)

    def connect_tcp() -> socket.socket:
        s = socket.create_connection((host, port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is None:
            return s
        import ssl  # only for TLS engines: ~10 ms

        cert, key, ca = tls
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if ca:
            ctx.load_verify_locations(cafile=ca)
        else:  # a cert path without DOCKER_TLS_VERIFY: TLS, the engine not verified (as the SDK does)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(cert, key)
        try:
            return ctx.wrap_socket(s, server_hostname=host)
        except BaseException:
            s.close()
            raise

    return EngineAPI(_Socket(connect_tcp), f"{host}:{port}")
