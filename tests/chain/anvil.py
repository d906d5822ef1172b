"""Run anvil on 127.0.0.1 for a test session, and drive its clock and snapshots.

The node listens on loopback only, on a port the OS picks (``--port 0``; the chosen port is read from
anvil's own "Listening on" line, so there is no window in which another process can take it). Chain
id and mnemonic are fixed, so accounts and keys are the same on every run. The hardfork defaults to
Shanghai, the ``evmVersion`` the Aave V3.2 artifacts were compiled for.

The process is ended by ``stop()``, at interpreter exit, and, on Linux, by the kernel when the
process that started it dies (``PR_SET_PDEATHSIG``), so a killed pytest leaves no node behind.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import requests
from web3 import HTTPProvider, Web3
from web3.exceptions import TransactionNotFound
from web3.types import RPCEndpoint

CHAIN_ID = 31337
#: Foundry's well-known development mnemonic: its keys are public, never use them off a test chain.
TEST_MNEMONIC = "test test test test test test test test test test test junk"
HARDFORK = "shanghai"

_LISTENING = re.compile(r"Listening on 127\.0\.0\.1:(\d+)")


class AnvilError(RuntimeError):
    """anvil failed to start, or answered a JSON-RPC request with an error."""


@dataclass
class AnvilNode:
    """A running anvil process and what a test needs to talk to it."""

    process: subprocess.Popen[bytes]
    rpc_url: str
    chain_id: int
    accounts: list[str]
    private_keys: list[str]
    #: anvil's output, for a look while it runs; removed with its directory by ``stop()``.
    log_path: Path

    def web3(self) -> Web3:
        """A web3 client for this node that ignores any proxy settings in the environment."""
        session = requests.Session()
        session.trust_env = False  # an HTTP(S)_PROXY variable must not route loopback traffic away
        return Web3(HTTPProvider(self.rpc_url, session=session, request_kwargs={"timeout": 30}))

    def stop(self) -> None:
        """Terminate anvil (SIGTERM, then SIGKILL after 5 s); safe to call more than once."""
        _terminate(self.process, self.log_path.parent)

    def __enter__(self) -> AnvilNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _terminate(process: subprocess.Popen[bytes], workdir: Path) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    shutil.rmtree(workdir, ignore_errors=True)


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGKILL it when the parent dies."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def start_anvil(
    binary: Path,
    *,
    chain_id: int = CHAIN_ID,
    mnemonic: str = TEST_MNEMONIC,
    hardfork: str = HARDFORK,
    accounts: int = 10,
    balance_eth: int = 10_000,
    timeout_s: float = 15.0,
) -> AnvilNode:
    """Start anvil and return once it answers ``eth_chainId`` with ``chain_id``."""
    workdir = Path(tempfile.mkdtemp(prefix="basis-live-anvil-"))
    log_path = workdir / "anvil.log"
    config_path = workdir / "config.json"  # anvil writes its accounts and private keys here
    cmd = [
        str(binary), "--host", "127.0.0.1", "--port", "0", "--chain-id", str(chain_id),
        "--mnemonic", mnemonic, "--hardfork", hardfork, "--accounts", str(accounts),
        "--balance", str(balance_eth), "--config-out", str(config_path),
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    atexit.register(_terminate, process, workdir)
    deadline = time.monotonic() + timeout_s
    port = None
    while port is None:
        match = _LISTENING.search(log_path.read_text(errors="replace"))
        if match:
            port = int(match.group(1))
        elif process.poll() is not None or time.monotonic() > deadline:
            output = log_path.read_text(errors="replace")[-2000:]
            _terminate(process, workdir)
            raise AnvilError(f"anvil did not start: {' '.join(cmd)}\n{output}")
        else:
            time.sleep(0.02)
    config = json.loads(config_path.read_text())
    node = AnvilNode(
        process=process,
        rpc_url=f"http://127.0.0.1:{port}",
        chain_id=chain_id,
        accounts=[Web3.to_checksum_address(a) for a in config["available_accounts"]],
        private_keys=config["private_keys"],
        log_path=log_path,
    )
    w3 = node.web3()
    while True:
        try:
            if w3.eth.chain_id == chain_id:
                return node
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            node.stop()
            raise AnvilError(f"anvil at {node.rpc_url} did not answer eth_chainId={chain_id}")
        time.sleep(0.02)


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    """Call a JSON-RPC method web3 has no wrapper for; raise ``AnvilError`` on an error reply."""
    response = w3.provider.make_request(RPCEndpoint(method), list(params))
    if "error" in response:
        raise AnvilError(f"{method}{params}: {response['error']}")
    return response["result"]


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Await until ``predicate()`` is truthy (polling every 10 ms); return its value or fail."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
    return value


def in_pool(w3: Web3, tx_hash: str) -> bool:
    """Whether the node knows the transaction (pending in its pool or mined)."""
    try:
        return w3.eth.get_transaction(tx_hash) is not None
    except TransactionNotFound:
        return False


def snapshot(w3: Web3) -> str:
    """Record the chain state; pass the id to ``revert`` (each id can be reverted to once)."""
    return rpc(w3, "evm_snapshot")


def revert(w3: Web3, snapshot_id: str) -> None:
    """Return the chain to ``snapshot_id``, dropping it and every later snapshot."""
    if not rpc(w3, "evm_revert", snapshot_id):
        raise AnvilError(f"evm_revert to unknown snapshot {snapshot_id}")


def advance_time(w3: Web3, seconds: int) -> int:
    """Move the clock forward and mine a block there; return the new block's timestamp."""
    rpc(w3, "evm_increaseTime", seconds)
    rpc(w3, "evm_mine")
    return w3.eth.get_block("latest")["timestamp"]
