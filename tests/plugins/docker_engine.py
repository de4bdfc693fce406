"""Fixtures for the real Docker engine ($OSSCTL_TEST_DOCKER_HOST) and a real llama-server
image built locally (no registry is reachable): ``docker import`` of a tiny rootfs holding
$OSSCTL_TEST_LLAMA_BIN/llama-server at /app/llama-server (the layout of the upstream
``ghcr.io/ggml-org/llama.cpp:server`` images, entrypoint included) plus the shared
libraries ``ldd`` lists and the ld-linux loader. Also a tiny 3-part GGUF model with its
manifest, and a per-test serve environment with a fresh profile on a free port."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import re
import subprocess
import tarfile
import tempfile
import threading
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require_env
from tests.support.net import free_port_pair

TEST_IMAGE_REPO = "ossctl-test/llama-server"
# tagged like the upstream CPU image of the build the shipped profiles pin: the tests run
# that build (.ci/build_llama.sh stamps it; tests/unit/test_llama_flags.py checks the pin)
SHIPPED_PIN = tomllib.loads((Path(__file__).parents[2] / "ossctl" / "profiles" / "cpu.toml").read_text())["llama_build"]
TEST_IMAGE_TAG = f"server-{SHIPPED_PIN}"
TEST_IMAGE = f"{TEST_IMAGE_REPO}:{TEST_IMAGE_TAG}"


def _docker0_ifindex() -> int | None:
    try:
        return int(Path("/sys/class/net/docker0/ifindex").read_text())
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="session", autouse=True)
def machine_docker0_kept():
    """The suite leaves the machine's networking as it found it: a docker0 (another engine's
    bridge: a developer's Docker, a CI runner's) present at the start is the same link at
    the end (private_dockerd.sh once made a restarted test engine delete it)."""
    before = _docker0_ifindex()
    yield
    if before is not None and _docker0_ifindex() != before:
        pytest.fail("the test run deleted or replaced this machine's docker0 (see scripts/private_dockerd.sh)")


@pytest.fixture(scope="session")
def docker_host() -> str:
    return require_env("OSSCTL_TEST_DOCKER_HOST")


@pytest.fixture(scope="session")
def docker_client(docker_host):
    import docker

    c = docker.DockerClient(base_url=docker_host, timeout=120)
    c.ping()
    yield c
    c.close()


def _ldd(binary: Path) -> list[Path]:
    # a static binary: ldd says "not a dynamic executable" and exits 1
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m:
            libs.append(Path(m.group(1)))
    return libs


def rootfs_tar(files: dict[str, Path], dirs: dict[str, int] | None = None,
               links: dict[str, str] | None = None) -> bytes:
    """A tar for ``docker import``: ``files`` ({path in the image: file here}, each with the
    shared libraries ``ldd`` lists at the paths ldd found them, symlinks dereferenced),
    empty ``dirs`` ({path: mode}) and symlinks ``links`` ({path: target})."""
    buf = io.BytesIO()
    added: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d, mode in (dirs or {}).items():
            ti = tarfile.TarInfo(d.strip("/"))
            ti.type, ti.mode = tarfile.DIRTYPE, mode
            tar.addfile(ti)
        for arc, src in files.items():
            tar.add(str(src), arcname=arc.strip("/"), recursive=False)
            for lib in _ldd(src):
                if str(lib) not in added:
                    added.add(str(lib))
                    tar.add(str(lib.resolve()), arcname=str(lib).lstrip("/"), recursive=False)
        for path, target in (links or {}).items():
            ti = tarfile.TarInfo(path.strip("/"))
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            tar.addfile(ti)
    return buf.getvalue()


def build_rootfs_tar(llama_server: Path) -> bytes:
    """A tar of /app/llama-server + its libraries + an empty /tmp, and ``sha256sum`` and
    ``rm`` (Debian's static busybox), which the official llama.cpp images (Ubuntu) have too:
    a fleet preflight hashes each host's model files with it, ledger retention removes old
    records with it."""
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        msg = "busybox is not installed (apt-get install busybox-static; scripts/test.sh does)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return rootfs_tar({"app/llama-server": llama_server, "bin/busybox": busybox.resolve()},
                      dirs={"tmp": 0o1777, "app": 0o755, "bin": 0o755, "usr": 0o755, "usr/bin": 0o755},
                      links={"usr/bin/sha256sum": "/bin/busybox", "usr/bin/rm": "/bin/busybox"})


def import_image(client, tar: bytes, tag: str, changes: list[str], stamp: str) -> str:
    """``docker import`` ``tar`` as ``tag`` into the engine of ``client`` unless an image
    with the label ``ossctl.test.binsha=stamp`` is already there. Returns ``tag``."""
    import docker.errors

    try:
        img = client.images.get(tag)
        if (img.labels or {}).get("ossctl.test.binsha") == stamp:
            return tag
    except docker.errors.ImageNotFound:
        pass
    repo, _, version = tag.rpartition(":")
    client.api.import_image_from_data(tar, repository=repo, tag=version,
                                      changes=[*changes, f"LABEL ossctl.test.binsha={stamp}"])
    return tag


def llama_server_binary() -> Path:
    return Path(require_env("OSSCTL_TEST_LLAMA_BIN")) / "llama-server"


def llama_image_into(client, server: Path) -> str:
    """Import the llama-server test image into ``client``'s engine (skipped when present)."""
    digest = hashlib.sha256(b"layout-3" + server.read_bytes()).hexdigest()[:16]
    return import_image(client, build_rootfs_tar(server), TEST_IMAGE, ['ENTRYPOINT ["/app/llama-server"]',
                                                                        "ENV PATH=/usr/bin:/bin"], digest)


@pytest.fixture(scope="session")
def llama_image(docker_client) -> str:
    """Tag of a local image running the CPU llama-server build; rebuilt when the binary
    changes (its sha256 is a label)."""
    return llama_image_into(docker_client, llama_server_binary())


@dataclass
class OwnEngine:
    """A private dockerd of one test's own (scripts/private_dockerd.sh), which the test may
    stop and start again; the llama-server test image is loaded into it."""

    dir: Path
    host: str

    def start(self) -> None:
        subprocess.run(["bash", str(SCRIPTS / "private_dockerd.sh"), "start", str(self.dir)], check=True,
                       capture_output=True, text=True)

    def stop(self) -> None:
        """Stop the daemon (its containers stop with it), keeping its data and bridge."""
        pid = int((self.dir / "pid").read_text())
        subprocess.run(["kill", str(pid)], check=True)
        for _ in range(1200):  # it first stops its containers (up to their stop timeout)
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.05)
        raise RuntimeError("dockerd did not stop")


SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture
def own_engine(tmp_path_factory, docker_client, llama_image):
    """A fresh private engine (needs root, like scripts/test.sh) with the test image."""
    import docker

    d = Path(tempfile.mkdtemp(prefix="ossctl-own-", dir="/tmp"))  # short: the socket path has a length limit
    r = subprocess.run(["bash", str(SCRIPTS / "private_dockerd.sh"), "start", str(d)], capture_output=True, text=True)
    if r.returncode:
        if os.environ.get("CI"):
            pytest.fail(f"cannot start a private dockerd: {r.stderr[-500:]}")
        pytest.skip("cannot start a private dockerd (needs root)")
    eng = OwnEngine(d, r.stdout.strip().split("=", 1)[1])
    try:
        c = docker.DockerClient(base_url=eng.host, timeout=120)
        c.images.load(b"".join(docker_client.images.get(llama_image).save(named=True)))
        c.close()
        yield eng
    finally:
        subprocess.run(["bash", str(SCRIPTS / "private_dockerd.sh"), "stop", str(d)], capture_output=True)
        subprocess.run(["rm", "-rf", str(d)], capture_output=True)


def make_model_dir(directory: Path, name: str = "tiny", parts: int = 3, repo: str = "ossctl-test/tiny-GGUF",
                   oss: bool = False) -> Path:
    """Write the tiny split model (``oss``: the one-file tiny gpt-oss model, harmony-shaped
    template) and its manifest into ``directory``."""
    from ossctl.artifacts import hashing
    from ossctl.artifacts.manifest import FileEntry, build_manifest, write_manifest
    from tests.support.ggufgen import write_model
    from tests.support.ossgen import write_oss

    paths = [write_oss(directory, name)] if oss else write_model(directory, name, parts=parts)
    digests = hashing.sha256_files(paths)
    entries = [FileEntry(p.name, p.stat().st_size, d, p.stat().st_mtime_ns) for p, d in zip(paths, digests)]
    write_manifest(directory, build_manifest(repo, "0" * 40, directory, entries, {"split.count": len(paths)}))
    return directory


