"""Assembles the Typer app: the command modules define functions and sub-apps (they do
not import this module); the root adds each one here, in the order ``--help`` lists
them. Heavy SDKs are imported inside the commands that need them so ``ossctl --help``
stays fast."""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from ossctl import __version__
from ossctl.cli import coercion, output

coercion.install()  # option values already of their type skip Typer's pydantic (see coercion.py)

app = typer.Typer(
    name="ossctl",
    help="Download, verify, register, serve and watch GPT-OSS GGUF models with llama.cpp.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    pretty_exceptions_enable=False,
    # plain Click help: the rich renderer (markdown, pygments) triples `--help` start-up
    rich_markup_mode=None,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"ossctl {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output on stdout."),
    verbose: int = typer.Option(0, "-v", "--verbose", count=True, help="More detail on stderr."),
    home: Optional[str] = typer.Option(None, "--home", metavar="DIR",
                                       help="State and models directory (default: $OSSCTL_HOME, else the XDG data dir)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    ctx.obj = output.State(json=json_out, verbose=verbose, home=home)


def _register() -> None:
    # typer + stdlib imports only: each module imports its library inside its commands
    from ossctl.cli import bench, doctor, metrics, models, profile, registry, serve, sign, tune, vram

    for name, fn in (("models", models.models_cmd), ("download", models.download_cmd),
                     ("verify", models.verify_cmd), ("hash", models.hash_cmd), ("adopt", models.adopt_cmd),
                     ("sign", sign.sign_cmd),
                     ("register", registry.register_cmd),
                     ("deploy", serve.deploy), ("upgrade", serve.upgrade), ("rollback", serve.rollback), ("status", serve.status),
                     ("releases", serve.releases_cmd), ("unlock", serve.unlock),
                     ("bench", bench.bench), ("tune", tune.tune), ("doctor", doctor.doctor_cmd)):
        app.command(name)(fn)
    app.add_typer(registry.registry_app, name="registry")
    app.add_typer(profile.profile_app, name="profile")
    app.add_typer(vram.vram_app, name="vram")
    app.add_typer(metrics.metrics_app, name="metrics")


_register()


def _command_name(argv: list[str]) -> str | None:
    """The command ``argv`` runs (its first word after the root options), None when the
    root itself answers (no command, ``--help``, ``--version``)."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help", "--version", "--"):
            return None
        if a in _ROOT_VALUE_OPTIONS:
            i += 2
            continue
        if not a.startswith("-"):
            return a
        i += 1
    return None


def _no_args(fn):
    def listed() -> None:  # pragma: no cover - only listed by --help, never run
        raise RuntimeError("a --help stand-in ran")

    listed.__doc__ = fn.__doc__
    return listed


def app_for(argv: list[str]) -> typer.Typer:
    """The app that runs ``argv``: ``app`` with only the command it names, or for the
    root's own help its commands as parameterless stand-ins with the same help text.
    Typer builds every command's options (signatures, type hints, Click parameters: ~30 ms
    for ~25 commands) on each run, though one run uses one command and the root's help
    only the names and first lines; the output is the same (tests/unit/test_cli_app_for.py).
    Anything else (an unknown command, which gets suggestions; shell completion) gets the
    whole ``app``."""
    import copy

    if any(k.startswith("_OSSCTL_COMPLETE") for k in os.environ):
        return app
    name = _command_name(argv)
    cmds = [c for c in app.registered_commands if c.name == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if name is not None and not (cmds or groups):
        return app
    one = copy.copy(app)
    if name is not None:
        one.registered_commands, one.registered_groups = cmds, groups
        return one
    one.registered_commands = []
    for c in app.registered_commands:
        c = copy.copy(c)
        c.callback = _no_args(c.callback)
        one.registered_commands.append(c)
    one.registered_groups = []
    for g in app.registered_groups:
        g = copy.copy(g)
        g.typer_instance = copy.copy(g.typer_instance)
        g.typer_instance.registered_commands, g.typer_instance.registered_groups = [], []
        one.registered_groups.append(g)
    return one


def main(argv: list[str] | None = None) -> int:
    """Console entry point: the only place that catches errors. ``OSSCTL_DEBUG=1`` adds
    the traceback (redacted) above the same error line, hint and exit code."""
    from ossctl.errors import EXIT_INTERRUPTED, Interrupted, OssctlError

    from ossctl.redact import register_env

    debug = os.environ.get("OSSCTL_DEBUG") == "1"
    register_env(os.environ)
    as_json = _json_requested(sys.argv[1:] if argv is None else argv)
    output.json_written(reset=True)
    try:
        rv = app_for(sys.argv[1:] if argv is None else argv)(args=argv, standalone_mode=False, prog_name="ossctl")
        # without standalone mode, click returns the code of a typer.Exit instead of raising;
        # Typer turns a KeyboardInterrupt into a silent Exit(130): say it at least
        if isinstance(rv, int):
            if rv == EXIT_INTERRUPTED:
                sys.stderr.write("\ninterrupted\n")
                _json_error(as_json, "interrupted", None, rv)
            return rv
    except Interrupted as exc:  # a library saying what it kept: the message is the line
        _traceback(debug)
        sys.stderr.write(f"\n{_safe(exc)}\n")
        if exc.hint:
            sys.stderr.write(f"hint: {_safe(exc.hint)}\n")
        _json_error(as_json, exc.message, exc.hint, exc.exit_code)
        return exc.exit_code
    except OssctlError as exc:
        _traceback(debug)
        _print_error(exc.message, exc.hint)
        _json_error(as_json, exc.message, exc.hint, exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        _traceback(debug)
        sys.stderr.write("\ninterrupted\n")
        _json_error(as_json, "interrupted", None, EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except typer.Exit as exc:
        return exc.exit_code
    except Exception as exc:  # click usage errors and anything unexpected
        code = _click_error(exc, as_json)
        if code is not None:
            return code
        _traceback(debug)
        message = f"unexpected error: {type(exc).__name__}: {_safe(exc)}"
        hint = ("report it with the traceback (OSSCTL_DEBUG=1 shows it)" if debug else
                "re-run with OSSCTL_DEBUG=1 for the traceback, and report it")
        _print_error(message, hint)
        _json_error(as_json, message, hint, 1)
        return 1
    return 0


# root options that take a value (the rest are flags): how far the global options go
_ROOT_VALUE_OPTIONS = ("--home",)


def _json_requested(argv: list[str]) -> bool:
    """Whether the global ``--json`` comes before the command in ``argv`` (read here too:
    an error can come before the root callback runs, e.g. an unknown command)."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--json":
            return True
        if a == "--":
            return False
        if a in _ROOT_VALUE_OPTIONS:
            i += 2
            continue
        if not a.startswith("-"):
            return False  # the command: options after it are the command's
        i += 1
    return False


