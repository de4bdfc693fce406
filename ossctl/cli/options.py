"""Options that several commands share, declared once (the hf CLI's ``_cli_utils`` way):
a command writes ``profile: ProfileFilter = None`` and gets the same flag, metavar and
help text as every other command with it. What a command does without the option
belongs in its own docstring, not in a variant of the option.

Typer + stdlib only: ``ossctl --help`` imports this module.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

# ------------------------------------------------------------------ serving

def _profile_name(value: Optional[str]) -> Optional[str]:
    """A ``--profile`` value must be a name a profile can have (as ``profile validate``
    rules it): anything else would quietly match nothing on the engine."""
    if value is None:
        return value
    from ossctl.serve.profiles import NAME_RE  # only when the option is given: --help stays light

    if not NAME_RE.match(value):
        raise typer.BadParameter(f"{value!r} is not a profile name (lowercase letters, digits, '.', '_' and '-', "
                                 "up to 63, starting with a letter or digit; see `ossctl profile list`)")
    return value


Profile = Annotated[str, typer.Option(
    "--profile", "-p", metavar="NAME", help="Profile name (see `ossctl profile list`).", callback=_profile_name)]
"""A profile the command needs (no default: the option is required)."""

ProfileOpt = Annotated[Optional[str], typer.Option(
    "--profile", "-p", metavar="NAME", help="Profile name (see `ossctl profile list`).", callback=_profile_name)]
"""A profile the command can do without (its docstring says what it does then)."""

ProfileFilter = Annotated[Optional[str], typer.Option(
    "--profile", "-p", metavar="NAME", help="Only this profile (default: all).", callback=_profile_name)]
"""Narrow a listing to one profile."""

DockerHost = Annotated[Optional[str], typer.Option(
    "--docker-host", metavar="URL",
    help="Docker endpoint (unix://, tcp://, ssh://) (default: $DOCKER_HOST, else the local socket).")]

# ------------------------------------------------------------------ chain (flag > env > [registry] in the config)

RpcUrl = Annotated[Optional[str], typer.Option(
    "--rpc-url", metavar="URL", help="JSON-RPC endpoint (env: OSSCTL_RPC_URL).")]

RegistryAddress = Annotated[Optional[str], typer.Option(
    "--registry", metavar="ADDRESS", help="ModelRegistry address (env: OSSCTL_REGISTRY_ADDRESS).")]

ChainId = Annotated[Optional[str], typer.Option(
    "--chain-id", metavar="N", help="Refuse unless the node reports this chain id (env: OSSCTL_CHAIN_ID).")]

Keystore = Annotated[Optional[str], typer.Option(
    "--keystore", metavar="FILE",
    help="Encrypted JSON keystore to sign with (password: env OSSCTL_KEYSTORE_PASSWORD, else a prompt). "
         "Default: env OSSCTL_PRIVATE_KEY / OWNER_PRIVATE_KEY.")]

Yes = Annotated[bool, typer.Option(
    "--yes", "-y", help="Send without asking (needed when there is no terminal).")]

TxDryRun = Annotated[bool, typer.Option(
    "--dry-run", help="Show the transaction that would be sent; send nothing.")]

ReceiptTimeout = Annotated[float, typer.Option(
    "--timeout", metavar="SECONDS", help="How long to wait for the receipt.")]
