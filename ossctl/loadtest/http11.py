"""HTTP/1.1 for the load generator: request framing, a one-off stream client, and an
incremental response parser driven by ``data_received`` callbacks.

Why not an HTTP library: the generator must not be the bottleneck (see
:mod:`ossctl.loadtest.engine`). The parser is a small state machine with no task,
future or timer per response. It handles ``Content-Length``, chunked and read-to-close
bodies; what the body means (a chat completion, Server-Sent Events) is the subclass's.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl

READ_LIMIT = 1 << 22  # longest header block / SSE line we accept (bytes)

# response parser states
HEAD, LENGTH, CHUNK_SIZE, CHUNK_DATA, TRAILER, TO_CLOSE = range(6)


class Closed(Exception):
    """The server closed the connection before a whole response arrived."""


def host_header(host: str, port: int, tls: bool) -> str:
    """The ``Host`` value: the port only when it is not the scheme's default, an IPv6
    literal in brackets."""
    default_port = 443 if tls else 80
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port == default_port else f"{host}:{port}"


def post(path: str, hostport: str, body: bytes, accept: str, bearer: str | None) -> bytes:
    """One whole ``POST`` request with a JSON body, ready to write (keep-alive)."""
    head = (f"POST {path} HTTP/1.1\r\nHost: {hostport}\r\n"
            f"Content-Type: application/json\r\nAccept: {accept}\r\n"
            f"Content-Length: {len(body)}\r\n")
    if bearer:
        head += f"Authorization: Bearer {bearer}\r\n"
    return head.encode() + b"\r\n" + body


def get(path: str, hostport: str, accept: str, bearer: str | None) -> bytes:
    """One ``GET`` request that asks the server to close afterwards."""
    req = f"GET {path} HTTP/1.1\r\nHost: {hostport}\r\nAccept: {accept}\r\n"
    if bearer:
        req += f"Authorization: Bearer {bearer}\r\n"
    return (req + "Connection: close\r\n\r\n").encode()


class Client:
    """A plain stream-based HTTP/1.1 exchange, for one-off requests (not the hot path)."""

    __slots__ = ("host", "port", "tls", "reader", "writer")

    def __init__(self, host: str, port: int, tls: bool):
        self.host, self.port, self.tls = host, port, tls
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        ctx = _ssl.create_default_context() if self.tls else None
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, ssl=ctx, limit=READ_LIMIT)

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - closing a broken socket
                pass
        self.reader = self.writer = None

    async def head(self, request: bytes) -> tuple[int, dict[bytes, bytes]]:
        """Send ``request`` and read the status line and headers. Raises :class:`Closed`."""
        if self.writer is None:
            await self.connect()
        self.writer.write(request)
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            raise Closed() from None
        end = raw.find(b"\r\n")
        try:
            status = int(raw[:end].split(b" ", 2)[1])
        except (IndexError, ValueError):
            raise Closed() from None
        headers = {}
        for line in raw[end + 2:-4].split(b"\r\n"):
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip()
        return status, headers

    async def body(self, headers: dict[bytes, bytes]) -> bytes:
        r = self.reader
        try:
            if b"content-length" in headers:
                data = await r.readexactly(int(headers[b"content-length"]))
            elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                data = b"".join([c async for c in self._chunks()])
            else:
                data = await r.read()
                self.close()
                return data
        except asyncio.IncompleteReadError:
            raise Closed() from None
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return data

    async def _chunks(self):
        r = self.reader
        while True:
            line = await r.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise Closed() from None
            if size == 0:
                while (await r.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return
            data = await r.readexactly(size + 2)
            yield data[:-2]


class Forward(asyncio.Protocol):
    """Forwards one connection's events to its owner; an owner ignores events from a
    connection it has already dropped (``gen`` no longer current)."""

    __slots__ = ("owner", "gen")

    def __init__(self, owner, gen: int):
        self.owner, self.gen = owner, gen

    def data_received(self, data: bytes) -> None:
        if self.gen == self.owner.gen:
            self.owner.data_received(data)

    def connection_lost(self, exc) -> None:
        if self.gen == self.owner.gen:
            self.owner.connection_lost()


class ResponseParser:
    """Incremental parser for responses on one keep-alive connection.

    The subclass keeps ``sample`` set while it awaits a response (bytes that arrive while
    it is ``None`` are ignored), sets ``whole`` when a non-streamed body is expected (a
    fast path for a whole 200 response in one read) and ``eager`` when a body's pieces
    should reach :meth:`_piece` as they arrive; it implements :meth:`on_head` (status and
    lower-cased head known), :meth:`_piece` (a piece of the body), :meth:`_complete` (the
    response ended; its body unless pieces went elsewhere) and :meth:`on_malformed`."""

    sample: object | None
    whole: bool

    def __init__(self) -> None:
        self.state = HEAD
        self.buf = b""
        self.body: list[bytes] = []
        self.eager = False
        self.left = 0  # bytes of the body (LENGTH) or chunk (CHUNK_DATA) still to come
        self.status = 0
        self.keep_alive = True

    def reset(self) -> None:
        """Ready for the next response on this connection."""
        self.state = HEAD
        self.buf = b""
        self.body = []
        self.eager = False

    def on_head(self, low: bytes) -> None:
        raise NotImplementedError

    def _piece(self, piece: bytes) -> None:
        raise NotImplementedError

    def _complete(self, body: bytes) -> None:
        raise NotImplementedError

    def on_malformed(self) -> None:
        raise NotImplementedError

    def data_received(self, data: bytes) -> None:
        if self.sample is None:
            return  # bytes after a response we already judged
        if self.state == HEAD and not self.buf and self.whole and data[9:12] == b"200":
            # Fast path, the usual case: a whole non-streamed 200 response in one read.
            i = data.find(b"\r\n\r\n")
            if i > 0:
                low = data[:i].lower()
                j = low.find(b"\r\ncontent-length:")
                if j > 0 and b"\r\nconnection: close" not in low and data.startswith(b"HTTP/1.1"):
                    k = low.find(b"\r\n", j + 17)
                    try:
                        n = int(low[j + 17:k if k > 0 else i])
                    except ValueError:
                        n = -1
                    if len(data) == i + 4 + n:
                        self.status = 200
                        self.keep_alive = True
                        self._complete(data[i + 4:])
                        return
        buf = self.buf + data if self.buf else data
        try:
            while self.sample is not None:
                st = self.state
                if st == HEAD:
                    i = buf.find(b"\r\n\r\n")
                    if i < 0:
                        if len(buf) > READ_LIMIT:
                            raise ValueError("header too long")
                        break
                    self._head(buf[:i])
                    buf = buf[i + 4:]
                elif st == LENGTH:
                    if len(buf) < self.left:
                        if self.eager:
                            self.left -= len(buf)
                            self._piece(buf)
                            buf = b""
                        break
                    piece, buf = buf[:self.left], buf[self.left:]
                    self.left = 0
                    self._piece(piece)
                    self._complete(b"".join(self.body))
                elif st == CHUNK_SIZE:
                    i = buf.find(b"\r\n")
                    if i < 0:
                        break
                    size = int(buf[:i].split(b";", 1)[0], 16)
                    buf = buf[i + 2:]
                    if size == 0:
                        self.state = TRAILER
                    else:
                        self.left = size
                        self.state = CHUNK_DATA
                elif st == CHUNK_DATA:
                    if len(buf) < self.left + 2:
                        break
                    piece = buf[:self.left]
                    if buf[self.left:self.left + 2] != b"\r\n":
                        raise ValueError("bad chunk")
                    buf = buf[self.left + 2:]
                    self._piece(piece)
                    self.state = CHUNK_SIZE
                elif st == TRAILER:
                    i = buf.find(b"\r\n")
                    if i < 0:
                        break
                    line, buf = buf[:i], buf[i + 2:]
                    if not line:
                        self._complete(b"".join(self.body))
                else:  # TO_CLOSE
                    self._piece(buf)
                    buf = b""
                    break
        except ValueError:
            self.buf = b""
            self.on_malformed()
            return
        self.buf = buf

    def _head(self, head: bytes) -> None:
        self.status = int(head[9:12])
        low = head.lower()
        self.keep_alive = b"\r\nconnection: close" not in low and not head.startswith(b"HTTP/1.0")
        i = low.find(b"\r\ncontent-length:")
        if i >= 0:
            j = low.find(b"\r\n", i + 17)
            self.left = int(low[i + 17:j if j > 0 else len(low)])
            self.state = LENGTH
        elif b"\r\ntransfer-encoding: chunked" in low:
            self.state = CHUNK_SIZE
        else:
            self.state = TO_CLOSE
            self.keep_alive = False
        self.on_head(low)
        if self.state == LENGTH and self.left == 0:
            self._complete(b"")
