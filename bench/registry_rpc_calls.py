#!/usr/bin/env python3
"""JSON-RPC calls and wall time of `ossctl register`, fresh and already registered,
against a real anvil, compared with the seed's shell flow measured in the same run.

    OSSCTL_TEST_NODE_BIN=.../node_modules/.bin python3 bench/registry_rpc_calls.py [--runs 5] [--seed-sleep 15]

Every request goes through a counting HTTP proxy on 127.0.0.1 (it parses the JSON-RPC
bodies, batches included), so the count is what the node saw, not what the client
believes it sent. `ossctl register` runs in-process through the real `main()`.

The seed flow (`cast call` isModelApproved → `cast send` addTrustedModel → `sleep 15`
→ `cast call` getModelHash) is replayed with the JSON-RPC calls cast makes (cast isn't
installed here): cast call = eth_chainId + eth_call; cast send = eth_chainId,
eth_getTransactionCount, eth_estimateGas, eth_getBlockByNumber, eth_maxPriorityFeePerGas,
eth_sendRawTransaction, then eth_getTransactionReceipt polls; plus the fixed sleep.
Targets: <= 8 calls fresh, <= 3 calls re-check, no sleeps.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.plugins.anvil import DEV_ADDRESSES, DEV_KEYS, make_model_dir, start_anvil  # noqa: E402
from tests.support.cli import run_cli  # noqa: E402


class CountingProxy:
    """Forward JSON-RPC POSTs to ``upstream`` and record each method name."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.methods: list[str] = []
        self.http_requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                doc = json.loads(body)
                proxy.http_requests += 1
                proxy.methods += [d["method"] for d in (doc if isinstance(doc, list) else [doc])]
                req = urllib.request.Request(proxy.upstream, body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=60) as r:
                    out = r.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self) -> tuple[list[str], int]:
        m, h = self.methods, self.http_requests
        self.methods, self.http_requests = [], 0
        return m, h

    def rpc(self, method: str, params: list) -> object:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
        req = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            doc = json.loads(r.read())
        if "error" in doc:
            raise RuntimeError(doc["error"])
        return doc["result"]


