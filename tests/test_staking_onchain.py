"""Our own staking and swap contracts (``contracts/``), their committed build, and the live venues over
them (``LidoVenue``, ``EtherFiVenue``, ``SwapVenue``) on a local anvil node.

The Aave market of the session lists our wstETH and weETH as its reserves (``chain.lst_market``).
Expected amounts are computed here, independently of the venues, from the contracts' own state
(shares, pooled ether, router price and fees) with the integer math the contracts use; balances are
compared to the wei. The chain is rolled back after every test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from chain.aave_market import EMODE_ETH, EMODE_ETH_ID, MAX_UINT256, AaveMarket
from chain.anvil import HARDFORK, AnvilNode, in_pool, rpc, until
from chain.fixtures import lsts_fixture  # noqa: F401  (the `lsts` fixture)
from chain.lst_market import (
    BUILD_DIR,
    ETH_PRICE_USDT,
    LST_ROUTE_FEE_BPS,
    SWAP_FEE_BPS,
    LstMarket,
)
from chain.tools import SOLC_VERSION, ensure_solc

from basis_live.venues.base import OrderRejected, OrderRequest
from basis_live.venues.onchain import AaveV3Config, AaveV3Venue, aave_revert_reason
from basis_live.venues.staking_onchain import (
    EETH_ABI,
    LIQUIDITY_POOL_ABI,
    STETH_ABI,
    SWAP_ROUTER_ABI,
    WEETH_ABI,
    WSTETH_ABI,
    EtherFiConfig,
    EtherFiVenue,
    LeverageConfig,
    LidoConfig,
    LidoVenue,
    OnchainLeverageVenue,
    SwapConfig,
    SwapVenue,
)
from basis_live.venues.transactions import (
    FeePolicy,
    InMemoryJournal,
    JsonFileJournal,
    SenderSettings,
    TransactionJournal,
    TransactionSender,
    connect,
)

D = Decimal
WAD = 10**18
BPS = 10_000
USER = 4  # the strategy account (0 and 1 are the market's admin and liquidity provider)
ROOT = Path(__file__).resolve().parents[1]
HF_FLOOR = D("1.01")
TARGET_LTV = D("0.909")  # 0.93 x (1 - 0.0225), MODES.md
FAST = SenderSettings(receipt_timeout=10.0, max_replacements=3, poll_interval=0.02, chain_id=31337)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class Venues:
    node: AnvilNode
    market: AaveMarket
    lsts: LstMarket
    sender: TransactionSender
    lido: LidoVenue
    etherfi: EtherFiVenue
    swap: SwapVenue
    aave: AaveV3Venue
    leverage: OnchainLeverageVenue

    @property
    def user(self) -> str:
        return self.node.accounts[USER]

    def eth(self) -> int:
        return self.market.w3.eth.get_balance(self.user)

    def nonce(self) -> int:
        return self.market.w3.eth.get_transaction_count(self.user, "pending")

    def staking(self, lst: str) -> LidoVenue | EtherFiVenue:
        return self.lido if lst == "wstETH" else self.etherfi


@contextlib.asynccontextmanager
async def venues(node: AnvilNode, market: AaveMarket, lsts: LstMarket,
                 journal: TransactionJournal | None = None) -> AsyncIterator[Venues]:
    w3 = connect(node.rpc_url)
    try:
        sender = TransactionSender(w3, node.private_keys[USER], journal if journal is not None else InMemoryJournal(),
                                   FeePolicy(max_fee_gwei=D(100)), FAST, decode_revert=aave_revert_reason)
        router = lsts.swap.address
        lido = LidoVenue(w3, sender, LidoConfig(steth=lsts.steth.address, wsteth=lsts.wsteth.address,
                                                swap_router=router))
        etherfi = EtherFiVenue(w3, sender, EtherFiConfig(liquidity_pool=lsts.liquidity_pool.address,
                                                         eeth=lsts.eeth.address, weeth=lsts.weeth.address,
                                                         swap_router=router))
        tokens = {symbol: token.address for symbol, token in market.tokens.items()}
        aave = AaveV3Venue(w3, sender, AaveV3Config(pool=market.pool.address, data_provider=market.data_provider.address,
                                                    tokens=tokens))
        # The composite shares the staking venues the engine trades on, as a live run builds them:
        # a loop's steps are journaled under aave_v3/, so they are never those venues' orders.
        leverage = OnchainLeverageVenue(
            aave, {"weETH": etherfi, "wstETH": lido},
            LeverageConfig(weth=tokens["WETH"], oracle=market.oracle.address, health_factor_floor=HF_FLOOR))
        yield Venues(node, market, lsts, sender, lido, etherfi,
                     SwapVenue(w3, sender, SwapConfig(router=router, usdt=tokens["USDT"])), aave, leverage)
    finally:
        await w3.provider.disconnect()


def gas_paid(market: AaveMarket, tx_hashes: list[str]) -> int:
    total = 0
    for tx_hash in tx_hashes:
        receipt = market.w3.eth.get_transaction_receipt(tx_hash)
        total += receipt["gasUsed"] * receipt["effectiveGasPrice"]
    return total


# ------------------------------------------------------------------------------- build and deploy
def test_the_committed_build_is_what_the_pinned_solc_makes_of_the_sources(tmp_path: Path) -> None:
    solc = ensure_solc()
    out = tmp_path / "build"
    subprocess.run(["node", str(ROOT / "scripts" / "build_contracts.mjs"), "--solc", str(solc), "--out", str(out)],
                   check=True, capture_output=True, text=True, timeout=120)
    fresh = {p.name: p.read_text() for p in out.glob("*.json")}
    committed = {p.name: p.read_text() for p in BUILD_DIR.glob("*.json")}
    assert sorted(fresh) == sorted(committed) == [
        "EETH.json", "LiquidityPool.json", "StETH.json", "SwapRouter.json", "WeETH.json", "WstETH.json"]
    for name, text in committed.items():
        assert fresh[name] == text, f"contracts/build/{name} is stale: run scripts/build_contracts.mjs"
        compiler = json.loads(text)["compiler"]
        assert compiler["solc"].startswith(f"{SOLC_VERSION}+")
        assert compiler["evmVersion"] == HARDFORK  # what the test node runs
    for source in (ROOT / "contracts").glob("*.sol"):
        assert source.read_text().startswith("// SPDX-License-Identifier: MIT\n"), source.name


def test_our_abis_match_the_build() -> None:
    def signature(entry: dict[str, Any]) -> tuple[Any, ...]:
        inputs = tuple((i["type"], bool(i.get("indexed"))) for i in entry["inputs"])
        outputs = tuple(o["type"] for o in entry.get("outputs", ()))
        return entry["type"], entry["name"], inputs, outputs, entry.get("stateMutability")

    for ours, name in ((STETH_ABI, "StETH"), (WSTETH_ABI, "WstETH"), (LIQUIDITY_POOL_ABI, "LiquidityPool"),
                       (EETH_ABI, "EETH"), (WEETH_ABI, "WeETH"), (SWAP_ROUTER_ABI, "SwapRouter")):
        theirs = {signature(e) for e in json.loads((BUILD_DIR / f"{name}.json").read_text())["abi"]
                  if e["type"] in ("function", "event")}
        for entry in ours:
            assert signature(entry) in theirs, (name, entry["name"])


def test_the_aave_market_lists_our_lsts_at_the_rates_its_oracle_assumes(market: AaveMarket, lsts: LstMarket) -> None:
    assert market.tokens["wstETH"].address == lsts.wsteth.address
    assert market.tokens["weETH"].address == lsts.weeth.address
    for symbol, rate in (("wstETH", D("1.21")), ("weETH", D("1.065"))):
        assert lsts.rate(symbol) == rate * WAD
        assert D(market.price(symbol)) / D(market.price("WETH")) == rate
    # Staked supply is backed: the pools hold the ether deposited (bootstrap + what tests staked).
    shares, pooled = lsts.pool_state("wstETH")
    assert lsts.steth.functions.getPooledEthByShares(shares).call() == pooled


# ------------------------------------------------------------------------------- staking venues
@pytest.mark.parametrize("lst", ["wstETH", "weETH"])
def test_stake_then_redeem_moves_exactly_the_amounts_the_contracts_define(
    lst: str, market: AaveMarket, lsts: LstMarket, anvil_node: AnvilNode
) -> None:
    async def main() -> None:
        async with venues(anvil_node, market, lsts) as v:
            venue, token = v.staking(lst), lsts.tokens[lst]
            instruments = await venue.instruments()
            assert (instruments[lst].kind, instruments[lst].quote, instruments[lst].quantity_step) == ("stake", "ETH", D("1e-18"))
            quantity = D("2.5")
            shares, pooled = lsts.pool_state(lst)
            expected_eth = ceil_div(int(quantity * WAD) * pooled, shares)
            eth_before, nonce = v.eth(), v.nonce()

            state = await venue.place_order(OrderRequest("stake-1", venue.name, lst, "buy", quantity))

            assert (state.status, state.filled_quantity) == ("filled", quantity), state
            assert token.functions.balanceOf(v.user).call() == int(quantity * WAD)
            assert v.nonce() == nonce + 3  # submit/deposit, approve, wrap
            hashes = [tx.tx_hash for tx in v.sender.journal.all_transactions()]
            assert eth_before - v.eth() == expected_eth + gas_paid(market, hashes)
            assert state.average_price == D(expected_eth) / D(int(quantity * WAD))
            assert abs(state.average_price - await venue.lst_rate()) < D("1e-17")
            rebasing = lsts.steth if lst == "wstETH" else lsts.eeth
            assert rebasing.functions.allowance(v.user, token.address).call() == 0  # the approval was used up

            # Redeem through the router's LST route: the token's own rate less the route fee.
            gross = int(quantity * WAD) * lsts.rate(lst) // WAD
            fee = ceil_div(gross * LST_ROUTE_FEE_BPS[lst], BPS)
            eth_before = v.eth()
            state = await venue.place_order(OrderRequest("redeem-1", venue.name, lst, "sell", quantity))
            assert (state.status, state.filled_quantity) == ("filled", quantity), state
            assert token.functions.balanceOf(v.user).call() == 0
            redeem_hashes = [tx.tx_hash for tx in v.sender.journal.all_transactions() if "/redeem-1/" in tx.key]
            assert len(redeem_hashes) == 2  # approve, swap
            assert v.eth() - eth_before == gross - fee - gas_paid(market, redeem_hashes)
            assert (state.average_price, state.fee, state.fee_asset) == (
                D(gross) / D(int(quantity * WAD)), D(fee).scaleb(-18), "ETH")

            fills, _ = await venue.fetch_fills(0)
            assert [(f.client_order_id, f.side, f.quantity) for f in fills] == [
                ("stake-1", "buy", quantity), ("redeem-1", "sell", quantity)]
            ledger, _ = await venue.fetch_ledger(0)
            assert [e.kind for e in ledger] == ["gas"] * 5
            assert -sum(e.amount for e in ledger) == D(gas_paid(market, hashes + redeem_hashes)).scaleb(-18)

    asyncio.run(main())


@pytest.mark.parametrize("lst", ["wstETH", "weETH"])
def test_rewards_raise_the_rate_and_what_the_lst_redeems_for(
    lst: str, market: AaveMarket, lsts: LstMarket, anvil_node: AnvilNode
) -> None:
    async def main() -> None:
        async with venues(anvil_node, market, lsts) as v:
            venue, token = v.staking(lst), lsts.tokens[lst]
            assert (await venue.place_order(OrderRequest("s-1", venue.name, lst, "buy", D(10)))).status == "filled"
            before = await venue.lst_rate()
            shares, pooled = lsts.pool_state(lst)

            lsts.simulate_rewards(lst, 100)  # +1% pooled ether

            after = await venue.lst_rate()
            assert after == D(WAD * pooled * 101 // 100 // shares).scaleb(-18)
            assert after > before * D("1.0099")
            assert token.functions.balanceOf(v.user).call() == 10 * WAD  # the wrapped token does not rebase
            state = await venue.place_order(OrderRequest("r-1", venue.name, lst, "sell", D(10)))
            assert state.average_price == after  # redeemed at the new rate (before the route fee)
            # A new stake costs the new rate.
            state = await venue.place_order(OrderRequest("s-2", venue.name, lst, "buy", D(1)))
            assert abs(state.average_price - after) < D("1e-17")

    asyncio.run(main())


def test_swap_eth_both_ways_pays_the_router_fee_in_usdt(market: AaveMarket, lsts: LstMarket,
                                                         anvil_node: AnvilNode) -> None:
    async def main() -> None:
        async with venues(anvil_node, market, lsts) as v:
            usdt = market.tokens["USDT"]
            (instrument,) = (await v.swap.instruments()).values()
            assert (instrument.symbol, instrument.kind, instrument.quantity_step) == ("ETH/USDT", "spot", D("0.000001"))
            market.mint("USDT", v.user, 10_000 * 10**6)
            eth_before = v.eth()

            bought = await v.swap.place_order(OrderRequest("buy-1", "uniswap", "ETH/USDT", "buy", D("1.5")))

            notional = ceil_div(int(D("1.5") * WAD) * ETH_PRICE_USDT, WAD)
            fee = ceil_div(notional * SWAP_FEE_BPS, BPS)
            assert bought.status == "filled" and bought.filled_quantity == D("1.5")
            assert usdt.functions.balanceOf(v.user).call() == 10_000 * 10**6 - notional - fee
            hashes = [tx.tx_hash for tx in v.sender.journal.all_transactions()]
            assert v.eth() - eth_before == int(D("1.5") * WAD) - gas_paid(market, hashes)
            assert (bought.average_price, bought.fee, bought.fee_asset) == (D(3000), D(fee).scaleb(-6), "USDT")

            usdt_before, eth_before = usdt.functions.balanceOf(v.user).call(), v.eth()
            sold = await v.swap.place_order(OrderRequest("sell-1", "uniswap", "ETH/USDT", "sell", D(1)))
            notional = ETH_PRICE_USDT
            fee = ceil_div(notional * SWAP_FEE_BPS, BPS)
            assert sold.status == "filled"
            assert usdt.functions.balanceOf(v.user).call() - usdt_before == notional - fee
            (sell_tx,) = [tx.tx_hash for tx in v.sender.journal.all_transactions() if "/sell-1/" in tx.key]
            assert eth_before - v.eth() == WAD + gas_paid(market, [sell_tx])
            assert (sold.average_price, sold.fee) == (D(3000), D(fee).scaleb(-6))
            ledger, _ = await v.swap.fetch_ledger(0)
            assert len(ledger) == 3  # approve, buy, sell

    asyncio.run(main())


def test_a_limit_outside_the_quote_is_refused_before_anything_is_signed(
    market: AaveMarket, lsts: LstMarket, anvil_node: AnvilNode
) -> None:
    async def main() -> None:
        async with venues(anvil_node, market, lsts) as v:
            nonce, eth_before = v.nonce(), v.eth()
            with pytest.raises(OrderRejected, match="below the limit"):
                await v.swap.place_order(OrderRequest("lim-1", "uniswap", "ETH/USDT", "sell", D(1), "limit", D(3001)))
            assert (v.nonce(), v.eth()) == (nonce, eth_before)
            assert v.sender.journal.all_transactions() == []
            assert await v.swap.fetch_order("lim-1") is None

    asyncio.run(main())


def test_a_swap_whose_min_out_is_not_met_reverts_and_is_rejected_with_only_gas_spent(
    market: AaveMarket, lsts: LstMarket, anvil_node: AnvilNode
) -> None:
    """The price drops in the block that mines our sale (an earlier transaction with a higher tip):
    the router's slippage bound reverts the swap; the order is rejected with the decoded reason."""
    w3 = market.w3

    async def main() -> None:
        async with venues(anvil_node, market, lsts) as v:
            usdt = market.tokens["USDT"]
            eth_before, nonce = v.eth(), v.nonce()
            rpc(w3, "evm_setAutomine", False)
            task = asyncio.create_task(v.swap.place_order(OrderRequest("slip-1", "uniswap", "ETH/USDT", "sell", D(2))))
            key = "uniswap/slip-1/1-swap"
            await until(lambda: v.sender.journal.transactions(key))
            (ours,) = v.sender.journal.transactions(key)
            await until(lambda: in_pool(market.w3, ours.tx_hash))
            lsts.swap.functions.setEthPrice(ETH_PRICE_USDT * 98 // 100, SWAP_FEE_BPS).transact(
                {"from": lsts.admin, "maxPriorityFeePerGas": 50 * 10**9, "maxFeePerGas": 100 * 10**9})
            rpc(w3, "evm_mine")
            rpc(w3, "evm_setAutomine", True)
            with pytest.raises(OrderRejected, match="SwapRouter: INSUFFICIENT_OUTPUT_AMOUNT"):
                await task

            assert w3.eth.get_transaction_receipt(ours.tx_hash)["status"] == 0
            assert usdt.functions.balanceOf(v.user).call() == 0
            assert eth_before - v.eth() == gas_paid(market, [ours.tx_hash])  # only the gas is gone
            assert v.nonce() == nonce + 1
            state = await v.swap.fetch_order("slip-1")
            assert state is not None and state.status == "rejected" and "INSUFFICIENT_OUTPUT_AMOUNT" in (state.reason or "")
            ledger, _ = await v.swap.fetch_ledger(0)
            assert [(e.kind, e.amount) for e in ledger] == [("gas", -D(gas_paid(market, [ours.tx_hash])).scaleb(-18))]
            assert (await v.swap.fetch_fills(0))[0] == []

    asyncio.run(main())


