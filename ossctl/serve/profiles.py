"""Serving profiles: TOML files that say which model, image and llama-server settings to
deploy.

Search path, first hit wins: ``./profiles`` (the working directory), ``$OSSCTL_HOME/profiles``,
then the profiles shipped inside the package. ``extends = "other"`` merges another
profile under this one (top-level keys, and the keys of the ``bench`` and ``frontdoor`` tables); a profile
may extend a profile of the same name further down the search path (to tweak a shipped
one). Validation is strict: unknown keys are errors with a "did you mean", types and ranges
are checked, and ``extra_args`` must be a list (never a shell string).

The resolved profile is a plain dict (the cross-area contract): every key of
:data:`DEFAULTS` is present; the optional sampling and reasoning keys (temperature, top_p,
top_k, min_p, repeat_penalty, reasoning_effort, reasoning_format), the ``bench`` /
``frontdoor`` tables and the fleet keys (``hosts``, ``max_unavailable``) only when set.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
import tomllib
from pathlib import Path
from typing import Any

from ossctl import catalog
from ossctl.artifacts.gguf import arch_value, read_gguf_kv
from ossctl.errors import NotFoundError, OssctlError, UsageError
from ossctl.loadtest.gate import validate_bench_cfg
from ossctl.serve.llama_flags import REASONING_EFFORTS, REASONING_FORMATS, managed_flag


class _Frozen(dict):
    """A dict that refuses changes after it is built (so it still serializes to JSON and
    TOML as one, and ``{**p}`` / ``dict(p)`` give a mutable copy)."""

    def _refuse(self, *_a, **_k):
        raise TypeError(f"{type(self).__name__} is frozen: use .replace(...) or dict(...) for a changed copy")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self):
        return (type(self), (dict(self),))

    def __copy__(self):
        return self

    def __deepcopy__(self, _memo):
        return self


class Profile(_Frozen):
    """A resolved, validated profile: frozen, read by attribute (``p.ctx``) or by key
    (``p["ctx"]``); tables (``bench``, ``frontdoor``) are frozen too. Built only by
    :func:`validate` (so every instance passed its rules); :meth:`replace` gives a changed
    copy without validating again (the caller knows why the change is valid)."""

    def __init__(self, data: Any = ()):
        # any dict() argument: dataclasses.asdict rebuilds it from (key, value) pairs
        super().__init__({k: _Frozen(v) if isinstance(v, dict) else v for k, v in dict(data).items()})

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def replace(self, **changes: Any) -> Profile:
        return Profile({**self, **changes})

    def to_dict(self) -> dict[str, Any]:
        """A plain (mutable, JSON-ready) copy, tables included."""
        return {k: dict(v) if isinstance(v, dict) else v for k, v in self.items()}

    def to_toml(self) -> str:
        """What ``ossctl profile show`` prints: the resolved profile as TOML."""
        import tomli_w  # only `profile show` writes TOML; measured 4 ms of import for every other command

        doc = {k: v for k, v in self.to_dict().items() if k != "name" and v is not None}
        return f"# profile {self['name']} (resolved)\n" + tomli_w.dumps(doc)

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "profiles"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")

# Keys every resolved profile carries, with their defaults (None = required).
DEFAULTS: dict[str, Any] = {
    "description": "",
    "model": None,
    "image": None,
    "llama_build": "",
    "host": "127.0.0.1",
    "port": 8080,
    "ctx": None,
    "n_gpu_layers": 99,
    "batch": 2048,
    "ubatch": 512,
    "parallel": 1,
    "flash_attn": "auto",
    "jinja": True,
    "metrics": True,
    "cache_type_k": "f16",
    "cache_type_v": "f16",
    "n_cpu_moe": 0,
    "gpus": "all",
    "tensor_split": [],
    "threads": 0,
    "extra_args": [],
    "api_key_file": "",
    "require_registered": False,
    "strategy": "auto",
    "health_timeout": 900,
    "keep_releases": 3,
    "restart": "unless-stopped",
    # issue 23: `fit` states llama.cpp's --fit explicitly (off: the profile and ossctl's plan
    # decide the placement; on: -ngl and the expert placement are left to llama.cpp);
    # `pin_image`: a deploy whose image resolves to another digest than the serving release
    # is refused without --allow-image-change
    "fit": False,
    "pin_image": False,
}
OPTIONAL = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "reasoning_effort", "reasoning_format",
            "bench", "frontdoor", "hosts", "max_unavailable", "signature", "canary")
TABLES = ("bench", "frontdoor", "signature")  # merged key by key along `extends`
# [[hosts]]: a fleet. Each entry names a Docker engine (`docker_host`: a URL as DOCKER_HOST
# takes, or a `docker context` name) and may override these keys for that host; `upstream`
# is the address the front door reaches that host's release on (default: the host part of
# `docker_host`, 127.0.0.1 for a local socket).
HOST_OVERRIDES = ("model", "host", "port", "gpus", "tensor_split", "n_cpu_moe", "threads", "api_key_file")
HOST_KEYS = ("docker_host", "upstream", *HOST_OVERRIDES)
ALL_KEYS = ("extends", "name", *DEFAULTS, *OPTIONAL)
# [frontdoor]: the stable endpoint clients use (a proxy container, see fleet/frontdoor/);
# kind: the proxy (haproxy: changes through its runtime API, no reload; caddy: a new
# configuration at each change); image: default per kind (FRONTDOOR_IMAGES);
# docker_host: the engine it runs on (default: the first of [[hosts]], else the profile's engine)
FRONTDOOR_DEFAULTS: dict[str, Any] = {"kind": "haproxy", "host": "127.0.0.1", "port": None, "admin_port": 2019,
                                      "image": "", "docker_host": ""}
FRONTDOOR_IMAGES = {"haproxy": "haproxy:2.8", "caddy": "caddy:2"}

FLASH_ATTN = ("on", "off", "auto")
STRATEGIES = ("auto", "recreate", "blue-green")
RESTART = ("no", "always", "unless-stopped", "on-failure")
CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
# an image reference as docker takes it: [registry[:port]/]path[:tag][@digest] (the grammar of
# distribution/reference); anything else (a leading "-", spaces) would reach `docker run` as
# something other than an image
_IMAGE_REF = re.compile(
    r"^(?:(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])(?:\.(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]))*"
    r"(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,})?")


def search_path(settings, cwd: Path | None = None) -> list[Path]:
    """Directories searched for ``NAME.toml``, first hit wins."""
    cwd = Path.cwd() if cwd is None else Path(cwd)
    out: list[Path] = []
    for d in (cwd / "profiles", settings.profiles_dir, SHIPPED_DIR):
        try:
            d = d.resolve()
        except OSError:
            continue
        if d not in out:
            out.append(d)
    return out


def _candidates(settings, name: str, cwd: Path | None) -> list[Path]:
    return [d / f"{name}.toml" for d in search_path(settings, cwd) if (d / f"{name}.toml").is_file()]


def list_profiles(settings, cwd: Path | None = None) -> list[dict[str, Any]]:
    """Every profile name on the search path: name, path of the winning file, the files it
    shadows, and its description / model / extends (read raw, not resolved)."""
    seen: dict[str, dict[str, Any]] = {}
    for d in search_path(settings, cwd):
        if not d.is_dir():
            continue
        for p in sorted(d.glob("*.toml")):
            name = p.stem
            if name in seen:
                seen[name]["shadows"].append(str(p))
                continue
            try:
                raw = _read(p)
            except UsageError:
                raw = {}
            seen[name] = {"name": name, "path": str(p), "shadows": [], "extends": raw.get("extends"),
                          "description": raw.get("description", ""), "model": raw.get("model")}
    return [seen[n] for n in sorted(seen)]


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"profile {path} is not valid TOML: {exc}", hint="fix the file") from None
    except OSError as exc:
        raise UsageError(f"cannot read profile {path}: {exc.strerror}") from None


def load_raw(settings, name: str, cwd: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """The merged (``extends`` applied) but not yet defaulted or validated profile, and the
    chain of files it came from (this profile first). Raises :class:`NotFoundError` for an
    unknown name, :class:`UsageError` for a cycle or unreadable file."""
    if not NAME_RE.match(name or ""):
        raise UsageError(f"invalid profile name {name!r}",
                         hint="profile names are lowercase letters, digits, '.', '_' and '-'")
    chain: list[Path] = []
    layers: list[dict[str, Any]] = []
    current, skip = name, None  # skip: a file already used (self-extension goes further down)
    while True:
        cands = _candidates(settings, current, cwd)
        if skip is not None:
            cands = cands[cands.index(skip) + 1:] if skip in cands else []
        if not cands:
            if not chain:
                known = [p["name"] for p in list_profiles(settings, cwd)]
                close = difflib.get_close_matches(current, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise NotFoundError(f"unknown profile {current!r}",
                                    hint=hint + "see `ossctl profile list`; profiles live in ./profiles or $OSSCTL_HOME/profiles")
            if skip is not None:
                raise UsageError(f"profile {chain[-1]} extends itself ({current!r}), and no profile named "
                                 f"{current!r} comes after it on the search path",
                                 hint="remove `extends`, or name the profile it builds on (see `ossctl profile list`)")
            raise UsageError(f"profile {chain[-1]} extends unknown profile {current!r}",
                             hint="see `ossctl profile list`")
        path = cands[0]
        if path in chain:
            raise UsageError("profile `extends` cycle: " + " -> ".join(str(p) for p in chain + [path]))
        raw = _read(path)
        chain.append(path)
        layers.append(raw)
        parent = raw.get("extends")
        if parent is None:
            break
        if not isinstance(parent, str) or not parent:
            raise UsageError(f"{path}: `extends` must be a profile name (a string)")
        skip = path if parent == current else None
        current = parent
    merged: dict[str, Any] = {}
    for layer in reversed(layers):
        for k, v in layer.items():
            if k in TABLES and isinstance(v, dict) and isinstance(merged.get(k), dict):
                merged[k] = {**merged[k], **v}
            else:
                merged[k] = v
    merged.pop("extends", None)
    return merged, [str(p) for p in chain]


def resolve_profile(settings, name: str, cwd: Path | None = None) -> Profile:
    """The resolved profile (contract shape) for ``name``: ``extends`` applied, defaults
    filled in, validated. Raises :class:`NotFoundError` (unknown name) or
    :class:`UsageError` (invalid, naming the file and the rule)."""
    raw, chain = load_raw(settings, name, cwd)
    try:
        return validate(raw, name)
    except UsageError as exc:
        raise UsageError(f"profile {name!r} ({chain[0]}): {exc.message}", hint=exc.hint) from None


def _unknown(key: str, allowed: tuple[str, ...], where: str) -> UsageError:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(allowed)
    return UsageError(f"unknown key {key!r}{where}", hint=hint)


def _type_name(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table"}.get(type(v), type(v).__name__)


def _int(p: dict, key: str, lo: int | None = None, hi: int | None = None) -> None:
    v = p[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise UsageError(f"`{key}` must be an integer, got {_type_name(v)} {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise UsageError(f"`{key}` must be {rng}, got {v}")


def _num(p: dict, key: str, lo: float, hi: float | None = None) -> None:
    v = p[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise UsageError(f"`{key}` must be a number, got {_type_name(v)} {v!r}")
    if not math.isfinite(v):
        raise UsageError(f"`{key}` must be a finite number, got {v!r}")
    if v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise UsageError(f"`{key}` must be {rng}, got {v}")
    p[key] = float(v)


def _str(p: dict, key: str, choices: tuple[str, ...] | None = None, nonempty: bool = False) -> None:
    v = p[key]
    if not isinstance(v, str):
        raise UsageError(f"`{key}` must be a string, got {_type_name(v)} {v!r}")
    if choices is not None and v not in choices:
        raise UsageError(f"`{key}` must be one of {', '.join(choices)}; got {v!r}")
    if nonempty and not v.strip():
        raise UsageError(f"`{key}` is required")


def _bool(p: dict, key: str) -> None:
    if not isinstance(p[key], bool):
        raise UsageError(f"`{key}` must be true or false, got {_type_name(p[key])} {p[key]!r}")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def validate(raw: dict[str, Any], name: str) -> Profile:
    """Fill defaults into a merged profile and check every rule; returns the resolved dict.
    Pure. Raises :class:`UsageError` naming the first broken rule."""
    for k in raw:
        if k not in ALL_KEYS:
            raise _unknown(k, ALL_KEYS, "")
    p: dict[str, Any] = {}
    for k, default in DEFAULTS.items():
        if k in raw:
            p[k] = raw[k]
        elif default is None:
            raise UsageError(f"`{k}` is required", hint=f"add `{k} = ...` to the profile or a profile it extends")
        else:
            p[k] = list(default) if isinstance(default, list) else default
    for k in OPTIONAL:
        if k in raw:
            p[k] = raw[k]
    p["name"] = name

    for k in ("description", "llama_build", "api_key_file"):
        _str(p, k)
    _str(p, "model", nonempty=True)
    _str(p, "image", nonempty=True)
    _image_ref(p["image"], "image", "ghcr.io/ggml-org/llama.cpp:server")
    _str(p, "host", nonempty=True)
    try:
        ipaddress.ip_address(p["host"])
    except ValueError:
        raise UsageError(f"`host` must be an IP address to publish the port on (127.0.0.1, 0.0.0.0, ...), got {p['host']!r}") from None
    _int(p, "port", 1, 65535)
    _int(p, "ctx", 1)
    _int(p, "n_gpu_layers", 0, 999)
    _int(p, "batch", 1)
    _int(p, "ubatch", 1)
    if p["ubatch"] > p["batch"]:
        raise UsageError(f"`ubatch` ({p['ubatch']}) must not exceed `batch` ({p['batch']})")
    _int(p, "parallel", 1, 256)
    if p["ctx"] < p["parallel"]:
        raise UsageError(f"`ctx` ({p['ctx']}) must be at least `parallel` ({p['parallel']})")
    _str(p, "flash_attn", FLASH_ATTN)
    _bool(p, "jinja")
    _bool(p, "metrics")
    _str(p, "cache_type_k", CACHE_TYPES)
    _str(p, "cache_type_v", CACHE_TYPES)
    _int(p, "n_cpu_moe", 0)
    _int(p, "threads", 0)

    g = p["gpus"]
    if isinstance(g, str):
        if g not in ("all", "none"):
            raise UsageError(f"`gpus` must be \"all\", \"none\" or a list of GPU ids, got {g!r}")
    elif isinstance(g, list):
        if not g or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in g):
            raise UsageError(f"`gpus` list must hold GPU ids (integers >= 0), got {g!r}")
        if len(set(g)) != len(g):
            raise UsageError(f"`gpus` lists a GPU twice: {g!r}")
    else:
        raise UsageError(f"`gpus` must be \"all\", \"none\" or a list of GPU ids, got {_type_name(g)}")
    ts = p["tensor_split"]
    if not isinstance(ts, list) or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x)
                                       or x < 0 for x in ts):
        raise UsageError(f"`tensor_split` must be a list of non-negative numbers, got {ts!r}")
    p["tensor_split"] = [float(x) for x in ts]
    if ts and g == "none":
        raise UsageError("`tensor_split` needs GPUs, but `gpus` is \"none\"")
    if ts and isinstance(g, list) and len(ts) != len(g):
        raise UsageError(f"`tensor_split` has {len(ts)} entries but `gpus` lists {len(g)} GPUs")
    ea = p["extra_args"]
    if isinstance(ea, str):
        raise UsageError("`extra_args` must be a list of strings, not a shell string",
                         hint=f"write it as {ea.split()!r}")
    if not isinstance(ea, list) or any(not isinstance(a, str) for a in ea):
        raise UsageError(f"`extra_args` must be a list of strings, got {ea!r}")
    for a in ea:
        key = managed_flag(a, p)
        if key:
            raise UsageError(f"`extra_args` must not set {a.split('=', 1)[0]}: ossctl sets it from the profile key `{key}`",
                             hint=f"set `{key}` in the profile instead")
    _bool(p, "require_registered")
    _str(p, "strategy", STRATEGIES)
    _num(p, "health_timeout", 1)
    if p["health_timeout"] == int(p["health_timeout"]):
        p["health_timeout"] = int(p["health_timeout"])
    _int(p, "keep_releases", 1, 100)
    _str(p, "restart", RESTART)
    _bool(p, "fit")
    _bool(p, "pin_image")
    if not is_loopback(p["host"]) and not p["api_key_file"]:
        raise UsageError(f"`host` {p['host']} is not a loopback address, so `api_key_file` is required",
                         hint="point api_key_file at a file holding the key (chmod 600), or bind host = \"127.0.0.1\"")
    if "temperature" in p:
        _num(p, "temperature", 0.0, 10.0)
    if "top_p" in p:
        _num(p, "top_p", 0.0, 1.0)
    if "min_p" in p:
        _num(p, "min_p", 0.0, 1.0)
    if "top_k" in p:
        _int(p, "top_k", 0)
    if "repeat_penalty" in p:
        _num(p, "repeat_penalty", 0.0, 10.0)
    for k, choices in (("reasoning_effort", REASONING_EFFORTS), ("reasoning_format", REASONING_FORMATS)):
        if k in p:
            _str(p, k, choices)
    if "reasoning_effort" in p and not p["jinja"]:
        raise UsageError("`reasoning_effort` needs `jinja = true`: the level reaches the model through its chat template")
    if "bench" in p:
        p["bench"] = _validate_bench(p["bench"])
    if "hosts" in p:
        p["hosts"] = _validate_hosts(raw, p["hosts"], name)
        p["max_unavailable"] = p.get("max_unavailable", 1)
        _int(p, "max_unavailable", 1, len(p["hosts"]))
    elif "max_unavailable" in p:
        raise UsageError("`max_unavailable` needs a fleet: add [[hosts]] entries", hint="or remove `max_unavailable`")
    if "canary" in p:  # issue 23: hosts deployed and gated first; the rest only when they pass
        if "hosts" not in p:
            raise UsageError("`canary` needs a fleet: add [[hosts]] entries", hint="or remove `canary`")
        _int(p, "canary", 0, max(len(p["hosts"]) - 1, 0))
    if "frontdoor" in p:
        p["frontdoor"] = _validate_frontdoor(p["frontdoor"], p)
    if "signature" in p:
        p["signature"] = _validate_signature(p["signature"])
    trained = catalog_context(p)
    if trained and p["ctx"] > trained:
        raise UsageError(f"`ctx` {p['ctx']} is above the trained context of {p['model']} ({trained})",
                         hint=f"set ctx <= {trained}")
    return Profile({k: p[k] for k in ("name", *DEFAULTS, *OPTIONAL) if k in p})


def _validate_hosts(raw: dict[str, Any], hosts: Any, name: str) -> list[dict[str, Any]]:
    """``[[hosts]]``: a non-empty list of tables with a unique ``docker_host`` each; every
    override is checked by validating the whole profile as that host will run it."""
    if not isinstance(hosts, list) or not hosts or any(not isinstance(h, dict) for h in hosts):
        raise UsageError("`hosts` must be a non-empty list of tables ([[hosts]] with docker_host = ...)")
    base = {k: v for k, v in raw.items() if k not in ("hosts", "max_unavailable", "canary")}
    seen: set[str] = set()
    out = []
    for i, h in enumerate(hosts, 1):
        for k in h:
            if k not in HOST_KEYS:
                raise _unknown(k, HOST_KEYS, f" in [[hosts]] entry {i}")
        dh = h.get("docker_host")
        if not isinstance(dh, str) or not dh.strip():
            raise UsageError(f"[[hosts]] entry {i} needs `docker_host` (a URL like ssh://user@gpu1, or a docker context name)")
        if dh in seen:
            raise UsageError(f"[[hosts]] lists {dh} twice")
        seen.add(dh)
        if "upstream" in h and (not isinstance(h["upstream"], str) or not h["upstream"].strip()):
            raise UsageError(f"[[hosts]] {dh}: `upstream` must be an address (IP or name) the front door reaches")
        try:
            validate({**base, **{k: h[k] for k in HOST_OVERRIDES if k in h}}, name)
        except UsageError as exc:
            raise UsageError(f"[[hosts]] {dh}: {exc.message}", hint=exc.hint) from None
        out.append(dict(h))
    return out


def host_profile(profile: Profile, host: dict[str, Any]) -> Profile:
    """The resolved profile as ``host`` (one ``[[hosts]]`` entry) runs it: its overrides
    applied, without the fleet keys. Pure."""
    p = {k: v for k, v in profile.items() if k not in ("hosts", "max_unavailable", "canary")}
    p.update({k: host[k] for k in HOST_OVERRIDES if k in host})
    if "tensor_split" in host:
        p["tensor_split"] = [float(x) for x in host["tensor_split"]]
    return Profile(p)


def _validate_bench(b: Any) -> dict[str, Any]:
    """The ``[bench]`` table, checked by the deploy gate's own validator (one validator:
    what ``profile validate`` accepts is what runs after the health gate). The table is
    kept as written, with a single ``users = N`` made a list."""
    validate_bench_cfg(b)
    b = dict(b)
    if isinstance(b.get("users"), int):
        b["users"] = [b["users"]]
    return b


# [signature]: the trust policy for the model's OpenSSF model-signing bundle (model.sig,
# see artifacts/signing.py). require: deploy refuses an unsigned model or another signer's;
# keys: public keys (PEM paths); certificate_chain: PEM roots / intermediates for bundles
# signed with a certificate; identity + oidc_issuer: a Sigstore keyless signer (checking
# it reaches Sigstore's public-good instance over the network).
SIGNATURE_DEFAULTS: dict[str, Any] = {"require": False, "keys": [], "certificate_chain": [], "identity": "",
                                      "oidc_issuer": ""}


def _validate_signature(t: Any) -> dict[str, Any]:
    if not isinstance(t, dict):
        raise UsageError(f"`signature` must be a table, got {_type_name(t)}")
    for k in t:
        if k not in SIGNATURE_DEFAULTS:
            raise _unknown(k, tuple(SIGNATURE_DEFAULTS), " in [signature]")
    s = {k: t.get(k, list(d) if isinstance(d, list) else d) for k, d in SIGNATURE_DEFAULTS.items()}
    if not isinstance(s["require"], bool):
        raise UsageError(f"`signature.require` must be true or false, got {_type_name(s['require'])} {s['require']!r}")
    for k in ("keys", "certificate_chain"):
        if not isinstance(s[k], list) or any(not isinstance(x, str) or not x.strip() for x in s[k]):
            raise UsageError(f"`signature.{k}` must be a list of PEM file paths, got {s[k]!r}")
    for k in ("identity", "oidc_issuer"):
        if not isinstance(s[k], str):
            raise UsageError(f"`signature.{k}` must be a string, got {_type_name(s[k])}")
    if bool(s["identity"]) != bool(s["oidc_issuer"]):
        raise UsageError("`signature.identity` and `signature.oidc_issuer` go together (a Sigstore keyless signer)",
                         hint="set both, or neither")
    if s["require"] and not (s["keys"] or s["certificate_chain"] or s["identity"]):
        raise UsageError("`signature.require = true` needs someone to trust: `keys`, `certificate_chain`, or "
                         "`identity` with `oidc_issuer`", hint='add keys = ["/path/to/signer.pub"] under [signature]')
    return s


def _validate_frontdoor(t: Any, p: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(t, dict):
        raise UsageError(f"`frontdoor` must be a table, got {_type_name(t)}")
    for k in t:
        if k not in FRONTDOOR_DEFAULTS:
            raise _unknown(k, tuple(FRONTDOOR_DEFAULTS), " in [frontdoor]")
    if "port" not in t:
        raise UsageError("`frontdoor.port` is required", hint="add `port = ...` under [frontdoor]: the port clients use")
    f = {k: t.get(k, d) for k, d in FRONTDOOR_DEFAULTS.items()}
    if not isinstance(f["kind"], str) or f["kind"] not in FRONTDOOR_IMAGES:
        raise UsageError(f"`frontdoor.kind` must be one of {', '.join(FRONTDOOR_IMAGES)}, got {f['kind']!r}",
                         hint="haproxy (the default) changes upstreams without a reload; caddy reloads at each change")
    if "image" not in t:
        f["image"] = FRONTDOOR_IMAGES[f["kind"]]
    try:
        _str(f, "host", nonempty=True)
        ipaddress.ip_address(f["host"])
        _int(f, "port", 1, 65535)
        _int(f, "admin_port", 1, 65535)
        _str(f, "image", nonempty=True)
        _str(f, "docker_host")
    except ValueError:
        raise UsageError(f"`frontdoor.host` must be an IP address, got {f['host']!r}") from None
    except UsageError as exc:
        raise UsageError(exc.message.replace("`", "`frontdoor.", 1), hint=exc.hint) from None
    _image_ref(f["image"], "frontdoor.image", "caddy:2")
    if len({f["port"], f["admin_port"], p["port"]}) < 3:
        raise UsageError(f"`frontdoor.port` ({f['port']}), `frontdoor.admin_port` ({f['admin_port']}) and `port` "
                         f"({p['port']}) must differ: they share the host")
    # behind a front door a deploy may go blue-green: the new release is gated on port + 1
    side = p["port"] + 1
    if side > 65535:
        raise UsageError(f"`port` {p['port']} leaves no room for blue-green's side port (port + 1) behind the front door",
                         hint="set `port` to 65534 or lower")
    for k in ("port", "admin_port"):
        if f[k] == side:
            raise UsageError(f"`frontdoor.{k}` ({f[k]}) is blue-green's side port (`port` + 1): a deploy would "
                             f"start the new release on it", hint=f"use another `frontdoor.{k}`, not {side}")
    # an image named after the other proxy would run with this kind's command line and exit
    other = next((k for k in FRONTDOOR_IMAGES if k != f["kind"]
                  and f["image"].split("@")[0].rsplit("/", 1)[-1].split(":")[0] == k), None)
    if other:
        raise UsageError(f"`frontdoor.image` {f['image']!r} is a {other} image, but `frontdoor.kind` is {f['kind']!r}",
                         hint=f"set kind = \"{other}\", or leave `image` out for the {f['kind']} default")
    if f["kind"] == "haproxy" and f["port"] < 1024 and "image" not in t:
        raise UsageError(f"`frontdoor.port` {f['port']} is a privileged port, which the official HAProxy image "
                         "(it runs as a non-root user) cannot listen on",
                         hint="use a port of 1024 or above, or an image of your own that may bind it")
    if not is_loopback(f["host"]) and not p["api_key_file"]:
        raise UsageError(f"`frontdoor.host` {f['host']} is not a loopback address, so `api_key_file` is required",
                         hint="point api_key_file at a file holding the key (chmod 600), or bind host = \"127.0.0.1\"")
    return f


def check_image_ref(v: str, key: str) -> None:
    """An image reference given outside a profile (``--image``); raises :class:`UsageError`
    naming ``key``."""
    _image_ref(v, key, "ghcr.io/ggml-org/llama.cpp:server")


def _image_ref(v: str, key: str, example: str) -> None:
    if len(v) > 255 or not _IMAGE_REF.fullmatch(v):
        raise UsageError(f"`{key}` must be an image reference like {example} (repo[:tag][@digest]), got {v!r}")


def trained_context(model_dir: Path, first_file: str) -> int | None:
    """The model's trained context in tokens, from the GGUF metadata of the first part
    (``<arch>.context_length``); None when unreadable."""
    try:
        kv = read_gguf_kv(Path(model_dir) / first_file)
    except Exception:  # noqa: BLE001 - a broken file is reported by verification, not here
        return None
    v = arch_value(kv, "context_length")
    return int(v) if isinstance(v, int) else None


def check_against_model(profile: dict[str, Any], model_dir: Path, first_file: str) -> int | None:
    """Rules that need the model: ``ctx`` not above the trained context. Returns the trained
    context (None when the metadata has none). Raises :class:`UsageError`."""
    n = trained_context(model_dir, first_file)
    if n is not None and profile["ctx"] > n:
        raise UsageError(f"profile {profile['name']!r}: `ctx` {profile['ctx']} is above the model's trained context {n}",
                         hint=f"set ctx <= {n}")
    return n


def catalog_context(profile: dict[str, Any]) -> int | None:
    entry = catalog.CATALOG.get(profile["model"])
    return entry.context_length if entry else None


def validate_all(settings, names: list[str] | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """Validate ``names`` (default: every profile on the search path). Each result: name,
    ok, path, error, hint, note. When the model is downloaded, ``ctx`` is also checked
    against its GGUF metadata. Raises :class:`NotFoundError` for an unknown given name."""
    # only `profile validate` reads manifests: a top-level import would cost every command
    # that resolves a profile (`status` too) the manifest module and its hashing (~15 ms)
    from ossctl.artifacts.manifest import locate_model_dir, read_manifest

    listed = {p["name"]: p["path"] for p in list_profiles(settings, cwd)}
    if names is None:
        names = sorted(listed)
    out = []
    for n in names:
        r: dict[str, Any] = {"name": n, "ok": True, "path": listed.get(n), "error": None, "hint": None, "note": None}
        try:
            prof = resolve_profile(settings, n, cwd)
            try:
                mdir = locate_model_dir(settings, prof["model"])
                man = read_manifest(mdir)
            except OssctlError:
                r["note"] = "model not downloaded: ctx checked against the catalog only"
            else:
                trained = check_against_model(prof, mdir, man.first_file)
                r["note"] = f"ctx {prof['ctx']} <= trained {trained}" if trained else None
        except NotFoundError:
            if n not in listed:
                raise
            r.update(ok=False, error=f"profile {n!r}: extends an unknown profile")
        except UsageError as exc:
            r.update(ok=False, error=exc.message, hint=exc.hint)
        out.append(r)
    return {"profiles": out}
