"""The pure parts of the fleet fault fixes (issue 26, items 13 and 14): which entries are
one engine, and the hint that says per host what serves after a failed step."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ossctl.errors import RemoteError, UsageError
from ossctl.fleet import rollout
from ossctl.fleet.rollout import Member


def _members(*hosts: str) -> list[Member]:
    return [Member(h, {"port": 8080}, "10.0.0.1") for h in hosts]


def test_one_engine_twice_is_refused_naming_both_entries():
    ms = _members("unix:///a.sock", "tlsbox", "ssh://root@h")
    # docker 20.10 engines of one machine share the key.json ID: the data root tells them apart
    for m, root in zip(ms, ["/r1", "/r2", "/r3"]):
        m.facts["engine"] = ("NQSY:3WBF", "vm", root)
    rollout._refuse_duplicates(ms)
    ms[2].facts["engine"] = ("NQSY:3WBF", "vm", "/r2")
    with pytest.raises(UsageError) as e:
        rollout._refuse_duplicates(ms)
    assert e.value.message == ("[[hosts]] entries 2 (tlsbox) and 3 (ssh://root@h) reach the same Docker engine "
                               "(ID NQSY:3WBF, data root /r2); nothing was changed")
    assert e.value.exit_code == 2 and "list each engine once" in e.value.hint


def test_serving_hint_says_what_is_true_per_host(monkeypatch):
    ms = _members("a", "b", "c")
    rel = SimpleNamespace(id="r0001")
    truth = {"a": (rel, True), "b": RemoteError("cannot reach"), "c": (rel, True)}

    def current(m):
        t = truth[m.docker_host]
        if isinstance(t, Exception):
            raise t
        return t

    monkeypatch.setattr(Member, "current", current)
    assert rollout._serving_hint(ms, "prod", "all fine") == (
        "b serves nothing (its engine does not answer); the other hosts serve; "
        "`ossctl deploy --profile prod` serves there again once b answers")
    truth["b"] = (rel, False)
    truth["c"] = (None, False)
    assert rollout._serving_hint(ms, "prod", "all fine") == (
        "b serves nothing (its release r0001 is not running); c serves nothing (nothing was deployed there); "
        "the other hosts serve; `ossctl deploy --profile prod` serves there again")
    truth.update(b=(rel, True), c=(rel, True))
    assert rollout._serving_hint(ms, "prod", "all fine") == "all fine"
