"""``ossctl tune``'s library call with trials as native llama-server processes
(ossctl/serve/native.py: what bench/tune_device.sh uses on a GPU host without Docker),
on the CPU build and the tiny model: same argv as a container, gated, benched, stopped."""

from __future__ import annotations

import os

import pytest

from tests.conftest import require_env

pytestmark = pytest.mark.llama


def test_tune_with_native_trials(home, serve_model, tmp_path):
    from pathlib import Path

    from ossctl.ops.tune import tune, tune_options
    from ossctl.serve.native import NativeRuntime
    from ossctl.settings import load_settings

    (home / "profiles").mkdir()
    (home / "profiles" / "nat.toml").write_text(
        f'extends = "cpu"\nmodel = "{serve_model}"\nctx = 512\nthreads = 1\nbatch = 64\nubatch = 64\n'
        'health_timeout = 60\n')
    settings = load_settings({**os.environ, "OSSCTL_HOME": str(home)})
    opts = tune_options(profile="nat", sla="errors<5%", users=2, capacity=False, space=["parallel=1,2"], time=None,
                        max_trials=None, min_ctx_per_slot=256, margin=None, take_over=False, requests=4,
                        max_tokens=8)
    rt = NativeRuntime(require_env("OSSCTL_TEST_LLAMA_BIN"), tmp_path / "logs")
    logs: list[str] = []
    res = tune(settings, opts, runtime=rt, log=logs.append)
    assert [t.point for t in res.trials] == [{"parallel": 1}, {"parallel": 2}]
    assert all(t.status == "ok" and t.sla_ok and t.output_tps > 0 and t.vram_bytes is None for t in res.trials)
    assert rt.procs == {}  # every trial process stopped and forgotten
    logs_dir = sorted(Path(tmp_path / "logs").glob("ossctl-trial-nat-*.log"))
    assert len(logs_dir) == 2
    assert any("-np 2" in ln or "parallel=2" in ln for ln in logs)
