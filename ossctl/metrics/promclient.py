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


def serve(listen: str, scrape: Callable[[], Iterable[Family]]) -> tuple[Callable[[], None], str]:
    """Serve ``scrape()`` on ``listen`` (``GET /metrics``; ``/`` too) in background
    threads. Always the text format 0.0.4: prometheus_client's OpenMetrics writer would
    rename llama-server's ``llamacpp:*`` metrics to ``llamacpp_*``. Returns ``(stop,
    url)``. Raises :class:`ConflictError` when the address is taken, :class:`UsageError`
    when it cannot be bound."""
    import errno
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    host, port = parse_listen(listen)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                self.send_error(404, "try /metrics")
                return
            body = render_text(scrape()).encode("utf-8")
            try:
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the scraper gave up first (its scrape_timeout): it says so on its side

        def log_message(self, *_args) -> None:  # one line per scrape would drown the warnings
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

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
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop, f"http://{shown}:{server.server_address[1]}/metrics"
