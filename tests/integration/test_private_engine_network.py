"""The private test engine (scripts/private_dockerd.sh) leaves the machine's networking as it
found it: restarting it over its kept data root must not delete the link named docker0 (moby
deletes it when a kept network store holds the default bridge and --default-address-pool is
set). The machine's own docker0 is never touched here: the engine runs in a network
namespace this test makes, with a docker0 bridge of the test's own."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "private_dockerd.sh"


def _need_root_and_tools() -> None:
    missing = [t for t in ("ip", "nsenter", "dockerd", "docker") if shutil.which(t) is None]
    why = "not root" if os.geteuid() != 0 else (f"missing {', '.join(missing)}" if missing else "")
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"a private engine in a network namespace needs root, iproute2, nsenter, docker.io: {why}")
        pytest.skip(why)


def _ifindex(ns: str, name: str) -> int | None:
    r = subprocess.run(["ip", "netns", "exec", ns, "cat", f"/sys/class/net/{name}/ifindex"],
                       capture_output=True, text=True)
    return int(r.stdout) if r.returncode == 0 else None


def test_restarting_the_private_engine_keeps_docker0():
    _need_root_and_tools()
    ns = "ossd0-" + uuid.uuid4().hex[:8]
    d = Path(tempfile.mkdtemp(prefix="ossd0-", dir="/tmp"))  # short: the socket path has a length limit
    subprocess.run(["ip", "netns", "add", ns], check=True)
    inns = ["nsenter", f"--net=/var/run/netns/{ns}"]
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "add", "docker0", "type", "bridge"], check=True)
        before = _ifindex(ns, "docker0")
        for _ in range(2):  # the second start is the one over a kept data root
            r = subprocess.run([*inns, "bash", str(SCRIPT), "start", str(d)], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr[-800:]
            host = r.stdout.strip().split("=", 1)[1]
            v = subprocess.run(["docker", "-H", host, "network", "ls", "--format", "{{.Name}}"],
                               capture_output=True, text=True)
            assert v.returncode == 0 and {"bridge", "host", "none"} <= set(v.stdout.split()), v.stderr
            pid = int((d / "pid").read_text())
            os.kill(pid, 15)  # stopped the way a test stops its engine: data root and bridge kept
            for _ in range(200):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.05)
            assert _ifindex(ns, "docker0") == before, "the engine's (re)start deleted docker0"
        bridges = subprocess.run(["ip", "netns", "exec", ns, "ip", "-br", "link", "show", "type", "bridge"],
                                 capture_output=True, text=True).stdout.split()
        assert sum(b.startswith("ossbr") for b in bridges) == 1  # the restart took its bridge again
    finally:
        subprocess.run([*inns, "bash", str(SCRIPT), "stop", str(d)], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # takes its links with it
        shutil.rmtree(d, ignore_errors=True)
