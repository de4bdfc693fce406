"""ossctl doctor against the real local Docker engine (with the CPU llama-server image the
deploy tests build), the real anvil, the fake NVML (no GPU here) and real model files.
One test per check and state; states the real engine here cannot take (an nvidia runtime)
use a stand-in runtime object behind the same methods."""

from __future__ import annotations

import shutil
import socket
from collections import namedtuple
from pathlib import Path

import pytest

from ossctl import doctor
from ossctl.settings import load_settings
from tests.plugins.anvil import DEV_KEYS, deploy_registry
from tests.support.cli import run_cli


def checks(*args, env=None) -> tuple[int, dict[str, dict]]:
    r = run_cli("--json", "doctor", *args, env=env)
    data = r.json()
    assert set(data) == {"ok", "checks"}
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in data["checks"])
    assert data["ok"] == (r.code == 0)
    return r.code, {c["name"]: c for c in data["checks"]}


def status(res, name):
    return res[1][name]["status"]


@pytest.fixture
def denv(serve_env, monkeypatch, llama_build):
    """A profile on the real engine that passes every local check: the test image's
    build pinned, the tiny model, a free port."""
    monkeypatch.setenv("DOCKER_HOST", serve_env.docker_host)
    monkeypatch.delenv("OSSCTL_FAKE_NVML", raising=False)
    serve_env.build = f"b{llama_build}"
    serve_env.write_profile(llama_build=serve_env.build)
    return serve_env


# --- parsers (pure) ------------------------------------------------------------------

def test_parse_build_and_pin():
    assert doctor.parse_build("version: 6100 (abc1234)\nbuilt with cc") == 6100
    assert doctor.parse_build("version: 0.5.0-dev (build 1, commit 0c1e570)") == 1
    assert doctor.parse_build("nothing here") is None
    assert doctor.parse_pin("b6100") == 6100 and doctor.parse_pin("6100") == 6100 and doctor.parse_pin("x") is None


HELP = """
-m,    --model FNAME                    model path to load
-fa,   --flash-attn [on|off|auto]       set Flash Attention use
-np,   --parallel N                     number of server slots
--jinja                                 use jinja template
-ngl,  --gpu-layers, --n-gpu-layers N   layers in VRAM
"""


def test_flag_check_finds_unknown_and_valueless_flags():
    known = doctor.parse_help_flags(HELP)
    assert known == {"-m": True, "--model": True, "-fa": True, "--flash-attn": True, "-np": True,
                     "--parallel": True, "--jinja": False, "-ngl": True, "--gpu-layers": True, "--n-gpu-layers": True}
    assert doctor.check_flags(["-m", "x", "-fa", "on", "--jinja", "-np", "1", "-ngl", "-1"], known) == []
    assert doctor.check_flags(["--np", "2"], known) == ["--np is unknown to this build"]
    assert doctor.check_flags(["--jinja", "yes"], known) == ["--jinja takes no value in this build (got 'yes')"]


# --- whole command -------------------------------------------------------------------

def test_all_pass_for_a_ready_cpu_profile(denv):
    code, res = checks("--profile", denv.profile)
    assert code == 0, res
    for name in ("ossctl", "config", "profile", "docker", "disk", "model", "image", "llama-build", "flags", "port"):
        assert res[name]["status"] == "PASS", res[name]
    for name in ("nvidia-container", "vram", "chain"):
        assert res[name]["status"] == "SKIP", res[name]
    assert res["gpu"]["status"] == "WARN"  # no driver here, and the profile needs none
    r = run_cli("doctor", "--profile", denv.profile)
    assert r.code == 0 and r.out.splitlines()[0].startswith("PASS  ossctl") and "all checks passed" in r.out


