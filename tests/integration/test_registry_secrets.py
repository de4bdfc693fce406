"""The signing key never reaches any output stream: human, --json, -v, errors, and the
OSSCTL_DEBUG=1 traceback."""

from __future__ import annotations

import json

import pytest

from tests.plugins.anvil import deploy_registry, make_model_dir
from tests.support.cli import run_cli, run_proc

pytestmark = pytest.mark.anvil


def _leaks(text: str, *secrets: str) -> list[str]:
    low = text.lower()
    return [s for s in secrets if s.lower().removeprefix("0x") in low]


def test_private_key_and_password_never_printed(anvil, home, tmp_path):
    from eth_account import Account

    acct = Account.create()
    key = "0x" + bytes(acct.key).hex()
    anvil.set_balance(acct.address, 10**18)
    addr = deploy_registry(anvil, key)
    model = make_model_dir(tmp_path / "m")
    other = make_model_dir(tmp_path / "other", seed=3)  # same id, other hash
    fresh = make_model_dir(tmp_path / "fresh", repo="test-org/never-registered")
    password = "pw-" + bytes(Account.create().key).hex()[:20]
    ks = tmp_path / "ks.json"
    ks.write_text(json.dumps(Account.encrypt(key, password, kdf="pbkdf2", iterations=2)))
    base = {"OSSCTL_RPC_URL": anvil.url, "OSSCTL_REGISTRY_ADDRESS": addr}
    env = {**base, "OSSCTL_PRIVATE_KEY": key}
    env_bare = {**base, "OWNER_PRIVATE_KEY": key[2:].upper()}  # 0x-less, other case
    env_ks = {**base, "OSSCTL_KEYSTORE_PASSWORD": password}

    runs = [
        run_cli("-v", "register", str(model), "--dry-run", env=env),
        run_cli("-v", "--json", "register", str(model), "--yes", env=env_bare),
        run_cli("-v", "register", str(model), env=env),
        run_cli("--json", "register", str(other), "--yes", env=env),  # conflict
        run_cli("-v", "registry", "deactivate", str(model), "--yes", "--keystore", str(ks), env=env_ks),
        run_cli("--json", "registry", "reactivate", str(model), "--yes", "--keystore", str(ks), env=env_ks),
        run_cli("registry", "deactivate", str(model), "--yes", "--keystore", str(ks),
                env={**base, "OSSCTL_KEYSTORE_PASSWORD": "wrong-" + password}),
        run_cli("--json", "registry", "status", str(model), env=env),
        run_cli("--json", "registry", "list", env=env),
        run_cli("registry", "list", "--chain-id", "1", env=env),
        run_cli("register", str(model), "--registry", "0xnope", env=env),
    ]
    assert [r.code for r in runs] == [0, 0, 0, 6, 0, 0, 2, 0, 0, 2, 2], [(r.code, r.err) for r in runs]

    # the traceback path: errors raised after the key was loaded, with OSSCTL_DEBUG=1
    debug = {"OSSCTL_DEBUG": "1", "OSSCTL_HOME": str(home)}
    procs = [
        run_proc("registry", "deactivate", str(model), "--yes", "--keystore", str(ks),
                 env={**env_ks, **debug, "OSSCTL_KEYSTORE_PASSWORD": "x" + password}),  # wrong password
        run_proc("register", str(fresh), "--yes", env={**base, **debug, "OSSCTL_PRIVATE_KEY": key + "00"}),  # malformed
    ]
    anvil.set_balance(acct.address, 0)
    procs.append(run_proc("registry", "deactivate", str(model), "--yes", env={**env, **debug}))  # insufficient funds
    assert all(p.code != 0 and "Traceback" in p.err for p in procs), [(p.code, p.out, p.err) for p in procs]
    assert "wrong password" in procs[0].err and "not a private key" in procs[1].err
    assert "insufficient funds" in procs[2].err

    for r in runs + procs:
        assert not _leaks(r.out + r.err, key, password, key + "00"), (r.out, r.err)
