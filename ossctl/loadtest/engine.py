"""The load generator: closed-loop users on asyncio protocols.

Why not an HTTP library: the generator must not be the bottleneck (bench/loadgen_vs_wrk.py
holds it to at least half of wrk's request rate on two cores). Each user is a small state
machine on one keep-alive HTTP/1.1 connection: when a response completes, the callback
records it and writes the next request at once, with no task switch, future or timer per
request (timeouts are checked by one watchdog per level). Requests are pre-encoded once
per prompt. There is no thread or process per request. uvloop is used when installed.

Handles ``Content-Length``, chunked and read-to-close bodies, and Server-Sent Events for
streaming. Errors are recorded as kinds (see :mod:`ossctl.loadtest.stats`), never raised,
so a server that dies mid-run yields counted failures and a report.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import ssl as _ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ossctl.catalog import REASONING_EFFORTS
from ossctl.errors import RemoteError, UsageError
from ossctl.loadtest import stats
from ossctl.loadtest.prompts import Prompt
from ossctl.loadtest.stats import Sample

_READ_LIMIT = 1 << 22  # longest header block / SSE line we accept (bytes)
_CONNECT_BACKOFF_S = 0.05
MIXED = "mixed"  # --reasoning-effort: low, medium and high in turn


class _Closed(Exception):
    """The server closed the connection before a whole response arrived."""


@dataclass(frozen=True)
class Target:
    """Where to send requests. ``base_url`` like ``http://127.0.0.1:8080`` (a trailing
    ``/v1`` is accepted). ``timeout_s`` bounds one whole request."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    model: str | None = None
    timeout_s: float = 300.0

    def parts(self) -> tuple[str, str, int, str, bool]:
        """(scheme, host, port, /v1 prefix, tls). Raises :class:`UsageError`."""
        u = urlsplit(self.base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise UsageError(f"--url {self.base_url!r} is not an http(s) URL",
                             hint="give the server's base URL, e.g. --url http://127.0.0.1:8080")
        try:
            port = u.port or (443 if u.scheme == "https" else 80)
        except ValueError:
            raise UsageError(f"--url {self.base_url!r} has a bad port") from None
        path = u.path.rstrip("/")
        prefix = path if path.endswith("/v1") else path + "/v1"
        return u.scheme, u.hostname, port, prefix, u.scheme == "https"


class _Client:
    """A plain stream-based HTTP/1.1 exchange, for the one-off probe before a run."""

    __slots__ = ("host", "port", "tls", "reader", "writer")

    def __init__(self, host: str, port: int, tls: bool):
        self.host, self.port, self.tls = host, port, tls
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        ctx = _ssl.create_default_context() if self.tls else None
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, ssl=ctx, limit=_READ_LIMIT)

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - closing a broken socket
                pass
        self.reader = self.writer = None

    async def head(self, request: bytes) -> tuple[int, dict[bytes, bytes]]:
        """Send ``request`` and read the status line and headers."""
        if self.writer is None:
            await self.connect()
        self.writer.write(request)
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            raise _Closed() from None
        end = raw.find(b"\r\n")
        try:
            status = int(raw[:end].split(b" ", 2)[1])
        except (IndexError, ValueError):
            raise _Closed() from None
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
            raise _Closed() from None
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
                raise _Closed() from None
            if size == 0:
                while (await r.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return
            data = await r.readexactly(size + 2)
            yield data[:-2]


def _encode_requests(target: Target, prompts: list[Prompt], max_tokens: int | None, stream: bool,
                     host: str, port: int, prefix: str, tls: bool, effort: str | None = None) -> list[bytes]:
    default_port = 443 if tls else 80
    hostport = host if port == default_port else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        hostport = f"[{host}]" if port == default_port else f"[{host}]:{port}"
    out = []
    for p in prompts:
        body = {"model": target.model or "default", "messages": list(p.messages),
                "max_tokens": max_tokens or p.max_tokens or 256, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        if effort is not None:
            # the template variable (llama-server, vLLM) and the OpenAI field (newer
            # llama-server, OpenAI-compatible servers); a server that knows neither ignores them
            body["chat_template_kwargs"] = {"reasoning_effort": effort}
            body["reasoning_effort"] = effort
        data = json.dumps(body, separators=(",", ":")).encode()
        head = (f"POST {prefix}/chat/completions HTTP/1.1\r\nHost: {hostport}\r\n"
                f"Content-Type: application/json\r\nAccept: {'text/event-stream' if stream else 'application/json'}\r\n"
                f"Content-Length: {len(data)}\r\n")
        if target.api_key:
            head += f"Authorization: Bearer {target.api_key}\r\n"
        out.append(head.encode() + b"\r\n" + data)
    return out


def _usage_into(sample: Sample, obj: dict) -> None:
    usage = obj.get("usage")
    if isinstance(usage, dict):
        if isinstance(usage.get("completion_tokens"), int):
            sample.output_tokens = usage["completion_tokens"]
        if isinstance(usage.get("prompt_tokens"), int):
            sample.prompt_tokens = usage["prompt_tokens"]
    t = obj.get("timings")
    if isinstance(t, dict):
        if isinstance(t.get("predicted_per_second"), (int, float)):
            sample.gen_tps = float(t["predicted_per_second"])
        if isinstance(t.get("prompt_per_second"), (int, float)):
            sample.prompt_tps = float(t["prompt_per_second"])


_NUMBER = re.compile(rb"\s*:\s*([0-9][0-9.eE+-]*)")
_FIELDS = ((b'"completion_tokens"', "output_tokens", int), (b'"prompt_tokens"', "prompt_tokens", int),
           (b'"predicted_per_second"', "gen_tps", float), (b'"prompt_per_second"', "prompt_tps", float))


def _completion_into(sample: Sample, body: bytes) -> bool:
    """Take usage (and llama-server's timings) from a chat completion body; False if it
    is not one. Hot path: finding the four keys costs a fraction of decoding the body,
    which matters at tens of thousands of requests per second (keys are matched with
    their quotes, so text inside a JSON string, where quotes are escaped, cannot
    match). A body without ``usage`` is decoded whole to check its shape."""
    b = body if body[:1] == b"{" else body.strip()
    if b[:1] != b"{" or b'"choices"' not in b:
        return False
    u = b.find(b'"usage"')
    if u < 0 or not b.rstrip().endswith(b"}"):
        try:
            obj = json.loads(b)
            obj["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            return False
        _usage_into(sample, obj)
        return True
    for key, attr, conv in _FIELDS:
        i = b.find(key, u)  # the fields follow "usage" (llama-server puts "timings" after it)
        if i >= 0:
            m = _NUMBER.match(b, i + len(key))
            if m is None:
                return False
            try:
                setattr(sample, attr, conv(m.group(1)))
            except ValueError:
                return False
    return True


class _SSE:
    """Incremental Server-Sent Events reader for one streamed response. A token is a data
    event whose delta has content (or reasoning); ``usage`` in the last event, when the
    server sends it, replaces the counted tokens. Anything but well-formed JSON events
    ending in ``[DONE]`` is a broken stream."""

    __slots__ = ("buf", "done", "broken", "counted", "last_usage")

    def __init__(self) -> None:
        self.buf = b""
        self.done = False
        self.broken = False
        self.counted = 0
        self.last_usage: dict | None = None

    def feed(self, piece: bytes, sample: Sample, t0: float) -> None:
        if self.done or self.broken:
            return
        buf = self.buf + piece
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        while (i := buf.find(b"\n\n")) >= 0:
            event, buf = buf[:i], buf[i + 2:]
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue  # comments, "event:", "id:" lines
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    self.done = True
                    return
                try:
                    obj = json.loads(payload)
                except ValueError:
                    self.broken = True
                    return
                if not isinstance(obj, dict) or "error" in obj:
                    self.broken = True
                    return
                for ch in obj.get("choices") or ():
                    d = ch.get("delta") if isinstance(ch, dict) else None
                    if isinstance(d, dict) and (d.get("content") or d.get("reasoning_content") or d.get("reasoning")):
                        self.counted += 1
                        if sample.ttft is None:
                            sample.ttft = time.perf_counter() - t0
                if obj.get("usage") or obj.get("timings"):
                    self.last_usage = obj
        self.buf = buf

    def finish(self, sample: Sample) -> None:
        if self.broken or not self.done:
            sample.error = stats.BROKEN_STREAM
            return
        sample.output_tokens = self.counted
        if self.last_usage is not None:
            _usage_into(sample, self.last_usage)


# response parser states
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILER, _TO_CLOSE = range(6)


class _Conn(asyncio.Protocol):
    """Forwards one connection's events to its user; a user ignores events from a
    connection it has already dropped (``gen`` no longer current)."""

    __slots__ = ("user", "gen")

    def __init__(self, user: "_User", gen: int):
        self.user, self.gen = user, gen

    def data_received(self, data: bytes) -> None:
        if self.gen == self.user.gen:
            self.user.data_received(data)

    def connection_lost(self, exc) -> None:
        if self.gen == self.user.gen:
            self.user.connection_lost()


class _User:
    """One closed-loop user, driven by callbacks: when a response completes it records
    the sample and writes its next request at once (no task switch per request)."""

    def __init__(self, level: "_Level"):
        self.lv = level
        self.gen = 0
        self.transport: asyncio.Transport | None = None
        self.sample: Sample | None = None
        self.t0 = 0.0
        self.buf = b""
        self.state = _HEAD
        self.left = 0
        self.keep_alive = True
        self.status = 0
        self.body: list[bytes] = []
        self.sse: _SSE | None = None
        self.done = False
        self.request = b""
        self.reused = False

    # -- the loop -------------------------------------------------------------------
    def next(self) -> None:
        lv = self.lv
        if lv.stopped or lv.run.aborted or (lv.deadline is not None and time.perf_counter() >= lv.deadline) \
                or lv.budget == 0:
            self.stop()
            return
        if lv.budget > 0:
            lv.budget -= 1
        run = lv.run
        k = run.next_prompt
        run.next_prompt += 1
        i = k % run.n_prompts
        effort = lv.efforts[k % len(lv.efforts)]
        self.sample = Sample(run.prompts[i].category, 0.0, effort=effort)
        self.state = _HEAD
        self.buf = b""
        self.body = []
        self.sse = None
        self.request = run.requests[effort][i]
        self.t0 = time.perf_counter()
        if self.transport is None:
            self.reused = False
            lv.spawn(self._connect_and_send(self.request))
        else:
            self.reused = True
            self.transport.write(self.request)

    async def _connect_and_send(self, request: bytes) -> None:
        run = self.lv.run
        self.gen += 1
        gen = self.gen
        try:
            transport, _ = await self.lv.loop.create_connection(lambda: _Conn(self, gen), run.host, run.port,
                                                                ssl=run.ssl_ctx)
        except (OSError, ValueError):
            if gen == self.gen and self.sample is not None:
                self.finish(stats.CONNECT)
            return
        if gen != self.gen or self.sample is None:  # timed out or stopped meanwhile
            transport.close()
            return
        self.transport = transport
        transport.write(request)

    def finish(self, error: str | None) -> None:
        """Record the in-flight request and go on with the next one."""
        s, self.sample = self.sample, None
        if s is None:
            return
        s.latency = time.perf_counter() - self.t0
        if error is not None:
            s.error = error
        lv = self.lv
        lv.samples.append(s)
        # an HTTP error status is a whole response: the connection stays usable
        if not self.keep_alive or (s.error is not None and not s.error.startswith("http_")):
            self.drop()
        if s.error == stats.CONNECT:
            lv.refused += 1
            if lv.refused >= lv.give_up_after:
                lv.run.aborted = f"the server stopped accepting connections ({lv.users} users)"
                lv.stop_all()
                return
            lv.loop.call_later(_CONNECT_BACKOFF_S, self.next)
            return
        lv.refused = 0
        self.next()

    def drop(self) -> None:
        """Forget the current connection (a new one is opened for the next request)."""
        self.gen += 1
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.keep_alive = True

    def stop(self) -> None:
        if self.done:
            return
        self.done = True
        self.sample = None
        self.drop()
        self.lv.user_done()

    def check_timeout(self, now: float) -> None:
        if self.sample is not None and now - self.t0 > self.lv.run.timeout_s:
            self.drop()
            self.finish(stats.TIMEOUT)

    # -- protocol events -------------------------------------------------------------
    def connection_lost(self) -> None:
        self.transport = None
        self.gen += 1
        if self.sample is None:
            return
        if self.reused and self.state == _HEAD and not self.buf:
            # The server closed a kept-alive connection (idle timeout, or it closes after
            # each stream) just as we reused it: resend once on a new connection.
            self.reused = False
            self.lv.spawn(self._connect_and_send(self.request))
            return
        if self.state == _TO_CLOSE:
            self._complete(b"".join(self.body))
            return
        streaming_ok = self.lv.run.stream and self.state != _HEAD and self.status == 200
        self.finish(stats.BROKEN_STREAM if streaming_ok else stats.DISCONNECTED)

    def data_received(self, data: bytes) -> None:
        if self.sample is None:
            return  # bytes after a response we already judged
        if self.state == _HEAD and not self.buf and not self.lv.run.stream and data[9:12] == b"200":
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
                        self.finish(None if _completion_into(self.sample, data[i + 4:]) else stats.BAD_RESPONSE)
                        return
        buf = self.buf + data if self.buf else data
        try:
            while self.sample is not None:
                st = self.state
                if st == _HEAD:
                    i = buf.find(b"\r\n\r\n")
                    if i < 0:
                        if len(buf) > _READ_LIMIT:
                            raise ValueError("header too long")
                        break
                    self._head(buf[:i])
                    buf = buf[i + 4:]
                elif st == _LENGTH:
                    if len(buf) < self.left:
                        if self.sse is not None:
                            self.left -= len(buf)
                            self.sse.feed(buf, self.sample, self.t0)
                            buf = b""
                        break
                    piece, buf = buf[:self.left], buf[self.left:]
                    self.left = 0
                    self._piece(piece)
                    self._complete(b"".join(self.body))
                elif st == _CHUNK_SIZE:
                    i = buf.find(b"\r\n")
                    if i < 0:
                        break
                    size = int(buf[:i].split(b";", 1)[0], 16)
                    buf = buf[i + 2:]
                    if size == 0:
                        self.state = _TRAILER
                    else:
                        self.left = size
                        self.state = _CHUNK_DATA
                elif st == _CHUNK_DATA:
                    if len(buf) < self.left + 2:
                        break
                    piece = buf[:self.left]
                    if buf[self.left:self.left + 2] != b"\r\n":
                        raise ValueError("bad chunk")
                    buf = buf[self.left + 2:]
                    self._piece(piece)
                    self.state = _CHUNK_SIZE
                elif st == _TRAILER:
                    i = buf.find(b"\r\n")
                    if i < 0:
                        break
                    line, buf = buf[:i], buf[i + 2:]
                    if not line:
                        self._complete(b"".join(self.body))
                else:  # _TO_CLOSE
                    self._piece(buf)
                    buf = b""
                    break
        except ValueError:
            self.buf = b""
            self.finish(stats.BROKEN_STREAM if self.sse is not None else stats.DISCONNECTED)
            return
        self.buf = buf

    def _head(self, head: bytes) -> None:
        self.status = status = int(head[9:12])
        low = head.lower()
        self.keep_alive = b"\r\nconnection: close" not in low and not head.startswith(b"HTTP/1.0")
        i = low.find(b"\r\ncontent-length:")
        if i >= 0:
            j = low.find(b"\r\n", i + 17)
            self.left = int(low[i + 17:j if j > 0 else len(low)])
            self.state = _LENGTH
        elif b"\r\ntransfer-encoding: chunked" in low:
            self.state = _CHUNK_SIZE
        else:
            self.state = _TO_CLOSE
            self.keep_alive = False
        if status == 200 and self.lv.run.stream:
            if b"\r\ncontent-type: text/event-stream" in low:
                self.sse = _SSE()
            else:
                self.status = -1  # a whole non-stream body where events were expected
        if self.state == _LENGTH and self.left == 0:
            self._complete(b"")

    def _piece(self, piece: bytes) -> None:
        if self.sse is not None:
            self.sse.feed(piece, self.sample, self.t0)
        elif piece:
            self.body.append(piece)

    def _complete(self, body: bytes) -> None:
        s = self.sample
        if s is None:
            return
        status = self.status
        if status == 200:
            if self.sse is not None:
                self.sse.finish(s)
                self.finish(None)
                return
            if not _completion_into(s, body):
                self.finish(stats.BAD_RESPONSE)
                return
            self.finish(None)
        elif status == -1:
            self.finish(stats.BROKEN_STREAM)
        else:
            self.finish(f"http_{status}")


class _Level:
    """One concurrency level: its users, request budget, deadline and samples."""

    def __init__(self, run: "Run", users: int, duration_s: float | None, requests: int | None,
                 efforts: tuple[str | None, ...] = (None,)):
        self.run = run
        self.users = users
        self.efforts = efforts  # reasoning effort of each request, in turn (None: not sent)
        self.loop = asyncio.get_running_loop()
        self.samples: list[Sample] = []
        self.budget = requests if requests is not None else -1
        self.deadline = time.perf_counter() + duration_s if duration_s is not None else None
        self.refused = 0
        self.give_up_after = max(10, 2 * users)
        self.stopped = False
        self.active = users
        self.finished = self.loop.create_future()
        self.pending: set[asyncio.Task] = set()
        self.members = [_User(self) for _ in range(users)]

    def spawn(self, coro) -> None:
        task = self.loop.create_task(coro)
        self.pending.add(task)  # keep a reference until it ends
        task.add_done_callback(self.pending.discard)

    def user_done(self) -> None:
        self.active -= 1
        if self.active <= 0 and not self.finished.done():
            self.finished.set_result(None)

    def stop_all(self) -> None:
        self.stopped = True
        for u in self.members:
            u.stop()


class Run:
    """State shared by the levels of one bench: the target, pre-encoded requests, and
    whether Ctrl-C or a dead server stopped it."""

    def __init__(self, target: Target, prompts: list[Prompt], *, stream: bool, max_tokens: int | None):
        if not prompts:
            raise UsageError("no prompts to send")
        _, self.host, self.port, self.prefix, tls = target.parts()
        self.ssl_ctx = _ssl.create_default_context() if tls else None
        self.target = target
        self.timeout_s = target.timeout_s
        self.prompts = prompts
        self.n_prompts = len(prompts)
        self.stream = stream
        # per reasoning effort (None: the server's default), the pre-encoded request of each prompt
        self.requests = {e: _encode_requests(target, prompts, max_tokens, stream, self.host, self.port, self.prefix,
                                             tls, e) for e in (None, *REASONING_EFFORTS)}
        self.interrupted = False
        self.aborted: str | None = None
        self.next_prompt = 0
        self._level: _Level | None = None

    def interrupt(self) -> None:
        """Stop now (Ctrl-C): in-flight requests are dropped, finished ones kept."""
        self.interrupted = True
        if self._level is not None:
            self._level.stop_all()

    async def level(self, users: int, *, duration_s: float | None, requests: int | None,
                    effort: str | None = None) -> tuple[list[Sample], float]:
        """Run ``users`` closed-loop users until ``duration_s`` has passed (in-flight
        requests finish) or ``requests`` have been sent; each request asks for reasoning
        ``effort`` (low, medium, high; mixed: the three in turn; None: none sent).
        Returns (samples, elapsed s)."""
        lv = self._level = _Level(self, users, duration_s, requests, efforts_of(effort))
        t_start = time.perf_counter()
        for u in lv.members:
            u.next()
        tick = min(1.0, self.timeout_s / 10)
        try:
            while not lv.finished.done():
                await asyncio.wait([lv.finished], timeout=tick)
                now = time.perf_counter()
                for u in lv.members:
                    u.check_timeout(now)
        finally:
            if not lv.finished.done():
                lv.stop_all()
            self._level = None
        return lv.samples, time.perf_counter() - t_start


async def probe(target: Target, timeout_s: float = 10.0) -> list[str]:
    """Check that the server answers before a run: ``GET /v1/models``. Returns the model
    ids it lists (empty if it lists none or refuses). Raises :class:`RemoteError` when
    nothing answers at the URL."""
    _, host, port, prefix, tls = target.parts()
    client = _Client(host, port, tls)
    req = f"GET {prefix}/models HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n"
    if target.api_key:
        req += f"Authorization: Bearer {target.api_key}\r\n"
    req += "Connection: close\r\n\r\n"
    hint = "check the URL and that the server is running (ossctl serve status)"
    try:
        async with asyncio.timeout(timeout_s):
            status, headers = await client.head(req.encode())
            data = await client.body(headers)
    except TimeoutError:
        raise RemoteError(f"{target.base_url} did not answer within {timeout_s:g}s", hint=hint) from None
    except (OSError, _Closed, asyncio.LimitOverrunError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        if isinstance(exc, _Closed):
            why = "the connection closed without an HTTP response"
        raise RemoteError(f"cannot reach {target.base_url}: {why}", hint=hint) from None
    finally:
        client.close()
    if status != 200:
        return []
    try:
        return [m["id"] for m in json.loads(data).get("data", []) if isinstance(m.get("id"), str)]
    except (ValueError, AttributeError, TypeError):
        return []


def efforts_of(spec: str | None) -> tuple[str | None, ...]:
    """The efforts requests cycle through for one level's spec (see :func:`parse_efforts`)."""
    return REASONING_EFFORTS if spec == MIXED else (spec,)


def parse_efforts(spec: str, n_levels: int) -> list[str]:
    """``--reasoning-effort``: one of low, medium, high, mixed for every level, or a comma
    list with one per level (``low,medium,high,mixed`` with ``--users 1,10,50,100``).
    Raises :class:`UsageError`."""
    choices = (*REASONING_EFFORTS, MIXED)
    items = [x.strip().lower() for x in spec.split(",")]
    bad = [x for x in items if x not in choices]
    if bad:
        raise UsageError(f"--reasoning-effort: {bad[0]!r} is not one of {', '.join(choices)}",
                         hint='e.g. --reasoning-effort high, or --users 1,10,50 --reasoning-effort low,medium,mixed')
    if len(items) == 1:
        return items * n_levels
    if len(items) != n_levels:
        raise UsageError(f"--reasoning-effort lists {len(items)} efforts for {n_levels} levels of --users",
                         hint="give one effort for every level, or one per level in the order of --users")
    return items


def run_levels(target: Target, prompts: list[Prompt], users: list[int], *, duration_s: float | None = None,
               requests: int | None = None, stream: bool = True, max_tokens: int | None = None,
               progress: Callable[[str], None] | None = None, handle_sigint: bool = True,
               efforts: list[str] | None = None) -> dict:
    """Probe the server, then run each concurrency level in turn (with ``efforts[i]``, see
    :func:`parse_efforts`, as the reasoning effort of level i; None: none sent). Returns a report dict
    (see :func:`ossctl.loadtest.report.build`) with ``interrupted`` set when Ctrl-C
    stopped the run and ``aborted`` when the server stopped accepting connections.
    Raises :class:`RemoteError` if the server cannot be reached before the run."""
    from ossctl.loadtest import report as _report

    if (duration_s is None) == (requests is None):
        raise UsageError("give either a duration or a request count per level")
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_run(target, prompts, users, duration_s, requests, stream, max_tokens,
                               progress or (lambda _m: None), handle_sigint, _report,
                               efforts or [None] * len(users)))


def _loop_factory():
    """uvloop when it is installed (it roughly halves the generator's CPU per request),
    else the standard loop. ``OSSCTL_BENCH_LOOP=asyncio`` forces the standard one."""
    import os

    if os.environ.get("OSSCTL_BENCH_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _run(target, prompts, users, duration_s, requests, stream, max_tokens, progress, handle_sigint, _report,
               efforts):
    models = await probe(target)
    if target.model is None and models:
        target = Target(target.base_url, target.api_key, models[0], target.timeout_s)
    run = Run(target, prompts, stream=stream, max_tokens=max_tokens)
    loop = asyncio.get_running_loop()
    sigint = handle_sigint and threading.current_thread() is threading.main_thread()
    if sigint:
        loop.add_signal_handler(signal.SIGINT, run.interrupt)
    levels = []
    order = list(dict.fromkeys(p.category for p in prompts))
    try:
        for u, effort in zip(users, efforts):
            if run.interrupted or run.aborted:
                break
            progress(f"bench: {u} users{f', {effort} reasoning' if effort else ''} ...")
            cpu0 = time.process_time()
            samples, elapsed = await run.level(u, duration_s=duration_s, requests=requests, effort=effort)
            cpu = time.process_time() - cpu0
            if run.interrupted and not samples:
                break
            lv = _report.level(samples, u, elapsed, stream, cpu, order, effort)
            levels.append(lv)
            progress(f"bench: {u} users: {lv['requests']} requests, {lv['errors']} errors in {elapsed:.2f}s")
    finally:
        if sigint:
            loop.remove_signal_handler(signal.SIGINT)
    return _report.build(target.base_url, target.model, stream, max_tokens, duration_s, requests, levels,
                         interrupted=run.interrupted, aborted=run.aborted)
