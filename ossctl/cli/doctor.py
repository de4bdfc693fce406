"""``ossctl doctor``."""

from __future__ import annotations

import typer

from ossctl.cli import output
from ossctl.cli.options import ProfileOpt

# Library modules are imported inside the commands: `ossctl --help` imports this module,
# and they would cost it start-up time (python -X importtime -m ossctl --help).


def doctor_cmd(
    ctx: typer.Context,
    profile: ProfileOpt = None,
) -> None:
    """Check the environment: Docker, GPUs, disk, profile, model, image build and flags, chain, port.
    With --profile, also what deploying that profile needs."""
    from ossctl import doctor

    from ossctl.errors import OssctlError
    from ossctl.settings import load_settings

    st = output.state(ctx)
    try:
        settings = st.settings
    except OssctlError:
        # a broken config file is what doctor reports, not a reason to stop: the other
        # checks run on defaults + environment, the config check shows the error
        settings = load_settings(home=st.home, ignore_config=True)
    checks = doctor.run(settings, profile)
    failed = [c for c in checks if c.status == doctor.FAIL]
    data = {"ok": not failed, "checks": [c.public() for c in checks]}

    def human() -> str:
        rows = [[c.status, c.name, c.detail + (f"\n{'':>6}fix: {c.fix}" if c.fix and c.status != doctor.PASS else "")]
                for c in checks]
        lines = [f"{s:<4}  {n:<16}  {d}" for s, n, d in rows]
        summary = f"\n{len(failed)} check(s) failed" if failed else "\nall checks passed"
        return "\n".join(lines) + summary

    output.emit(st, data, human)
    if failed:
        raise typer.Exit(1)
