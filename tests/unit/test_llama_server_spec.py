"""Exact-value tests of the pure container-spec builder, and of release bookkeeping."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from ossctl.errors import ConflictError
from ossctl.serve import llama_server as L
from ossctl.serve import releases
from ossctl.serve.profiles import validate

MAN = SimpleNamespace(first_file="m-00001-of-00003.gguf", model_id="0x" + "ab" * 32, composite_sha256="cd" * 32,
                      repo="ggml-org/gpt-oss-120b-GGUF", revision="f" * 40)


def prof(**over):
    raw = {"model": "120b", "image": "ghcr.io/ggml-org/llama.cpp:server-cuda-b6100", "ctx": 131072}
    raw.update(over)
    return validate(raw, "prod")


def test_default_gpu_spec_exact():
    spec = L.build_spec(prof(flash_attn="on"), MAN, "/data/m", "r0007", 8080)
    assert spec == {
        "name": "ossctl-prod-r0007",
        "image": "ghcr.io/ggml-org/llama.cpp:server-cuda-b6100",
        "command": ["-m", "/models/m-00001-of-00003.gguf", "-c", "131072", "-ngl", "99", "--fit", "off", "-b", "2048",
                    "-ub", "512", "-fa", "on", "--jinja", "-np", "1", "--metrics", "--host", "0.0.0.0", "--port", "8080"],
        "environment": {},
        "mounts": [{"type": "bind", "source": "/data/m", "target": "/models", "read_only": True}],
        "ports": {"8080/tcp": ["127.0.0.1", 8080]},
        "device_requests": [{"driver": "nvidia", "count": -1, "device_ids": [], "capabilities": [["gpu"]]}],
        "restart_policy": {"Name": "unless-stopped"},
        "labels": {
            "ossctl.managed": "1", "ossctl.release": "r0007", "ossctl.profile": "prod",
            "ossctl.kind": "deploy", "ossctl.source": "r0007", "ossctl.model_id": "0x" + "ab" * 32, "ossctl.composite_sha256": "cd" * 32,
            "ossctl.model_repo": "ggml-org/gpt-oss-120b-GGUF", "ossctl.model_revision": "f" * 40,
            "ossctl.ctx": "131072", "ossctl.port": "8080",
        },
        "api_key_file": None,
    }


def test_cpu_spec_blue_green_port_and_no_devices():
    p = prof(gpus="none", n_gpu_layers=0, ctx=512, port=9000, flash_attn="off", jinja=False, restart="no")
    spec = L.build_spec(p, MAN, "/m", "r0001", 9001)
    assert spec["device_requests"] == []
    assert spec["ports"] == {"9000/tcp": ["127.0.0.1", 9001]}  # listens on 9000 inside, published on 9001
    assert spec["command"] == ["-m", "/models/m-00001-of-00003.gguf", "-c", "512", "-ngl", "0", "--fit", "off", "-b", "2048",
                               "-ub", "512", "-fa", "off", "--no-jinja", "-np", "1", "--metrics", "--host", "0.0.0.0",
                               "--port", "9000"]
    assert spec["restart_policy"] == {"Name": "no"}
    assert spec["labels"]["ossctl.port"] == "9001"


def test_listed_gpus_tensor_split_sampling_and_extras():
    p = prof(gpus=[0, 2], tensor_split=[3, 1], n_cpu_moe=4, threads=8, cache_type_k="q8_0", cache_type_v="q8_0",
             parallel=4, temperature=1.0, top_p=0.95, top_k=0, min_p=0.05, extra_args=["--no-webui"])
    spec = L.build_spec(p, MAN, "/m", "r0002", 8080)
    assert spec["device_requests"] == [{"driver": "nvidia", "count": 0, "device_ids": ["0", "2"],
                                        "capabilities": [["gpu"]]}]
    assert spec["command"][14:] == ["--jinja", "-np", "4", "-ctk", "q8_0", "-ctv", "q8_0", "--n-cpu-moe", "4",
                                    "-ts", "3,1", "-t", "8", "--temp", "1", "--top-p", "0.95", "--min-p", "0.05",
                                    "--top-k", "0", "--metrics", "--host", "0.0.0.0", "--port", "8080", "--no-webui"]


def test_metrics_key_turns_the_flag_off():
    assert "--metrics" not in L.build_spec(prof(metrics=False), MAN, "/m", "r0001", 8080)["command"]
    with pytest.raises(Exception, match="`metrics` must be true or false"):
        prof(metrics="yes")


def test_api_key_is_a_mounted_file_never_argv_or_env(tmp_path):
    keyfile = tmp_path / "key"
    keyfile.write_text("s3cret-key-value\n")
    p = prof(host="0.0.0.0", api_key_file=str(keyfile))
    spec = L.build_spec(p, MAN, "/m", "r0003", 8080)
    assert spec["mounts"][1] == {"type": "bind", "source": str(keyfile), "target": "/run/secrets/ossctl-api-key",
                                 "read_only": True}
    assert spec["command"][-6:] == ["--api-key-file", "/run/secrets/ossctl-api-key", "--host", "0.0.0.0",
                                    "--port", "8080"]
    assert spec["ports"] == {"8080/tcp": ["0.0.0.0", 8080]}
    text = repr(spec) + L.docker_run_line(spec)
    assert "s3cret" not in text and spec["environment"] == {}


def test_docker_run_line_exact():
    p = prof(gpus=[1], ctx=4096, model="20b")
    spec = L.build_spec(p, MAN, "/data/my models", "r0001", 8080)
    assert L.docker_run_line(spec) == (
        "docker run -d --name ossctl-prod-r0001 --restart unless-stopped -p 127.0.0.1:8080:8080 "
        "--mount 'type=bind,source=/data/my models,target=/models,readonly' --gpus '\"device=1\"' "
        "--label ossctl.managed=1 --label ossctl.release=r0001 --label ossctl.profile=prod "
        "--label ossctl.kind=deploy --label ossctl.source=r0001 "
        f"--label ossctl.model_id=0x{'ab' * 32} --label ossctl.composite_sha256={'cd' * 32} "
        "--label ossctl.model_repo=ggml-org/gpt-oss-120b-GGUF "
        f"--label ossctl.model_revision={'f' * 40} --label ossctl.ctx=4096 --label ossctl.port=8080 "
        "ghcr.io/ggml-org/llama.cpp:server-cuda-b6100 -m /models/m-00001-of-00003.gguf -c 4096 -ngl 99 --fit off "
        "-b 2048 -ub 512 -fa auto --jinja -np 1 --metrics --host 0.0.0.0 --port 8080")


def _rel(rid, state="ok", profile="p", **kw):
    return releases.Release(id=rid, profile=profile, state=releases.State(state), **kw)


def test_next_id_counts_ledger_unreadable_records_and_labels():
    book = releases.Book([], [])
    assert book.next_id("p") == "r0001"
    book = releases.Book([_rel("r0003")], [releases.Unreadable("p", "r0005", "bad json")])
    assert book.next_id("p") == "r0006"
    assert book.next_id("p", ["r0009", "junk", ""]) == "r0010"
    assert book.next_id("other") == "r0001"


def test_current_is_the_newest_ok_release():
    book = releases.Book([_rel("r0002", "failed"), _rel("r0001"), _rel("r0004", "interrupted"), _rel("r0003"),
                          _rel("r0010", "pending")], [])
    assert book.current("p").id == "r0003"
    assert [r.id for r in book.history("p")] == ["r0001", "r0002", "r0003", "r0004", "r0010"]
    assert book.current("nothing") is None


def test_state_transitions():
    r = _rel("r0001", "pending")
    r.to(releases.State.OK)
    with pytest.raises(ValueError, match="ok → failed is not allowed"):
        r.to(releases.State.FAILED)
    r2 = _rel("r0002", "pending")
    r2.to(releases.State.INTERRUPTED, "killed")
    assert (r2.state, r2.error) == (releases.State.INTERRUPTED, "killed")
    with pytest.raises(ValueError):
        r2.to(releases.State.OK)


def test_record_round_trip_and_rejects_bad_shapes():
    r = _rel("r0007", spec={"name": "x", "image": "i:1", "command": ["-m", "/models/a.gguf"], "labels": {},
                            "restart_policy": {"Name": "no"}}, port=8080, ctx=512)
    assert releases.Release.from_dict(r.to_dict()) == r
    for bad, why in [([], "not a JSON object"), ({"id": "r1"}, "missing field 'profile'"),
                     ({"id": "x1", "profile": "p", "state": "ok"}, "bad release id"),
                     ({"id": "r0001", "profile": "p", "state": "serving"}, "unknown state"),
                     ({"id": "r0001", "profile": "p", "state": "ok", "spec": "nope"}, "field 'spec' must be an object")]:
        with pytest.raises(releases.RecordError, match=why):
            releases.Release.from_dict(bad)


def test_dead_lock_holder_is_detected_only_on_this_machine():
    import socket
    import subprocess

    p = subprocess.Popen(["true"])
    p.wait()
    me = {"owner": releases.whoami(), "boot_id": releases._boot_id(), "pid": os.getpid(),
          "pid_ns": releases._pid_ns(), "start": releases._proc_start(os.getpid())}
    assert not releases.holder_is_dead(me)  # this very process: alive
    assert releases.holder_is_dead({**me, "pid": p.pid})  # exited
    assert releases.holder_is_dead({**me, "start": "1"})  # pid reused by another process
    assert not releases.holder_is_dead({**me, "pid": p.pid, "owner": "ops@other-" + socket.gethostname()})
    assert not releases.holder_is_dead({**me, "pid": p.pid, "boot_id": "another-boot"})
    assert not releases.holder_is_dead({**me, "pid": p.pid, "pid_ns": "pid:[1]"})  # another PID namespace
    assert not releases.holder_is_dead({k: v for k, v in {**me, "pid": p.pid}.items() if k != "pid_ns"})
    assert releases.holder_is_alive(me) and not releases.holder_is_alive({**me, "pid": p.pid})
    assert not releases.holder_is_alive({**me, "pid_ns": "pid:[1]"})
