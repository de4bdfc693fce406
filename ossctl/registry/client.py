"""The ModelRegistry operations: read state, register, deactivate / reactivate, deploy.

Transport, fees and sending live in :mod:`ossctl.registry.rpc` (the only module that
imports web3); this module says what to ask the contract and what the answers mean. Each
operation makes one explicit request per step, so the number of calls is known and small:

- already registered, same hash: ``eth_chainId`` + one ``eth_call`` (2 calls);
- fresh registration: chain id, ``getModel``, ``eth_feeHistory``, ``eth_estimateGas``,
  pending nonce, ``eth_sendRawTransaction``, receipt, read-back = 8 calls when the node
  mines promptly.

The owner check costs nothing on the happy path: ``eth_estimateGas`` simulates the exact
call from the sender, and only when it reverts do we read ``owner()`` and ``getModel`` to
say *why* (not the owner, registered meanwhile, ...) before anything is sent.

Errors are :class:`ossctl.errors.OssctlError` subclasses; nothing here prints.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

from ossctl.artifacts import manifest as mf
from ossctl.artifacts.hashing import model_id as _model_id
from ossctl.errors import ConflictError, IntegrityError, NotFoundError, OssctlError, RemoteError, UsageError
from ossctl.registry.keys import KeySource
from ossctl.registry.rpc import (
    Confirm, Connection, RpcError, TxPlan, artifact, checksum_address, connect, encode_call, estimate, execute, signer,
)

_HEX_ID = re.compile(r"^0x[0-9a-fA-F]{64}$")


# ---------------------------------------------------------------- connection from settings

def configured_rpc_url(settings, flag: str | None = None) -> str | None:
    """The RPC URL: ``flag`` > ``OSSCTL_RPC_URL`` > ``[registry] rpc_url``."""
    return settings.value("registry.rpc_url", "OSSCTL_RPC_URL", flag)


def from_settings(settings, *, rpc_url: str | None = None, registry: str | None = None,
                  chain_id: str | None = None, receipt_timeout: float | None = None,
                  with_registry: bool = True) -> Connection:
    """The one way to open the registry connection: each of URL, registry address and
    chain id from its flag (given here) > ``OSSCTL_RPC_URL`` / ``OSSCTL_REGISTRY_ADDRESS``
    / ``OSSCTL_CHAIN_ID`` > the config file's ``[registry]``. ``with_registry=False``
    leaves the address out (deploying a new contract). No network yet; raises
    :class:`UsageError` for a missing or malformed value (see :func:`rpc.connect`)."""
    return connect(configured_rpc_url(settings, rpc_url),
                   settings.value("registry.address", "OSSCTL_REGISTRY_ADDRESS", registry) if with_registry else None,
                   settings.value("registry.chain_id", "OSSCTL_CHAIN_ID", chain_id),
                   receipt_timeout)


# ---------------------------------------------------------------- small pure helpers

def parse_model_id(text: str) -> str | None:
    """``0x`` + 64 hex digits → lower-case id; anything else → ``None`` (a model name)."""
    return text.lower() if _HEX_ID.match(text.strip()) else None


def hash_to_bytes32(composite_hex: str) -> bytes:
    h = composite_hex.lower().removeprefix("0x")
    if not re.fullmatch(r"[0-9a-f]{64}", h):
        raise IntegrityError(f"composite hash {composite_hex!r} is not 32 bytes of hex",
                             hint="re-run `ossctl verify` to rewrite the manifest")
    return bytes.fromhex(h)


def _iso(ts: int) -> str | None:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat() if ts else None



def _not_owner_or(conn: Connection, sender: str, exc: RpcError, what: str) -> OssctlError:
    """Explain a reverted simulation: not the owner, else the revert reason."""
    try:
        (owner,) = conn.call("owner")
    except OssctlError:
        owner = None
    if owner:
        owner = checksum_address(owner, "owner")
    if owner and owner.lower() != sender.lower():
        return UsageError(f"the sender {sender} is not the owner of the registry {conn.registry} "
                          f"(owner: {owner}); only the owner can {what}",
                          hint="use the owner's key (OSSCTL_PRIVATE_KEY / OWNER_PRIVATE_KEY / --keystore)")
    return RemoteError(f"the registry would reject {what}: {exc.reason or exc.message}",
                       hint="nothing was sent; check `ossctl registry status`")




# ---------------------------------------------------------------- reading

def read_model(conn: Connection, model_id: str) -> dict[str, Any] | None:
    """The on-chain record for ``model_id``, or ``None`` when not registered."""
    ((repo, file_name, h, tier, active, ts),) = conn.call("getModel", [bytes.fromhex(model_id[2:])])
    if ts == 0 and h == b"\0" * 32:
        return None
    return {"repo": repo, "file": file_name, "sha256": bytes(h).hex(), "tier": int(tier),
            "active": bool(active), "timestamp": int(ts), "registered_at": _iso(int(ts))}


def status(conn: Connection, model_id: str, local_sha256: str | None, repo: str | None = None,
           file_name: str | None = None) -> dict[str, Any]:
    """Approved / trusted / active, and the on-chain hash against the local composite
    (``match`` / ``mismatch`` / ``not-registered``)."""
    cid = conn.chain_id()
    rec = read_model(conn, model_id)
    approved = trusted = None
    if rec is not None:
        (approved,) = conn.call("isModelApproved", [bytes.fromhex(model_id[2:])])
        (trusted,) = conn.call("isTrustedModel", [bytes.fromhex(model_id[2:])])
    if rec is None:
        verdict = "not-registered"
    elif local_sha256 is None:
        verdict = "unknown"
    else:
        verdict = "match" if rec["sha256"] == local_sha256.lower() else "mismatch"
    return {
        "model_id": model_id, "repo": rec["repo"] if rec else repo, "file": rec["file"] if rec else file_name,
        "registry": conn.registry, "chain_id": cid, "registered": rec is not None,
        "approved": approved, "trusted": trusted, "active": rec["active"] if rec else None,
        "tier": rec["tier"] if rec else None,
        "onchain_sha256": rec["sha256"] if rec else None, "local_sha256": local_sha256,
        "hash": verdict, "registered_at": rec["registered_at"] if rec else None,
    }


def list_models(conn: Connection) -> dict[str, Any]:
    cid = conn.chain_id()
    (ids,) = conn.call("getAllModels")
    models = []
    for raw in ids:
        mid = "0x" + bytes(raw).hex()
        rec = read_model(conn, mid) or {}
        models.append({"model_id": mid, "repo": rec.get("repo"), "file": rec.get("file"),
                       "sha256": rec.get("sha256"), "tier": rec.get("tier"), "active": rec.get("active"),
                       "registered_at": rec.get("registered_at")})
    return {"registry": conn.registry, "chain_id": cid, "models": models}


# ---------------------------------------------------------------- writing

def register(conn: Connection, repo: str | None, first_file: str, composite_sha256: str,
             manifest_model_id: str | None, key: KeySource | None, *, dry_run: bool = False,
             confirm: Confirm | None = None, check_later: str = "ossctl registry status MODEL") -> dict[str, Any]:
    """Put ``composite_sha256`` on chain for ``repo/first_file``, idempotently.

    Returns the ``register`` JSON shape with ``action`` one of ``registered``,
    ``already-registered``, ``dry-run``. Raises :class:`ConflictError` when the id is
    registered with a different hash; :class:`UsageError` (no key, not the owner, wrong
    chain); :class:`NotFoundError` (no contract); :class:`RemoteError` (RPC, funds,
    receipt timeout)."""
    if not repo:
        raise UsageError("the manifest names no hub repo, and the model id is keccak256(repo/file)",
                         hint="download the model with `ossctl download` so the manifest records its repo")
    model_id = _model_id(repo, first_file)
    if manifest_model_id and manifest_model_id.lower() != model_id:
        raise IntegrityError(f"the manifest's model_id {manifest_model_id} is not keccak256({repo}/{first_file})",
                             hint="re-run `ossctl verify` to rewrite the manifest")
    digest = hash_to_bytes32(composite_sha256)
    registry = conn.need_registry()
    out: dict[str, Any] = {"action": None, "model_id": model_id, "repo": repo, "file": first_file,
                           "composite_sha256": digest.hex(), "onchain_sha256": None, "registry": registry,
                           "chain_id": conn.chain_id(), "from": None, "active": None, "tx": None}

    def settled(rec: dict[str, Any]) -> dict[str, Any]:
        if rec["sha256"] != digest.hex():
            raise ConflictError(
                f"{repo}/{first_file} is already registered (id {model_id}) with a different hash: "
                f"on chain {rec['sha256']}, local {digest.hex()}",
                hint="the registry cannot change a stored hash: check your files with `ossctl verify --full`; "
                     "if the new files are right, deactivate the old entry (`ossctl registry deactivate "
                     f"{model_id}`) and publish under a new file name")
        out.update(action="already-registered", onchain_sha256=rec["sha256"], active=rec["active"])
        return out

    rec = read_model(conn, model_id)
    if rec is not None:
        return settled(rec)

    key, sender = signer(key, dry_run)
    out["from"] = sender
    plan = TxPlan("addTrustedModel", [repo, first_file, "0x" + digest.hex()], registry, sender,
                  encode_call("addTrustedModel", [repo, first_file, digest]))

    def explain(exc: RpcError) -> OssctlError:
        if "already exists" in exc.reason.lower():
            return _RaceSettled()
        return _not_owner_or(conn, sender, exc, "register models")

    try:
        estimate(conn, plan, explain)
    except _RaceSettled:  # someone registered it between our read and the estimate
        rec = read_model(conn, model_id)
        if rec is not None:
            return settled(rec)
        raise RemoteError("the registry says the model exists but returns no record") from None
    receipt = execute(conn, key, plan, out, action="register", dry_run=dry_run, confirm=confirm,
                      check_later=check_later)
    if receipt is None:
        return out
    (stored,) = conn.call("getModelHash", [bytes.fromhex(model_id[2:])])
    if bytes(stored) != digest:
        raise IntegrityError(f"transaction {receipt['transactionHash']} was mined but the registry stores "
                             f"{bytes(stored).hex()} for {model_id}, not {digest.hex()}",
                             hint=f"inspect it with `{check_later}`")
    out.update(action="registered", onchain_sha256=digest.hex(), active=True)
    return out


class _RaceSettled(OssctlError):
    pass


def set_active(conn: Connection, model_id: str, active: bool, key: KeySource | None, *,
               dry_run: bool = False, confirm: Confirm | None = None) -> dict[str, Any]:
    """Deactivate (``active=False``) or reactivate a registered model, idempotently.
    ``action``: ``deactivated`` / ``reactivated`` / ``already-inactive`` /
    ``already-active`` / ``dry-run``."""
    registry = conn.need_registry()
    verb = "reactivate" if active else "deactivate"
    out: dict[str, Any] = {"action": None, "model_id": model_id, "registry": registry, "chain_id": conn.chain_id(),
                           "from": None, "repo": None, "file": None, "active": None, "tx": None}
    rec = read_model(conn, model_id)
    if rec is None:
        raise NotFoundError(f"model {model_id} is not registered in {registry}",
                            hint="list registered models with `ossctl registry list`")
    out.update(repo=rec["repo"], file=rec["file"], active=rec["active"])
    if rec["active"] == active:
        out["action"] = "already-active" if active else "already-inactive"
        return out
    key, sender = signer(key, dry_run)
    out["from"] = sender
    fn = "reactivateModel" if active else "deactivateModel"
    plan = TxPlan(fn, [model_id], registry, sender, encode_call(fn, [bytes.fromhex(model_id[2:])]))
    estimate(conn, plan, lambda exc: _not_owner_or(conn, sender, exc, f"{verb} models"))
    if execute(conn, key, plan, out, action=verb, dry_run=dry_run, confirm=confirm,
               check_later=f"ossctl registry status {model_id}") is None:
        return out
    out.update(action=verb + "d", active=active)
    return out


def deploy_contract(conn: Connection, key: KeySource | None, *, dry_run: bool = False,
                    confirm: Confirm | None = None) -> dict[str, Any]:
    """Deploy ossctl's ModelRegistry (the shipped artifact); the sender becomes owner.
    ``action``: ``deployed`` / ``dry-run``; ``address`` is the new contract."""
    art = artifact()
    cid = conn.chain_id()
    key, sender = signer(key, dry_run)
    out: dict[str, Any] = {"action": None, "address": None, "chain_id": cid, "from": sender,
                           "owner": sender, "compiler": art["compiler"]["version"], "tx": None}
    plan = TxPlan("constructor", [], None, sender, art["bytecode"])
    evm_hint = ("the contract is compiled for the cancun EVM; this chain's EVM looks older "
                "(rebuild with another evmVersion in scripts/build_contract.py)")
    estimate(conn, plan, lambda exc: RemoteError(
        f"deploying the contract would fail: {exc.reason or exc.message}",
        hint=evm_hint if re.search(r"notactivated|invalid opcode", exc.message.lower()) else None))
    receipt = execute(conn, key, plan, out, action="deploy-contract", dry_run=dry_run, confirm=confirm,
                      check_later="ossctl registry list --registry ADDRESS")
    if receipt is None:
        return out
    out.update(action="deployed", address=checksum_address(receipt["contractAddress"], "contract address"))
    return out


def register_model(settings, conn: Connection, model: str, key: KeySource | None, *, dry_run: bool = False,
                   confirm: Confirm | None = None) -> dict[str, Any]:
    """``ossctl register``: find the model's directory (alias, owner/repo or directory),
    require its files to verify against the manifest, then :func:`register` its
    composite. Raises what :func:`ossctl.artifacts.manifest.require_verified` and
    :func:`register` raise."""
    directory = mf.locate_model_dir(settings, model)
    m = mf.require_verified(directory)
    return register(conn, m.repo, m.first_file, m.composite_sha256, m.model_id, key, dry_run=dry_run,
                    confirm=confirm, check_later=f"ossctl registry status {directory}")


def resolve(settings, model: str) -> tuple[str, str | None, str | None, str | None]:
    """ID|MODEL|DIR → (model id, local composite or None, repo, first file): a ``0x``
    id as given, else the manifest of the model's directory. Raises :class:`UsageError`
    when the manifest names no hub repo (then there is no model id)."""
    mid = parse_model_id(model)
    if mid is not None:
        return mid, None, None, None
    m = mf.read_manifest(mf.locate_model_dir(settings, model))
    if not m.repo:
        raise UsageError(f"the manifest for {model} names no hub repo, so it has no model id",
                         hint="pass the 0x model id instead")
    return _model_id(m.repo, m.first_file), m.composite_sha256, m.repo, m.first_file


def signature_vs_chain(settings, model: str, onchain_sha256: str | None) -> dict[str, Any] | None:
    """Whether the composite of the digests a model's ``model.sig`` signs is the one
    registered: ``{"status": "match" | "mismatch" | "not-registered" | "unsigned",
    "composite_sha256", "signed_by"}``; None for a ``0x`` id (no directory to look in).
    Who signed is not checked here (``ossctl verify --signer`` does): this says whether
    the two anchors name the same bytes. Raises :class:`IntegrityError` for a bundle that
    is not one."""
    from ossctl.artifacts import signing

    if parse_model_id(model) is not None:
        return None
    path = signing.sig_path(mf.locate_model_dir(settings, model))
    if not path.exists():
        return {"status": "unsigned", "composite_sha256": None, "signed_by": None}
    st = signing.read_statement(path)
    composite = st.composite_sha256()
    verdict = ("not-registered" if onchain_sha256 is None
               else "match" if composite and onchain_sha256.lower() == composite else "mismatch")
    return {"status": verdict, "composite_sha256": composite, "signed_by": st.signed_by}


def status_for_manifest(settings, manifest) -> dict[str, Any]:
    """:func:`status` for a local manifest with the connection taken from ``settings``
    (``[registry]`` / ``OSSCTL_RPC_URL`` / ``OSSCTL_REGISTRY_ADDRESS`` /
    ``OSSCTL_CHAIN_ID``); for other stages, e.g. a deploy that requires the model to be
    registered (``hash == "match"`` and ``active``)."""
    conn = from_settings(settings)
    if not manifest.repo:
        raise UsageError("the manifest names no hub repo, so the model has no registry id")
    return status(conn, _model_id(manifest.repo, manifest.first_file), manifest.composite_sha256,
                  manifest.repo, manifest.first_file)
