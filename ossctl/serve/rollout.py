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
from pathlib import Path
from typing import Any

from ossctl.errors import ConflictError, DeployError, Interrupted, NotFoundError, OssctlError, UsageError
from ossctl.serve import Log, image_flags, llama_server, nolog
from ossctl.serve.llama_flags import parse_build
from ossctl.serve.releases import Book, Ledger, Release, State, import_legacy, now_iso, whoami
from ossctl.serve.profiles import STRATEGIES, check_against_model, resolve_profile

# ------------------------------------------------------------------ preflight pieces

def profile_api_key(profile: dict[str, Any]) -> str | None:
    """The profile's API key (the file is mounted into the container, never passed in
    argv/env); see :func:`ossctl.serve.apikey.read_api_key`."""
    from ossctl.serve.apikey import read_api_key

    return read_api_key(profile["api_key_file"])


def check_registered(settings, manifest, log: Log) -> dict[str, Any]:
    """On-chain hash must equal the local composite. Raises ConflictError otherwise."""
    from ossctl.registry import client

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


def _check_vram(settings, profile: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    from ossctl.gpu.preflight import check_vram

    r = check_vram(settings, profile, model_dir)
    return {"status": r.status, "message": r.message, "plan": r.plan, "hint": r.hint}


def port_free_locally(host: str, port: int) -> bool:
    import socket

    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR: connections in TIME_WAIT must not count as busy; a listener still does
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _check_port(rt, profile: dict[str, Any], port: int, allowed: set[str]) -> None:
    """The host port must be free, except for containers in ``allowed`` (names) that the
    rollout stops first."""
    users = [n for n in rt.host_port_users(port) if n not in allowed]
    if users:
        raise ConflictError(f"port {port} is busy: published by container {users[0]}",
                            hint="stop that container, or set another `port` in the profile")
    if not allowed and rt.is_local and not port_free_locally(profile["host"], port):
        raise ConflictError(f"port {port} on {profile['host']} is busy (another process listens on it)",
                            hint=f"free it (`ss -ltnp 'sport = :{port}'` shows who holds it), or set another `port` in the profile")


# ------------------------------------------------------------------ the engine

class Engine:
    """One Docker engine with its ledger: what every command below works on."""

    def __init__(self, settings, docker_host_flag: str | None, log: Log = nolog):
        from ossctl.serve.docker_runtime import DockerRuntime, docker_host

        self.host = docker_host(settings, docker_host_flag)
        self.rt = DockerRuntime(self.host, dict(settings.env))
        self.ledger = Ledger(self.rt)
        self.settings = settings
        self.log = log

    def book(self, profile: str | None = None) -> Book:
        """The ledger, with releases kept by ossctl 0.1 in ``OSSCTL_HOME`` imported once.
        Unreadable records (of ``profile``, else of any) are reported through ``log``."""
        import_legacy(self.settings, self.host, self.ledger, self.log)
        book = self.ledger.load(profile)
        for u in book.unreadable:
            if profile and u.profile != profile:
                continue
            self.log(f"warning: the engine-side record {u.profile}/{u.name} is unreadable ({u.reason}); "
                     "it is left alone, and so is its container")
        return book

    def containers(self, profile: str) -> list[dict[str, Any]]:
        from ossctl import labels as L

        return self.rt.list({L.MANAGED: "1", L.PROFILE: profile})

    def running(self, rec: Release | None) -> dict[str, Any] | None:
        """The container state of ``rec`` when it is running, else None."""
        st = self.rt.find(rec.container_id) if rec and rec.container_id else None
        return st if st and st["running"] else None


def _endpoint(port: int, reach: str = "127.0.0.1") -> str:
    return f"http://[{reach}]:{port}" if ":" in reach else f"http://{reach}:{port}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OssctlError):
        return exc.message
    return "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"


def _api_key_quiet(rec: Release) -> str | None:
    try:
        return profile_api_key({"api_key_file": rec.api_key_file or ""})
    except OssctlError:
        return None


def _wait_healthy(eng: Engine, rec: Release, timeout: float) -> float:
    from ossctl.serve import health

    return health.wait_ready(rec.endpoint, timeout, _api_key_quiet(rec), lambda: eng.rt.find(rec.container_id),
                             lambda: eng.rt.logs(rec.container_id))


def _gate(eng: Engine, rec: Release, profile: dict[str, Any], first_file: str, api_key: str | None,
          timeout: float, bench: bool) -> dict[str, Any]:
    """Health gate for a started container; returns timings/facts. Raises DeployError."""
    from ossctl.serve import health

    url = rec.endpoint
    out = health.gate(url, api_key, timeout, lambda: eng.rt.find(rec.container_id),
                      lambda: eng.rt.logs(rec.container_id, 20), first_file, profile["ctx"], profile["parallel"],
                      eng.log)
    if bench and "bench" in profile:
        from ossctl.loadtest.gate import run_gate

        eng.log("running the profile's bench gate")
        g = run_gate(url, api_key, profile["bench"], eng.settings.env)
        if not g.ok:
            raise DeployError(g.summary if g.summary.startswith("bench gate") else f"bench gate failed: {g.summary}")
        out["bench"] = {"summary": g.summary}
        eng.log(g.summary if g.summary.startswith("bench gate") else f"bench gate passed: {g.summary}")
    return out


def _reconcile(eng: Engine, book: Book, profile: str, timeout: float) -> list[str]:
    """Under the lock (so no live process is working on ``profile``): finish what a killed
    deploy / rollback left. Only containers whose ledger record is ``pending`` are removed;
    containers the ledger does not know are reported, never removed. Returns what was done."""
    from ossctl import labels as L

    actions: list[str] = []
    changed: list[Release] = []
    pending = {r.id: r for r in book.history(profile) if r.state is State.PENDING}
    cur = book.current(profile)
    for c in eng.containers(profile):
        rid = c["labels"].get(L.RELEASE, "")
        rec = pending.get(rid)
        if rec is None or (cur and c["id"] == cur.container_id):
            continue
        if rec.kind == "rollback" and rec.container_id == c["id"]:
            # a rollback restarts the target's kept container: stop it, never remove it
            eng.rt.stop(c["id"])
            actions.append(f"stopped container {c['name']} started by interrupted rollback {rid}")
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
    except OssctlError as exc:
        return f"previous release {prev.id} did not come back: {exc.message}"
    return f"previous release {prev.id} is serving again at {prev.endpoint}"


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
        try:
            undo()
            rec.to(State.FAILED, reason)
            eng.ledger.save(rec)
            restored = _restore(eng, stopped, timeout) if stopped else (
                f"release {cur.id} is still serving at {cur.endpoint}" if cur_state else "nothing was serving before")
        except OssctlError as exc2:
            restored = f"could not clean up ({exc2.message}); the next deploy or rollback reconciles"
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(f"interrupted: {what} stopped; {restored}") from None
        raise DeployError(f"{what} failed: {reason}", hint=restored) from None
    rec.to(State.OK)
    rec.ready_s = facts["ready_s"]
    rec.props = facts.get("props")
    rec.bench = facts.get("bench")
    rec.vram = facts.get("vram")
    rec.deploy_s = round(time.monotonic() - t0, 3)  # stop, start, gate: what the step cost
    eng.ledger.save(rec)  # the commit point: from here on rec is what serves
    return facts


def _remove_release_containers(eng: Engine, rec: Release) -> None:
    """Remove what a failed or interrupted start of ``rec`` created: its containers carry
    its release id (found by label, so a start cut off before it returned is covered too)."""
    from ossctl import labels as L

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


def check_strategy(strategy: str) -> str:
    """``strategy`` when ossctl knows it; :class:`UsageError` otherwise (``--strategy`` is
    checked here, the profile key by the profile validator)."""
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}", hint="use " + ", ".join(STRATEGIES[:-1]) + " or " + STRATEGIES[-1])
    return strategy


