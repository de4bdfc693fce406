"""Clients through a front door while its upstreams change, and a CPU hog beside them:
the check that a front door never drops a request (issue 26). Used by
tests/integration/test_frontdoor.py and bench/frontdoor_reload.py.

- pollers: ``GET /health`` in a loop on a kept-alive connection each;
- streamers: streaming chat completions (``stream: true``, ``ignore_eos``) on a kept-alive
  connection each; one counts as failed unless it answers 200 and ends with
  ``data: [DONE]``;
- the changer: drain / enable / drain + swap to a spare upstream, in a loop, as a rolling
  deploy does (every change is one reconfiguration of the proxy);
- the hog: one busy process per core, each ending by itself after ``seconds`` (and killed
  at the end).

Everything is on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

_HOG = "import time\nend = time.monotonic() + float(__import__('sys').argv[1])\nwhile time.monotonic() < end:\n    pass\n"


@dataclass
class Tally:
    requests: int = 0
    failed: int = 0
    by_kind: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    changes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, what: str, error: str | None) -> None:
        with self.lock:
            self.requests += 1
            if error is not None:
                self.failed += 1
                self.by_kind[f"{what}: {error.split(':', 1)[0]}"] += 1
                if len(self.examples) < 5:
                    self.examples.append(f"{what}: {error[:200]}")

    def to_dict(self) -> dict:
        return {"requests": self.requests, "failed": self.failed, "changes": self.changes,
                "by_kind": dict(self.by_kind), "examples": list(self.examples)}


def cpu_hog(seconds: float, n: int | None = None) -> list[subprocess.Popen]:
    """``n`` (default: one per core) busy processes that end by themselves after ``seconds``."""
    return [subprocess.Popen([sys.executable, "-c", _HOG, str(seconds)]) for _ in range(n or os.cpu_count() or 1)]


def stop_hog(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)


def _poller(endpoint: str, stop: threading.Event, tally: Tally) -> None:
    import httpx

    with httpx.Client(base_url=endpoint, trust_env=False, timeout=30) as c:
        while not stop.is_set():
            try:
                r = c.get("/health")
                tally.add("GET /health", None if r.status_code == 200 else f"HTTP {r.status_code}")
            except httpx.HTTPError as exc:
                tally.add("GET /health", f"{type(exc).__name__}: {exc}")
            time.sleep(0.01)


def _streamer(endpoint: str, stop: threading.Event, tally: Tally, max_tokens: int, api_key: str | None) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens, "ignore_eos": True, "stream": True}
    with httpx.Client(base_url=endpoint, trust_env=False, timeout=60, headers=headers) as c:
        while not stop.is_set():
            try:
                with c.stream("POST", "/v1/chat/completions", json=body) as r:
                    if r.status_code != 200:
                        r.read()
                        tally.add("stream", f"HTTP {r.status_code}: {r.text[:80]}")
                        continue
                    done = any(line.strip() == "data: [DONE]" for line in r.iter_lines())
                    tally.add("stream", None if done else "IncompleteStream: no data: [DONE]")
            except httpx.HTTPError as exc:
                tally.add("stream", f"{type(exc).__name__}: {exc}")


def _changer(fd, urls: list[str], stop: threading.Event, tally: Tally, errors: list[BaseException],
             pause: float) -> None:
    """``urls``: the two upstreams in the front door now, then the spare."""
    live, spare = list(urls[:2]), urls[2]
    i = 0
    try:
        while not stop.is_set():
            x = live[i % 2]
            fd.drain(x, timeout=60)
            fd.enable(x)
            time.sleep(pause)
            fd.drain(x, timeout=60)
            fd.swap(x, spare)  # x leaves (drained), the spare comes in enabled
            live[i % 2], spare = spare, x
            with tally.lock:
                tally.changes += 4
            i += 1
            time.sleep(pause)
    except BaseException as exc:  # noqa: BLE001 - reported by churn()
        errors.append(exc)


@contextlib.contextmanager
def clients(endpoint: str, pollers: int = 2, streamers: int = 3, hog_s: float | None = None, max_tokens: int = 16,
            api_key: str | None = None) -> Iterator[Tally]:
    """Pollers and streamers on ``endpoint`` (and the hog, bounded to ``hog_s`` seconds,
    when given) for as long as the block runs; yields the tally, complete once the block
    ended (each client finishes the request it is in)."""
    tally, stop = Tally(), threading.Event()
    procs = cpu_hog(hog_s) if hog_s else []
    threads = [threading.Thread(target=_poller, args=(endpoint, stop, tally)) for _ in range(pollers)]
    threads += [threading.Thread(target=_streamer, args=(endpoint, stop, tally, max_tokens, api_key))
                for _ in range(streamers)]
    try:
        for t in threads:
            t.start()
        yield tally
    finally:
        stop.set()
        for t in threads:
            t.join(120)
        stop_hog(procs)


def churn(fd, urls: list[str], seconds: float, pollers: int = 2, streamers: int = 3, hog: bool = True,
          max_tokens: int = 16, api_key: str | None = None, pause: float = 0.2) -> dict:
    """Route ``fd`` to ``urls[:2]`` (``urls[2]`` is the spare), run the clients and the
    changer for ``seconds`` (with the hog when ``hog``), and return the tally (as a dict).
    Raises what the changer raised."""
    from ossctl.fleet.frontdoor.base import Upstream

    fd.prepare([Upstream(u) for u in urls[:2]])
    stop, errors = threading.Event(), []
    with clients(fd.spec.endpoint, pollers, streamers, seconds + 15 if hog else None, max_tokens, api_key) as tally:
        changer = threading.Thread(target=_changer, args=(fd, urls, stop, tally, errors, pause))
        time.sleep(1)
        changer.start()
        time.sleep(seconds)
        stop.set()
        changer.join(120)
    if errors:
        raise errors[0]
    return tally.to_dict()
