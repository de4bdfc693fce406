"""`ossctl vram plan` and the deploy preflight's check_vram, on the fake NVML and on
planning targets given with --gpus."""

from __future__ import annotations


import pytest

from ossctl.gpu import preflight
from ossctl.settings import load_settings
from tests.support.cli import run_cli

GiB = 1024 ** 3
KV_120B_131072 = 18 * 131072 * 2048 + 18 * 2304 * 2048  # full + sliding-window layers (window 128 + prod's ubatch 2048, to 256), f16


@pytest.fixture(autouse=True)
def _home(home, monkeypatch):
    monkeypatch.delenv("OSSCTL_FAKE_NVML", raising=False)
    return home


def test_plan_prod_json_keys_pinned():
    r = run_cli("--json", "vram", "plan", "--profile", "prod", "--gpus", "1x97GB")
    assert r.code == 0, r.err
    d = r.json()
    assert list(d) == ["model", "params", "kv_cells", "pipeline_parallel", "gpus", "host", "total_bytes", "fits",
                       "compared_against", "warnings", "suggestions", "profile", "last_release"]
    assert d["profile"] == "prod" and d["compared_against"] == "--gpus" and d["fits"] is True
    g = d["gpus"][0]
    assert g["free"] == 97 * 10 ** 9 and g["kv"] == KV_120B_131072 and g["layers"] == "0-35" and g["output_layer"]
    assert d["params"]["ctx"] == 131072 and d["model"]["approximate"] is True
    assert "warning: model not downloaded" in r.err


def test_plan_dev_human():
    r = run_cli("vram", "plan", "--profile", "dev", "--gpus", "1x24GiB")
    assert r.code == 0, r.err
    assert "gpt-oss-20b" in r.out and "ctx 8192" in r.out
    assert "fits; compared against --gpus" in r.out


def test_plan_does_not_fit_says_what_to_change():
    r = run_cli("vram", "plan", "--model", "120b", "--ctx", "131072", "--gpus", "1x40GiB")
    assert r.code == 10  # EXIT_NO_FIT: scripts gate on it
    assert "does NOT fit" in r.out and "to make it fit:" in r.out
    assert "--n-cpu-moe" in r.out and "spread over 2 GPUs of 40 GiB" in r.out


def test_plan_does_not_fit_json_keeps_fits_and_exits_10():
    r = run_cli("--json", "vram", "plan", "--model", "120b", "--ctx", "131072", "--gpus", "1x40GiB")
    assert r.code == 10 and r.json()["fits"] is False and r.json()["suggestions"]


def test_plan_across_two_gpus_shows_pipeline_parallelism():
    r = run_cli("--json", "vram", "plan", "--model", "120b", "--ctx", "131072", "--gpus", "2x80GiB")
    assert r.code == 0, r.err
    d = r.json()
    # 37 slots (36 layers + output) split at 0.5: slot i goes to GPU 0 while i/37 < 0.5
    assert d["pipeline_parallel"] is True and [g["layers"] for g in d["gpus"]] == ["0-18", "19-35"]
    human = run_cli("vram", "plan", "--model", "120b", "--ctx", "131072", "--gpus", "2x80GiB")
    assert "pipeline parallelism" in human.out


@pytest.mark.parametrize("args,msg", [
    (["--n-cpu-moe", "37"], "n_cpu_moe 37 is above the layer count of gpt-oss-120b (36)"),
])
def test_plan_bad_input_is_one_line(args, msg):
    r = run_cli("vram", "plan", "--model", "120b", "--ctx", "8192", "--gpus", "2x80GiB", *args)
    assert r.code == 2 and msg in r.err and "Traceback" not in r.err


def test_plan_gpu_not_there(monkeypatch, home):
    (home / "profiles").mkdir(exist_ok=True)
    (home / "profiles" / "two.toml").write_text('extends = "prod"\nname = "two"\ngpus = [0, 7]\n')
    monkeypatch.setenv("OSSCTL_FAKE_NVML", "4x80gb")
    r = run_cli("vram", "plan", "--profile", "two")
    assert r.code == 2 and "unknown GPU id 7: this host has GPU 0-3" in r.err


def test_plan_overrides_apply():
    r = run_cli("--json", "vram", "plan", "--profile", "prod", "--ctx", "32768", "--parallel", "2",
                "--n-cpu-moe", "4", "--gpus", "2x80GiB")
    d = r.json()
    assert (d["params"]["ctx"], d["params"]["parallel"], d["params"]["n_cpu_moe"]) == (32768, 2, 4)
    assert d["kv_cells"] == {"full": 16384, "swa": 2304, "streams": 2}  # prod's ubatch 2048 + window 128
    assert len(d["gpus"]) == 2


