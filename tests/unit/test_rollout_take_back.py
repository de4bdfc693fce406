"""Issue 26 item 15, the bounds of the wait in serve/rollout.py ``_take_back``: a failed
step waits for an engine that does not answer (dockerd restarting) up to the gate timeout,
and gives up after a few tries on an engine that answers and still fails. The engine
restart itself is tested on a real private dockerd in
tests/integration/test_rollback_faults.py; this pins the limits without one."""

from __future__ import annotations

from types import SimpleNamespace

from ossctl.errors import RemoteError
from ossctl.serve import rollout
from ossctl.serve.releases import Release, State


class FlakyRuntime:
    """Fails ``fails`` times with the engine-unreachable error, then works; ``answers``:
    whether the engine answers a ping meanwhile."""

    def __init__(self, fails: int, answers: bool):
        self.fails, self.answers, self.calls = fails, answers, 0

    def remove_all(self) -> None:
        self.calls += 1
        if self.calls <= self.fails:
            raise RemoteError("cannot reach the Docker daemon at unix:///x.sock")

    def engine_info(self) -> dict:
        if not self.answers:
            raise RemoteError("cannot reach the Docker daemon at unix:///x.sock")
        return {"version": "x"}


def _engine(rt: FlakyRuntime, saved: list):
    return SimpleNamespace(rt=rt, ledger=SimpleNamespace(save=lambda *r: saved.extend(r)), log=lambda _m: None)


def _rec() -> Release:
    return Release(id="r0002", profile="p", kind="deploy", source="r0002", created="2026-01-01T00:00:00+00:00")


def test_waits_for_an_engine_that_does_not_answer_and_says_so(monkeypatch):
    monkeypatch.setattr(rollout, "RETRY_S", 0.0)
    rt, saved, rec = FlakyRuntime(fails=5, answers=False), [], _rec()
    rec.state = State.PENDING
    out = rollout._take_back(_engine(rt, saved), rec, "gate failed", rt.remove_all, None, None, timeout=30)
    assert out.startswith("the Docker engine was unreachable for ") and out.endswith("nothing was serving before")
    assert rt.calls == 6 and rec.state is State.FAILED and saved == [rec]


def test_gives_up_on_an_engine_that_answers_and_still_fails(monkeypatch):
    monkeypatch.setattr(rollout, "RETRY_S", 0.0)
    rt, saved, rec = FlakyRuntime(fails=100, answers=True), [], _rec()
    rec.state = State.PENDING
    out = rollout._take_back(_engine(rt, saved), rec, "gate failed", rt.remove_all, None, None, timeout=30)
    assert out == ("could not clean up (cannot reach the Docker daemon at unix:///x.sock); "
                   "the next deploy or rollback reconciles")
    assert rt.calls == 3


def test_gives_up_at_the_gate_timeout(monkeypatch):
    monkeypatch.setattr(rollout, "RETRY_S", 0.01)
    rt, saved, rec = FlakyRuntime(fails=10**6, answers=False), [], _rec()
    rec.state = State.PENDING
    out = rollout._take_back(_engine(rt, saved), rec, "gate failed", rt.remove_all, None, None, timeout=0.2)
    assert out.startswith("the Docker engine did not come back within 0.2 s (")
