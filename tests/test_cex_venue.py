"""``CcxtVenue`` (basis_live/venues/cex.py) with the real ccxt async classes for binance, bybit and
okx against the local exchange peer (tests/peers), driven through the real ``OrderManager`` and
``Store`` where the engine would: precision in base units, accounts, orders by our client id,
exactly-once submits when responses are lost, retried reads, venue outages and partial fills.
Nothing here leaves 127.0.0.1 (``make_exchange`` refuses any URL that is not the peer's)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from basis_live.engine.orders import OrderManager, SubmitResult
from basis_live.store import Store
from basis_live.venues.base import AmbiguousOrderError, OrderRejected, OrderRequest, VenueUnavailable
from basis_live.venues.cex import CcxtVenue, RetrySettings, UnknownSymbolError, error_details
from peers.ccxt_wiring import make_exchange
from peers.exchange_server import ExchangePeer

D = Decimal
VENUES = ["binance", "bybit", "okx"]
PERP, SPOT, ETH_PERP = "BTC/USDT:USDT", "BTC/USDT", "ETH/USDT:USDT"
SYMBOLS = [SPOT, PERP]
RUN_ID = "c0ffee01"
#: Fast retries for tests; Retry-After still wins over them.
FAST = RetrySettings(attempts=4, initial_wait=0.01, max_wait=0.05, jitter=0.01, max_retry_after=5.0,
                     absence_recheck_delay=0.0)
#: The request field each venue takes our client order id in.
CLIENT_ID_PARAM = {"binance": "newClientOrderId", "bybit": "orderLinkId", "okx": "clOrdId"}
#: The peer's op names: the balance read and the order lookup.
BALANCE_OP = {"binance": "account", "bybit": "wallet_balance", "okx": "balance"}
LOOKUP_OP = {"binance": "query_order", "bybit": "order_realtime", "okx": "order"}
#: 0.01 BTC of the BTC perp in the venue's order unit (okx: 0.01 BTC contracts).
PERP_UNITS = {"binance": D("0.01"), "bybit": D("0.01"), "okx": D("1")}
TAKER = {"binance": D("0.0005"), "bybit": D("0.00055"), "okx": D("0.0005")}
ASK = D("60000.1")  # the peer's touch around a 60000 mid (tick 0.1)


@pytest.fixture
def peer() -> Any:
    with ExchangePeer() as server:
        yield server


@dataclass
class Ctx:
    name: str
    venue: CcxtVenue
    manager: OrderManager
    store: Store
    events: list[tuple[str, str]]

    async def submit(self, symbol: str, side: str, quantity: str, *, order_type: str = "market",
                     price: str | None = None, reduce_only: bool = False) -> SubmitResult:
        return await self.manager.submit(self.name, symbol, side, D(quantity), order_type=order_type,
                                         price=None if price is None else D(price), reduce_only=reduce_only,
                                         purpose="test", mark=D(60000))

    def row(self, client_order_id: str) -> dict[str, Any]:
        return next(r for r in self.store.list_orders(RUN_ID) if r["client_order_id"] == client_order_id)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


def run(peer: ExchangePeer, name: str, tmp_path: Path, scenario: Callable[[Ctx], Awaitable[Any]], *,
        timeout_ms: int = 3000, retry: RetrySettings = FAST, symbols: list[str] = SYMBOLS) -> Any:
    """Run ``scenario`` with a CcxtVenue on the peer, an OrderManager and a Store with one run."""
    async def main() -> Any:
        venue = CcxtVenue(make_exchange(peer, name, timeout_ms=timeout_ms), name, symbols, retry)
        store = Store.open(tmp_path / "state.db")
        assert store is not None
        store.insert_run(run_id=RUN_ID, strategy_name="basis", mode="basis", share_class="USDT",
                         initial_capital="100000", execution_mode="live", environment="dev", feed_label="PEER",
                         request={}, config={}, pid=1, host="h", pid_start=None, heartbeat_timeout=300)
        events: list[tuple[str, str]] = []
        manager = OrderManager(RUN_ID, {name: venue}, store, now=lambda: datetime.now(timezone.utc),
                               call_timeout=10.0, event=lambda kind, message, **_: events.append((kind, message)))
        try:
            await manager.load_instruments()
            return await scenario(Ctx(name, venue, manager, store, events))
        finally:
            await venue.close()
            store.close()
    return asyncio.run(main())


def request(name: str, cid: str, symbol: str, side: str, quantity: str, order_type: str = "market",
            price: str | None = None, reduce_only: bool = False) -> OrderRequest:
    return OrderRequest(cid, name, symbol, side, D(quantity), order_type,  # type: ignore[arg-type]
                        None if price is None else D(price), reduce_only)


# ---- markets and accounts ---------------------------------------------------------------------


@pytest.mark.parametrize("venue", VENUES)
def test_instruments_are_in_base_units(peer: ExchangePeer, venue: str, tmp_path: Path) -> None:
    expected = {  # symbol: (quantity step, price step, min quantity, min notional), all in BTC / ETH / USDT
        "binance": {SPOT: ("0.00001", "0.01", "0.00001", "5"), PERP: ("0.001", "0.1", "0.001", "100"),
                    ETH_PERP: ("0.001", "0.01", "0.001", "20")},
        "bybit": {SPOT: ("0.000001", "0.1", "0.000048", "1"), PERP: ("0.001", "0.1", "0.001", "5"),
                  ETH_PERP: ("0.01", "0.01", "0.01", "5")},
        # okx swaps: 0.01 contract steps of 0.01 BTC / 0.1 ETH per contract
        "okx": {SPOT: ("0.00000001", "0.1", "0.00001", "0"), PERP: ("0.0001", "0.1", "0.0001", "0"),
                ETH_PERP: ("0.001", "0.01", "0.001", "0")},
    }[venue]

    async def scenario(c: Ctx) -> None:
        instruments = await c.venue.instruments()
        assert set(instruments) == set(expected)
        for symbol, (step, tick, minimum, notional) in expected.items():
            inst = instruments[symbol]
            assert (inst.quantity_step, inst.price_step, inst.min_quantity, inst.min_notional) == (
                D(step), D(tick), D(minimum), D(notional)), symbol
            assert inst.kind == ("spot" if symbol == SPOT else "perp") and inst.quote == "USDT"
            assert inst.venue == venue and inst.base == symbol[:3]
        assert c.manager.instruments[venue] == instruments  # load_instruments went through the same call

        unknown = CcxtVenue(c.venue.exchange, venue, ["DOGE/USDT"], FAST)
        with pytest.raises(UnknownSymbolError, match="DOGE/USDT"):
            await unknown.instruments()
    run(peer, venue, tmp_path, scenario, symbols=[SPOT, PERP, ETH_PERP])


@pytest.mark.parametrize("venue", VENUES)
def test_fetch_account_balances_and_signed_positions_in_base_units(peer: ExchangePeer, venue: str,
                                                                   tmp_path: Path) -> None:
    margin_wallet = "futures" if venue == "binance" else None
    peer.set_balance(venue, "USDT", 5000, margin_wallet)
    if venue == "binance":
        peer.set_balance(venue, "USDT", 1000, "spot")
    spot_usdt = D(1000) if venue == "binance" else D(0)

    async def scenario(c: Ctx) -> None:
        account = await c.venue.fetch_account()
        assert account.venue == venue and account.positions == []
        assert account.balances["USDT"] == spot_usdt + 5000  # binance: spot + futures wallets merged
        assert account.balances["BTC"] == 1 and account.balances["ETH"] == 10

        await c.venue.place_order(request(venue, "blacct1", PERP, "buy", "0.01"))
        peer.set_price(venue, PERP, 61000)
        account = await c.venue.fetch_account()
        [position] = account.positions
        assert (position.symbol, position.kind, position.base, position.quote) == (PERP, "perp", "BTC", "USDT")
        assert position.quantity == D("0.01")  # base units on okx too (1 contract)
        assert position.entry_price == ASK and position.mark_price == 61000
        assert position.unrealized_pnl == pytest.approx(D("0.01") * (61000 - ASK))
        # wallet balance: the fee is gone, the unrealised PnL is on the position, not in the balance
        assert account.balances["USDT"] == pytest.approx(spot_usdt + 5000 - D("0.01") * ASK * TAKER[venue])

        await c.venue.place_order(request(venue, "blacct2", PERP, "sell", "0.03"))
        [position] = (await c.venue.fetch_account()).positions
        assert position.quantity == D("-0.02")
    run(peer, venue, tmp_path, scenario)


# ---- orders through the OrderManager ----------------------------------------------------------------


@pytest.mark.parametrize("venue", VENUES)
def test_market_orders_fill_under_our_client_id(peer: ExchangePeer, venue: str, tmp_path: Path) -> None:
    async def scenario(c: Ctx) -> tuple[str, str]:
        perp = await c.submit(PERP, "buy", "0.01")
        assert perp.status == "filled", perp
        row = c.row(perp.client_order_id)
        assert row["status"] == "filled" and row["venue_order_id"]
        assert D(row["filled_quantity"]) == D("0.01") and D(row["average_price"]) == ASK
        if venue != "binance":  # binance order reads carry no commission (it needs userTrades)
            assert D(row["fee"]) == pytest.approx(D("0.01") * ASK * TAKER[venue]) and row["fee_asset"] == "USDT"

        spot = await c.submit(SPOT, "sell", "0.1")
        assert spot.status == "filled", spot
        assert D(c.row(spot.client_order_id)["filled_quantity"]) == D("0.1")
        assert (await c.venue.fetch_account()).balances["BTC"] == D("0.9")
        sold = await c.venue.fetch_order(spot.client_order_id)  # binance: the fee of its create answer
        assert sold is not None and sold.fee > 0 and sold.fee_asset == "USDT"

        assert await c.manager.collect_fills() == 2
        fills = c.store.list_fills(RUN_ID)
        assert [(f["client_order_id"], f["instrument"], f["side"], D(f["quantity"])) for f in fills] == [
            (perp.client_order_id, PERP, "buy", D("0.01")), (spot.client_order_id, SPOT, "sell", D("0.1"))]
        assert D(fills[0]["price"]) == ASK
        assert await c.manager.collect_fills() == 0  # nothing new: the cursor moved
        return perp.client_order_id, spot.client_order_id
    perp_id, spot_id = run(peer, venue, tmp_path, scenario)

    creates = peer.requests(venue, "create_order")
    assert [e.params[CLIENT_ID_PARAM[venue]] for e in creates] == [perp_id, spot_id]  # ours, not a broker id
    assert all("tag" not in e.params for e in creates)  # okx: no broker tag either
    assert D(creates[0].params.get("sz") or creates[0].params.get("qty") or creates[0].params["quantity"]) == \
        PERP_UNITS[venue]  # okx got 1 contract for 0.01 BTC
    assert peer.position(venue, PERP) == PERP_UNITS[venue]
    assert len(peer.orders(venue, perp_id)) == len(peer.orders(venue, spot_id)) == 1


@pytest.mark.parametrize("venue", VENUES)
def test_limit_orders_rest_are_listed_and_cancel_all_cancels_them(peer: ExchangePeer, venue: str,
                                                                  tmp_path: Path) -> None:
    async def scenario(c: Ctx) -> None:
        perp = await c.submit(PERP, "buy", "0.01", order_type="limit", price="59000")
        spot = await c.submit(SPOT, "buy", "0.001", order_type="limit", price="50000")
        assert (perp.status, spot.status) == ("open", "open")
        listed = {o.client_order_id: o for o in await c.venue.fetch_open_orders()}
        assert set(listed) == {perp.client_order_id, spot.client_order_id}
        assert listed[perp.client_order_id].quantity == D("0.01") and listed[perp.client_order_id].symbol == PERP
        assert listed[spot.client_order_id].quantity == D("0.001") and listed[spot.client_order_id].status == "open"

        assert await c.manager.cancel_all() == {venue: 2}
        assert {c.row(cid)["status"] for cid in (perp.client_order_id, spot.client_order_id)} == {"cancelled"}
        assert await c.venue.fetch_open_orders() == []

        # one by one: cancel, cancel again (already cancelled: its state, no error), unknown id
        single = await c.submit(PERP, "sell", "0.01", order_type="limit", price="65000")
        assert (await c.venue.cancel_order(single.client_order_id)).status == "cancelled"
        assert (await c.venue.cancel_order(single.client_order_id)).status == "cancelled"
        with pytest.raises(OrderRejected, match="no order"):
            await c.venue.cancel_order("blnosuchorder1")
    run(peer, venue, tmp_path, scenario)
    assert [o.status for o in peer.orders(venue)] == ["canceled"] * 3


@pytest.mark.parametrize("venue", VENUES)
def test_reduce_only_is_refused_when_it_would_increase(peer: ExchangePeer, venue: str, tmp_path: Path) -> None:
    code = {"binance": "-2022", "bybit": "110017", "okx": "51205"}[venue]  # binance: a plain ExchangeError

    async def scenario(c: Ctx) -> None:
        flat = await c.submit(PERP, "sell", "0.01", reduce_only=True)
        assert flat.status == "rejected" and "reduce-only" in (flat.reason or "") and code in (flat.reason or "")
        assert c.row(flat.client_order_id)["status"] == "rejected"
        assert (await c.submit(PERP, "buy", "0.01")).status == "filled"
        increase = await c.submit(PERP, "buy", "0.01", reduce_only=True)
        assert increase.status == "rejected" and "reduce-only" in (increase.reason or "")
        closing = await c.submit(PERP, "sell", "0.02", reduce_only=True)  # fills what there is to reduce
        assert D(c.row(closing.client_order_id)["filled_quantity"]) == D("0.01")
        assert (await c.venue.fetch_account()).positions == []
    run(peer, venue, tmp_path, scenario)
    assert sum(1 for e in peer.requests(venue, "create_order") if e.params.get("reduceOnly") in (True, "true")) == 3


@pytest.mark.parametrize("venue", VENUES)
def test_insufficient_margin_and_balance_are_rejected(peer: ExchangePeer, venue: str, tmp_path: Path) -> None:
    """binance's futures refusal arrives as a plain ExchangeError (URL rewrite): classified by code."""
    code = {"binance": "-2019", "bybit": "110007", "okx": "51008"}[venue]
    peer.reject_for_funds(venue)

    async def scenario(c: Ctx) -> None:
        margin = await c.submit(PERP, "buy", "0.01")
        assert margin.status == "rejected"
        row = c.row(margin.client_order_id)
        assert row["status"] == "rejected" and "insufficient" in row["reason"] and code in row["reason"]
        assert "order.rejected" in c.kinds()
        balance = await c.submit(SPOT, "sell", "2")  # the spot wallet holds 1 BTC
        assert balance.status == "rejected" and "insufficient" in (balance.reason or "")
    run(peer, venue, tmp_path, scenario)
    assert peer.position(venue, PERP) == 0 and len(peer.requests(venue, "create_order")) == 2