def _choose_strategy(strategy: str, log: Log) -> str:
    check_strategy(strategy)
    if strategy == "blue-green":
        raise UsageError("blue-green would leave the service on another port: the profile's endpoint can only be "
                         "kept behind a front door, which this profile does not have",
                         hint="use strategy = \"recreate\" (or \"auto\")")
    if strategy == "auto":
        log("strategy auto → recreate (no front door: the new release takes the profile's port)")
    return "recreate"


# ------------------------------------------------------------------ deploy

def gate_timeout(profile: dict[str, Any], timeout: float | None) -> float:
    """Seconds a new release may take to pass its health gate: ``--timeout``, else the
    profile's ``health_timeout``. Raises :class:`UsageError` for one that is not positive."""
    gate = float(timeout if timeout is not None else profile["health_timeout"])
    if gate <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    return gate


def deploy(settings, profile_name: str, *, dry_run: bool = False, timeout: float | None = None,
           force: bool = False, strategy: str | None = None, docker_host_flag: str | None = None,
           log: Log = nolog) -> dict[str, Any]:
    """Deploy ``profile_name`` (see the module docstring). Returns the release (or, with
    ``dry_run``, the spec and the ``docker run`` line without touching anything).

    Raises :class:`UsageError` / :class:`NotFoundError` / :class:`IntegrityError` /
    :class:`ConflictError` / :class:`RemoteError` from preflight (nothing changed), and
    :class:`DeployError` (exit 7) when the new release failed and the previous one was
    brought back."""
    from ossctl.artifacts.manifest import locate_model_dir, read_manifest, require_verified

    profile = resolve_profile(settings, profile_name)
    name = profile["name"]
    strategy = _choose_strategy(strategy or profile["strategy"], log if not dry_run else nolog)
    timeout = gate_timeout(profile, timeout)
    model_dir = locate_model_dir(settings, profile["model"]).resolve()
    if dry_run:
        manifest = read_manifest(model_dir)
    else:
        log(f"verifying {model_dir} (fast path)")
        manifest = require_verified(model_dir)
    check_against_model(profile, model_dir, manifest.first_file)
    api_key = profile_api_key(profile)
    port = profile["port"]

    if dry_run:
        from ossctl.serve.docker_runtime import docker_host

        help_text, source = image_flags.dry_run_help(settings, profile["image"], docker_host_flag)
        spec = llama_server.build_spec(profile, manifest, model_dir, "rNEXT", port, help_text)
        return {"dry_run": True, "docker_host": docker_host(settings, docker_host_flag), "release": "rNEXT",
                "profile": name, "strategy": strategy, "endpoint": _endpoint(port), "spec": spec,
                "docker_run": llama_server.docker_run_line(spec),
                "flags": image_flags.explain(profile, help_text, source)}

    from ossctl.serve.docker_runtime import engine_address

    eng = Engine(settings, docker_host_flag, log)
    # a remote engine's release is health-gated where it publishes its port: that host
    reach = engine_address(eng.host, dict(settings.env))
    with eng.ledger.lock(name, "deploy", log):
        return deploy_locked(eng, profile, manifest, model_dir, timeout=timeout, force=force, strategy=strategy,
                             api_key=api_key, local_vram=eng.rt.is_local, reach=reach).public()


