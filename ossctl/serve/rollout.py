"""Deploy and rollback: one rollout step, preflight → start → health gate → commit, that
brings the previous release back on any failure.

The endpoint clients use stays where the profile says: a release always serves on the
profile's ``host:port``. Without a front door that means ``recreate`` (stop the serving
container, start the new one on the same port, gate it; on failure start the old one
again). ``blue-green`` (gate a candidate on a side port while the old one serves) keeps
the endpoint only behind a front door, so it is refused until the profile has one, and
``auto`` picks ``recreate``.

State lives on the Docker engine (:mod:`ossctl.serve.releases`): the ledger, the lock and
the container labels. Crash safety: a release is recorded ``pending`` before its container
starts and ``ok`` only after the gate. A process killed at any step leaves a pending
record and a labelled container; the next deploy / rollback (under the engine-side lock,
from any machine) removes only containers whose record says they belong to that
interrupted release, marks it ``interrupted``, and restarts the current release if the
interrupted run had stopped it. A serving or kept release is never removed by that.

Library code: reports progress through the ``log`` callback, never prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ossctl import labels as L
from ossctl.artifacts.manifest import locate_model_dir, read_manifest, require_verified
from ossctl.errors import (
    ConflictError, DeployError, IntegrityError, Interrupted, NotFoundError, OssctlError, RemoteError, UsageError,
)
from ossctl.gpu.release_vram import below_plan, measure_release
from ossctl.loadtest.gate import run_gate, validate_bench_cfg
from ossctl.serve import Log, health, image_flags, llama_server, nolog, perf_gate
from ossctl.serve.fit_log import parse_fit_log
from ossctl.serve.image_pin import image_change, image_digest, pull_ref, refuse_unpinned, short
from ossctl.serve.docker_runtime import docker_host, engine_address
from ossctl.serve.engine import Engine, endpoint_url, open_engine
from ossctl.serve.llama_flags import parse_build
from ossctl.serve.preflight import (
    check_port, check_registered, check_signature, choose_strategy, gate_timeout, profile_api_key, release_api_key,
    vram_check,
)
from ossctl.serve.profiles import check_against_model, check_image_ref, resolve_profile
from ossctl.serve.releases import Book, Release, State, now_iso, retain_records, whoami
from ossctl.serve.results import DryRun

def _reason(exc: BaseException) -> str:
    if isinstance(exc, OssctlError):
        return exc.message
    return "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"


def _wait_healthy(eng: Engine, rec: Release, timeout: float) -> float:
    return health.wait_ready(rec.endpoint, timeout, release_api_key(rec), lambda: eng.rt.find(rec.container_id),
                             lambda: eng.rt.logs(rec.container_id))


def _gate(eng: Engine, rec: Release, profile: dict[str, Any], first_file: str, api_key: str | None,
          timeout: float, bench: bool, serving: Release | None = None) -> dict[str, Any]:
    """Health gate for a started container; returns timings/facts. With ``bench``, the
    profile's bench, and with ``bench.regress`` its performance gate against what
    ``serving`` recorded (:mod:`ossctl.serve.perf_gate`). Raises DeployError."""
    url = rec.endpoint
    out = health.gate(url, api_key, timeout, lambda: eng.rt.find(rec.container_id),
                      lambda: eng.rt.logs(rec.container_id, 20), first_file, profile["ctx"], profile["parallel"],
                      eng.log)
    if bench and "bench" in profile:
        eng.log("running the profile's bench gate")
        g = run_gate(url, api_key, profile["bench"], eng.settings.env)
        if not g.ok:
            raise DeployError(g.summary if g.summary.startswith("bench gate") else f"bench gate failed: {g.summary}")
        out["bench"] = {"summary": g.summary}
        eng.log(g.summary if g.summary.startswith("bench gate") else f"bench gate passed: {g.summary}")
        out["bench"].update(_perf_gate(eng, profile, g.report, serving))
    return out


def _perf_gate(eng: Engine, profile: dict[str, Any], report: dict[str, Any], serving: Release | None) -> dict[str, Any]:
    """The bench figures to record (``settings``, ``levels``); with ``bench.regress`` they
    are first compared with the serving release's (the first release records the
    baseline). Raises DeployError (both figures in it) on a regression beyond the allowance."""
    cfg = validate_bench_cfg(dict(profile["bench"]))
    rec = {"settings": perf_gate.settings_of(cfg), "levels": perf_gate.figures(report, cfg)}
    if "regress" not in cfg:
        return rec
    base = perf_gate.baseline(serving, rec["settings"])
    if base is None:
        eng.log("performance gate: no bench of the serving release under these settings; "
                "this release's bench is the baseline")
        return rec
    bad = perf_gate.compare(base["levels"], rec["levels"], cfg["regress"])
    if bad:
        raise DeployError(f"performance gate: {'; '.join(bad)} (allowed {cfg['regress'] * 100:g} %, baseline "
                          f"release {serving.source or serving.id})")
    eng.log(f"performance gate passed: within {cfg['regress'] * 100:g} % of release {serving.source or serving.id}")
    return rec


def bench_baseline(book: Book, cur: Release | None) -> Release | None:
    """The release whose recorded bench the performance gate compares with: the serving
    one, or for a rollback the release it brought back (same container or spec)."""
    if cur is not None and cur.bench is None and cur.kind == "rollback" and cur.source:
        return book.find(cur.profile, cur.source) or cur
    return cur


def _reconcile(eng: Engine, book: Book, profile: str, timeout: float) -> list[str]:
    """Under the lock (so no live process is working on ``profile``): finish what a killed
    deploy / rollback left. Only containers whose ledger record is ``pending`` are removed;
    containers the ledger does not know are reported, never removed. Returns what was done."""
    actions: list[str] = []
    changed: list[Release] = []
    pending = {r.id: r for r in book.history(profile) if r.state is State.PENDING}
    # a rollback restarts its target's kept container, which carries the target's release
    # label, not the pending id: the pending record names it (container_id, rollback_to)
    kept_by = {r.container_id: r for r in pending.values() if r.kind == "rollback" and r.container_id}
    cur = book.current(profile)
    for c in eng.containers(profile):
        rid = c["labels"].get(L.RELEASE, "")
        rec = pending.get(rid) or kept_by.get(c["id"])
        if rec is None or (cur and c["id"] == cur.container_id):
            continue
        if rec.kind == "rollback" and rec.container_id == c["id"] and rid != rec.id:
            # the target's kept container: stop it, never remove it (it stays kept for rollback)
            if c["running"]:
                eng.rt.stop(c["id"])
                actions.append(f"stopped container {c['name']} of release {rec.rollback_to or rid}, "
                               f"started by interrupted rollback {rec.id}")
        else:
            eng.rt.remove(c["id"])
            actions.append(f"removed container {c['name']} left by interrupted release {rid}")
    for rec in pending.values():
        rec.to(State.INTERRUPTED, "interrupted before it became healthy; cleaned up by the next run")
        changed.append(rec)
        actions.append(f"marked release {rec.id} interrupted")
    if changed:
        eng.ledger.save(*changed)
    if actions and cur and cur.container_id and not eng.running(cur):
        if eng.rt.find(cur.container_id) is not None:
            eng.log(f"restarting release {cur.id} (stopped by the interrupted run)")
            eng.rt.start(cur.container_id)
            _wait_healthy(eng, cur, timeout)
            actions.append(f"restarted release {cur.id}")
    for a in actions:
        eng.log("reconciled: " + a)
    return actions


def _restore(eng: Engine, prev: Release | None, timeout: float) -> str:
    """After a failed step that had stopped ``prev``: make it serve again."""
    if prev is None:
        return "nothing was serving before"
    try:
        st = eng.rt.find(prev.container_id) if prev.container_id else None
        if st is None:
            return f"previous release {prev.id}'s container is gone; run `ossctl rollback --profile {prev.profile}`"
        if not st["running"]:
            eng.log(f"restarting previous release {prev.id}")
            eng.rt.start(prev.container_id)
        _wait_healthy(eng, prev, timeout)
    except RemoteError:
        raise  # the engine is unreachable: the caller waits for it (see _take_back)
    except OssctlError as exc:
        return f"previous release {prev.id} did not come back: {exc.message}"
    return f"previous release {prev.id} is serving again at {prev.endpoint}"


def restart_release(eng: Engine, rec: Release, timeout: float) -> str:
    """Start the kept container of ``rec`` again (when stopped) and wait until it is
    healthy: the restore step of a failed rollout, for callers that stopped a release on
    purpose (``ossctl tune --take-over``). Returns the sentence saying what serves;
    raises :class:`RemoteError` while the engine cannot be reached."""
    return _restore(eng, rec, timeout)


RETRY_S = 1.0  # between attempts to reach an engine that went away (dockerd restarting)


def _engine_answers(eng: Engine) -> bool:
    try:
        eng.rt.engine_info()
    except OssctlError:
        return False
    return True


def _take_back(eng: Engine, rec: Release, reason: str, undo: Callable[[], None], stopped: Release | None,
               serving: Release | None, timeout: float) -> str:
    """After a failed step: ``undo()`` what was started, record ``rec`` failed, bring back
    ``stopped`` (``serving`` still serves when nothing was stopped). While the engine is
    unreachable (dockerd restarting: exit 5 errors) it is tried again every
    :data:`RETRY_S` seconds for up to ``timeout`` seconds, so a release the step had
    stopped serves again when the engine returns. Returns the sentence saying what serves."""
    deadline = time.monotonic() + timeout
    t0 = time.monotonic()
    waited = False
    answering = 0
    while True:
        try:
            undo()
            if rec.state is State.PENDING:
                rec.to(State.FAILED, reason)
            eng.ledger.save(rec)
            restored = _restore(eng, stopped, timeout) if stopped else (
                f"release {serving.id} is still serving at {serving.endpoint}" if serving else "nothing was serving before")
            break
        except RemoteError as exc2:
            # an engine that answers and still fails is not restarting: give up after a few tries
            answering += _engine_answers(eng)
            if answering >= 3:
                return f"could not clean up ({exc2.message}); the next deploy or rollback reconciles"
            if time.monotonic() >= deadline:
                return (f"the Docker engine did not come back within {timeout:g} s ({exc2.message}); "
                        "the next deploy or rollback reconciles")
            if not waited:
                eng.log(f"{exc2.message}; waiting up to {timeout:g} s for it to restore the previous state")
                waited = True
            time.sleep(RETRY_S)
        except OssctlError as exc2:
            return f"could not clean up ({exc2.message}); the next deploy or rollback reconciles"
    if waited:
        return f"the Docker engine was unreachable for {time.monotonic() - t0:.0f} s and came back; {restored}"
    return restored


def _step(eng: Engine, rec: Release, cur: Release | None, start: Callable[[], str], undo: Callable[[], None],
          gate: Callable[[Release], dict[str, Any]], timeout: float, what: str,
          side_by_side: bool = False) -> dict[str, Any]:
    """The one rollout step deploy and rollback share: record ``rec`` pending; stop the
    serving release (it holds the profile's port) unless ``side_by_side`` (blue-green behind
    a front door: the new one gets another port, the caller retires the old one);
    ``start()`` the new container (returns its id); gate it; commit ``ok``. On any failure
    (Ctrl-C too, even half-way through ``start``) ``undo()`` takes back whatever was
    started, ``rec`` becomes ``failed`` and ``cur`` serves again; raises
    :class:`DeployError` (exit 7) naming what serves now."""
    eng.ledger.save(rec)
    t0 = time.monotonic()
    cur_state = eng.running(cur)
    stopped: Release | None = None
    try:
        if cur_state and not side_by_side:
            eng.log(f"stopping release {cur.id} ({cur_state['name']}); it is kept for rollback")
            eng.rt.stop(cur.container_id)
            stopped = cur
        rec.container_id = start()
        facts = gate(rec)
    except BaseException as exc:
        reason = _reason(exc)
        restored = _take_back(eng, rec, reason, undo, stopped, cur if cur_state else None, timeout)
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(f"interrupted: {what} stopped; {restored}") from None
        raise DeployError(f"{what} failed: {reason}", hint=restored) from None
    rec.to(State.OK)
    rec.ready_s = facts["ready_s"]
    rec.props = facts.get("props")
    rec.bench = facts.get("bench")
    rec.vram = facts.get("vram")
    rec.fit = facts.get("fit")
    rec.deploy_s = round(time.monotonic() - t0, 3)  # stop, start, gate: what the step cost
    eng.ledger.save(rec)  # the commit point: from here on rec is what serves
    return facts


def _remove_release_containers(eng: Engine, rec: Release) -> None:
    """Remove what a failed or interrupted start of ``rec`` created: its containers carry
    its release id (found by label, so a start cut off before it returned is covered too)."""
    for c in eng.rt.list({L.PROFILE: rec.profile, L.RELEASE: rec.id}):
        eng.rt.remove(c["id"])


def _retain(eng: Engine, book: Book, profile: str, keep: int) -> None:
    """Keep the containers of the newest ``keep`` ok releases (the current one included);
    remove older ones, which the ledger proves are ours (they can still be recreated from
    their recorded spec)."""
    kept: list[str] = []
    changed: list[Release] = []
    for rec in reversed(book.history(profile)):
        if rec.state is not State.OK or rec.container_removed or not rec.container_id or rec.container_id in kept:
            continue
        if len(kept) < keep:
            kept.append(rec.container_id)
            continue
        eng.rt.remove(rec.container_id)
        for r in book.history(profile):
            if r.container_id == rec.container_id and not r.container_removed:
                r.container_removed = True
                changed.append(r)
        eng.log(f"removed the container of old release {rec.id} (keep_releases={keep})")
    if changed:
        eng.ledger.save(*changed)


# ------------------------------------------------------------------ deploy

def deploy(settings, profile_name: str, *, dry_run: bool = False, timeout: float | None = None,
           force: bool = False, strategy: str | None = None, docker_host_flag: str | None = None,
           log: Log = nolog, image: str | None = None, allow_image_change: bool = False) -> Release | DryRun:
    """Deploy ``profile_name`` (see the module docstring). Returns the release (or, with
    ``dry_run``, the spec and the ``docker run`` line without touching anything).

    Raises :class:`UsageError` / :class:`NotFoundError` / :class:`IntegrityError` /
    :class:`ConflictError` / :class:`RemoteError` from preflight (nothing changed), and
    :class:`DeployError` (exit 7) when the new release failed and the previous one was
    brought back. ``image``: deploy this image instead of the profile's (``upgrade``);
    ``allow_image_change``: a ``pin_image`` profile may change its build."""
    profile = with_image(resolve_profile(settings, profile_name), image)
    name = profile["name"]
    strategy = choose_strategy(strategy or profile["strategy"], log if not dry_run else nolog)
    timeout = gate_timeout(profile, timeout)
    model_dir = locate_model_dir(settings, profile["model"]).resolve()
    if dry_run:
        manifest = read_manifest(model_dir)
    else:
        log(f"verifying {model_dir} (fast path)")
        manifest = require_verified(model_dir)
        check_signature(profile, model_dir, manifest, log)
    check_against_model(profile, model_dir, manifest.first_file)
    api_key = profile_api_key(profile)
    port = profile["port"]

    if dry_run:
        help_text, source = image_flags.dry_run_help(settings, profile["image"], docker_host_flag)
        spec = llama_server.build_spec(profile, manifest, model_dir, "rNEXT", port, help_text)
        return DryRun(docker_host(settings, docker_host_flag), "rNEXT", name, strategy, endpoint_url("127.0.0.1", port),
                      spec, llama_server.docker_run_line(spec), image_flags.explain(profile, help_text, source))

    eng = open_engine(settings, docker_host_flag, log)
    # a remote engine's release is health-gated where it publishes its port: that host
    reach = engine_address(eng.host, dict(settings.env))
    with eng.ledger.lock(name, "deploy", log):
        return deploy_locked(eng, profile, manifest, model_dir, timeout=timeout, force=force, strategy=strategy,
                             api_key=api_key, local_vram=eng.rt.is_local, reach=reach,
                             allow_image_change=allow_image_change)


def with_image(profile, image: str | None):
    """``profile`` with ``image`` instead of its own (``--image``), checked as the profile's
    own would be; ``profile`` itself when ``image`` is None. Raises :class:`UsageError`."""
    if image is None:
        return profile
    check_image_ref(image, "--image")
    return profile.replace(image=image)


def deploy_locked(eng: Engine, profile: dict[str, Any], manifest, model_dir: Path, *, timeout: float, force: bool,
                  strategy: str, api_key: str | None, local_vram: bool, reach: str = "127.0.0.1",
                  side_by_side: bool = False, allow_image_change: bool = False) -> Release:
    """Deploy the resolved ``profile`` on ``eng``, whose lock for it the caller holds;
    ``model_dir`` is the model's directory on the engine's machine, ``manifest`` the
    verified manifest of those files. ``local_vram``: the engine's GPUs are this machine's
    (NVML can check the plan). ``reach``: the address this machine reaches the published
    port on (the engine's host, for a remote engine). Raises as :func:`deploy` does."""
    name = profile["name"]
    log = eng.log
    port = profile["port"]
    book = eng.book(name)
    _reconcile(eng, book, name, timeout)
    preflight: dict[str, Any] = {}
    if profile["require_registered"]:
        preflight["registry"] = check_registered(eng.settings, manifest, log)
    image = eng.rt.image_info(profile["image"])
    help_text = image_flags.read_help(eng.rt, profile["image"], eng.settings.cache_dir, image["id"])
    build = parse_build(image_flags.read_version(eng.rt, profile["image"], eng.settings.cache_dir, image["id"]))
    cur = book.current(name)
    cur_state = eng.running(cur)
    # issue 23: the build is named by digest; a moved tag (or a new image) is said before anything stops
    digest = image_digest(profile["image"], image["id"], image["digests"])
    changed = image_change(name, profile["image"], digest, cur)
    preflight["image"] = {"digest": digest, "changed": changed}
    if changed:
        if profile.get("pin_image") and not allow_image_change:
            raise refuse_unpinned(changed, name)
        log(changed)
    if profile["gpus"] == "none":
        vram = {"status": "skipped", "message": "VRAM check skipped: the profile uses no GPU", "plan": None}
    elif not local_vram:
        vram = {"status": "skipped", "message": f"VRAM check skipped: NVML of {eng.host} is not reachable from here",
                "plan": None}
    else:
        vram = vram_check(eng.settings, profile, model_dir)
    preflight["vram"] = {"status": vram["status"], "message": vram["message"]}
    log(vram["message"] or f"VRAM check: {vram['status']}")
    # with the old release loaded a "fail" may only mean "not next to it": re-checked once it is stopped
    if vram["status"] == "fail" and (side_by_side or not cur_state) and not force:
        raise ConflictError(f"the model does not fit in GPU memory: {vram['message']}",
                            hint=vram.get("hint") or "lower ctx / n_gpu_layers, use another profile, or pass --force")
    check_port(eng.rt, profile, port, {cur_state["name"]} if cur_state and not side_by_side else set())

    rid = book.next_id(name, [c["labels"].get("ossctl.release", "") for c in eng.containers(name)])
    spec = llama_server.build_spec(profile, manifest, model_dir, rid, port, help_text)
    rec = Release(
        id=rid, profile=name, kind="deploy", source=rid, created=now_iso(), owner=whoami(),
        docker_host=eng.host, endpoint=endpoint_url(reach, port), host=profile["host"], port=port,
        container_name=spec["name"], image=profile["image"], image_id=image["id"],
        image_digests=image["digests"], image_digest=digest, build=build, model_dir=str(model_dir), model_id=manifest.model_id,
        composite_sha256=manifest.composite_sha256, repo=manifest.repo, revision=manifest.revision,
        ctx=profile["ctx"], api_key_file=profile["api_key_file"] or None, strategy=strategy,
        previous=cur.id if cur else None, preflight=preflight, profile_resolved=profile, spec=spec)
    book.add(rec)

    def start() -> str:
        if vram["status"] == "fail" and not force and not side_by_side:
            again = vram_check(eng.settings, profile, model_dir)
            if again["status"] == "fail":
                raise DeployError(f"the model does not fit in GPU memory: {again['message']}")
        log(f"starting {spec['name']} from {profile['image']} on {rec.endpoint}")
        return eng.rt.run(spec)

    def gate(r: Release) -> dict[str, Any]:
        facts = _gate(eng, r, profile, manifest.first_file, api_key, timeout, bench=True,
                      serving=bench_baseline(book, cur))
        if profile.get("fit"):  # what llama.cpp chose instead of the plan, from its log
            choice = parse_fit_log(eng.rt.logs(r.container_id, "all"))
            facts["fit"] = choice.to_dict()
            log(choice.describe())
        if vram.get("plan") is not None:  # NVML here: what the release holds, next to the plan
            facts["vram"] = measure_release(eng.settings, r.container_id, plan=vram["plan"])
            below = below_plan(facts["vram"])
            if below:  # something else decided the placement (issue 23)
                raise DeployError(f"measured GPU memory is below the plan: {'; '.join(below)}")
        eng.rt.set_restart(r.container_id, spec["restart_policy"])
        return facts

    _step(eng, rec, cur, start, lambda: _remove_release_containers(eng, rec), gate, timeout,
          f"deploy of profile {name!r} (release {rid})", side_by_side=side_by_side)
    _retain(eng, book, name, profile["keep_releases"])
    retain_records(eng.ledger, book, name, profile["keep_releases"], profile["image"], eng.containers(name),
                   _previous(book, name, book.current(name)), eng.log)
    return rec


# ------------------------------------------------------------------ rollback

def _pick_profile(book: Book, profile: str | None) -> str:
    if profile:
        return profile
    curs = [r for r in (book.current(n) for n in book.profiles()) if r]
    if not curs:
        names = [n for n in book.profiles() if book.history(n)]
        if len(names) == 1:
            return names[0]
        raise NotFoundError("nothing is deployed on this Docker host", hint="deploy first: `ossctl deploy --profile NAME`")
    return max(curs, key=lambda r: r.created).profile


def _previous(book: Book, profile: str, cur: Release | None) -> Release | None:
    """The newest ok release before the current one that runs something else and was not
    itself rolled back from (so repeated rollbacks walk further back)."""
    for rec in reversed(book.history(profile)):
        if cur and rec.id == cur.id:
            continue
        if rec.state is not State.OK or rec.rolled_back or (cur and rec.source == cur.source):
            continue
        return rec
    return None


def rollback_target(book: Book, name: str, cur: Release | None, to: str | None) -> Release:
    """The release a rollback of ``name`` goes to (``to``, else the previous one); raises
    NotFoundError / UsageError before anything changes (the fleet asks every host first)."""
    if not to:
        target = _previous(book, name, cur)
        if target is None:
            raise NotFoundError(f"no previous release of profile {name!r} to roll back to",
                                hint=f"see `ossctl releases --profile {name}`")
        return _restorable(target, name)
    target = book.find(name, to)
    if target is None:
        raise NotFoundError(f"no release {to!r} for profile {name!r}", hint=f"see `ossctl releases --profile {name}`")
    if target.state is not State.OK:
        raise UsageError(f"release {to} never became healthy ({target.state.value}); cannot roll back to it",
                         hint=f"see `ossctl releases --profile {name}`")
    if cur and target.source == cur.source:
        raise UsageError(f"release {to} is what serves now (as {cur.id})")
    return _restorable(target, name)


def _restorable(target: Release, name: str) -> Release:
    if not target.spec or not target.profile_resolved:  # a record written without them
        raise UsageError(f"release {target.id} of profile {name!r} has no recorded container spec and profile; "
                         "cannot roll back to it", hint=f"deploy instead: `ossctl deploy --profile {name}`")
    return target


@dataclass(frozen=True)
class _RecordedModel:
    """The model facts a release recorded, in the shape :func:`check_registered` reads."""

    model_id: str | None
    composite_sha256: str
    repo: str | None
    first_file: str


def _target_preflight(eng: Engine, target: Release, name: str) -> dict[str, Any]:
    """What deploy checks before anything stops, for the release a rollback brings back:
    its model files verify (fast path: size + mtime as last hashed) and are the model it
    served; when its recorded profile requires registration, the chain still has the model
    registered, with that hash, and active. Raises :class:`IntegrityError` (exit 4) /
    :class:`ConflictError` (exit 6) / what the registry raises; changes nothing.

    A remote engine's files that are not on this machine are the fleet's to check on that
    host (``fleet.rollout.verify_on_host``): they are skipped here, and said so."""
    out: dict[str, Any] = {}
    model_dir = Path(target.model_dir) if target.model_dir else None
    if model_dir is not None and (eng.rt.is_local or (model_dir / "manifest.toml").exists()):
        eng.log(f"verifying {model_dir} (fast path)")
        manifest = require_verified(model_dir)
        if target.composite_sha256 and manifest.composite_sha256 != target.composite_sha256:
            raise IntegrityError(f"{model_dir} now holds another model than release {target.id} served "
                                 f"(composite {manifest.composite_sha256[:12]}…, recorded {target.composite_sha256[:12]}…)",
                                 hint=f"put release {target.id}'s files back in {model_dir}, or deploy the profile "
                                      f"again: `ossctl deploy --profile {name}`")
        out["files"] = {"status": "verified"}
    else:
        eng.log(f"release {target.id}'s model files are on {eng.host}, not here: not verified from here")
        out["files"] = {"status": "skipped"}
    if target.profile_resolved.get("require_registered"):
        first = Path(target.spec["command"][1]).name if target.spec.get("command") else ""
        out["registry"] = check_registered(eng.settings, _RecordedModel(
            target.model_id, target.composite_sha256, target.repo, first), eng.log)
    return out


def _recorded_build(eng: Engine, target: Release, name: str) -> str:
    """The image a rollback recreates ``target`` from: its tag while that still names the
    build it ran, else that build by image id (a tag that moved since would run another
    build, issue 23). Raises :class:`NotFoundError` when neither is on the engine."""
    try:
        info = eng.rt.image_info(target.image)
    except NotFoundError:
        info = None
    if info is not None and (not target.image_id or info["id"] == target.image_id):
        return target.image
    if target.image_id:
        try:
            eng.rt.image_info(target.image_id)
        except NotFoundError:
            raise NotFoundError(
                f"release {target.id} ran {target.image} as {short(target.digest)}, which is no longer on {eng.host}"
                + (f" (the tag now names {short(info['id'])})" if info else ""),
                hint=(f"docker pull {pull_ref(target.image, target.digest)}"
                      if target.digest and target.digest != target.image_id
                      else f"deploy instead: `ossctl deploy --profile {name}`")) from None
        if info is not None:
            eng.log(f"{target.image} now names another build; recreating release {target.id} from its own "
                    f"({short(target.image_id)})")
        return target.image_id
    eng.rt.image_info(target.image)  # raises with the pull command
    return target.image


def rollback(settings, profile: str | None = None, to: str | None = None, *, timeout: float | None = None,
             docker_host_flag: str | None = None, log: Log = nolog) -> Release:
    """Go back to the previous healthy release (or release ``to``): restart its kept
    container, or recreate it from the recorded spec; health-gated; recorded as a new
    release of kind "rollback". On failure the release that was serving is restored and
    :class:`DeployError` is raised."""
    eng = open_engine(settings, docker_host_flag, log)
    name = profile or _pick_profile(eng.book(), None)
    with eng.ledger.lock(name, "rollback", log):
        return rollback_locked(eng, name, to, timeout)


def rollback_locked(eng: Engine, name: str, to: str | None, timeout: float | None) -> Release:
    """The body of :func:`rollback` on one engine whose lock of profile ``name`` the caller
    holds (the fleet rollback calls it per host)."""
    log = eng.log
    book = eng.book(name)
    cur = book.current(name)
    target = rollback_target(book, name, cur, to)
    tprofile = target.profile_resolved
    timeout = float(timeout if timeout is not None else tprofile.get("health_timeout", 900))
    _reconcile(eng, book, name, timeout)
    checked = _target_preflight(eng, target, name)
    cur_state = eng.running(cur)
    tstate = eng.rt.find(target.container_id) if target.container_id and not target.container_removed else None
    build_image = target.image
    if tstate is None:
        build_image = _recorded_build(eng, target, name)
    if not (tstate and tstate["running"]):
        check_port(eng.rt, tprofile, target.port, {cur_state["name"]} if cur_state else set())
    rid = book.next_id(name, [c["labels"].get("ossctl.release", "") for c in eng.containers(name)])
    rec = Release.from_dict(target.to_dict())
    rec.id, rec.kind, rec.state, rec.created, rec.owner = rid, "rollback", State.PENDING, now_iso(), whoami()
    rec.rollback_to, rec.previous, rec.strategy = target.id, cur.id if cur else None, "recreate"
    rec.rolled_back, rec.error, rec.ready_s, rec.deploy_s, rec.bench, rec.vram = False, None, None, None, None, None
    rec.container_removed = False
    rec.preflight = checked
    book.add(rec)
    first_file = Path(target.spec["command"][1]).name
    api_key = release_api_key(target)

    def start() -> str:
        if tstate is not None:
            log(f"starting the kept container of release {target.id} ({tstate['name']})")
            if not tstate["running"]:
                eng.rt.start(target.container_id)
            return target.container_id
        spec = dict(target.spec)
        spec["image"] = build_image  # the build it ran, not whatever its tag names now
        spec["name"] = llama_server.container_name(name, rid)
        spec["labels"] = {**spec["labels"], **rec.labels()}
        log(f"recreating release {target.id} as {spec['name']} from its recorded spec")
        rec.container_name, rec.spec = spec["name"], spec
        return eng.rt.run(spec)

    def undo() -> None:
        if tstate is not None:
            eng.rt.stop(target.container_id)  # the kept container stays kept
        else:
            _remove_release_containers(eng, rec)

    def gate(r: Release) -> dict[str, Any]:
        facts = _gate(eng, r, tprofile, first_file, api_key, timeout, bench=False)
        if tstate is None:
            eng.rt.set_restart(r.container_id, r.spec["restart_policy"])
        return facts

    _step(eng, rec, cur, start, undo, gate, timeout, f"rollback of profile {name!r} to release {target.id}")
    if cur:
        cur.rolled_back = True
        eng.ledger.save(cur)
    return rec


