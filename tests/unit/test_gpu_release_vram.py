"""Predicted vs measured GPU memory of a release (ossctl/gpu/release_vram.py), on the fake
NVML: processes are mapped to containers through their cgroup, as `vram watch` does."""

from __future__ import annotations

import json

import pytest

from ossctl.gpu import release_vram
from ossctl.gpu.fake import FakeNvml
from ossctl.settings import load_settings

CID = "ab" * 32  # the release's container
OTHER = "cd" * 32
MiB = 1024 ** 2


def _scenario(tmp_path, **over):
    sc = {
        "driver": "580.159.04", "time": 0.0,
        "gpus": [
            {"name": "H200", "uuid": "GPU-0", "total": 150 * 1024 * MiB, "used": 9000 * MiB,
             "processes": [[100, 8484 * MiB, "compute"], [300, 500 * MiB, "compute"]]},
            {"name": "H200", "uuid": "GPU-1", "total": 150 * 1024 * MiB, "used": 8300 * MiB,
             "processes": [[100, 8204 * MiB, "compute"], [101, 16 * MiB, "compute"]]},
            {"name": "H200", "uuid": "GPU-2", "total": 150 * 1024 * MiB, "used": 600 * MiB,
             "processes": [[200, 1000 * MiB, "compute"]]},
        ],
        "proc": {"100": {"comm": "llama-server", "cgroup": f"0::/system.slice/docker-{CID}.scope"},
                 "101": {"comm": "helper", "cgroup": f"0::/docker/{CID}"},
                 "200": {"comm": "llama-server", "cgroup": f"0::/docker/{OTHER}"},
                 "300": {"comm": "python3", "cgroup": "0::/user.slice/session-2.scope"}},
    }
    sc.update(over)
    path = tmp_path / "sc.json"
    path.write_text(json.dumps(sc))
    return load_settings(env={"OSSCTL_FAKE_NVML": str(path)})


PLAN = {"gpus": [{"index": 0, "total": 8500 * MiB}, {"index": 1, "total": 8221 * MiB}]}


def test_measure_release_sums_the_containers_processes_per_gpu(tmp_path):
    out = release_vram.measure_release(_scenario(tmp_path), CID[:12], plan=PLAN)
    # GPU 0: only pid 100 is the release's (300 is a host process); GPU 1: pids 100 + 101
    assert out == {"plan": {0: 8500 * MiB, 1: 8221 * MiB}, "measured": {0: 8484 * MiB, 1: 8220 * MiB}}
    assert release_vram.measure_release(_scenario(tmp_path), CID, plan=None)["plan"] == {}


def test_measure_release_without_nvml_is_none(tmp_path):
    assert release_vram.measure_release(_scenario(tmp_path, init_error="NVML Shared Library Not Found"), CID) is None
    settings = load_settings(env={"OSSCTL_FAKE_NVML": "no-driver"})
    assert release_vram.measure_release(settings, CID) is None


def test_measure_release_of_a_container_nvml_does_not_see(tmp_path):
    out = release_vram.measure_release(_scenario(tmp_path), "ef" * 32, plan={"0": 1})
    assert out == {"plan": {0: 1}, "measured": {}}


def test_drift_from_a_record_after_a_json_round_trip(tmp_path):
    measured = release_vram.measure_release(_scenario(tmp_path), CID, plan=PLAN)
    record = json.loads(json.dumps({"release": "prod-20260101T000000Z", "vram": measured}))  # keys become strings
    rows = release_vram.drift(record)
    assert rows == [
        {"gpu": 0, "plan": 8500 * MiB, "measured": 8484 * MiB, "diff_bytes": 16 * MiB, "diff_pct": 0.2},
        {"gpu": 1, "plan": 8221 * MiB, "measured": 8220 * MiB, "diff_bytes": 1 * MiB, "diff_pct": 0.0},
    ]
    line = release_vram.describe_drift(rows, record["release"])
    assert line == "last release prod-20260101T000000Z: plan − measured GPU 0 +0.2 % (+16 MiB), GPU 1 +0.0 % (+1 MiB)"
    assert release_vram.drift(record["vram"]) == rows  # the two fields at the top level work too


@pytest.mark.parametrize("record", [None, {}, {"release": "x"}, {"vram": {"plan": {"0": 5}, "measured": {}}}])
def test_drift_without_a_measurement_is_empty(record):
    assert release_vram.drift(record) == []
    assert release_vram.describe_drift([]) is None


def test_vram_plan_prints_last_release_drift(monkeypatch, home):
    from ossctl.ops import vram
    from tests.support.cli import run_cli

    record = {"release": "prod-1", "plan": {"0": 100 * MiB}, "measured": {"0": 98 * MiB}}
    monkeypatch.setattr(vram, "last_release_record", lambda settings, name: record if name == "prod" else None)
    r = run_cli("--json", "vram", "plan", "--profile", "prod", "--gpus", "1x97GB")
    assert r.json()["last_release"] == {"release": "prod-1", "gpus": [
        {"gpu": 0, "plan": 100 * MiB, "measured": 98 * MiB, "diff_bytes": 2 * MiB, "diff_pct": 2.0}]}
    r = run_cli("vram", "plan", "--profile", "prod", "--gpus", "1x97GB")
    assert "last release prod-1: plan − measured GPU 0 +2.0 % (+2 MiB)" in r.out


def test_measured_below_the_plan_by_more_than_3_percent_is_named(tmp_path):
    """What the deploy gate checks after the health gate (issue 23), on the fake NVML."""
    within = release_vram.measure_release(_scenario(tmp_path), CID[:12], plan=PLAN)
    assert release_vram.below_plan(within) == []  # -0.2 % and -0.0 %
    moved = release_vram.measure_release(_scenario(tmp_path), CID[:12],
                                         plan={"gpus": [{"index": 0, "total": 9000 * MiB}, {"index": 1, "total": 8221 * MiB},
                                                        {"index": 2, "total": 4000 * MiB}]})
    assert release_vram.below_plan(moved) == ["GPU 0: 8484 MiB measured vs 9000 MiB planned (-5.7 %)",
                                              "GPU 2: 0 MiB measured vs 4000 MiB planned (-100.0 %)"]