def deploy_locked(eng: Engine, profile: dict[str, Any], manifest, model_dir: Path, *, timeout: float, force: bool,
                  strategy: str, api_key: str | None, local_vram: bool, reach: str = "127.0.0.1",
                  side_by_side: bool = False) -> Release:
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
    if profile["gpus"] == "none":
        vram = {"status": "skipped", "message": "VRAM check skipped: the profile uses no GPU", "plan": None}
    elif not local_vram:
        vram = {"status": "skipped", "message": f"VRAM check skipped: NVML of {eng.host} is not reachable from here",
                "plan": None}
    else:
        vram = _check_vram(eng.settings, profile, model_dir)
    preflight["vram"] = {"status": vram["status"], "message": vram["message"]}
    log(vram["message"] or f"VRAM check: {vram['status']}")
    # with the old release loaded a "fail" may only mean "not next to it": re-checked once it is stopped
    if vram["status"] == "fail" and (side_by_side or not cur_state) and not force:
        raise ConflictError(f"the model does not fit in GPU memory: {vram['message']}",
                            hint=vram.get("hint") or "lower ctx / n_gpu_layers, use another profile, or pass --force")
    _check_port(eng.rt, profile, port, {cur_state["name"]} if cur_state and not side_by_side else set())

    rid = book.next_id(name, [c["labels"].get("ossctl.release", "") for c in eng.containers(name)])
    spec = llama_server.build_spec(profile, manifest, model_dir, rid, port, help_text)
    rec = Release(
        id=rid, profile=name, kind="deploy", source=rid, created=now_iso(), owner=whoami(),
        docker_host=eng.host, endpoint=_endpoint(port, reach), host=profile["host"], port=port,
        container_name=spec["name"], image=profile["image"], image_id=image["id"],
        image_digests=image["digests"], build=build, model_dir=str(model_dir), model_id=manifest.model_id,
        composite_sha256=manifest.composite_sha256, repo=manifest.repo, revision=manifest.revision,
        ctx=profile["ctx"], api_key_file=profile["api_key_file"] or None, strategy=strategy,
        previous=cur.id if cur else None, preflight=preflight, profile_resolved=profile, spec=spec)
    book.add(rec)

    def start() -> str:
        if vram["status"] == "fail" and not force and not side_by_side:
            again = _check_vram(eng.settings, profile, model_dir)
            if again["status"] == "fail":
                raise DeployError(f"the model does not fit in GPU memory: {again['message']}")
        log(f"starting {spec['name']} from {profile['image']} on {rec.endpoint}")
        return eng.rt.run(spec)

    def gate(r: Release) -> dict[str, Any]:
        facts = _gate(eng, r, profile, manifest.first_file, api_key, timeout, bench=True)
        eng.rt.set_restart(r.container_id, spec["restart_policy"])
        if vram.get("plan") is not None:  # NVML here: what the release holds, next to the plan
            from ossctl.gpu.release_vram import measure_release

            facts["vram"] = measure_release(eng.settings, r.container_id, plan=vram["plan"])
        return facts

    _step(eng, rec, cur, start, lambda: _remove_release_containers(eng, rec), gate, timeout,
          f"deploy of profile {name!r} (release {rid})", side_by_side=side_by_side)
    _retain(eng, book, name, profile["keep_releases"])
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