def test_a_restart_between_signing_and_receipt_never_stakes_twice(
    market: AaveMarket, lsts: LstMarket, anvil_node: AnvilNode, tmp_path: Path
) -> None:
    """The process dies after the stake's first transaction is broadcast. The next process finds it
    mined, reports the order open (the wrap is still to do); cancelling completes the wrap, and a
    resend of the same order sends nothing."""
    w3 = market.w3
    path = tmp_path / "journal.json"
    quantity = D("3")

    async def crashed_run() -> tuple[int, int]:
        async with venues(anvil_node, market, lsts, JsonFileJournal(path)) as v:
            nonce, eth_before = v.nonce(), v.eth()
            rpc(w3, "evm_setAutomine", False)
            task = asyncio.create_task(v.lido.place_order(OrderRequest("crash-1", "lido", "wstETH", "buy", quantity)))
            await until(lambda: v.sender.journal.transactions("lido/crash-1/1-submit"))
            (submit,) = v.sender.journal.transactions("lido/crash-1/1-submit")
            await until(lambda: in_pool(market.w3, submit.tx_hash))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return nonce, eth_before

    nonce, eth_before = asyncio.run(crashed_run())
    rpc(w3, "evm_mine")  # mined while nobody watched
    rpc(w3, "evm_setAutomine", True)

    async def restarted_run() -> None:
        journal = JsonFileJournal(path)
        async with venues(anvil_node, market, lsts, journal) as v:
            assert await v.lido.fetch_order("never-sent") is None
            state = await v.lido.fetch_order("crash-1")
            assert state is not None and state.status == "open" and state.filled_quantity == 0
            assert [o.client_order_id for o in await v.lido.fetch_open_orders()] == ["crash-1"]
            assert v.nonce() == nonce + 1

            state = await v.lido.cancel_order("crash-1")  # the ETH is staked: the wrap completes

            assert (state.status, state.filled_quantity) == ("filled", quantity)
            assert lsts.wsteth.functions.balanceOf(v.user).call() == int(quantity * WAD)
            assert len(journal.transactions("lido/crash-1/1-submit")) == 1
            assert v.nonce() == nonce + 3
            again = await v.lido.place_order(OrderRequest("crash-1", "lido", "wstETH", "buy", quantity))
            assert (again.status, again.venue_order_id) == ("filled", state.venue_order_id)
            assert v.nonce() == nonce + 3  # nothing sent again
            with pytest.raises(OrderRejected, match="used for another order"):
                await v.lido.place_order(OrderRequest("crash-1", "lido", "wstETH", "buy", D(4)))
            hashes = [tx.tx_hash for tx in journal.all_transactions()]
            assert len(hashes) == 3
            submit_value = journal.transactions("lido/crash-1/1-submit")[0].value
            assert eth_before - v.eth() == submit_value + gas_paid(market, hashes)
            ledger, _ = await v.lido.fetch_ledger(0)
            assert len(ledger) == 3

    asyncio.run(restarted_run())


