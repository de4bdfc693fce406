"""Run the real console entry point in-process or as a subprocess and capture streams."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import Any


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """In-process ``ossctl ARGS`` through ``main()`` (the same error handling as the
    console script). ``env`` entries are set for the call and restored after."""
    from ossctl.cli.app import main

    saved = {}
    for k, v in (env or {}).items():
        saved[k] = os.environ.get(k)
        os.environ[k] = v
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(args))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Result(code, out.getvalue(), err.getvalue())


def run_proc(*args: str, env: dict[str, str] | None = None, timeout: float = 300, **kw) -> Result:
    """``python -m ossctl ARGS`` in a child process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.run([sys.executable, "-m", "ossctl", *args], capture_output=True, text=True,
                       env=full_env, timeout=timeout, **kw)
    return Result(p.returncode, p.stdout, p.stderr)
