"""Funding payments read from the exchanges: the peer's income history endpoints (binance
``/fapi/v1/income``, bybit ``/v5/execution/list``, okx ``/api/v5/account/bills`` and
``bills-archive``) through ccxt's real ``fetch_funding_history``, and ``CcxtVenue.fetch_ledger`` on
top of them: signs, amounts, ids, exactly-once delivery, polling and failures. Nothing here leaves
127.0.0.1 (``make_exchange`` refuses any URL that is not the peer's)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from peers.ccxt_wiring import connected, make_exchange
from peers.exchange_server import ExchangePeer

from basis_live.venues.base import LedgerEntry, OrderRequest
from basis_live.venues.cex import FUNDING_OVERLAP_MS, CcxtVenue, RetrySettings

D = Decimal
VENUES = ["binance", "bybit", "okx"]
PERP, SPOT, ETH_PERP = "BTC/USDT:USDT", "BTC/USDT", "ETH/USDT:USDT"
FAST = RetrySettings(attempts=3, initial_wait=0.01, max_wait=0.02, jitter=0.0, absence_recheck_delay=0.0)
#: The peer's op name of the endpoint ccxt's fetch_funding_history calls.
FUNDING_OP = {"binance": "income", "bybit": "execution_list", "okx": "bills_archive"}
#: 0.01 BTC and 0.1 ETH in each venue's order unit (okx swaps: 0.01 BTC / 0.1 ETH contracts).
BTC_UNITS = {"binance": 0.01, "bybit": 0.01, "okx": 1.0}
ETH_UNITS = {"binance": 0.1, "bybit": 0.1, "okx": 1.0}
RATE_UP, RATE_DOWN = D("0.0001"), D("-0.00025")


@pytest.fixture
def peer() -> Any:
    with ExchangePeer() as server:
        yield server


def now_ms() -> int:
    return int(time.time() * 1000)


def received(position: Decimal, mark: Decimal, rate: Decimal) -> Decimal:
    """What a position (base units, short < 0) receives at a settlement: longs pay shorts when
    the rate is positive; notional = |position| x mark."""
    notional = abs(position) * mark
    return notional * rate if position < 0 else -notional * rate


def exchange_run(peer: ExchangePeer, venue: str, scenario: Callable[[Any], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with connected(peer, venue) as exchange:
            await exchange.load_markets()
            return await scenario(exchange)
    return asyncio.run(main())


def venue_run(peer: ExchangePeer, venue: str, scenario: Callable[..., Awaitable[Any]],
              funding_poll_seconds: float = 0.0) -> Any:
    """``scenario(btc, eth)``: two CcxtVenues on the same peer account, one trading the BTC spot and
    perp, the other the ETH perp."""
    async def main() -> Any:
        btc = CcxtVenue(make_exchange(peer, venue), venue, [SPOT, PERP], FAST,
                        funding_poll_seconds=funding_poll_seconds)
        eth = CcxtVenue(make_exchange(peer, venue), venue, [ETH_PERP], FAST, funding_poll_seconds=funding_poll_seconds)
        try:
            return await scenario(btc, eth)
        finally:
            await btc.close()
            await eth.close()
    return asyncio.run(main())


async def open_short(venue: CcxtVenue, symbol: str, quantity: str) -> None:
    state = await venue.place_order(OrderRequest(f"blfund{symbol[:3]}{now_ms() % 10**9}", venue.name, symbol,
                                                 "sell", D(quantity)))
    assert state.status == "filled", state


# ---- the peer's endpoints through ccxt's fetch_funding_history ---------------------------------


def test_binance_income_history_rows(peer: ExchangePeer) -> None:
    async def scenario(ex: Any) -> int:
        await ex.create_order(PERP, "market", "sell", 0.01)
        start = now_ms()
        peer.set_funding_rate("binance", PERP, RATE_UP)
        assert peer.settle_funding("binance", PERP, start) == D("0.06")
        peer.set_price("binance", PERP, 61000)
        peer.set_funding_rate("binance", PERP, RATE_DOWN)
        assert peer.settle_funding("binance", PERP, start + 1000) == D("-0.1525")

        rows = await ex.fetch_funding_history(PERP, since=start)
        assert [(r["symbol"], r["code"], r["amount"], r["timestamp"]) for r in rows] == [
            (PERP, "USDT", 0.06, start), (PERP, "USDT", -0.1525, start + 1000)]
        first = rows[0]["info"]
        assert set(first) == {"symbol", "incomeType", "income", "asset", "info", "time", "tranId", "tradeId"}
        assert (first["symbol"], first["incomeType"], first["income"], first["asset"], first["tradeId"]) == (
            "BTCUSDT", "FUNDING_FEE", "0.06000000", "USDT", "")
        assert isinstance(first["time"], int) and isinstance(first["tranId"], int)  # JSON numbers
        assert rows[0]["id"] == str(first["tranId"]) != rows[1]["id"]

        # startTime / endTime are inclusive
        assert [r["amount"] for r in await ex.fetch_funding_history(PERP, since=start + 1000)] == [-0.1525]
        assert [r["amount"] for r in await ex.fetch_funding_history(PERP, since=start, params={"until": start})] == [
            0.06]
        # the income history also holds the fill's commission; incomeType=FUNDING_FEE keeps it out
        everything = await ex.fapiPrivateGetIncome({"symbol": "BTCUSDT", "startTime": start - 60_000})
        assert sorted(r["incomeType"] for r in everything) == ["COMMISSION", "FUNDING_FEE", "FUNDING_FEE"]
        assert await ex.fetch_funding_history(ETH_PERP, since=start) == []
        return start
    start = exchange_run(peer, "binance", scenario)
    request = peer.requests("binance", "income")[0]
    assert request.path == "/fapi/v1/income"
    assert {k: request.params[k] for k in ("incomeType", "symbol", "startTime")} == {
        "incomeType": "FUNDING_FEE", "symbol": "BTCUSDT", "startTime": str(start)}


def test_bybit_funding_executions(peer: ExchangePeer) -> None:
    """ccxt's bybit amount is execFee, a fee (positive = paid): the opposite sign of the others'."""
    async def scenario(ex: Any) -> None:
        await ex.create_order(PERP, "market", "sell", 0.01)
        start = now_ms()
        peer.set_funding_rate("bybit", PERP, RATE_UP)
        peer.settle_funding("bybit", PERP, start)
        peer.set_price("bybit", PERP, 61000)
        peer.set_funding_rate("bybit", PERP, RATE_DOWN)
        peer.settle_funding("bybit", PERP, start + 1000)

        rows = await ex.fetch_funding_history(PERP, since=start)
        assert [(r["symbol"], r["code"], r["amount"], r["timestamp"]) for r in rows] == [
            (PERP, "USDT", -0.06, start), (PERP, "USDT", 0.1525, start + 1000)]
        received_row, paid_row = rows[0]["info"], rows[1]["info"]
        assert (received_row["execType"], received_row["side"], received_row["execQty"]) == ("Funding", "Sell", "0.01")
        # the short's feeRate is the funding rate negated; execFee = execValue x feeRate
        assert (received_row["feeRate"], received_row["execValue"], received_row["execFee"]) == (
            "-0.0001", "600", "-0.06")
        assert (paid_row["feeRate"], paid_row["markPrice"], paid_row["execPrice"], paid_row["execFee"]) == (
            "0.00025", "61000", "61000", "0.1525")
        assert rows[0]["id"] == received_row["execId"] != rows[1]["id"]
        assert received_row["orderId"].endswith("-BTCUSDT-24600001-Sell") and received_row["orderLinkId"] == ""

        # the list also holds the trade; execType=Funding keeps it out. Newest first.
        listed = (await ex.privateGetV5ExecutionList({"category": "linear", "symbol": "BTCUSDT",
                                                      "startTime": start - 60_000}))["result"]["list"]
        assert sorted(r["execType"] for r in listed) == ["Funding", "Funding", "Trade"]
        times = [int(r["execTime"]) for r in listed]
        assert times == sorted(times, reverse=True)
        # startTime alone covers the 7 days after it
        assert await ex.fetch_funding_history(PERP, since=start - 8 * 24 * 3600 * 1000) == []
        assert await ex.fetch_funding_history(ETH_PERP, since=start) == []
    exchange_run(peer, "bybit", scenario)
    request = peer.requests("bybit", "execution_list")[0]
    assert request.path == "/v5/execution/list"
    assert {k: request.params[k] for k in ("execType", "category", "symbol")} == {
        "execType": "Funding", "category": "linear", "symbol": "BTCUSDT"}


def test_okx_funding_fee_bills(peer: ExchangePeer) -> None:
    async def scenario(ex: Any) -> None:
        await ex.create_order(PERP, "market", "sell", 1)  # 1 contract = 0.01 BTC
        start = now_ms()
        peer.set_funding_rate("okx", PERP, RATE_UP)
        peer.settle_funding("okx", PERP, start)
        peer.set_price("okx", PERP, 61000)
        peer.set_funding_rate("okx", PERP, RATE_DOWN)
        peer.settle_funding("okx", PERP, start + 1000)

        rows = await ex.fetch_funding_history(PERP)  # ccxt sends neither instId nor a start time
        assert [(r["symbol"], r["code"], r["amount"], r["timestamp"]) for r in rows] == [
            (PERP, "USDT", 0.06, start), (PERP, "USDT", -0.1525, start + 1000)]
        income, expense = rows[0]["info"], rows[1]["info"]
        assert (income["type"], income["subType"], income["instType"], income["instId"]) == (
            "8", "174", "SWAP", "BTC-USDT-SWAP")
        assert (income["balChg"], income["pnl"], income["fee"], income["sz"], income["px"], income["ccy"]) == (
            "0.06", "0.06", "0", "1", "60000", "USDT")
        assert (expense["subType"], expense["balChg"], expense["px"]) == ("173", "-0.1525", "61000")
        assert D(expense["bal"]) == peer.balance("okx", "USDT")
        assert rows[0]["id"] == income["billId"] and int(expense["billId"]) > int(income["billId"])

        assert [r["amount"] for r in await ex.fetch_funding_history(PERP, params={"begin": start + 1000})] == [
            -0.1525]
        # the 7-day endpoint lists the trade's bill too, newest first; type=8 keeps it out
        bills = await ex.privateGetAccountBills({"instType": "SWAP"})
        assert [(b["type"], b["subType"]) for b in bills["data"]] == [("8", "173"), ("8", "174"), ("2", "4")]
        older = await ex.privateGetAccountBills({"after": expense["billId"]})
        assert older["data"][0]["billId"] == income["billId"]
        assert await ex.fetch_funding_history(ETH_PERP) == []
    exchange_run(peer, "okx", scenario)
    request = peer.requests("okx", "bills_archive")[0]
    assert request.path == "/api/v5/account/bills-archive"
    assert {k: request.params[k] for k in ("type", "instType", "ctType", "ccy")} == {
        "type": "8", "instType": "SWAP", "ctType": "linear", "ccy": "USDT"}


@pytest.mark.parametrize("venue", VENUES)
def test_a_flat_position_books_no_funding(peer: ExchangePeer, venue: str) -> None:
    async def scenario(ex: Any) -> list:
        assert peer.settle_funding(venue, PERP) == 0
        return await ex.fetch_funding_history(PERP, since=now_ms() - 60_000)
    assert exchange_run(peer, venue, scenario) == []


def funding_polls(peer: ExchangePeer, venue: str) -> list[Any]:
    """The venue's funding-history requests (binance's income endpoint also serves the commission
    reads, with incomeType COMMISSION)."""
    return [e for e in peer.requests(venue, FUNDING_OP[venue])
            if venue != "binance" or e.params.get("incomeType") == "FUNDING_FEE"]


async def funding_of(venue: CcxtVenue, since: int = 0) -> tuple[list[LedgerEntry], int]:
    """``venue.fetch_ledger`` restricted to its funding entries, the cursor counting only them:
    binance also journals its USDⓈ-M commissions there (``fee`` entries, tested on their own below)."""
    entries, _ = await venue.fetch_ledger(0)
    funding = [e for e in entries if e.kind == "funding"]
    return funding[since:], len(funding)


# ---- CcxtVenue.fetch_ledger ----------------------------------------------------------------------


@pytest.mark.parametrize("venue", VENUES)
def test_fetch_ledger_reports_each_funding_payment_once_with_its_sign(peer: ExchangePeer, venue: str) -> None:
    btc_short, eth_short = D("-0.01"), D("-0.1")
    marks = [D(60000), D(61000)]
    rates = [RATE_UP, RATE_DOWN]

    async def scenario(btc: CcxtVenue, eth: CcxtVenue) -> list[LedgerEntry]:
        await open_short(btc, PERP, "0.01")
        await open_short(eth, ETH_PERP, "0.1")
        assert await funding_of(btc, 0) == ([], 0)
        start = now_ms()
        for n, (mark, rate) in enumerate(zip(marks, rates)):
            peer.set_price(venue, PERP, mark)
            peer.set_funding_rate(venue, PERP, rate)
            peer.set_funding_rate(venue, ETH_PERP, rate)
            assert peer.settle_funding(venue, PERP, start + n * 1000) == received(btc_short, mark, rate)
            peer.settle_funding(venue, ETH_PERP, start + n * 1000)

        entries, cursor = await funding_of(btc, 0)
        assert cursor == 2
        assert [(e.venue, e.kind, e.symbol, e.asset, e.amount) for e in entries] == [
            (venue, "funding", PERP, "USDT", received(btc_short, mark, rate)) for mark, rate in zip(marks, rates)]
        assert [e.amount for e in entries] == [D("0.06"), D("-0.1525")]  # a short receives, then pays
        assert [e.timestamp for e in entries] == [
            datetime.fromtimestamp((start + n * 1000) / 1000, tz=UTC) for n in range(2)]
        assert len({e.entry_id for e in entries}) == 2
        assert all(e.entry_id.startswith(f"{venue}-funding-") for e in entries)

        # asked again (the venue's answer overlaps the last one): nothing new, nothing twice
        assert await funding_of(btc, cursor) == ([], cursor)
        assert await funding_of(btc, cursor) == ([], cursor)
        assert (await funding_of(btc, 0))[0] == entries

        # the ETH perp's payments belong to the venue object that trades it
        eth_entries, _ = await funding_of(eth, 0)
        assert [(e.symbol, e.amount) for e in eth_entries] == [
            (ETH_PERP, received(eth_short, D(3000), rate)) for rate in rates]
        assert not {e.entry_id for e in eth_entries} & {e.entry_id for e in entries}
        return entries
    venue_run(peer, venue, scenario)

    polls = funding_polls(peer, venue)
    symbol_param = "instId" if venue == "okx" else "symbol"
    btc_polls = [e for e in polls if e.params[symbol_param].startswith("BTC")]
    assert len(btc_polls) == 5  # one per fetch_ledger call of the BTC venue: its spot symbol has no funding
    assert all(e.status == 200 for e in polls)
    start_param = {"binance": "startTime", "bybit": "startTime", "okx": "begin"}[venue]
    first_settlement = min(p.ts for p in peer.apis[venue].ledger.fundings)
    assert all(int(e.params[start_param]) <= first_settlement for e in btc_polls)  # overlapping windows


@pytest.mark.parametrize("venue", VENUES)
def test_fetch_ledger_asks_the_venue_at_most_once_per_poll_interval(peer: ExchangePeer, venue: str) -> None:
    async def scenario(btc: CcxtVenue, eth: CcxtVenue) -> None:
        await open_short(btc, PERP, "0.01")
        assert await funding_of(btc, 0) == ([], 0)  # the first call asks
        peer.settle_funding(venue, PERP)
        assert await funding_of(btc, 0) == ([], 0)  # within the hour: not asked again
        assert await funding_of(btc, 0) == ([], 0)
        assert len(funding_polls(peer, venue)) == 1
        btc.funding_poll_seconds = 0  # the interval is what held it back
        entries, cursor = await funding_of(btc, 0)
        assert [(e.symbol, e.amount) for e in entries] == [(PERP, D("0.06"))] and cursor == 1
        assert len(funding_polls(peer, venue)) == 2
    venue_run(peer, venue, scenario, funding_poll_seconds=3600)


@pytest.mark.parametrize("venue", VENUES)
def test_a_failed_funding_read_is_retried_at_the_next_poll_and_nothing_is_lost(peer: ExchangePeer,
                                                                               venue: str) -> None:
    async def scenario(btc: CcxtVenue, eth: CcxtVenue) -> None:
        await open_short(btc, PERP, "0.01")
        peer.settle_funding(venue, PERP)
        peer.server_errors(venue, op=FUNDING_OP[venue], times=FAST.attempts, status=503)
        assert await funding_of(btc, 0) == ([], 0)  # logged, not raised: fills are read alongside
        entries, cursor = await funding_of(btc, 0)
        assert [(e.symbol, e.amount) for e in entries] == [(PERP, D("0.06"))] and cursor == 1
    venue_run(peer, venue, scenario)
    assert [e.status for e in funding_polls(peer, venue)] == [503] * FAST.attempts + [200]


@pytest.mark.parametrize("venue", VENUES)
def test_each_poll_asks_from_the_last_one_less_the_overlap(peer: ExchangePeer, venue: str) -> None:
    hour = 3_600_000

    async def scenario(btc: CcxtVenue, eth: CcxtVenue) -> tuple[int, int]:
        btc._funding_floor_ms -= 3 * hour  # as if the venue object was created three hours ago
        await open_short(btc, PERP, "0.01")
        old = now_ms() - 2 * hour
        peer.settle_funding(venue, PERP, old)
        entries, cursor = await funding_of(btc, 0)
        assert [(e.amount, e.timestamp) for e in entries] == [
            (D("0.06"), datetime.fromtimestamp(old / 1000, tz=UTC))]
        mark = btc._funding_hwm[PERP]  # when that poll started
        peer.set_funding_rate(venue, PERP, RATE_DOWN)
        peer.settle_funding(venue, PERP)
        more, cursor = await funding_of(btc, cursor)
        assert [e.amount for e in more] == [D("-0.15")] and cursor == 2
        return btc._funding_floor_ms, mark
    floor, mark = venue_run(peer, venue, scenario)
    start_param = {"binance": "startTime", "bybit": "startTime", "okx": "begin"}[venue]
    assert [int(e.params[start_param]) for e in funding_polls(peer, venue)] == [
        floor, mark - FUNDING_OVERLAP_MS]  # the second window no longer reaches the two-hour-old payment


@pytest.mark.parametrize("venue", VENUES)
def test_funding_settled_before_the_venue_object_existed_is_not_reported(peer: ExchangePeer, venue: str) -> None:
    async def scenario(btc: CcxtVenue, eth: CcxtVenue) -> None:
        await open_short(btc, PERP, "0.01")
        peer.settle_funding(venue, PERP, now_ms() - 3_600_000)  # an hour before: a previous process's
        peer.settle_funding(venue, PERP)
        entries, _ = await funding_of(btc, 0)
        assert [e.amount for e in entries] == [D("0.06")]
    venue_run(peer, venue, scenario)


def test_binance_futures_commissions_are_fee_entries_because_its_order_reads_carry_none(peer: ExchangePeer) -> None:
    async def scenario(btc: CcxtVenue, eth: CcxtVenue) -> None:
        await open_short(btc, PERP, "0.01")
        await open_short(btc, PERP, "0.02")
        entries, cursor = await btc.fetch_ledger(0)
        fees = [e for e in entries if e.kind == "fee"]
        orders = [o for o in peer.orders("binance") if o.inst.perp]
        # One entry per fill, the commission the futures wallet paid (negative), never twice.
        assert sorted(e.amount for e in fees) == sorted(-fill.fee for o in orders for fill in o.fills)
        assert all(e.asset == "USDT" and e.symbol == PERP and e.entry_id.startswith("binance-fee-") for e in fees)
        assert (await btc.fetch_ledger(cursor)) == ([], cursor)
        for order in orders:  # what the order reads say: no commission (why the ledger carries it)
            state = await btc.fetch_order(order.client_id)
            assert state is not None and state.fee == 0
    venue_run(peer, "binance", scenario)
