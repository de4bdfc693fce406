"""Shared test set-up. Fixtures for each real service live in tests/plugins/*.py (one
module per service) and are loaded here.

Services come from scripts/test.sh through environment variables:
- OSSCTL_TEST_DOCKER_HOST: a private dockerd socket (unix://...)
- OSSCTL_TEST_LLAMA_BIN: directory with llama-server and llama-gguf-split (CPU build)
- OSSCTL_TEST_NODE_BIN: node_modules/.bin with anvil and solcjs

Without one, tests that need it are skipped locally and *fail* under CI=true, so a CI
run can never pass by skipping.
"""

from __future__ import annotations

import os
import pkgutil
from pathlib import Path

import pytest

pytest_plugins = [f"tests.plugins.{m.name}" for m in pkgutil.iter_modules([str(Path(__file__).parent / "plugins")])]


def require_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        msg = f"{name} is not set (run the tests through scripts/test.sh)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return value


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty OSSCTL_HOME, with no config file and no inherited secrets."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("OSSCTL_HOME", str(h))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    for var in ("OSSCTL_CONFIG", "OSSCTL_MODELS_DIR", "OSSCTL_PRIVATE_KEY", "OWNER_PRIVATE_KEY", "HF_TOKEN",
                "OSSCTL_RPC_URL", "OSSCTL_REGISTRY_ADDRESS", "OSSCTL_CHAIN_ID", "DOCKER_HOST"):
        monkeypatch.delenv(var, raising=False)
    return h
