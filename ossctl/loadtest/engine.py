"""The load generator: closed-loop users on asyncio protocols.

Why not an HTTP library: the generator must not be the bottleneck (bench/loadgen_vs_wrk.py
holds it to at least half of wrk's request rate on two cores). Each user is a small state
machine on one keep-alive HTTP/1.1 connection: when a response completes, the callback
records it and writes the next request at once, with no task switch, future or timer per
request (timeouts are checked by one watchdog per level). Requests are pre-encoded once
per prompt. There is no thread or process per request. uvloop is used when installed.

The wire format is :mod:`ossctl.loadtest.http11`, what requests and answers mean is
:mod:`ossctl.loadtest.openai`; this module is the user loop. Errors are recorded as kinds
(see :mod:`ossctl.loadtest.stats`), never raised, so a server that dies mid-run yields
counted failures and a report.
"""

from __future__ import annotations

import asyncio
import signal
import ssl as _ssl
import threading
import time
from collections.abc import Callable, Mapping

from ossctl.catalog import REASONING_EFFORTS
from ossctl.errors import UsageError
from ossctl.loadtest import report as _report, stats
from ossctl.loadtest.http11 import Forward, HEAD, ResponseParser, TO_CLOSE
from ossctl.loadtest.openai import SSE, Target, completion_into, efforts_of, encode_requests, probe
from ossctl.loadtest.prompts import Prompt
from ossctl.loadtest.stats import Sample

_CONNECT_BACKOFF_S = 0.05


class _User(ResponseParser):
    """One closed-loop user, driven by callbacks: when a response completes it records
    the sample and writes its next request at once (no task switch per request)."""

    def __init__(self, level: "_Level"):
        super().__init__()
        self.lv = level
        self.whole = not level.run.stream
        self.gen = 0
        self.transport: asyncio.Transport | None = None
        self.sample: Sample | None = None
        self.t0 = 0.0
        self.sse: SSE | None = None
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
        self.reset()
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
            transport, _ = await self.lv.loop.create_connection(lambda: Forward(self, gen), run.host, run.port,
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
        if self.reused and self.state == HEAD and not self.buf:
            # The server closed a kept-alive connection (idle timeout, or it closes after
            # each stream) just as we reused it: resend once on a new connection.
            self.reused = False
            self.lv.spawn(self._connect_and_send(self.request))
            return
        if self.state == TO_CLOSE:
            self._complete(b"".join(self.body))
            return
        streaming_ok = self.lv.run.stream and self.state != HEAD and self.status == 200
        self.finish(stats.BROKEN_STREAM if streaming_ok else stats.DISCONNECTED)

    def on_head(self, low: bytes) -> None:
        if self.status == 200 and self.lv.run.stream:
            if b"\r\ncontent-type: text/event-stream" in low:
                self.sse = SSE()
                self.eager = True
            else:
                self.status = -1  # a whole non-stream body where events were expected

    def on_malformed(self) -> None:
        self.finish(stats.BROKEN_STREAM if self.sse is not None else stats.DISCONNECTED)

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
            if not completion_into(s, body):
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
        self.requests = {e: encode_requests(target, prompts, max_tokens, stream, self.host, self.port, self.prefix,
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


def run_levels(target: Target, prompts: list[Prompt], users: list[int], *, duration_s: float | None = None,
               requests: int | None = None, stream: bool = True, max_tokens: int | None = None,
               progress: Callable[[str], None] | None = None, handle_sigint: bool = True,
               efforts: list[str] | None = None, env: Mapping[str, str] | None = None) -> dict:
    """Probe the server, then run each concurrency level in turn (with ``efforts[i]``, see
    :func:`ossctl.loadtest.openai.parse_efforts`, as the reasoning effort of level i; None:
    none sent). ``env`` is the settings' environment (``OSSCTL_BENCH_LOOP``, see
    :func:`_loop_factory`). Returns a report dict (see :func:`ossctl.loadtest.report.build`)
    with ``interrupted`` set when Ctrl-C stopped the run and ``aborted`` when the server
    stopped accepting connections. Raises :class:`RemoteError` if the server cannot be
    reached before the run."""
    if (duration_s is None) == (requests is None):
        raise UsageError("give either a duration or a request count per level")
    with asyncio.Runner(loop_factory=_loop_factory(env or {})) as runner:
        return runner.run(_run(target, prompts, users, duration_s, requests, stream, max_tokens,
                               progress or (lambda _m: None), handle_sigint, _report,
                               efforts or [None] * len(users)))


def _loop_factory(env: Mapping[str, str]):
    """uvloop when it is installed (it roughly halves the generator's CPU per request),
    else the standard loop. ``OSSCTL_BENCH_LOOP=asyncio`` in ``env`` forces the standard one."""
    if env.get("OSSCTL_BENCH_LOOP", "").lower() == "asyncio":
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
