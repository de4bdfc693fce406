"""Issue 13 item 16, deploy: Ctrl-C in the middle of a deploy restores the previous
release and says so on one line (exit 130)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.plugins.docker_engine import answer, signal_on_event
from tests.support.cli import run_cli

pytestmark = pytest.mark.docker


def test_ctrl_c_during_deploy_says_the_previous_release_serves_again(serve_env):
    env = serve_env
    r = run_cli("--json", "deploy", "-p", env.profile, env=env.env)
    assert r.code == 0, r.err
    first = r.json()

    # Ctrl-C the second deploy the moment its container starts (recreate: the first
    # release is stopped by then, so the interrupt must bring it back)
    proc, events = signal_on_event(env.client, env.profile, "start", "r0002", lambda: subprocess.Popen(
        [sys.executable, "-m", "ossctl", "deploy", "-p", env.profile], env={**os.environ, **env.env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    events.close()
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.startswith("interrupted")]
    assert lines == [f"interrupted: deploy of profile '{env.profile}' (release r0002) stopped; "
                     f"previous release r0001 is serving again "
                     f"at {first['endpoint']}"], err
    assert "Traceback" not in err
    assert answer(first["endpoint"])["choices"]  # nothing lost: the old release answers
