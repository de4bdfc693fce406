"""gpt-oss serving against the real CPU llama-server the tests build: the shipped
profiles' flags are what that build accepts, their argv starts a server on a tiny
gpt-oss model, the reasoning level reaches the chat template (read back from the prompt
the server renders), the fallback spelling does too, and bench sets it per request."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from ossctl.errors import UsageError
from ossctl.serve import llama_flags as F
from ossctl.serve import llama_server as L
from ossctl.serve.profiles import SHIPPED_DIR, is_loopback, resolve_profile
from ossctl.settings import load_settings
from tests.plugins.llama_server import LlamaServer, wait_healthy
from tests.support.net import free_port
from tests.support.cli import run_cli

pytestmark = pytest.mark.llama

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.stem for p in SHIPPED_DIR.glob("*.toml"))


def shipped(name: str) -> dict:
    s = load_settings({"OSSCTL_HOME": "/nonexistent-ossctl-home"}, ignore_config=True)
    return resolve_profile(s, name, cwd=Path("/nonexistent"))


@pytest.fixture(scope="module")
def oss_model(tmp_path_factory) -> Path:
    """The tiny gpt-oss model with the trained context of the real ones (128k), so the
    shipped profiles' ctx is taken as is."""
    from tests.support.ossgen import write_oss

    return write_oss(tmp_path_factory.mktemp("oss"), "tiny-oss", ctx=131072)


@pytest.fixture
def serve_argv(oss_model, tmp_path):
    """Start the real llama-server with a profile's argv (host path for -m, loopback and
    a free port instead of the container's 0.0.0.0:port); yields its URL."""
    bindir = Path(os.environ.get("OSSCTL_TEST_LLAMA_BIN") or pytest.skip("OSSCTL_TEST_LLAMA_BIN is not set"))
    started: list[LlamaServer] = []

    def start(argv: list[str]) -> str:
        argv = list(argv)
        argv[argv.index("-m") + 1] = str(oss_model)
        port = free_port()
        argv[argv.index("--host") + 1] = "127.0.0.1"
        argv[argv.index("--port") + 1] = str(port)
        log = tmp_path / f"server-{len(started)}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen([str(bindir / "llama-server"), *argv], stdout=fh, stderr=subprocess.STDOUT)
        srv = LlamaServer(f"http://127.0.0.1:{port}", proc, log)
        started.append(srv)
        wait_healthy(srv.url, proc, log, timeout=180)
        return srv.url

    yield start
    for srv in started:
        srv.stop()


def rendered(url: str, **body) -> str:
    """The prompt the server renders for a one-message chat (``/apply-template``)."""
    req = urllib.request.Request(url + "/apply-template", method="POST", headers={"Content-Type": "application/json"},
                                 data=json.dumps({"messages": [{"role": "user", "content": "hi"}], **body}).encode())
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())["prompt"]


def argv_for(profile: dict, help_text: str) -> list[str]:
    return L.llama_args(profile, "model.gguf", profile["port"], not is_loopback(profile["host"]), help_text)


def test_the_test_binary_is_the_pinned_build(llama_build):
    text = (REPO / ".ci" / "build_llama.sh").read_text()
    tag, commit = re.search(r"0\.3\.36\) LLAMA_TAG=(b\d+); LLAMA_COMMIT=([0-9a-f]+)", text).groups()
    out = subprocess.run([os.environ["OSSCTL_TEST_LLAMA_BIN"] + "/llama-server", "--version"],
                         capture_output=True, text=True, timeout=60)
    assert f"commit {commit}" in out.stdout + out.stderr
    if llama_build != F.parse_pin(tag) and not os.environ.get("CI"):
        pytest.skip(f"this binary was built before .ci/build_llama.sh stamped {tag} (it says build {llama_build}); "
                    "scripts/test.sh rebuilds it")
    assert llama_build == F.parse_pin(tag) == F.parse_pin(shipped("prod")["llama_build"])


def test_every_flag_every_shipped_profile_produces_is_in_the_builds_help(llama_help):
    known = F.parse_help_flags(llama_help)
    assert len(known) > 100
    for name in SHIPPED:
        argv = argv_for(shipped(name), llama_help)
        assert F.check_flags(argv, known) == [], name
        # this build has the native spelling; the fallback is not used
        assert "--reasoning-effort" in argv and "--chat-template-kwargs" not in argv, name


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_argv_serves_and_the_effort_reaches_the_template(name, llama_help, serve_argv):
    profile = shipped(name)
    url = serve_argv(argv_for(profile, llama_help))
    assert f"Reasoning: {profile['reasoning_effort']}<|end|>" in rendered(url)