# ------------------------------------------------------------------------------- leverage loop
def health_factor(market: AaveMarket, user: str, block: int | str = "latest") -> Fraction | None:
    value = market.pool.functions.getUserAccountData(user).call(block_identifier=block).healthFactor
    return None if value == MAX_UINT256 else Fraction(value, WAD)


def our_health_factor(market: AaveMarket, user: str) -> Fraction:
    """Collateral x eMode liquidation threshold / debt, from balances and oracle prices."""
    collateral = market.a_token("weETH").functions.balanceOf(user).call() * market.price("weETH")
    debt = market.debt_token("WETH").functions.balanceOf(user).call() * market.price("WETH")
    return Fraction(collateral * EMODE_ETH.liquidation_threshold, debt * BPS)


def health_factors_after_each_step(v: Venues, cid: str) -> list[Fraction]:
    """The health factor after every mined transaction of loop ``cid`` (one block each)."""
    blocks = sorted({v.market.w3.eth.get_transaction_receipt(tx.tx_hash)["blockNumber"]
                     for tx in v.sender.journal.all_transactions() if tx.key.startswith(f"aave_v3/{cid}/")})
    factors = [health_factor(v.market, v.user, block) for block in blocks]
    return [f for f in factors if f is not None]


async def equity_of_one_eth_in_emode(v: Venues) -> Decimal:
    """Stake exactly 1 ETH as weETH, supply it, enter eMode; returns the equity in ETH."""
    shares, pooled = v.lsts.pool_state("weETH")
    weeth = D(WAD * shares // pooled).scaleb(-18)  # what 1 ETH buys
    assert (await v.etherfi.place_order(OrderRequest("eq-stake", "etherfi", "weETH", "buy", weeth))).status == "filled"
    assert (await v.leverage.place_order(OrderRequest("eq-supply", "aave_v3", "weETH", "buy", weeth))).status == "filled"
    assert await v.leverage.set_emode(EMODE_ETH_ID) is not None
    return weeth * await v.etherfi.lst_rate()


def test_lever_up_in_emode_to_the_target_ltv_never_crossing_the_floor(
    market: AaveMarket, lsts: LstMarket, anvil_node: AnvilNode
) -> None:
    async def main() -> None:
        async with venues(anvil_node, market, lsts) as v:
            instruments = await v.leverage.instruments()
            assert instruments["weETH-loop"].kind == "loop" and instruments["USDT"].kind == "supply"
            equity = await equity_of_one_eth_in_emode(v)
            target_debt = (equity * TARGET_LTV / (1 - TARGET_LTV)).quantize(D("1e-18"), rounding=ROUND_FLOOR)

            state = await v.leverage.place_order(OrderRequest("lever-1", "aave_v3", "weETH-loop", "buy", target_debt))

            assert (state.status, state.filled_quantity) == ("filled", target_debt), state
            assert market.debt_token("WETH").functions.balanceOf(v.user).call() >= int(target_debt * WAD)
            assert abs(state.average_price - await v.etherfi.lst_rate()) < D("1e-15")  # type: ignore[operator]
            # Our health factor from balances and prices is Aave's, and the LTV is the target.
            hf = health_factor(market, v.user)
            assert hf is not None and abs(our_health_factor(market, v.user) / hf - 1) < Fraction(1, 10**6)
            data = await v.leverage.account_data()
            assert abs(data.ltv - TARGET_LTV) < D("0.0001")
            assert min(health_factors_after_each_step(v, "lever-1")) >= HF_FLOOR
            # Nothing left in transit: no WETH, no eETH; every weETH is supplied.
            assert market.tokens["WETH"].functions.balanceOf(v.user).call() == 0
            assert lsts.eeth.functions.shares(v.user).call() == 0
            assert lsts.weeth.functions.balanceOf(v.user).call() == 0
            # One fill for the loop (its steps are not fills of their own); gas for every transaction once.
            fills, _ = await v.leverage.fetch_fills(0)
            assert sorted((f.client_order_id, f.symbol) for f in fills) == [("eq-supply", "weETH"),
                                                                            ("lever-1", "weETH-loop")]
            (loop_fill,) = [f for f in fills if f.client_order_id == "lever-1"]
            assert (loop_fill.quantity, loop_fill.price) == (target_debt, state.average_price)
            ledger, _ = await v.leverage.fetch_ledger(0)
            aave_txs = [tx for tx in v.sender.journal.all_transactions() if tx.key.startswith("aave_v3/")]
            assert len(ledger) == len({tx.nonce for tx in aave_txs})
            # The engine's own EtherFi venue books only its order (the equity stake), none of the loop's stakes.
            etherfi_ledger, _ = await v.etherfi.fetch_ledger(0)
            assert sorted(e.entry_id for e in etherfi_ledger) == sorted(
                f"gas-{tx.tx_hash}" for tx in v.sender.journal.all_transactions() if tx.key.startswith("etherfi/"))
            assert len(etherfi_ledger) == 3

    asyncio.run(main())


def test_delever_after_a_price_drop_restores_the_health_factor_one_safe_step_at_a_time(
    market: AaveMarket, lsts: LstMarket, anvil_node: AnvilNode
) -> None:
    """weETH drops 2.5% against ETH: the health factor falls below the strategy's threshold (1.02)
    but stays above the hard floor of every step (1.01). The mode's reduce step delevers back to
    threshold x 1.03; each withdrawal is sized so that it never leaves the factor under the floor."""
    threshold = D("1.02")

    async def main() -> None:
        async with venues(anvil_node, market, lsts) as v:
            equity = await equity_of_one_eth_in_emode(v)
            target_debt = (equity * TARGET_LTV / (1 - TARGET_LTV)).quantize(D("1e-18"), rounding=ROUND_FLOOR)
            assert (await v.leverage.place_order(
                OrderRequest("lever-1", "aave_v3", "weETH-loop", "buy", target_debt))).status == "filled"
            market.set_price("weETH", D(market.price("weETH")).scaleb(-8) * D("0.975"))
            before = health_factor(market, v.user)
            assert before is not None and HF_FLOOR < before < threshold
            # Leveraged.reduce: delever q so that (debt - q) / (collateral - q) = LT / (threshold x 1.03).
            collateral = D(market.a_token("weETH").functions.balanceOf(v.user).call() * market.price("weETH")) / \
                D(market.price("WETH") * WAD)
            debt = D(market.debt_token("WETH").functions.balanceOf(v.user).call()).scaleb(-18)
            safe_ltv = D("0.95") / (threshold * D("1.03"))
            quantity = ((debt - safe_ltv * collateral) / (1 - safe_ltv)).quantize(D("1e-18"), rounding=ROUND_FLOOR)

            state = await v.leverage.place_order(OrderRequest("delever-1", "aave_v3", "weETH-loop", "sell", quantity))

            assert (state.status, state.filled_quantity) == ("filled", quantity), state
            after = health_factor(market, v.user)
            assert after is not None and after > threshold * D("1.03")  # redeemed at the rate, above the oracle
            steps = health_factors_after_each_step(v, "delever-1")
            assert len(steps) > 10 and min(steps) >= HF_FLOOR  # many small steps, none below the floor
            # The debt fell by the quantity, less the interest accrued over the steps' blocks.
            repaid = debt - D(market.debt_token("WETH").functions.balanceOf(v.user).call()).scaleb(-18)
            assert quantity - D("1e-9") < repaid <= quantity
            assert market.tokens["WETH"].functions.balanceOf(v.user).call() == 0
            assert lsts.weeth.functions.balanceOf(v.user).call() == 0  # every weETH withdrawn was redeemed

    asyncio.run(main())


def test_full_unwind_leaves_only_plain_eth_and_no_debt(market: AaveMarket, lsts: LstMarket,
                                                       anvil_node: AnvilNode) -> None:
    async def main() -> None:
        async with venues(anvil_node, market, lsts) as v:
            await equity_of_one_eth_in_emode(v)
            assert (await v.leverage.place_order(
                OrderRequest("lever-1", "aave_v3", "weETH-loop", "buy", D(3)))).status == "filled"
            positions = {p.symbol: p.quantity for p in (await v.leverage.fetch_account()).positions}

            repaid = await v.leverage.place_order(
                OrderRequest("unwind-1", "aave_v3", "weETH-loop", "sell", positions["WETH-debt"]))
            assert repaid.status == "filled" and repaid.filled_quantity >= positions["WETH-debt"], repaid
            supplied = {p.symbol: p.quantity for p in (await v.leverage.fetch_account()).positions}["weETH"]
            assert (await v.leverage.place_order(
                OrderRequest("unwind-2", "aave_v3", "weETH", "sell", supplied))).status == "filled"
            held = D(lsts.weeth.functions.balanceOf(v.user).call()).scaleb(-18)
            assert (await v.etherfi.place_order(OrderRequest("unwind-3", "etherfi", "weETH", "sell", held))).status == "filled"

            assert (await v.leverage.fetch_account()).positions == []
            assert market.debt_token("WETH").functions.balanceOf(v.user).call() == 0
            for token in (market.tokens["WETH"], lsts.weeth, lsts.wsteth, market.a_token("weETH")):
                assert token.functions.balanceOf(v.user).call() == 0
            assert lsts.eeth.functions.shares(v.user).call() == 0
            assert health_factor(market, v.user) is None  # no debt: Aave's "infinite"

    asyncio.run(main())


def test_a_loop_interrupted_by_a_restart_is_found_open_and_a_cancel_finishes_its_round(
    market: AaveMarket, lsts: LstMarket, anvil_node: AnvilNode, tmp_path: Path
) -> None:
    w3 = market.w3
    path = tmp_path / "journal.json"

    async def crashed_run() -> None:
        async with venues(anvil_node, market, lsts, JsonFileJournal(path)) as v:
            await equity_of_one_eth_in_emode(v)
            rpc(w3, "evm_setAutomine", False)
            task = asyncio.create_task(v.leverage.place_order(
                OrderRequest("crash-loop", "aave_v3", "weETH-loop", "buy", D(5))))
            key = "aave_v3/crash-loop/1.1-borrow/action"
            await until(lambda: v.sender.journal.transactions(key))
            (borrow,) = v.sender.journal.transactions(key)
            await until(lambda: in_pool(market.w3, borrow.tx_hash))
            state = await v.leverage.fetch_order("crash-loop")
            assert state is not None and state.status == "open"  # the borrow is pending
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(crashed_run())
    rpc(w3, "evm_mine")
    rpc(w3, "evm_setAutomine", True)

    async def restarted_run() -> None:
        journal = JsonFileJournal(path)
        async with venues(anvil_node, market, lsts, journal) as v:
            assert await v.leverage.fetch_order("no-such-loop") is None
            state = await v.leverage.fetch_order("crash-loop")
            borrowed = D(market.debt_token("WETH").functions.balanceOf(v.user).call()).scaleb(-18)
            assert state is not None and state.status == "partially_filled" and 0 < state.filled_quantity <= borrowed
            assert [s.client_order_id for s in await v.leverage.fetch_open_orders()] == ["crash-loop"]
            supplied_before = market.a_token("weETH").functions.balanceOf(v.user).call()

            state = await v.leverage.cancel_order("crash-loop")  # finishes round 1, starts no other

            assert state.status == "cancelled" and state.filled_quantity < D(5)
            assert len(journal.transactions("aave_v3/crash-loop/1.1-borrow/action")) == 1
            assert not [t for t in journal.all_transactions() if t.key.startswith("aave_v3/crash-loop/2.")]
            assert market.a_token("weETH").functions.balanceOf(v.user).call() > supplied_before
            assert market.tokens["WETH"].functions.balanceOf(v.user).call() == 0
            nonce = v.nonce()
            again = await v.leverage.place_order(OrderRequest("crash-loop", "aave_v3", "weETH-loop", "buy", D(5)))
            assert (again.status, again.filled_quantity) == ("cancelled", state.filled_quantity)
            assert v.nonce() == nonce  # nothing sent again

    asyncio.run(restarted_run())