@pytest.mark.parametrize("venue", VENUES)
def test_duplicate_client_id_returns_the_existing_order(peer: ExchangePeer, venue: str, tmp_path: Path) -> None:
    async def scenario(c: Ctx) -> None:
        order = request(venue, "bldup000001", PERP, "buy", "0.01", "limit", "59000")
        first = await c.venue.place_order(order)
        again = await c.venue.place_order(order)  # refused as a duplicate by the venue
        assert again.status == "open" and again.venue_order_id == first.venue_order_id
        with pytest.raises(OrderRejected, match="not sent"):  # not a symbol this venue trades
            await c.venue.place_order(request(venue, "blother00001", "ETH/USDT", "buy", "0.1"))
        with pytest.raises(OrderRejected, match="not a multiple"):  # never rounded silently
            await c.venue.place_order(request(venue, "blodd0000001", PERP, "buy", "0.01005"))
    run(peer, venue, tmp_path, scenario)
    assert [e.status for e in peer.requests(venue, "create_order")] == [200, 400 if venue == "binance" else 200]
    assert len(peer.orders(venue, "bldup000001")) == 1


# ---- lost responses: exactly once ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "stall"])
@pytest.mark.parametrize("venue", VENUES)
def test_lost_response_is_reconciled_by_client_id_exactly_once(peer: ExchangePeer, venue: str, how: str,
                                                               tmp_path: Path) -> None:
    peer.drop_response(venue, op="create_order", how=how, stall=1.0)

    async def scenario(c: Ctx) -> str:
        result = await c.submit(PERP, "buy", "0.01")
        assert result.status == "filled", result
        assert c.kinds() == ["order.unknown", "order.reconciled"]
        row = c.row(result.client_order_id)
        assert row["status"] == "filled" and D(row["filled_quantity"]) == D("0.01") and row["venue_order_id"]
        return result.client_order_id
    client_id = run(peer, venue, tmp_path, scenario, timeout_ms=300)
    assert [e.fault for e in peer.requests(venue, "create_order")] == ["drop"]  # sent once
    assert len(peer.orders(venue, client_id)) == 1 and peer.position(venue, PERP) == PERP_UNITS[venue]


