"""Three real Docker engines for fleet tests, each in its own network namespace with its
own bridge and subnet, reached the three ways the docker CLI reaches an engine: a unix
socket, tcp:// with TLS (certificates made for the run), and ssh:// (Debian's sshd inside
the namespace, key auth). scripts/fleet_engines.sh starts and stops them; this plugin
runs it once per session and always stops it at the end.

Fixtures:
- ``fleet`` (session): a :class:`Fleet` of three :class:`Engine` (``unix``, ``tls``,
  ``ssh``), with the test images already imported (``fleet.llama_image``,
  ``fleet.frontdoor_image`` of the default front-door kind, ``fleet.caddy_image``; the
  llama one only when ``fleet_llama`` is requested).
- ``fleet_llama`` (session): the same fleet with the llama-server test image on every engine.
- ``fleet_env`` (function): the fleet, with PATH set so ``ssh`` uses the run's key and
  known_hosts, and a fresh ``fleet_env.profile`` name; containers labelled with
  ``fleet_env.labels`` or ``ossctl.profile=<fleet_env.profile>`` are removed from every
  engine afterwards.

Needs root, iproute2, nsenter (util-linux), dockerd, openssh-server and openssl:
skipped without them locally, failed under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "fleet_engines.sh"


@dataclass
class Engine:
    name: str          # "unix" | "tls" | "ssh"
    docker_host: str   # the endpoint ossctl is given
    env: dict[str, str]  # DOCKER_TLS_VERIFY / DOCKER_CERT_PATH for the tls engine, else {}
    addr: str          # the engine host's address on the fleet bridge (reachable from here)
    netns: str
    socket: str        # its unix socket, for the test's own set-up and checks
    client: object     # docker.DockerClient on ``socket``

    def runtime(self, timeout: int = 60):
        """An ossctl DockerRuntime the way a user reaches this engine (ssh needs fleet_env's PATH)."""
        from ossctl.serve.docker_runtime import DockerRuntime

        return DockerRuntime(self.docker_host, self.env, timeout=timeout)


@dataclass
class Fleet:
    dir: Path
    engines: list[Engine]
    ssh_bin: str            # put first on PATH: `ssh` with the accepted key
    wrong_ssh_bin: str      # ... with a key the engine host refuses
    wrong_cert_path: str    # client certificate from another CA (and that CA as ca.pem)
    frontdoor_image: str = ""
    caddy_image: str = ""
    llama_image: str = ""
    labels: dict[str, str] = field(default_factory=dict)  # put these on a test's own containers
    profile: str = ""  # a fresh profile name per test (front doors and releases carry it)

    def engine(self, name: str) -> Engine:
        return next(e for e in self.engines if e.name == name)


def _require_tools() -> None:
    missing = [t for t in ("ip", "nsenter", "dockerd", "docker", "openssl", "ssh-keygen")
               if shutil.which(t) is None]
    if not Path("/usr/sbin/sshd").exists():
        missing.append("sshd (openssh-server)")
    why = "not root" if os.geteuid() != 0 else (f"missing {', '.join(missing)}" if missing else "")
    if why:
        msg = f"fleet engines need root and iproute2, util-linux, docker.io, openssh-server, openssl: {why}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def fleet():
    import docker

    from tests.plugins.frontdoor import caddy_image_into, frontdoor_image_into

    _require_tools()
    subprocess.run(["bash", str(SCRIPT), "reap"], check=False, capture_output=True)
    d = Path(tempfile.mkdtemp(prefix="ossfl-", dir="/tmp"))
    env = {**os.environ, "OSSCTL_FLEET_OWNER": str(os.getpid())}
    clients: list = []
    try:
        res = subprocess.run(["bash", str(SCRIPT), "start", str(d)], env=env, capture_output=True, text=True, timeout=180)
        if res.returncode != 0:
            pytest.fail(f"fleet engines did not start: {res.stderr[-2000:]}")
        info = json.loads((d / "engines.json").read_text())
        engines = []
        for e in info["engines"]:
            c = docker.DockerClient(base_url=e["socket"], timeout=120)
            clients.append(c)
            tls_env = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": e["cert_path"]} if e["name"] == "tls" else {}
            engines.append(Engine(e["name"], e["docker_host"], tls_env, e["addr"], e["netns"], e["socket"], c))
        by = {e["name"]: e for e in info["engines"]}
        f = Fleet(d, engines, by["ssh"]["ssh_bin"], by["ssh"]["wrong_ssh_bin"], by["tls"]["wrong_cert_path"])
        for e in engines:
            f.frontdoor_image = frontdoor_image_into(e.client)
            f.caddy_image = caddy_image_into(e.client)
        yield f
    finally:
        for c in clients:
            c.close()
        subprocess.run(["bash", str(SCRIPT), "stop", str(d)], check=False, capture_output=True, timeout=180)


@pytest.fixture(scope="session")
def fleet_llama(fleet):
    from tests.plugins.docker_engine import llama_image_into, llama_server_binary

    server = llama_server_binary()
    first, *others = fleet.engines
    fleet.llama_image = llama_image_into(first.client, server)
    # the same image (one id) on every host, as `docker save | docker load` gives a real fleet
    img = first.client.images.get(fleet.llama_image)
    data = None
    for e in others:
        try:
            if e.client.images.get(fleet.llama_image).id == img.id:
                continue
        except Exception:  # noqa: BLE001 - not there yet
            pass
        data = data or b"".join(img.save(named=True))
        e.client.images.load(data)
    return fleet


@pytest.fixture
def fleet_env(fleet, monkeypatch):
    monkeypatch.setenv("PATH", f"{fleet.ssh_bin}:{os.environ['PATH']}")
    tag = uuid.uuid4().hex[:8]
    fleet.labels = {"ossctl.test.fleet": tag}
    fleet.profile = f"fl{tag}"
    yield fleet
    for e in fleet.engines:
        for flt in (f"ossctl.test.fleet={tag}", f"ossctl.profile={fleet.profile}"):
            for c in e.client.containers.list(all=True, filters={"label": [flt]}):
                try:
                    c.remove(force=True)
                except Exception:  # noqa: BLE001 - best-effort cleanup
                    pass


__all__ = ["Engine", "Fleet"]
