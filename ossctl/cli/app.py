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
from ossctl.cli import output

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
    from ossctl.cli import bench, doctor, metrics, models, profile, registry, serve, vram

    for name, fn in (("models", models.models_cmd), ("download", models.download_cmd),
                     ("verify", models.verify_cmd), ("hash", models.hash_cmd), ("adopt", models.adopt_cmd),
                     ("register", registry.register_cmd),
                     ("deploy", serve.deploy), ("rollback", serve.rollback), ("status", serve.status),
                     ("releases", serve.releases_cmd), ("unlock", serve.unlock),
                     ("bench", bench.bench), ("doctor", doctor.doctor_cmd)):
        app.command(name)(fn)
    app.add_typer(registry.registry_app, name="registry")
    app.add_typer(profile.profile_app, name="profile")
    app.add_typer(vram.vram_app, name="vram")
    app.add_typer(metrics.metrics_app, name="metrics")


_register()


def main(argv: list[str] | None = None) -> int:
    """Console entry point: the only place that catches errors. ``OSSCTL_DEBUG=1`` adds
    the traceback (redacted) above the same error line, hint and exit code."""
    from ossctl.errors import EXIT_INTERRUPTED, Interrupted, OssctlError

    from ossctl.redact import register_env

    debug = os.environ.get("OSSCTL_DEBUG") == "1"
    register_env(os.environ)
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="ossctl")
        # without standalone mode, click returns the code of a typer.Exit instead of raising;
        # Typer turns a KeyboardInterrupt into a silent Exit(130): say it at least
        if isinstance(rv, int):
            if rv == EXIT_INTERRUPTED:
                sys.stderr.write("\ninterrupted\n")
            return rv
    except Interrupted as exc:  # a library saying what it kept: the message is the line
        _traceback(debug)
        sys.stderr.write(f"\n{_safe(exc)}\n")
        if exc.hint:
            sys.stderr.write(f"hint: {_safe(exc.hint)}\n")
        return exc.exit_code
    except OssctlError as exc:
        _traceback(debug)
        _print_error(exc.message, exc.hint)
        return exc.exit_code
    except KeyboardInterrupt:
        _traceback(debug)
        sys.stderr.write("\ninterrupted\n")
        return EXIT_INTERRUPTED
    except typer.Exit as exc:
        return exc.exit_code
    except Exception as exc:  # click usage errors and anything unexpected
        code = _click_error(exc)
        if code is not None:
            return code
        _traceback(debug)
        _print_error(f"unexpected error: {type(exc).__name__}: {_safe(exc)}",
                     "report it with the traceback (OSSCTL_DEBUG=1 shows it)" if debug else
                     "re-run with OSSCTL_DEBUG=1 for the traceback, and report it")
        return 1
    return 0


def _traceback(debug: bool) -> None:
    if debug:
        import traceback

        from ossctl.redact import redact

        sys.stderr.write(redact(traceback.format_exc()))


def _click_error(exc: Exception) -> int | None:
    # Typer vendors its own Click; find its exception classes by duck typing.
    if hasattr(exc, "show") and hasattr(exc, "exit_code") and type(exc).__name__ in (
        "UsageError", "BadParameter", "NoSuchOption", "MissingParameter", "BadOptionUsage",
        "BadArgumentUsage", "ClickException", "FileError", "NoArgsIsHelpError",
    ):
        exc.show()
        return int(getattr(exc, "exit_code", 2) or 2)
    if type(exc).__name__ == "Abort":
        sys.stderr.write("\naborted\n")
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
