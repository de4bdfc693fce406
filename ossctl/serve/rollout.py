"""Deploy and rollback: preflight → start → health gate → switch → record, restoring the
previous release on any failure.

Strategies: ``recreate`` stops the serving container, then starts the new one on the same
port; ``blue-green`` starts the new one on the other port of the pair (port, port + 1)
while the old one serves, and stops the old one only once the new one is healthy (the
release's endpoint says where it serves); ``auto`` picks blue-green only when a second copy
fits next to the first (host RAM for CPU profiles, the live VRAM check for GPU ones).

Crash safety: a release is written as ``pending`` before its container starts, and the
container carries its release id as a label. A deploy killed half-way leaves a pending
release and a labelled container; the next deploy / rollback (under the lock) removes
containers whose release never reached ``ok``, marks them ``interrupted``, and restarts the
current release's container if the interrupted deploy had stopped it.

Library code: reports progress through the ``log`` callback, never prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ossctl.errors import ConflictError, DeployError, NotFoundError, OssctlError, UsageError
from ossctl.serve import image_flags, llama_server, releases
from ossctl.serve.profiles import check_against_model, resolve_profile

Log = Callable[[str], None]


def _nolog(_msg: str) -> None:
    pass


# ------------------------------------------------------------------ preflight pieces

def _api_key(profile: dict[str, Any]) -> str | None:
    """Read the API key file (mounted into the container, never passed in argv/env);
    the key is registered for redaction."""
    path = profile["api_key_file"]
    if not path:
        return None
    from ossctl.redact import register_secret

    p = Path(path).expanduser()
    try:
        lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise UsageError(f"cannot read api_key_file {p}: {exc.strerror}",
                         hint="create it with one key per line and chmod 600") from None
    keys = [ln for ln in lines if ln and not ln.startswith("#")]
    if not keys:
        raise UsageError(f"api_key_file {p} holds no key")
    for k in keys:
        register_secret(k)
    return keys[0]


def _check_registered(settings, manifest, log: Log) -> dict[str, Any]:
    """On-chain hash must equal the local composite. Raises ConflictError otherwise."""
    try:
        from ossctl.registry import client
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("ossctl.registry"):
            log("on-chain check skipped: registry module not installed")
            return {"status": "skipped", "reason": "registry module not installed"}
        raise
    if not manifest.model_id:
        raise UsageError("require_registered is set but the manifest has no model id (no hub repo)")
    conn = client.connect(settings.value("registry.rpc_url", "OSSCTL_RPC_URL"),
                          settings.value("registry.address", "OSSCTL_REGISTRY_ADDRESS"),
                          settings.value("registry.chain_id", "OSSCTL_CHAIN_ID"))
    st = client.status(conn, manifest.model_id, manifest.composite_sha256, manifest.repo, manifest.first_file)
    if st["hash"] == "not-registered":
        raise ConflictError(f"model {manifest.model_id} is not registered on chain, and the profile requires it",
                            hint="register it first: `ossctl registry register MODEL`")
    if st["hash"] != "match":
        raise ConflictError(f"on-chain hash {st['onchain_sha256']} differs from the local composite {manifest.composite_sha256}",
                            hint="the local files are not the registered model; re-download or re-register")
    if st.get("active") is False:
        raise ConflictError(f"model {manifest.model_id} is deactivated on chain",
                            hint="reactivate it (`ossctl registry activate`) or deploy another model")
    log(f"on-chain hash matches ({manifest.composite_sha256[:12]}…)")
    return {"status": "match"}


def _check_vram(settings, profile: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    try:
        from ossctl.gpu.preflight import check_vram
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("ossctl.gpu"):
            return {"status": "skipped", "message": "VRAM check skipped: gpu module not installed", "plan": None}
        raise
    r = check_vram(settings, profile, model_dir)
    return {"status": r.status, "message": r.message, "plan": r.plan}


def _mem_available() -> int | None:
    """Host MemAvailable in bytes (Linux), else None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _port_free_locally(host: str, port: int) -> bool:
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
    if not allowed and rt.is_local and not _port_free_locally(profile["host"], port):
        raise ConflictError(f"port {port} on {profile['host']} is busy (another process listens on it)",
                            hint=f"free it (`ss -ltnp 'sport = :{port}'` shows who holds it), or set another `port` in the profile")


# ------------------------------------------------------------------ helpers

