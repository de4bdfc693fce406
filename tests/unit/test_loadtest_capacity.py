"""The capacity search (ossctl/loadtest/capacity.py): doubling then bisection, bounded,
exact levels measured for known thresholds."""

from __future__ import annotations

import pytest

from ossctl.loadtest.capacity import find_capacity


def _upto(limit: int, seen: list[int] | None = None):
    def measure(u: int) -> dict:
        if seen is not None:
            seen.append(u)
        return {"users": u, "p95": u / limit}
    return measure, (lambda f: f["p95"] <= 1.0)


def test_doubling_then_bisection_to_one_user():
    measure, ok = _upto(37)
    c = find_capacity(measure, ok)
    assert [s.users for s in c.steps] == [1, 2, 4, 8, 16, 32, 64, 48, 40, 36, 38, 37]
    assert [s.ok for s in c.steps] == [True] * 6 + [False, False, False, True, False, True]
    assert (c.users, c.first_fail, c.stopped, c.converged) == (37, 38, None, True)
    assert c.at(37) == {"users": 37, "p95": 1.0} and c.at(38)["p95"] > 1 and c.at(5) is None


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 7, 16, 17, 100, 255])
def test_finds_every_threshold_exactly(limit):
    seen: list[int] = []
    measure, ok = _upto(limit, seen)
    c = find_capacity(measure, ok)
    assert (c.users, c.first_fail, c.stopped) == (limit, limit + 1, None)
    assert len(seen) == len(set(seen)) <= 16  # no level twice, inside the default bound


def test_passes_everywhere_up_to_max_users():
    measure, ok = _upto(10_000)
    c = find_capacity(measure, ok, max_users=24)
    assert [s.users for s in c.steps] == [1, 2, 4, 8, 16, 24]
    assert (c.users, c.first_fail, c.stopped) == (24, None, None)


def test_first_level_fails():
    measure, ok = _upto(1)
    c = find_capacity(measure, ok, start=2)
    assert [s.users for s in c.steps] == [2] and (c.users, c.first_fail, c.stopped) == (None, 2, None)


def test_bounded_by_steps_and_deadline_keeping_what_it_measured():
    measure, ok = _upto(37)
    c = find_capacity(measure, ok, max_steps=8)
    assert [s.users for s in c.steps] == [1, 2, 4, 8, 16, 32, 64, 48]
    assert (c.users, c.first_fail, c.stopped) == (32, 48, "max_steps")

    now = [0.0]

    def timed(u):
        now[0] += 10.0  # each level takes 10 s
        return measure(u)

    c = find_capacity(timed, ok, deadline=35.0, clock=lambda: now[0])
    assert [s.users for s in c.steps] == [1, 2, 4, 8] and (c.users, c.stopped) == (8, "deadline")


def test_measure_stops_it():
    c = find_capacity(lambda u: None if u == 4 else {"p95": 0}, lambda f: True)
    assert [s.users for s in c.steps] == [1, 2] and (c.users, c.first_fail, c.stopped) == (2, None, "measure")


def test_noisy_verdict_is_reported_as_measured():
    # 4 fails by noise, the rest pass up to 8: the search stops between 2 and 4
    c = find_capacity(lambda u: {"u": u}, lambda f: f["u"] != 4 and f["u"] <= 8)
    assert [s.users for s in c.steps] == [1, 2, 4, 3] and (c.users, c.first_fail) == (3, 4)


def test_bad_range():
    with pytest.raises(ValueError):
        find_capacity(lambda u: {}, lambda f: True, start=0)
    with pytest.raises(ValueError):
        find_capacity(lambda u: {}, lambda f: True, start=8, max_users=4)