@pytest.fixture(scope="session")
def serve_model(tmp_path_factory) -> Path:
    """The tiny 3-part model (with manifest) the serve tests deploy."""
    return make_model_dir(tmp_path_factory.mktemp("serve-models") / "tiny")


@dataclass
class ServeEnv:
    home: Path
    docker_host: str
    image: str
    model_dir: Path
    client: object
    profile: str
    port: int
    names: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.docker_host}

    def write_profile(self, name: str | None = None, **over) -> str:
        """Write ``$OSSCTL_HOME/profiles/NAME.toml`` extending the shipped cpu profile with
        the test image, the tiny model, ctx 512 and this test's port; ``over`` adds keys."""
        import tomli_w

        name = name or self.profile
        doc = {"extends": "cpu", "image": self.image, "model": str(self.model_dir), "ctx": 512,
               "port": self.port, "health_timeout": 60, "strategy": "recreate", "batch": 64, "ubatch": 64}
        doc.update(over)
        d = self.home / "profiles"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.toml").write_text(tomli_w.dumps(doc))
        if name not in self.names:
            self.names.append(name)
        return name

    def containers(self, name: str | None = None):
        return self.client.containers.list(all=True, filters={"label": [f"ossctl.profile={name or self.profile}"]},
                                          ignore_removed=True)


@pytest.fixture
def serve_env(home, docker_host, docker_client, llama_image, serve_model):
    env = ServeEnv(home, docker_host, llama_image, serve_model, docker_client,
                   "t" + uuid.uuid4().hex[:8], free_port_pair())
    env.write_profile()
    yield env
    for n in env.names:
        for c in env.containers(n) + docker_client.containers.list(all=True, filters={"name": f"ossctl-lock-{n}"}, ignore_removed=True):
            try:
                c.remove(force=True)
            except Exception:  # noqa: BLE001 - best-effort cleanup
                pass


def signal_on_event(client, profile: str, event: str, release: str, start, sig: int = signal.SIGKILL):
    """Start a process (``start()`` returns a Popen) and send it ``sig`` the moment the engine
    reports ``event`` (start / stop / update ...) for a container of ``release`` of
    ``profile``: the stream is open before the process starts, so no event is missed.
    Returns (the process, the event stream: close it once the process has exited)."""
    events = client.events(decode=True, filters={"label": [f"ossctl.profile={profile}"], "event": [event]})
    proc = start()

    def watch():
        for ev in events:
            if ev["Actor"]["Attributes"].get("ossctl.release") == release:
                proc.send_signal(sig)
                return

    threading.Thread(target=watch, daemon=True).start()
    return proc, events


def answer(endpoint: str, prompt: str = "hello", max_tokens: int = 3) -> dict:
    """A real chat completion against ``endpoint`` (fails the test on any error)."""
    import httpx

    r = httpx.post(endpoint + "/v1/chat/completions", trust_env=False, timeout=30,
                   json={"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens})
    r.raise_for_status()
    return r.json()


__all__ = ["ServeEnv", "answer", "signal_on_event", "build_rootfs_tar", "import_image", "llama_image_into",
           "make_model_dir", "rootfs_tar", "TEST_IMAGE"]
