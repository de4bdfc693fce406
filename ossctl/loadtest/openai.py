"""The OpenAI-compatible API as the load generator speaks it: where the server is
(:class:`Target`), the chat completion request (with a reasoning effort), reading usage
and llama-server's timings from a response or a Server-Sent Events stream, and the
``GET /v1/models`` probe before a run.

Nothing here raises for a bad answer: results land on a :class:`Sample` (an error kind
from :mod:`ossctl.loadtest.stats`); only :func:`probe` and the parsers of user input
raise :class:`OssctlError`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ossctl.catalog import REASONING_EFFORTS
from ossctl.errors import RemoteError, UsageError
from ossctl.loadtest import http11, stats
from ossctl.loadtest.prompts import Prompt
from ossctl.loadtest.stats import Sample

MIXED = "mixed"  # --reasoning-effort: low, medium and high in turn


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


def encode_requests(target: Target, prompts: list[Prompt], max_tokens: int | None, stream: bool,
                    host: str, port: int, prefix: str, tls: bool, effort: str | None = None) -> list[bytes]:
    """The whole ``POST /v1/chat/completions`` request of each prompt, encoded once."""
    hostport = http11.host_header(host, port, tls)
    accept = "text/event-stream" if stream else "application/json"
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
        out.append(http11.post(f"{prefix}/chat/completions", hostport, data, accept, target.api_key))
    return out


def usage_into(sample: Sample, obj: dict) -> None:
    """Token counts (``usage``) and llama-server's ``timings`` of a decoded answer."""
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


def completion_into(sample: Sample, body: bytes) -> bool:
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
        usage_into(sample, obj)
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


class SSE:
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
            usage_into(sample, self.last_usage)


async def probe(target: Target, timeout_s: float = 10.0) -> list[str]:
    """Check that the server answers before a run: ``GET /v1/models``. Returns the model
    ids it lists (empty if it lists none or refuses). Raises :class:`RemoteError` when
    nothing answers at the URL."""
    _, host, port, prefix, tls = target.parts()
    client = http11.Client(host, port, tls)
    # the same Host value as the requests of the run (an IPv6 literal in brackets)
    req = http11.get(f"{prefix}/models", http11.host_header(host, port, tls), "application/json", target.api_key)
    hint = "check the URL and that the server is running (`ossctl status` shows what runs, on which port)"
    try:
        async with asyncio.timeout(timeout_s):
            status, headers = await client.head(req)
            data = await client.body(headers)
    except TimeoutError:
        raise RemoteError(f"{target.base_url} did not answer within {timeout_s:g}s", hint=hint) from None
    except (OSError, http11.Closed, asyncio.LimitOverrunError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        if isinstance(exc, http11.Closed):
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
