"""Our own liquid staking and swap contracts (``contracts/``) on the test chain, listed as the Aave
market's wstETH and weETH reserves.

What is deployed, from the committed build (``contracts/build/*.json``, see
``scripts/build_contracts.mjs``), by the market admin (dev account 0), who owns them:

- Lido: ``StETH`` (rebasing shares; ``submit``) and ``WstETH`` (``wrap`` / ``unwrap``);
- EtherFi: ``LiquidityPool`` (``deposit``; it creates its rebasing ``EETH``) and ``WeETH``;
- ``SwapRouter``: ETH <-> USDT at an owner-set price and fee (the Aave market's USDT), and wstETH /
  weETH -> ETH at each token's own rate less a route fee; seeded with ETH and USDT liquidity.

WETH is made as on mainnet: ``AaveMarket.mint("WETH", ...)`` deposits the admin's ETH into the
WETH9 contract (its own ``mint`` would create WETH that no ETH backs, and ``withdraw`` of it would
fail), so the dev accounts hold ``DEV_ACCOUNT_ETH``.

The staking pools start at the rates the Aave oracle prices assume (``ASSETS``: wstETH 1.21 and
weETH 1.065 ETH): each is bootstrapped with 1 ETH and its rewards raised by the difference. The
oracle keeps its fixed prices; ``sync_oracle`` points it at a token's current rate when a test
wants the two to agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.contract import Contract

from chain.aave_market import (
    ASSETS,
    ORACLE_DECIMALS,
    AaveMarket,
    Artifacts,
    deploy_aave_market,
    send,
)

BUILD_DIR = Path(__file__).resolve().parents[2] / "contracts" / "build"
WAD = 10**18
BPS = 10_000
_PRICES = {spec.symbol: spec.usd_price for spec in ASSETS}
#: Rewards that take a fresh 1 ETH pool to the rate the oracle's fixed price assumes.
INITIAL_REWARDS_BPS = {lst: int((_PRICES[lst] / _PRICES["WETH"] - 1) * BPS) for lst in ("wstETH", "weETH")}
#: SwapRouter: USDT units (6 decimals) per ETH, and the fees in bps.
ETH_PRICE_USDT = int(_PRICES["WETH"] / _PRICES["USDT"] * 10**6)
SWAP_FEE_BPS = 5  # the 0.05% ETH/USDT pool the strategies name
LST_ROUTE_FEE_BPS = {"wstETH": 1, "weETH": 4}
#: What the admin seeds the router with, in whole units.
SWAP_LIQUIDITY = {"ETH": 1_000, "USDT": 5_000_000}
DEV_ACCOUNT_ETH = 1_000_000


@cache
def build(name: str) -> dict[str, Any]:
    """``contracts/build/<name>.json``: abi and creation bytecode."""
    return json.loads((BUILD_DIR / f"{name}.json").read_text())


def _deploy(w3: Web3, name: str, sender: str, *args: Any, value: int = 0) -> Contract:
    artifact = build(name)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx_hash = factory.constructor(*args).transact({"from": sender, "value": value})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.01)
    if receipt["status"] != 1:
        raise RuntimeError(f"deploying {name} failed")
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"], decode_tuples=True)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class LstMarket:
    """The deployed staking and swap contracts, and the admin's levers on them."""

    w3: Web3
    admin: str
    steth: Contract
    wsteth: Contract
    liquidity_pool: Contract
    eeth: Contract
    weeth: Contract
    swap: Contract = None  # type: ignore[assignment]  # deployed after the Aave market (it needs USDT)

    @property
    def tokens(self) -> dict[str, Contract]:
        """The wrapped tokens by Aave reserve symbol."""
        return {"wstETH": self.wsteth, "weETH": self.weeth}

    @property
    def addresses(self) -> dict[str, str]:
        return {"stETH": self.steth.address, "wstETH": self.wsteth.address,
                "liquidity_pool": self.liquidity_pool.address, "eETH": self.eeth.address,
                "weETH": self.weeth.address, "swap_router": self.swap.address}

    def rate(self, symbol: str) -> int:
        """The token's own rate: wei of ETH per whole wrapped token (18 decimals)."""
        if symbol == "wstETH":
            return self.wsteth.functions.stEthPerToken().call()
        return self.weeth.functions.getRate().call()

    def pool_state(self, symbol: str) -> tuple[int, int]:
        """(total shares, total pooled ether) of the pool behind ``symbol``."""
        if symbol == "wstETH":
            return self.steth.functions.getTotalShares().call(), self.steth.functions.getTotalPooledEther().call()
        return self.eeth.functions.totalShares().call(), self.liquidity_pool.functions.getTotalPooledEther().call()

    def simulate_rewards(self, symbol: str, bps: int) -> None:
        pool = self.steth if symbol == "wstETH" else self.liquidity_pool
        send(pool.functions.simulateRewards(bps), self.admin)

    def stake_for(self, symbol: str, to: str, raw_amount: int) -> None:
        """Give ``to`` exactly ``raw_amount`` of the wrapped token, staked with the admin's ETH:
        enough ETH for that many shares (rate >= 1, so rounding up is exact), then the stETH /
        eETH amount worth exactly those shares is wrapped and the tokens transferred."""
        shares, pooled = self.pool_state(symbol)
        eth = _ceil_div(raw_amount * pooled, shares)
        if symbol == "wstETH":
            _send(self.steth.functions.submit(self.admin), self.admin, value=eth)
            rebasing, wrapper = self.steth, self.wsteth
        else:
            _send(self.liquidity_pool.functions.deposit(), self.admin, value=eth)
            rebasing, wrapper = self.eeth, self.weeth
        shares, pooled = self.pool_state(symbol)
        amount = _ceil_div(raw_amount * pooled, shares)
        send(rebasing.functions.approve(wrapper.address, amount), self.admin)
        before = wrapper.functions.balanceOf(self.admin).call()
        send(wrapper.functions.wrap(amount), self.admin)
        assert wrapper.functions.balanceOf(self.admin).call() - before == raw_amount
        send(wrapper.functions.transfer(to, raw_amount), self.admin)

    def sync_oracle(self, market: AaveMarket, symbol: str) -> None:
        """Set the Aave oracle's USD price of ``symbol`` to the WETH price x the token's rate (what
        Aave's rate-based LST price adapters report)."""
        usd = Decimal(market.price("WETH") * self.rate(symbol) // WAD).scaleb(-ORACLE_DECIMALS)
        market.set_price(symbol, usd)


@dataclass
class Deployment:
    """Everything the session deploys: the Aave market (our LSTs as its reserves) and the LSTs."""

    aave: AaveMarket
    lsts: LstMarket


def deploy_lsts_and_aave(w3: Web3, aave_artifacts_dir: Path, accounts: list[str]) -> Deployment:
    """Deploy the staking contracts, the Aave market listing them, then the swap router on the
    market's USDT; the admin (account 0) owns them all."""
    admin = accounts[0]
    steth = _deploy(w3, "StETH", admin, value=WAD)
    wsteth = _deploy(w3, "WstETH", admin, steth.address)
    liquidity_pool = _deploy(w3, "LiquidityPool", admin, value=WAD)
    eeth = w3.eth.contract(address=liquidity_pool.functions.eETH().call(), abi=build("EETH")["abi"],
                           decode_tuples=True)
    weeth = _deploy(w3, "WeETH", admin, liquidity_pool.address)
    send(steth.functions.simulateRewards(INITIAL_REWARDS_BPS["wstETH"]), admin)
    send(liquidity_pool.functions.simulateRewards(INITIAL_REWARDS_BPS["weETH"]), admin)

    lsts = LstMarket(w3, admin, steth, wsteth, liquidity_pool, eeth, weeth)
    weth = Artifacts(aave_artifacts_dir, w3, admin).deploy("WETH9Mocked")

    def deposit_weth(to: str, raw: int) -> None:
        _send(weth.functions.deposit(), admin, value=raw)
        send(weth.functions.transfer(to, raw), admin)

    minters = {symbol: (lambda to, raw, s=symbol: lsts.stake_for(s, to, raw)) for symbol in lsts.tokens}
    aave = deploy_aave_market(w3, aave_artifacts_dir, accounts, tokens={**lsts.tokens, "WETH": weth},
                              minters={**minters, "WETH": deposit_weth})
    usdt = aave.tokens["USDT"]
    swap = _deploy(w3, "SwapRouter", admin, usdt.address, ETH_PRICE_USDT, SWAP_FEE_BPS)
    send(swap.functions.listLst(wsteth.address, _selector(wsteth, "stEthPerToken"), LST_ROUTE_FEE_BPS["wstETH"]), admin)
    send(swap.functions.listLst(weeth.address, _selector(weeth, "getRate"), LST_ROUTE_FEE_BPS["weETH"]), admin)
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": admin, "to": swap.address, "value": SWAP_LIQUIDITY["ETH"] * WAD}),
        timeout=30, poll_latency=0.01)
    aave.mint("USDT", swap.address, SWAP_LIQUIDITY["USDT"] * 10**6)
    lsts.swap = swap
    return Deployment(aave, lsts)


def _selector(contract: Contract, function: str) -> bytes:
    return bytes(Web3.keccak(text=f"{function}()")[:4])


def _send(fn: Any, sender: str, value: int = 0) -> Any:
    """``send`` with ether attached."""
    receipt = fn.w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender, "value": value}), timeout=30,
                                                     poll_latency=0.01)
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction failed: {fn.fn_name}")
    return receipt
