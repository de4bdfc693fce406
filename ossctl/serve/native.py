"""Trials as llama-server processes on this machine, for a GPU host without Docker (the
bench device: bench/tune_device.sh). The part of
:class:`~ossctl.serve.docker_runtime.DockerRuntime`'s interface that
:class:`~ossctl.serve.trial.Trial` uses, over ``subprocess``: the container spec deploy
builds is run as the same argv with the model mount and the published port turned into
host paths and the host port, ``gpus`` into ``CUDA_VISIBLE_DEVICES`` (as ``docker
--gpus device=..`` does). Trials only: no releases, no ledger, nothing to take over.
Docker stays the default everywhere; only ``ossctl tune``'s library call takes this.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from ossctl.errors import OssctlError


class NativeRuntime:
    """``bindir``: where ``llama-server`` is; ``logdir``: one log file per process."""

    host = "native"
    is_local = True

    def __init__(self, bindir: str | Path, logdir: str | Path, env: dict[str, str] | None = None):
        self.bin = Path(bindir) / "llama-server"
        if not self.bin.exists():
            raise OssctlError(f"no llama-server in {bindir}")
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env if env is not None else os.environ)
        self.procs: dict[str, dict[str, Any]] = {}  # name -> {"proc", "spec", "log"}

    # -- images: the one binary
    def image_info(self, image: str) -> dict[str, Any]:
        if not hasattr(self, "_id"):  # the binary's hash stands for the image id (once: a CUDA build is large)
            self._id = "sha256:" + hashlib.sha256(self.bin.read_bytes()).hexdigest()
        return {"id": self._id, "tags": [image]}

    def run_once(self, image: str, args: list[str], timeout: float = 60, entrypoint=None, volumes=None):
        r = subprocess.run([str(self.bin), *args], capture_output=True, text=True, timeout=timeout, env=self.env)
        return r.returncode, r.stdout + r.stderr

    # -- processes
    def run(self, spec: dict[str, Any]) -> str:
        from ossctl.serve.llama_server import API_KEY_MOUNT, MODEL_MOUNT

        mounts = {m["target"]: m["source"] for m in spec["mounts"]}
        argv = []
        for a in spec["command"]:
            if a.startswith(MODEL_MOUNT + "/"):
                a = mounts[MODEL_MOUNT] + a[len(MODEL_MOUNT):]
            elif a == API_KEY_MOUNT:
                a = mounts[API_KEY_MOUNT]
            argv.append(a)
        (_inner, (host, port)), = spec["ports"].items()
        i = argv.index("--host")
        argv[i + 1] = host
        argv[argv.index("--port") + 1] = str(port)
        env = {**self.env, **spec.get("environment", {})}
        for d in spec.get("device_requests") or []:
            if d.get("count") != -1:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(d["device_ids"])
        log = self.logdir / f"{spec['name']}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen([str(self.bin), *argv], stdout=fh, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)  # Ctrl-C goes to ossctl, which removes it
        self.procs[spec["name"]] = {"proc": proc, "spec": spec, "log": log, "started": time.time()}
        return spec["name"]

    def _get(self, name_or_id: str) -> dict[str, Any] | None:
        return self.procs.get(name_or_id)

    def find(self, name_or_id: str) -> dict[str, Any] | None:
        p = self._get(name_or_id)
        if p is None:
            return None
        code = p["proc"].poll()
        return {"id": name_or_id, "name": name_or_id, "status": "running" if code is None else "exited",
                "running": code is None, "restarting": False, "restart_count": 0, "exit_code": code,
                "oom_killed": False, "error": "", "started_at": "", "started_ts": p["started"],
                "labels": dict(p["spec"]["labels"]), "image": p["spec"]["image"], "image_id": ""}

    def pids(self, name_or_id: str) -> list[int]:
        """The process ids of a trial (NVML per process is matched by pid, not cgroup)."""
        p = self._get(name_or_id)
        return [p["proc"].pid] if p and p["proc"].poll() is None else []

    def list(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        out = []
        for name, p in self.procs.items():
            if all(p["spec"]["labels"].get(k) == v for k, v in labels.items()):
                out.append(self.find(name))
        return out

    def logs(self, name_or_id: str, tail: int = 20) -> str:
        p = self._get(name_or_id)
        if p is None:
            return ""
        return "\n".join(p["log"].read_text(errors="replace").splitlines()[-tail:])

    def stop(self, name_or_id: str, timeout: int = 10) -> None:
        p = self._get(name_or_id)
        if p is None or p["proc"].poll() is not None:
            return
        p["proc"].send_signal(signal.SIGTERM)
        try:
            p["proc"].wait(timeout)
        except subprocess.TimeoutExpired:
            p["proc"].kill()
            p["proc"].wait(10)

    def remove(self, name_or_id: str) -> None:
        self.stop(name_or_id)
        self.procs.pop(name_or_id, None)

    def host_port_users(self, port: int) -> list[str]:
        return []
