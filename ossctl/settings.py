"""Paths and settings, resolved from an environment passed in (never read all over).

Precedence, lowest first: built-in defaults < config file < ``OSSCTL_*`` environment
variables < command-line flags. Flags are applied by the caller through
:meth:`Settings.value`'s ``flag`` argument.

Paths:
- home (``--home`` > ``OSSCTL_HOME`` > ``$XDG_DATA_HOME/ossctl`` > ``~/.local/share/ossctl``):
  models, releases, locks, user profiles (``home/profiles``).
- config file (``OSSCTL_CONFIG`` > ``home/config.toml`` if present >
  ``$XDG_CONFIG_HOME/ossctl/config.toml``): TOML with sections such as ``[registry]``,
  ``[download]``, ``[serve]``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ossctl.errors import UsageError


# Every key a config file may set, by section (what ``Settings.value`` is asked for).
CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "download": ("models_dir", "retries", "disk_margin"),
    "registry": ("rpc_url", "address", "chain_id"),
    "serve": ("docker_host",),
    "bench": ("users", "duration"),
}


@dataclass(frozen=True)
class Settings:
    home: Path
    config_path: Path
    config: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # config-file keys or sections ossctl does not know (with "did you mean")

    @property
    def models_dir(self) -> Path:
        """Where downloaded models live: ``[download] models_dir`` or ``OSSCTL_MODELS_DIR``,
        else ``home/models``."""
        return Path(self.value("download.models_dir", "OSSCTL_MODELS_DIR", default=str(self.home / "models")))

    @property
    def profiles_dir(self) -> Path:
        return self.home / "profiles"

    @property
    def state_dir(self) -> Path:
        """Releases, locks and other state ossctl writes about what it runs."""
        return self.home / "state"

    @property
    def cache_dir(self) -> Path:
        """Caches ossctl may rebuild (e.g. the last bench result per profile)."""
        return self.home / "cache"

    def value(self, key: str, env_name: str | None = None, flag: Any = None, default: Any = None) -> Any:
        """Resolve one setting. ``key`` is a dotted path into the config file
        (``"registry.rpc_url"``); ``env_name`` the environment variable; ``flag`` the
        command-line value (``None`` when not given)."""
        if flag is not None:
            return flag
        if env_name and self.env.get(env_name):
            return self.env[env_name]
        node: Any = self.config
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node


def _xdg(env: Mapping[str, str], var: str, fallback: str) -> Path:
    base = env.get(var) or str(Path(env.get("HOME", str(Path.home()))) / fallback)
    return Path(base)


def load_settings(env: Mapping[str, str] | None = None, home: str | Path | None = None,
                  ignore_config: bool = False) -> Settings:
    """Build settings from ``env`` (default ``os.environ``) and an optional ``--home``.
    ``ignore_config`` skips reading the config file (its path is still resolved).

    Raises :class:`UsageError` when the config file exists but is not valid TOML.
    """
    env = dict(os.environ if env is None else env)
    if home is not None:
        home_path = Path(home).expanduser()
    elif env.get("OSSCTL_HOME"):
        home_path = Path(env["OSSCTL_HOME"]).expanduser()
    else:
        home_path = _xdg(env, "XDG_DATA_HOME", ".local/share") / "ossctl"

    if env.get("OSSCTL_CONFIG"):
        config_path = Path(env["OSSCTL_CONFIG"]).expanduser()
    elif (home_path / "config.toml").exists():
        config_path = home_path / "config.toml"
    else:
        config_path = _xdg(env, "XDG_CONFIG_HOME", ".config") / "ossctl" / "config.toml"

    if env.get("OSSCTL_CONFIG") and not ignore_config and not config_path.exists():
        raise UsageError(f"OSSCTL_CONFIG names {config_path}, which does not exist",
                         hint="create the file, fix the path, or unset OSSCTL_CONFIG to use the default")
    config: dict[str, Any] = {}
    if config_path.exists() and not ignore_config:
        try:
            config = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(
                f"config file {config_path} is not valid TOML: {exc}",
                hint="fix the file, or point OSSCTL_CONFIG at another one",
            ) from None
        except OSError as exc:
            raise UsageError(f"cannot read config file {config_path}: {exc.strerror}") from None
    return Settings(home=home_path, config_path=config_path, config=config, env=env,
                    warnings=tuple(config_warnings(config, config_path)))


def config_warnings(config: Mapping[str, Any], path: Path) -> list[str]:
    """One line per unknown section or key in a config file, with a "did you mean" (a
    typo there is otherwise silently ignored and the default applies)."""
    import difflib

    out = []

    def near(word: str, choices) -> str:
        close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
        return f"; did you mean {close[0]!r}?" if close else "; known: " + ", ".join(choices)

    for section, body in config.items():
        if section not in CONFIG_KEYS:
            out.append(f"{path}: unknown section [{section}], ignored{near(section, CONFIG_KEYS)}")
            continue
        if not isinstance(body, Mapping):
            out.append(f"{path}: `{section}` must be a section ([{section}]), ignored")
            continue
        for key in body:
            if key not in CONFIG_KEYS[section]:
                out.append(f"{path}: unknown key {key!r} in [{section}], ignored{near(key, CONFIG_KEYS[section])}")
    return out