@pytest.mark.parametrize("fault", [503, 429])
@pytest.mark.parametrize("venue", VENUES)
def test_unexecuted_submit_is_resent_once_after_confirmed_absence(peer: ExchangePeer, venue: str, fault: int,
                                                                  tmp_path: Path) -> None:
    """A 5xx page or a 429 on the submit: outcome unknown to the venue code, never retried there;
    the OrderManager asks by client id (twice: the absence re-check) and resends once."""
    if fault == 429:
        peer.rate_limit(venue, op="create_order", retry_after=0)
    else:
        peer.server_errors(venue, op="create_order", times=1, status=503, executed=False)
    retry = RetrySettings(attempts=4, initial_wait=0.01, max_wait=0.05, jitter=0.01, absence_recheck_delay=0.05)

    async def scenario(c: Ctx) -> str:
        result = await c.submit(PERP, "buy", "0.01")
        assert result.status == "filled", result
        assert c.kinds() == ["order.unknown", "order.resend"]
        return result.client_order_id
    client_id = run(peer, venue, tmp_path, scenario, retry=retry)
    log = peer.requests(venue)
    creates = [i for i, e in enumerate(log) if e.op == "create_order"]
    assert [log[i].status for i in creates] == [fault, 200]
    # between the two sends: our id looked up on both markets, twice (absence re-checked), never found
    lookups = [e for e in log[creates[0] + 1:creates[1]] if e.op == LOOKUP_OP[venue]]
    assert len(lookups) == 2 * len(SYMBOLS)
    assert len(peer.orders(venue, client_id)) == 1


