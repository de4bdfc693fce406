"""The guard of ``ossctl tune --take-over``: a small detached process that outlives the
tune only to start the release it stopped again should the tune die without doing it
itself (``kill -9``, an OOM kill, a closed terminal's SIGHUP). Ctrl-C, errors and crashed
trials are handled in the tune (:mod:`ossctl.ops.tune`); this covers what no ``finally``
can.

    python -m ossctl.ops.tune_guard OWNER_JSON DOCKER_HOST PROFILE CONTAINER_ID

It waits until the owner (``process_owner()`` of the tune, JSON) is provably gone, then,
when the release's container exists and is not running, starts it and removes the lock
the dead tune held (that one only: a lock another ossctl took since is left alone). When
the tune ended normally the release already runs and the lock is gone: it does nothing.
Nothing is printed; argv carries no secret (the environment is the tune's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

POLL_S = 0.5


def spawn(owner: dict, docker_host: str, profile: str, container_id: str, env: dict[str, str]) -> subprocess.Popen:
    """Start the guard detached (its own session: Ctrl-C at the terminal does not reach
    it) with the tune's environment; :func:`dismiss` it once the release is given back."""
    return subprocess.Popen([sys.executable, "-m", "ossctl.ops.tune_guard", json.dumps(owner, sort_keys=True),
                             docker_host, profile, container_id], env=dict(env), start_new_session=True,
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def dismiss(guard: subprocess.Popen) -> None:
    """The tune gave the release back itself: the guard exits without touching anything."""
    try:
        guard.stdin.write(b"done\n")
        guard.stdin.close()
        guard.wait(10)
    except (OSError, subprocess.TimeoutExpired):
        pass


def main(argv: list[str]) -> int:
    from ossctl.errors import OssctlError
    from ossctl.serve.docker_runtime import DockerRuntime
    from ossctl.serve.releases import holder_is_dead, lock_info, lock_name

    owner, host, profile, cid = json.loads(argv[0]), argv[1], argv[2], argv[3]
    if sys.stdin.buffer.read().startswith(b"done"):
        return 0
    while not holder_is_dead(owner):
        time.sleep(POLL_S)
    try:
        rt = DockerRuntime(host, dict(os.environ), timeout=60)
        st = rt.find(cid)
        if st is not None and not st["running"]:
            rt.start(cid)
        held = rt.find(lock_name(profile))
        info = lock_info(held) if held is not None else {}
        if held is not None and all(info.get(k) == owner.get(k) for k in ("owner", "pid", "boot_id", "start")):
            rt.remove(held["id"])  # the dead tune's own lock; one taken since is left alone
    except OssctlError:
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a process by spawn()
    raise SystemExit(main(sys.argv[1:]))
