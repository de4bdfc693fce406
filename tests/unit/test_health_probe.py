"""health.probe over plain HTTP (http.client, no httpx): the key goes as a bearer token,
and each answer maps to the same word as before."""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler

from ossctl.serve import health
from tests.support.net import http_server, url


class _Keyed(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server API
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        ok = self.headers.get("Authorization") == "Bearer k1"
        body = b'{"status":"ok"}' if ok else b'{"error":"Invalid API Key"}'
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_probe_sends_the_key_and_maps_the_answer():
    with http_server(_Keyed, seen=[]) as srv:
        assert health.probe(url(srv), "k1") == "ok"
        assert health.probe(url(srv), None) == "error 401"
        assert health.probe(url(srv), "wrong") == "error 401"
        assert srv.seen == [("/health", "Bearer k1"), ("/health", None), ("/health", "Bearer wrong")]


def test_plain_http_probe_needs_no_httpx():
    import subprocess

    code = ("import sys; from ossctl.serve import health; "
            "r = health.probe('http://127.0.0.1:9', timeout=0.5); print(r, 'httpx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["unreachable", "False"]
