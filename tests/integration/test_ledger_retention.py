"""Ledger records are kept by `keep_releases` like release containers: old ok and old
failed records go, the serving release and the previous one (the rollback target) stay,
ids are never reused, and a rollback to a kept release still works. Real engine."""

from __future__ import annotations

from tests.plugins.docker_engine import answer
from tests.support.cli import run_cli


def records(env) -> list[tuple[str, str]]:
    r = run_cli("--json", "releases", "--profile", env.profile, env=env.env)
    assert r.code == 0, r.err
    return sorted((x["id"], x["state"]) for x in r.json()["releases"])


def deploy(env, code: int = 0):
    r = run_cli("--json", "-v", "deploy", "-p", env.profile, env=env.env)
    assert r.code == code, r.err
    return r


def test_keep_releases_prunes_old_records_but_never_the_serving_or_previous(serve_env):
    env = serve_env
    env.write_profile(keep_releases=1)
    deploy(env)
    r = deploy(env)
    assert "old ledger record" not in r.err  # r0001 is the rollback target
    assert records(env) == [("r0001", "ok"), ("r0002", "ok")]
    r = deploy(env)
    assert "removed 1 old ledger record(s) of profile " + env.profile + " (keep_releases=1): r0001" in r.err
    assert records(env) == [("r0002", "ok"), ("r0003", "ok")]
    env.write_profile(keep_releases=1, extra_args=["--no-such-flag"])
    r = deploy(env, 7)
    assert records(env) == [("r0002", "ok"), ("r0003", "ok"), ("r0004", "failed")]
    env.write_profile(keep_releases=1)
    r = deploy(env)
    assert r.json()["id"] == "r0005" and ": r0002" in r.err
    assert records(env) == [("r0003", "ok"), ("r0004", "failed"), ("r0005", "ok")]
    r = run_cli("--json", "rollback", "-p", env.profile, env=env.env)  # r0003's container was removed: from its spec
    assert r.code == 0 and (r.json()["id"], r.json()["source"]) == ("r0006", "r0003"), r.err
    assert answer(f"http://127.0.0.1:{env.port}")["choices"]
    r = deploy(env)
    assert r.json()["id"] == "r0007"  # ids go on after pruned ones
    # r0005 was rolled back from; the newest failed record stays
    assert records(env) == [("r0004", "failed"), ("r0006", "ok"), ("r0007", "ok")]
