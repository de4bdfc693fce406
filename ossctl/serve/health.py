"""The health gate for a llama-server: ``/health`` (503 while loading, 200 when ready),
``/props`` (expected model file and context), then a smoke chat completion both
non-streaming and streaming. All calls go to the endpoint published on the host.

Failures raise :class:`~ossctl.errors.DeployError`; the rollout turns that into a rollback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from ossctl.errors import DeployError
from ossctl.serve import Log, nolog

SMOKE_PROMPT = [{"role": "user", "content": "Say OK."}]


_SSL_CONTEXT = None


def _ssl_context():
    # One TLS context for every client: building one (loading the CA bundle) costs ~20 ms
    # of CPU, which a /health probe per release per `ossctl status` or metrics scrape repeats.
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        import httpx

        _SSL_CONTEXT = httpx.create_ssl_context()
    return _SSL_CONTEXT


def _client(base_url: str, api_key: str | None, timeout: float) -> _Conn:
    return _Conn(base_url, api_key, timeout)


class HTTPFailure(Exception):
    """No answer (refused, reset, timed out, not HTTP); ``kind`` names what happened."""

    def __init__(self, kind: str, text: str):
        super().__init__(text)
        self.kind = kind


class _Conn:
    """The requests the gate makes to one server, on one kept connection: http.client for
    plain HTTP (what a release publishes), httpx for https://. Why two: httpx and httpcore
    are ~0.1 s of imports (0.4 s on a loaded machine) in every deploy's process before its
    gate can ask /health, http.client ~20 ms (bench/deploy_overhead.py)."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float):
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._plain = base_url.startswith("http://")
        if self._plain:
            import http.client
            from urllib.parse import urlsplit

            u = urlsplit(base_url)
            self._http = http.client
            self._c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
        else:
            import httpx

            self._httpx = httpx
            # trust_env=False: never route the health checks through a proxy from env
            self._c = httpx.Client(base_url=base_url, headers=self._headers, timeout=timeout, trust_env=False,
                                   verify=_ssl_context())

    def __enter__(self) -> _Conn:
        return self

    def __exit__(self, *exc) -> None:
        self._c.close()

    @staticmethod
    def _failure(exc: Exception) -> HTTPFailure:
        return HTTPFailure(type(exc).__name__, str(exc) or type(exc).__name__)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        """(status, body) of one request; ``body`` is sent as JSON. Raises :class:`HTTPFailure`."""
        if not self._plain:
            try:
                r = self._c.request(method, path, json=body)
                return r.status_code, r.content
            except self._httpx.HTTPError as exc:
                raise self._failure(exc) from None
        data = json.dumps(body).encode() if body is not None else None
        headers = {**self._headers, **({"Content-Type": "application/json"} if data is not None else {})}
        for attempt in (1, 2):
            try:
                self._c.request(method, path, body=data, headers=headers)
                res = self._c.getresponse()
                return res.status, res.read()
            except (self._http.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # a kept connection the server closed between two requests: a GET once more, anew
                self._c.close()
                if attempt == 2 or method != "GET":
                    raise self._failure(exc) from None
            except (OSError, self._http.HTTPException) as exc:
                self._c.close()
                raise self._failure(exc) from None
        raise AssertionError("unreachable")

    def stream_lines(self, path: str, body: dict) -> tuple[int, Iterator[str]]:
        """POST ``body`` as JSON; (status, the answer's lines as they arrive). Raises
        :class:`HTTPFailure` (also while the lines are read)."""
        if not self._plain:
            import contextlib

            stack = contextlib.ExitStack()
            try:
                r = stack.enter_context(self._c.stream("POST", path, json=body))
            except self._httpx.HTTPError as exc:
                stack.close()
                raise self._failure(exc) from None

            def lines() -> Iterator[str]:
                with stack:
                    try:
                        yield from r.iter_lines()
                    except self._httpx.HTTPError as exc:
                        raise self._failure(exc) from None

            return r.status_code, lines()
        try:
            self._c.request("POST", path, body=json.dumps(body).encode(),
                            headers={**self._headers, "Content-Type": "application/json"})
            res = self._c.getresponse()
        except (OSError, self._http.HTTPException) as exc:
            self._c.close()
            raise self._failure(exc) from None

        def plain_lines() -> Iterator[str]:
            try:
                while line := res.readline():
                    yield line.decode("utf-8", "replace").rstrip("\r\n")
            except (OSError, self._http.HTTPException) as exc:
                raise self._failure(exc) from None
            finally:
                res.close()

        return res.status, plain_lines()


def probe(base_url: str, api_key: str | None = None, timeout: float = 2.0) -> str:
    """One ``/health`` call: "ok", "loading" (503), "unreachable" or "error <code>".
    Plain HTTP goes through http.client: a probe per release per status or metrics scrape
    costs ~0.2 ms of CPU this way against ~1.5 ms with an httpx client, and a fresh
    ``status`` does not import httpx (bench/metrics_scrape.py, bench/status_latency.py)."""
    try:
        with _client(base_url, api_key, timeout) as c:
            code, _ = c.request("GET", "/health")
    except HTTPFailure:
        return "unreachable"
    if code == 200:
        return "ok"
    if code == 503:
        return "loading"
    return f"error {code}"


def wait_ready(base_url: str, timeout: float, api_key: str | None,
               container_state: Callable[[], dict[str, Any] | None],
               logs: Callable[[], str]) -> float:
    """Poll ``/health`` until 200. Fails fast when the container stops running (shows the
    last log lines) and after ``timeout`` seconds. Returns the seconds waited."""
    t0 = time.monotonic()
    # every 20 ms at first, then less often (at most every 0.25 s): a tiny model is ready
    # within a second, and a doubling delay made the deploy notice up to ~0.3 s late; the
    # poll (one engine request, one GET on a kept connection) costs ~0.5 ms of CPU
    delay = 0.02
    last = "no answer yet"
    with _client(base_url, api_key, 5.0) as c:
        while True:
            st = container_state()
            if st is None:
                raise DeployError("the container disappeared while loading")
            if not st["running"] or st["restart_count"] > 0:
                why = "killed for lack of memory (OOM)" if st["oom_killed"] else f"exit code {st['exit_code']}"
                tail = _tail(logs())
                raise DeployError(f"the container exited while loading ({why})" + (f"; last log lines:\n{tail}" if tail else ""))
            try:
                code, _ = c.request("GET", "/health")
                if code == 200:
                    return time.monotonic() - t0
                last = f"/health answered {code}"
            except HTTPFailure as exc:
                last = f"/health unreachable ({exc.kind})"
            if time.monotonic() - t0 > timeout:
                tail = _tail(logs())
                raise DeployError(f"not healthy after {timeout:g} s ({last})" + (f"; last log lines:\n{tail}" if tail else ""))
            time.sleep(delay)
            delay = min(delay * 1.15, 0.25)


def _tail(text: str, n: int = 8) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join("  " + ln for ln in lines[-n:])


def check_props(base_url: str, api_key: str | None, model_file: str, ctx: int, parallel: int) -> dict[str, Any]:
    """``/props`` must name ``model_file`` and give ``ctx`` tokens of context in total
    (per slot × slots, or unified). Returns the relevant facts."""
    try:
        with _client(base_url, api_key, 10.0) as c:
            code, data = c.request("GET", "/props")
        if code >= 400:
            raise DeployError(f"/props failed: HTTP {code}: {data[:200].decode('utf-8', 'replace')}")
        props = json.loads(data)
        if not isinstance(props, dict):
            raise ValueError(f"not a JSON object: {data[:80]!r}")
    except (HTTPFailure, ValueError) as exc:
        raise DeployError(f"/props failed: {exc}") from None
    path = str(props.get("model_path", ""))
    n_ctx = int((props.get("default_generation_settings") or {}).get("n_ctx") or 0)
    slots = int(props.get("total_slots") or 0)
    if not path.endswith("/" + model_file) and path != model_file:
        raise DeployError(f"/props reports model {path!r}, expected {model_file}")
    if ctx not in (n_ctx, n_ctx * max(slots, 1)):
        raise DeployError(f"/props reports context {n_ctx} x {slots} slots, expected {ctx} in total")
    if slots != parallel:
        raise DeployError(f"/props reports {slots} slots, expected {parallel}")
    return {"model_path": path, "n_ctx": n_ctx, "slots": slots, "build": props.get("build_info")}


def gate(base_url: str, api_key: str | None, timeout: float, container_state: Callable[[], dict[str, Any] | None],
         logs: Callable[[], str], model_file: str, ctx: int, parallel: int, log: Log = nolog) -> dict[str, Any]:
    """The gate a started container passes before it counts as serving (deploy, rollback
    and a trial share it): :func:`wait_ready`, then :func:`check_props` (``model_file``,
    ``ctx`` tokens over ``parallel`` slots), then :func:`smoke`. Returns ``{"ready_s"``
    (seconds until /health said 200), ``"props"``, ``"smoke"}``; raises
    :class:`DeployError` naming the step that failed."""
    log(f"waiting for {base_url}/health (timeout {timeout:g} s)")
    ready = wait_ready(base_url, timeout, api_key, container_state, logs)
    props = check_props(base_url, api_key, model_file, ctx, parallel)
    sm = smoke(base_url, api_key)
    log(f"healthy after {ready:.1f} s; /props ok; smoke completion ok (stream {sm['stream_chunks']} chunks)")
    return {"ready_s": round(ready, 3), "props": props, "smoke": sm}


def smoke(base_url: str, api_key: str | None, timeout: float = 120.0) -> dict[str, Any]:
    """A short chat completion, non-streaming then streaming; both must return choices.
    Returns ``{"text": ..., "stream_chunks": n}``."""
    body = {"messages": SMOKE_PROMPT, "max_tokens": 4, "temperature": 0}
    try:
        with _client(base_url, api_key, timeout) as c:
            code, raw = c.request("POST", "/v1/chat/completions", body)
            if code != 200:
                raise DeployError(f"smoke completion failed: HTTP {code}: {raw.decode('utf-8', 'replace')[:200]}")
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError(f"not a JSON object: {raw[:80]!r}")
            choice = (data.get("choices") or [None])[0]
            if not choice or "message" not in choice:
                raise DeployError(f"smoke completion returned no choice: {str(data)[:200]}")
            text = choice["message"].get("content") or ""
            chunks, done = 0, False
            code, lines = c.stream_lines("/v1/chat/completions", {**body, "stream": True})
            if code != 200:
                raise DeployError(f"streaming smoke completion failed: HTTP {code}")
            for line in lines:
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    done = True
                    break
                if json.loads(payload).get("choices"):
                    chunks += 1
            if not chunks or not done:
                raise DeployError("streaming smoke completion returned no chunks" if not chunks
                                  else "streaming smoke completion did not finish with [DONE]")
    except (HTTPFailure, ValueError) as exc:
        raise DeployError(f"smoke completion failed: {exc}") from None
    return {"text": text, "stream_chunks": chunks}
