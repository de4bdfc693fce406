"""``ossctl doctor``: environment checks, each PASS / WARN / FAIL (or SKIP when it does
not apply) with a one-line fix. The library never prints; the CLI renders the rows.

Every check is isolated: an error in one (an SDK missing, a daemon down) becomes that
check's FAIL or WARN and never hides the others.
"""

from __future__ import annotations

import platform
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ossctl import __version__, catalog
from ossctl.artifacts.manifest import locate_model_dir, require_verified
from ossctl.errors import OssctlError
from ossctl.fleet import rollout as fleet
from ossctl.gpu import nvml
from ossctl.gpu.preflight import check_vram
from ossctl.registry import client
from ossctl.serve import profiles
from ossctl.serve.engine import open_engine
from ossctl.serve.image_flags import read_help
from ossctl.serve.llama_flags import check_flags, parse_build, parse_help_flags, parse_pin
from ossctl.serve.llama_server import llama_args
from ossctl.serve.preflight import port_free_locally
from ossctl.serve.profiles import is_loopback
from ossctl.serve.trial import reap_trials
from ossctl.settings import load_settings
from ossctl.units import human_size
# the --version / --help parsers live with the flag table they serve (deploy uses them too)

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def public(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Context:
    """What earlier checks learned, for later ones (one Docker connection, one parse)."""

    settings: Any
    profile_name: str | None
    profile: dict[str, Any] | None = None
    model_dir: Path | None = None
    manifest: Any = None
    runtime: Any = None
    image_present: bool = False
    image_output: dict[str, tuple[int, str]] | None = None


# ------------------------------------------------------------------ checks

def _ossctl(ctx: Context) -> Check:
    return Check("ossctl", PASS, f"ossctl {__version__}, Python {platform.python_version()}")


def _config(ctx: Context) -> Check:
    path = ctx.settings.config_path
    try:
        loaded = load_settings(ctx.settings.env, home=ctx.settings.home)
    except OssctlError as exc:
        return Check("config", FAIL, exc.message, exc.hint or "")
    if loaded.warnings:
        more = f" (+{len(loaded.warnings) - 1} more)" if len(loaded.warnings) > 1 else ""
        return Check("config", WARN, loaded.warnings[0] + more, "fix the key or section name; the default applies meanwhile")
    if path.exists():
        return Check("config", PASS, f"{path} parses")
    return Check("config", PASS, f"no config file at {path}; defaults and environment apply")


def _profile(ctx: Context) -> Check:
    if not ctx.profile_name:
        return Check("profile", SKIP, "no --profile given", "pass --profile NAME to check a deployment")
    try:
        ctx.profile = profiles.resolve_profile(ctx.settings, ctx.profile_name)
    except OssctlError as exc:
        return Check("profile", FAIL, exc.message, exc.hint or f"fix the profile, then `ossctl profile validate {ctx.profile_name}`")
    try:
        ctx.model_dir = locate_model_dir(ctx.settings, str(ctx.profile["model"]))
    except OssctlError:
        ctx.model_dir = None
    return Check("profile", PASS, f"{ctx.profile_name} validates (model {ctx.profile['model']}, ctx {ctx.profile['ctx']})")


def _wants_gpu(ctx: Context) -> bool:
    return bool(ctx.profile) and ctx.profile.get("gpus", "all") != "none"


def _docker(ctx: Context) -> Check:
    try:
        eng = open_engine(ctx.settings, timeout=15)
        host, ctx.runtime = eng.host, eng.rt
        info = ctx.runtime.engine_info()
    except OssctlError as exc:
        status = FAIL if ctx.profile else WARN
        return Check("docker", status, exc.message, exc.hint or "start the Docker engine")
    return Check("docker", PASS, f"Docker {info.get('version', '?')} at {host}")


def _nvidia_runtime(ctx: Context) -> Check:
    if not _wants_gpu(ctx):
        return Check("nvidia-container", SKIP, "the profile asks for no GPU" if ctx.profile else "no profile")
    if ctx.runtime is None:
        return Check("nvidia-container", SKIP, "Docker is not reachable")
    info = ctx.runtime.engine_info()
    if "nvidia" in info.get("runtimes", []):
        return Check("nvidia-container", PASS, "the nvidia runtime is registered with Docker")
    cdi = [d for d in info.get("cdi_spec_dirs", []) if ctx.runtime.is_local and _has_nvidia_cdi(Path(d))]
    if cdi:
        return Check("nvidia-container", PASS, f"NVIDIA CDI spec found in {cdi[0]}")
    return Check("nvidia-container", FAIL, "Docker has no nvidia runtime and no NVIDIA CDI spec",
                 "install nvidia-container-toolkit, then `nvidia-ctk runtime configure --runtime=docker` "
                 "and restart Docker")


def _has_nvidia_cdi(d: Path) -> bool:
    try:
        return any("nvidia" in p.read_text(errors="replace") for p in d.glob("*.y*ml"))
    except OSError:
        return False


def _gpu(ctx: Context) -> Check:
    session = nvml.Session(ctx.settings.env)
    try:
        with session as be:
            snap = nvml.snapshot(be)
    except OssctlError as exc:  # no driver, no library, no GPU (each says what to do)
        return Check("gpu", FAIL if _wants_gpu(ctx) else WARN, exc.message,
                     exc.hint or "install the NVIDIA driver, or use a CPU profile")
    if not snap.devices:
        return Check("gpu", FAIL if _wants_gpu(ctx) else WARN, "the driver sees no GPU", "check `nvidia-smi`")
    parts = [f"{d.index}: {d.name} free {human_size(d.memory_free)}" for d in snap.devices]
    failing = [d for d in snap.devices if d.error]
    status = WARN if failing else PASS
    return Check("gpu", status, f"driver {snap.driver_version}, {len(snap.devices)} GPU(s): " + "; ".join(parts),
                 f"GPU {failing[0].index} reports an error: {failing[0].error}" if failing else "")


def _vram(ctx: Context) -> Check:
    if not ctx.profile:
        return Check("vram", SKIP, "no profile")
    res = check_vram(ctx.settings, ctx.profile, ctx.model_dir)
    first = res.message.splitlines()[0]
    if res.status == "pass":
        return Check("vram", PASS, first)
    if res.status == "fail":
        tip = next((l[5:] for l in res.message.splitlines() if l.startswith("try: ")), res.hint or "")
        return Check("vram", FAIL, " ".join(res.message.splitlines()[:2]), tip)
    return Check("vram", SKIP if ctx.profile.get("gpus") == "none" else WARN, first)


def _disk(ctx: Context) -> Check:
    models = ctx.settings.models_dir
    probe = next((p for p in [models, *models.parents] if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    if not ctx.profile:
        return Check("disk", PASS, f"{human_size(free)} free for models in {models}")
    if ctx.model_dir and (ctx.model_dir / "manifest.toml").exists():
        return Check("disk", PASS, f"model already on disk; {human_size(free)} free in {models}")
    try:
        need = catalog.resolve(str(ctx.profile["model"])).approx_size
    except OssctlError:
        need = 0
    if not need:
        return Check("disk", WARN, f"{human_size(free)} free; the model's size is unknown until it is resolved on the hub")
    if free < need:
        return Check("disk", FAIL, f"{human_size(free)} free in {models}, the model needs about {human_size(need)}",
                     "free space, or set OSSCTL_MODELS_DIR / --home to a larger disk")
    if free < need * 1.1:
        return Check("disk", WARN, f"{human_size(free)} free, the model needs about {human_size(need)}: little headroom")
    return Check("disk", PASS, f"{human_size(free)} free, the model needs about {human_size(need)}")


def _model(ctx: Context) -> Check:
    if not ctx.profile:
        return Check("model", SKIP, "no profile")
    model = ctx.profile["model"]
    if ctx.model_dir is None or not (ctx.model_dir / "manifest.toml").exists():
        return Check("model", FAIL, f"model {model} is not downloaded", f"ossctl download {model}")
    try:
        ctx.manifest = require_verified(ctx.model_dir)
    except OssctlError as exc:
        return Check("model", FAIL, exc.message, exc.hint or f"ossctl download {model}")
    return Check("model", PASS, f"{len(ctx.manifest.files)} file(s) verify against the manifest (size + mtime); "
                                f"composite {ctx.manifest.composite_sha256[:16]}…")


def _image(ctx: Context) -> Check:
    if not ctx.profile:
        return Check("image", SKIP, "no profile")
    if ctx.runtime is None:
        return Check("image", SKIP, "Docker is not reachable")
    image = ctx.profile["image"]
    try:
        info = ctx.runtime.image_info(image)
    except OssctlError as exc:
        return Check("image", FAIL, exc.message, exc.hint or f"docker pull {image}")
    ctx.image_present = True
    return Check("image", PASS, f"{image} present ({info['id'][:19]})")


def _image_run(ctx: Context, arg: str) -> tuple[int, str]:
    ctx.image_output = ctx.image_output or {}
    if arg not in ctx.image_output:
        ctx.image_output[arg] = ctx.runtime.run_once(ctx.profile["image"], [arg])
    return ctx.image_output[arg]


def _build(ctx: Context) -> Check:
    if not ctx.profile or not ctx.image_present:
        return Check("llama-build", SKIP, "no profile" if not ctx.profile else "image not present")
    try:
        code, out = _image_run(ctx, "--version")
    except OssctlError as exc:
        return Check("llama-build", FAIL, exc.message, exc.hint or "")
    build = parse_build(out)
    if build is None:
        return Check("llama-build", FAIL, f"`llama-server --version` in {ctx.profile['image']} printed no build number",
                     "is the image a llama.cpp server image?")
    pin = ctx.profile.get("llama_build") or ""
    if not pin:
        return Check("llama-build", WARN, f"image has llama.cpp build {build}; the profile pins none",
                     f'set llama_build = "b{build}" in the profile to catch image drift')
    want = parse_pin(pin)
    if want != build:
        return Check("llama-build", FAIL, f"image has llama.cpp build {build}, the profile pins {pin}",
                     f"use the image tagged for {pin}, or set llama_build = \"b{build}\" after checking its flags")
    return Check("llama-build", PASS, f"build {build} matches the pin {pin}")


def _flags(ctx: Context) -> Check:
    if not ctx.profile or not ctx.image_present:
        return Check("flags", SKIP, "no profile" if not ctx.profile else "image not present")
    try:
        out = read_help(ctx.runtime, ctx.profile["image"])
    except OssctlError as exc:
        return Check("flags", FAIL, exc.message, exc.hint or "")
    known = parse_help_flags(out)
    first = ctx.manifest.first_file if ctx.manifest else "model.gguf"
    try:
        argv = llama_args(ctx.profile, first, 8080, api_key=not is_loopback(ctx.profile["host"]), help_text=out)
    except OssctlError as exc:
        return Check("flags", FAIL, exc.message, exc.hint or "")
    problems = check_flags(argv, known)
    if problems:
        return Check("flags", FAIL, "; ".join(problems),
                     "change the profile (or its extra_args) to the spelling this build's --help shows")
    n = sum(1 for a in argv if a.startswith("-"))
    return Check("flags", PASS, f"all {n} flags the profile passes exist in this build")


def _chain(ctx: Context) -> Check:
    if not client.configured_rpc_url(ctx.settings):
        status = FAIL if ctx.profile and ctx.profile.get("require_registered") else SKIP
        return Check("chain", status, "no RPC URL configured",
                     "set OSSCTL_RPC_URL or [registry] rpc_url" if status == FAIL else "")
    try:
        conn = client.from_settings(ctx.settings)
        cid = conn.chain_id()
        if not conn.registry:
            return Check("chain", WARN, f"RPC reachable (chain {cid}); no registry address configured",
                         "set OSSCTL_REGISTRY_ADDRESS or [registry] address")
        conn.call("owner")  # proves there is a ModelRegistry at the address
        if ctx.manifest is None:
            return Check("chain", PASS, f"chain {cid}, ModelRegistry at {conn.registry}")
        st = client.status(conn, ctx.manifest.model_id, ctx.manifest.composite_sha256,
                           ctx.manifest.repo, ctx.manifest.first_file)
    except OssctlError as exc:
        return Check("chain", FAIL, exc.message, exc.hint or "")
    if st["hash"] == "match" and st["active"]:
        return Check("chain", PASS, f"chain {cid}: model registered with the same composite hash")
    if st["hash"] == "mismatch":
        return Check("chain", FAIL, f"chain {cid}: on-chain hash {st['onchain_sha256'][:16]}… differs from the local composite",
                     "the files differ from what was registered; `ossctl registry status` for details")
    must = bool(ctx.profile and ctx.profile.get("require_registered"))
    what = "not registered" if st["hash"] == "not-registered" else "registered but deactivated"
    return Check("chain", FAIL if must else WARN, f"chain {cid}: model {what}",
                 f"ossctl register {ctx.model_dir}" if st["hash"] == "not-registered" else "ossctl registry reactivate ID")


def _port(ctx: Context) -> Check:
    if not ctx.profile:
        return Check("port", SKIP, "no profile")
    host, port = ctx.profile["host"], int(ctx.profile["port"])
    users = []
    if ctx.runtime is not None:
        try:
            users = ctx.runtime.host_port_users(port)
        except OssctlError:
            users = []
    try:
        rec = open_engine(ctx.settings).current_release(ctx.profile_name)
    except OssctlError:
        rec = None
    ours = rec and rec.get("container_name") in users if rec else False
    if rec and (ours or str(rec.get("endpoint", "")).endswith(f":{port}")) and not port_free_locally(host, port):
        return Check("port", PASS, f"{host}:{port} is held by the current ossctl release {rec.get('id')}")
    if users:
        return Check("port", FAIL, f"{host}:{port} is published by container {users[0]}",
                     "stop that container, or set another `port` in the profile")
    if not port_free_locally(host, port):
        return Check("port", FAIL, f"{host}:{port} is in use by another process",
                     f"free it (`ss -ltnp 'sport = :{port}'`), or set another `port` in the profile")
    return Check("port", PASS, f"{host}:{port} is free")


def _trials(ctx: Context) -> Check:
    """Trial containers (a tuner's, a canary's) left behind: those of ossctl processes that
    are provably gone are removed here, as the next trial would; others are named."""
    if ctx.runtime is None:
        return Check("trials", SKIP, "no Docker engine")
    r = reap_trials(ctx.runtime)
    gone = f"removed {len(r.removed)} left by ossctl processes that are gone ({', '.join(r.removed)}); " \
        if r.removed else ""
    stuck = [f"{name} ({why})" for name, why in r.kept if not why.endswith(" is alive")]
    if stuck:
        return Check("trials", WARN, gone + "trial containers whose owner cannot be checked from here: " + ", ".join(stuck),
                     "each is removed by its owner when it ends; if that ossctl is gone, `docker rm -f NAME`")
    live = len(r.kept)
    return Check("trials", PASS, gone + (f"{live} trial(s) running, owner alive" if live else "no trial containers"))


def _fleet(ctx: Context) -> Check:
    """A fleet's hosts, each checked where it is (the deploy's own preflight): engine, the
    same image and llama.cpp build everywhere, model files hashing to the manifest."""
    if not ctx.profile or not ctx.profile.get("hosts"):
        return Check("fleet", SKIP, "the profile has no [[hosts]]")
    if ctx.manifest is None:
        return Check("fleet", SKIP, "no local manifest to compare the hosts' files with",
                     f"`ossctl download {ctx.profile['model']}` or `ossctl adopt DIR --repo OWNER/REPO`")
    ms = fleet.members(ctx.settings, ctx.profile)
    rows = fleet.preflight(ctx.settings, ms, ctx.manifest)
    return Check("fleet", PASS, f"{len(rows)} hosts agree: image {str(rows[0]['image_id'])[:19]}, build "
                                f"{rows[0]['build']}, files = composite {ctx.manifest.composite_sha256[:12]}")


CHECKS: list[Callable[[Context], Check]] = [
    _ossctl, _config, _profile, _docker, _nvidia_runtime, _gpu, _vram, _disk, _model, _image, _build, _flags,
    _chain, _port, _trials, _fleet,
]


def run(settings, profile: str | None = None) -> list[Check]:
    """Run every check in order; a check that raises unexpectedly becomes its FAIL."""
    ctx = Context(settings, profile)
    out = []
    for fn in CHECKS:
        name = fn.__name__.strip("_").replace("_", "-")
        try:
            out.append(fn(ctx))
        except OssctlError as exc:
            out.append(Check(name, FAIL, exc.message, exc.hint or ""))
        except Exception as exc:  # one broken check must not hide the others
            out.append(Check(name, FAIL, f"check crashed: {type(exc).__name__}: {exc}", "report this with OSSCTL_DEBUG=1"))
    return out
