import pytest

from ossctl.loadtest.stats import Sample, error_label, percentile, summarize


def test_percentile_interpolates_between_ranks():
    xs = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(xs, 50) == 3.0
    assert percentile(xs, 90) == pytest.approx(4.6)
    assert percentile(xs, 0) == 1.0
    assert percentile(xs, 100) == 5.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_summarize_counts_and_rates():
    samples = [
        Sample("code", 1.0, None, ttft=0.2, output_tokens=10, prompt_tokens=5, gen_tps=20.0, prompt_tps=100.0),
        Sample("code", 3.0, None, ttft=0.4, output_tokens=30, prompt_tokens=5),
        Sample("list", 2.0, None, ttft=0.3, output_tokens=20, prompt_tokens=4),
        Sample("list", 0.5, "http_500"),
        Sample("list", 9.0, "timeout", output_tokens=99),
    ]
    lv = summarize(samples, users=2, elapsed_s=10.0, stream=True, cpu_s=0.05, order=["list", "code"])
    assert (lv["requests"], lv["successes"], lv["errors"]) == (5, 3, 2)
    assert lv["error_pct"] == 40.0
    assert lv["errors_by_kind"] == {"http_500": 1, "timeout": 1}
    assert lv["rpm"] == pytest.approx(18.0)  # 3 successes in 10 s
    assert lv["output_tokens"] == 60  # failed requests' tokens do not count
    assert lv["prompt_tokens"] == 14
    assert lv["output_tps"] == pytest.approx(6.0)
    assert lv["latency_s"] == {"avg": 2.0, "p50": 2.0, "p90": pytest.approx(2.8), "p95": pytest.approx(2.9),
                               "p99": pytest.approx(2.98)}
    assert lv["ttft_s"] == {"p50": 0.3, "p95": pytest.approx(0.39)}
    assert list(lv["categories"]) == ["list", "code"]
    code = lv["categories"]["code"]
    assert code["requests"] == 2 and code["errors"] == 0 and code["output_tokens"] == 40
    assert code["output_tps"] == pytest.approx(10.0)  # mean of 10/1 and 30/3
    assert code["server_gen_tps"] == 20.0 and code["server_prompt_tps"] == 100.0
    assert lv["categories"]["list"]["server_gen_tps"] is None
    assert lv["client_cpu_ms_per_request"] == pytest.approx(10.0)


def test_summarize_all_failed_and_not_streaming():
    lv = summarize([Sample("a", 0.1, "connect")] * 3, users=1, elapsed_s=1.0, stream=False)
    assert lv["latency_s"] is None and lv["ttft_s"] is None
    assert lv["error_pct"] == 100.0 and lv["rpm"] == 0.0


def test_error_labels():
    assert error_label("http_401") == "HTTP 401"
    assert error_label("broken_stream") == "broken stream"
