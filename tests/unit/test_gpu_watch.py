"""`ossctl vram watch` on the fake NVML: golden table and JSON lines, the pinned JSON
schema, alerts and their exit code, bad input, NVML errors mid-watch, the in-place TTY
refresh and Ctrl-C."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from ossctl.gpu import watch as w
from tests.support.cli import Result, run_cli

GOLDEN = Path(__file__).parent / "golden_gpu"


@pytest.fixture(autouse=True)
def _home(home):
    return home


def vram(scenario: str, *args: str) -> Result:
    return run_cli(*args, env={"OSSCTL_FAKE_NVML": scenario})


@pytest.mark.parametrize("scenario,golden", [
    ("4x80gb", "watch_4x80gb.txt"),
    ("one-failing", "watch_one_failing.txt"),
    ("unsupported", "watch_unsupported.txt"),
])
def test_table_golden(scenario, golden):
    r = vram(scenario, "vram", "watch", "--once")
    assert r.code == 0, r.err
    assert r.out == (GOLDEN / golden).read_text(encoding="utf-8")


def test_json_lines_golden_with_alerts():
    r = vram("1x97gb", "--json", "vram", "watch", "--count", "5", "--interval", "0.05", "--alert-above", "80GiB")
    assert r.code == 0, r.err
    assert r.out == (GOLDEN / "watch_1x97gb_alert.jsonl").read_text(encoding="utf-8")
    lines = [json.loads(x) for x in r.out.splitlines()]
    assert [x["alerts"] for x in lines][2] == [{"gpu": 0, "state": "above", "memory_used": 90_000_000_000,
                                               "threshold_bytes": 80 * 1024 ** 3}]
    assert [len(x["alerts"]) for x in lines] == [0, 0, 1, 0, 1]  # edges only, not every sample above
    assert [x["gpus"][0]["alert"] for x in lines] == [False, False, True, True, False]
    assert r.err.splitlines() == [
        "alert: GPU 0: memory used 83.8 GiB is above the alert threshold 80.0 GiB",
        "ok: GPU 0: memory used 55.9 GiB is back under the alert threshold 80.0 GiB",
    ]


def test_json_line_schema_is_pinned():
    r = vram("4x80gb", "--json", "vram", "watch", "--once")
    (line,) = r.out.splitlines()
    rec = json.loads(line)
    assert list(rec) == ["time", "driver_version", "error", "gpus", "alerts"]
    assert list(rec["gpus"][0]) == ["index", "name", "uuid", "memory_total", "memory_used", "memory_free",
                                    "memory_used_pct", "utilization_gpu", "utilization_memory", "temperature_c",
                                    "power_w", "power_limit_w", "error", "alert", "processes"]
    assert list(rec["gpus"][0]["processes"][0]) == ["pid", "name", "type", "used_bytes", "container_id", "release",
                                                    "profile"]
    assert r.out == r.out.strip() + "\n" and "\n" not in r.out.strip()  # one compact object per line


def test_json_failing_gpu_golden():
    r = vram("one-failing", "--json", "vram", "watch", "--once")
    assert r.code == 0
    assert r.out == (GOLDEN / "watch_one_failing.jsonl").read_text(encoding="utf-8")
    gpus = json.loads(r.out)["gpus"]
    assert gpus[2]["error"] == "GPU is lost" and gpus[2]["memory_used"] is None
    assert "GPU 2: NVML error: GPU is lost" in r.err


def test_percent_threshold_and_exit_on_alert():
    r = vram("1x97gb", "--json", "vram", "watch", "--interval", "0.05", "--alert-above", "85%", "--exit-on-alert")
    assert r.code == 8
    assert len(r.out.splitlines()) == 3  # the sample that crossed is still printed
    assert "alert: GPU 0: memory used 83.8 GiB is above" in r.err


def test_gpu_filter():
    r = vram("4x80gb", "--json", "vram", "watch", "--once", "--gpu", "1,3")
    assert [g["index"] for g in json.loads(r.out)["gpus"]] == [1, 3]


@pytest.mark.parametrize("args,message", [
    (["--gpu", "9"], "error: unknown GPU id 9: this host has GPU 0-3"),
    (["--gpu", "one"], "error: malformed --gpu 'one'"),
    (["--alert-above", "95 gigs"], "error: malformed --alert-above '95 gigs'"),
    (["--alert-above", "150%"], "error: malformed --alert-above '150%'"),
    (["--exit-on-alert"], "error: --exit-on-alert needs --alert-above"),
])
def test_bad_input_is_one_clear_line(args, message):
    r = vram("4x80gb", "vram", "watch", "--once", *args)
    assert r.code == 2
    assert r.err.splitlines()[0] == message
    assert r.err.splitlines()[1].startswith("hint: ")
    assert "Traceback" not in r.err and r.out == ""


def test_no_driver():
    r = vram("no-driver", "vram", "watch", "--once")
    assert r.code == 5
    assert r.err.startswith("error: NVML is not available: NVML Shared Library Not Found\nhint: ")
    assert r.out == ""


def test_nvml_error_mid_watch_marks_the_gpu_and_goes_on():
    r = vram("fail-mid-watch", "--json", "vram", "watch", "--count", "3", "--interval", "0.05")
    assert r.code == 0
    errs = [[g["error"] for g in json.loads(x)["gpus"]] for x in r.out.splitlines()]
    assert errs == [[None, None], [None, "Unknown Error"], [None, "Unknown Error"]]
    assert r.err.count("GPU 1: NVML error: Unknown Error") == 1  # said once, not every sample


class _Tty(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def _run_tty(*args: str, monkeypatch) -> tuple[int, str, str]:
    from ossctl.cli.app import main

    monkeypatch.setenv("OSSCTL_FAKE_NVML", "1x97gb")
    out, err = _Tty(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_tty_refreshes_in_place(monkeypatch):
    code, out, _ = _run_tty("vram", "watch", "--count", "3", "--interval", "0.05", monkeypatch=monkeypatch)
    assert code == 0
    assert out.startswith(w.HIDE_CURSOR) and out.endswith(w.SHOW_CURSOR)
    assert "\x1b[2J" not in out  # never clears the screen (that is what flickers)
    frames = out[len(w.HIDE_CURSOR):-len(w.SHOW_CURSOR)].split("\x1b[J")[:-1]
    assert len(frames) == 3
    height = frames[0].count("\n")
    assert not frames[0].startswith("\x1b[")
    assert frames[1].startswith(f"\x1b[{height}F") and frames[2].startswith(f"\x1b[{height}F")
    assert all(line.endswith("\x1b[K") for line in frames[2].split("\n")[:-1])
    assert "▁▆█" in frames[2]  # the sparkline grew sample by sample


def test_ctrl_c_exits_0_and_restores_the_cursor(monkeypatch):
    import time

    def interrupt(_s):
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", interrupt)
    code, out, err = _run_tty("vram", "watch", "--interval", "5", monkeypatch=monkeypatch)
    assert code == 0
    assert out.endswith(w.SHOW_CURSOR) and out.count("\x1b[J") == 1
    assert "Traceback" not in err and "interrupted" not in err


def test_samples_keep_a_fixed_cadence():
    t = [100.0]
    slept = []

    def clock():
        return t[0]

    def sleep(s):
        slept.append(round(s, 6))
        t[0] += s

    def take():
        t[0] += 0.25  # each sample costs 0.25 s
        return object()

    got = list(w.samples(take, 1.0, 4, sleep=sleep, clock=clock))
    assert len(got) == 4
    assert slept == [0.75, 0.75, 0.75]  # not 1.0: the sample time is absorbed


def test_repaint_sequence():
    assert w.repaint("a\nbb", 0) == "a\x1b[K\nbb\x1b[K\n\x1b[J"
    assert w.repaint("a", 3) == "\x1b[3Fa\x1b[K\n\x1b[J"


def test_sparkline_ascii_and_gaps():
    from ossctl.gpu.nvml import GpuDevice, Snapshot

    st = w.WatchState()
    for used in (0, 50, None, 100):
        st.update(Snapshot(0.0, None, [GpuDevice(0, memory_total=100, memory_used=used)]))
    assert st.sparkline(0) == "▁▅ █"
    assert st.sparkline(0, ascii_only=True) == "_= #"


def test_driver_lost_mid_watch_keeps_sampling():
    r = vram("driver-lost", "--json", "vram", "watch", "--count", "3", "--interval", "0.05")
    assert r.code == 0
    recs = [json.loads(x) for x in r.out.splitlines()]
    assert [x["error"] for x in recs] == [None, "cannot count GPUs: Driver Not Loaded",
                                          "cannot count GPUs: Driver Not Loaded"]
    assert recs[1]["gpus"] == [] and list(recs[1]) == list(recs[0])  # same keys as a normal sample
    assert r.err.count("warning: cannot count GPUs") == 2


def test_clip_to_terminal():
    frame = "\n".join(f"line {i} " + "x" * 50 for i in range(10))
    out = w.clip(frame, 20, 5).split("\n")
    assert len(out) == 5 and all(len(x) <= 20 for x in out)
    assert out[-1].startswith("... 6 more lines")
    assert w.clip("a\nb", 80, 24) == "a\nb"


def test_broken_pipe_is_a_quiet_exit(tmp_path):
    import subprocess
    import sys

    # a reader that stops after the first line: the watch must end without a traceback
    p = subprocess.run(f"{sys.executable} -m ossctl --json vram watch --interval 0.05 --count 200 | head -1",
                       shell=True, capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "OSSCTL_FAKE_NVML": "4x80gb", "OSSCTL_HOME": str(tmp_path)})
    assert p.stdout.count("\n") == 1 and json.loads(p.stdout)["gpus"]
    assert "Traceback" not in p.stderr and "error" not in p.stderr
