"""PURE: resolved profile + manifest → the llama-server container spec. No I/O.

The spec is a plain dict (stored in the release history, so a release can be recreated
from it) with: name, image, command (llama-server arguments; the image's entrypoint is
llama-server, as in the ``ghcr.io/ggml-org/llama.cpp:server*`` images), environment,
mounts, ports, device_requests, restart_policy, labels, and ``api_key_file`` (host path or
None). Flags are spelled for the image's build, read from its ``--help``
(:mod:`ossctl.serve.llama_flags`); without it, for current llama-server.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from ossctl import labels as L
from ossctl.serve.llama_flags import SAMPLING, plan

MODEL_MOUNT = "/models"
API_KEY_MOUNT = "/run/secrets/ossctl-api-key"


def container_name(profile_name: str, release_id: str) -> str:
    return f"ossctl-{profile_name}-{release_id}"


def _fmt_float(v: float) -> str:
    return f"{v:g}"


def llama_args(profile: dict[str, Any], first_file: str, port: int, api_key: bool,
               help_text: str | None = None) -> list[str]:
    """llama-server argv (without the binary) for ``profile``; ``port`` is the port the
    server listens on inside the container; ``help_text`` the image's ``llama-server
    --help``, which decides how intents are spelled (:mod:`ossctl.serve.llama_flags`).
    Raises :class:`UsageError` when that build cannot honour a profile key."""
    p = profile
    spelled = plan(p, help_text)
    fit = bool(p.get("fit"))  # on: -ngl and the expert placement are llama.cpp's to choose
    args = [
        "-m", f"{MODEL_MOUNT}/{first_file}",
        "-c", str(p["ctx"]),
        *([] if fit else ["-ngl", str(p["n_gpu_layers"])]),
        *(spelled["fit"].args if "fit" in spelled else []),
        "-b", str(p["batch"]),
        "-ub", str(p["ubatch"]),
        *spelled["flash_attn"].args,
        *spelled["jinja"].args,
    ]
    args += ["-np", str(p["parallel"])]
    if p["cache_type_k"] != "f16":
        args += ["-ctk", p["cache_type_k"]]
    if p["cache_type_v"] != "f16":
        args += ["-ctv", p["cache_type_v"]]
    if p["n_cpu_moe"] and not fit:
        args += ["--n-cpu-moe", str(p["n_cpu_moe"])]
    if p["tensor_split"]:
        args += ["-ts", ",".join(_fmt_float(x) for x in p["tensor_split"])]
    if p["threads"]:
        args += ["-t", str(p["threads"])]
    for intent in SAMPLING:
        if intent in spelled:
            args += spelled[intent].args
    if api_key:
        args += ["--api-key-file", API_KEY_MOUNT]
    args += ["--host", "0.0.0.0", "--port", str(port)]
    args += list(p["extra_args"])
    return args


def build_spec(profile: dict[str, Any], manifest, model_dir: Path | str, release_id: str, port: int,
               help_text: str | None = None) -> dict[str, Any]:
    """The container spec for one release. ``port`` is the host port to publish (the
    profile's port, or the other blue-green slot); the server listens on the profile's
    port inside the container. ``manifest`` needs ``first_file``, ``model_id``,
    ``composite_sha256``, ``repo``, ``revision``; ``help_text`` as for :func:`llama_args`."""
    p = profile
    inner = p["port"]
    api_key_file = p["api_key_file"] or None
    mounts = [{"type": "bind", "source": str(model_dir), "target": MODEL_MOUNT, "read_only": True}]
    if api_key_file:
        mounts.append({"type": "bind", "source": str(api_key_file), "target": API_KEY_MOUNT, "read_only": True})
    g = p["gpus"]
    if g == "none":
        devices: list[dict[str, Any]] = []
    elif g == "all":
        devices = [{"driver": "nvidia", "count": -1, "device_ids": [], "capabilities": [["gpu"]]}]
    else:
        devices = [{"driver": "nvidia", "count": 0, "device_ids": [str(i) for i in g], "capabilities": [["gpu"]]}]
    labels = {
        L.MANAGED: "1",
        L.RELEASE: release_id,
        L.PROFILE: p["name"],
        L.KIND: "deploy",
        L.SOURCE: release_id,
        L.MODEL_ID: manifest.model_id or "",
        L.COMPOSITE: manifest.composite_sha256,
        L.MODEL_REPO: manifest.repo or "",
        L.MODEL_REVISION: manifest.revision or "",
        L.CTX: str(p["ctx"]),
        L.PORT: str(port),
    }
    return {
        "name": container_name(p["name"], release_id),
        "image": p["image"],
        "command": llama_args(p, manifest.first_file, inner, bool(api_key_file), help_text),
        "environment": {},
        "mounts": mounts,
        "ports": {f"{inner}/tcp": [p["host"], port]},
        "device_requests": devices,
        "restart_policy": {"Name": p["restart"]},
        "labels": labels,
        "api_key_file": api_key_file,
    }


def docker_run_argv(spec: dict[str, Any]) -> list[str]:
    """The equivalent ``docker run`` command line, as a list."""
    argv = ["docker", "run", "-d", "--name", spec["name"], "--restart", spec["restart_policy"]["Name"]]
    for inner, (host, hport) in spec["ports"].items():
        argv += ["-p", f"{host}:{hport}:{inner.split('/')[0]}"]
    for m in spec["mounts"]:
        opt = f"type={m['type']},source={m['source']},target={m['target']}"
        argv += ["--mount", opt + (",readonly" if m.get("read_only") else "")]
    for d in spec["device_requests"]:
        argv += ["--gpus", "all" if d["count"] == -1 else f'"device={",".join(d["device_ids"])}"']
    for k, v in spec["environment"].items():
        argv += ["-e", f"{k}={v}"]
    for k, v in spec["labels"].items():
        argv += ["--label", f"{k}={v}"]
    return argv + [spec["image"], *spec["command"]]


def docker_run_line(spec: dict[str, Any]) -> str:
    return shlex.join(docker_run_argv(spec))
