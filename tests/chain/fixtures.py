"""Session fixtures for the chain tests: one anvil node and one deployed Aave V3 market shared by
every test file (imported by tests/conftest.py), rolled back after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chain.aave_market import AaveMarket, deploy_aave_market
from chain.anvil import AnvilNode, revert, rpc, snapshot, start_anvil
from chain.tools import ensure_aave_artifacts, ensure_anvil


@pytest.fixture(scope="session")
def anvil_node() -> Iterator[AnvilNode]:
    with start_anvil(ensure_anvil()) as node:
        yield node


@pytest.fixture(scope="session")
def deployed_market(anvil_node: AnvilNode) -> AaveMarket:
    return deploy_aave_market(anvil_node.web3(), ensure_aave_artifacts(), anvil_node.accounts)


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
