"""Paper venues: fills, fees, slippage, margin, funding at settlement, lending index accrual."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from basis_live.feeds.base import MarketSnapshot
from basis_live.venues.base import AmbiguousOrderError, OrderRejected, OrderRequest
from basis_live.venues.paper import FeeSchedule, PaperChain, PaperExchange

T0 = datetime(2025, 1, 1, 7, 0, tzinfo=timezone.utc)


def snapshot(ts: datetime = T0, btc: float = 100_000.0, perp: float | None = None, funding: float = 0.0001,
             usdt_index: float = 1.1, gas: float = 10.0) -> MarketSnapshot:
    perp = btc if perp is None else perp
    return MarketSnapshot(
        timestamp=ts, spot={"USDT": 1.0, "BTC": btc, "ETH": 3000.0},
        perp_mark={v: {"BTC": perp, "ETH": 3000.0} for v in ("binance", "bybit", "okx")},
        funding_rate={v: {"BTC": funding, "ETH": funding} for v in ("binance", "bybit", "okx")},
        lending_index={"USDT": usdt_index, "WETH": 1.0, "weETH": 1.0, "wstETH": 1.0},
        lending_apr={"USDT": 0.05, "WETH": 0.02, "weETH": 0.0, "wstETH": 0.0},
        borrow_index={"USDT": 1.2, "WETH": 1.1, "weETH": 1.0, "wstETH": 1.0},
        borrow_apr={"USDT": 0.07, "WETH": 0.03, "weETH": 0.01, "wstETH": 0.01},
        lst_rate={"weETH": 1.06, "wstETH": 1.2}, gas_price_gwei=gas)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def exchange(**kwargs) -> PaperExchange:  # type: ignore[no-untyped-def]
    venue = PaperExchange("binance", FeeSchedule(D("0.001"), D("0.001")), spot_bases=("BTC",), perp_bases=("BTC",), **kwargs)
    venue.on_market(snapshot())
    return venue


def test_market_buy_fills_at_mark_plus_slippage_and_pays_the_taker_fee() -> None:
    venue = exchange()
    venue.fund("USDT", D(100_000))
    state = run(venue.place_order(OrderRequest("c1", "binance", "BTC/USDT", "buy", D("0.5"))))
    # 50k notional is in the 100k bucket: 7 bps.
    assert state.status == "filled" and state.average_price == D("100070.00")
    fee = D("0.5") * D("100070.00") * D("0.001")
    assert venue.balances["USDT"] == D(100_000) - D("0.5") * D("100070.00") - fee
    assert venue.balances["BTC"] == D("0.5")
    fills, cursor = run(venue.fetch_fills())
    assert cursor == 1 and fills[0].fee == fee and fills[0].client_order_id == "c1"


def test_short_perp_pnl_is_realised_into_usdt_on_close() -> None:
    venue = exchange()
    venue.fund("USDT", D(10_000))
    run(venue.place_order(OrderRequest("s1", "binance", "BTC/USDT:USDT", "sell", D("0.1"))))
    entry = venue.perps["BTC"].entry_price
    venue.on_market(snapshot(perp=90_000.0, btc=90_000.0))
    account = run(venue.fetch_account())
    assert account.positions[0].unrealized_pnl == D("-0.1") * (D("90000.0") - entry)
    before = venue.balances["USDT"]
    close = run(venue.place_order(OrderRequest("s2", "binance", "BTC/USDT:USDT", "buy", D("0.1"), reduce_only=True)))
    realised = D("0.1") * (entry - close.average_price)
    assert venue.balances["USDT"] == before + realised - close.fee
    assert venue.perps["BTC"].quantity == 0


def test_funding_settles_at_the_settlement_with_the_rate_quoted_before_it() -> None:
    venue = exchange()
    venue.fund("USDT", D(10_000))
    run(venue.place_order(OrderRequest("s1", "binance", "BTC/USDT:USDT", "sell", D("0.1"))))
    venue.on_market(snapshot(ts=T0 + timedelta(minutes=59), funding=0.0003))
    before = venue.balances["USDT"]
    venue.on_market(snapshot(ts=T0 + timedelta(hours=1, minutes=1), funding=-0.01))  # past 08:00
    received = venue.balances["USDT"] - before
    assert received == D("0.1") * D("100000.0") * D("0.0003")  # a short receives positive funding
    entries, _ = run(venue.fetch_ledger())
    assert [(e.kind, e.amount) for e in entries] == [("funding", received)]
    venue.on_market(snapshot(ts=T0 + timedelta(hours=2)))  # no settlement crossed: nothing more
    assert run(venue.fetch_ledger(1))[0] == []


def test_orders_beyond_the_margin_are_rejected_and_reducing_needs_no_margin() -> None:
    venue = exchange(max_leverage=D(10))
    venue.fund("USDT", D(1_000))
    with pytest.raises(OrderRejected, match="insufficient margin"):
        run(venue.place_order(OrderRequest("big", "binance", "BTC/USDT:USDT", "sell", D("0.2"))))
    assert run(venue.fetch_order("big")).status == "rejected"
    run(venue.place_order(OrderRequest("ok", "binance", "BTC/USDT:USDT", "sell", D("0.09"))))
    with pytest.raises(OrderRejected, match="reduce-only"):
        run(venue.place_order(OrderRequest("ro", "binance", "BTC/USDT:USDT", "sell", D("0.01"), reduce_only=True)))


def test_quantities_off_the_step_or_below_the_minimum_are_refused() -> None:
    venue = exchange()
    venue.fund("USDT", D(1_000))
    with pytest.raises(OrderRejected, match="not a multiple"):
        run(venue.place_order(OrderRequest("a", "binance", "BTC/USDT:USDT", "sell", D("0.0015"))))
    with pytest.raises(OrderRejected, match="below"):
        run(venue.place_order(OrderRequest("b", "binance", "BTC/USDT", "buy", D("0.00001"))))


def test_a_client_order_id_is_never_accepted_twice() -> None:
    venue = exchange()
    venue.fund("USDT", D(100_000))
    run(venue.place_order(OrderRequest("dup", "binance", "BTC/USDT", "buy", D("0.01"))))
    with pytest.raises(OrderRejected, match="duplicate"):
        run(venue.place_order(OrderRequest("dup", "binance", "BTC/USDT", "buy", D("0.01"))))
    assert venue.balances["BTC"] == D("0.01")


def test_limit_orders_rest_until_the_market_crosses_then_fill_as_maker() -> None:
    venue = exchange()
    venue.fund("USDT", D(100_000))
    state = run(venue.place_order(OrderRequest("l1", "binance", "BTC/USDT", "buy", D("0.1"), "limit", D("95000"))))
    assert state.status == "open"
    assert [o.client_order_id for o in run(venue.fetch_open_orders())] == ["l1"]
    venue.on_market(snapshot(btc=94_000.0))
    filled = run(venue.fetch_order("l1"))
    assert filled.status == "filled" and filled.average_price == D("95000")
    assert run(venue.fetch_open_orders()) == []


def test_cancel_all_cancels_only_open_orders() -> None:
    venue = exchange()
    venue.fund("USDT", D(100_000))
    run(venue.place_order(OrderRequest("l1", "binance", "BTC/USDT", "buy", D("0.1"), "limit", D("90000"))))
    run(venue.place_order(OrderRequest("m1", "binance", "BTC/USDT", "buy", D("0.1"))))
    cancelled = run(venue.cancel_all_orders())
    assert [(o.client_order_id, o.status) for o in cancelled] == [("l1", "cancelled")]
    assert run(venue.fetch_order("m1")).status == "filled"


def test_a_lost_submit_response_leaves_exactly_the_order_that_executed() -> None:
    venue = exchange()
    venue.fund("USDT", D(100_000))
    venue.faults.lose_submit_responses = 1
    with pytest.raises(AmbiguousOrderError):
        run(venue.place_order(OrderRequest("lost", "binance", "BTC/USDT", "buy", D("0.01"))))
    assert run(venue.fetch_order("lost")).status == "filled"


def test_aave_supply_accrues_with_the_liquidity_index_and_withdraws_everything() -> None:
    chain = PaperChain({"supply": 250_000, "withdraw": 200_000})
    chain.on_market(snapshot(usdt_index=1.1))
    chain.fund("USDT", D(10_000))
    chain.fund("ETH", D(1))
    run(chain.aave.place_order(OrderRequest("p1", "aave_v3", "USDT", "buy", D(10_000))))
    chain.on_market(snapshot(usdt_index=1.111))
    (position,) = run(chain.aave.fetch_account()).positions
    assert position.quantity == D(10_000) / D("1.1") * D("1.111")  # scaled x index
    assert position.quantity - position.principal == pytest.approx(D(100), abs=D("1e-9"))
    run(chain.aave.place_order(OrderRequest("p2", "aave_v3", "USDT", "sell", position.quantity)))
    assert run(chain.aave.fetch_account()).positions == []
    assert chain.balances["USDT"] == position.quantity
    # Gas for two operations paid in ETH: 10 gwei x (250k + 200k).
    assert chain.balances["ETH"] == D(1) - D("10.0") * D(450_000) * D("1e-9")


def test_aave_gas_is_paid_in_usdt_when_the_wallet_holds_no_eth() -> None:
    chain = PaperChain({"supply": 250_000})
    chain.on_market(snapshot(gas=20.0))
    chain.fund("USDT", D(1_000))
    run(chain.aave.place_order(OrderRequest("p1", "aave_v3", "USDT", "buy", D(900))))
    gas_usdt = D("20.0") * D(250_000) * D("1e-9") * D("3000.0")
    assert chain.balances["USDT"] == D(100) - gas_usdt
    entries, _ = run(chain.aave.fetch_ledger())
    assert [(e.kind, e.asset, e.amount) for e in entries] == [("gas", "USDT", -gas_usdt)]


def test_a_hung_venue_hangs_only_its_own_calls() -> None:
    venue = exchange()
    venue.faults.hang_seconds = 5

    async def bounded() -> None:
        async with asyncio.timeout(0.05):
            await venue.fetch_account()

    with pytest.raises(TimeoutError):
        run(bounded())
    other = exchange()
    assert run(other.fetch_account()).venue == "binance"
