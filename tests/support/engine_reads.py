"""The records DockerRuntime's reads must give, as the docker SDK reads them: the check
that the SDK-free read path (ossctl.serve.engine_api) answers the same on every transport."""

from __future__ import annotations

import uuid

from ossctl.serve.docker_runtime import DockerRuntime


def sdk_record(client, name: str) -> dict:
    """What DockerRuntime.find returned when it read through the SDK's high-level API."""
    c = client.containers.get(name)
    st = c.attrs["State"]
    return {"id": c.id, "name": c.name, "status": c.status, "running": bool(st["Running"]) and not st["Restarting"],
            "restarting": bool(st["Restarting"]), "restart_count": int(c.attrs.get("RestartCount") or 0),
            "exit_code": st["ExitCode"], "oom_killed": bool(st["OOMKilled"]), "error": st["Error"] or "",
            "started_at": st["StartedAt"], "labels": c.labels, "image": c.attrs["Config"]["Image"],
            "image_id": c.attrs["Image"]}


def same_reads(rt: DockerRuntime, client, names: list[str], labels: dict[str, str], image: str) -> None:
    """Every read of ``rt`` against the SDK's answer on ``client`` (the same engine)."""
    for name in names:
        got = rt.find(name)
        assert {k: v for k, v in got.items() if k != "started_ts"} == sdk_record(client, name)
        assert (got["started_ts"] is None) == got["started_at"].startswith("0001-")
    assert rt.find(f"none-{uuid.uuid4().hex[:8]}") is None
    flt = [f"{k}={v}" for k, v in labels.items()]
    rows = client.api.containers(all=True, filters={"label": flt})
    assert sorted(rt.list(labels), key=lambda r: r["name"]) == sorted(
        ({"id": r["Id"], "name": r["Names"][0].lstrip("/"), "status": r["State"], "running": r["State"] == "running",
          "labels": r["Labels"], "image": r["Image"]} for r in rows), key=lambda r: r["name"])
    assert len(rows) == len(names)
    img = client.images.get(image)
    assert rt.image_info(image) == {"id": img.id, "digests": img.attrs.get("RepoDigests") or []}
    ver, info = client.version(), client.info()
    got = rt.engine_info()
    assert (got["version"], got["api_version"], got["id"], got["root_dir"]) == (
        ver["Version"], ver["ApiVersion"], info["ID"], info["DockerRootDir"])
    assert rt.host_port_users(1) == []