@pytest.mark.parametrize("venue", VENUES)
def test_5xx_after_execution_is_found_not_resent(peer: ExchangePeer, venue: str, tmp_path: Path) -> None:
    peer.server_errors(venue, op="create_order", times=1, status=502, executed=True)

    async def scenario(c: Ctx) -> str:
        result = await c.submit(PERP, "buy", "0.01")
        assert result.status == "filled" and c.kinds() == ["order.unknown", "order.reconciled"]
        return result.client_order_id
    client_id = run(peer, venue, tmp_path, scenario)
    assert [e.status for e in peer.requests(venue, "create_order")] == [502]
    assert len(peer.orders(venue, client_id)) == 1


# ---- retried reads, outages -------------------------------------------------------------------------------


@pytest.mark.parametrize("venue", VENUES)
def test_burst_of_5xx_on_a_read_is_retried(peer: ExchangePeer, venue: str, tmp_path: Path) -> None:
    async def scenario(c: Ctx) -> None:
        peer.server_errors(venue, op=BALANCE_OP[venue], times=2, status=503)
        assert (await c.venue.fetch_account()).balances["BTC"] == 1
        peer.server_errors(venue, op=BALANCE_OP[venue], times=10, status=502)
        with pytest.raises(VenueUnavailable, match="4 attempt"):
            await c.venue.fetch_account()
    run(peer, venue, tmp_path, scenario)
    statuses = [e.status for e in peer.requests(venue, BALANCE_OP[venue])]
    ok = [503, 503, 200] + ([200] if venue == "binance" else [])  # binance: then its futures wallet
    assert statuses == ok + [502] * 4
    peer.clear_faults()


