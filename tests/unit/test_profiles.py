"""Profiles: shipped set, search path, extends, every validation rule, `ossctl profile`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from ossctl.errors import NotFoundError, UsageError
from ossctl.serve import profiles as P
from ossctl.settings import load_settings
from tests.support.cli import run_cli

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("prod", "dev", "quality", "latency", "cpu")


@pytest.fixture
def settings(home):
    return load_settings()


def write(home: Path, name: str, text: str) -> Path:
    d = home / "profiles"
    d.mkdir(exist_ok=True)
    p = d / f"{name}.toml"
    p.write_text(text)
    return p


BASE = 'model = "20b"\nimage = "img:1"\nctx = 4096\n'


def test_shipped_copies_identical():
    # profiles/ at the repo root is what users read and edit in a clone; ossctl/profiles/
    # is the package data the installed tool ships. They must not drift.
    top = sorted(p.name for p in (REPO / "profiles").glob("*.toml"))
    pkg = sorted(p.name for p in (REPO / "ossctl" / "profiles").glob("*.toml"))
    assert top == pkg == sorted(f"{n}.toml" for n in SHIPPED)
    for n in top:
        assert (REPO / "profiles" / n).read_bytes() == (REPO / "ossctl" / "profiles" / n).read_bytes(), n


def test_shipped_profiles_resolve(settings):
    got = {n: P.resolve_profile(settings, n) for n in SHIPPED}
    prod = got["prod"]
    assert (prod["model"], prod["ctx"], prod["n_gpu_layers"], prod["batch"], prod["flash_attn"], prod["jinja"],
            prod["parallel"], prod["host"], prod["gpus"]) == ("120b", 131072, 99, 2048, "on", True, 1, "127.0.0.1", "all")
    assert prod["image"].endswith(":server-cuda-" + prod["llama_build"]) and prod["llama_build"].startswith("b")
    assert (got["dev"]["model"], got["dev"]["ctx"], got["dev"]["n_gpu_layers"]) == ("20b", 8192, 35)
    assert got["quality"]["parallel"] > 1 and got["quality"]["batch"] > prod["batch"]
    assert got["latency"]["parallel"] == 1 and got["latency"]["batch"] < prod["batch"]
    assert "temperature" in got["quality"] and "temperature" in got["latency"]
    assert got["cpu"]["gpus"] == "none" and got["cpu"]["ctx"] <= 8192
    for p in got.values():
        assert set(P.DEFAULTS) | {"name"} <= set(p)


def test_extends_merges_and_defaults(home, settings):
    write(home, "base", BASE + 'port = 9000\nextra_args = ["--x"]\n[bench]\nusers = [1]\nrequests = 3\n')
    write(home, "child", 'extends = "base"\nport = 9001\n[bench]\nmax_tokens = 8\n')
    p = P.resolve_profile(settings, "child")
    assert p["port"] == 9001 and p["model"] == "20b" and p["extra_args"] == ["--x"]
    assert p["bench"] == {"users": [1], "requests": 3, "max_tokens": 8}
    assert p["name"] == "child" and "extends" not in p
    assert p["batch"] == 2048 and p["strategy"] == "auto" and p["health_timeout"] == 900


def test_search_path_order_and_self_extension(home, settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "profiles").mkdir()
    # ./profiles shadows $OSSCTL_HOME/profiles, which shadows the shipped profile of the same name;
    # extending your own name reaches the next one down the path
    (tmp_path / "profiles" / "cpu.toml").write_text('extends = "cpu"\nctx = 1024\n')
    write(home, "cpu", 'extends = "cpu"\nport = 9999\n')
    p = P.resolve_profile(settings, "cpu")
    assert (p["ctx"], p["port"], p["gpus"]) == (1024, 9999, "none")
    listed = {x["name"]: x for x in P.list_profiles(settings)}
    assert listed["cpu"]["path"] == str((tmp_path / "profiles" / "cpu.toml").resolve())
    assert len(listed["cpu"]["shadows"]) == 2


def test_extends_cycle(home, settings):
    write(home, "a", 'extends = "b"\n')
    write(home, "b", 'extends = "a"\n')
    with pytest.raises(UsageError, match="cycle"):
        P.resolve_profile(settings, "a")


def test_unknown_profile_did_you_mean(settings):
    with pytest.raises(NotFoundError) as ei:
        P.resolve_profile(settings, "prd")
    assert "did you mean 'prod'" in ei.value.hint


@pytest.mark.parametrize("extra, needle", [
    ("ctxx = 5\n", "unknown key 'ctxx'"),
    ("port = 0\n", "`port` must be between 1 and 65535"),
    ("port = \"80\"\n", "`port` must be an integer"),
    ("batch = 256\nubatch = 512\n", "`ubatch` (512) must not exceed `batch` (256)"),
    ("parallel = 0\n", "`parallel` must be between 1 and 256"),
    ("flash_attn = \"yes\"\n", "`flash_attn` must be one of on, off, auto"),
    ("jinja = 1\n", "`jinja` must be true or false"),
    ("cache_type_k = \"q3\"\n", "`cache_type_k` must be one of"),
    ("gpus = \"some\"\n", "`gpus` must be"),
    ("gpus = [0, 0]\n", "lists a GPU twice"),
    ("gpus = [-1]\n", "GPU ids"),
    ("gpus = [0, 1]\ntensor_split = [1.0]\n", "`tensor_split` has 1 entries but `gpus` lists 2"),
    ("gpus = \"none\"\ntensor_split = [1.0, 1.0]\n", "`tensor_split` needs GPUs"),
    ("extra_args = \"--foo --bar\"\n", "`extra_args` must be a list of strings, not a shell string"),
    ("extra_args = [\"--port\", \"1\"]\n", "`extra_args` must not set --port"),
    ("extra_args = [\"--api-key=abc\"]\n", "`extra_args` must not set --api-key"),
    ("host = \"0.0.0.0\"\n", "`api_key_file` is required"),
    ("host = \"example.com\"\n", "`host` must be an IP address"),
    ("strategy = \"canary\"\n", "`strategy` must be one of auto, recreate, blue-green"),
    ("restart = \"sometimes\"\n", "`restart` must be one of"),
    ("health_timeout = 0\n", "`health_timeout` must be >= 1"),
    ("keep_releases = 0\n", "`keep_releases` must be between 1 and 100"),
    ("temperature = -1\n", "`temperature` must be between 0.0 and 10.0"),
    ("top_p = 2\n", "`top_p` must be between 0.0 and 1.0"),
    ("ctx = 262144\n", "above the trained context of 20b (131072)"),
    ("image = \"\"\n", "`image` is required"),
    ("[bench]\nuser = [1]\n", "unknown key 'user' in [bench]"),
    ("[bench]\nrequests = 3\nduration = \"3s\"\n", "`requests` or `duration`, not both"),
    ("[bench]\nsla = \"fast please\"\n", "`bench.sla` must look like"),
])
def test_each_rule(home, settings, extra, needle):
    # the override goes after BASE (TOML tables must come last, and `extra` may open one)
    body = BASE.replace("ctx = 4096\n", "") + ("" if extra.startswith("ctx") else "ctx = 4096\n")
    if extra.startswith("[bench]"):
        body = body + extra
    else:
        keys = {ln.split("=")[0].strip() for ln in extra.splitlines()}
        body = "".join(ln + "\n" for ln in body.splitlines() if ln.split("=")[0].strip() not in keys) + extra
    write(home, "bad", body)
    with pytest.raises(UsageError) as ei:
        P.resolve_profile(settings, "bad")
    assert needle in ei.value.message
    assert "bad.toml" in ei.value.message  # names the file


def test_unknown_key_did_you_mean(home, settings):
    write(home, "typo", BASE + "n_gpu_layer = 3\n")
    with pytest.raises(UsageError) as ei:
        P.resolve_profile(settings, "typo")
    assert ei.value.hint == "did you mean 'n_gpu_layers'?"


def test_missing_required(home, settings):
    write(home, "nomodel", 'image = "x:1"\nctx = 10\n')
    with pytest.raises(UsageError, match="`model` is required"):
        P.resolve_profile(settings, "nomodel")


def test_ctx_checked_against_gguf_metadata(home, settings, tmp_path):
    from tests.plugins.docker_engine import make_model_dir

    d = make_model_dir(tmp_path / "m")  # ggufgen writes context_length 4096
    write(home, "big", f'model = "{d}"\nimage = "x:1"\nctx = 8192\n')
    prof = P.resolve_profile(settings, "big")  # a directory model: no catalog limit
    with pytest.raises(UsageError, match="above the model's trained context 4096"):
        P.check_against_model(prof, d, "tiny-00001-of-00003.gguf")
    r = run_cli("--json", "profile", "validate", "big")
    assert r.code == 2 and "trained context 4096" in r.err
    write(home, "big", f'model = "{d}"\nimage = "x:1"\nctx = 2048\n')
    r = run_cli("--json", "profile", "validate", "big")
    assert r.code == 0 and r.json()["profiles"][0]["note"] == "ctx 2048 <= trained 4096"


def test_cli_show_is_resolved_toml(home):
    r = run_cli("profile", "show", "quality")
    assert r.code == 0
    doc = tomllib.loads(r.out)
    assert doc["parallel"] == 4 and doc["model"] == "120b" and doc["ctx"] == 131072 and "extends" not in doc
    assert doc["bench"]["users"] == [1, 4]


def test_cli_json_shapes(home):
    r = run_cli("--json", "profile", "list")
    assert r.code == 0
    d = r.json()
    assert set(d) == {"search_path", "profiles"}
    assert set(d["profiles"][0]) == {"name", "path", "shadows", "extends", "description", "model"}
    assert {p["name"] for p in d["profiles"]} >= set(SHIPPED)
    r = run_cli("--json", "profile", "show", "cpu")
    assert set(r.json()) == {"name", *P.DEFAULTS, "temperature", "top_p", "top_k", "min_p", "repeat_penalty",
                             "reasoning_effort", "reasoning_format"}
    r = run_cli("--json", "profile", "validate")
    assert r.code == 0
    assert set(r.json()) == {"profiles"}
    assert set(r.json()["profiles"][0]) == {"name", "ok", "path", "error", "hint", "note"}


def test_cli_invalid_profile_one_line(home):
    write(home, "bad", BASE + "ctxx = 3\n")
    r = run_cli("profile", "validate", "bad")
    assert r.code == 2
    assert r.err.splitlines()[0].startswith("error: ") and "unknown key 'ctxx'" in r.err
    assert "hint: did you mean 'ctx'?" in r.err and "Traceback" not in r.err
    r = run_cli("profile", "validate")
    assert r.code == 2 and "bad: invalid" in r.out and "cpu: ok" in r.out
    r = run_cli("profile", "show", "nope")
    assert r.code == 3 and "unknown profile 'nope'" in r.err


FLEET_BASE = {"model": "20b", "image": "img:1", "ctx": 4096}


def test_fleet_hosts_validate_each_override_as_that_host_runs_it():
    p = P.validate({**FLEET_BASE, "port": 8080,
                    "hosts": [{"docker_host": "ssh://ops@gpu1"},
                              {"docker_host": "tcp://gpu2:2376", "port": 9000, "gpus": [0, 1], "tensor_split": [3, 1],
                               "upstream": "10.0.0.2", "model": "/srv/models/20b"}]}, "fleet")
    assert p["max_unavailable"] == 1 and [h["docker_host"] for h in p["hosts"]] == ["ssh://ops@gpu1", "tcp://gpu2:2376"]
    h2 = P.host_profile(p, p["hosts"][1])
    assert (h2["port"], h2["gpus"], h2["tensor_split"], h2["model"]) == (9000, [0, 1], [3.0, 1.0], "/srv/models/20b")
    assert "hosts" not in h2 and "max_unavailable" not in h2
    assert P.host_profile(p, p["hosts"][0])["port"] == 8080


@pytest.mark.parametrize("extra, needle", [
    ({"hosts": []}, "`hosts` must be a non-empty list of tables"),
    ({"hosts": [{"port": 1}]}, "[[hosts]] entry 1 needs `docker_host`"),
    ({"hosts": [{"docker_host": "a", "prot": 1}]}, "unknown key 'prot' in [[hosts]] entry 1"),
    ({"hosts": [{"docker_host": "a"}, {"docker_host": "a"}]}, "[[hosts]] lists a twice"),
    ({"hosts": [{"docker_host": "a", "port": 0}]}, "[[hosts]] a: `port` must be between 1 and 65535"),
    ({"hosts": [{"docker_host": "a", "gpus": [0], "tensor_split": [1, 1]}]}, "[[hosts]] a: `tensor_split` has 2 entries"),
    ({"hosts": [{"docker_host": "a", "host": "0.0.0.0"}]}, "[[hosts]] a: `host` 0.0.0.0 is not a loopback address"),
    ({"hosts": [{"docker_host": "a"}], "max_unavailable": 2}, "`max_unavailable` must be between 1 and 1"),
    ({"max_unavailable": 1}, "`max_unavailable` needs a fleet"),
])
def test_fleet_bad_input(extra, needle):
    with pytest.raises(UsageError) as ei:
        P.validate({**FLEET_BASE, **extra}, "fleet")
    assert needle in ei.value.message


def test_resolved_profile_is_frozen_typed_and_serializes(settings):
    import copy
    import json

    p = P.resolve_profile(settings, "prod")
    assert isinstance(p, P.Profile)
    assert p.ctx == p["ctx"] and p.image == p["image"] and p.name == "prod"
    with pytest.raises(AttributeError):
        p.no_such_key
    for change in (lambda: p.__setitem__("ctx", 1), lambda: p.update(ctx=1), lambda: p.pop("ctx"),
                   lambda: p.setdefault("x", 1), lambda: p.__delitem__("ctx")):
        with pytest.raises(TypeError, match="frozen"):
            change()
    assert p.ctx == P.resolve_profile(settings, "prod").ctx  # nothing changed
    q = p.replace(port=p.port + 1)
    assert q.port == p.port + 1 and p.port == q.port - 1 and isinstance(q, P.Profile)
    assert json.loads(json.dumps(p)) == p.to_dict()  # records and --json take it as is
    assert copy.deepcopy(p) is p
    import dataclasses

    @dataclasses.dataclass
    class Holder:
        profile: dict

    assert dataclasses.asdict(Holder(p))["profile"] == p  # a release record holds one
    mutable = dict(p)
    mutable["ctx"] = 1
    assert p.ctx != 1
    assert tomllib.loads(p.to_toml()) == {k: v for k, v in p.to_dict().items() if k != "name" and v is not None}


def test_profile_tables_are_frozen_too(home, settings):
    d = home / "profiles"
    d.mkdir(exist_ok=True)
    (d / "fd.toml").write_text('extends = "cpu"\n[frontdoor]\nport = 18999\n')
    p = P.resolve_profile(settings, "fd", cwd=home)
    assert p.frontdoor["port"] == 18999
    with pytest.raises(TypeError, match="frozen"):
        p.frontdoor["port"] = 1


def test_profile_that_extends_itself_says_so(home):
    d = home / "profiles"
    d.mkdir(exist_ok=True)
    p = d / "b.toml"
    p.write_text('model = "20b"\nimage = "img:1"\nctx = 4096\nextends = "b"\n')
    r = run_cli("profile", "show", "b")
    assert r.code == 2
    line = r.err.splitlines()[0]
    assert "extends itself" in line and "unknown profile" not in line
    v = run_cli("--json", "profile", "validate", "b")
    assert v.code != 0 and "extends itself" in v.json()["profiles"][0]["error"]
    assert p.exists()
