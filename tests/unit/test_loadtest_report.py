import importlib.util

import pytest

from ossctl.errors import UsageError
from ossctl.loadtest import report as rep
from ossctl.loadtest.stats import Sample


def fixed_report(stream=True, sla=None):
    lv1 = rep.level([Sample("factual", 1.0, ttft=0.25, output_tokens=50, gen_tps=55.0, prompt_tps=900.0),
                     Sample("code", 2.0, ttft=0.5, output_tokens=100, gen_tps=52.5, prompt_tps=850.0)],
                    users=1, elapsed_s=3.0, stream=stream, cpu_s=0.004, order=["factual", "code"])
    lv5 = rep.level([Sample("factual", 4.0, ttft=1.0, output_tokens=200, effort="low"),
                     Sample("code", 6.0, ttft=2.0, output_tokens=300, effort="high"),
                     Sample("code", 12.5, "http_500", effort="medium"),
                     Sample("factual", 30.0, "timeout", effort="high")],
                    users=5, elapsed_s=30.0, stream=stream, cpu_s=0.01, order=["factual", "code"], effort="mixed")
    r = rep.build("http://127.0.0.1:8080", "gpt-oss-20b", stream, 256, 60.0, None, [lv1, lv5])
    if sla:
        rep.apply_sla(r, sla, [1, 5])
    return r


GOLDEN = """\
users  effort  requests  errors  err %  req/min  out tok/s    avg    p50    p90    p95    p99  ttft p50  ttft p95  SLA
    1  -              2       0    0.0     40.0       50.0  1.50s  1.50s  1.90s  1.95s  1.99s     375ms     488ms  ok
    5  mixed          4       2   50.0      4.0       16.7  5.00s  5.00s  5.80s  5.90s  5.98s     1.50s     1.95s  fail

users  category  requests  errors    p50  out tok/s  server gen tok/s  server prompt tok/s
    1  factual          1       0  1.00s       50.0              55.0                900.0
    1  code             1       0  2.00s       50.0              52.5                850.0
    5  factual          2       1  4.00s       50.0                 -                    -
    5  code             2       1  6.00s       50.0                 -                    -

users  effort  requests  errors    p50  out tok/s  server gen tok/s  server prompt tok/s
    5  low            1       0  4.00s       50.0                 -                    -
    5  medium         1       1      -          -                 -                    -
    5  high           2       1  6.00s       50.0                 -                    -

errors at 5 users: HTTP 500 x1, timeout x1
SLA p95<3s,errors<5%: met up to 1 users
SLA fails at 5 users: p95 5.90s, needs <3.00s; errors 50%, needs <5%
"""


def test_table_layout_golden():
    from ossctl.cli.bench import render

    assert render(fixed_report(sla="p95<3s,errors<5%")) + "\n" == GOLDEN


def test_no_stream_table_has_no_ttft_columns():
    from ossctl.cli.bench import render

    first = render(fixed_report(stream=False)).splitlines()[0]
    assert "ttft" not in first and "SLA" not in first
    assert first.split() == ["users", "effort", "requests", "errors", "err", "%", "req/min", "out", "tok/s", "avg",
                             "p50", "p90", "p95", "p99"]


def test_json_shape_keys():
    r = fixed_report(sla="p95<3s")
    assert tuple(r) == rep.REPORT_KEYS
    for lv in r["levels"]:
        assert tuple(lv) == rep.LEVEL_KEYS
        assert set(lv["latency_s"]) == {"avg", "p50", "p90", "p95", "p99"}
        assert set(lv["ttft_s"]) == {"p50", "p95"}
        for c in [*lv["categories"].values(), *lv["efforts"].values()]:
            assert set(c) == {"requests", "errors", "output_tokens", "prompt_tokens", "latency_p50_s", "output_tps",
                              "server_gen_tps", "server_prompt_tps"}
    assert set(r["sla"]) == {"spec", "ok", "max_users", "failed_users", "not_run_users"}


