"""ossctl.cli.app.app_for: a run builds only the command it names (or, for the root's
help, parameterless stand-ins), and says exactly what the whole app says."""

from __future__ import annotations

import pytest

from ossctl.cli import app as A
from tests.support.cli import run_cli

ARGVS = [
    [], ["--help"], ["-h"], ["--json", "--help"], ["--version"], ["--home", "/nonexistent", "--help"],
    ["status", "--help"], ["--json", "status", "--bogus"], ["status", "-p", "BAD!"], ["deploy"],
    ["registry"], ["registry", "--help"], ["vram", "plan", "--help"], ["metrics", "serve", "--help"],
    ["statsu"], ["--json", "nope", "x"], ["profile", "nope"], ["--home"],
]


@pytest.mark.parametrize("argv", ARGVS, ids=lambda a: " ".join(a) or "(none)")
def test_same_answer_as_the_whole_app(argv, home, monkeypatch):
    got = run_cli(*argv)
    monkeypatch.setattr(A, "app_for", lambda _argv: A.app)
    want = run_cli(*argv)
    assert (got.code, got.out, got.err) == (want.code, want.out, want.err)


def test_one_command_is_built_for_a_run():
    one = A.app_for(["--json", "-v", "--home", "h", "status", "-p", "x"])
    assert [c.name for c in one.registered_commands] == ["status"] and one.registered_groups == []
    assert [g.name for g in A.app_for(["vram", "watch"]).registered_groups] == ["vram"]
    assert A.app_for(["statsu"]) is A.app  # unknown: the whole app, for its suggestions
    listing = A.app_for(["--help"])
    assert len(listing.registered_commands) == len(A.app.registered_commands)
    assert all(not g.typer_instance.registered_commands for g in listing.registered_groups)
    assert all(g.typer_instance.registered_commands for g in A.app.registered_groups)  # the app itself untouched


def test_completion_gets_the_whole_app(monkeypatch):
    monkeypatch.setenv("_OSSCTL_COMPLETE", "complete_bash")
    assert A.app_for(["status"]) is A.app
