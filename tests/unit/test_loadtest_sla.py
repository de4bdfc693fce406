import pytest

from ossctl.errors import EXIT_USAGE, UsageError
from ossctl.loadtest.sla import evaluate, parse_sla, parse_users
from ossctl.units import parse_duration


def _level(**kw):
    lv = {"error_pct": 0.0, "rpm": 60.0, "output_tps": 10.0,
          "latency_s": {"avg": 1.0, "p50": 1.0, "p90": 2.0, "p95": 3.0, "p99": 4.0},
          "ttft_s": {"p50": 0.1, "p95": 0.2}}
    lv.update(kw)
    return lv


def test_parse_units_and_operators():
    conds = parse_sla("p95<90s, errors<5%, avg<=1.5m, ttft_p95<200ms, rpm>10, tps>=2.5, p99<500us")
    assert [(c.metric, c.op, c.value) for c in conds] == [
        ("p95", "<", 90.0), ("errors", "<", 5.0), ("avg", "<=", 90.0), ("ttft_p95", "<", 0.2),
        ("rpm", ">", 10.0), ("tps", ">=", 2.5), ("p99", "<", pytest.approx(0.0005))]
    assert parse_sla("p50<3")[0].value == 3.0  # bare number = seconds


@pytest.mark.parametrize("bad", ["", "p95", "p95<", "p97<3s", "p95<3kg", "errors<5s", "rpm>10%", "p95<<3s",
                                 "p95<90s,", "p95=3s", "avg<-1s"])
def test_malformed_sla_is_a_usage_error(bad):
    with pytest.raises(UsageError) as exc:
        parse_sla(bad)
    assert exc.value.exit_code == EXIT_USAGE
    assert exc.value.hint


def test_evaluate_reports_each_broken_condition():
    conds = parse_sla("p95<2s,errors<5%,ttft_p95<1s,rpm>=60")
    assert evaluate(conds, _level(latency_s={"avg": 1, "p50": 1, "p90": 1, "p95": 1.5, "p99": 9})) == []
    broken = evaluate(conds, _level(error_pct=10.0, rpm=59.9))
    assert broken == ["p95 3.00s, needs <2.00s", "errors 10%, needs <5%", "rpm 59.9, needs >=60"]


def test_level_without_successes_breaks_latency_conditions():
    assert evaluate(parse_sla("avg<90s"), _level(latency_s=None)) == ["avg n/a, needs <90.00s"]
    # no TTFT (a non-streaming run) cannot satisfy a TTFT condition
    assert evaluate(parse_sla("ttft_p95<2s"), _level(ttft_s=None)) == ["ttft_p95 n/a, needs <2.00s"]


@pytest.mark.parametrize("text,seconds", [("60s", 60), ("2m", 120), ("1m30s", 90), ("500ms", 0.5), ("90", 90),
                                          ("1h", 3600), ("1.5s", 1.5)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "s", "abc", "10x", "0s", "-5s", "5s5", "1 m 2"])
def test_malformed_duration(bad):
    with pytest.raises(UsageError):
        parse_duration(bad)


def test_parse_users():
    assert parse_users("1,5, 10,15,25") == [1, 5, 10, 15, 25]


@pytest.mark.parametrize("bad", ["", "0", "1,,2", "a", "-1", "1.5", "5,5", "10001"])
def test_malformed_users(bad):
    with pytest.raises(UsageError):
        parse_users(bad)
