"""JSON-RPC transport, fees and sending for the ModelRegistry.

ONLY this module imports web3 (and its eth_* companions). It speaks JSON-RPC through
web3's HTTP provider and ABI codec, one explicit request per step, so the number of calls
is known and small (see :mod:`ossctl.registry.client` for what each operation costs).

Transient transport errors (connection refused / reset, timeouts, HTTP 429 / 502-504,
JSON-RPC rate limits) are retried with exponential backoff. A receipt is awaited by
polling with growing intervals up to a deadline, never a fixed sleep; on timeout the
error names the transaction hash and how to check it later.

Errors are :class:`ossctl.errors.OssctlError` subclasses; nothing here prints.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from ossctl.errors import NotFoundError, OssctlError, RemoteError, UsageError
from ossctl.redact import shown
from ossctl.registry.keys import KeySource, require_key_source

DEFAULT_RECEIPT_TIMEOUT = 120.0  # seconds
REQUEST_TIMEOUT = 30.0  # seconds, one HTTP request
RETRIES = 3  # extra attempts after the first, for transient transport errors
BACKOFF = 0.25  # seconds; doubles each retry (0.25, 0.5, 1.0)
GAS_MARGIN = 1.2  # estimate x this, so a small state change between estimate and mining fits
MIN_PRIORITY_FEE = 1_000_000  # wei (0.001 gwei): tip when recent blocks paid none (idle chain)
FEE_HISTORY_BLOCKS = 4

_HEX_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_ERROR_SELECTOR = "08c379a0"  # Error(string)
_RETRY_HTTP = {429, 502, 503, 504}
_RETRY_RPC_CODES = {-32005, 429}

Confirm = Callable[[dict[str, Any]], bool]


# ---------------------------------------------------------------- artifact and ABI

@lru_cache(maxsize=1)
def artifact() -> dict[str, Any]:
    """The compiled ModelRegistry shipped with ossctl (ABI, bytecode, compiler)."""
    text = resources.files("ossctl.registry").joinpath("contracts/ModelRegistry.json").read_text("utf-8")
    return json.loads(text)


@lru_cache(maxsize=None)
def _fn(name: str) -> tuple[str, list[str], list[str]]:
    """(4-byte selector hex, input types, output types) of a contract function."""
    from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types, get_abi_output_types

    for item in artifact()["abi"]:
        if item.get("type") == "function" and item["name"] == name:
            return (function_abi_to_4byte_selector(item).hex(), get_abi_input_types(item),
                    get_abi_output_types(item))
    raise KeyError(name)


def encode_call(name: str, args: Sequence[Any]) -> str:
    import eth_abi

    sel, inputs, _ = _fn(name)
    return "0x" + sel + eth_abi.encode(inputs, list(args)).hex()


def decode_result(name: str, data: str) -> tuple[Any, ...]:
    import eth_abi

    return tuple(eth_abi.decode(_fn(name)[2], bytes.fromhex(data[2:] if data.startswith("0x") else data)))


# ---------------------------------------------------------------- small pure helpers

def display_url(url: str) -> str:
    """``scheme://host:port`` only: RPC URLs often carry an API key in the path or query."""
    p = urlsplit(url)
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{p.port}" if p.port else ""
    tail = "/…" if (p.path not in ("", "/") or p.query) else ""
    return f"{p.scheme}://{host}{port}{tail}"


def checksum_address(text: str, what: str = "address") -> str:
    """Validate and checksum an address. A mixed-case address must carry a valid EIP-55
    checksum (it catches typos). Raises :class:`UsageError`."""
    from web3 import Web3

    t = (text or "").strip()
    if not _HEX_ADDRESS.match(t):
        raise UsageError(f"{what} {shown(t)} is not an address (expected 0x followed by 40 hex digits)",
                         hint="check --registry / OSSCTL_REGISTRY_ADDRESS / [registry] address")
    body = t[2:]
    if body != body.lower() and body != body.upper() and Web3.to_checksum_address(t) != t:
        raise UsageError(f"{what} {t} has an invalid EIP-55 checksum (a typo?)",
                         hint="copy the address again, or write it all lower-case to skip the checksum")
    return Web3.to_checksum_address(t)



