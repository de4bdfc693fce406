"""Issue 13 item 16, deploy: Ctrl-C in the middle of a deploy restores the previous
release and says so on one line (exit 130)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from tests.plugins.docker_engine import answer
from tests.support.cli import run_cli

pytestmark = pytest.mark.docker


def test_ctrl_c_during_deploy_says_the_previous_release_serves_again(serve_env):
    env = serve_env
    r = run_cli("--json", "deploy", "-p", env.profile, env=env.env)
    assert r.code == 0, r.err
    first = r.json()

    # Ctrl-C the second deploy the moment its container starts (recreate: the first
    # release is stopped by then, so the interrupt must bring it back)
    events = env.client.events(decode=True, filters={"label": [f"ossctl.profile={env.profile}"], "event": ["start"]})
    proc = subprocess.Popen([sys.executable, "-m", "ossctl", "deploy", "-p", env.profile],
                            env={**os.environ, **env.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def watch():
        for ev in events:
            if ev["Actor"]["Attributes"].get("ossctl.release") == "r0002":
                proc.send_signal(signal.SIGINT)
                return

    threading.Thread(target=watch, daemon=True).start()
    _, err = proc.communicate(timeout=180)
    events.close()
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.startswith("interrupted")]
    assert lines == [f"interrupted: deploy of profile '{env.profile}' (release r0002) stopped; "
                     f"previous release r0001 is serving again "
                     f"at {first['endpoint']}"], err
    assert "Traceback" not in err
    assert answer(first["endpoint"])["choices"]  # nothing lost: the old release answers