def ossctl(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    r = run_cli(*args, env=env)  # the real main(), in-process
    return r.code, r.out, r.err


def seed_flow(p: CountingProxy, registry: str, repo: str, file_name: str, digest: bytes, sleep_s: float) -> None:
    """The seed's shell script, call for call (see module doc)."""
    from eth_account import Account

    from ossctl.artifacts.hashing import model_id
    from ossctl.registry.rpc import encode_call

    mid = bytes.fromhex(model_id(repo, file_name)[2:])

    def cast_call(fn: str, args: list) -> object:
        p.rpc("eth_chainId", [])
        return p.rpc("eth_call", [{"to": registry, "data": encode_call(fn, args)}, "latest"])

    cast_call("isModelApproved", [mid])
    # cast send addTrustedModel ... --private-key $OWNER_PRIVATE_KEY
    cid = int(p.rpc("eth_chainId", []), 16)
    nonce = int(p.rpc("eth_getTransactionCount", [DEV_ADDRESSES[0], "pending"]), 16)
    data = encode_call("addTrustedModel", [repo, file_name, digest])
    gas = int(p.rpc("eth_estimateGas", [{"from": DEV_ADDRESSES[0], "to": registry, "data": data}]), 16)
    base = int(p.rpc("eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16)
    tip = int(p.rpc("eth_maxPriorityFeePerGas", []), 16)
    signed = Account.sign_transaction({"type": 2, "chainId": cid, "nonce": nonce, "to": registry, "data": data,
                                       "gas": gas, "value": 0, "maxFeePerGas": 2 * base + tip,
                                       "maxPriorityFeePerGas": tip}, DEV_KEYS[0])
    h = p.rpc("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])
    while not p.rpc("eth_getTransactionReceipt", [h]):
        time.sleep(0.1)
    time.sleep(sleep_s)  # `sleep 15`
    cast_call("getModelHash", [mid])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="registrations / re-checks to time (median)")
    ap.add_argument("--seed-sleep", type=float, default=15.0, help="the seed script's fixed sleep, seconds")
    args = ap.parse_args()
    node_bin = os.environ.get("OSSCTL_TEST_NODE_BIN")
    if not node_bin:
        sys.exit("set OSSCTL_TEST_NODE_BIN to node_modules/.bin with anvil (scripts/test.sh does)")

    with tempfile.TemporaryDirectory() as tmp, start_anvil(node_bin) as node:
        os.environ["OSSCTL_HOME"] = str(Path(tmp) / "home")
        proxy = CountingProxy(node.url)
        base_env = {"OSSCTL_RPC_URL": proxy.url, "OSSCTL_PRIVATE_KEY": DEV_KEYS[0]}
        code, out, err = ossctl("--json", "registry", "deploy-contract", "--yes", env=base_env)
        assert code == 0, err
        env = {**base_env, "OSSCTL_REGISTRY_ADDRESS": json.loads(out)["address"]}
        proxy.take()

        fresh_t, fresh_calls, check_t, check_calls = [], [], [], []
        for i in range(args.runs):
            d = make_model_dir(Path(tmp) / f"m{i}", repo=f"bench-org/model-{i}")
            t = time.perf_counter()
            code, out, err = ossctl("register", str(d), "--yes", env=env)
            fresh_t.append(time.perf_counter() - t)
            assert code == 0, err
            fresh_calls.append(proxy.take())
            t = time.perf_counter()
            code, out, err = ossctl("register", str(d), env=env)
            check_t.append(time.perf_counter() - t)
            assert code == 0 and "already registered" in out, err
            check_calls.append(proxy.take())

        from ossctl.artifacts.manifest import read_manifest

        d = make_model_dir(Path(tmp) / "seed", repo="bench-org/seed")
        m = read_manifest(d)
        t = time.perf_counter()
        seed_flow(proxy, env["OSSCTL_REGISTRY_ADDRESS"], m.repo, m.first_file, bytes.fromhex(m.composite_sha256),
                  args.seed_sleep)
        seed_t = time.perf_counter() - t
        seed_methods, _ = proxy.take()
        # the seed's re-check of an already registered model: its first `cast call`, then it stops
        t = time.perf_counter()
        proxy.rpc("eth_chainId", [])
        from ossctl.registry.rpc import encode_call

        approved = proxy.rpc("eth_call", [{"to": env["OSSCTL_REGISTRY_ADDRESS"], "data": encode_call(
            "isModelApproved", [bytes.fromhex(m.model_id[2:])])}, "latest"])
        assert int(approved, 16) == 1
        seed_check_t = time.perf_counter() - t
        seed_check, _ = proxy.take()

    fm, fh = fresh_calls[0]
    cm, ch = check_calls[0]
    f_med, c_med = statistics.median(fresh_t), statistics.median(check_t)
    print(f"anvil, {args.runs} runs each (median wall time, in-process `ossctl register`)")
    print(f"fresh registration : {len(fm)} JSON-RPC calls ({fh} HTTP requests), {f_med * 1000:.1f} ms  "
          f"[target <= 8] {'OK' if len(fm) <= 8 else 'OVER'}")
    print(f"  {' '.join(fm)}")
    print(f"already registered : {len(cm)} JSON-RPC calls ({ch} HTTP requests), {c_med * 1000:.1f} ms  "
          f"[target <= 3] {'OK' if len(cm) <= 3 else 'OVER'}")
    print(f"  {' '.join(cm)}")
    assert all(len(x[0]) == len(fm) for x in fresh_calls) and all(len(x[0]) == len(cm) for x in check_calls)
    print(f"seed shell flow    : {len(seed_methods)} JSON-RPC calls, {seed_t:.2f} s (sleep {args.seed_sleep:g} s; "
          f"4 process spawns not counted)")
    print(f"seed re-check      : {len(seed_check)} JSON-RPC calls, {seed_check_t * 1000:.1f} ms")
    print(f"ratio fresh  ossctl/seed: calls {len(fm) / len(seed_methods):.2f}, time {f_med / seed_t:.4f} "
          f"({seed_t / f_med:.0f}x faster)")
    print(f"ratio re-check ossctl/seed: calls {len(cm) / len(seed_check):.2f}, time {c_med / seed_check_t:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
