"""Ledger records are checked field by field when read: one wrong-typed field makes that
record unreadable (named, left alone), never an unexpected error later."""

from __future__ import annotations

import pytest

from ossctl.serve import releases

SPEC = {"name": "ossctl-p-r0001", "image": "img:1", "command": ["-m", "/models/a.gguf"], "labels": {"a": "b"},
        "restart_policy": {"Name": "unless-stopped"}}
PROFILE = {"health_timeout": 60, "host": "127.0.0.1", "ctx": 512, "parallel": 1, "model": "/m"}
GOOD = {"id": "r0001", "profile": "p", "state": "ok", "kind": "deploy", "source": "r0001",
        "created": "2026-12-01T10:00:00+00:00", "port": 8080, "ctx": 512, "ready_s": 1.5, "build": 6100,
        "spec": SPEC, "profile_resolved": PROFILE, "image_digests": ["img@sha256:" + "a" * 64]}


def test_a_good_record_reads():
    rec = releases.Release.from_dict(GOOD)
    assert (rec.created, rec.port, rec.spec, rec.profile_resolved) == (GOOD["created"], 8080, SPEC, PROFILE)


@pytest.mark.parametrize("change, why", [
    ({"created": 1764583200}, "field 'created' must be a string, got 1764583200"),
    ({"port": "8080"}, "field 'port' must be a port number"),
    ({"port": True}, "field 'port' must be a port number"),
    ({"ctx": 5.5}, "field 'ctx' must be a whole number or null"),
    ({"ready_s": "fast"}, "field 'ready_s' must be a number of seconds or null"),
    ({"container_removed": "no"}, "field 'container_removed' must be true or false"),
    ({"image_digests": "sha256:x"}, "field 'image_digests' must be a list of strings"),
    ({"container_id": 7}, "field 'container_id' must be a string or null"),
    ({"spec": []}, "field 'spec' must be an object"),
    ({"profile_resolved": None}, "field 'profile_resolved' must be an object"),
    ({"profile_resolved": {**PROFILE, "health_timeout": "60"}},
     "field profile_resolved.health_timeout must be a number of seconds, got \"60\""),
    ({"profile_resolved": {**PROFILE, "health_timeout": float("nan")}}, "profile_resolved.health_timeout must be"),
    ({"profile_resolved": {k: v for k, v in PROFILE.items() if k != "ctx"}}, "field profile_resolved.ctx is missing"),
    ({"spec": {**SPEC, "command": "llama-server -m x"}}, "field spec.command must be a list of arguments"),
    ({"spec": {**SPEC, "restart_policy": "always"}}, "field spec.restart_policy must be an object with a Name"),
])
def test_each_wrong_field_is_named(change, why):
    with pytest.raises(releases.RecordError) as ei:
        releases.Release.from_dict({**GOOD, **change})
    assert why in str(ei.value)


def test_an_empty_spec_reads_but_is_no_rollback_target():
    # a record written without them (a hand-made one) still says what serves
    rec = releases.Release.from_dict({**GOOD, "spec": {}, "profile_resolved": {}})
    assert rec.spec == {} and rec.profile_resolved == {}