@pytest.mark.parametrize("venue", VENUES)
def test_429_on_a_read_waits_for_retry_after(peer: ExchangePeer, venue: str, tmp_path: Path) -> None:
    async def scenario(c: Ctx) -> float:
        peer.rate_limit(venue, op=BALANCE_OP[venue], retry_after=1)
        started = time.monotonic()
        assert (await c.venue.fetch_account()).balances["BTC"] == 1
        return time.monotonic() - started
    elapsed = run(peer, venue, tmp_path, scenario)
    first, second = peer.requests(venue, BALANCE_OP[venue])[:2]
    assert (first.status, second.status) == (429, 200)
    assert second.ts - first.ts >= 0.95 and elapsed >= 0.95  # FAST's own backoff is at most 0.06 s


@pytest.mark.parametrize("mode", ["refuse", "503"])
@pytest.mark.parametrize("venue", VENUES)
def test_venue_down_reads_unavailable_submits_ambiguous_then_settled(peer: ExchangePeer, venue: str, mode: str,
                                                                     tmp_path: Path) -> None:
    async def scenario(c: Ctx) -> None:
        peer.venue_down(venue, mode)
        with pytest.raises(VenueUnavailable):
            await c.venue.fetch_account()
        with pytest.raises(VenueUnavailable):  # not None: nobody confirmed the order is absent
            await c.venue.fetch_order("blnosuchorder1")
        with pytest.raises(AmbiguousOrderError):
            await c.venue.place_order(request(venue, "bldown000001", PERP, "buy", "0.01"))
        result = await c.submit(PERP, "buy", "0.01")
        assert result.status == "unknown" and c.row(result.client_order_id)["status"] == "unknown"
        assert c.manager.has_unsettled()

        peer.venue_up(venue)
        assert await c.manager.reconcile_unsettled() == 0
        row = c.row(result.client_order_id)
        assert row["status"] == "rejected" and "confirmed absent" in row["reason"]
        assert await c.venue.fetch_order("bldown000001") is None
    run(peer, venue, tmp_path, scenario)
    assert peer.orders(venue) == []


