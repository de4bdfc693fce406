"""Write completions/ for bash, zsh and fish from the Typer app.

    python scripts/gen_completions.py          # rewrite
    python scripts/gen_completions.py --check  # exit 1 if a committed script is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = {"bash": "ossctl.bash", "zsh": "_ossctl", "fish": "ossctl.fish"}


def render(shell: str) -> str:
    # Typer's scripts call back into `ossctl` (env _OSSCTL_COMPLETE=complete_<shell>), so
    # they complete every command and option of the installed version.
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name="ossctl", complete_var="_OSSCTL_COMPLETE", shell=shell).rstrip() + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    stale = []
    for shell, name in FILES.items():
        path = ROOT / "completions" / name
        text = render(shell)
        if a.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print("stale completions: " + ", ".join(stale) + " (run python scripts/gen_completions.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