def _rollback_target(book: Book, name: str, cur: Release | None, to: str | None) -> Release:
    if not to:
        target = _previous(book, name, cur)
        if target is None:
            raise NotFoundError(f"no previous release of profile {name!r} to roll back to",
                                hint=f"see `ossctl releases --profile {name}`")
        return target
    target = book.find(name, to)
    if target is None:
        raise NotFoundError(f"no release {to!r} for profile {name!r}", hint=f"see `ossctl releases --profile {name}`")
    if target.state is not State.OK:
        raise UsageError(f"release {to} never became healthy ({target.state.value}); cannot roll back to it",
                         hint=f"see `ossctl releases --profile {name}`")
    if cur and target.source == cur.source:
        raise UsageError(f"release {to} is what serves now (as {cur.id})")
    return target


def rollback(settings, profile: str | None = None, to: str | None = None, *, timeout: float | None = None,
             docker_host_flag: str | None = None, log: Log = nolog) -> dict[str, Any]:
    """Go back to the previous healthy release (or release ``to``): restart its kept
    container, or recreate it from the recorded spec; health-gated; recorded as a new
    release of kind "rollback". On failure the release that was serving is restored and
    :class:`DeployError` is raised."""
    eng = Engine(settings, docker_host_flag, log)
    name = profile or _pick_profile(eng.book(), None)
    with eng.ledger.lock(name, "rollback", log):
        return rollback_locked(eng, name, to, timeout).public()


def rollback_locked(eng: Engine, name: str, to: str | None, timeout: float | None) -> Release:
    """The body of :func:`rollback` on one engine whose lock of profile ``name`` the caller
    holds (the fleet rollback calls it per host)."""
    log = eng.log
    book = eng.book(name)
    cur = book.current(name)
    target = _rollback_target(book, name, cur, to)
    tprofile = target.profile_resolved
    timeout = float(timeout if timeout is not None else tprofile.get("health_timeout", 900))
    _reconcile(eng, book, name, timeout)
    cur_state = eng.running(cur)
    tstate = eng.rt.find(target.container_id) if target.container_id and not target.container_removed else None
    if tstate is None:
        eng.rt.image_info(target.image)
    if not (tstate and tstate["running"]):
        _check_port(eng.rt, tprofile, target.port, {cur_state["name"]} if cur_state else set())
    rid = book.next_id(name, [c["labels"].get("ossctl.release", "") for c in eng.containers(name)])
    rec = Release.from_dict(target.to_dict())
    rec.id, rec.kind, rec.state, rec.created, rec.owner = rid, "rollback", State.PENDING, now_iso(), whoami()
    rec.rollback_to, rec.previous, rec.strategy = target.id, cur.id if cur else None, "recreate"
    rec.rolled_back, rec.error, rec.ready_s, rec.deploy_s, rec.bench, rec.vram = False, None, None, None, None, None
    rec.container_removed = False
    book.add(rec)
    first_file = Path(target.spec["command"][1]).name
    api_key = _api_key_quiet(target)

    def start() -> str:
        if tstate is not None:
            log(f"starting the kept container of release {target.id} ({tstate['name']})")
            if not tstate["running"]:
                eng.rt.start(target.container_id)
            return target.container_id
        spec = dict(target.spec)
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


