"""The live on-chain venues (``AaveV3Venue``, ``WalletVenue``) and their ``TransactionSender`` against
the real Aave V3.2 market on a local anvil node.

Orders go through the real ``OrderManager`` and ``Store`` where the store matters; the venue signs
with the account's own key and talks to anvil through an async web3 client, as in production. The
chain is rolled back after every test (``evm_snapshot`` / ``evm_revert``); a test that stops
automine turns it back on before the rollback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_DOWN, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3
from web3.exceptions import TransactionNotFound

from basis_live.engine.orders import OrderManager
from basis_live.store import Store
from basis_live.venues.base import AmbiguousOrderError, OrderRejected, OrderRequest
from basis_live.venues.onchain import (
    AAVE_V3_ERRORS,
    DATA_PROVIDER_ABI,
    POOL_ABI,
    AaveV3Config,
    AaveV3Venue,
    WalletVenue,
    aave_revert_reason,
)
from basis_live.venues.transactions import (
    ERC20_ABI,
    MAX_UINT256,
    FeePolicy,
    InMemoryJournal,
    JsonFileJournal,
    SenderSettings,
    SignedTransaction,
    TransactionJournal,
    TransactionSender,
    connect,
)
from chain.aave_market import EMODE_ETH, EMODE_ETH_ID, VARIABLE_RATE, AaveMarket, send
from chain.anvil import AnvilNode, advance_time, in_pool, rpc, until

D = Decimal
GWEI = 10**9
WAD = 10**18
# Dev accounts 0 and 1 are the market's admin and liquidity provider.
BORROWER = 3
USER = 4  # the strategy account the venues sign for
ALLOWED = 5  # on the wallet's transfer allowlist
STRANGER = 6
RUN_ID = "chain001"
FAST = SenderSettings(receipt_timeout=10.0, max_replacements=3, poll_interval=0.02, chain_id=31337)


@dataclass
class Chain:
    node: AnvilNode
    market: AaveMarket
    sender: TransactionSender
    aave: AaveV3Venue
    wallet: WalletVenue

    @property
    def user(self) -> str:
        return self.node.accounts[USER]

    def nonce(self) -> int:
        return self.market.w3.eth.get_transaction_count(self.user, "pending")

    def balance(self, contract: Any) -> int:
        return contract.functions.balanceOf(self.user).call()

    def action_key(self, cid: str) -> str:
        return f"aave_v3/{cid}/action"


@contextlib.asynccontextmanager
async def chain_venues(node: AnvilNode, market: AaveMarket, journal: TransactionJournal | None = None, *,
                       max_fee_gwei: Decimal = D(100), settings: SenderSettings = FAST) -> AsyncIterator[Chain]:
    """The two venues over one sender for the user account, as a live run builds them."""
    w3 = connect(node.rpc_url)
    try:
        sender = TransactionSender(w3, node.private_keys[USER], journal if journal is not None else InMemoryJournal(),
                                   FeePolicy(max_fee_gwei=max_fee_gwei), settings, decode_revert=aave_revert_reason)
        tokens = {symbol: token.address for symbol, token in market.tokens.items()}
        config = AaveV3Config(pool=market.pool.address, data_provider=market.data_provider.address, tokens=tokens)
        yield Chain(node, market, sender, AaveV3Venue(w3, sender, config),
                    WalletVenue(w3, sender, tokens, transfer_allowlist=[node.accounts[ALLOWED]]))
    finally:
        await w3.provider.disconnect()


def open_store(tmp_path: Path) -> Store:
    store = Store.open(tmp_path / "state.db")
    assert store is not None
    if store.get_run(RUN_ID) is None:
        store.insert_run(run_id=RUN_ID, strategy_name="eth_leveraged", mode="eth_leveraged", share_class="ETH",
                         initial_capital="10", execution_mode="live", environment="dev", feed_label="chain",
                         request={}, config={}, pid=os.getpid(), host="test", pid_start=None, heartbeat_timeout=300)
    return store


async def order_manager(store: Store, chain: Chain, call_timeout: float | None = 30) -> OrderManager:
    events: list[tuple[str, str]] = []
    manager = OrderManager(RUN_ID, {"aave_v3": chain.aave, "wallet": chain.wallet}, store,
                           now=lambda: datetime.now(timezone.utc), call_timeout=call_timeout,
                           event=lambda kind, message, **_: events.append((kind, message)))
    manager.events = events  # type: ignore[attr-defined]
    await manager.load_instruments()
    return manager


async def submit(manager: OrderManager, symbol: str, side: str, quantity: Decimal, purpose: str = "test"):  # type: ignore[no-untyped-def]
    return await manager.submit("aave_v3", symbol, side, quantity, order_type="market", price=None,
                                reduce_only=False, purpose=purpose, mark=D(1))


def order_row(store: Store, cid: str) -> dict[str, Any]:
    (row,) = [r for r in store.list_orders(RUN_ID) if r["client_order_id"] == cid]
    return row


def mint(market: AaveMarket, symbol: str, to: str, amount: Decimal | int) -> int:
    raw = market.units(symbol, amount)
    market.mint(symbol, to, raw)
    return raw


async def supply_weeth_in_emode(chain: Chain, amount: int = 10) -> None:
    mint(chain.market, "weETH", chain.user, amount)
    state = await chain.aave.place_order(OrderRequest("setup-supply", "aave_v3", "weETH", "buy", D(amount)))
    assert state.status == "filled"
    assert await chain.aave.set_emode(EMODE_ETH_ID) is not None


def weth_for_ltv(market: AaveMarket, collateral_usd: Decimal, ltv: Decimal) -> Decimal:
    price = D(market.price("WETH")).scaleb(-8)
    return (collateral_usd * ltv / price).quantize(D("1e-18"), rounding=ROUND_DOWN)


def decoded_call(market: AaveMarket, tx_hash: str) -> tuple[str, dict[str, Any]]:
    tx = market.w3.eth.get_transaction(tx_hash)
    fn, args = market.pool.decode_function_input(tx["input"])
    return fn.fn_name, args


# --------------------------------------------------------------------------------------- tests
def test_our_abis_and_error_table_match_the_deployed_contracts(market: AaveMarket) -> None:
    art = market.artifacts

    def signature(entry: dict[str, Any]) -> tuple[Any, ...]:
        inputs = tuple((i["type"], bool(i.get("indexed"))) for i in entry["inputs"])
        outputs = tuple(o["type"] for o in entry.get("outputs", ()))
        return entry["type"], entry["name"], inputs, outputs

    for ours, artifact in ((POOL_ABI, "PoolInstance"), (DATA_PROVIDER_ABI, "AaveProtocolDataProvider"),
                           (ERC20_ABI, "MintableERC20")):
        theirs = {signature(e) for e in art.abi(artifact) if e["type"] in ("function", "event")}
        for entry in ours:
            assert signature(entry) in theirs, (artifact, entry["name"])

    deployed = {}
    for entry in market.errors_library.abi:
        if entry["type"] == "function":
            deployed[market.errors_library.get_function_by_name(entry["name"])().call()] = entry["name"]
    assert AAVE_V3_ERRORS == deployed


def test_supply_through_the_order_manager_fills_and_approves_exactly_the_amount(
    market: AaveMarket, anvil_node: AnvilNode, tmp_path: Path
) -> None:
    store = open_store(tmp_path)

    async def main() -> None:
        async with chain_venues(anvil_node, market) as chain:
            instruments = await chain.aave.instruments()
            assert instruments["USDT"].quantity_step == D("0.000001") and instruments["USDT"].kind == "supply"
            assert instruments["weETH"].quantity_step == D("1e-18")
            assert instruments["WETH-debt"].kind == "debt" and instruments["WETH-debt"].base == "WETH"
            raw = mint(market, "USDT", chain.user, 1000)
            usdt, a_usdt = market.tokens["USDT"], market.a_token("USDT")
            nonce, eth_before = chain.nonce(), market.w3.eth.get_balance(chain.user)
            manager = await order_manager(store, chain)
            ledger: list[Any] = []
            manager.on_ledger = ledger.append

            result = await submit(manager, "USDT", "buy", D("1000"))

            assert result.status == "filled", result
            row = order_row(store, result.client_order_id)
            supply_tx = chain.sender.journal.transactions(chain.action_key(result.client_order_id))[0]
            assert (row["status"], D(row["filled_quantity"]), row["venue_order_id"]) == ("filled", D(1000), supply_tx.tx_hash)
            assert chain.balance(a_usdt) == raw and chain.balance(usdt) == 0
            assert chain.nonce() == nonce + 2  # approve + supply
            # The approval was for exactly the amount, and the supply used all of it.
            (approve_tx,) = chain.sender.journal.transactions(f"aave_v3/{result.client_order_id}/approve")
            receipt = market.w3.eth.get_transaction_receipt(approve_tx.tx_hash)
            (approval,) = usdt.events.Approval().process_receipt(receipt)
            assert (approval.args.spender, approval.args.value) == (market.pool.address, raw)
            assert usdt.functions.allowance(chain.user, market.pool.address).call() == 0
            assert decoded_call(market, supply_tx.tx_hash) == (
                "supply", {"asset": usdt.address, "amount": raw, "onBehalfOf": chain.user, "referralCode": 0})

            account = await chain.aave.fetch_account()
            assert [(p.symbol, p.kind, p.quantity) for p in account.positions] == [("USDT", "supply", D(1000))]
            assert await manager.collect_fills() == 1
            (fill,) = store.list_fills(RUN_ID)
            assert (fill["fill_id"], D(fill["quantity"]), fill["side"]) == (supply_tx.tx_hash, D(1000), "buy")
            # Gas: one ledger entry per transaction, the exact ETH the account paid.
            assert [(e.kind, e.asset) for e in ledger] == [("gas", "ETH"), ("gas", "ETH")]
            paid = eth_before - market.w3.eth.get_balance(chain.user)
            assert -sum(e.amount for e in ledger) == D(paid).scaleb(-18)
            assert await manager.collect_fills() == 0  # nothing new, nothing twice

    asyncio.run(main())


def test_interest_accrues_and_withdrawing_all_leaves_no_atoken(market: AaveMarket, anvil_node: AnvilNode,
                                                              tmp_path: Path) -> None:
    store = open_store(tmp_path)

    async def main() -> None:
        async with chain_venues(anvil_node, market) as chain:
            usdt, a_usdt = market.tokens["USDT"], market.a_token("USDT")
            mint(market, "USDT", chain.user, 100_000)
            manager = await order_manager(store, chain)
            assert (await submit(manager, "USDT", "buy", D(100_000))).status == "filled"
            # Someone borrows USDT so that suppliers earn interest.
            borrower = anvil_node.accounts[BORROWER]
            mint(market, "WETH", borrower, 5_000)
            send(market.tokens["WETH"].functions.approve(market.pool.address, 5_000 * WAD), borrower)
            send(market.pool.functions.supply(market.tokens["WETH"].address, 5_000 * WAD, borrower, 0), borrower)
            send(market.pool.functions.borrow(usdt.address, 8_000_000 * 10**6, VARIABLE_RATE, 0, borrower), borrower)

            advance_time(market.w3, 30 * 24 * 3600)
            (position,) = (await chain.aave.fetch_account()).positions
            assert position.quantity > D(100_000) + D(100)  # ~4% a year for 30 days: ~330 USDT
            assert position.quantity == D(chain.balance(a_usdt)).scaleb(-6)
            assert position.principal is None

            # Withdraw "the whole balance" as read a block ago: interest keeps accruing, the venue
            # withdraws with type(uint256).max and takes everything.
            result = await submit(manager, "USDT", "sell", position.quantity, purpose="exit_full")
            assert result.status == "filled", result
            row = order_row(store, result.client_order_id)
            fn, args = decoded_call(market, row["venue_order_id"])
            assert (fn, args["amount"]) == ("withdraw", MAX_UINT256)
            assert chain.balance(a_usdt) == 0 and a_usdt.functions.scaledBalanceOf(chain.user).call() == 0
            received = D(chain.balance(usdt)).scaleb(-6)
            assert D(row["filled_quantity"]) == received >= position.quantity
            assert (await chain.aave.fetch_account()).positions == []

    asyncio.run(main())


def test_emode_borrow_health_factor_matches_and_repay_all_clears_the_debt(
    market: AaveMarket, anvil_node: AnvilNode, tmp_path: Path
) -> None:
    store = open_store(tmp_path)

    async def main() -> None:
        async with chain_venues(anvil_node, market) as chain:
            weth, a_weeth, debt_token = market.tokens["WETH"], market.a_token("weETH"), market.debt_token("WETH")
            mint(market, "weETH", chain.user, 10)
            manager = await order_manager(store, chain)
            assert (await submit(manager, "weETH", "buy", D(10))).status == "filled"
            assert (await chain.aave.account_data()).health_factor is None  # no debt: Aave's max uint
            assert await chain.aave.set_emode(EMODE_ETH_ID) is not None
            assert await chain.aave.set_emode(EMODE_ETH_ID) is None  # already there: nothing sent
            data = await chain.aave.account_data()
            assert (data.emode_category, data.max_ltv, data.liquidation_threshold) == (EMODE_ETH_ID, D("0.93"), D("0.95"))

            borrow = weth_for_ltv(market, data.total_collateral, D("0.90"))
            result = await submit(manager, "WETH-debt", "buy", borrow, purpose="entry_full")
            assert result.status == "filled", result
            assert chain.balance(weth) == int(borrow * WAD)  # the wallet holds the borrowed WETH

            data = await chain.aave.account_data()
            collateral = Fraction(chain.balance(a_weeth) * market.price("weETH"))
            debt = Fraction(chain.balance(debt_token) * market.price("WETH"))
            ours = collateral * Fraction(EMODE_ETH.liquidation_threshold, 10_000) / debt
            assert data.health_factor is not None
            assert abs(Fraction(data.health_factor) / ours - 1) < Fraction(1, 10**6)
            assert float(data.ltv) == pytest.approx(0.90, abs=1e-4)
            positions = {p.symbol: p for p in (await chain.aave.fetch_account()).positions}
            assert positions["WETH-debt"].kind == "debt"
            assert positions["WETH-debt"].quantity == D(chain.balance(debt_token)).scaleb(-18)

            advance_time(market.w3, 24 * 3600)
            mint(market, "WETH", chain.user, 1)  # the interest
            owed = (await chain.aave.fetch_account()).positions
            owed_weth = next(p.quantity for p in owed if p.symbol == "WETH-debt")
            assert owed_weth > borrow
            result = await submit(manager, "WETH-debt", "sell", owed_weth, purpose="exit_full")
            assert result.status == "filled", result
            row = order_row(store, result.client_order_id)
            fn, args = decoded_call(market, row["venue_order_id"])
            assert (fn, args["amount"]) == ("repay", MAX_UINT256)
            assert chain.balance(debt_token) == 0
            assert D(row["filled_quantity"]) >= owed_weth
            # The repay approval covered the debt plus a small margin for interest, not infinity.
            left = weth.functions.allowance(chain.user, market.pool.address).call()
            assert 0 < left <= int(owed_weth * WAD) // 1000
            assert (await chain.aave.account_data()).health_factor is None

    asyncio.run(main())


def test_borrow_beyond_ltv_is_rejected_with_the_aave_error_and_nothing_is_sent(
    market: AaveMarket, anvil_node: AnvilNode, tmp_path: Path
) -> None:
    store = open_store(tmp_path)

    async def main() -> None:
        async with chain_venues(anvil_node, market) as chain:
            await supply_weeth_in_emode(chain)
            manager = await order_manager(store, chain)
            data = await chain.aave.account_data()
            nonce = chain.nonce()

            result = await submit(manager, "WETH-debt", "buy", weth_for_ltv(market, data.total_collateral, D("0.95")))

            assert result.status == "rejected"
            assert "COLLATERAL_CANNOT_COVER_NEW_BORROW (36)" in (result.reason or "")
            row = order_row(store, result.client_order_id)
            assert row["status"] == "rejected" and "COLLATERAL_CANNOT_COVER_NEW_BORROW" in row["reason"]
            assert chain.nonce() == nonce  # refused at the gas estimate: never signed
            assert await chain.aave.fetch_order(result.client_order_id) is None
            assert chain.balance(market.debt_token("WETH")) == 0

    asyncio.run(main())


def test_a_mined_revert_is_rejected_with_the_decoded_reason_and_its_gas_booked(
    market: AaveMarket, anvil_node: AnvilNode, tmp_path: Path
) -> None:
    """The borrow passes its gas estimate, then the collateral price halves in the same block, ahead
    of it (the admin pays a higher tip): mined, reverted, decoded from the trace."""
    store = open_store(tmp_path)
    w3 = market.w3

    async def main() -> None:
        async with chain_venues(anvil_node, market) as chain:
            await supply_weeth_in_emode(chain)
            manager = await order_manager(store, chain)
            data = await chain.aave.account_data()
            crash_feed = market.artifacts.deploy("MockAggregator", market.price("weETH") // 2)
            nonce = chain.nonce()
            rpc(w3, "evm_setAutomine", False)
            task = asyncio.create_task(submit(manager, "WETH-debt", "buy", weth_for_ltv(market, data.total_collateral, D("0.85"))))
            key = chain.action_key(f"bl{RUN_ID}000001")
            await until(lambda: chain.sender.journal.transactions(key))
            market.oracle.functions.setAssetSources([market.tokens["weETH"].address], [crash_feed.address]).transact(
                {"from": market.admin, "maxPriorityFeePerGas": 50 * GWEI, "maxFeePerGas": 100 * GWEI})
            rpc(w3, "evm_mine")
            rpc(w3, "evm_setAutomine", True)
            result = await task

            assert result.status == "rejected", result
            assert "COLLATERAL_CANNOT_COVER_NEW_BORROW (36)" in (result.reason or "")
            (tx,) = chain.sender.journal.transactions(key)
            assert w3.eth.get_transaction_receipt(tx.tx_hash)["status"] == 0
            assert order_row(store, result.client_order_id)["status"] == "rejected"
            state = await chain.aave.fetch_order(result.client_order_id)
            assert state is not None and state.status == "rejected" and state.venue_order_id == tx.tx_hash
            assert chain.nonce() == nonce + 1
            fills, _ = await chain.aave.fetch_fills(0)
            assert result.client_order_id not in {f.client_order_id for f in fills}
            ledger, _ = await chain.aave.fetch_ledger(0)
            assert f"gas-{tx.tx_hash}" in {e.entry_id for e in ledger}  # a revert still costs gas

        # A node without debug_traceTransaction: the reason comes from replaying the call (here
        # only the state after the block reverts: the price fell within the same block).
        async with chain_venues(anvil_node, market, chain.sender.journal) as fresh:
            async def no_trace(tx_hash: str) -> None:
                return None

            fresh.sender._trace_revert_data = no_trace  # type: ignore[method-assign]
            state = await fresh.aave.fetch_order(result.client_order_id)
            assert state is not None and state.status == "rejected"
            assert "COLLATERAL_CANNOT_COVER_NEW_BORROW (36)" in (state.reason or "")

    asyncio.run(main())


def test_fees_above_the_cap_are_refused_before_anything_is_signed(
    market: AaveMarket, anvil_node: AnvilNode, tmp_path: Path
) -> None:
    store = open_store(tmp_path)
    rpc(market.w3, "anvil_setNextBlockBaseFeePerGas", hex(50 * GWEI))
    rpc(market.w3, "evm_mine")
    assert market.w3.eth.get_block("latest")["baseFeePerGas"] == 50 * GWEI

    async def main() -> None:
        journal = InMemoryJournal()
        async with chain_venues(anvil_node, market, journal, max_fee_gwei=D(10)) as chain:
            mint(market, "USDT", chain.user, 100)
            manager = await order_manager(store, chain)
            nonce = chain.nonce()

            result = await submit(manager, "USDT", "buy", D(100))

            assert result.status == "rejected"
            assert "above the max fee cap 10.0000 gwei" in (result.reason or "")
            assert order_row(store, result.client_order_id)["status"] == "rejected"
            assert chain.nonce() == nonce  # not even the approval went out
            assert journal.all_transactions() == []
            assert market.tokens["USDT"].functions.allowance(chain.user, market.pool.address).call() == 0

    asyncio.run(main())


def test_later_checkpoints_read_no_settled_order_or_mined_transaction_again(
    market: AaveMarket, anvil_node: AnvilNode, tmp_path: Path
) -> None:
    """The journal keeps every order's transactions for good; a checkpoint must not re-read them all
    (it did: each checkpoint read every transaction once per intent, quadratic as the account aged)."""

    class CountingJournal(InMemoryJournal):
        def __init__(self) -> None:
            super().__init__()
            self.reads = 0

        def transactions(self, key: str) -> list[Any]:
            self.reads += 1
            return super().transactions(key)

        def all_transactions(self) -> list[Any]:
            self.reads += len(self._transactions)
            return super().all_transactions()

    store = open_store(tmp_path)
    journal = CountingJournal()

    async def main() -> None:
        async with chain_venues(anvil_node, market, journal) as chain:
            mint(market, "USDT", chain.user, 4000)
            manager = await order_manager(store, chain)
            ledger: list[Any] = []
            manager.on_ledger = ledger.append
            for _ in range(3):
                assert (await submit(manager, "USDT", "buy", D("1000"))).status == "filled"
            assert await manager.collect_fills() == 3
            assert len(ledger) == 6  # approve + supply, three times
            status_calls = 0
            real_status = chain.sender.status

            async def counted_status(key: str) -> Any:
                nonlocal status_calls
                status_calls += 1
                return await real_status(key)

            chain.sender.status = counted_status  # type: ignore[method-assign]
            journal.reads = 0
            for _ in range(3):
                assert await manager.collect_fills() == 0
            assert (journal.reads, status_calls) == (0, 0)
            # A new order is still seen, once, with its gas.
            assert (await submit(manager, "USDT", "buy", D("1000"))).status == "filled"
            assert await manager.collect_fills() == 1
            assert len(ledger) == 8
            assert [D(f["quantity"]) for f in store.list_fills(RUN_ID)] == [D(1000)] * 4

    asyncio.run(main())


def test_a_restart_between_broadcast_and_receipt_finds_the_receipt_and_sends_nothing_again(
    market: AaveMarket, anvil_node: AnvilNode, tmp_path: Path
) -> None:
    store = open_store(tmp_path)
    journal_path = tmp_path / "journal.json"
    w3 = market.w3

    async def crashed_run() -> tuple[str, Decimal, int]:
        async with chain_venues(anvil_node, market, JsonFileJournal(journal_path)) as chain:
            await supply_weeth_in_emode(chain)
            manager = await order_manager(store, chain)
            nonce = chain.nonce()
            rpc(w3, "evm_setAutomine", False)
            task = asyncio.create_task(submit(manager, "WETH-debt", "buy", D("1.5")))
            cid = f"bl{RUN_ID}000001"
            await until(lambda: chain.sender.journal.transactions(chain.action_key(cid)))
            (tx,) = chain.sender.journal.transactions(chain.action_key(cid))
            await until(lambda: in_pool(w3, tx.tx_hash))
            task.cancel()  # the process dies: signed, journaled, broadcast, no receipt seen
            with pytest.raises(asyncio.CancelledError):
                await task
            assert order_row(store, cid)["status"] == "pending_submit"
            return cid, D("1.5"), nonce

    cid, quantity, nonce = asyncio.run(crashed_run())
    rpc(w3, "evm_mine")  # mined while nobody watched
    rpc(w3, "evm_setAutomine", True)

    async def restarted_run() -> None:
        journal = JsonFileJournal(journal_path)  # a new process reads the same file
        async with chain_venues(anvil_node, market, journal) as chain:
            manager = await order_manager(store, chain)
            assert await manager.reconcile_unsettled() == 0
            row = order_row(store, cid)
            (tx,) = journal.transactions(chain.action_key(cid))
            assert (row["status"], row["venue_order_id"], D(row["filled_quantity"])) == ("filled", tx.tx_hash, quantity)
            assert chain.nonce() == nonce + 1
            assert chain.balance(market.debt_token("WETH")) == int(quantity * WAD)
            # The same order placed again (a resend by mistake) answers from the receipt.
            state = await chain.aave.place_order(OrderRequest(cid, "aave_v3", "WETH-debt", "buy", quantity))
            assert (state.status, state.venue_order_id) == ("filled", tx.tx_hash)
            assert chain.nonce() == nonce + 1
            # Fills and gas are rebuilt from the journal by the new process.
            fills, _ = await chain.aave.fetch_fills(0)
            assert {f.client_order_id: f.quantity for f in fills} == {"setup-supply": D(10), cid: quantity}
            ledger, _ = await chain.aave.fetch_ledger(0)
            assert len(ledger) == 4  # approve, supply, eMode, borrow

    asyncio.run(restarted_run())


def test_a_crash_between_journal_and_broadcast_is_broadcast_by_the_next_process(
    market: AaveMarket, anvil_node: AnvilNode, tmp_path: Path
) -> None:
    journal_path = tmp_path / "journal.json"

    class Crash(BaseException):
        pass

    async def crashed_run() -> int:
        async with chain_venues(anvil_node, market, JsonFileJournal(journal_path)) as chain:
            await supply_weeth_in_emode(chain)
            nonce = chain.nonce()

            async def die(tx: SignedTransaction) -> bool:
                raise Crash

            chain.sender._broadcast = die  # type: ignore[method-assign]
            with pytest.raises(Crash):
                await chain.aave.place_order(OrderRequest("lost-1", "aave_v3", "WETH-debt", "buy", D(1)))
            assert chain.nonce() == nonce  # the node never saw it
            return nonce

    nonce = asyncio.run(crashed_run())

    async def restarted_run() -> None:
        async with chain_venues(anvil_node, market, JsonFileJournal(journal_path)) as chain:
            # Signed means committed: the next process broadcasts the journaled bytes, no new signature.
            state = await chain.aave.fetch_order("lost-1")
            assert state is not None and state.status in ("open", "filled")
            state = await chain.aave.fetch_order("lost-1")
            assert state is not None and state.status == "filled"
            assert chain.nonce() == nonce + 1
            # The next order takes the next nonce: no gap, no reuse.
            state = await chain.aave.place_order(OrderRequest("next-1", "aave_v3", "WETH-debt", "buy", D(1)))
            assert state.status == "filled" and chain.nonce() == nonce + 2

    asyncio.run(restarted_run())


def test_a_stuck_transaction_is_replaced_with_higher_fees_on_the_same_nonce(
    market: AaveMarket, anvil_node: AnvilNode
) -> None:
    w3 = market.w3
    settings = SenderSettings(receipt_timeout=0.3, max_replacements=3, poll_interval=0.02, chain_id=31337)

    async def main() -> None:
        async with chain_venues(anvil_node, market, settings=settings) as chain:
            await supply_weeth_in_emode(chain)
            nonce = chain.nonce()
            rpc(w3, "evm_setAutomine", False)
            key = chain.action_key("stuck-1")
            task = asyncio.create_task(chain.aave.place_order(OrderRequest("stuck-1", "aave_v3", "WETH-debt", "buy", D(2))))
            # Journaled first, broadcast right after: mine once the node holds the replacement.
            await until(lambda: [v for v in chain.sender.journal.transactions(key)[1:] if in_pool(w3, v.tx_hash)])
            rpc(w3, "evm_mine")
            rpc(w3, "evm_setAutomine", True)
            state = await task

            versions = chain.sender.journal.transactions(key)
            # The mined version is a replacement; one more may have been signed while the block was
            # being mined (the node then refused it: nonce too low).
            hashes = [v.tx_hash for v in versions]
            assert state.status == "filled" and hashes.index(state.venue_order_id) >= 1
            mined = versions[hashes.index(state.venue_order_id)]
            assert {v.nonce for v in versions} == {nonce}
            for older, newer in zip(versions, versions[1:]):
                assert newer.max_fee_per_gas * 8 >= older.max_fee_per_gas * 9  # >= +12.5%
                assert newer.max_priority_fee_per_gas * 8 >= older.max_priority_fee_per_gas * 9
                assert newer.data == older.data and newer.gas == older.gas  # the same call
            for other in versions:
                if other is not mined:
                    with pytest.raises(TransactionNotFound):
                        w3.eth.get_transaction_receipt(other.tx_hash)  # replaced, never mined
            assert mined.max_fee_per_gas <= 100 * GWEI
            assert w3.eth.get_transaction(mined.tx_hash)["maxFeePerGas"] == mined.max_fee_per_gas
            assert chain.nonce() == nonce + 1
            assert chain.balance(market.debt_token("WETH")) == 2 * WAD

    asyncio.run(main())


def test_asking_for_the_status_of_a_stuck_transaction_bumps_its_fees(market: AaveMarket, anvil_node: AnvilNode) -> None:
    """When the engine's call timeout cut the wait short, the reconcile's status checks keep the
    transaction moving: a version older than the receipt timeout is replaced."""
    w3 = market.w3
    settings = SenderSettings(receipt_timeout=0.5, max_replacements=3, poll_interval=0.02, chain_id=31337)

    async def main() -> None:
        async with chain_venues(anvil_node, market, settings=settings) as chain:
            rpc(w3, "evm_setAutomine", False)
            key = "manual/pay-1/action"
            first = await chain.sender.submit(key, to=anvil_node.accounts[ALLOWED], value=1, label="pay 1 wei")
            status = await chain.sender.status(key)
            assert status.state == "pending" and status.hashes == (first.tx_hash,)
            await asyncio.sleep(0.6)
            status = await chain.sender.status(key)
            assert status.state == "pending" and len(status.hashes) == 2 and status.hashes[0] == first.tx_hash
            rpc(w3, "evm_mine")
            status = await chain.sender.status(key)
            assert status.state == "mined" and status.outcome is not None
            assert (status.outcome.tx_hash, status.outcome.status) == (status.hashes[1], 1)

    asyncio.run(main())


def test_a_stuck_transaction_at_the_fee_cap_is_ambiguous_then_reconciled(
    market: AaveMarket, anvil_node: AnvilNode, tmp_path: Path
) -> None:
    """The cap leaves no room for a +12.5% bump: the submit ends ambiguous, the manager asks the venue,
    which reports the order open; once mined, a reconcile records it filled."""
    store = open_store(tmp_path)
    w3 = market.w3
    settings = SenderSettings(receipt_timeout=0.2, max_replacements=3, poll_interval=0.02, chain_id=31337)

    async def main() -> None:
        async with chain_venues(anvil_node, market, settings=settings) as chain:
            await supply_weeth_in_emode(chain)
            # A cap with room for the first fee but not for a +12.5% bump (as an operator would set it).
            base = w3.eth.get_block("latest")["baseFeePerGas"]
            cap = D(2 * base + w3.eth.max_priority_fee + GWEI // 20) / GWEI
            chain.sender.fees = FeePolicy(max_fee_gwei=cap)
            manager = await order_manager(store, chain)
            nonce = chain.nonce()
            rpc(w3, "evm_setAutomine", False)
            result = await submit(manager, "WETH-debt", "buy", D(1))
            assert result.status == "open", result
            assert [kind for kind, _ in manager.events][-2:] == ["order.unknown", "order.reconciled"]  # type: ignore[attr-defined]
            assert len(chain.sender.journal.transactions(chain.action_key(result.client_order_id))) == 1
            with pytest.raises(AmbiguousOrderError):  # the venue itself, asked directly, says the same
                await chain.aave.place_order(OrderRequest("stuck-2", "aave_v3", "WETH-debt", "buy", D(1)))
            assert order_row(store, result.client_order_id)["status"] == "open"

            rpc(w3, "evm_mine")
            rpc(w3, "evm_setAutomine", True)
            assert await manager.reconcile_unsettled() == 0
            assert order_row(store, result.client_order_id)["status"] == "filled"
            assert (await chain.aave.fetch_order("stuck-2")).status == "filled"  # type: ignore[union-attr]
            assert chain.nonce() == nonce + 2

    asyncio.run(main())


def test_wallet_reports_balances_takes_no_orders_and_transfers_only_to_the_allowlist(
    market: AaveMarket, anvil_node: AnvilNode
) -> None:
    async def main() -> None:
        async with chain_venues(anvil_node, market) as chain:
            usdt = market.tokens["USDT"]
            mint(market, "USDT", chain.user, 5)
            account = await chain.wallet.fetch_account()
            assert account.balances["USDT"] == D(5) and "WETH" not in account.balances
            assert account.balances["ETH"] == D(market.w3.eth.get_balance(chain.user)).scaleb(-18)
            assert await chain.wallet.instruments() == {}
            with pytest.raises(OrderRejected, match="no orders"):
                await chain.wallet.place_order(OrderRequest("w-1", "wallet", "ETH", "buy", D(1)))
            assert await chain.wallet.fetch_order("w-1") is None

            nonce = chain.nonce()
            stranger = anvil_node.accounts[STRANGER]
            with pytest.raises(OrderRejected, match="not on the transfer allowlist"):
                await chain.wallet.transfer("USDT", stranger, D(1), "t-0")
            assert chain.nonce() == nonce and usdt.functions.balanceOf(stranger).call() == 0

            allowed = anvil_node.accounts[ALLOWED]
            eth_before = market.w3.eth.get_balance(allowed)
            outcome = await chain.wallet.transfer("USDT", allowed, D(2), "t-1")
            assert usdt.functions.balanceOf(allowed).call() == 2 * 10**6
            again = await chain.wallet.transfer("USDT", allowed, D(2), "t-1")  # same id: no second send
            assert again.tx_hash == outcome.tx_hash and usdt.functions.balanceOf(allowed).call() == 2 * 10**6
            await chain.wallet.transfer("ETH", allowed.lower(), D("0.5"), "t-2")
            assert market.w3.eth.get_balance(allowed) - eth_before == WAD // 2
            assert chain.nonce() == nonce + 2

            ledger, cursor = await chain.wallet.fetch_ledger(0)
            assert sorted((e.kind, e.asset, e.amount) for e in ledger if e.kind == "withdrawal") == [
                ("withdrawal", "ETH", D("-0.5")), ("withdrawal", "USDT", D(-2))]
            assert len([e for e in ledger if e.kind == "gas"]) == 2
            assert (await chain.wallet.fetch_ledger(cursor))[0] == []

    asyncio.run(main())


def test_a_chain_client_asks_the_node_for_its_chain_id_once_not_before_every_call(anvil_node: AnvilNode) -> None:
    from collections import Counter

    posted: Counter[str] = Counter()

    async def main() -> None:
        w3 = connect(anvil_node.rpc_url)
        sessions = w3.provider._request_session_manager  # type: ignore[attr-defined]
        post = sessions.async_make_post_request

        async def counted(uri: str, data: bytes, **kwargs: Any) -> Any:
            posted[json.loads(data)["method"]] += 1
            return await post(uri, data, **kwargs)

        sessions.async_make_post_request = counted
        try:
            for _ in range(5):
                await w3.eth.call({"to": anvil_node.accounts[1], "data": "0x"})
                await w3.eth.estimate_gas({"from": anvil_node.accounts[0], "to": anvil_node.accounts[1], "value": 1})
            assert await w3.eth.chain_id == 31337
        finally:
            await w3.provider.disconnect()

    asyncio.run(main())
    # web3's validation middleware asks before each eth_call and estimate (20 requests here uncached).
    assert (posted["eth_call"], posted["eth_estimateGas"]) == (5, 5)
    assert posted["eth_chainId"] <= 2


def test_json_journal_is_private_durable_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "journal.json"
    journal = JsonFileJournal(path)
    tx = SignedTransaction(key="aave_v3/x/action", sender="0xAbC0000000000000000000000000000000000001", nonce=7,
                           tx_hash="0x01", raw="0x02", to="0x03", value=0, data="0x", gas=21000,
                           max_fee_per_gas=2, max_priority_fee_per_gas=1, label="test", signed_at="t")
    journal.put_intent("aave_v3/x", {"symbol": "USDT", "quantity": "1"})
    journal.record_signed(tx)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reloaded = JsonFileJournal(path)
    assert reloaded.transactions("aave_v3/x/action") == [tx]
    assert reloaded.last_nonce("0xabc0000000000000000000000000000000000001") == 7
    assert reloaded.last_nonce("0x0000000000000000000000000000000000000002") is None
    assert reloaded.intent("aave_v3/x") == {"symbol": "USDT", "quantity": "1"}
    assert reloaded.intent_keys("aave_v3/") == ["aave_v3/x"]
    assert json.loads(path.read_text())["version"] == 1
    assert not [p for p in path.parent.iterdir() if p.name != "journal.json"]  # no temp files left


def test_the_private_key_never_shows(anvil_node: AnvilNode) -> None:
    key = anvil_node.private_keys[USER]
    sender = TransactionSender(Web3(), key, InMemoryJournal(), FeePolicy(max_fee_gwei=D(1)))  # type: ignore[arg-type]
    text = repr(sender) + str(vars(sender))
    assert key.removeprefix("0x") not in text and sender.address == anvil_node.accounts[USER]
