"""The CLI frame: version, fast --help, error rendering, exit codes, settings precedence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ossctl import __version__
from ossctl.errors import OssctlError
from ossctl.settings import load_settings
from tests.support.cli import run_cli, run_proc

ROOT = Path(__file__).resolve().parents[2]


def test_version():
    r = run_cli("--version")
    assert (r.code, r.out) == (0, f"ossctl {__version__}\n")


def test_help_does_not_import_heavy_sdks():
    code = ("import sys; from ossctl.cli.app import app; import typer.main as t;"
            "t.get_command(app); heavy = [m for m in ('web3', 'docker', 'gguf', 'numpy', 'huggingface_hub', "
            "'pynvml', 'httpx', 'eth_hash', 'prometheus_client', 'model_signing', 'cryptography') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
    r = run_proc("--help", cwd=ROOT)
    assert r.code == 0 and "download" in r.out


def test_models_json_shape():
    r = run_cli("--json", "models")
    assert r.code == 0
    rows = r.json()
    assert {row["alias"] for row in rows} >= {"120b", "20b"}
    assert set(rows[0]) == {"alias", "repo", "pattern", "parts", "approx_size", "context_length", "description"}


def test_error_is_one_line_plus_hint_and_no_traceback(home):
    r = run_proc("verify", "/nonexistent/dir", cwd=ROOT)
    assert r.code == 3
    lines = r.err.strip().splitlines()
    assert lines[0].startswith("error: ") and all(not l.startswith("Traceback") for l in lines)
    assert len(lines) <= 2


def test_debug_shows_traceback(home):
    r = run_proc("verify", "/nonexistent/dir", env={"OSSCTL_DEBUG": "1"}, cwd=ROOT)
    assert r.code != 0 and "Traceback" in r.err


def test_usage_error_exit_code():
    r = run_cli("download")
    assert r.code == 2 and "Missing argument" in r.err


def test_ctrl_c_exits_130(monkeypatch, home):
    import ossctl.artifacts.local as local

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(local, "hash_paths", boom)
    r = run_cli("hash", str(home))
    assert r.code == 130 and "Traceback" not in r.err


def test_unexpected_error_is_redacted(monkeypatch, home):
    from ossctl.redact import register_secret
    import ossctl.artifacts.local as local

    secret = "0x" + "ab" * 32
    register_secret(secret)

    def boom(*a, **k):
        raise RuntimeError(f"rpc said key={secret.upper()[2:]}")

    monkeypatch.setattr(local, "hash_paths", boom)
    r = run_cli("hash", str(home))
    assert r.code == 1 and "unexpected error" in r.err
    assert "ab" * 32 not in r.err.lower()


def test_settings_precedence(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[registry]\nrpc_url = "http://from-config"\n[download]\nretries = 2\n')
    env = {"OSSCTL_HOME": str(tmp_path / "h"), "OSSCTL_CONFIG": str(cfg), "HOME": str(tmp_path)}
    s = load_settings(env)
    assert s.value("registry.rpc_url", "OSSCTL_RPC_URL") == "http://from-config"
    assert s.value("download.retries", "OSSCTL_DOWNLOAD_RETRIES") == 2
    assert s.value("registry.missing", "OSSCTL_X", default=7) == 7
    s = load_settings({**env, "OSSCTL_RPC_URL": "http://from-env"})
    assert s.value("registry.rpc_url", "OSSCTL_RPC_URL") == "http://from-env"
    assert s.value("registry.rpc_url", "OSSCTL_RPC_URL", flag="http://from-flag") == "http://from-flag"
    assert s.models_dir == tmp_path / "h" / "models"


def test_settings_home_defaults_to_xdg(tmp_path):
    s = load_settings({"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")})
    assert s.home == tmp_path / "data" / "ossctl"
    assert load_settings({"HOME": str(tmp_path)}, home=tmp_path / "x").home == tmp_path / "x"


def test_bad_config_file_is_a_clear_error(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[registry\n")
    with pytest.raises(OssctlError, match="not valid TOML"):
        load_settings({"OSSCTL_CONFIG": str(cfg), "HOME": str(tmp_path)})
    r = run_cli("models", env={"OSSCTL_CONFIG": str(cfg)})
    assert r.code == 0  # commands that need no settings still work
    r = run_cli("verify", "120b", env={"OSSCTL_CONFIG": str(cfg)})
    assert r.code == 2 and "not valid TOML" in r.err


def test_home_flag_is_used(tmp_path):
    r = run_cli("--home", str(tmp_path / "h"), "verify", "120b")
    assert r.code == 3 and str(tmp_path / "h" / "models") in r.err


def test_atomic_write_leaves_no_temp_on_failure(tmp_path, monkeypatch):
    from ossctl import fsutil

    target = tmp_path / "state.toml"
    target.write_text("old")

    def fail(*a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsutil.os, "replace", fail)
    with pytest.raises(OSError):
        fsutil.atomic_write(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.toml"]
