"""Exact-value tests of the pure metric builders, the bench-result cache and the text
format round trip."""

from __future__ import annotations

import json

import pytest

from ossctl.errors import UsageError
from ossctl.gpu import nvml
from ossctl.gpu.fake import FakeNvml
from ossctl.loadtest import report as rep
from ossctl.metrics import families as F
from ossctl.metrics.promclient import parse_listen, parse_text, render_text

REL = {"profile": "prod", "release": "r0007", "model_id": "0x" + "ab" * 32, "composite_sha256": "cd" * 32,
       "ctx": 131072, "endpoint": "http://127.0.0.1:8080", "container_id": "3f4e1a2b5c6d" + "0" * 52, "health": "ok"}


def samples(out: F.Families, name: str) -> list[tuple[dict, float]]:
    return [(lab, v) for f in out for n, lab, v in f.samples if n == name]


def test_host_label_never_carries_user_or_port():
    assert F.host_label("unix:///var/run/docker.sock", "gpu-7") == "gpu-7"
    assert F.host_label(None, "gpu-7") == "gpu-7"
    assert F.host_label("ssh://deploy@gpu-3.lan:2222", "x") == "gpu-3.lan"
    assert F.host_label("tcp://10.0.0.5:2376", "x") == "10.0.0.5"


def test_release_labels_are_the_documented_set_with_a_short_hash():
    lab = F.release_labels(REL, "gpu-7")
    assert lab == {"profile": "prod", "release": "r0007", "model_id": "0x" + "ab" * 32,
                   "composite_sha256": "cdcdcdcdcdcd", "ctx": "131072", "host": "gpu-7"}
    assert tuple(lab) == F.RELEASE_LABELS


def test_slots_counts_current_and_old_shapes():
    assert F.slots_counts([{"id": 0, "is_processing": True}, {"id": 1, "is_processing": False}]) == (1, 2)
    assert F.slots_counts([{"id": 0, "state": 1}, {"id": 1, "state": 0}, {"id": 2, "state": 0}]) == (1, 3)
    assert F.slots_counts({"error": "not supported"}) is None
    assert F.slots_counts(["x"]) is None


def test_gpu_families_attribute_memory_to_releases_and_strays():
    be = FakeNvml.load("4x80gb")
    be.init()
    snap = nvml.snapshot(be, None, container_labels=be.container_labels)
    out = F.Families()
    # prod's container is a release the engine reports; dev only has the fake's labels
    F.gpu_families(out, snap, "gpu-7", {"3f4e1a2b5c6d": F.release_labels(REL, "gpu-7")})
    used = samples(out, "ossctl_release_gpu_memory_used_bytes")
    assert used == [({**F.release_labels(REL, "gpu-7"), "gpu": "0"}, 69_474_697_216.0),
                    ({"profile": "dev", "release": "dev-20260101T000500Z", "model_id": "", "composite_sha256": "",
                      "ctx": "", "host": "gpu-7", "gpu": "1"}, 13_421_772_800.0)]
    assert [v for _l, v in samples(out, "ossctl_gpu_other_memory_used_bytes")] == [0, 1_465_909_248, 0, 0]
    total = samples(out, "ossctl_gpu_memory_total_bytes")
    assert total[0] == ({"gpu": "0", "uuid": "GPU-00000000-0000-0000-0000-000000000000",
                         "name": "NVIDIA H100 80GB HBM3", "host": "gpu-7"}, 81_559_453_696.0)
    assert [v for _l, v in samples(out, "ossctl_gpu_up")] == [1, 1, 1, 1]
    assert [v for _l, v in samples(out, "ossctl_gpu_power_watts")] == [71.5, 72.5, 73.5, 74.5]


def test_unsupported_fields_are_absent_and_a_failing_gpu_is_down():
    for scenario, down in (("unsupported", []), ("one-failing", ["2"])):
        be = FakeNvml.load(scenario)
        be.init()
        out = F.Families()
        F.gpu_families(out, nvml.snapshot(be), "h", {})
        assert [lab["gpu"] for lab, v in samples(out, "ossctl_gpu_up") if v == 0] == down
        if scenario == "unsupported":
            assert samples(out, "ossctl_gpu_temperature_celsius") == []
            assert samples(out, "ossctl_gpu_memory_used_bytes") == [({"gpu": "0", "uuid": "GPU-aaaaaaaa-0000-0000-0000-000000000000",
                                                                      "name": "NVIDIA A10G", "host": "h"}, 1_073_741_824.0)]


