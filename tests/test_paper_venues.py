"""Paper venues: fills, fees, slippage, margin, funding at settlement, lending index accrual, seasonal
reward drops and their sale (sell_dust)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from basis_live.config import ConfigManager
from basis_live.engine.attribution import PnLAttribution
from basis_live.engine.portfolio import value_portfolio
from basis_live.feeds.base import MarketSnapshot, RewardDrop
from basis_live.modes.rewards import sell_dust
from basis_live.venues.base import AmbiguousOrderError, OrderRejected, OrderRequest
from basis_live.venues.paper import FeeSchedule, PaperChain, PaperExchange, SlippageSchedule

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
    # All of it, in whole token units (USDT has 6 decimals).
    assert chain.balances["USDT"] == position.quantity.quantize(D("0.000001"), rounding="ROUND_DOWN") == D(10_100)
    # Gas for two operations paid in ETH: 10 gwei x (250k + 200k).
    assert chain.balances["ETH"] == D(1) - D("10.0") * D(450_000) * D("1e-9")


def test_withdrawing_a_whole_lst_supply_after_the_index_moved_leaves_no_sub_wei_dust_to_redeem() -> None:
    # What an emergency unwind does: withdraw the supply (the request rounded down to the wei step, as
    # the engine sends it, within a step of the whole balance), then redeem every weETH the wallet holds.
    chain = PaperChain({"supply": 250_000, "withdraw": 200_000, "unstake": 100_000})
    chain.fund("ETH", D(1))
    chain.on_market(replace(snapshot(), lending_index={**snapshot().lending_index, "weETH": 1.03}))
    chain.fund("weETH", D(10))
    run(chain.aave.place_order(OrderRequest("s1", "aave_v3", "weETH", "buy", D(10))))
    chain.on_market(replace(snapshot(), lending_index={**snapshot().lending_index, "weETH": 1.0312345}))
    (position,) = run(chain.aave.fetch_account()).positions
    assert position.quantity != position.quantity.quantize(D("1e-18"))  # scaled x index: sub-wei digits
    step_rounded = position.quantity.quantize(D("1e-18"), rounding="ROUND_DOWN")
    run(chain.aave.place_order(OrderRequest("w1", "aave_v3", "weETH", "sell", step_rounded)))
    assert run(chain.aave.fetch_account()).positions == []
    assert chain.balances["weETH"] == step_rounded
    run(chain.etherfi.place_order(OrderRequest("r1", "etherfi", "weETH", "sell", chain.balances["weETH"])))
    assert chain.balances["weETH"] == 0


def test_aave_gas_is_paid_in_usdt_when_the_wallet_holds_no_eth() -> None:
    chain = PaperChain({"supply": 250_000})
    chain.on_market(snapshot(gas=20.0))
    chain.fund("USDT", D(1_000))
    run(chain.aave.place_order(OrderRequest("p1", "aave_v3", "USDT", "buy", D(900))))
    gas_usdt = D("20.0") * D(250_000) * D("1e-9") * D("3000.0")
    assert chain.balances["USDT"] == D(100) - gas_usdt
    entries, _ = run(chain.aave.fetch_ledger())
    assert [(e.kind, e.asset, e.amount) for e in entries] == [("gas", "USDT", -gas_usdt)]


def test_an_operation_the_wallet_cannot_pay_gas_for_is_rejected_and_moves_nothing() -> None:
    chain = PaperChain({"supply": 250_000, "swap": 180_000})
    chain.on_market(snapshot(gas=20.0))  # a supply costs 15 USDT of gas at ETH 3000
    chain.fund("USDT", D(1_000))
    with pytest.raises(OrderRejected, match="insufficient funds for gas: supply needs 0.005"):
        run(chain.aave.place_order(OrderRequest("p1", "aave_v3", "USDT", "buy", D(990))))
    assert chain.balances["USDT"] == D(1_000) and chain.reserves["USDT"].scaled_supply == 0
    assert run(chain.aave.fetch_ledger())[0] == []
    # What leaves enough for the gas goes through, and the wallet never goes below zero.
    assert run(chain.aave.place_order(OrderRequest("p2", "aave_v3", "USDT", "buy", D(985)))).status == "filled"
    assert chain.balances["USDT"] == D(0)


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


# --- seasonal rewards: a drop credited to weETH holders, sold back to ETH (sell_dust) -------------------


def _reward_market(ts: datetime, paid: tuple = (), gas: float = 1.0, weeth_index: float = 1.0) -> MarketSnapshot:
    """ETH at 3000, weETH rate 1.06; EIGEN priced at 3 once a drop has been paid."""
    base = snapshot(ts=ts, gas=gas)
    spot = dict(base.spot, **({"EIGEN": 3.0} if paid else {}))
    return replace(base, spot=spot, rewards_paid=paid, lending_index=dict(base.lending_index, weETH=weeth_index))


def _accounts(chain: PaperChain) -> dict:
    return {v.name: run(v.fetch_account()) for v in (chain.wallet, chain.aave, chain.swap)}


def test_golden_a_drop_is_credited_per_eeth_held_booked_as_seasonal_rewards_and_sold_for_eth() -> None:
    """10 weETH (6 in the wallet, 4 supplied on AAVE) at a rate of 1.06 hold 10.6 eETH; a drop of 0.5
    EIGEN per eETH pays 5.3 EIGEN, worth 5.3 x $3 / $3000 = 0.0053 ETH. Selling it at the mark
    0.001 ETH less 5 bps of slippage (notional $15.9: the first bucket) fills at 0.0009995: 0.00529735
    ETH, less the 0.05 % pool fee 0.000002648675 ETH, less 1 gwei x 180k gas = 0.00018 ETH."""
    chain = PaperChain({"supply": 250_000, "swap": 180_000})
    swap = chain.add_swap(D("0.0005"), SlippageSchedule())
    chain.on_market(_reward_market(T0))
    chain.fund("ETH", D(1))
    chain.fund("weETH", D(10))
    run(chain.aave.place_order(OrderRequest("s1", "aave_v3", "weETH", "buy", D(4))))
    attribution = PnLAttribution("ETH")
    attribution.start(_accounts(chain), chain.market)
    equity_before = value_portfolio(_accounts(chain), chain.market, "ETH").equity

    drop = RewardDrop(T0 + timedelta(minutes=30), "EIGEN", 0.5, 3.0)
    market = _reward_market(T0 + timedelta(hours=1), paid=(drop,))
    chain.on_market(market)
    chain.on_market(market)  # the same drop seen again is not paid twice
    assert chain.balances["EIGEN"] == D("5.3")
    ledger, _ = run(chain.wallet.fetch_ledger())
    (entry,) = ledger
    assert (entry.venue, entry.kind, entry.asset, entry.amount, entry.timestamp, entry.price_usd) == (
        "wallet", "reward", "EIGEN", D("5.3"), drop.timestamp, D("3.0"))
    attribution.record_ledger(entry)
    attribution.step(_accounts(chain), market)
    assert attribution.totals["seasonal_rewards"] == D("0.0053")
    assert attribution.gap == 0
    assert {k: v for k, v in attribution.totals.items() if v} == {"seasonal_rewards": D("0.0053")}

    config = ConfigManager().load("eth_staking_only")
    view = value_portfolio(_accounts(chain), market, "ETH")
    intents, proceeds = sell_dust(view, config)
    assert [(i.venue, i.symbol, i.side, i.quantity, i.purpose, i.reduces_exposure) for i in intents] == [
        ("uniswap", "EIGEN/ETH", "sell", D("5.3"), "sell_dust", True)]
    assert proceeds == D("0.0053") / D("1.003")
    # At 10 gwei the swap's gas (0.0018 ETH) is a third of the proceeds: not worth selling yet.
    assert sell_dust(value_portfolio(_accounts(chain), replace(market, gas_price_gwei=10.0), "ETH"), config)[0] == []

    eth_before = chain.balances["ETH"]
    state = run(swap.place_order(OrderRequest("d1", "uniswap", "EIGEN/ETH", "sell", D("5.3"))))
    assert (state.status, state.average_price, state.fee, state.fee_asset) == (
        "filled", D("0.0009995"), D("0.000002648675"), "ETH")
    assert chain.balances["EIGEN"] == 0
    assert chain.balances["ETH"] == eth_before + D("0.00529735") - D("0.000002648675") - D("0.00018")
    later = _reward_market(T0 + timedelta(hours=2), paid=(drop,))
    chain.on_market(later)
    (fill,), _ = run(swap.fetch_fills())
    attribution.record_fill(fill, later)
    for entry in run(swap.fetch_ledger())[0]:
        attribution.record_ledger(entry)
    attribution.step(_accounts(chain), later)
    assert attribution.totals["seasonal_rewards"] == D("0.0053")
    assert attribution.totals["fees"] == D("-0.000002648675")
    assert attribution.totals["slippage"] == D("-0.00000265")  # (0.0009995 - 0.001) x 5.3
    assert attribution.totals["gas"] == D("-0.00018")
    assert abs(attribution.gap) < D("1e-20")
    equity_after = value_portfolio(_accounts(chain), later, "ETH").equity
    assert equity_after - equity_before == pytest.approx(sum(attribution.totals.values(), D(0)), abs=D("1e-20"))


def test_a_drop_counts_weeth_supplied_on_aave_at_its_current_balance_and_wsteth_earns_none() -> None:
    chain = PaperChain({"supply": 250_000})
    chain.on_market(_reward_market(T0))
    chain.fund("ETH", D(1))
    chain.fund("weETH", D(4))
    chain.fund("wstETH", D(100))  # Lido's LST: no EtherFi drops
    run(chain.aave.place_order(OrderRequest("s1", "aave_v3", "weETH", "buy", D(4))))
    drop = RewardDrop(T0 + timedelta(hours=1), "ETHFI", 2.0, 1.5)
    chain.on_market(_reward_market(T0 + timedelta(hours=1), paid=(drop,), weeth_index=1.02))
    # 4 weETH supplied have grown to 4 x 1.02 on AAVE: 4.08 x 1.06 eETH x 2 ETHFI.
    assert chain.balances["ETHFI"] == D("4.08") * D("1.06") * 2


def test_drops_paid_before_the_first_snapshot_are_history() -> None:
    chain = PaperChain({})
    chain.fund("weETH", D(10))
    old = RewardDrop(T0 - timedelta(days=7), "EIGEN", 0.2, 3.0)
    chain.on_market(_reward_market(T0, paid=(old,)))
    chain.on_market(_reward_market(T0 + timedelta(hours=1), paid=(old,)))
    assert "EIGEN" not in chain.balances
    assert run(chain.wallet.fetch_ledger())[0] == []


def test_the_swap_refuses_a_reward_token_the_market_does_not_price_yet() -> None:
    chain = PaperChain({"swap": 180_000})
    swap = chain.add_swap(D("0.0005"), SlippageSchedule())
    chain.on_market(_reward_market(T0))
    chain.fund("EIGEN", D(5))
    with pytest.raises(OrderRejected, match="no EIGEN price"):
        run(swap.place_order(OrderRequest("d1", "uniswap", "EIGEN/ETH", "sell", D(5))))


def inverse_exchange(fee: str = "0.0005") -> PaperExchange:
    """binance with the BTC inverse perp only, no slippage: fills at the mark exactly."""
    venue = PaperExchange("binance", FeeSchedule(D(fee), D(fee)), SlippageSchedule(((D(10) ** 12, D(0)),)),
                          perp_bases=(), inverse_bases=("BTC",), max_leverage=D(10))
    venue.on_market(snapshot(btc=60_000.0))
    return venue


def test_inverse_perp_golden_numbers_upnl_fee_funding_and_close_in_btc() -> None:
    venue = inverse_exchange()
    venue.fund("BTC", D("0.1"))
    (instrument,) = run(venue.instruments()).values()
    assert (instrument.symbol, instrument.quote, instrument.quantity_step, instrument.min_quantity) == \
        ("BTC/USD:BTC", "USD", D(1), D(1))
    # Long 1000 USD = 10 contracts of 100 USD at 60000. Fee: 1000 / 60000 x 0.0005 = 0.00000833 BTC.
    state = run(venue.place_order(OrderRequest("l1", "binance", "BTC/USD:BTC", "buy", D(10))))
    assert (state.average_price, state.fee, state.fee_asset) == (D("60000.0"), D("0.00000833"), "BTC")
    assert venue.balances["BTC"] == D("0.09999167")
    # Mark 66000: uPnL = 1000 x (1/60000 - 1/66000) = 1000 x 6000 / 3.96e9 = 0.0015151515... BTC.
    venue.on_market(snapshot(btc=66_000.0, funding=0.0001))
    (position,) = run(venue.fetch_account()).positions
    assert position.quantity == D(10) and position.entry_price == D("60000.0")
    assert round(position.unrealized_pnl, 12) == D("0.001515151515")
    view = value_portfolio({"binance": run(venue.fetch_account())}, venue.market, "BTC")
    assert round(view.equity, 12) == round(D("0.09999167") + D("0.001515151515"), 12)
    # Exposure in a BTC share class: short 1000 USD, worth 1000 / 66000 BTC.
    assert view.exposures == {"USDT": D(-1000)}
    assert round(view.net_delta, 12) == round(D(-1000) / D(66000), 12)
    # Margin ratio in BTC: (margin + uPnL) / (1000 / 66000).
    assert view.margin_ratios["binance"] == pytest.approx((0.09999167 + 0.0015151515) / (1000 / 66000))
    # Funding at 08:00 with rate 0.0001: the long pays 1000 / 66000 x 0.0001 = 0.0000015151... BTC.
    before = venue.balances["BTC"]
    venue.on_market(snapshot(ts=T0 + timedelta(hours=1, minutes=1), btc=66_000.0))
    (entry,) = run(venue.fetch_ledger())[0]
    assert (entry.kind, entry.asset, entry.amount, entry.symbol) == ("funding", "BTC", D("-0.00000152"), "BTC/USD:BTC")
    assert venue.balances["BTC"] == before - D("0.00000152")
    # Close at 66000: the uPnL is realised (in whole satoshis), less 1000 / 66000 x 0.0005 of fee.
    close = run(venue.place_order(OrderRequest("c1", "binance", "BTC/USD:BTC", "sell", D(10), reduce_only=True)))
    assert close.fee == D("0.00000758")
    assert venue.balances["BTC"] == before - D("0.00000152") + D("0.00151515") - D("0.00000758")
    assert venue.inverse["BTC"].quantity == 0 and run(venue.fetch_account()).positions == []


def test_inverse_perp_short_earns_when_the_price_falls_and_receives_positive_funding() -> None:
    venue = inverse_exchange(fee="0")
    venue.fund("BTC", D("0.1"))
    run(venue.place_order(OrderRequest("s1", "binance", "BTC/USD:BTC", "sell", D(10))))
    venue.on_market(snapshot(btc=50_000.0, funding=0.0001))
    # 1000 x (1/50000 - 1/60000) = 0.0033333... BTC for a short.
    assert round(venue.inverse_unrealized_pnl("BTC"), 10) == D("0.0033333333")
    venue.on_market(snapshot(ts=T0 + timedelta(hours=1, minutes=1), btc=50_000.0))
    assert venue.balances["BTC"] == D("0.1") + D("0.000002")  # 1000 / 50000 x 0.0001


def test_inverse_perp_margin_is_checked_in_btc_and_adds_are_averaged_harmonically() -> None:
    venue = inverse_exchange()
    venue.fund("BTC", D("0.01"))  # 10x: at most 0.1 BTC = 6000 USD = 60 contracts, less the fee
    with pytest.raises(OrderRejected, match="insufficient margin: notional 0.10000000 BTC"):
        run(venue.place_order(OrderRequest("big", "binance", "BTC/USD:BTC", "buy", D(60))))
    run(venue.place_order(OrderRequest("a", "binance", "BTC/USD:BTC", "buy", D(30))))
    with pytest.raises(OrderRejected, match="reduce-only"):
        run(venue.place_order(OrderRequest("ro", "binance", "BTC/USD:BTC", "buy", D(1), reduce_only=True)))
    venue.fund("BTC", D("0.04"))
    venue.on_market(snapshot(btc=40_000.0))
    run(venue.place_order(OrderRequest("b", "binance", "BTC/USD:BTC", "buy", D(10))))
    # 40 contracts cost 30/60000 + 10/40000 = 0.00075 contract-BTC: entry 40 / 0.00075 = 53333.33...
    assert round(venue.inverse["BTC"].entry_price, 4) == D("53333.3333")
    assert round(venue.inverse_unrealized_pnl("BTC"), 12) == round(
        D(3000) * (1 / D(60000) - 1 / D(40000)) + D(1000) * (1 / D(40000) - 1 / D(40000)), 12)
