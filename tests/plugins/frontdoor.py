"""The front-door image for tests, built locally (no registry is reachable): ``docker
import`` of Debian's ``caddy`` binary (package caddy) at /usr/bin/caddy, its shared
libraries, and Debian's static busybox for ``sh`` and ``wget`` — the two tools the
official ``caddy:2`` image (Alpine) also has, which ossctl uses to reach the Caddy admin
API from inside the container."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from tests.plugins.docker_engine import import_image, rootfs_tar

FRONTDOOR_TEST_IMAGE = "ossctl-test/caddy:deb"


def _binary(name: str, package: str) -> Path:
    found = shutil.which(name) or (f"/bin/{name}" if Path(f"/bin/{name}").exists() else None)
    if not found:
        pytest.skip(f"{name} is not installed (apt-get install {package}; scripts/test.sh does)")
    return Path(found).resolve()


def frontdoor_image_into(client) -> str:
    """Import the Caddy test image into ``client``'s engine (skipped when present)."""
    caddy, busybox = _binary("caddy", "caddy"), _binary("busybox", "busybox-static")
    stamp = hashlib.sha256(b"layout-2" + caddy.read_bytes() + busybox.read_bytes()).hexdigest()[:16]
    tar = rootfs_tar({"usr/bin/caddy": caddy, "bin/busybox": busybox},
                     dirs={"tmp": 0o1777, "usr": 0o755, "usr/bin": 0o755, "bin": 0o755, "etc": 0o755,
                           "config": 0o755, "data": 0o755},
                     links={"bin/sh": "busybox", "bin/wget": "busybox", "bin/timeout": "busybox"})
    changes = ["ENV PATH=/usr/bin:/bin", "ENV XDG_CONFIG_HOME=/config", "ENV XDG_DATA_HOME=/data",
               'CMD ["caddy", "run"]']
    return import_image(client, tar, FRONTDOOR_TEST_IMAGE, changes, stamp)


@pytest.fixture(scope="session")
def frontdoor_image(docker_client) -> str:
    """Tag of the Caddy front-door test image on the shared test engine."""
    return frontdoor_image_into(docker_client)