def _revert_reason(err: dict[str, Any]) -> str:
    data = err.get("data")
    if isinstance(data, dict):  # some nodes nest it
        data = data.get("data")
    if isinstance(data, str) and data[2:10] == _ERROR_SELECTOR:
        import eth_abi

        try:
            return eth_abi.decode(["string"], bytes.fromhex(data[10:]))[0]
        except Exception:
            pass
    msg = str(err.get("message", ""))
    return msg.split("execution reverted:", 1)[-1].strip() if "execution reverted:" in msg else msg


class RpcError(Exception):
    """A JSON-RPC error answer (internal; translated before it reaches the user)."""

    def __init__(self, method: str, err: dict[str, Any]):
        super().__init__(f"{method}: {err.get('message')}")
        self.method = method
        self.code = err.get("code")
        self.message = str(err.get("message", ""))
        self.err = err

    @property
    def reverted(self) -> bool:
        return self.code == 3 or "revert" in self.message.lower()

    @property
    def reason(self) -> str:
        return _revert_reason(self.err)


# ---------------------------------------------------------------- connection

@dataclass
class Connection:
    """One RPC endpoint (+ optionally the registry address and the expected chain id)."""

    url: str
    registry: str | None = None
    expected_chain_id: int | None = None
    receipt_timeout: float = DEFAULT_RECEIPT_TIMEOUT
    retries: int = RETRIES
    backoff: float = BACKOFF
    calls: list[str] = field(default_factory=list)  # methods sent, in order (for -v and the bench)
    _provider: Any = field(default=None, repr=False)
    _chain_id: int | None = None

    @property
    def where(self) -> str:
        return display_url(self.url)

    def provider(self):
        if self._provider is None:
            from web3 import HTTPProvider

            # our own retry loop below (it knows which errors are transient for *all*
            # methods, including sendRawTransaction, which re-sends the same signed bytes)
            self._provider = HTTPProvider(self.url, request_kwargs={"timeout": REQUEST_TIMEOUT},
                                          exception_retry_configuration=None)
        return self._provider

    def rpc(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call with retries on transient errors. Returns ``result``;
        raises :class:`RpcError` for an error answer, :class:`RemoteError` when the
        endpoint cannot be reached or does not speak JSON-RPC."""
        import requests

        attempt = 0
        while True:
            self.calls.append(method)
            transient: str | None = None
            try:
                resp = self.provider().make_request(method, params)
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else 0
                if status not in _RETRY_HTTP:
                    raise RemoteError(f"RPC endpoint {self.where} answered HTTP {status} to {method}",
                                      hint="check --rpc-url / OSSCTL_RPC_URL (and any API key it needs)") from None
                transient = f"HTTP {status}"
            except (requests.ConnectionError, requests.Timeout) as exc:
                transient = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
            except (ValueError, UnicodeDecodeError):  # not JSON: a web page, a proxy error
                raise RemoteError(f"{self.where} did not answer with JSON-RPC",
                                  hint="check --rpc-url / OSSCTL_RPC_URL points at an Ethereum node") from None
            else:
                if not isinstance(resp, dict):
                    raise RemoteError(f"{self.where} sent a malformed JSON-RPC answer to {method}")
                err = resp.get("error")
                if err is None:
                    return resp.get("result")
                if not isinstance(err, dict):
                    err = {"message": str(err)}
                msg = str(err.get("message", "")).lower()
                if err.get("code") in _RETRY_RPC_CODES or "rate limit" in msg or "too many requests" in msg:
                    transient = f"rate limited ({err.get('message')})"
                else:
                    raise RpcError(method, err)
            if attempt >= self.retries:
                raise RemoteError(f"cannot reach the RPC endpoint {self.where}: {transient}"
                                  + (f" after {attempt + 1} attempts" if attempt else ""),
                                  hint="is the node running? check --rpc-url / OSSCTL_RPC_URL / [registry] rpc_url")
            time.sleep(self.backoff * (2 ** attempt))
            attempt += 1

    # ------------------------------------------------------------ chain facts

    def chain_id(self) -> int:
        """The node's chain id; raises :class:`UsageError` when ``expected_chain_id``
        is set and differs."""
        if self._chain_id is None:
            try:
                cid = int(self.rpc("eth_chainId", []), 16)
            except RpcError as exc:
                raise RemoteError(f"{self.where} refused eth_chainId: {exc.message}") from None
            if self.expected_chain_id is not None and cid != self.expected_chain_id:
                raise UsageError(f"the node at {self.where} is on chain {cid}, expected chain {self.expected_chain_id}",
                                 hint="point --rpc-url at the right network, or fix --chain-id / OSSCTL_CHAIN_ID")
            self._chain_id = cid
        return self._chain_id

    def need_registry(self) -> str:
        if not self.registry:
            raise UsageError("no registry address",
                             hint="pass --registry ADDRESS, set OSSCTL_REGISTRY_ADDRESS, or [registry] address "
                                  "in the config file (`ossctl registry deploy-contract` makes one on a test chain)")
        return self.registry

    def call(self, name: str, args: Sequence[Any] = ()) -> tuple[Any, ...]:
        """``eth_call`` a registry view function and decode its outputs."""
        to = self.need_registry()
        try:
            out = self.rpc("eth_call", [{"to": to, "data": encode_call(name, args)}, "latest"])
        except RpcError as exc:
            if exc.reverted:
                self._check_code()
                raise RemoteError(f"registry call {name} reverted: {exc.reason or 'no reason'}",
                                  hint=f"is {to} a ModelRegistry? check --registry") from None
            raise RemoteError(f"{self.where} refused eth_call {name}: {exc.message}") from None
        if not out or out == "0x":
            self._check_code()
            raise UsageError(f"the contract at {to} returned nothing for {name}(): it is not a ModelRegistry",
                             hint="check --registry / OSSCTL_REGISTRY_ADDRESS")
        try:
            return decode_result(name, out)
        except Exception:
            self._check_code()
            raise UsageError(f"the contract at {to} answered {name}() in an unexpected format: "
                             "it is not a ModelRegistry", hint="check --registry / OSSCTL_REGISTRY_ADDRESS") from None

    def _check_code(self) -> None:
        code = self.rpc("eth_getCode", [self.registry, "latest"])
        if not code or code == "0x":
            raise NotFoundError(f"no contract code at {self.registry} on chain {self.chain_id()}",
                                hint="check --registry / OSSCTL_REGISTRY_ADDRESS and --rpc-url; on a test chain "
                                     "deploy one with `ossctl registry deploy-contract`")

    def fees(self) -> dict[str, Any]:
        """Fee fields for a transaction: EIP-1559 where the chain reports a base fee,
        legacy ``gasPrice`` otherwise. Values in wei."""
        try:
            hist = self.rpc("eth_feeHistory", [hex(FEE_HISTORY_BLOCKS), "latest", [50]])
        except RpcError:
            hist = None
        base = [int(b, 16) for b in (hist or {}).get("baseFeePerGas") or []]
        if base and base[-1] > 0:
            tips = sorted(int(r[0], 16) for r in (hist.get("reward") or []) if r and int(r[0], 16) > 0)
            tip = max(tips[len(tips) // 2], MIN_PRIORITY_FEE) if tips else MIN_PRIORITY_FEE
            # 2x the next block's base fee: stays includable through six full blocks of
            # +12.5% increases; unused fee is not charged
            return {"mode": "eip1559", "maxFeePerGas": 2 * base[-1] + tip, "maxPriorityFeePerGas": tip}
        try:
            price = int(self.rpc("eth_gasPrice", []), 16)
        except RpcError as exc:
            raise RemoteError(f"{self.where} gives no fee data: {exc.message}") from None
        return {"mode": "legacy", "gasPrice": price}


# ---------------------------------------------------------------- sending

@dataclass
class TxPlan:
    function: str  # "addTrustedModel", "deactivateModel", "constructor", ...
    args: list[Any]
    to: str | None
    sender: str
    data: str
    gas: int = 0
    fees: dict[str, Any] = field(default_factory=dict)
    nonce: int | None = None

    def public(self) -> dict[str, Any]:
        return {
            "function": self.function, "args": self.args, "from": self.sender, "to": self.to,
            "nonce": self.nonce, "gas": self.gas, "fee_mode": self.fees.get("mode"),
            "max_fee_per_gas": self.fees.get("maxFeePerGas"),
            "max_priority_fee_per_gas": self.fees.get("maxPriorityFeePerGas"),
            "gas_price": self.fees.get("gasPrice"),
            "hash": None, "block_number": None, "gas_used": None,
        }


def _fee_fields(fees: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in fees.items() if k != "mode"}


def _funds_error(conn: Connection, sender: str, exc: RpcError) -> OssctlError | None:
    low = exc.message.lower()
    # geth / anvil estimate with fee fields caps gas at balance / fee: "exceeds allowance"
    if "insufficient funds" not in low and "exceeds allowance" not in low:
        return None
    try:
        balance = f"{int(conn.rpc('eth_getBalance', [sender, 'latest']), 16) / 1e18:.6g} ETH"
    except OssctlError:
        balance = "unknown"
    return RemoteError(f"the sender {sender} has insufficient funds on chain {conn.chain_id()} "
                       f"to pay for this transaction (balance {balance})",
                       hint=f"send some ETH to {sender}, then re-run; nothing was sent")


def estimate(conn: Connection, plan: TxPlan, explain: Callable[[RpcError], OssctlError]) -> None:
    """Fill in ``plan``'s fees and gas limit by simulating it from the sender. A reverted
    simulation raises the insufficient-funds error, else ``explain(exc)``."""
    plan.fees = conn.fees()
    tx: dict[str, Any] = {"from": plan.sender, "data": plan.data, "value": "0x0"}
    if plan.to:
        tx["to"] = plan.to
    # fee fields make the node check the sender can pay (a clear error before signing)
    for k, v in _fee_fields(plan.fees).items():
        tx[k] = hex(v)
    try:
        est = int(conn.rpc("eth_estimateGas", [tx]), 16)
    except RpcError as exc:
        raise (_funds_error(conn, plan.sender, exc) or explain(exc)) from None
    plan.gas = int(est * GAS_MARGIN) + 10_000


def _send(conn: Connection, key: KeySource, plan: TxPlan, check_later: str) -> dict[str, Any]:
    """Sign with the pending nonce, send, await the receipt. Returns the receipt dict."""
    from eth_account import Account

    plan.nonce = int(conn.rpc("eth_getTransactionCount", [plan.sender, "pending"]), 16)
    tx: dict[str, Any] = {"chainId": conn.chain_id(), "nonce": plan.nonce, "gas": plan.gas, "value": 0,
                          "data": plan.data, **_fee_fields(plan.fees)}
    if plan.to:
        tx["to"] = plan.to
    if plan.fees.get("mode") == "eip1559":
        tx["type"] = 2
    try:
        signed = Account.sign_transaction(tx, key.private_key())
    except OssctlError:
        raise
    except Exception as exc:  # never chain: the SDK error could quote the key
        raise UsageError(f"cannot sign the transaction ({type(exc).__name__})") from None
    tx_hash = "0x" + bytes(signed.hash).hex()
    try:
        conn.rpc("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])
    except RpcError as exc:
        # after a retried send whose first answer was lost the node may say "already
        # known" or "nonce too low": if it has our exact transaction, it was sent
        if not _node_has(conn, tx_hash):
            raise (_funds_error(conn, plan.sender, exc)
                   or RemoteError(f"the node refused the transaction: {exc.message}",
                                  hint="re-run; if it persists, check the sender's pending transactions")) from None
    return wait_receipt(conn, tx_hash, check_later)


def _node_has(conn: Connection, tx_hash: str) -> bool:
    try:
        return bool(conn.rpc("eth_getTransactionByHash", [tx_hash]))
    except (RpcError, OssctlError):
        return False


def wait_receipt(conn: Connection, tx_hash: str, check_later: str) -> dict[str, Any]:
    """Poll for the receipt with growing intervals (0.05 s doubling to 2 s) until
    ``conn.receipt_timeout`` seconds. Raises :class:`RemoteError` naming the hash on
    timeout, or when the transaction reverted."""
    deadline = time.monotonic() + conn.receipt_timeout
    delay = 0.05
    while True:
        try:
            receipt = conn.rpc("eth_getTransactionReceipt", [tx_hash])
        except (RpcError, RemoteError) as exc:
            raise RemoteError(f"transaction {tx_hash} was sent, but asking for its receipt failed: {exc}",
                              hint=f"it may still be mined: check later with `{check_later}`; "
                                   "do not re-send before it is mined or dropped") from None
        if receipt:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            raise RemoteError(
                f"transaction {tx_hash} was sent but no receipt arrived within {conn.receipt_timeout:g} s",
                hint=f"it may still be mined: check later with `{check_later}` (or eth_getTransactionReceipt "
                     f"{tx_hash}); do not re-send before it is mined or dropped")
        time.sleep(min(delay, left))
        delay = min(delay * 2, 2.0)
    if int(receipt.get("status", "0x1"), 16) != 1:
        raise RemoteError(f"transaction {tx_hash} reverted in block {int(receipt['blockNumber'], 16)}",
                          hint=f"check the chain state with `{check_later}`")
    receipt["transactionHash"] = tx_hash
    return receipt




def signer(key: KeySource | None, dry_run: bool) -> tuple[KeySource, str]:
    """The key to sign with and its address. A dry run loads the key (a keystore's
    password) as a real run would, so it fails the same way. Raises :class:`UsageError`."""
    key = require_key_source(key)
    sender = key.address()
    if dry_run:
        key.private_key()
    return key, sender


def execute(conn: Connection, key: KeySource, plan: TxPlan, out: dict[str, Any], *, action: str,
            dry_run: bool, confirm: Confirm | None, check_later: str) -> dict[str, Any] | None:
    """Send an estimated ``plan`` and record it in ``out["tx"]``: a dry run fills in the
    pending nonce, sets ``action="dry-run"`` and returns ``None``; otherwise ``confirm``
    (when given) sees the summary, then the transaction is signed, sent and its receipt
    returned. Raises :class:`OssctlError` when cancelled (nothing sent), and what
    :func:`wait_receipt` raises."""
    if dry_run:
        plan.nonce = int(conn.rpc("eth_getTransactionCount", [plan.sender, "pending"]), 16)
        out.update(action="dry-run", tx=plan.public())
        return None
    # ``out["action"]`` is still None here: the action being confirmed goes last, or the
    # summary's first line reads "None: addTrustedModel(...)"
    if confirm is not None and not confirm({**out, "action": action, "tx": plan.public()}):
        raise OssctlError("cancelled: nothing was sent")
    receipt = _send(conn, key, plan, check_later)
    tx = out["tx"] = plan.public()
    tx["hash"] = receipt["transactionHash"]
    tx["block_number"] = int(receipt["blockNumber"], 16)
    tx["gas_used"] = int(receipt["gasUsed"], 16)
    return receipt


def connect(rpc_url: str | None, registry: str | None = None, chain_id: Any = None,
            receipt_timeout: float | None = None) -> Connection:
    """Validate settings (no network yet) and return a :class:`Connection`.
    Raises :class:`UsageError` for a missing / malformed URL, address or chain id."""
    if not rpc_url:
        raise UsageError("no RPC URL", hint="pass --rpc-url URL, set OSSCTL_RPC_URL, or [registry] rpc_url "
                                            "in the config file")
    p = urlsplit(str(rpc_url))
    if p.scheme not in ("http", "https") or not p.hostname:
        raise UsageError(f"RPC URL {display_url(str(rpc_url)) if p.hostname else repr(p.scheme + '://…')} "
                         "is not an http(s) URL", hint="e.g. --rpc-url http://127.0.0.1:8545")
    cid: int | None = None
    if chain_id not in (None, ""):
        try:
            cid = int(str(chain_id), 0)
            if cid <= 0:
                raise ValueError
        except ValueError:
            raise UsageError(f"chain id {chain_id!r} is not a positive integer",
                             hint="check --chain-id / OSSCTL_CHAIN_ID / [registry] chain_id") from None
    addr = checksum_address(str(registry), "registry address") if registry else None
    if receipt_timeout is not None and receipt_timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    return Connection(str(rpc_url), addr, cid,
                      DEFAULT_RECEIPT_TIMEOUT if receipt_timeout is None else float(receipt_timeout))