def _report(sla_ok: bool | None) -> dict:
    lv = {"users": 5, "requests": 40, "error_pct": 2.5, "output_tps": 31.25, "latency_s": {"p50": 1.5, "p95": 3.25},
          "sla_failures": None if sla_ok is None else ([] if sla_ok else ["p95 3.25s >= 3s"])}
    r = {"stream": True, "levels": [lv], "sla": None}
    if sla_ok is not None:
        r["sla"] = {"spec": "p95<3s", "ok": sla_ok, "max_users": None, "failed_users": [], "not_run_users": []}
    return r


def test_bench_summary_round_trip_and_families(tmp_path):
    s = rep.last_summary(_report(False), "prod", "r0007", 1767225600.0)
    assert tuple(s) == rep.LAST_KEYS and tuple(s["levels"][0]) == rep.LAST_LEVEL_KEYS
    rep.store_last(tmp_path, s)
    (tmp_path / "bench" / "broken.json").write_text("{not json")
    (tmp_path / "bench" / "other.json").write_text(json.dumps({**s, "profile": "prod"}))  # name does not match
    assert rep.load_last(tmp_path) == {"prod": s}
    assert rep.load_last(tmp_path, "dev") == {}
    out = F.Families()
    F.bench_families(out, {"prod": s})
    base = {"profile": "prod", "release": "r0007"}
    assert samples(out, "ossctl_bench_latency_seconds") == [({**base, "users": "5", "quantile": "0.5"}, 1.5),
                                                            ({**base, "users": "5", "quantile": "0.95"}, 3.25)]
    assert samples(out, "ossctl_bench_error_ratio") == [({**base, "users": "5"}, 0.025)]
    assert samples(out, "ossctl_bench_output_tokens_per_second") == [({**base, "users": "5"}, 31.25)]
    assert samples(out, "ossctl_bench_sla_pass") == [({**base, "sla": "p95<3s"}, 0.0)]
    assert samples(out, "ossctl_bench_level_sla_pass") == [({**base, "users": "5"}, 0.0)]
    assert samples(out, "ossctl_bench_timestamp_seconds") == [(base, 1767225600.0)]
    out = F.Families()
    F.bench_families(out, {"prod": rep.last_summary(_report(None), "prod", None, 1.0)})
    assert samples(out, "ossctl_bench_sla_pass") == [] and samples(out, "ossctl_bench_level_sla_pass") == []


LLAMA_TEXT = """# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 12
# HELP llamacpp:kv_cache_usage_ratio KV-cache usage. 1 means 100 percent usage.
# TYPE llamacpp:kv_cache_usage_ratio gauge
llamacpp:kv_cache_usage_ratio 0.25
"""


def test_llama_families_are_relabelled_and_merged_across_releases():
    out = F.Families()
    a = F.release_labels(REL, "h")
    b = F.release_labels({**REL, "profile": "dev", "release": "r0001"}, "h")
    F.relabel(out, parse_text(LLAMA_TEXT), a)
    F.relabel(out, parse_text(LLAMA_TEXT.replace(" 12", " 30")), b)
    F.exporter_families(out, 0.004, [{"source": "nvml", "target": "", "error": None},
                                     {"source": "llama_metrics", "target": "dev", "error": "no answer in time"}],
                        {"nvml": 0, "llama_metrics": 3})
    text = render_text(out)
    assert text.count("# TYPE llamacpp:prompt_tokens_total counter") == 1  # one family, two releases
    back = {f.name: f for f in parse_text(text)}
    assert [(lab["release"], v) for _n, lab, v in back["llamacpp:prompt_tokens"].samples] == [("r0007", 12), ("r0001", 30)]
    assert back["llamacpp:kv_cache_usage_ratio"].samples[0][1] == {**a}
    assert [(lab, v) for _n, lab, v in back["ossctl_exporter_source_up"].samples] == [
        ({"source": "nvml", "target": ""}, 1.0), ({"source": "llama_metrics", "target": "dev"}, 0.0)]
    assert ("ossctl_exporter_source_errors_total", {"source": "llama_metrics"}, 3.0) in back["ossctl_exporter_source_errors"].samples


def test_parse_listen():
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen(":9000") == ("127.0.0.1", 9000)
    for bad in ("9464", "host:", "h:99999", "h:x"):
        with pytest.raises(UsageError, match="is not HOST:PORT"):
            parse_listen(bad)
