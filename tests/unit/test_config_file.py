"""The config file: unknown keys and sections warn with a "did you mean", and
``OSSCTL_CONFIG`` naming a missing file is an error (doctor says so too)."""

from __future__ import annotations

from tests.support.cli import run_cli


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
