"""ONLY importer of ``prometheus_client``: parse llama-server's text exposition into
:class:`~ossctl.metrics.families.Family` values, render families in the text format, and
serve them over HTTP (each request runs one scrape; standard library server)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ossctl.errors import ConflictError, UsageError
from ossctl.metrics.families import Family


def parse_text(text: str) -> list[Family]:
    """Families of a Prometheus text exposition. Raises ``ValueError`` on bad input."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for m in text_string_to_metric_families(text):
        out.append(Family(m.name, m.type, m.documentation,
                          [(s.name, dict(s.labels), float(s.value)) for s in m.samples]))
    return out


def _to_metrics(families: Iterable[Family]):
    from prometheus_client.metrics_core import Metric

    for f in families:
        m = Metric(f.name, f.help, f.type)
        for name, labels, value in f.samples:
            m.add_sample(name, labels, value)
        yield m


class _Collector:
    def __init__(self, scrape: Callable[[], Iterable[Family]]):
        self._scrape = scrape

    def describe(self):  # nothing up front: registering must not run a scrape
        return []

    def collect(self):
        return _to_metrics(self._scrape())


def _registry(scrape: Callable[[], Iterable[Family]]):
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(scrape))
    return reg


def render_text(families: Iterable[Family]) -> str:
    """The Prometheus text format (0.0.4) of ``families``."""
    from prometheus_client import generate_latest

    fams = list(families)
    return generate_latest(_registry(lambda: fams)).decode("utf-8")


def parse_listen(spec: str) -> tuple[str, int]:
    """``HOST:PORT`` / ``[V6]:PORT`` / ``:PORT`` (loopback) → (host, port). Raises
    :class:`UsageError`."""
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {spec!r} is not HOST:PORT", hint="e.g. --listen 127.0.0.1:9464")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


MAX_CONNECTIONS = 16  # requests served at once; more are answered 503 at once
REQUEST_TIMEOUT_S = 10.0  # a connection that sends no line for this long is closed
STOP_WAIT_S = 15.0  # how long stopping waits for scrapes in flight (a scrape bounds itself)


class _Fresh:
    """Scrapes shared between requests: a request is answered by a scrape that started
    after it arrived, so requests that waited for a running scrape share the next one
    instead of each queueing another (at most two scrapes for any burst)."""

    def __init__(self, scrape: Callable[[], Iterable[Family]]):
        import threading

        self._scrape = scrape
        self._lock = threading.Lock()
        self._last: tuple[float, list[Family]] | None = None

    def get(self, arrived: float) -> list[Family]:
        import time

        with self._lock:
            if self._last is not None and self._last[0] >= arrived:
                return self._last[1]
            started = time.monotonic()
            fams = list(self._scrape())
            self._last = (started, fams)
            return fams


class _LineTracker:
    """The request's ``rfile``, remembering the last line read: a request whose header
    block ended at EOF (the client sent a request line and hung up) is not scraped."""

    def __init__(self, f):
        self._f = f
        self.last = b""

    def readline(self, *args):
        line = self._f.readline(*args)
        self.last = line
        return line

    def __getattr__(self, name):
        return getattr(self._f, name)


def _peer_gone(sock) -> bool:
    """Whether the client closed its side (a scrape for it would be wasted)."""
    import select
    import socket

    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (OSError, ValueError):
        return True


def serve(listen: str, scrape: Callable[[], Iterable[Family]]) -> tuple[Callable[[], None], str]:
    """Serve ``scrape()`` on ``listen`` (``GET /metrics``; ``/`` too) in background
    threads. Always the text format 0.0.4: prometheus_client's OpenMetrics writer would
    rename llama-server's ``llamacpp:*`` metrics to ``llamacpp_*``.

    Bounded: at most :data:`MAX_CONNECTIONS` requests at once (more get 503 without a
    scrape), a silent connection is dropped after :data:`REQUEST_TIMEOUT_S`, a request
    whose client hung up before its headers ended (or while it waited) runs no scrape,
    and requests that wait share one scrape (:class:`_Fresh`). ``stop()`` waits for the
    scrapes in flight, so the process exits cleanly mid-scrape. Returns ``(stop, url)``.
    Raises :class:`ConflictError` when the address is taken, :class:`UsageError` when it
    cannot be bound."""
    import errno
    import socket
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    host, port = parse_listen(listen)
    fresh = _Fresh(scrape)
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    scraping = threading.Condition()
    state = {"scrapes": 0, "stopping": False}

    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S

        def setup(self) -> None:
            super().setup()
            self.rfile = _LineTracker(self.rfile)

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            arrived = time.monotonic()
            if self.rfile.last not in (b"\r\n", b"\n"):
                self.close_connection = True  # the headers never ended: the client is gone
                return
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                self.send_error(404, "try /metrics")
                return
            if _peer_gone(self.connection):
                self.close_connection = True
                return
            with scraping:
                stopping = state["stopping"]
                if not stopping:
                    state["scrapes"] += 1
            if stopping:
                self.send_error(503, "the exporter is stopping")
                return
            try:  # counted until the answer is written: stopping waits for it
                self._answer(arrived)
            finally:
                with scraping:
                    state["scrapes"] -= 1
                    scraping.notify_all()

        def _answer(self, arrived: float) -> None:
            try:
                body = render_text(fresh.get(arrived)).encode("utf-8")
            except Exception as exc:  # noqa: BLE001 - one failed scrape must not end the server
                self.send_error(500, f"scrape failed: {type(exc).__name__}")
                return
            try:
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the scraper gave up first (its scrape_timeout): it says so on its side

        def log_message(self, *_args) -> None:  # one line per scrape would drown the warnings
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        def process_request(self, request, client_address) -> None:
            if not slots.acquire(blocking=False):
                try:  # full: say so at once, from the accepting thread, never blocking it
                    request.setblocking(False)
                    request.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
                except OSError:
                    pass
                self.shutdown_request(request)
                return
            try:
                super().process_request(request, client_address)
            except BaseException:
                slots.release()
                raise

        def process_request_thread(self, request, client_address) -> None:
            try:
                super().process_request_thread(request, client_address)
            finally:
                slots.release()

        def handle_error(self, request, client_address) -> None:
            pass  # a client that hangs up mid-answer is normal; nothing to print

    try:
        server = Server((host, port), Handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConflictError(f"{listen} is already in use", hint="pick another port: --listen 127.0.0.1:9465") from None
        raise UsageError(f"cannot listen on {listen}: {exc.strerror or exc}",
                         hint="use an address of this machine, e.g. --listen 127.0.0.1:9464") from None
    thread = threading.Thread(target=server.serve_forever, name="ossctl-metrics-http", daemon=True)
    thread.start()
    shown = f"[{host}]" if ":" in host else host

    def stop() -> None:
        with scraping:
            state["stopping"] = True
        server.shutdown()
        with scraping:  # scrapes in flight finish (each bounds itself) before the process exits
            scraping.wait_for(lambda: state["scrapes"] == 0, STOP_WAIT_S)
        server.server_close()
        thread.join(5)

    return stop, f"http://{shown}:{server.server_address[1]}/metrics"
