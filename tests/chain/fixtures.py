"""Session fixtures for the chain tests: one anvil node, one deployed Aave V3 market whose wstETH and
weETH reserves are our own staking contracts, and the swap router, shared by every test file
(``anvil_node`` / ``deployed_market`` / ``market`` are imported by tests/conftest.py, ``lsts_fixture`` (named
``lsts``) by the test files that use it), rolled back after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chain.aave_market import AaveMarket
from chain.anvil import AnvilNode, revert, rpc, snapshot, start_anvil
from chain.lst_market import (
    DEV_ACCOUNT_ETH,
    Deployment,
    LstMarket,
    deploy_lsts_and_aave,
)
from chain.tools import ensure_aave_artifacts, ensure_anvil


@pytest.fixture(scope="session")
def anvil_node() -> Iterator[AnvilNode]:
    # Every WETH in the market is ETH deposited into it (see chain.lst_market), 10,000 of it the
    # seed liquidity alone: the dev accounts get more than anvil's default 10,000 ETH.
    with start_anvil(ensure_anvil(), balance_eth=DEV_ACCOUNT_ETH) as node:
        yield node


_deployments: dict[str, Deployment] = {}


def _deployment(node: AnvilNode) -> Deployment:
    """One deployment per node, shared by the fixtures below (tests/conftest.py imports only some
    of them, so they find it here rather than through a fixture of its own)."""
    if node.rpc_url not in _deployments:
        _deployments[node.rpc_url] = deploy_lsts_and_aave(node.web3(), ensure_aave_artifacts(), node.accounts)
    return _deployments[node.rpc_url]


@pytest.fixture(scope="session")
def deployed_market(anvil_node: AnvilNode) -> AaveMarket:
    return _deployment(anvil_node).aave


@pytest.fixture
def market(deployed_market: AaveMarket) -> Iterator[AaveMarket]:
    """The deployed market, rolled back after the test (state, balances, clock, mempool)."""
    w3 = deployed_market.w3
    snapshot_id = snapshot(w3)
    yield deployed_market
    rpc(w3, "evm_setAutomine", True)
    rpc(w3, "anvil_dropAllTransactions")
    revert(w3, snapshot_id)
    # evm_revert does not roll back anvil's next base fee (a test may have raised it).
    rpc(w3, "anvil_setNextBlockBaseFeePerGas", hex(w3.eth.get_block("latest")["baseFeePerGas"]))


@pytest.fixture(name="lsts")
def lsts_fixture(market: AaveMarket, anvil_node: AnvilNode) -> LstMarket:
    """The staking and swap contracts, rolled back with ``market`` after the test."""
    return _deployment(anvil_node).lsts
