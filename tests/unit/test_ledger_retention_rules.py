"""Which ledger records retention removes (`keep_releases`): exact ids."""

from __future__ import annotations

from ossctl.serve.releases import Release, State, prunable


def hist(*states: str, **over) -> list[Release]:
    return [Release(id=f"r{i:04d}", profile="p", state=State(s), container_id=f"c{i}", **over.get(f"r{i:04d}", {}))
            for i, s in enumerate(states, 1)]


def ids(recs) -> list[str]:
    return [r.id for r in recs]


def test_keeps_the_newest_ok_and_the_newest_others():
    h = hist("ok", "failed", "ok", "interrupted", "ok", "failed", "ok")
    assert ids(prunable(h, 2, set())) == ["r0001", "r0002", "r0003"]
    assert ids(prunable(h, 1, set())) == ["r0001", "r0002", "r0003", "r0004", "r0005"]
    assert prunable(h, 10, set()) == []


def test_never_the_serving_previous_pending_or_one_with_a_container():
    h = hist("ok", "ok", "ok", "pending", "failed", "failed")
    # r0003 serves; the caller protects r0001 (the rollback target) and r0002's container
    assert ids(prunable(h, 1, {"r0001", "c2"})) == ["r0005"]
    assert ids(prunable(h, 1, set())) == ["r0001", "r0002", "r0005"]  # r0004 pending: kept


def test_the_newest_record_is_always_kept():
    for states in (["failed"] * 5, ["ok"] * 5, ["ok", "failed", "failed", "failed"]):
        h = hist(*states)
        assert h[-1] not in prunable(h, 1, set())
