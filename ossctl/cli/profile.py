"""``ossctl profile list | show NAME | validate [NAME]``."""

from __future__ import annotations

from typing import Optional

import typer

from ossctl.cli import output

# Library modules are imported inside the commands: `ossctl --help` imports this module,
# and they would cost it start-up time (python -X importtime -m ossctl --help).

profile_app = typer.Typer(help="Serving profiles: list, show resolved, validate.", no_args_is_help=True)


@profile_app.command("list")
def list_(ctx: typer.Context) -> None:
    """Profiles on the search path (./profiles, $OSSCTL_HOME/profiles, shipped)."""
    st = output.state(ctx)
    from ossctl.serve import profiles

    res = {"search_path": [str(p) for p in profiles.search_path(st.settings)],
           "profiles": profiles.list_profiles(st.settings)}
    output.emit(st, res, lambda: output.table(
        ["NAME", "EXTENDS", "MODEL", "DESCRIPTION", "PATH"],
        [[p["name"], p["extends"] or "", p["model"] or "", p["description"], p["path"]] for p in res["profiles"]]))


@profile_app.command("show")
def show(ctx: typer.Context, name: str = typer.Argument(..., metavar="NAME")) -> None:
    """Print the fully resolved profile (extends applied, defaults filled) as TOML."""
    st = output.state(ctx)
    from ossctl.serve import profiles

    prof = profiles.resolve_profile(st.settings, name)
    output.emit(st, prof, prof.to_toml)


@profile_app.command("validate")
def validate(ctx: typer.Context, name: Optional[str] = typer.Argument(None, metavar="[NAME]")) -> None:
    """Validate one profile, or all of them; checks ctx against the model's GGUF metadata
    when the model is downloaded. Exit 2 when any is invalid."""
    st = output.state(ctx)
    from ossctl.errors import UsageError
    from ossctl.serve import profiles

    res = profiles.validate_all(st.settings, [name] if name else None)
    bad = [r for r in res["profiles"] if not r["ok"]]

    def human() -> str:
        return "\n".join(f"{r['name']}: " + ("ok" if r["ok"] else f"invalid: {r['error']}")
                         + (f" ({r['note']})" if r.get("note") else "") for r in res["profiles"])

    output.emit(st, res, human)
    if bad:
        if len(bad) == 1 and name:
            raise UsageError(bad[0]["error"], hint=bad[0].get("hint"))
        raise UsageError(f"{len(bad)} of {len(res['profiles'])} profiles are invalid: " + ", ".join(r["name"] for r in bad))
