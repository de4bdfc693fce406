"""``ossctl deploy | rollback | status | releases``: health-gated llama-server containers
from profiles, with a way back. Docker is reached like the docker CLI does (DOCKER_HOST,
else the default socket)."""

from __future__ import annotations

import json
from typing import Optional

import typer

from ossctl.cli import output
from ossctl.cli.options import DockerHost, Profile, ProfileFilter, ProfileOpt

# The library modules are imported inside each command: `ossctl --help` imports this
# module, and they cost it about 30 ms (python -X importtime -m ossctl --help).


def _log(st: output.State):
    return output.info if not st.json or st.verbose else (lambda _m: None)


def deploy(
    ctx: typer.Context,
    profile: Profile,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the container spec and the equivalent `docker run` line; change nothing."),
    timeout: Optional[float] = typer.Option(None, "--timeout", metavar="S", help="Health-gate timeout in seconds (default: the profile's health_timeout)."),
    force: bool = typer.Option(False, "--force", help="Deploy even when the VRAM check says it does not fit."),
    strategy: Optional[str] = typer.Option(None, "--strategy", metavar="auto|recreate|blue-green", help="Override the profile's strategy."),
    docker_host: DockerHost = None,
    keep_going: bool = typer.Option(False, "--keep-going", help="Fleet: when a host fails, keep the hosts already updated on the new release."),
    image: Optional[str] = typer.Option(None, "--image", metavar="IMAGE", help="Deploy this image instead of the profile's (see also `ossctl upgrade`)."),
    allow_image_change: bool = typer.Option(False, "--allow-image-change", help="A profile with pin_image = true may run another build than the serving release."),
) -> None:
    """Deploy a profile: preflight, start, health gate, switch, record. On failure the
    previous release serves again and the exit code is 7. A profile with [[hosts]] rolls
    host by host behind its front door."""
    st = output.state(ctx)
    from ossctl.fleet.account import FleetDeploy
    from ossctl.ops import service
    from ossctl.serve.results import DryRun

    out = service.deploy(st.settings, profile, dry_run=dry_run, timeout=timeout, force=force, strategy=strategy,
                         docker_host_flag=docker_host, keep_going=keep_going, log=_log(st), image=image,
                         allow_image_change=allow_image_change)
    res = _data(out)
    if isinstance(out, DryRun):
        output.emit(st, res, lambda: json.dumps(res["spec"], indent=2) + "\n\n" + res["docker_run"]
                    + "\n\n" + _flags_text(res["flags"]))
        return
    if isinstance(out, FleetDeploy):
        output.emit(st, res, lambda: _fleet_text(res))
        return
    output.emit(st, res, lambda: f"release {res['id']} of profile {res['profile']} is healthy at {res['endpoint']} "
                                 f"(container {res['container_name']}, ready in {res['ready_s']:.1f} s)")


def _data(res) -> dict:
    """The ``--json`` shape of a typed result: a release's public fields, else its dict."""
    from ossctl.serve.releases import Release

    return res.public() if isinstance(res, Release) else res.to_dict()


def _fleet_text(res: dict) -> str:
    return (f"fleet {res['profile']} behind {res['frontdoor']}\n"
            + output.table(["HOST", "STATE", "RELEASE", "UPSTREAM"],
                           [[h["docker_host"], h["state"], h.get("release") or "-", h["upstream"]] for h in res["hosts"]]))


def _flags_text(flags: dict) -> str:
    """The dry run's "flags used and why": one row per profile intent."""
    rows = [[c["intent"], " ".join(c["args"]) or "(none)", c["why"]] for c in flags["choices"]]
    return f"flags spelled from {flags['source']}\n" + output.table(["INTENT", "ARGS", "WHY"], rows)


