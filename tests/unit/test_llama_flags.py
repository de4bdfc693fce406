"""Exact-value tests of the intent → flag table: which spelling each kind of build gets,
the refusal when none fits, and that the shipped pin is the build the tests run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ossctl.errors import UsageError
from ossctl.serve import llama_flags as F
from ossctl.serve import llama_server as L
from ossctl.serve.profiles import SHIPPED_DIR, validate

REPO = Path(__file__).resolve().parents[2]

# --help lines as llama-server prints them, for three generations of builds
_COMMON = """\
-m,    --model FNAME                    model path
-c,    --ctx-size N                     size of the prompt context
-ngl,  --gpu-layers, --n-gpu-layers N   number of layers to store in VRAM
-b,    --batch-size N                   logical maximum batch size
-ub,   --ubatch-size N                  physical maximum batch size
-np,   --parallel N                     number of server slots
-t,    --threads N                      number of threads
--temp, --temperature N                 temperature
--top-k N                               top-k sampling
--top-p N                               top-p sampling
--min-p N                               min-p sampling
--repeat-penalty N                      penalize repeat sequence of tokens
--host HOST                             ip address to listen
--port PORT                             port to listen
"""
HELP_NEW = _COMMON + """\
-fa,   --flash-attn [on|off|auto]       set Flash Attention use
--jinja, --no-jinja                     whether to use jinja template engine for chat
--chat-template-kwargs STRING           sets additional params for the json template parser
--reasoning-format FORMAT               controls whether thought tags are allowed and/or extracted
--reasoning-effort LEVEL                reasoning effort level given to the chat template
"""
HELP_MID = HELP_NEW.replace("--reasoning-effort LEVEL", "--reasoning-budget N")
HELP_OLD = _COMMON + """\
-fa,   --flash-attn                     enable Flash Attention (default: disabled)
--jinja                                 use jinja template for chat (default: disabled)
"""


def prof(**over):
    raw = {"model": "120b", "image": "img:b1", "ctx": 4096, "flash_attn": "on", "temperature": 1.0, "top_p": 1.0,
           "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0, "reasoning_effort": "high", "reasoning_format": "deepseek"}
    raw.update(over)
    return validate({k: v for k, v in raw.items() if v is not None}, "t")


def tail(help_text, **over):
    """The argv from -fa on (memory flags and -np dropped), without host/port."""
    args = L.llama_args(prof(**over), "m.gguf", 8080, False, help_text)
    return args[args.index("-ub") + 2:args.index("--host")]


def test_current_build_gets_native_spellings():
    assert tail(HELP_NEW) == ["-fa", "on", "--jinja", "-np", "1", "--temp", "1", "--top-p", "1", "--min-p", "0",
                              "--top-k", "0", "--repeat-penalty", "1", "--reasoning-effort", "high",
                              "--reasoning-format", "deepseek"]


def test_build_without_native_effort_gets_the_template_kwargs_form():
    assert tail(HELP_MID)[-4:] == ["--chat-template-kwargs", '{"reasoning_effort":"high"}',
                                   "--reasoning-format", "deepseek"]
    why = F.plan(prof(), HELP_MID)["reasoning_effort"].why
    assert "this build lacks --reasoning-effort" in why


def test_old_build_switch_forms_and_refusal():
    # -fa is an on-switch; --no-jinja does not exist (jinja off is the default there)
    assert tail(HELP_OLD + "--chat-template-kwargs STRING  x\n--reasoning-format FORMAT  x\n",
                flash_attn="auto")[:3] == ["--jinja", "-np", "1"]
    assert tail(HELP_OLD + "--chat-template-kwargs STRING  x\n", flash_attn="on", jinja=False,
                reasoning_effort=None, reasoning_format=None)[:3] == ["-fa", "-np", "1"]
    with pytest.raises(UsageError) as ei:
        F.plan(prof(), HELP_OLD)
    assert ei.value.message == ("profile key `reasoning_effort` = 'high' cannot be honoured: this llama-server "
                                "build has no --reasoning-effort or --chat-template-kwargs")
    assert "remove `reasoning_effort`" in ei.value.hint


def test_unread_help_assumes_current_spelling_and_says_so():
    plan = F.plan(prof(), None)
    assert plan["reasoning_effort"].args == ("--reasoning-effort", "high")
    assert "assumed" in plan["reasoning_effort"].why
    assert set(plan) == {"flash_attn", "fit", "jinja", "temperature", "top_p", "min_p", "top_k", "repeat_penalty",
                         "reasoning_effort", "reasoning_format", "metrics"}


def test_every_argv_the_table_produces_passes_the_flag_check():
    for help_text in (HELP_NEW, HELP_MID):
        argv = L.llama_args(prof(), "m.gguf", 8080, True, help_text)
        assert F.check_flags(argv, F.parse_help_flags(help_text + "--api-key-file FNAME  x\n")) == []


def test_profile_validation_of_reasoning_keys():
    with pytest.raises(UsageError, match="`reasoning_effort` must be one of low, medium, high; got 'max'"):
        prof(reasoning_effort="max")
    with pytest.raises(UsageError, match="`reasoning_format` must be one of"):
        prof(reasoning_format="harmony")
    with pytest.raises(UsageError, match="needs `jinja = true`"):
        prof(jinja=False)
    with pytest.raises(UsageError, match="`repeat_penalty` must be between 0.0 and 10.0"):
        prof(repeat_penalty=-1)


def _ci_tag() -> tuple[str, str]:
    text = (REPO / ".ci" / "build_llama.sh").read_text()
    version = re.search(r'LLAMA_CPP_PYTHON_VERSION:-([0-9.]+)', text).group(1)
    m = re.search(rf"{re.escape(version)}\) LLAMA_TAG=(b\d+); LLAMA_COMMIT=([0-9a-f]+)", text)
    return m.group(1), m.group(2)


def test_shipped_profiles_pin_the_build_the_tests_build():
    tag, commit = _ci_tag()
    assert (tag, commit) == ("b11312", "0c1e570")
    for path in sorted(SHIPPED_DIR.glob("*.toml")):
        import tomllib

        raw = tomllib.loads(path.read_text())
        if "image" in raw:
            assert raw["image"].endswith(f"server-{tag}") or raw["image"].endswith(f"server-cuda-{tag}"), path
            assert raw["llama_build"] == tag, path


def test_shipped_profiles_say_gpt_oss():
    from ossctl.settings import load_settings
    from ossctl.serve.profiles import resolve_profile

    s = load_settings({"OSSCTL_HOME": "/nonexistent-ossctl-home"})
    got = {n: resolve_profile(s, n, cwd=Path("/nonexistent")) for n in ("prod", "quality", "latency", "dev", "cpu")}
    assert {n: p["reasoning_effort"] for n, p in got.items()} == {
        "prod": "medium", "quality": "high", "latency": "low", "dev": "medium", "cpu": "medium"}
    for p in got.values():
        assert (p["temperature"], p["top_p"], p["top_k"], p["min_p"], p["repeat_penalty"]) == (1.0, 1.0, 0, 0.0, 1.0)
        assert p["jinja"] and p["reasoning_format"] == "deepseek"


def test_help_of_an_image_id_is_read_once(tmp_path):
    from ossctl.serve import image_flags

    class Rt:
        runs = 0

        def run_once(self, image, args):
            Rt.runs += 1
            return 0, "-m, --model FNAME  model path\n--metrics  enable metrics\n"

    a = image_flags.read_help(Rt(), "img:1", tmp_path, "sha256:" + "ab" * 32)
    b = image_flags.read_help(Rt(), "img:1", tmp_path, "sha256:" + "ab" * 32)
    assert a == b and "--metrics" in a and Rt.runs == 1
    image_flags.read_help(Rt(), "img:2", tmp_path, "sha256:" + "cd" * 32)  # another binary: read again
    image_flags.read_help(Rt(), "img:1", None, None)  # no cache asked for
    assert Rt.runs == 3
