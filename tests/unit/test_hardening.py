"""Issue 13, the CLI frame, profiles and config (items 12, 13, 14, 15, 17, 18): each
asserts the exit code, the one line, and that nothing on disk was lost."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ossctl.errors import UsageError
from tests.support.cli import run_cli, run_proc

ROOT = Path(__file__).resolve().parents[2]


# --- 12. every `ossctl ...` written in the source and README is a real command ---------

def _spans() -> list[tuple[str, str]]:
    out = []
    files = sorted((ROOT / "ossctl").rglob("*.py")) + [ROOT / "README.md"]
    for f in files:
        for m in re.finditer(r"`(ossctl(?: [^`\n]*)?)`", f.read_text(encoding="utf-8")):
            out.append((f"{f.relative_to(ROOT)}", m.group(1)))
    return out


def _tokens(text: str) -> list[str]:
    toks = []
    for t in text.split():
        t = t.strip("[]()")
        if t and t not in ("...", "…", "|"):
            toks.append(t)
    return toks


def _walk(root, toks: list[str]) -> str | None:
    """None when ``toks`` (after ``ossctl``) name a real command with real options, else
    what is wrong. Arguments and option values are not checked (they are placeholders)."""
    cmd, path = root, ["ossctl"]
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.startswith("-"):
            name = t.split("=", 1)[0]
            opt = next((p for p in cmd.params if name in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])),
                       None)
            if opt is None and name not in ("-h", "--help"):
                return f"{' '.join(path)} has no option {name}"
            if opt is not None and not getattr(opt, "is_flag", False) and not getattr(opt, "count", False) \
                    and "=" not in t:
                i += 1  # its value
        elif hasattr(cmd, "commands"):
            alts = t.split("|")
            for a in alts:
                if a not in cmd.commands:
                    return f"{' '.join(path)} has no command {a!r}"
            cmd = cmd.commands[alts[0]]
            path.append(alts[0])
        i += 1
    if hasattr(cmd, "commands") and len(path) == 1 and toks:
        return None
    return None


def test_every_ossctl_command_written_in_source_and_readme_exists():
    import typer.main

    from ossctl.cli.app import app

    root = typer.main.get_command(app)
    spans = _spans()
    assert len(spans) > 30  # the scan finds them
    bad = []
    for where, span in spans:
        alts = [a.strip() for a in span.split(" | ")]
        first = _tokens(alts[0])[1:]
        problem = _walk(root, first)
        # `ossctl profile list | show NAME`: later alternatives continue from the group
        group = [t for t in first if not t.startswith("-")][:1]
        for alt in alts[1:]:
            toks = _tokens(alt)
            if toks and toks[0].split("|")[0] not in getattr(root.commands.get(group[0] if group else ""),
                                                             "commands", {}):
                break  # a shell pipe (`ossctl vram watch | head -3`), not alternatives
            problem = problem or _walk(root, group + toks)
        if problem:
            bad.append(f"{where}: `{span}`: {problem}")
    assert bad == []


def test_the_walker_catches_the_old_wrong_hints():
    import typer.main

    from ossctl.cli.app import app

    root = typer.main.get_command(app)
    for wrong in ("serve status", "serve deploy prod", "registry register MODEL", "registry activate",
                  "hash --include X"):
        assert _walk(root, _tokens(wrong)) is not None, wrong
    assert _walk(root, _tokens("--json registry status MODEL --rpc-url URL")) is None


# --- 13. one [bench] validator -------------------------------------------------------

BASE = 'model = "20b"\nimage = "img:1"\nctx = 4096\n'


def _profile(home: Path, body: str) -> Path:
    d = home / "profiles"
    d.mkdir(exist_ok=True)
    p = d / "b.toml"
    p.write_text(BASE + body)
    return p


@pytest.mark.parametrize("table,ok,needle", [
    ('sla = "foo<3"', False, "unknown metric 'foo'"),
    ('duration = "1m30s"', True, None),
    ('users = 2', True, None),
    ('duration = "later"', False, "duration 'later' is malformed"),
])
def test_profile_validate_and_the_deploy_gate_agree_on_bench(home, table, ok, needle):
    from ossctl.loadtest.gate import validate_bench_cfg
    from ossctl.serve.profiles import resolve_profile
    from ossctl.settings import load_settings

    p = _profile(home, f"[bench]\n{table}\n")
    before = p.read_text()
    r = run_cli("profile", "validate", "b")
    assert (r.code == 0) is ok, (r.out, r.err)
    if ok:
        prof = resolve_profile(load_settings(), "b")
        validate_bench_cfg(prof["bench"])  # what validated also runs after the health gate
    else:
        assert r.code == 2 and needle in r.out + r.err
        with pytest.raises(UsageError):
            import tomllib
            validate_bench_cfg(tomllib.loads(p.read_text())["bench"])
    assert p.read_text() == before


def test_only_one_bench_validator_exists():
    from ossctl.serve import profiles

    assert not hasattr(profiles, "SLA_RE") and not hasattr(profiles, "DURATION_RE")


# --- 14. one API key reader ----------------------------------------------------------

def test_deploy_and_bench_read_the_api_key_file_the_same_way(tmp_path):
    from ossctl.serve import preflight
    from ossctl.serve.apikey import read_api_key

    f = tmp_path / "key"
    f.write_text("# comment\n\n  sk-first-key-123  \nsk-second-key-456\n")
    assert preflight.profile_api_key({"api_key_file": str(f)}) == read_api_key(f) == "sk-first-key-123"
    from ossctl.redact import redact
    assert redact("a sk-second-key-456 b") == "a *** b"  # every key in the file is a secret
    f.write_text("# nothing\n")
    with pytest.raises(UsageError) as info:
        preflight.profile_api_key({"api_key_file": str(f)})
    assert "holds no key" in info.value.message
    assert f.read_text() == "# nothing\n"
    src = (ROOT / "ossctl" / "serve" / "preflight.py").read_text()
    assert "read_text" not in src.split("def release_api_key")[1].split("\ndef ")[0]
    assert "read_text" not in (ROOT / "ossctl" / "cli" / "bench.py").read_text()


# --- 15. OSSCTL_DEBUG=1 keeps exit code and hint -------------------------------------

def test_debug_keeps_exit_code_and_hint_and_adds_the_traceback(home):
    plain = run_proc("verify", "/nonexistent/dir", cwd=ROOT)
    debug = run_proc("verify", "/nonexistent/dir", env={"OSSCTL_DEBUG": "1"}, cwd=ROOT)
    assert plain.code == debug.code == 3
    assert "Traceback" in debug.err and "Traceback" not in plain.err
    err_lines = [ln for ln in plain.err.splitlines()]
    assert debug.err.splitlines()[-len(err_lines):] == err_lines  # same error line (and hint) last
    usage = run_proc("download", "120b", "--workers", "0", env={"OSSCTL_DEBUG": "1"}, cwd=ROOT)
    assert usage.code == 2


# --- 17. config file: unknown keys and sections, OSSCTL_CONFIG missing ---------------

def test_config_typos_warn_with_did_you_mean_and_doctor_warns(home, tmp_path):
    cfg = home / "config.toml"
    cfg.write_text('[download]\nretires = 9\n[regsitry]\nrpc_url = "http://127.0.0.1:8545"\n')
    before = cfg.read_text()
    r = run_cli("--json", "verify", str(tmp_path))
    warns = [ln for ln in r.err.splitlines() if ln.startswith("warning: ")]
    assert warns == [f"warning: {cfg}: unknown key 'retires' in [download], ignored; did you mean 'retries'?",
                     f"warning: {cfg}: unknown section [regsitry], ignored; did you mean 'registry'?"]
    assert r.code == 3  # the command itself still runs
    d = run_cli("--json", "doctor")
    check = next(c for c in d.json()["checks"] if c["name"] == "config")
    assert check["status"] == "WARN" and "did you mean 'retries'?" in check["detail"] and "(+1 more)" in check["detail"]
    assert cfg.read_text() == before


def test_ossctl_config_naming_a_missing_file_is_an_error_and_doctor_fails(home, tmp_path):
    missing = tmp_path / "nope.toml"
    r = run_cli("verify", str(tmp_path), env={"OSSCTL_CONFIG": str(missing)})
    assert r.code == 2
    assert r.err.splitlines()[0] == f"error: OSSCTL_CONFIG names {missing}, which does not exist"
    d = run_cli("--json", "doctor", env={"OSSCTL_CONFIG": str(missing)})
    check = next(c for c in d.json()["checks"] if c["name"] == "config")
    assert d.code == 1 and check["status"] == "FAIL" and "does not exist" in check["detail"]
    assert not missing.exists()


# --- 18. a profile that extends itself -----------------------------------------------

def test_profile_that_extends_itself_says_so(home):
    p = _profile(home, 'extends = "b"\n')
    r = run_cli("profile", "show", "b")
    assert r.code == 2
    line = r.err.splitlines()[0]
    assert "extends itself" in line and "unknown profile" not in line
    v = run_cli("--json", "profile", "validate", "b")
    assert v.code != 0 and "extends itself" in v.json()["profiles"][0]["error"]
    assert p.exists()