def upgrade(
    ctx: typer.Context,
    profile: Profile,
    image: str = typer.Option(..., "--image", metavar="IMAGE", help="The new llama.cpp image (tag or tag@digest) to try."),
    timeout: Optional[float] = typer.Option(None, "--timeout", metavar="S", help="Health-gate timeout in seconds (default: the profile's health_timeout)."),
    force: bool = typer.Option(False, "--force", help="Deploy even when the VRAM check says it does not fit."),
    strategy: Optional[str] = typer.Option(None, "--strategy", metavar="auto|recreate|blue-green", help="Override the profile's strategy."),
    docker_host: DockerHost = None,
    keep_going: bool = typer.Option(False, "--keep-going", help="Fleet: when a host fails, keep the hosts already updated on the new release."),
) -> None:
    """Try a new llama.cpp image on a profile: plan, canary (a fleet's `canary` hosts
    first), gate (health, bench, `bench.regress`, GPU memory against the plan), roll or
    roll back; then old vs new per host (build, digest, tok/s, p95, VRAM per GPU). A
    refused upgrade exits 7 with the previous release serving."""
    st = output.state(ctx)
    from ossctl.ops import upgrade as upgrade_

    res = upgrade_.upgrade(st.settings, profile, image, timeout=timeout, force=force, strategy=strategy,
                           docker_host_flag=docker_host, keep_going=keep_going, log=_log(st)).to_dict()

    def cell(side: dict | None, key: str) -> str:
        if side is None:
            return "-"
        v = side[key]
        if key == "build":
            return f"b{v}" if v else "-"
        if key == "digest":
            return (v or "-").removeprefix("sha256:")[:12]
        if key == "output_tps":
            return "-" if v is None else f"{v:.1f}"
        if key == "latency_p95_s":
            return "-" if v is None else f"{v:.3f}s"
        if key == "vram":
            return " ".join(f"{g}:{b // 2**20}M" for g, b in v.items()) or "-"
        return str(v)

    def human() -> str:
        rows = []
        for h in res["hosts"]:
            for what, label in (("release", "RELEASE"), ("build", "BUILD"), ("digest", "DIGEST"),
                                ("output_tps", "TOK/S"), ("latency_p95_s", "P95"), ("vram", "VRAM")):
                rows.append([h["docker_host"], label, cell(h["old"], what), cell(h["new"], what)])
        return f"profile {res['profile']} upgraded to {res['image']}\n" + output.table(["HOST", "", "OLD", "NEW"], rows)

    output.emit(st, res, human)


def rollback(
    ctx: typer.Context,
    to: Optional[str] = typer.Option(None, "--to", metavar="RELEASE", help="Release id to go back to (default: the previous healthy one)."),
    profile: ProfileOpt = None,
    timeout: Optional[float] = typer.Option(None, "--timeout", metavar="S", help="Health-gate timeout in seconds."),
    docker_host: DockerHost = None,
) -> None:
    """Go back to the previous healthy release (or --to RELEASE), health-gated; recorded
    as a new release. Without --profile: the profile deployed last."""
    st = output.state(ctx)
    from ossctl.fleet.account import FleetRollback
    from ossctl.ops import service

    out = service.rollback(st.settings, profile, to, timeout=timeout, docker_host_flag=docker_host, log=_log(st))
    res = _data(out)
    if isinstance(out, FleetRollback):
        output.emit(st, res, lambda: _fleet_text(res))
        return
    output.emit(st, res, lambda: f"rolled back profile {res['profile']} to release {res['source']} "
                                 f"(recorded as {res['id']}), healthy at {res['endpoint']}")


def _vram(rec: dict | None) -> str:
    """Measured GPU memory of a release per GPU ("0:8484M 1:8204M"), "-" where the host's
    NVML was not read (a remote engine, no GPU)."""
    measured = (rec or {}).get("measured") or {}
    return " ".join(f"{g}:{int(b) // 2**20}M" for g, b in sorted(measured.items(), key=lambda kv: int(kv[0]))) or "-"


def _digest(d: str | None) -> str:
    """The build's digest as the tables show it: ``sha256:`` dropped, 12 hex digits."""
    return (d or "-").removeprefix("sha256:")[:12]


