"""A small Hugging Face Hub-compatible HTTP server for tests and benches.

It answers what huggingface_hub and ossctl ask for:
- ``GET /api/models/{repo}[/revision/{rev}]`` (model info; ``?blobs=true`` adds LFS sha256)
- ``GET /api/models/{repo}/tree/{rev}`` (tree listing used by ``hf download``)
- ``HEAD|GET /{repo}/resolve/{rev}/{path}`` → 302 to ``/cdn/{sha256}`` like the real Hub
  (with ``X-Repo-Commit``, ``X-Linked-Etag``, ``X-Linked-Size``), and
- ``GET /cdn/{sha256}`` with HTTP Range, served with ``os.sendfile``.

Faults can be injected per test: drop the connection after N bytes, corrupt a byte,
answer a status (401/404/500) for matching paths, require a token, mark a repo gated.
It counts the body bytes sent per file so resume tests can check what was re-fetched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse, parse_qs


@dataclass
class HubFile:
    path: Path
    size: int
    sha256: str
    blob_id: str


@dataclass
class Faults:
    drop_after: dict[str, int] = field(default_factory=dict)  # file name -> bytes to send before dropping (once)
    drop_times: dict[str, int] = field(default_factory=dict)  # file name -> how many responses drop (default 1)
    corrupt: set[str] = field(default_factory=set)  # file names whose byte 100 is flipped when served
    status: list[tuple[str, int, int]] = field(default_factory=list)  # (regex on path, status, times; -1 = always)
    token: str | None = None  # when set, every request must carry "Bearer <token>"
    gated: set[str] = field(default_factory=set)  # repos answered as gated
    ignore_range: bool = False
    delay_per_chunk: float = 0.0  # seconds slept per 64 KiB of body (to make transfers interruptible)
    listed_size: dict[str, int] = field(default_factory=dict)  # file name -> size the listings claim instead


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # a client that hangs up (a cancelled download) is normal here; socketserver would
        # print its traceback to stderr, which in-process CLI tests capture as their own
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class HubServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.repos: dict[str, dict] = {}  # repo -> {"branches": {name: commit}, "commits": {commit: {name: HubFile}}}
        self.blobs: dict[str, HubFile] = {}
        self.faults = Faults()
        self.bytes_sent: dict[str, int] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self._lock = threading.Lock()
        self._active = 0  # body transfers in flight
        server = self

        class Handler(_Handler):
            hub = server

        self.httpd = _QuietServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def add_repo(self, repo: str, files: list[Path], branch: str = "main", commit: str | None = None,
                 names: list[str] | None = None) -> str:
        """Publish ``files`` (served under their base names, or ``names``) as a new commit
        on ``branch``; returns the commit."""
        entries = {}
        for i, p in enumerate(files):
            p = Path(p)
            sha = _sha256(p)
            hf = HubFile(p, p.stat().st_size, sha, hashlib.sha1(sha.encode()).hexdigest())
            entries[names[i] if names else p.name] = hf
            self.blobs[sha] = hf
        commit = commit or hashlib.sha1((repo + branch + "".join(sorted(e.sha256 for e in entries.values()))).encode()).hexdigest()
        r = self.repos.setdefault(repo, {"branches": {}, "commits": {}})
        r["commits"][commit] = entries
        r["branches"][branch] = commit
        return commit

    def wait_idle(self, timeout: float = 30) -> None:
        """Wait until no body transfer is in flight (a killed client's transfer may still
        be unwinding on the server)."""
        import time

        deadline = time.monotonic() + timeout
        while self._active and time.monotonic() < deadline:
            time.sleep(0.01)

    def reset_counters(self) -> None:
        self.wait_idle()
        with self._lock:
            self.bytes_sent.clear()
            self.requests.clear()

    def sent(self, name: str) -> int:
        return self.bytes_sent.get(name, 0)

    # -- lookups used by the handler
    def commit_of(self, repo: str, rev: str) -> str | None:
        r = self.repos.get(repo)
        if not r:
            return None
        if rev in r["commits"]:
            return rev
        return r["branches"].get(rev)


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for b in iter(lambda: fh.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    # -- helpers
    def _json(self, status: int, obj, headers: dict | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str | None = None, message: str = "") -> None:
        headers = {}
        if code:
            headers["X-Error-Code"] = code
        if message:
            headers["X-Error-Message"] = message
        self._json(status, {"error": message or code or "error"}, headers)

    def _fault_status(self, path: str) -> int | None:
        hub = self.hub
        with hub._lock:
            for i, (rx, status, times) in enumerate(hub.faults.status):
                if re.search(rx, path) and times != 0:
                    if times > 0:
                        hub.faults.status[i] = (rx, status, times - 1)
                    return status
        return None

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _route(self) -> None:
        hub = self.hub
        parsed = urlparse(self.path)
        path = unquote(parsed.path)
        with hub._lock:
            hub.requests.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
        status = self._fault_status(path)
        if status is not None:
            code = {404: "RepoNotFound", 401: None}.get(status)
            return self._error(status, code, "injected")
        if hub.faults.token is not None and self.headers.get("Authorization") != f"Bearer {hub.faults.token}":
            if not path.startswith("/cdn/"):
                return self._error(401, None, "Invalid username or password.")
        m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?/?$", path)
        if m:
            return self._model_info(m[1], unquote(m[2]) if m[2] else "main", parse_qs(parsed.query))
        m = re.match(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?$", path)
        if m:
            return self._tree(m[1], m[2])
        m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if m:
            return self._resolve(m[1], m[2], m[3])
        m = re.match(r"^/cdn/([0-9a-f]{64})$", path)
        if m:
            return self._blob(m[1])
        return self._error(404, None, "no route")

    def _repo_commit(self, repo: str, rev: str):
        if repo not in self.hub.repos:
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        if repo in self.hub.faults.gated:
            self._error(403, "GatedRepo", "Access to model is restricted.")
            return None
        commit = self.hub.commit_of(repo, rev)
        if commit is None:
            self._error(404, "RevisionNotFound", "Invalid rev id")
            return None
        return commit

    def _model_info(self, repo: str, rev: str, query: dict) -> None:
        commit = self._repo_commit(repo, rev)
        if commit is None:
            return
        files = self.hub.repos[repo]["commits"][commit]
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for name, f in sorted(files.items()):
            s = {"rfilename": name}
            if blobs:
                size = self.hub.faults.listed_size.get(name, f.size)
                s.update({"size": size, "blobId": f.blob_id,
                          "lfs": {"sha256": f.sha256, "size": size, "pointerSize": 134}})
            siblings.append(s)
        self._json(200, {"_id": "x", "id": repo, "modelId": repo, "sha": commit, "private": False,
                         "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": ["gguf"],
                         "lastModified": "2026-01-01T00:00:00.000Z", "siblings": siblings})

    def _tree(self, repo: str, rev: str) -> None:
        commit = self._repo_commit(repo, unquote(rev))
        if commit is None:
            return
        files = self.hub.repos[repo]["commits"][commit]
        self._json(200, [{"type": "file", "oid": f.blob_id, "size": f.size, "path": name,
                          "lfs": {"oid": f.sha256, "size": f.size, "pointerSize": 134}}
                         for name, f in sorted(files.items())])

    def _resolve(self, repo: str, rev: str, name: str) -> None:
        commit = self._repo_commit(repo, unquote(rev))
        if commit is None:
            return
        f = self.hub.repos[repo]["commits"][commit].get(name)
        if f is None:
            return self._error(404, "EntryNotFound", "Entry not found")
        # like the real Hub, LFS content lives on another origin (the real one is a CDN):
        # clients must not carry the hub's Authorization there, and huggingface_hub reads
        # the file's metadata from this 302 instead of following it
        port = self.server.server_address[1]
        cdn_host = "localhost" if self.headers.get("Host", "").startswith("127.") else "127.0.0.1"
        self.send_response(302)
        self.send_header("Location", f"http://{cdn_host}:{port}/cdn/{f.sha256}")
        self.send_header("X-Repo-Commit", commit)
        self.send_header("X-Linked-Etag", f'"{f.sha256}"')
        self.send_header("X-Linked-Size", str(f.size))
        self.send_header("ETag", f'"{f.blob_id}"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _blob(self, sha: str) -> None:
        hub = self.hub
        f = hub.blobs.get(sha)
        if f is None:
            return self._error(404, None, "no blob")
        name = f.path.name
        start, end = 0, f.size - 1
        rng = self.headers.get("Range")
        partial = False
        if rng and not hub.faults.ignore_range:
            m = re.match(r"bytes=(\d+)-(\d*)$", rng)
            if not m:
                return self._error(400, None, "bad range")
            start = int(m[1])
            end = int(m[2]) if m[2] else f.size - 1
            if start >= f.size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{f.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            partial = True
        length = end - start + 1
        self.send_response(206 if partial else 200)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{sha}"')
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end}/{f.size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        limit = length
        drop = False
        with hub._lock:
            if name in hub.faults.drop_after:
                limit = min(length, hub.faults.drop_after[name])
                left = hub.faults.drop_times.get(name, 1) - 1
                if left <= 0:
                    del hub.faults.drop_after[name]
                hub.faults.drop_times[name] = left
                drop = True
        sent = 0
        with hub._lock:
            hub._active += 1
        try:
            with open(f.path, "rb") as fh:
                if name in hub.faults.corrupt or hub.faults.delay_per_chunk:
                    fh.seek(start)
                    while sent < limit:
                        chunk = bytearray(fh.read(min(65536, limit - sent)))
                        if name in hub.faults.corrupt and start + sent <= 100 < start + sent + len(chunk):
                            chunk[100 - start - sent] ^= 0xFF
                        self.wfile.write(chunk)
                        sent += len(chunk)
                        if hub.faults.delay_per_chunk:
                            import time

                            time.sleep(hub.faults.delay_per_chunk)
                else:
                    self.wfile.flush()
                    while sent < limit:
                        n = os.sendfile(self.connection.fileno(), fh.fileno(), start + sent, limit - sent)
                        if n == 0:
                            break
                        sent += n
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with hub._lock:
                hub.bytes_sent[name] = hub.bytes_sent.get(name, 0) + sent
                hub._active -= 1
        if drop and sent < length:
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.close_connection = True


def main() -> None:
    import argparse
    import time

    ap = argparse.ArgumentParser(description="serve GGUF files as a tiny hub repo")
    ap.add_argument("repo")
    ap.add_argument("files", nargs="+")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    hub = HubServer(port=a.port).start()
    hub.add_repo(a.repo, [Path(f) for f in a.files])
    print(hub.url, flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
