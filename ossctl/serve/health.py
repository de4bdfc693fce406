"""The health gate for a llama-server: ``/health`` (503 while loading, 200 when ready),
``/props`` (expected model file and context), then a smoke chat completion both
non-streaming and streaming. All calls go to the endpoint published on the host.

Failures raise :class:`~ossctl.errors.DeployError`; the rollout turns that into a rollback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
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


def _client(base_url: str, api_key: str | None, timeout: float):
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    # trust_env=False: never route the loopback health checks through a proxy from env.
    # A plain-HTTP server never sees TLS: no context (loading the CA bundle is ~20 ms)
    verify = _ssl_context() if base_url.startswith("https:") else False
    return httpx.Client(base_url=base_url, headers=headers, timeout=timeout, trust_env=False, verify=verify)


def probe(base_url: str, api_key: str | None = None, timeout: float = 2.0) -> str:
    """One ``/health`` call: "ok", "loading" (503), "unreachable" or "error <code>"."""
    if base_url.startswith("http://"):
        code = _plain_get_status(base_url, "/health", api_key, timeout)
    else:
        import httpx

        try:
            with _client(base_url, api_key, timeout) as c:
                code = c.get("/health").status_code
        except httpx.HTTPError:
            code = None
    if code is None:
        return "unreachable"
    if code == 200:
        return "ok"
    if code == 503:
        return "loading"
    return f"error {code}"


def _plain_get_status(base_url: str, path: str, api_key: str | None, timeout: float) -> int | None:
    """The status code of ``GET path`` on a plain-HTTP ``base_url`` (None: no answer),
    through http.client: a probe of ``status`` or of a metrics scrape per release costs
    ~0.2 ms of CPU this way against ~1.5 ms with an httpx client, and a fresh ``status``
    does not import httpx (~40 ms; bench/metrics_scrape.py, bench/status_latency.py)."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
        res = conn.getresponse()
        res.read()
        return res.status
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def wait_ready(base_url: str, timeout: float, api_key: str | None,
               container_state: Callable[[], dict[str, Any] | None],
               logs: Callable[[], str]) -> float:
    """Poll ``/health`` until 200. Fails fast when the container stops running (shows the
    last log lines) and after ``timeout`` seconds. Returns the seconds waited."""
    import httpx

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
                r = c.get("/health")
                if r.status_code == 200:
                    return time.monotonic() - t0
                last = f"/health answered {r.status_code}"
            except httpx.HTTPError as exc:
                last = f"/health unreachable ({type(exc).__name__})"
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
    import httpx

    try:
        with _client(base_url, api_key, 10.0) as c:
            r = c.get("/props")
            r.raise_for_status()
            props = r.json()
    except (httpx.HTTPError, ValueError) as exc:
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
    import httpx

    body = {"messages": SMOKE_PROMPT, "max_tokens": 4, "temperature": 0}
    try:
        with _client(base_url, api_key, timeout) as c:
            r = c.post("/v1/chat/completions", json=body)
            if r.status_code != 200:
                raise DeployError(f"smoke completion failed: HTTP {r.status_code}: {r.text[:200]}")
            data = r.json()
            choice = (data.get("choices") or [None])[0]
            if not choice or "message" not in choice:
                raise DeployError(f"smoke completion returned no choice: {str(data)[:200]}")
            text = choice["message"].get("content") or ""
            chunks, done = 0, False
            with c.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as s:
                if s.status_code != 200:
                    raise DeployError(f"streaming smoke completion failed: HTTP {s.status_code}")
                for line in s.iter_lines():
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
    except (httpx.HTTPError, ValueError) as exc:
        raise DeployError(f"smoke completion failed: {exc}") from None
    return {"text": text, "stream_chunks": chunks}