def test_build_without_native_effort_gets_the_kwargs_form_and_it_works(llama_help, serve_argv):
    old = "\n".join(ln for ln in llama_help.splitlines() if not ln.startswith("--reasoning-effort"))
    profile = shipped("quality")
    argv = argv_for(profile, old)
    assert argv[argv.index("--chat-template-kwargs") + 1] == '{"reasoning_effort":"high"}'
    assert "--reasoning-effort" not in argv
    url = serve_argv(argv)
    assert "Reasoning: high<|end|>" in rendered(url)
    # a request still overrides the served level (what bench --reasoning-effort relies on)
    assert "Reasoning: low<|end|>" in rendered(url, chat_template_kwargs={"reasoning_effort": "low"})


def test_build_without_any_effort_spelling_is_refused(llama_help):
    older = "\n".join(ln for ln in llama_help.splitlines()
                      if not ln.startswith(("--reasoning-effort", "--chat-template-kwargs")))
    with pytest.raises(UsageError) as ei:
        argv_for(shipped("latency"), older)
    assert "`reasoning_effort` = 'low' cannot be honoured" in ei.value.message


def test_bench_sets_the_effort_per_request(serve_argv, llama_help, home, tmp_path):
    url = serve_argv(argv_for(shipped("cpu"), llama_help))
    prompts = tmp_path / "one.jsonl"
    prompts.write_text(json.dumps({"category": "factual", "messages": [{"role": "user", "content": "hi"}]}) + "\n")
    r = run_cli("--json", "bench", "--url", url, "--users", "1,2", "--requests", "6", "--max-tokens", "2",
                "--no-stream", "--prompts", str(prompts), "--reasoning-effort", "high,mixed")
    assert r.code == 0, r.err
    high, mixed = r.json()["levels"]
    assert (high["reasoning_effort"], mixed["reasoning_effort"]) == ("high", "mixed")
    assert {k: v["requests"] for k, v in high["efforts"].items()} == {"high": 6}
    assert {k: v["requests"] for k, v in mixed["efforts"].items()} == {"low": 2, "medium": 2, "high": 2}
    # the level shows in the prompt the server rendered: one prompt, whose byte-level
    # tokens differ only by "low" < "high" < "medium"
    per = {e: v["prompt_tokens"] / v["requests"] for e, v in mixed["efforts"].items()}
    assert mixed["errors"] == 0 and per["low"] < per["high"] < per["medium"]


# --- through deploy, on the real Docker engine with the test image ------------------

def test_dry_run_shows_the_flags_and_why(serve_env):
    serve_env.write_profile(reasoning_effort="high")
    r = run_cli("--json", "deploy", "--profile", serve_env.profile, "--dry-run", env=serve_env.env)
    assert r.code == 0, r.err
    res = r.json()
    assert res["flags"]["source"] == f"`llama-server --help` of {serve_env.image}"
    by = {c["intent"]: c for c in res["flags"]["choices"]}
    assert by["reasoning_effort"] == {"intent": "reasoning_effort", "args": ["--reasoning-effort", "high"],
                                      "why": "b10434+: native --reasoning-effort"}
    assert by["flash_attn"]["args"] == ["-fa", "auto"]
    assert "--reasoning-effort" in res["spec"]["command"]
    human = run_cli("deploy", "--profile", serve_env.profile, "--dry-run", env=serve_env.env)
    assert human.code == 0 and f"flags spelled from `llama-server --help` of {serve_env.image}" in human.out
    assert re.search(r"reasoning_effort\s+--reasoning-effort high\s+b10434\+", human.out)


def test_deployed_profile_serves_with_its_effort(serve_env, tmp_path):
    from tests.plugins.docker_engine import make_model_dir

    model = make_model_dir(tmp_path / "oss", "tiny-oss", oss=True)
    serve_env.write_profile(model=str(model), reasoning_effort="high")
    r = run_cli("--json", "deploy", "--profile", serve_env.profile, env=serve_env.env)
    assert r.code == 0, r.err
    assert "Reasoning: high<|end|>" in rendered(r.json()["endpoint"])


def test_dry_run_without_docker_says_the_spellings_are_assumed(home, tmp_path):
    from tests.plugins.docker_engine import make_model_dir

    model = make_model_dir(tmp_path / "oss", "tiny-oss", oss=True)
    (home / "profiles").mkdir()
    (home / "profiles" / "q.toml").write_text(f'extends = "quality"\nmodel = "{model}"\nctx = 4096\n')
    r = run_cli("--json", "deploy", "--profile", "q", "--dry-run",
                env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert r.code == 0, r.err
    flags = r.json()["flags"]
    assert flags["source"].startswith("assumed current llama-server spellings: ")
    by = {c["intent"]: c for c in flags["choices"]}
    assert by["reasoning_effort"]["args"] == ["--reasoning-effort", "high"]
    assert by["reasoning_effort"]["why"].endswith("(assumed: the image's --help was not read)")