def test_without_profile_only_host_checks(home, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    code, res = checks()
    assert code == 0  # nothing to deploy: an absent engine is a warning
    assert res["docker"]["status"] == "WARN" and "cannot reach" in res["docker"]["detail"]
    assert res["profile"]["status"] == "SKIP"


def test_config_fail_does_not_stop_other_checks(home, tmp_path, monkeypatch):
    bad = tmp_path / "bad.toml"
    bad.write_text("[registry\n")
    monkeypatch.setenv("OSSCTL_CONFIG", str(bad))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    code, res = checks()
    assert code == 1
    assert res["config"]["status"] == "FAIL" and "not valid TOML" in res["config"]["detail"]
    assert res["disk"]["status"] == "PASS"


def test_profile_fail(denv):
    denv.write_profile(ctx="lots")
    code, res = checks("--profile", denv.profile)
    assert code == 1 and res["profile"]["status"] == "FAIL" and "ctx" in res["profile"]["detail"]
    code, res = checks("--profile", "no-such-profile")
    assert res["profile"]["status"] == "FAIL"


def test_docker_fail_when_profile_needs_it(denv, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    code, res = checks("--profile", denv.profile)
    assert code == 1 and res["docker"]["status"] == "FAIL" and res["docker"]["fix"]
    assert res["image"]["status"] == "SKIP" and res["model"]["status"] == "PASS"


def test_nvidia_container_fail_on_engine_without_nvidia(denv):
    denv.write_profile(gpus="all")
    code, res = checks("--profile", denv.profile)
    assert res["nvidia-container"]["status"] == "FAIL" and "nvidia-ctk" in res["nvidia-container"]["fix"]


class StandInRuntime:
    """The two DockerRuntime methods the nvidia check reads, for states this engine lacks."""

    is_local = True

    def __init__(self, runtimes, cdi_dirs=()):
        self.info = {"version": "27.0", "runtimes": runtimes, "cdi_spec_dirs": list(cdi_dirs)}

    def engine_info(self):
        return self.info


def test_nvidia_container_pass_by_runtime_or_cdi(tmp_path, home):
    settings = load_settings()
    ctx = doctor.Context(settings, "p", profile={"gpus": "all"}, runtime=StandInRuntime(["nvidia", "runc"]))
    assert doctor._nvidia_runtime(ctx).status == "PASS"
    (tmp_path / "nvidia.yaml").write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
    ctx.runtime = StandInRuntime(["runc"], [str(tmp_path)])
    assert doctor._nvidia_runtime(ctx).status == "PASS"


def test_gpu_states(denv, monkeypatch):
    monkeypatch.setenv("OSSCTL_FAKE_NVML", "4x80gb")
    _, res = checks("--profile", denv.profile)
    assert res["gpu"]["status"] == "PASS" and "4 GPU(s)" in res["gpu"]["detail"]
    monkeypatch.setenv("OSSCTL_FAKE_NVML", "one-failing")
    _, res = checks("--profile", denv.profile)
    assert res["gpu"]["status"] == "WARN"
    monkeypatch.setenv("OSSCTL_FAKE_NVML", "no-driver")
    denv.write_profile(gpus="all")
    _, res = checks("--profile", denv.profile)
    assert res["gpu"]["status"] == "FAIL"


def test_vram_pass_and_fail(denv, monkeypatch):
    monkeypatch.setenv("OSSCTL_FAKE_NVML", "4x80gb")
    denv.write_profile(gpus="all", n_gpu_layers=99)
    _, res = checks("--profile", denv.profile)
    assert res["vram"]["status"] == "PASS", res["vram"]
    # the shipped prod profile (120b, ctx 131072) on one 24 GiB GPU cannot fit
    fake = Path(denv.home) / "small.json"
    fake.write_text('{"driver": "580.00", "gpus": [{"name": "RTX 4090", "uuid": "GPU-1", '
                    '"total": 25769803776, "used": 1073741824, "processes": []}]}')
    monkeypatch.setenv("OSSCTL_FAKE_NVML", str(fake))
    _, res = checks("--profile", "prod")
    assert res["vram"]["status"] == "FAIL", res["vram"]
    _, res = checks("--profile", denv.profile)  # gpus = all, tiny model on a 24 GiB GPU
    assert res["vram"]["status"] == "PASS"


DiskUsage = namedtuple("DiskUsage", "total used free")


def test_disk_states(denv, monkeypatch):
    denv.write_profile(model="120b")  # not downloaded: about 59 GiB needed
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda p: DiskUsage(1 << 40, 0, 10 << 30))
    _, res = checks("--profile", denv.profile)
    assert res["disk"]["status"] == "FAIL" and res["model"]["status"] == "FAIL"
    assert res["model"]["fix"] == "ossctl download 120b"
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda p: DiskUsage(1 << 40, 0, 62 << 30))
    _, res = checks("--profile", denv.profile)
    assert res["disk"]["status"] == "WARN"
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda p: DiskUsage(1 << 40, 0, 500 << 30))
    _, res = checks("--profile", denv.profile)
    assert res["disk"]["status"] == "PASS"


