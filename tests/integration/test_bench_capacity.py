"""``ossctl bench --capacity`` against a real llama-server (CPU build, tiny model): the
levels the search measured, the verdict, the exit codes. (Where the bisection lands for a
known threshold is pinned exactly in tests/unit/test_loadtest_capacity.py: a real server's
latency threshold would move with the machine's load.)"""

from __future__ import annotations

import pytest

from ossctl.loadtest.report import LEVEL_KEYS, REPORT_KEYS
from ossctl.ops.bench import CAPACITY_KEYS
from tests.support.cli import run_cli

pytestmark = pytest.mark.llama


def test_capacity_up_to_max_users_json_and_table(llama_server, home):
    r = run_cli("--json", "bench", "--url", llama_server, "--capacity", "--sla", "errors<5%", "--max-users", "6",
                "--requests", "2", "--max-tokens", "4")
    assert r.code == 0, r.err
    rep = r.json()
    assert list(rep) == [*REPORT_KEYS, "capacity"] and list(rep["capacity"]) == list(CAPACITY_KEYS)
    assert rep["capacity"] == {"sla": "errors<5%", "users": 6, "first_fail_users": None, "steps": [1, 2, 4, 6],
                               "stopped": None, "max_users": 6}
    assert [lv["users"] for lv in rep["levels"]] == [1, 2, 4, 6]
    # at least one request per user at each level
    assert [lv["requests"] for lv in rep["levels"]] == [2, 2, 4, 6]
    assert all(list(lv) == list(LEVEL_KEYS) and lv["sla_failures"] == [] for lv in rep["levels"])
    assert "bench: 4 users: meets the SLA" in r.err

    png = home / "capacity.png"
    r = run_cli("bench", "--url", llama_server, "--capacity", "--sla", "errors<5%", "--max-users", "3",
                "--requests", "2", "--max-tokens", "4", "--plot", str(png))
    assert r.code == 0, r.err
    assert "capacity at SLA errors<5%: 3 users (" in r.out and "no level failed up to --max-users 3" in r.out
    assert png.read_bytes()[:4] == b"\x89PNG" and f"wrote {png}" in r.err


def test_capacity_none_exits_9(llama_server, home):
    r = run_cli("--json", "bench", "--url", llama_server, "--capacity", "--sla", "avg<1us", "--requests", "2",
                "--max-tokens", "4")
    assert r.code == 9, r.err
    assert r.json()["capacity"]["users"] is None and r.json()["capacity"]["steps"] == [1]
    assert "error: SLA avg<1us is not met even at 1 user(s)" in r.err


@pytest.mark.parametrize("args, message", [
    (["--capacity"], "error: --capacity needs --sla"),
    (["--capacity", "--sla", "errors<5%", "--users", "1,2"], "error: --capacity picks the levels itself"),
    (["--max-users", "4"], "error: --max-users goes with --capacity"),
    (["--capacity", "--sla", "p95<<3"], "error: SLA condition 'p95<<3' is malformed"),
])
def test_bad_capacity_options_exit_2(args, message, home):
    r = run_cli("bench", "--url", "http://127.0.0.1:9", *args)
    assert r.code == 2 and r.err.startswith(message), r.err
    assert "Traceback" not in r.err