# ---- partial fills and fills ----------------------------------------------------------------------------------


@pytest.mark.parametrize("venue", VENUES)
def test_partial_fills_are_visible_in_fetch_order_and_fills(peer: ExchangePeer, venue: str, tmp_path: Path) -> None:
    peer.partial_fill(venue, "0.5", times=2)

    async def scenario(c: Ctx) -> None:
        market = await c.submit(PERP, "buy", "0.02")  # half fills, the venue kills the rest
        state = await c.venue.fetch_order(market.client_order_id)
        assert state is not None and (state.status, state.quantity, state.filled_quantity) == (
            "cancelled", D("0.02"), D("0.01"))
        assert c.row(market.client_order_id)["filled_quantity"] == "0.01"

        limit = await c.submit(PERP, "buy", "0.02", order_type="limit", price="60100")  # crosses: half fills
        assert limit.status == "partially_filled"
        [listed] = await c.venue.fetch_open_orders()
        assert (listed.client_order_id, listed.status, listed.filled_quantity) == (
            limit.client_order_id, "partially_filled", D("0.01"))

        fills, cursor = await c.venue.fetch_fills(0)
        assert [(f.client_order_id, f.quantity, f.price) for f in fills] == [
            (market.client_order_id, D("0.01"), ASK), (limit.client_order_id, D("0.01"), ASK)]
        peer.set_price(venue, PERP, 60000)  # the rest of the resting buy fills at its limit price
        more, cursor2 = await c.venue.fetch_fills(cursor)
        assert [(f.client_order_id, f.quantity, f.price) for f in more] == [(limit.client_order_id, D("0.01"), D(60100))]
        assert (await c.venue.fetch_fills(cursor2)) == ([], cursor2)
        assert (await c.venue.fetch_order(limit.client_order_id)).status == "filled"  # type: ignore[union-attr]
        assert await c.manager.collect_fills() == 3
        assert len({f["fill_id"] for f in c.store.list_fills(RUN_ID)}) == 3
        ledger, _ = await c.venue.fetch_ledger(0)  # no funding settled (tests/test_cex_funding.py)
        assert [e for e in ledger if e.kind != "fee"] == []  # binance's futures commissions only
    run(peer, venue, tmp_path, scenario)
    assert peer.position(venue, PERP) == 3 * PERP_UNITS[venue]


@pytest.mark.parametrize("venue", VENUES)
def test_fetch_order_of_an_unknown_id_is_none_after_asking_every_market(peer: ExchangePeer, venue: str,
                                                                        tmp_path: Path) -> None:
    async def scenario(c: Ctx) -> None:
        assert await c.venue.fetch_order("blneverplaced1") is None
    run(peer, venue, tmp_path, scenario)
    assert len(peer.requests(venue, LOOKUP_OP[venue])) == len(SYMBOLS)


def test_error_details_reads_the_venue_code_from_ccxt_messages() -> None:
    import ccxt

    assert error_details(ccxt.ExchangeError('binance {"code": -2019, "msg": "Margin is insufficient."}')) == (
        "-2019", "Margin is insufficient.")
    assert error_details(ccxt.InvalidOrder('bybit {"retCode": 110017, "retMsg": "reduce-only", "result": {}}')) == (
        "110017", "reduce-only")
    okx = 'okx {"code": "1", "msg": "Operation failed.", "data": [{"sCode": "51008", "sMsg": "Insufficient"}]}'
    assert error_details(ccxt.InsufficientFunds(okx)) == ("51008", "Insufficient")
    assert error_details(ccxt.InsufficientFunds("binance Account has insufficient balance")) == (
        None, "binance Account has insufficient balance")
