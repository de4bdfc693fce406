"""NVML snapshot through the fake backend (same interface as the real adapter), PID →
cgroup → container mapping, and the real adapter's no-driver path on this GPU-less box."""

from __future__ import annotations

import json

import pytest

from ossctl.errors import UsageError
from ossctl.gpu import nvml
from ossctl.gpu.fake import SCENARIOS, FakeNvml

CID = "3f4e1a2b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f"


def snap(name: str, **kw):
    be = FakeNvml(SCENARIOS[name])
    be.init()
    return nvml.snapshot(be, container_labels=be.container_labels, **kw)


def test_four_gpus_with_processes_mapped_to_releases():
    s = snap("4x80gb")
    assert [d.index for d in s.devices] == [0, 1, 2, 3]
    d0 = s.devices[0]
    assert (d0.memory_total, d0.memory_used, d0.memory_free) == (81_559_453_696, 70_116_884_480, 81_559_453_696 - 70_116_884_480)
    assert (d0.utilization_gpu, d0.temperature_c, d0.power_w, d0.power_limit_w, d0.error) == (37, 31, 71.5, 700.0, None)
    p = d0.processes[0]
    assert (p.pid, p.name, p.container_id, p.release, p.profile) == (4242, "llama-server", CID[:12], "prod-20260101T000000Z", "prod")
    # GPU 1: the bigger process first; the host process has no container
    assert [(q.pid, q.container_id, q.profile) for q in s.devices[1].processes] == [
        (4343, "9a8b7c6d5e4f", "dev"), (5151, None, None)]
    assert s.driver_version == "550.54.15"


def test_a_failing_gpu_does_not_hide_the_others():
    s = snap("one-failing")
    assert [d.error for d in s.devices] == [None, None, "GPU is lost", None]
    assert s.devices[2].memory_used is None and s.devices[2].name is None
    assert s.devices[3].memory_used == 566_231_040


def test_unsupported_fields_are_none():
    d = snap("unsupported").devices[0]
    assert (d.utilization_gpu, d.temperature_c, d.power_w, d.power_limit_w) == (None, None, None, None)
    assert d.error is None and d.memory_used == 1_073_741_824
    assert d.processes[0].used_bytes is None


def test_no_driver():
    with pytest.raises(nvml.GpuUnavailable, match="NVML is not available") as e:
        FakeNvml(SCENARIOS["no-driver"]).init()
    assert e.value.hint and "nvidia-smi" in e.value.hint


def test_real_adapter_without_a_driver_is_a_clear_error():
    """This machine has nvidia-ml-py but no NVIDIA driver: the real adapter must say so."""
    pytest.importorskip("pynvml")
    from pathlib import Path

    if any(Path(p).exists() for p in ("/dev/nvidiactl", "/proc/driver/nvidia/version")):
        pytest.skip("an NVIDIA driver is present here")
    be = nvml.PynvmlBackend()
    with pytest.raises(nvml.GpuUnavailable) as e:
        be.init()
    assert "NVML is not available" in e.value.message


def test_gpu_selection_and_unknown_id():
    s = snap("4x80gb", gpus=[1, 3])
    assert [d.index for d in s.devices] == [1, 3]
    with pytest.raises(UsageError, match=r"unknown GPU id 7: this host has GPU 0-3"):
        snap("4x80gb", gpus=[0, 7])


def test_process_in_both_lists_counts_once():
    sc = {"gpus": [{"name": "G", "uuid": "u", "total": 100, "used": 50,
                    "processes": [[10, 30, "compute"], [10, 30, "graphics"], [11, None, "graphics"]]}]}
    be = FakeNvml(sc)
    d = nvml.snapshot(be).devices[0]
    assert [(p.pid, p.used_bytes, p.type) for p in d.processes] == [(10, 30, "compute+graphics"), (11, None, "graphics")]


def test_labels_lookup_failure_keeps_the_row():
    be = FakeNvml(SCENARIOS["4x80gb"])

    def broken(cid):
        raise RuntimeError("engine down")

    d = nvml.snapshot(be, container_labels=broken).devices[0]
    assert d.processes[0].container_id == CID[:12] and d.processes[0].release is None


@pytest.mark.parametrize("text,cid", [
    (f"0::/system.slice/docker-{CID}.scope", CID),  # cgroup v2, systemd driver
    (f"12:memory:/docker/{CID}\n11:cpu:/docker/{CID}", CID),  # cgroup v1
    (f"0::/kubepods/besteffort/pod1234/{CID}", CID),
    (f"0::/machine.slice/libpod-{CID}.scope/container", CID),  # podman
    ("0::/user.slice/user-1000.slice/session-2.scope", None),
    ("0::/", None),
    (None, None),
])
def test_container_id_from_cgroup(text, cid):
    assert nvml.container_id_from_cgroup(text) == cid


