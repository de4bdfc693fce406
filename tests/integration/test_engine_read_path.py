"""The read path (ossctl.serve.engine_api, no docker SDK) returns the same records as the
SDK on a real engine, and a read-only command never imports the SDK. The unix socket here;
tcp+TLS and ssh:// in tests/integration/test_fleet_engines.py (the fleet engines)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from ossctl.serve.docker_runtime import DockerRuntime
from tests.support.engine_reads import same_reads

pytestmark = pytest.mark.docker


@pytest.fixture
def containers(docker_client, llama_image):
    """Three containers of one label: never started, running (busybox sleep), exited 3."""
    tag = uuid.uuid4().hex[:8]
    labels = {"ossctl.test.readpath": tag, "ossctl.test.other": "x=y, z"}
    made = []
    try:
        made.append(docker_client.containers.create(llama_image, name=f"rp-created-{tag}", labels=labels))
        made.append(docker_client.containers.run(llama_image, ["sleep", "300"], entrypoint=["/bin/busybox"],
                                                 name=f"rp-running-{tag}", labels=labels, detach=True))
        c = docker_client.containers.run(llama_image, ["sh", "-c", "exit 3"], entrypoint=["/bin/busybox"],
                                         name=f"rp-exited-{tag}", labels=labels, detach=True)
        made.append(c)
        c.wait(timeout=30)
        yield [m.name for m in made], labels
    finally:
        for m in made:
            m.remove(force=True)


def test_reads_are_the_sdks_records_on_the_unix_socket(docker_host, docker_client, llama_image, containers):
    names, labels = containers
    with DockerRuntime(docker_host) as rt:
        same_reads(rt, docker_client, names, labels, llama_image)
        files = {"a.json": b'{"x": 1}\n', "sub/b.json": b"[]\n"}
        rt.write_tree(names[0], "/tmp", {f"rp/{k}": v for k, v in files.items()})
        stream, _ = docker_client.api.get_archive(names[0], "/tmp/rp")
        assert b"".join(stream)  # the engine has them
        assert rt.read_tree(names[0], "/tmp/rp") == files
        assert rt.read_tree(names[0], "/tmp/none") == {}
        assert rt.has_volume(f"none-{uuid.uuid4().hex[:8]}") is False
    with pytest.raises(Exception, match="not present"):
        DockerRuntime(docker_host).image_info("ossctl-test/none:0")


READ_ONLY = """
import json, sys
from ossctl.serve.docker_runtime import DockerRuntime
from tests.support.engine_reads import same_reads
rt = DockerRuntime(sys.argv[1])
rt.find(sys.argv[2]); rt.list({"ossctl.test.readpath": "x"}); rt.read_tree(sys.argv[2], "/tmp")
rt.engine_info(); rt.image_info(sys.argv[3]); rt.has_volume("none"); rt.host_port_users(1)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("docker", "requests", "urllib3", "paramiko"))))
"""


def test_reads_import_no_sdk(docker_host, llama_image, containers):
    names, _ = containers
    out = subprocess.run([sys.executable, "-c", READ_ONLY, docker_host, names[1], llama_image],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_status_and_releases_import_no_sdk(docker_host, home):
    code = ("import json, sys\nfrom ossctl.cli.app import main\n"
            "rc = main(sys.argv[1:])\n"
            "sys.stderr.write(json.dumps([rc, sorted(m for m in sys.modules if m.split('.')[0] in "
            "('docker', 'requests', 'paramiko'))]))\n")
    for cmd in (["status"], ["releases"], ["status", "-p", "none"]):
        p = subprocess.run([sys.executable, "-c", code, "--json", *cmd, "--docker-host", docker_host],
                           capture_output=True, text=True)
        assert json.loads(p.stderr.splitlines()[-1]) == [0, []], p.stderr


WRITE = """
import json, sys
from ossctl.serve.docker_runtime import DockerRuntime
rt = DockerRuntime(sys.argv[1])
cid = rt.create_marker(sys.argv[2], sys.argv[3], {"ossctl.test.readpath": "w"})
rt.remove(cid)
print(json.dumps(["docker" in sys.modules, sys.modules.get("paramiko") is not None]))
"""


def test_the_first_write_imports_the_sdk_without_paramiko(docker_host, llama_image):
    # paramiko (~0.1 s) only serves ssh:// engines; the first write on a unix socket must
    # not bring it in through a bare `import docker.x`
    out = subprocess.run([sys.executable, "-c", WRITE, docker_host, f"rp-w-{uuid.uuid4().hex[:8]}", llama_image],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [True, False]