def test_plan_from_downloaded_gguf_has_no_warning(tiny_oss_dir):
    r = run_cli("--json", "vram", "plan", "--model", str(tiny_oss_dir), "--ctx", "4096", "--gpus", "1x1GiB")
    assert r.code == 0, r.err
    d = r.json()
    assert d["model"]["source"] == "gguf" and not d["model"]["approximate"] and d["warnings"] == []
    assert d["kv_cells"] == {"full": 4096, "swa": 768, "streams": 1}


def test_plan_against_live_fake_nvml():
    r = run_cli("--json", "vram", "plan", "--profile", "prod", env={"OSSCTL_FAKE_NVML": "4x80gb"})
    d = r.json()
    assert d["compared_against"] == "nvml"
    assert [g["free"] for g in d["gpus"]] == [81_559_453_696 - u for u in
                                              (70_116_884_480, 15_530_000_384, 566_231_040, 566_231_040)]
    assert d["fits"] is True  # split by free memory, as llama.cpp does


def test_plan_without_driver_still_plans():
    r = run_cli("--json", "vram", "plan", "--profile", "prod", env={"OSSCTL_FAKE_NVML": "no-driver"})
    assert r.code == 0
    assert r.json()["fits"] is None and r.json()["compared_against"] is None
    assert "pass --gpus" in r.err


@pytest.mark.parametrize("args,code,first", [
    (["--profile", "prod", "--gpus", "4xfoo"], 2, "error: malformed --gpus '4xfoo'"),
    ([], 2, "error: nothing to plan"),
    (["--model", "nobody/nothing-GGUF", "--gpus", "1x80GiB"], 3, "error: model nobody/nothing-GGUF is not downloaded"),
    (["--model", "120b", "--flash-attn", "maybe"], 2, "error: --flash-attn 'maybe'"),
])
def test_plan_bad_input(args, code, first):
    r = run_cli("vram", "plan", *args)
    assert r.code == code, r.err
    assert r.err.splitlines()[0].startswith(first)
    assert "hint: " in r.err and "Traceback" not in r.err


def _settings(scenario: str | None):
    env = {"OSSCTL_FAKE_NVML": scenario} if scenario else {}
    return load_settings(env=env)


PROD = {"name": "prod", "model": "120b", "ctx": 131072, "gpus": "all", "n_gpu_layers": 99, "parallel": 1}


def test_check_vram_pass():
    r = preflight.check_vram(_settings("1x97gb"), PROD, None)
    assert r.status == "pass", r.message
    assert r.message.startswith("VRAM fits:") and r.plan["fits"] is True


def test_check_vram_fail_shows_breakdown_and_fixes():
    r = preflight.check_vram(_settings("4x80gb"), dict(PROD, gpus=[0]), None)
    assert r.status == "fail"
    assert "GPU 0:" in r.message and "weights" in r.message and "free 10.7 GiB" in r.message
    assert "try: " in r.message and "--n-cpu-moe" in r.message
    assert r.plan["fits"] is False


@pytest.mark.parametrize("scenario,profile,reason", [
    ("no-driver", PROD, "NVML is not available"),
    ("one-failing", dict(PROD, gpus=[2]), "GPU 2 does not report its memory (GPU is lost)"),
    ("4x80gb", dict(PROD, gpus="none"), "without GPUs"),
    ("4x80gb", dict(PROD, model="nobody/nothing-GGUF"), "not downloaded"),
])
def test_check_vram_skipped(scenario, profile, reason):
    r = preflight.check_vram(_settings(scenario), profile, None)
    assert r.status == "skipped" and reason in r.message and r.plan is None


@pytest.mark.parametrize("profile,msg", [
    (dict(PROD, gpus=[9]), "unknown GPU id 9: this host has GPU 0-3 (profile `gpus` = [9])"),
    (dict(PROD, gpus=[2, 3], tensor_split=[1.0, 1.0, 1.0]), "tensor_split has 3 entries for 2 GPU(s)"),
    (dict(PROD, gpus=[2, 3], tensor_split=[0.0, 0.0]), "tensor_split is all zeros"),
    (dict(PROD, gpus=[2, 3], n_cpu_moe=40), "n_cpu_moe 40 is above the layer count"),
])
def test_check_vram_fails_on_bad_input(profile, msg):
    r = preflight.check_vram(_settings("4x80gb"), profile, None)
    assert r.status == "fail" and msg in r.message and r.hint


def test_cli_help_does_not_import_heavy_modules():
    import subprocess
    import sys

    code = ("import sys; from ossctl.cli.app import main; main(['vram', '--help']); "
            "print(sorted(m for m in ('pynvml', 'numpy', 'gguf', 'docker', 'ossctl.gpu.fit', 'ossctl.gpu.nvml') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "[]"
