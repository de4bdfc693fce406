"""What must hold before anything stops: the model is registered (when the profile
requires it), the VRAM plan fits, the port is free, the strategy and gate timeout make
sense. Each check raises an :class:`~ossctl.errors.OssctlError` naming what to do; none
changes state. Used by the one-engine rollout and by the fleet's preflight."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from ossctl import labels as L
from ossctl.artifacts import signing
from ossctl.errors import ConflictError, IntegrityError, OssctlError, UsageError
from ossctl.serve import Log
from ossctl.serve.apikey import read_api_key
from ossctl.serve.profiles import STRATEGIES


def profile_api_key(profile: dict[str, Any]) -> str | None:
    """The profile's API key (the file is mounted into the container, never passed in
    argv/env); see :func:`ossctl.serve.apikey.read_api_key`."""
    return read_api_key(profile["api_key_file"])


def check_registered(settings, manifest, log: Log) -> dict[str, Any]:
    """On-chain hash must equal the local composite. Raises ConflictError otherwise."""
    from ossctl.registry import client  # 18 ms more for a deploy (measured after rollout): only require_registered pays

    if not manifest.model_id:
        raise UsageError("require_registered is set but the manifest has no model id (no hub repo)")
    st = client.status(client.from_settings(settings), manifest.model_id, manifest.composite_sha256, manifest.repo,
                       manifest.first_file)
    if st["hash"] == "not-registered":
        raise ConflictError(f"model {manifest.model_id} is not registered on chain, and the profile requires it",
                            hint="register it first: `ossctl register MODEL`")
    if st["hash"] != "match":
        raise ConflictError(f"on-chain hash {st['onchain_sha256']} differs from the local composite {manifest.composite_sha256}",
                            hint="the local files are not the registered model; re-download or re-register")
    if st.get("active") is False:
        raise ConflictError(f"model {manifest.model_id} is deactivated on chain",
                            hint="reactivate it (`ossctl registry reactivate MODEL`) or deploy another model")
    log(f"on-chain hash matches ({manifest.composite_sha256[:12]}…)")
    return {"status": "match"}


def _signature_policy(profile: dict[str, Any], model_dir: Path) -> tuple[signing.Trust, bool] | None:
    """(trust, require) from the profile's ``[signature]``; None when there is nothing to
    check: no policy requiring it and no ``model.sig`` (one that is there is checked)."""
    table = profile.get("signature") or {}
    require = bool(table.get("require"))
    if not require and not signing.sig_path(model_dir).exists():
        return None
    return signing.Trust.from_profile(table), require


def _refuse_signature(problems: list[dict[str, Any]], model_dir: Path, profile: dict[str, Any]) -> IntegrityError:
    p = problems[0]
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return IntegrityError(f"{model_dir}: {p['file']}: {p['detail']}{more}; nothing was changed",
                          hint=f"`ossctl verify {model_dir} --profile {profile['name']}` lists every problem; "
                               f"sign the verified files: `ossctl sign {model_dir} --key KEY.pem`")


def _log_signature(res, log: Log) -> None:
    log(f"signature: {res.status}" + (f", signed by {res.signed_by[:28]}… ({res.trusted})" if res.trusted else ""))


def check_signature(profile: dict[str, Any], model_dir: Path, manifest, log: Log) -> dict[str, Any] | None:
    """The profile's ``[signature]`` policy against ``model_dir/model.sig``: with
    ``require``, the model must be signed by a trusted signer and every file covered with
    the digest the verified ``manifest`` has. Without ``require``, a bundle that is there
    is still checked (a bad one refuses the deploy). Returns the check's public shape, or
    None when there is nothing to check. Raises :class:`IntegrityError` (exit 4)."""
    policy = _signature_policy(profile, model_dir)
    if policy is None:
        return None
    res = signing.check(Path(model_dir), manifest, *policy)
    if not res.ok:
        raise _refuse_signature(res.problems, model_dir, profile)
    _log_signature(res, log)
    return res.public()


def signed_statement(profile: dict[str, Any], model_dir: Path, manifest, log: Log):
    """For a fleet, whose model files are on other hosts: the statement of
    ``model_dir/model.sig`` (next to the manifest on this machine), checked against the
    profile's ``[signature]`` trust and against the manifest's digests, or None when there
    is nothing to check. Each host's own digests are then compared with it
    (:func:`ossctl.fleet.rollout.check_host_signature`). Raises :class:`IntegrityError` (exit 4)."""
    policy = _signature_policy(profile, model_dir)
    if policy is None:
        return None
    st, res = signing.authenticate(Path(model_dir), *policy)
    problems = res.problems or signing.compare(st.files, {f.name: f.sha256 for f in manifest.files})
    if problems:
        raise _refuse_signature(problems, model_dir, profile)
    _log_signature(res, log)
    return st


def vram_check(settings, profile: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    # here, not at the top: `status` imports this module (release_api_key) and the VRAM
    # planner (NVML, GGUF facts, manifests) is ~15 ms of imports only a deploy uses
    from ossctl.gpu.preflight import check_vram

    r = check_vram(settings, profile, model_dir)
    return {"status": r.status, "message": r.message, "plan": r.plan, "hint": r.hint}


def port_free_locally(host: str, port: int) -> bool:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR: connections in TIME_WAIT must not count as busy; a listener still does
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def check_port(rt, profile: dict[str, Any], port: int, allowed: set[str]) -> None:
    """The host port must be free, except for containers in ``allowed`` (names) that the
    rollout stops first."""
    users = [n for n in rt.host_port_users(port) if n not in allowed]
    if users:
        raise port_user_error(rt, profile, port, users[0])
    if not allowed and rt.is_local and not port_free_locally(profile["host"], port):
        raise ConflictError(f"port {port} on {profile['host']} is busy (another process listens on it)",
                            hint=f"free it (`ss -ltnp 'sport = :{port}'` shows who holds it), or set another `port` in the profile")


def port_user_error(rt, profile: dict[str, Any], port: int, user: str) -> ConflictError:
    """The error for ``port`` published by container ``user``. Another profile's release
    is named with a hint to pick another port: telling the operator to stop it would take
    down a service that is not this profile's to take down."""
    st = rt.find(user)
    labels = st["labels"] if st else {}
    other, release = labels.get(L.PROFILE), labels.get(L.RELEASE)
    if labels.get(L.MANAGED) == "1" and other and other != profile.get("name"):
        return ConflictError(f"port {port} is busy: release {release} of profile {other!r} serves there "
                             f"(container {user})",
                             hint=f"set another `port` in profile {profile.get('name')!r}; "
                                  f"`ossctl status --profile {other}` shows what serves on {port}")
    return ConflictError(f"port {port} is busy: published by container {user}",
                         hint="stop that container, or set another `port` in the profile")


