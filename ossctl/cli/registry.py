"""`ossctl register` and `ossctl registry …`: the composite hash on the ModelRegistry.

Settings (flag > env > config file):
  --rpc-url   OSSCTL_RPC_URL           [registry] rpc_url
  --registry  OSSCTL_REGISTRY_ADDRESS  [registry] address
  --chain-id  OSSCTL_CHAIN_ID          [registry] chain_id
Signing key: OSSCTL_PRIVATE_KEY / OWNER_PRIVATE_KEY, or --keystore FILE (password from
OSSCTL_KEYSTORE_PASSWORD or a prompt). There is no flag that takes a key.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

import typer

from ossctl.cli import output
from ossctl.cli.options import ChainId, Keystore, ReceiptTimeout, RegistryAddress, RpcUrl, TxDryRun, Yes

# Library modules are imported inside the commands: `ossctl --help` imports this module,
# and they would cost it start-up time (python -X importtime -m ossctl --help).

registry_app = typer.Typer(help="Inspect and manage the on-chain ModelRegistry.", no_args_is_help=True)
_RECEIPT_TIMEOUT = 120.0  # seconds


def _interactive() -> bool:
    try:
        return sys.stdin.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _connect(st: output.State, rpc_url: Optional[str], registry: Optional[str], chain_id: Optional[str],
             timeout: Optional[float] = None, need_registry: bool = True):
    from ossctl.registry import client

    conn = client.from_settings(st.settings, rpc_url=rpc_url, registry=registry, chain_id=chain_id,
                                receipt_timeout=timeout, with_registry=need_registry)
    if need_registry:
        conn.need_registry()
    return conn


def _key(st: output.State, keystore: Optional[str]):
    from ossctl.registry import keys

    prompt = None
    if _interactive():
        def prompt(text: str) -> str:
            return typer.prompt(text.rstrip(": "), hide_input=True, err=True)
    src = keys.key_source(st.settings.env, keystore or None, prompt)
    if src is not None and src.note:
        output.info(f"note: {src.note}")
    return src


def _confirmer(yes: bool):
    """``None`` with --yes; a terminal prompt when interactive; otherwise a callback that
    refuses (called only when a transaction is about to be sent)."""
    from ossctl.errors import UsageError

    if yes:
        return None

    def confirm(summary: dict[str, Any]) -> bool:
        if not _interactive():
            raise UsageError("refusing to send a transaction without confirmation: no terminal to ask on",
                             hint="re-run with --yes (check it first with --dry-run)")
        output.info(_tx_summary(summary))
        return typer.confirm("Send this transaction?", default=False, err=True)

    return confirm


def _tx_summary(summary: dict[str, Any]) -> str:
    tx = summary.get("tx") or {}
    lines = [f"{summary['action']}: {tx.get('function')}({', '.join(map(str, tx.get('args') or []))})",
             f"  from   {tx.get('from')}", f"  to     {tx.get('to') or '(new contract)'}",
             f"  chain  {summary.get('chain_id')}", f"  gas    {tx.get('gas')} (limit)"]
    if tx.get("fee_mode") == "eip1559":
        lines.append(f"  fees   max {_gwei(tx.get('max_fee_per_gas'))}, tip {_gwei(tx.get('max_priority_fee_per_gas'))}")
    else:
        lines.append(f"  fees   gas price {_gwei(tx.get('gas_price'))}")
    if tx.get("nonce") is not None:
        lines.append(f"  nonce  {tx['nonce']}")
    return "\n".join(lines)


def _gwei(wei: Any) -> str:
    return "n/a" if wei is None else f"{int(wei) / 1e9:.6g} gwei"


def _calls(st: output.State, conn) -> None:
    if st.verbose:
        output.info(f"{len(conn.calls)} JSON-RPC calls: {' '.join(conn.calls)}")


def _tx_lines(res: dict[str, Any]) -> list[str]:
    tx = res.get("tx")
    if not tx:
        return []
    if tx.get("hash"):
        return [f"  tx        {tx['hash']} (block {tx['block_number']}, gas used {tx['gas_used']})"]
    summary = _tx_summary({"action": "dry-run", "chain_id": res.get("chain_id"), "tx": tx})
    return ["  would send:", *("  " + line for line in summary.splitlines())]


def register_cmd(
    ctx: typer.Context,
    model: str = typer.Argument(..., metavar="MODEL|DIR", help="Model alias, owner/repo, or model directory."),
    rpc_url: RpcUrl = None,
    registry: RegistryAddress = None,
    chain_id: ChainId = None,
    keystore: Keystore = None,
    dry_run: TxDryRun = False,
    yes: Yes = False,
    timeout: ReceiptTimeout = _RECEIPT_TIMEOUT,
) -> None:
    """Register the model's composite hash on the ModelRegistry (idempotent).

    Refuses unless the files verify. Sends nothing when the model is already registered
    with the same hash; exit code 6 when it is registered with a different one.
    """
    from ossctl.registry import client

    st = output.state(ctx)
    conn = _connect(st, rpc_url, registry, chain_id, timeout)
    res = client.register_model(st.settings, conn, model, _key(st, keystore), dry_run=dry_run,
                                confirm=_confirmer(yes))
    _calls(st, conn)

    def human() -> str:
        head = {"registered": "registered", "already-registered": "already registered with the same hash; "
                "nothing sent", "dry-run": "dry run: not registered yet; nothing sent"}[res["action"]]
        lines = [f"{head}", f"  model     {res['repo']}/{res['file']}", f"  model id  {res['model_id']}",
                 f"  sha256    {res['composite_sha256']}", f"  registry  {res['registry']} (chain {res['chain_id']})"]
        if res["from"]:
            lines.append(f"  from      {res['from']}")
        lines += _tx_lines(res)
        if res["action"] == "already-registered" and res["active"] is False:
            lines.append(f"  note      the entry is deactivated: `ossctl registry reactivate {res['model_id']}`")
        return "\n".join(lines)

    output.emit(st, res, human)


@registry_app.command("status")
def status_cmd(
    ctx: typer.Context,
    model: str = typer.Argument(..., metavar="MODEL|DIR|ID", help="Model alias, owner/repo, directory, or 0x model id."),
    rpc_url: RpcUrl = None,
    registry: RegistryAddress = None,
    chain_id: ChainId = None,
) -> None:
    """Approved / trusted / active, and the on-chain hash against the local composite.

    The local composite is the manifest's (`ossctl verify` checks the files against it).

    Exit 0 when the hashes match (or for an id, when registered), 3 when not registered,
    6 on a mismatch; the report is printed in every case. When the model directory holds
    a signature (model.sig), the composite of the digests it signs is compared with the
    on-chain hash too (a mismatch: exit 6); `ossctl verify --signer` checks who signed.
    """
    from ossctl.errors import EXIT_CONFLICT, EXIT_NOT_FOUND
    from ossctl.registry import client

    st = output.state(ctx)
    conn = _connect(st, rpc_url, registry, chain_id)
    res = client.status(conn, *client.resolve(st.settings, model))
    res["signature"] = client.signature_vs_chain(st.settings, model, res["onchain_sha256"])
    _calls(st, conn)

    def human() -> str:
        verdict = {"match": "match", "mismatch": "MISMATCH", "not-registered": "not registered",
                   "unknown": "(no local manifest)"}[res["hash"]]
        rows = [("model", f"{res['repo']}/{res['file']}" if res["repo"] else "?"), ("model id", res["model_id"]),
                ("registry", f"{res['registry']} (chain {res['chain_id']})"), ("hash", verdict)]
        if res["registered"]:
            rows += [("approved", _yn(res["approved"])), ("trusted", _yn(res["trusted"])),
                     ("active", _yn(res["active"])), ("tier", res["tier"]), ("registered", res["registered_at"]),
                     ("on chain", res["onchain_sha256"])]
        rows.append(("local", res["local_sha256"] or "n/a"))
        sig = res["signature"]
        if sig and sig["status"] != "unsigned":
            rows.append(("signed", f"{sig['composite_sha256']} ({sig['status']} on chain; {sig['signed_by']})"))
        return "\n".join(f"{k:<10}  {v}" for k, v in rows)

    output.emit(st, res, human)
    if res["hash"] == "not-registered":
        raise typer.Exit(EXIT_NOT_FOUND)
    if res["hash"] == "mismatch" or (res["signature"] or {}).get("status") == "mismatch":
        raise typer.Exit(EXIT_CONFLICT)


def _yn(v: Any) -> str:
    return "yes" if v else "no"


@registry_app.command("list")
def list_cmd(
    ctx: typer.Context,
    rpc_url: RpcUrl = None,
    registry: RegistryAddress = None,
    chain_id: ChainId = None,
) -> None:
    """Every registered model: id, repo, file, hash, tier, active."""
    from ossctl.registry import client

    st = output.state(ctx)
    conn = _connect(st, rpc_url, registry, chain_id)
    res = client.list_models(conn)
    _calls(st, conn)

    def human() -> str:
        if not res["models"]:
            return f"no models registered in {res['registry']} (chain {res['chain_id']})"
        return output.table(["MODEL ID", "REPO", "FILE", "SHA256", "TIER", "ACTIVE"],
                            [(m["model_id"][:10] + "…", m["repo"], m["file"], m["sha256"][:16] + "…", m["tier"],
                              _yn(m["active"])) for m in res["models"]])

    output.emit(st, res, human)


def _set_active(ctx: typer.Context, target: str, active: bool, rpc_url, registry, chain_id, keystore, dry_run,
                yes, timeout) -> None:
    from ossctl.registry import client

    st = output.state(ctx)
    conn = _connect(st, rpc_url, registry, chain_id, timeout)
    key = _key(st, keystore)
    mid = client.resolve(st.settings, target)[0]
    res = client.set_active(conn, mid, active, key, dry_run=dry_run, confirm=_confirmer(yes))
    _calls(st, conn)

    def human() -> str:
        head = {"deactivated": "deactivated", "reactivated": "reactivated", "already-active": "already active; "
                "nothing sent", "already-inactive": "already inactive; nothing sent",
                "dry-run": "dry run; nothing sent"}[res["action"]]
        lines = [head, f"  model     {res['repo']}/{res['file']}", f"  model id  {res['model_id']}"]
        return "\n".join(lines + _tx_lines(res))

    output.emit(st, res, human)


_TARGET = typer.Argument(..., metavar="ID|MODEL", help="0x model id, model alias, owner/repo, or model directory.")


@registry_app.command("deactivate")
def deactivate_cmd(ctx: typer.Context, target: str = _TARGET, rpc_url: RpcUrl = None,
                   registry: RegistryAddress = None, chain_id: ChainId = None, keystore: Keystore = None,
                   dry_run: TxDryRun = False, yes: Yes = False, timeout: ReceiptTimeout = _RECEIPT_TIMEOUT) -> None:
    """Mark a registered model inactive (owner only). Idempotent."""
    _set_active(ctx, target, False, rpc_url, registry, chain_id, keystore, dry_run, yes, timeout)


@registry_app.command("reactivate")
def reactivate_cmd(ctx: typer.Context, target: str = _TARGET, rpc_url: RpcUrl = None,
                   registry: RegistryAddress = None, chain_id: ChainId = None, keystore: Keystore = None,
                   dry_run: TxDryRun = False, yes: Yes = False, timeout: ReceiptTimeout = _RECEIPT_TIMEOUT) -> None:
    """Mark a deactivated model active again (owner only). Idempotent."""
    _set_active(ctx, target, True, rpc_url, registry, chain_id, keystore, dry_run, yes, timeout)


@registry_app.command("deploy-contract")
def deploy_cmd(ctx: typer.Context, rpc_url: RpcUrl = None, chain_id: ChainId = None,
               keystore: Keystore = None, dry_run: TxDryRun = False, yes: Yes = False,
               timeout: ReceiptTimeout = _RECEIPT_TIMEOUT) -> None:
    """Deploy ossctl's ModelRegistry (for local and test chains); prints its address.

    The sender becomes the owner. Put the address in OSSCTL_REGISTRY_ADDRESS or the
    config file's [registry] address.
    """
    from ossctl.registry import client

    st = output.state(ctx)
    conn = _connect(st, rpc_url, None, chain_id, timeout, need_registry=False)
    res = client.deploy_contract(conn, _key(st, keystore), dry_run=dry_run, confirm=_confirmer(yes))
    _calls(st, conn)
    if res["address"] and not st.json:
        output.info(f"deployed ModelRegistry (owner {res['owner']}); use it with "
                    f"OSSCTL_REGISTRY_ADDRESS={res['address']}")
    output.emit(st, res, lambda: res["address"] or _tx_summary({**res, "action": "dry-run"}))

