"""Profile values that validated and then broke at deploy time: blue-green's side port,
an image that is no image reference, non-finite numbers, extra_args that override a key
ossctl manages. Each is one line and exit 2 from `ossctl profile validate`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_cli

BASE = 'model = "20b"\nimage = "img:1"\nctx = 4096\nport = 9000\n'


def write(home: Path, text: str) -> None:
    d = home / "profiles"
    d.mkdir(exist_ok=True)
    (d / "bad.toml").write_text(text)


def validate(home: Path, body: str):
    write(home, body)
    return run_cli("profile", "validate", "bad")


def one_line_error(r, needle: str) -> None:
    assert r.code == 2, (r.out, r.err)
    lines = r.err.strip().splitlines()
    assert lines[0].startswith("error: ") and needle in lines[0], r.err
    assert len([ln for ln in lines if ln.startswith("error: ")]) == 1 and "Traceback" not in r.err


FD = '[frontdoor]\nport = {fp}\nadmin_port = {ap}\n'


@pytest.mark.parametrize("body, needle", [
    # 7: blue-green's side port (port + 1) behind a front door
    (BASE + FD.format(fp=9001, ap=2019), "`frontdoor.port` (9001) is blue-green's side port"),
    (BASE + FD.format(fp=8000, ap=9001), "`frontdoor.admin_port` (9001) is blue-green's side port"),
    (BASE.replace("port = 9000", "port = 65535") + FD.format(fp=8000, ap=2019),
     "`port` 65535 leaves no room for blue-green's side port"),
    # 22: an image reference that is not one
    (BASE.replace('"img:1"', '"--privileged"'), "`image` must be an image reference"),
    (BASE.replace('"img:1"', '"-v/:/host"'), "`image` must be an image reference"),
    (BASE.replace('"img:1"', '"img:1 --privileged"'), "`image` must be an image reference"),
    (BASE.replace('"img:1"', '"img:1\\n"'), "`image` must be an image reference"),
    (BASE.replace('"img:1"', '"Img:1"'), "`image` must be an image reference"),
    (BASE.replace('"img:1"', '"img:"'), "`image` must be an image reference"),
    (BASE + '[frontdoor]\nport = 8000\nimage = "--net=host"\n', "`frontdoor.image` must be an image reference"),
    # 23: non-finite numbers
    (BASE + "health_timeout = inf\n", "`health_timeout` must be a finite number"),
    (BASE + "health_timeout = nan\n", "`health_timeout` must be a finite number"),
    (BASE + "temperature = nan\n", "`temperature` must be a finite number"),
    (BASE + "top_p = nan\n", "`top_p` must be a finite number"),
    (BASE + "min_p = -nan\n", "`min_p` must be a finite number"),
    (BASE + "repeat_penalty = inf\n", "`repeat_penalty` must be a finite number"),
    (BASE + "gpus = [0]\ntensor_split = [inf]\n", "`tensor_split` must be a list of non-negative numbers"),
    # 24: extra_args that set a flag ossctl manages, in any spelling
    (BASE + 'reasoning_effort = "high"\nextra_args = ["--reasoning-effort", "low"]\n',
     "`extra_args` must not set --reasoning-effort: ossctl sets it from the profile key `reasoning_effort`"),
    (BASE + 'reasoning_effort = "high"\nextra_args = ["--chat-template-kwargs", "{\\"reasoning_effort\\":\\"low\\"}"]\n',
     "must not set --chat-template-kwargs: ossctl sets it from the profile key `reasoning_effort`"),
    (BASE + 'extra_args = ["--temp=0.1"]\n', "must not set --temp: ossctl sets it from the profile key `temperature`"),
    (BASE + 'extra_args = ["--temperature", "0.1"]\n', "from the profile key `temperature`"),
    (BASE + 'extra_args = ["-fa", "off"]\n', "from the profile key `flash_attn`"),
    (BASE + 'extra_args = ["--no-jinja"]\n', "from the profile key `jinja`"),
    (BASE + 'extra_args = ["-ctk", "q8_0"]\n', "from the profile key `cache_type_k`"),
    (BASE + 'extra_args = ["--ctx-size", "8"]\n', "from the profile key `ctx`"),
    (BASE + 'extra_args = ["-ub", "8"]\n', "from the profile key `ubatch`"),
    (BASE + 'extra_args = ["--n-gpu-layers", "0"]\n', "from the profile key `n_gpu_layers`"),
    (BASE + 'extra_args = ["-t", "2"]\n', "from the profile key `threads`"),
])
def test_refused_with_one_line(home, body, needle):
    one_line_error(validate(home, body), needle)


def test_hint_names_the_key(home):
    r = validate(home, BASE + 'reasoning_effort = "high"\nextra_args = ["--reasoning-effort", "low"]\n')
    assert "hint: set `reasoning_effort` in the profile instead" in r.err


@pytest.mark.parametrize("body", [
    BASE + FD.format(fp=8000, ap=2019),  # side port 9001 is free of the front door's
    BASE.replace("port = 9000", "port = 65534") + FD.format(fp=8000, ap=2019),
    BASE.replace("port = 9000", "port = 65535"),  # no front door: never blue-green
    BASE.replace('"img:1"', '"ghcr.io/ggml-org/llama.cpp:server-cuda-b6100"'),
    BASE.replace('"img:1"', '"localhost:5000/team/llama_server__x:v1.2-rc_3"'),
    BASE.replace('"img:1"', '"registry.example.com/llama@sha256:' + "ab" * 32 + '"'),
    BASE.replace('"img:1"', '"llama"'),
    BASE + "health_timeout = 1e3\ntemperature = 0.7\n",
    BASE + 'extra_args = ["--chat-template-kwargs", "{\\"enable_thinking\\":false}", "--swa-full"]\n',
])
def test_still_accepted(home, body):
    r = validate(home, body)
    assert r.code == 0, r.err


@pytest.mark.parametrize("table,needle", [
    ('kind = "caddy"\nimage = "haproxy:2.8"', "is a haproxy image, but `frontdoor.kind` is 'caddy'"),
    ('image = "docker.io/library/caddy:2@sha256:' + "a" * 64 + '"', "is a caddy image, but `frontdoor.kind` is 'haproxy'"),
    ('port = 80', "privileged port"),
])
def test_front_door_kind_image_and_port_agree(home, table, needle):
    d = home / "profiles"
    d.mkdir(exist_ok=True)
    body = table if "port" in table else f"port = 18000\n{table}"
    f = d / "fdk.toml"
    f.write_text(f'extends = "cpu"\n[frontdoor]\n{body}\n')
    r = run_cli("profile", "validate", "fdk")
    assert r.code == 2 and needle in r.err, r.err
    assert "Traceback" not in r.err


def test_front_door_custom_image_may_bind_a_low_port(home):
    d = home / "profiles"
    d.mkdir(exist_ok=True)
    (d / "fdl.toml").write_text('extends = "cpu"\n[frontdoor]\nport = 80\nimage = "registry.example/own-haproxy:1"\n')
    r = run_cli("profile", "validate", "fdl")
    assert r.code == 0, r.err
