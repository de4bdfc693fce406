"""Shell completions: committed scripts match what the Typer app generates, and they
complete real commands when sourced."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_committed_completions_are_current():
    r = subprocess.run([sys.executable, "scripts/gen_completions.py", "--check"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(shutil.which("ossctl") is None, reason="ossctl is not installed on PATH")
@pytest.mark.parametrize("words,cword,expect", [
    ("ossctl dow", 1, "download"),
    ("ossctl --json ver", 2, "verify"),
    ("ossctl download --wo", 2, "--workers"),
])
def test_bash_completion_completes(words, cword, expect):
    script = (f"source {ROOT}/completions/ossctl.bash; COMP_WORDS=({words}); COMP_CWORD={cword}; "
              "_ossctl_completion ossctl; printf '%s\\n' \"${COMPREPLY[@]}\"")
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert expect in r.stdout.split(), r.stdout + r.stderr
