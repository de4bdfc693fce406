"""Said once: the profile's ``[bench]`` table has one validator (the deploy gate's), and
deploy, bench and the metrics exporter read an API-key file with one reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from ossctl.errors import UsageError
from tests.support.cli import run_cli

ROOT = Path(__file__).resolve().parents[2]


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