JSON_ERROR_KEYS = ("error", "hint", "exit_code")


def _json_error(as_json: bool, message: str, hint: str | None, code: int) -> None:
    """With ``--json``, the error as one JSON object on stdout (keys :data:`JSON_ERROR_KEYS`),
    so a script reading stdout learns why there is no data; the line on stderr stays.
    Not when the command already printed its JSON (its own shape says what failed)."""
    if not as_json or output.json_written():
        return
    import json

    from ossctl.redact import redact

    doc = {"error": redact(message), "hint": redact(hint) if hint else None, "exit_code": code}
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def _traceback(debug: bool) -> None:
    if debug:
        import traceback

        from ossctl.redact import redact

        sys.stderr.write(redact(traceback.format_exc()))


def _click_error(exc: Exception, as_json: bool = False) -> int | None:
    # Typer vendors its own Click; find its exception classes by duck typing.
    if hasattr(exc, "show") and hasattr(exc, "exit_code") and type(exc).__name__ in (
        "UsageError", "BadParameter", "NoSuchOption", "MissingParameter", "BadOptionUsage",
        "BadArgumentUsage", "ClickException", "FileError", "NoArgsIsHelpError",
    ):
        import io

        from ossctl.redact import mask_key_like, redact

        # Click quotes what was typed ("Got unexpected extra argument (...)"): a private
        # key pasted into the wrong place must not come back on the terminal
        buf = io.StringIO()
        exc.show(file=buf)
        sys.stderr.write(redact(mask_key_like(buf.getvalue())))
        code = int(getattr(exc, "exit_code", 2) or 2)
        if type(exc).__name__ != "NoArgsIsHelpError":
            ctx = getattr(exc, "ctx", None)
            hint = f"`{ctx.command_path} --help` lists its arguments and options" if ctx is not None else None
            _json_error(as_json, mask_key_like(exc.format_message()), hint, code)
        return code
    if type(exc).__name__ == "Abort":
        sys.stderr.write("\naborted\n")
        _json_error(as_json, "aborted", None, 130)
        return 130
    return None


def _safe(exc: Exception) -> str:
    from ossctl.redact import redact

    return redact(str(exc))


def _print_error(message: str, hint: str | None) -> None:
    from ossctl.redact import redact

    sys.stderr.write(f"error: {redact(message)}\n")
    if hint:
        sys.stderr.write(f"hint: {redact(hint)}\n")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