def release_api_key(rec) -> str | None:
    """The API key a recorded release was deployed with; None when it had none or its
    file is no longer readable (probes then go without one)."""
    try:
        return profile_api_key({"api_key_file": rec.api_key_file or ""})
    except OssctlError:
        return None


def check_strategy(strategy: str) -> str:
    """``strategy`` when ossctl knows it; :class:`UsageError` otherwise (``--strategy`` is
    checked here, the profile key by the profile validator)."""
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}", hint="use " + ", ".join(STRATEGIES[:-1]) + " or " + STRATEGIES[-1])
    return strategy


def choose_strategy(strategy: str, log: Log) -> str:
    check_strategy(strategy)
    if strategy == "blue-green":
        raise UsageError("blue-green would leave the service on another port: the profile's endpoint can only be "
                         "kept behind a front door, which this profile does not have",
                         hint="use strategy = \"recreate\" (or \"auto\")")
    if strategy == "auto":
        log("strategy auto → recreate (no front door: the new release takes the profile's port)")
    return "recreate"


def gate_timeout(profile: dict[str, Any], timeout: float | None) -> float:
    """Seconds a new release may take to pass its health gate: ``--timeout``, else the
    profile's ``health_timeout``. Raises :class:`UsageError` for one that is not positive."""
    gate = float(timeout if timeout is not None else profile["health_timeout"])
    if not gate > 0 or gate == float("inf"):  # nan compares false: refused too
        raise UsageError("--timeout must be a positive, finite number of seconds")
    return gate