def _endpoint(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _gate(rt, rec: dict[str, Any], profile: dict[str, Any], first_file: str, api_key: str | None,
          timeout: float, log: Log, bench: bool = True) -> dict[str, Any]:
    """Health gate for a started container; returns timings/facts. Raises DeployError."""
    from ossctl.serve import health

    cid = rec["container_id"]
    url = rec["endpoint"]
    log(f"waiting for {url}/health (timeout {timeout:g} s)")
    ready = health.wait_ready(url, timeout, api_key, lambda: rt.find(cid), lambda: rt.logs(cid, 20))
    props = health.check_props(url, api_key, first_file, profile["ctx"], profile["parallel"])
    sm = health.smoke(url, api_key)
    out = {"ready_s": round(ready, 3), "props": props, "smoke": sm}
    log(f"healthy after {ready:.1f} s; /props ok; smoke completion ok (stream {sm['stream_chunks']} chunks)")
    if bench and "bench" in profile:
        try:
            from ossctl.loadtest.gate import run_gate
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("ossctl.loadtest"):
                raise DeployError("the profile has a [bench] table but the bench module is not installed") from None
            raise
        log("running the profile's bench gate")
        g = run_gate(url, api_key, profile["bench"])
        if not g.ok:
            raise DeployError(g.summary if g.summary.startswith("bench gate") else f"bench gate failed: {g.summary}")
        out["bench"] = {"summary": g.summary}
        log(g.summary if g.summary.startswith("bench gate") else f"bench gate passed: {g.summary}")
    return out


def _reconcile(rt, settings, host: str, doc: dict[str, Any], profile: str, log: Log,
               timeout: float = 900) -> list[str]:
    """Bring state back in line with the container labels after a killed deploy/rollback.
    Returns what was done (one line each). Saves ``doc`` when it changed."""
    actions: list[str] = []
    ok_ids = {r["id"] for r in releases.profile_doc(doc, profile)["history"] if r.get("state") == "ok"}
    cur = releases.current(doc, profile)
    containers = rt.list({"ossctl.managed": "1", "ossctl.profile": profile})
    in_use = {cur["container_id"]} if cur else set()
    for c in containers:
        rid = c["labels"].get("ossctl.release", "")
        if rid in ok_ids or c["id"] in in_use:
            continue
        rt.remove(c["id"])
        rec = releases.find(doc, profile, rid) or {"id": rid, "profile": profile, "kind": "deploy",
                                                     "created": releases.now_iso(), "container_id": c["id"]}
        rec["state"] = "interrupted"
        rec["error"] = "the deploy was interrupted; its container was removed on the next run"
        releases.upsert(doc, profile, rec)
        actions.append(f"removed container {c['name']} left by interrupted release {rid}")
    for rec in releases.profile_doc(doc, profile)["history"]:
        if rec.get("state") == "pending":
            rec["state"] = "interrupted"
            rec["error"] = "the deploy was interrupted before its container started"
            actions.append(f"marked release {rec['id']} interrupted")
    if actions and cur:
        st = rt.find(cur["container_id"])
        if st is not None and not st["running"]:
            log(f"restarting release {cur['id']} (stopped by the interrupted deploy)")
            rt.start(cur["container_id"])
            from ossctl.serve import health

            health.wait_ready(cur["endpoint"], timeout, _api_key_quiet(cur), lambda: rt.find(cur["container_id"]),
                              lambda: rt.logs(cur["container_id"]))
            actions.append(f"restarted release {cur['id']}")
    if actions:
        releases.save(settings, host, doc)
        for a in actions:
            log("reconciled: " + a)
    return actions


def _api_key_quiet(rec: dict[str, Any]) -> str | None:
    try:
        return _api_key({"api_key_file": rec.get("api_key_file") or ""})
    except OssctlError:
        return None


def _connect(settings, docker_host_flag: str | None):
    from ossctl.serve.docker_runtime import DockerRuntime, docker_host

    host = docker_host(settings, docker_host_flag)
    return DockerRuntime(host, dict(settings.env)), host


def _retain(rt, doc: dict[str, Any], profile: str, keep: int, log: Log) -> None:
    """Keep the containers of the newest ``keep`` ok releases (the current one included);
    remove older ones (they can still be recreated from the recorded spec)."""
    hist = releases.profile_doc(doc, profile)["history"]
    kept: list[str] = []
    for rec in reversed(hist):
        if rec.get("state") != "ok" or rec.get("container_removed"):
            continue
        cid = rec.get("container_id")
        if cid in kept:
            continue
        if len(kept) < keep:
            kept.append(cid)
            continue
        rt.remove(cid)
        for r in hist:
            if r.get("container_id") == cid:
                r["container_removed"] = True
        log(f"removed the container of old release {rec['id']} (keep_releases={keep})")


def _restore(rt, prev: dict[str, Any] | None, was_running: bool, log: Log, timeout: float) -> str:
    """After a failed switch: make sure the previous release serves again."""
    if prev is None:
        return "no previous release to restore"
    if not was_running:
        return f"previous release {prev['id']} was not running before; left as it was"
    st = rt.find(prev["container_id"])
    if st is None:
        return f"previous release {prev['id']}'s container is gone; run `ossctl rollback`"
    from ossctl.serve import health

    try:
        if not st["running"]:
            log(f"restarting previous release {prev['id']}")
            rt.start(prev["container_id"])
        health.wait_ready(prev["endpoint"], timeout, _api_key_quiet(prev), lambda: rt.find(prev["container_id"]),
                          lambda: rt.logs(prev["container_id"]))
    except OssctlError as exc:
        return f"previous release {prev['id']} did not come back: {exc.message}"
    return f"previous release {prev['id']} is serving again at {prev['endpoint']}"


# ------------------------------------------------------------------ deploy

def deploy(settings, profile_name: str, *, dry_run: bool = False, timeout: float | None = None,
           force: bool = False, strategy: str | None = None, docker_host_flag: str | None = None,
           log: Log = _nolog) -> dict[str, Any]:
    """Deploy ``profile_name`` (see the module docstring). Returns the release record (or,
    with ``dry_run``, the spec and the ``docker run`` line without touching anything).

    Raises :class:`UsageError` / :class:`NotFoundError` / :class:`IntegrityError` /
    :class:`ConflictError` / :class:`RemoteError` from preflight (nothing changed), and
    :class:`DeployError` (exit 7) when the new release failed and the previous one was
    brought back."""
    from ossctl.artifacts.manifest import locate_model_dir, read_manifest, require_verified

    profile = resolve_profile(settings, profile_name)
    if strategy is not None and strategy not in ("auto", "recreate", "blue-green"):
        raise UsageError(f"unknown strategy {strategy!r}", hint="use auto, recreate or blue-green")
    strategy = strategy or profile["strategy"]
    timeout = float(timeout if timeout is not None else profile["health_timeout"])
    if timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    model_dir = locate_model_dir(settings, profile["model"]).resolve()
    if dry_run:
        manifest = read_manifest(model_dir)
    else:
        log(f"verifying {model_dir} (fast path)")
        manifest = require_verified(model_dir)
    check_against_model(profile, model_dir, manifest.first_file)
    api_key = _api_key(profile)

    if dry_run:
        from ossctl.serve.docker_runtime import docker_host

        host = docker_host(settings, docker_host_flag)
        doc = releases.load(settings, host)
        cur = releases.current(doc, profile["name"])
        port = profile["port"]
        if strategy == "blue-green" and cur and cur.get("port") == port:
            port += 1
        rid = releases.next_id(doc, profile["name"])
        help_text, source = image_flags.dry_run_help(settings, profile["image"], docker_host_flag)
        spec = llama_server.build_spec(profile, manifest, model_dir, rid, port, help_text)
        return {"dry_run": True, "docker_host": host, "release": rid, "profile": profile["name"],
                "strategy": strategy, "endpoint": _endpoint(port), "spec": spec,
                "docker_run": llama_server.docker_run_line(spec),
                "flags": image_flags.explain(profile, help_text, source)}

    rt, host = _connect(settings, docker_host_flag)
    with releases.deploy_lock(settings, host):
        doc = releases.load(settings, host)
        _reconcile(rt, settings, host, doc, profile["name"], log, timeout)
        preflight: dict[str, Any] = {}
        if profile["require_registered"]:
            preflight["registry"] = _check_registered(settings, manifest, log)
        image = rt.image_info(profile["image"])
        help_text = image_flags.read_help(rt, profile["image"])
        cur = releases.current(doc, profile["name"])
        cur_state = rt.find(cur["container_id"]) if cur else None
        cur_running = bool(cur_state and cur_state["running"])

        vram = _check_vram(settings, profile, model_dir) if profile["gpus"] != "none" else \
            {"status": "skipped", "message": "VRAM check skipped: the profile uses no GPU", "plan": None}
        preflight["vram"] = {"status": vram["status"], "message": vram["message"]}
        log(vram["message"] or f"VRAM check: {vram['status']}")
        if strategy == "auto":
            if not cur_running:
                strategy = "recreate"
            elif profile["gpus"] == "none":
                avail = _mem_available()
                strategy = "blue-green" if avail and 2 * manifest.total_size < 0.8 * avail else "recreate"
            else:
                # the check ran with the old release loaded: "pass" means a second copy fits
                strategy = "blue-green" if vram["status"] == "pass" else "recreate"
            log(f"strategy auto → {strategy}")
        if vram["status"] == "fail" and not (cur_running and strategy == "recreate") and not force:
            raise ConflictError(f"the model does not fit in GPU memory: {vram['message']}",
                                hint="lower ctx / n_gpu_layers, use another profile, or pass --force")

        port = profile["port"]
        if strategy == "blue-green" and cur_running and cur.get("port") == port:
            port = port + 1
            if port > 65535:
                raise UsageError("blue-green needs port + 1 free; the profile port is 65535")
        allowed = {cur_state["name"]} if (cur_running and strategy == "recreate" and cur.get("port") == port) else set()
        _check_port(rt, profile, port, allowed)

        seen = [c["labels"].get("ossctl.release", "") for c in rt.list({"ossctl.managed": "1", "ossctl.profile": profile["name"]})]
        rid = releases.next_id(doc, profile["name"], seen)
        spec = llama_server.build_spec(profile, manifest, model_dir, rid, port, help_text)
        rec: dict[str, Any] = {
            "id": rid, "profile": profile["name"], "kind": "deploy", "state": "pending", "source": rid,
            "created": releases.now_iso(), "docker_host": host, "endpoint": _endpoint(port),
            "host": profile["host"], "port": port, "container_id": None, "container_name": spec["name"],
            "image": profile["image"], "image_id": image["id"], "image_digests": image["digests"],
            "model_dir": str(model_dir), "model_id": manifest.model_id, "composite_sha256": manifest.composite_sha256,
            "repo": manifest.repo, "revision": manifest.revision, "ctx": profile["ctx"],
            "api_key_file": profile["api_key_file"] or None, "strategy": strategy, "previous": cur["id"] if cur else None,
            "rolled_back": False, "error": None, "profile_resolved": profile, "spec": spec, "preflight": preflight,
        }
        releases.upsert(doc, profile["name"], rec)
        releases.save(settings, host, doc)

        t0 = time.monotonic()
        stopped_prev = False
        try:
            if strategy == "recreate" and cur_running:
                log(f"stopping release {cur['id']} ({cur_state['name']}); it is kept for rollback")
                rt.stop(cur["container_id"])
                stopped_prev = True
                if vram["status"] == "fail" and not force:
                    vram2 = _check_vram(settings, profile, model_dir)
                    if vram2["status"] == "fail":
                        raise DeployError(f"the model does not fit in GPU memory: {vram2['message']}")
            log(f"starting {spec['name']} from {profile['image']} on {rec['endpoint']}")
            rec["container_id"] = rt.run(spec)
            gate = _gate(rt, rec, profile, manifest.first_file, api_key, timeout, log)
            rt.set_restart(rec["container_id"], spec["restart_policy"])
        except BaseException as exc:
            reason = exc.message if isinstance(exc, OssctlError) else (
                "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}")
            if rec["container_id"]:
                rt.remove(rec["container_id"])
            rec["state"] = "failed"
            rec["error"] = reason
            releases.save(settings, host, doc)
            if stopped_prev:
                restored = _restore(rt, cur, cur_running, log, timeout)
            elif cur_running:
                restored = f"release {cur['id']} is still serving at {cur['endpoint']}"
            else:
                restored = "nothing was serving before"
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise DeployError(f"deploy of profile {profile['name']!r} (release {rid}) failed: {reason}",
                              hint=restored) from None
        if strategy == "blue-green" and cur_running:
            log(f"switching: stopping release {cur['id']} ({cur_state['name']}); it is kept for rollback")
            rt.stop(cur["container_id"])
        rec.update(state="ok", ready_s=gate["ready_s"], deploy_s=round(time.monotonic() - t0, 3),
                   created=releases.now_iso(), props=gate["props"])
        if "bench" in gate:
            rec["bench"] = gate["bench"]
        releases.profile_doc(doc, profile["name"])["current"] = rid
        _retain(rt, doc, profile["name"], profile["keep_releases"], log)
        releases.save(settings, host, doc)
        return public_release(rec)


def public_release(rec: dict[str, Any]) -> dict[str, Any]:
    """The ``deploy`` / ``rollback`` ``--json`` shape."""
    return {
        "id": rec["id"], "profile": rec["profile"], "kind": rec.get("kind", "deploy"), "state": rec["state"],
        "source": rec.get("source"), "previous": rec.get("previous"), "strategy": rec.get("strategy"),
        "docker_host": rec.get("docker_host"), "endpoint": rec["endpoint"], "container_id": rec["container_id"],
        "container_name": rec.get("container_name"), "image": rec["image"], "image_id": rec.get("image_id"),
        "model_id": rec.get("model_id"), "composite_sha256": rec.get("composite_sha256"), "ctx": rec.get("ctx"),
        "api_key_file": rec.get("api_key_file"), "created": rec["created"], "ready_s": rec.get("ready_s"),
    }


# ------------------------------------------------------------------ rollback

def _pick_profile(doc: dict[str, Any], profile: str | None) -> str:
    if profile:
        return profile
    curs = [r for r in (releases.current(doc, n) for n in doc["profiles"]) if r]
    if not curs:
        names = [n for n, pd in doc["profiles"].items() if pd["history"]]
        if len(names) == 1:
            return names[0]
        raise NotFoundError("nothing is deployed on this Docker host", hint="deploy first: `ossctl deploy --profile NAME`")
    return max(curs, key=lambda r: r.get("created", ""))["profile"]


def _previous(doc: dict[str, Any], profile: str, cur: dict[str, Any] | None) -> dict[str, Any] | None:
    """The newest ok release before the current one that runs something else and was not
    itself rolled back from (so repeated rollbacks walk further back)."""
    hist = releases.profile_doc(doc, profile)["history"]
    cur_src = cur.get("source") if cur else None
    for rec in reversed(hist):
        if cur and rec["id"] == cur["id"]:
            continue
        if rec.get("state") != "ok" or rec.get("rolled_back") or rec.get("source") == cur_src:
            continue
        return rec
    return None


def rollback(settings, profile: str | None = None, to: str | None = None, *, timeout: float | None = None,
             docker_host_flag: str | None = None, log: Log = _nolog) -> dict[str, Any]:
    """Go back to the previous healthy release (or release ``to``): restart its kept
    container, or recreate it from the recorded spec; health-gated; recorded as a new
    release of kind "rollback". On failure the release that was serving is restored and
    :class:`DeployError` is raised."""
    rt, host = _connect(settings, docker_host_flag)
    with releases.deploy_lock(settings, host):
        doc = releases.load(settings, host)
        name = _pick_profile(doc, profile)
        _reconcile(rt, settings, host, doc, name, log)
        cur = releases.current(doc, name)
        if to:
            target = releases.find(doc, name, to)
            if target is None:
                raise NotFoundError(f"no release {to!r} for profile {name!r}", hint="see `ossctl releases`")
            if target.get("state") != "ok":
                raise UsageError(f"release {to} never became healthy ({target.get('state')}); cannot roll back to it",
                                 hint="see `ossctl releases`")
            if cur and target.get("source") == cur.get("source"):
                raise UsageError(f"release {to} is what serves now (as {cur['id']})")
        else:
            target = _previous(doc, name, cur)
            if target is None:
                raise NotFoundError(f"no previous release of profile {name!r} to roll back to",
                                    hint="see `ossctl releases`")
        tprofile = target["profile_resolved"]
        timeout = float(timeout if timeout is not None else tprofile["health_timeout"])
        cur_state = rt.find(cur["container_id"]) if cur else None
        cur_running = bool(cur_state and cur_state["running"])
        rid = releases.next_id(doc, name, [c["labels"].get("ossctl.release", "")
                                           for c in rt.list({"ossctl.managed": "1", "ossctl.profile": name})])
        port = target["port"]
        same_port = cur_running and cur.get("port") == port
        tstate = rt.find(target["container_id"]) if target.get("container_id") else None
        if tstate is None:
            rt.image_info(target["image"])
        allowed = {cur_state["name"]} if same_port else set()
        if tstate is None or not tstate["running"]:
            users = [n for n in rt.host_port_users(port) if n not in allowed]
            if users:
                raise ConflictError(f"port {port} is busy: published by container {users[0]}",
                                    hint="stop that container first")
        rec = {**{k: target.get(k) for k in ("profile", "source", "docker_host", "endpoint", "host", "port", "image",
                                              "image_id", "image_digests", "model_dir", "model_id", "composite_sha256",
                                              "repo", "revision", "ctx", "api_key_file", "profile_resolved", "spec")},
               "id": rid, "kind": "rollback", "state": "pending", "created": releases.now_iso(), "rollback_to": target["id"],
               "previous": cur["id"] if cur else None, "strategy": "recreate" if same_port else "blue-green",
               "rolled_back": False, "error": None, "container_id": target.get("container_id"),
               "container_name": target.get("container_name")}
        releases.upsert(doc, name, rec)
        releases.save(settings, host, doc)
        api_key = _api_key_quiet(target)
        first_file = Path(target["spec"]["command"][1]).name
        stopped_prev = False
        started: str | None = None
        try:
            if same_port:
                log(f"stopping release {cur['id']} ({cur_state['name']})")
                rt.stop(cur["container_id"])
                stopped_prev = True
            if tstate is not None:
                log(f"starting the kept container of release {target['id']} ({tstate['name']})")
                if not tstate["running"]:
                    rt.start(target["container_id"])
                    started = target["container_id"]
            else:
                spec = dict(target["spec"])
                spec["name"] = llama_server.container_name(name, rid)
                spec["labels"] = {**spec["labels"], "ossctl.release": rid}
                log(f"recreating release {target['id']} as {spec['name']} from its recorded spec")
                rec["container_id"] = started = rt.run(spec)
                rec["container_name"] = spec["name"]
                rec["container_removed"] = False
            gate = _gate(rt, rec, tprofile, first_file, api_key, timeout, log, bench=False)
            if tstate is None:
                rt.set_restart(rec["container_id"], rec["spec"]["restart_policy"])
        except BaseException as exc:
            reason = exc.message if isinstance(exc, OssctlError) else (
                "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}")
            if started:
                if tstate is None:
                    rt.remove(started)
                else:
                    rt.stop(started)
            rec["state"] = "failed"
            rec["error"] = reason
            releases.save(settings, host, doc)
            restored = _restore(rt, cur, cur_running, log, timeout) if cur_running else "nothing was serving before"
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise DeployError(f"rollback of profile {name!r} to release {target['id']} failed: {reason}",
                              hint=restored) from None
        if cur_running and not same_port:
            log(f"stopping release {cur['id']} ({cur_state['name']})")
            rt.stop(cur["container_id"])
        if cur:
            cur["rolled_back"] = True
        rec.update(state="ok", ready_s=gate["ready_s"], created=releases.now_iso())
        releases.profile_doc(doc, name)["current"] = rid
        releases.save(settings, host, doc)
        return public_release(rec)


# ------------------------------------------------------------------ status / history

def status(settings, profile: str | None = None, docker_host_flag: str | None = None) -> dict[str, Any]:
    """What runs now on the Docker host: one entry per profile with a current release
    (container state, /health, uptime), plus leftovers of interrupted deploys."""
    from ossctl.serve import health

    rt, host = _connect(settings, docker_host_flag)
    doc = releases.load(settings, host)
    out = []
    for name in sorted(doc["profiles"]):
        if profile and name != profile:
            continue
        cur = releases.current(doc, name)
        if not cur:
            continue
        st = rt.find(cur["container_id"]) if cur.get("container_id") else None
        running = bool(st and st["running"])
        h = health.probe(cur["endpoint"], _api_key_quiet(cur)) if running else "down"
        ok_ids = {r["id"] for r in releases.profile_doc(doc, name)["history"] if r.get("state") == "ok"}
        leftovers = [c["name"] for c in rt.list({"ossctl.managed": "1", "ossctl.profile": name})
                     if c["labels"].get("ossctl.release") not in ok_ids and c["id"] != cur["container_id"]]
        started = st["started_ts"] if st else None
        out.append({
            "profile": name, "release": cur["id"], "kind": cur.get("kind"), "source": cur.get("source"),
            "model": cur["profile_resolved"]["model"], "model_id": cur.get("model_id"),
            "composite_sha256": cur.get("composite_sha256"), "ctx": cur.get("ctx"), "image": cur.get("image"),
            "endpoint": cur["endpoint"], "port": cur.get("port"), "container_id": cur.get("container_id"),
            "container": st["status"] if st else "missing", "health": h,
            "uptime_s": round(time.time() - started) if (running and started) else None,
            "leftovers": leftovers,
        })
    return {"docker_host": host, "releases": out}


def history(settings, profile: str | None = None, docker_host_flag: str | None = None) -> dict[str, Any]:
    from ossctl.serve.docker_runtime import docker_host

    host = docker_host(settings, docker_host_flag)
    return {"docker_host": host, "releases": releases.history(settings, host, profile)}

