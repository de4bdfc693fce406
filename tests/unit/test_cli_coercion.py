"""ossctl.cli.coercion: option values already of their type skip Typer's pydantic
coercion (a command run imports no pydantic), and every other value still gets Typer's
own conversion and error messages."""

from __future__ import annotations

import json
import subprocess
import sys

from ossctl.errors import EXIT_REMOTE, EXIT_USAGE
from tests.support.cli import run_cli

PROBE = """
import json, sys
from ossctl.cli.app import main
rc = main(sys.argv[1:])
sys.stderr.write("\\n" + json.dumps([rc, "pydantic" in sys.modules]) + "\\n")
"""


def test_a_command_with_plain_options_imports_no_pydantic(home, tmp_path):
    p = subprocess.run([sys.executable, "-c", PROBE, "--json", "-v", "--home", str(home), "status", "-p", "prod",
                        "--docker-host", f"unix://{tmp_path}/none.sock"], capture_output=True, text=True)
    assert json.loads(p.stderr.splitlines()[-1]) == [EXIT_REMOTE, False], p.stderr


def test_values_that_need_converting_are_typers_with_its_messages(home):
    r = run_cli("bench", "-p", "prod", "--requests", "abc")
    assert r.code == EXIT_USAGE
    assert "Invalid value for '--requests' / '-n': Input should be a valid integer" in r.err
    r = run_cli("bench", "-p", "prod", "--requests", "0")
    assert r.code == EXIT_USAGE and "greater than or equal to 1" in r.err


def test_as_is_only_for_the_plain_type():
    import typer.core

    from ossctl.cli import coercion

    assert coercion.install() and coercion.install()  # idempotent
    built = []

    class Real:
        def coerce(self, value, param, ctx):
            return ("typer", value)

    class Param:
        multiple, nargs = False, 1

    class Info:
        parser = min = max = clamp = None

    def desc(ann):
        return type("D", (), {"annotation": ann, "parameter_info": Info(), "file_annotation": None})()

    def rt(ann):
        return coercion._AsIsFirst(desc(ann), lambda d: built.append(d) or Real())  # noqa: SLF001

    assert rt(str).coerce("x", Param(), None) == "x"
    assert rt(int).coerce(3, Param(), None) == 3
    assert rt(float).coerce(600, Param(), None) == 600.0 and isinstance(rt(float).coerce(600, Param(), None), float)
    assert rt(int).coerce(None, Param(), None) is None
    assert built == []
    assert rt(int).coerce("3", Param(), None) == ("typer", "3")
    assert rt(int).coerce(True, Param(), None) == ("typer", True)  # a bool is not an int here
    assert len(built) == 2
    assert getattr(typer.core.build_runtime_param, "_ossctl", False)