def _uptime(s: int | None) -> str:
    if s is None:
        return "-"
    h, rem = divmod(int(s), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"


def _warn_hosts(res: dict) -> None:
    for h in res.get("hosts", []):
        if not h["ok"]:
            output.info(f"warning: {h['docker_host']}: {h['error']}")


def status(
    ctx: typer.Context,
    profile: ProfileFilter = None,
    docker_host: DockerHost = None,
) -> None:
    """What runs now: release, profile, model, ctx, health, uptime, port."""
    st = output.state(ctx)
    from ossctl.fleet.account import FleetView
    from ossctl.ops import service

    out = service.status(st.settings, profile, docker_host_flag=docker_host, log=output.info)
    res, fleet = out.to_dict(), isinstance(out, FleetView)
    for r in res["releases"]:
        if r["leftovers"]:
            output.info(f"warning: {r['profile']}: containers left by an interrupted deploy: {', '.join(r['leftovers'])} "
                        "(the next deploy or rollback reconciles them)")

    def human() -> str:
        _warn_hosts(res)
        if not res["releases"]:
            return f"nothing deployed on {res['docker_host'] or 'the fleet'}"
        return output.table(
            (["HOST"] if fleet else []) + ["PROFILE", "RELEASE", "MODEL", "CTX", "HEALTH", "CONTAINER", "UPTIME", "ENDPOINT",
                                           "BUILD", "IMAGE_ID", "DIGEST", "VRAM"],
            [([r["docker_host"]] if fleet else []) + [
                r["profile"], r["release"] + ("" if r["source"] == r["release"] else f" (= {r['source']})"), r["model"],
                r["ctx"], r["health"], r["container"], _uptime(r["uptime_s"]), r["endpoint"],
                f"b{r['build']}" if r["build"] else "-", (r["image_id"] or "-").removeprefix("sha256:")[:12],
                _digest(r.get("digest")), _vram(r["vram"])] for r in res["releases"]])

    output.emit(st, res, human)


def releases_cmd(
    ctx: typer.Context,
    profile: ProfileFilter = None,
    docker_host: DockerHost = None,
) -> None:
    """Release history on the Docker host, newest first (* = serving now)."""
    st = output.state(ctx)
    from ossctl.fleet.account import FleetView
    from ossctl.ops import service

    out = service.history(st.settings, profile, docker_host_flag=docker_host, log=output.info)
    res, fleet = out.to_dict(), isinstance(out, FleetView)

    def human() -> str:
        _warn_hosts(res)
        if not res["releases"]:
            return f"no releases on {res['docker_host'] or 'the fleet'}"
        return output.table(
            ["", *(["HOST"] if fleet else []), "ID", "PROFILE", "KIND", "STATE", "CREATED", "MODEL_ID", "IMAGE", "BUILD",
             "DIGEST", "NOTE"],
            [["*" if r["current"] else "", *([r["docker_host"]] if fleet else []), r["id"], r["profile"], r["kind"],
              r["state"], r["created"], (r["model_id"] or "")[:12], r["image"], f"b{r['build']}" if r["build"] else "-",
              _digest(r.get("digest")),
              (f"= {r['source']}" if r["source"] != r["id"] else "") + (" rolled back" if r["rolled_back"] else "")
              + (f" {r['error'].splitlines()[0][:60]}" if r["error"] else "")] for r in res["releases"]])

    output.emit(st, res, human)


def unlock(
    ctx: typer.Context,
    profile: Profile,
    docker_host: DockerHost = None,
    force: bool = typer.Option(False, "--force", help="Break it even when its holder still runs on this machine."),
) -> None:
    """Break a profile's deploy lock on the Docker engine, left by an ossctl that died on
    another machine (one that died on this machine is detected and broken by itself)."""
    st = output.state(ctx)
    from ossctl.serve import releases, status

    res = status.unlock(st.settings, profile, docker_host_flag=docker_host, force=force)
    output.emit(st, res, lambda: f"profile {profile} was not locked on {res['docker_host']}" if res["holder"] is None
                else f"broke the lock of profile {profile} on {res['docker_host']}, held by "
                     f"{releases.describe_holder(res['holder'])}")