def test_read_proc_reads_a_real_process(tmp_path):
    import os

    comm, cgroup = nvml.read_proc(os.getpid())
    assert comm and cgroup is not None
    assert nvml.read_proc(2 ** 22 + 12345) == (None, None)  # no such PID
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "comm").write_text("llama-server\n")
    (tmp_path / "77" / "cgroup").write_text(f"0::/docker/{CID}\n")
    assert nvml.read_proc(77, tmp_path) == ("llama-server", f"0::/docker/{CID}")


def test_fake_from_json_file(tmp_path):
    f = tmp_path / "sc.json"
    f.write_text(json.dumps({"gpus": [{"name": "J", "uuid": "u", "total": 10, "used": 4}]}))
    be = nvml.open_backend({"OSSCTL_FAKE_NVML": str(f)})
    be.init()
    assert nvml.snapshot(be).devices[0].memory_free == 6
    with pytest.raises(UsageError, match="unknown fake NVML scenario"):
        nvml.open_backend({"OSSCTL_FAKE_NVML": "nope"})


def test_open_backend_is_real_by_default():
    assert isinstance(nvml.open_backend({}), nvml.PynvmlBackend)


def test_real_adapter_translates_nvml_errors(monkeypatch):
    """The pynvml adapter's error translation, with the NVML C calls replaced (no GPU
    here): NOT_SUPPORTED → n/a, any other NVML error → the GPU is marked, not raised."""
    pynvml = pytest.importorskip("pynvml")
    from types import SimpleNamespace

    def nvml_error(code):
        def f(*a):
            raise pynvml.NVMLError(code)
        return f

    calls = {
        "nvmlInit": lambda: None, "nvmlShutdown": lambda: None,
        "nvmlSystemGetDriverVersion": lambda: "550.54.15", "nvmlDeviceGetCount": lambda: 2,
        "nvmlDeviceGetHandleByIndex": lambda i: i,
        "nvmlDeviceGetName": lambda h: b"NVIDIA H100 80GB HBM3" if h == 0 else "NVIDIA H100 80GB HBM3",
        "nvmlDeviceGetUUID": lambda h: f"GPU-{h}",
        "nvmlDeviceGetMemoryInfo": lambda h: SimpleNamespace(total=100, used=40, free=60) if h == 0
        else nvml_error(pynvml.NVML_ERROR_GPU_IS_LOST)(),
        "nvmlDeviceGetUtilizationRates": nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED),
        "nvmlDeviceGetTemperature": lambda h, sensor: 35,
        "nvmlDeviceGetPowerUsage": lambda h: 123456,  # mW
        "nvmlDeviceGetEnforcedPowerLimit": lambda h: 700000,
        "nvmlDeviceGetComputeRunningProcesses": lambda h: [SimpleNamespace(pid=1, usedGpuMemory=None)],
        "nvmlDeviceGetGraphicsRunningProcesses": nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED),
    }
    for name, fn in calls.items():
        monkeypatch.setattr(pynvml, name, fn)
    be = nvml.PynvmlBackend()
    be.init()
    s = nvml.snapshot(be, proc_reader=lambda pid: ("init", "0::/"))
    be.shutdown()
    d0, d1 = s.devices
    assert (d0.name, d0.memory_used, d0.utilization_gpu, d0.power_w, d0.power_limit_w, d0.error) == (
        "NVIDIA H100 80GB HBM3", 40, None, 123.456, 700.0, None)
    assert [(p.pid, p.used_bytes, p.type, p.name) for p in d0.processes] == [(1, None, "compute", "init")]
    assert d1.memory_used is None and d1.error and d1.temperature_c == 35  # marked, the rest still read
    assert s.driver_version == "550.54.15"


def test_session_inits_shuts_down_and_converts_query_errors():
    be = nvml.open_backend({"OSSCTL_FAKE_NVML": "4x80gb"})
    with nvml.Session(backend=be) as got:
        assert got is be and be.initialised
    assert not be.initialised
    with pytest.raises(nvml.GpuUnavailable, match="NVML query failed: Invalid Argument"):
        with nvml.Session(backend=be) as got:
            got.handle(99)
    assert not be.initialised
    with pytest.raises(nvml.GpuUnavailable, match="Shared Library Not Found"):
        with nvml.Session({"OSSCTL_FAKE_NVML": "no-driver"}):
            pass
    with pytest.raises(UsageError, match="unknown fake NVML scenario"):
        nvml.Session({"OSSCTL_FAKE_NVML": "nope"})  # chosen when made, not when entered