# ------------------------------------------------------------------ status / history / unlock

def engine_status(settings, profile: str | None, docker_host_flag: str | None, log: Log = nolog) -> dict[str, Any]:
    """What runs now on one Docker engine: one entry per profile with a current release
    (container state, /health, uptime), plus containers of releases that are not ok
    (leftovers of interrupted runs, or unknown to the ledger)."""
    from ossctl import labels as L
    from ossctl.serve import health

    eng = Engine(settings, docker_host_flag, log)
    book = eng.book(profile)
    by_profile: dict[str, list[dict[str, Any]]] = {}
    for c in eng.rt.list({L.MANAGED: "1", **({L.PROFILE: profile} if profile else {})}):
        by_profile.setdefault(c["labels"].get(L.PROFILE, ""), []).append(c)
    out = []
    for name in sorted(set(book.profiles()) | set(by_profile)):
        if profile and name != profile:
            continue
        cur = book.current(name)
        if not cur:
            continue
        containers = {c["id"]: c for c in by_profile.get(name, [])}
        st = eng.rt.find(cur.container_id) if cur.container_id in containers else None
        running = bool(st and st["running"])
        ok_ids = {r.id for r in book.history(name) if r.state is State.OK}
        leftovers = [c["name"] for c in containers.values()
                     if c["labels"].get(L.RELEASE) not in ok_ids and c["id"] != cur.container_id]
        started = st["started_ts"] if st else None
        out.append({
            "profile": name, "release": cur.id, "kind": cur.kind, "source": cur.source,
            "model": cur.profile_resolved.get("model"), "model_id": cur.model_id,
            "composite_sha256": cur.composite_sha256, "ctx": cur.ctx, "image": cur.image, "image_id": cur.image_id,
            "build": cur.build,
            "endpoint": cur.endpoint, "port": cur.port, "container_id": cur.container_id,
            "container": st["status"] if st else "missing",
            "health": (cur.endpoint, _api_key_quiet(cur)) if running else "down",
            "uptime_s": round(time.time() - started) if (running and started) else None,
            "leftovers": leftovers, "owner": cur.owner, "created": cur.created, "docker_host": eng.host,
            "vram": cur.vram,
        })
    probes = [r for r in out if isinstance(r["health"], tuple)]
    if len(probes) > 1:  # concurrently: one slow server must not delay the others' rows
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(16, len(probes))) as pool:
            for r, h in zip(probes, pool.map(lambda r: health.probe(*r["health"]), probes)):
                r["health"] = h
    for r in probes[:1] if len(probes) == 1 else ():
        r["health"] = health.probe(*r["health"])
    return {"docker_host": eng.host, "releases": out,
            "unreadable": [f"{u.profile}/{u.name}: {u.reason}" for u in book.unreadable
                           if not profile or u.profile == profile]}


def engine_history(settings, profile: str | None, docker_host_flag: str | None, log: Log = nolog) -> dict[str, Any]:
    """Every release on one engine (of ``profile`` when given), newest first; each row
    carries its ``docker_host``."""
    eng = Engine(settings, docker_host_flag, log)
    book = eng.book(profile)
    rows = []
    for name in book.profiles():
        if profile and name != profile:
            continue
        cur = book.current(name)
        rows += [{**r.summary(cur.id if cur else None), "docker_host": eng.host} for r in book.history(name)]
    rows.sort(key=lambda r: (r["created"] or "", r["id"]), reverse=True)
    return {"docker_host": eng.host, "releases": rows}


def unlock(settings, profile: str, docker_host_flag: str | None = None) -> dict[str, Any]:
    """Break the engine-side lock of ``profile`` (left by a process that died on another
    machine). Returns who held it (``holder`` is None when it was not locked)."""
    eng = Engine(settings, docker_host_flag)
    return {"docker_host": eng.host, "profile": profile, "holder": eng.ledger.unlock(profile)}
