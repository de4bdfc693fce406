import pytest

from ossctl.errors import UsageError
from ossctl.loadtest.gate import DEFAULTS, validate_bench_cfg


def test_defaults():
    assert validate_bench_cfg({}) == {"users": DEFAULTS["users"], "requests": DEFAULTS["requests"],
                                      "duration_s": None, "max_tokens": 16, "stream": True, "sla": "errors<5%"}


def test_duration_and_users_string():
    cfg = validate_bench_cfg({"users": "1,2", "duration": "30s", "sla": "p95<90s", "stream": False})
    assert cfg["users"] == [1, 2] and cfg["duration_s"] == 30.0 and cfg["requests"] is None
    assert cfg["stream"] is False


@pytest.mark.parametrize("cfg,needle", [
    ({"users": [0]}, "users"), ({"users": []}, "users"), ({"requests": 0}, "requests"),
    ({"requests": 2, "duration": "1s"}, "not both"), ({"duration": "soon"}, "duration"),
    ({"max_tokens": "8"}, "max_tokens"), ({"stream": "yes"}, "stream"), ({"sla": "p95 under 3s"}, "SLA"),
    ({"userz": [1]}, "unknown"), ([], "table"),
])
def test_bad_bench_tables(cfg, needle):
    with pytest.raises(UsageError) as exc:
        validate_bench_cfg(cfg)
    assert needle in exc.value.message
