"""What the serving commands call: a profile with ``[[hosts]]`` or a ``[frontdoor]`` is a
fleet and is rolled by :mod:`ossctl.fleet.rollout` (behind its front door, host by host),
any other by :mod:`ossctl.serve.rollout` on one engine. Only this module knows both, so
neither imports the other's caller (fleet builds on rollout's step, never the reverse)."""

from __future__ import annotations

from ossctl.errors import OssctlError, UsageError
from ossctl.fleet.account import FleetDeploy, FleetRollback, FleetView
from ossctl.serve import Log, nolog
from ossctl.serve import status as status_

# The two rollouts (ossctl.fleet.rollout, ossctl.serve.rollout) are imported where they are
# called: with them come the whole deploy path (preflight, front doors, health gate, VRAM),
# ~35 ms that `status` and `releases` of one engine do not use (python -X importtime).
from ossctl.serve.profiles import Profile, resolve_profile
from ossctl.serve.releases import Release
from ossctl.serve.results import DryRun, EngineHistory, EngineStatus


def _fleet_profile(settings, name: str | None, docker_host_flag: str | None = None,
                   changes: bool = True) -> Profile | None:
    """The resolved profile ``name`` as a fleet (see :func:`ossctl.fleet.rollout.as_fleet`)
    when it has ``[[hosts]]`` or a ``[frontdoor]``, else None. A name that is not a
    profile here (a release deployed from elsewhere) is no fleet. ``--docker-host`` with
    ``[[hosts]]``: refused for what ``changes`` the fleet, one engine's view otherwise."""
    if not name:
        return None
    try:
        p = resolve_profile(settings, name)
    except OssctlError:  # unknown or broken here: what the engine records still shows
        return None
    if not (p.get("hosts") or p.get("frontdoor")):
        return None
    if docker_host_flag and p.get("hosts"):
        if not changes:
            return None
        raise UsageError(f"profile {name!r} is a fleet: its [[hosts]] name the engines, --docker-host does not")
    from ossctl.fleet import rollout as fleet

    return fleet.as_fleet(settings, p, docker_host_flag)


def fleet_profile(settings, name: str | None, docker_host_flag: str | None = None) -> Profile | None:
    """The resolved profile ``name`` as a fleet, or None when it is one engine's (what
    :func:`deploy` dispatches on)."""
    return _fleet_profile(settings, name, docker_host_flag)


def deploy(settings, profile_name: str, *, dry_run: bool = False, timeout: float | None = None,
           force: bool = False, strategy: str | None = None, docker_host_flag: str | None = None,
           keep_going: bool = False, log: Log = nolog, image: str | None = None,
           allow_image_change: bool = False) -> Release | DryRun | FleetDeploy:
    """Deploy ``profile_name``: :func:`ossctl.fleet.rollout.deploy` for a fleet,
    :func:`ossctl.serve.rollout.deploy` otherwise (and for every ``dry_run``, which
    touches nothing). ``image``: instead of the profile's (``--image``);
    ``allow_image_change``: a ``pin_image`` profile may change its build. Raises as those do."""
    from ossctl.serve import rollout

    if not dry_run:
        fp = _fleet_profile(settings, profile_name, docker_host_flag)
        if fp is not None:
            from ossctl.fleet import rollout as fleet

            return fleet.deploy(settings, rollout.with_image(fp, image), timeout=timeout, force=force,
                                keep_going=keep_going, strategy=strategy, log=log,
                                allow_image_change=allow_image_change)
    return rollout.deploy(settings, profile_name, dry_run=dry_run, timeout=timeout, force=force, strategy=strategy,
                          docker_host_flag=docker_host_flag, log=log, image=image,
                          allow_image_change=allow_image_change)


def rollback(settings, profile: str | None = None, to: str | None = None, *, timeout: float | None = None,
             docker_host_flag: str | None = None, log: Log = nolog) -> Release | FleetRollback:
    """Roll ``profile`` back: the whole fleet (:func:`ossctl.fleet.rollout.rollback`) or one
    engine (:func:`ossctl.serve.rollout.rollback`). Raises as those do."""
    fp = _fleet_profile(settings, profile, docker_host_flag)
    if fp is not None:
        if to:
            raise UsageError(f"profile {profile!r} is a fleet: its hosts number their releases each on their own, "
                             "so --to does not name one release of all of them",
                             hint=f"`ossctl rollback --profile {profile}` rolls every host back to its previous release")
        from ossctl.fleet import rollout as fleet

        return fleet.rollback(settings, fp, timeout=timeout, log=log)
    from ossctl.serve import rollout

    return rollout.rollback(settings, profile, to, timeout=timeout, docker_host_flag=docker_host_flag, log=log)


def status(settings, profile: str | None = None, docker_host_flag: str | None = None,
           log: Log = nolog) -> EngineStatus | FleetView:
    """What runs now: on the engine, or on every host of a fleet profile (rows carry their
    ``docker_host``; ``hosts`` says which answered; ``--docker-host`` picks one of them)."""
    fp = _fleet_profile(settings, profile, docker_host_flag, changes=False)
    if fp is not None:
        from ossctl.fleet import rollout as fleet

        return fleet.status(settings, fp, log)
    return status_.engine_status(settings, profile, docker_host_flag, log)


def history(settings, profile: str | None = None, docker_host_flag: str | None = None,
            log: Log = nolog) -> EngineHistory | FleetView:
    """Release history, newest first: of the engine, or of every host of a fleet profile."""
    fp = _fleet_profile(settings, profile, docker_host_flag, changes=False)
    if fp is not None:
        from ossctl.fleet import rollout as fleet

        return fleet.history(settings, fp, log)
    return status_.engine_history(settings, profile, docker_host_flag, log)