def test_model_fail_when_files_do_not_verify(denv, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(denv.model_dir, copy)
    part = sorted(copy.glob("*-00002-of-*.gguf"))[0]
    part.write_bytes(part.read_bytes()[:-1])
    denv.write_profile(model=str(copy))
    _, res = checks("--profile", denv.profile)
    assert res["model"]["status"] == "FAIL" and part.name in res["model"]["detail"]


def test_image_missing(denv):
    denv.write_profile(image="ossctl-test/absent:latest")
    _, res = checks("--profile", denv.profile)
    assert res["image"]["status"] == "FAIL" and res["image"]["fix"] == "docker pull ossctl-test/absent:latest"
    assert res["llama-build"]["status"] == "SKIP" and res["flags"]["status"] == "SKIP"


def test_build_mismatch_and_no_pin(denv):
    denv.write_profile(llama_build="b6100")
    code, res = checks("--profile", denv.profile)
    assert code == 1 and res["llama-build"]["status"] == "FAIL"
    assert f"build {denv.build[1:]}, the profile pins b6100" in res["llama-build"]["detail"]
    denv.write_profile(llama_build="")
    _, res = checks("--profile", denv.profile)
    assert res["llama-build"]["status"] == "WARN" and f'llama_build = "{denv.build}"' in res["llama-build"]["fix"]


def test_flag_unknown_to_the_build(denv):
    denv.write_profile(llama_build=denv.build, extra_args=["--np", "2"])
    code, res = checks("--profile", denv.profile)
    assert code == 1 and res["flags"]["status"] == "FAIL" and "--np is unknown" in res["flags"]["detail"]
    denv.write_profile(llama_build=denv.build, extra_args=["--swa-full", "yes"])
    _, res = checks("--profile", denv.profile)
    assert "--swa-full takes no value" in res["flags"]["detail"]


def test_chain_states(denv, anvil, monkeypatch):
    monkeypatch.setenv("OSSCTL_RPC_URL", "http://127.0.0.1:9")
    _, res = checks("--profile", denv.profile)
    assert res["chain"]["status"] == "FAIL"
    monkeypatch.setenv("OSSCTL_RPC_URL", anvil.url)
    _, res = checks("--profile", denv.profile)
    assert res["chain"]["status"] == "WARN" and "no registry address" in res["chain"]["detail"]
    addr = deploy_registry(anvil)
    monkeypatch.setenv("OSSCTL_REGISTRY_ADDRESS", addr)
    _, res = checks("--profile", denv.profile)
    assert res["chain"]["status"] == "WARN" and "not registered" in res["chain"]["detail"]
    denv.write_profile(llama_build=denv.build, require_registered=True)
    _, res = checks("--profile", denv.profile)
    assert res["chain"]["status"] == "FAIL"
    r = run_cli("register", str(denv.model_dir), "--yes", env={"OSSCTL_PRIVATE_KEY": DEV_KEYS[0]})
    assert r.code == 0, r.err
    _, res = checks("--profile", denv.profile)
    assert res["chain"]["status"] == "PASS"


def test_port_states(denv):
    with socket.socket() as s:
        s.bind(("127.0.0.1", denv.port))
        s.listen()
        code, res = checks("--profile", denv.profile)
        assert code == 1 and res["port"]["status"] == "FAIL" and "in use" in res["port"]["detail"]
    r = run_cli("deploy", "--profile", denv.profile)
    assert r.code == 0, r.err
    code, res = checks("--profile", denv.profile)
    assert res["port"]["status"] == "PASS" and "held by the current ossctl release" in res["port"]["detail"]
    assert code == 0
