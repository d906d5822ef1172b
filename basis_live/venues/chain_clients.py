"""Client validation for the chain (what `validate --env` prints and a live `start` requires):

- credentials: ``BASIS_<ENV>__CHAIN__PRIVATE_KEY`` and ``..._RPC_URL`` set and well formed;
- contracts: every address the strategy needs is configured for the environment's network;
- reachable: the RPC node answers;
- chain id: the node's chain id is the network's (and dev / staging never run on mainnet, id 1);
- gas: the strategy wallet holds at least the network's ``min_gas_eth``;
- code: every needed contract address holds code on that node.

Details never carry the key or the RPC URL (provider tokens); ``ClientCheck`` scrubs them again.
web3 is imported only here and in the venues, never by `status` / `health`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from basis_live.errors import BasisLiveError
from basis_live.networks import chain_credentials, network_for, required_contracts
from basis_live.venues.cex_clients import ClientCheck

MAINNET_CHAIN_ID = 1
CLIENT = "chain"


async def validate_chain_client(strategy: Any, environment: str, env: Mapping[str, str] | None = None,
                                timeout: float = 10.0) -> list[ClientCheck]:
    try:
        credentials = chain_credentials(environment, env)
    except BasisLiveError as exc:
        return [ClientCheck(CLIENT, "credentials", False, exc.message)]
    try:
        network_name, network = network_for(environment, env)
    except BasisLiveError as exc:
        return [ClientCheck(CLIENT, "network", False, exc.message)]
    checks: list[ClientCheck] = []
    contracts, missing = required_contracts(strategy, network)
    checks.append(ClientCheck(CLIENT, "contracts", not missing,
                              f"no address configured on {network_name} for {', '.join(missing)}" if missing
                              else f"{len(contracts)} addresses configured on {network_name}"))
    from eth_account import Account

    from basis_live.venues.transactions import connect

    w3 = connect(credentials.rpc_url, timeout=timeout)
    try:
        try:
            async with asyncio.timeout(timeout):
                chain_id = await w3.eth.chain_id
        except Exception as exc:  # noqa: BLE001 - every failure is this check's result
            checks.append(ClientCheck(CLIENT, "reachable", False, f"RPC node did not answer: {type(exc).__name__}"))
            return checks
        checks.append(ClientCheck(CLIENT, "reachable", True, f"RPC node answered (chain id {chain_id})"))
        if chain_id != network.chain_id:
            problem = f"node is on chain {chain_id}, {network_name} ({environment}) is chain {network.chain_id}"
        elif environment != "prod" and chain_id == MAINNET_CHAIN_ID:
            problem = f"mainnet node in {environment}"
        else:
            problem = None
        checks.append(ClientCheck(CLIENT, "chain id", problem is None, problem or f"chain {chain_id} is {network_name}"))
        if problem:
            return checks  # never read balances or code from the wrong chain as if they were right
        address = Account.from_key(credentials.private_key).address
        balance = Decimal(await w3.eth.get_balance(address)) / Decimal(10**18)
        minimum = Decimal(repr(network.min_gas_eth))
        checks.append(ClientCheck(CLIENT, "gas", balance >= minimum,
                                  f"wallet {address} holds {balance:.6f} ETH (minimum {minimum} for gas)"))
        no_code = [role for role, contract in contracts.items()
                   if not await w3.eth.get_code(w3.to_checksum_address(contract))]
        checks.append(ClientCheck(CLIENT, "code", not no_code,
                                  f"no contract code at {', '.join(no_code)}" if no_code
                                  else f"code at all {len(contracts)} addresses"))
        return checks
    finally:
        await w3.provider.disconnect()
