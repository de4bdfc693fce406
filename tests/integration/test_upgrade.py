"""Issue 23 on one real engine with the CPU image: a build that serves worse is refused
by the performance gate (both figures, the old release serving); a tag moved to another
image between two deploys is named before anything stops, and refused under pin_image;
`ossctl upgrade` says old vs new."""

from __future__ import annotations

import pytest

from tests.plugins.docker_engine import answer
from tests.support.cli import run_cli
from tests.support.slow_image import slow_image_into

pytestmark = pytest.mark.docker

BENCH = {"users": [1], "requests": 3, "max_tokens": 16, "regress": "50%"}


def cli(env, *args):
    return run_cli(*args, env=env.env)


@pytest.fixture(scope="session")
def slow_image(docker_client, llama_image):
    return slow_image_into(docker_client)


def test_slow_build_refused_moved_tag_named_pin_refuses(serve_env, slow_image, llama_image):
    env = serve_env
    client = env.client
    moving = f"ossctl-test/llama-server:moving-{env.profile}"
    client.images.get(llama_image).tag(moving)
    try:
        env.write_profile(image=moving, pin_image=True, bench=BENCH)
        r = cli(env, "deploy", "-p", env.profile)
        assert r.code == 0, r.err
        assert "this release's bench is the baseline" in r.err, r.err
        regular_id = client.images.get(llama_image).id
        first = cli(env, "--json", "status", "-p", env.profile).json()["releases"][0]
        assert first["digest"] == regular_id  # a locally imported image has no repo digest: its id
        for cmd in ("status", "releases"):
            table = cli(env, cmd, "-p", env.profile).out.splitlines()
            assert "DIGEST" in table[0].split() and regular_id.removeprefix("sha256:")[:12] in table[1], table

        # the slowed build through `upgrade`: the gate refuses it with both figures, r0001 serves
        r = cli(env, "upgrade", "-p", env.profile, "--image", slow_image)
        assert r.code == 7, r.err
        assert "performance gate: 1 user: output " in r.err and " tok/s vs " in r.err and "tok/s before (-" in r.err, r.err
        assert "baseline release r0001" in r.err and "previous release r0001 is serving again" in r.err, r.err
        slow_id = client.images.get(slow_image).id
        assert f"image {slow_image} (sha256:{slow_id.removeprefix('sha256:')[:12]}…) replaces {moving}" in r.err, r.err
        cur = cli(env, "--json", "status", "-p", env.profile).json()["releases"][0]
        assert (cur["release"], cur["health"], cur["digest"]) == ("r0001", "ok", regular_id)
        assert answer(first["endpoint"])["choices"]

        # the tag moves to the slowed image: named before anything stops; pin_image refuses (exit 6)
        client.images.get(slow_image).tag(moving)
        r = cli(env, "deploy", "-p", env.profile)
        assert r.code == 6, r.err
        assert (f"{env.profile}: image {moving} is now sha256:{slow_id.removeprefix('sha256:')[:12]}… "
                f"(was sha256:{regular_id.removeprefix('sha256:')[:12]}…); the profile sets pin_image = true") in r.err
        assert "--allow-image-change" in r.err
        rows = cli(env, "--json", "releases", "-p", env.profile).json()["releases"]
        assert [x["id"] for x in rows] == ["r0002", "r0001"]  # nothing recorded, nothing started
        assert len(env.containers()) == 1 and answer(first["endpoint"])["choices"]

        # allowed, without the performance gate: the moved tag serves, old vs new said by upgrade
        env.write_profile(image=moving, pin_image=True, bench={k: v for k, v in BENCH.items() if k != "regress"})
        r = cli(env, "--json", "upgrade", "-p", env.profile, "--image", moving)
        assert r.code == 0, r.err
        up = r.json()
        assert list(up) == ["profile", "image", "hosts"] and len(up["hosts"]) == 1
        h = up["hosts"][0]
        assert (h["old"]["release"], h["old"]["digest"], h["new"]["release"], h["new"]["digest"]) == \
            ("r0001", regular_id, "r0003", slow_id)
        assert h["old"]["build"] == h["new"]["build"] and h["old"]["output_tps"] > h["new"]["output_tps"]
        # a rollback whose container is gone recreates r0001 from its own build, not what the tag names now
        old = client.containers.get(first["container_id"])
        old.remove(force=True)
        r = cli(env, "rollback", "-p", env.profile)
        assert r.code == 0, r.err
        assert f"{moving} now names another build; recreating release r0001 from its own" in r.err, r.err
        cur = cli(env, "--json", "status", "-p", env.profile).json()["releases"][0]
        assert (cur["source"], cur["health"]) == ("r0001", "ok")
        assert client.containers.get(cur["container_id"]).image.id == regular_id

        text = cli(env, "upgrade", "-p", env.profile, "--image", moving)  # the slowed build again, no gate
        assert text.code == 0, text.err
        assert text.out.splitlines()[0] == f"profile {env.profile} upgraded to {moving}", text.out
        rows = {ln.split()[1]: ln.split()[2:] for ln in text.out.splitlines()[2:]}
        assert list(rows) == ["RELEASE", "BUILD", "DIGEST", "TOK/S", "P95", "VRAM"], text.out
        # the serving release is the rollback to r0001: its figures are r0001's bench
        assert rows["RELEASE"][0] == "r0004" and rows["TOK/S"][0] != "-" and rows["P95"][0] != "-", text.out
        assert rows["DIGEST"] == [regular_id.removeprefix("sha256:")[:12], slow_id.removeprefix("sha256:")[:12]]
    finally:
        client.images.remove(moving, noprune=True)


def test_fit_is_stated_and_fit_on_records_what_llama_cpp_chose(serve_env):
    from ossctl.serve.docker_runtime import DockerRuntime
    from ossctl.serve.releases import Ledger

    env = serve_env
    r = cli(env, "--json", "deploy", "-p", env.profile, "--dry-run")
    assert r.code == 0, r.err
    argv = r.json()["spec"]["command"]  # spelled from the image's --help (b11312 has --fit)
    assert argv[argv.index("--fit"):argv.index("--fit") + 2] == ["--fit", "off"] and "-ngl" in argv
    assert any(c["intent"] == "fit" and c["args"] == ["--fit", "off"] for c in r.json()["flags"]["choices"])

    env.write_profile(fit=True)
    r = cli(env, "--json", "deploy", "-p", env.profile, "--dry-run")
    argv = r.json()["spec"]["command"]
    assert argv[argv.index("--fit"):argv.index("--fit") + 4] == ["--fit", "on", "-lv", "4"] and "-ngl" not in argv
    r = cli(env, "deploy", "-p", env.profile)
    assert r.code == 0, r.err
    # the CPU build: fit looks at system memory, finds room, changes nothing
    assert "llama.cpp's fit changed nothing" in r.err, r.err
    rt = DockerRuntime(env.docker_host)
    rec = Ledger(rt).load(env.profile).current(env.profile)
    assert (rec.fit["status"], rec.fit["n_ctx"], rec.fit["devices"]) == ("unchanged", 512, [])