def test_sla_verdicts():
    r = fixed_report(sla="p95<3s")
    assert r["sla"]["ok"] is False and r["sla"]["max_users"] == 1 and r["sla"]["failed_users"] == [5]
    r = fixed_report(sla="errors<=50%")
    assert r["sla"]["ok"] is True and r["sla"]["max_users"] == 5
    r = fixed_report(sla="avg<1s")
    assert r["sla"]["max_users"] is None
    assert "SLA avg<1s: not met at any level" in rep.notes(r)
    # a requested level that never ran (Ctrl-C, dead server) cannot pass
    r = fixed_report()
    rep.apply_sla(r, "errors<=50%", [1, 5, 10])
    assert r["sla"]["ok"] is False and r["sla"]["not_run_users"] == [10] and r["sla"]["max_users"] == 5


def test_all_unauthorized():
    r = rep.build("u", None, False, None, None, 2, [rep.level([Sample("a", 0.01, "http_401")] * 2, 1, 1.0, False)])
    assert rep.all_unauthorized(r)
    r["levels"].append(rep.level([Sample("a", 0.01)], 2, 1.0, False))
    assert not rep.all_unauthorized(r)
    assert not rep.all_unauthorized(rep.build("u", None, False, None, None, 2, []))


def test_plot_without_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.raises(UsageError) as exc:
        rep.plot(fixed_report(), tmp_path / "x.png")
    assert "matplotlib" in exc.value.message and "ossctl[plot]" in exc.value.hint
    assert not (tmp_path / "x.png").exists()


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench.png"
    rep.plot(fixed_report(), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_panels_sla_line_and_failing_levels():
    panels = rep.plot_panels(fixed_report(sla="p95<3s,errors<5%"))
    assert [p["title"] for p in panels] == ["Latency", "Error rate", "Output throughput", "Request throughput"]
    lat, err, tps, rpm = panels
    assert lat["users"] == [1, 5]
    assert lat["lines"] == {"avg": [1.5, 5.0], "median": [1.5, 5.0], "p95": [pytest.approx(1.95), pytest.approx(5.9)]}
    assert lat["thresholds"] == [("SLA p95<3s", 3.0)]
    assert lat["failing"] == [(5, pytest.approx(5.9))]  # on the p95 line the SLA judges
    assert err["lines"] == {"errors": [0.0, 50.0]} and err["thresholds"] == [("SLA errors<5%", 5.0)]
    assert err["failing"] == [(5, 50.0)]
    assert tps["lines"] == {"output tok/s": [50.0, pytest.approx(500 / 30)]} and tps["thresholds"] == []
    assert rpm["lines"] == {"req/min": [40.0, 4.0]}
    no_sla = rep.plot_panels(fixed_report())
    assert set(no_sla[0]["lines"]) == {"avg", "median"} and all(not p["failing"] and not p["thresholds"] for p in no_sla)


def test_reasoning_effort_per_level():
    from ossctl.loadtest import openai

    assert openai.parse_efforts("high", 3) == ["high", "high", "high"]
    assert openai.parse_efforts("low, medium,high,MIXED", 4) == ["low", "medium", "high", "mixed"]
    assert openai.efforts_of("mixed") == ("low", "medium", "high") and openai.efforts_of(None) == (None,)
    with pytest.raises(UsageError, match="'max' is not one of low, medium, high, mixed"):
        openai.parse_efforts("max", 1)
    with pytest.raises(UsageError, match="lists 2 efforts for 3 levels"):
        openai.parse_efforts("low,high", 3)


def test_request_body_carries_the_effort():
    import json

    from ossctl.loadtest import openai
    from ossctl.loadtest.prompts import builtin_prompts

    t = openai.Target("http://127.0.0.1:8080", model="m")
    reqs = openai.encode_requests(t, builtin_prompts()[:1], 8, False, "127.0.0.1", 8080, "/v1", False, "high")
    body = json.loads(reqs[0].split(b"\r\n\r\n", 1)[1])
    assert body["chat_template_kwargs"] == {"reasoning_effort": "high"} and body["reasoning_effort"] == "high"
    plain = openai.encode_requests(t, builtin_prompts()[:1], 8, False, "127.0.0.1", 8080, "/v1", False)
    assert "reasoning_effort" not in plain[0].decode()
