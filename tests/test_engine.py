"""The engine in-process with its real watchdog, store and paper venues: exactly-once orders,
watchdog independence, risk policies, and P&L checked against an independent computation."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import pytest

from basis_live.engine.engine import HALTED, REDUCING
from basis_live.engine.portfolio import price_usdt
from basis_live.feeds.base import RewardDrop
from engine_harness import build


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_pure_lending_equity_matches_an_independent_index_computation(tmp_path: Path) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, "pure_lending", "100000", days=2, speed=200_000)
        outcome = await harness.run_until(timeout=60)
        return harness, outcome

    harness, outcome = run(scenario())
    assert outcome.status == "completed"
    store, engine = harness.store, harness.engine
    supplies = [f for f in store.list_fills("t0000001") if f["side"] == "buy"]
    assert len(supplies) == 1  # one entry, nothing oscillates inside the deviation band
    supplied = Decimal(supplies[0]["quantity"])
    start_index = Decimal(repr(run(harness.feed.snapshot_at(_ts(supplies[0]["sim_time"]))).lending_index["USDT"]))
    end_index = Decimal(repr(engine.market.lending_index["USDT"]))
    gas = -sum((e.amount for e in harness.venues["aave_v3"]._ledger if e.kind == "gas"), Decimal(0))
    expected = Decimal(100000) - supplied - gas + supplied / start_index * end_index
    # The stored fill time has millisecond precision; the index moves ~1e-12 per millisecond.
    assert engine.view.equity == pytest.approx(expected, abs=Decimal("1e-6"))
    # Two days of a ~5% APR on 99.9k, less one supply's gas: positive, and nowhere near absurd.
    assert Decimal(0) < engine.view.equity - Decimal(100000) < Decimal(100)


def test_btc_basis_pnl_matches_cash_flows_from_the_stored_fills(tmp_path: Path) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, "btc_basis", "100000", days=3, speed=200_000, scenario="crash")
        outcome = await harness.run_until(timeout=60)
        return harness, outcome

    harness, outcome = run(scenario())
    assert outcome.status == "completed"
    engine, market = harness.engine, harness.engine.market
    # Linear instruments: equity = capital + sum(sell notional - buy notional - fees) + funding
    # + net quantity x current price, per instrument; computed from the store, not from the venues.
    cash, fees, quantity = Decimal(0), Decimal(0), {}
    for fill in harness.store.list_fills("t0000001"):
        signed = Decimal(fill["quantity"]) * (1 if fill["side"] == "buy" else -1)
        cash -= signed * Decimal(fill["price"])
        fees += Decimal(fill["fee"])
        key = (fill["venue"], fill["instrument"])
        quantity[key] = quantity.get(key, Decimal(0)) + signed
    funding = sum((e.amount for v in ("binance", "bybit", "okx") for e in harness.venues[v]._ledger), Decimal(0))
    value = Decimal(0)
    for (venue, symbol), qty in quantity.items():
        price = (Decimal(repr(market.perp_mark[venue]["BTC"])) if symbol.endswith(":USDT")
                 else price_usdt("BTC", market))
        value += qty * price
    expected = Decimal(100000) + cash - fees + funding + value
    assert engine.view.equity == pytest.approx(expected, abs=Decimal("1e-8"))
    assert funding != 0  # three days hold nine settlements
    # Hedged: net delta stays within the strategy's delta tolerance of gross exposure.
    assert abs(engine.view.net_delta) <= Decimal("0.005") * engine.view.gross_exposure


def test_a_lost_submit_response_is_reconciled_into_exactly_one_order(tmp_path: Path) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, "btc_basis", "100000", days=1)
        harness.venues["binance"].faults.lose_submit_responses = 1
        await harness.engine.tick()
        return harness

    harness = run(scenario())
    orders = harness.store.list_orders("t0000001")
    spot = [o for o in orders if o["instrument"] == "BTC/USDT"]
    assert len(spot) == 1 and spot[0]["status"] == "filled"
    venue_orders = [cid for cid in harness.venues["binance"]._orders if cid == spot[0]["client_order_id"]]
    assert len(venue_orders) == 1
    assert [e["kind"] for e in harness.store.list_events("t0000001", "order.")][:2] == ["order.unknown",
                                                                                         "order.reconciled"]


def test_a_submit_that_never_arrived_is_resent_once_with_the_same_client_id(tmp_path: Path) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, "pure_lending", "100000", days=1)
        harness.venues["aave_v3"].faults.drop_submits = 1
        await harness.engine.tick()
        return harness

    harness = run(scenario())
    (order,) = harness.store.list_orders("t0000001")
    assert order["status"] == "filled"
    assert [e["kind"] for e in harness.store.list_events("t0000001", "order.")] == ["order.unknown", "order.resend"]
    assert len(harness.store.list_fills("t0000001")) == 1


def test_an_order_whose_outcome_stays_unknown_blocks_decisions_until_reconciled(tmp_path: Path) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, "pure_lending", "100000", days=1)
        aave = harness.venues["aave_v3"]
        aave.faults.drop_submits = 1
        original = aave.fetch_order

        async def unreachable(client_order_id):  # type: ignore[no-untyped-def]
            from basis_live.venues.base import VenueUnavailable

            raise VenueUnavailable("aave_v3: rpc down")

        aave.fetch_order = unreachable
        await harness.engine.tick()
        first = harness.store.list_orders("t0000001")
        await harness.engine.tick()  # still unreachable: no second order may be sent
        second = harness.store.list_orders("t0000001")
        aave.fetch_order = original
        await harness.engine.tick()  # reconcile: confirmed absent, forgotten
        await harness.engine.tick()  # and only now a fresh decision
        return first, second, harness.store.list_orders("t0000001")

    first, second, final = run(scenario())
    assert [o["status"] for o in first] == ["unknown"]
    assert [o["status"] for o in second] == ["unknown"]
    assert [o["status"] for o in final] == ["rejected", "filled"]
    assert final[0]["reason"] == "confirmed absent on venue after unknown submit"


def test_the_watchdog_halts_a_run_whose_strategy_step_is_hung_in_a_venue_call(tmp_path: Path) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, "btc_basis", "100000", speed=600, risk=["max_drawdown=0.01"],
                              overrides=["execution.venue_timeout_seconds=300"])

        async def hang_then_crash(h):  # type: ignore[no-untyped-def]
            for name in ("binance", "bybit", "okx"):
                h.venues[name].faults.hang_submits_seconds = 3600
            # Force a rebalance that hangs in place_order, then move the perp marks 5% up.
            h.engine.strategy.__dict__["position_deviation_threshold"] = 1e-9
            await asyncio.sleep(0.3)

            def squeeze(snap):  # type: ignore[no-untyped-def]
                marks = {v: {a: p * 1.05 for a, p in m.items()} for v, m in snap.perp_mark.items()}
                return dataclasses.replace(snap, perp_mark=marks)

            h.feed.transform = squeeze

        outcome = await harness.run_until(lambda e: e.orders.filled_orders >= 4, hang_then_crash, timeout=30)
        return harness, outcome

    harness, outcome = run(scenario())
    assert outcome.status == "emergency_stopped"
    assert "max_drawdown" in outcome.reason
    assert harness.engine.state == HALTED
    halted = harness.store.list_events("t0000001", "state.halted")
    assert len(halted) == 1 and halted[0]["data"]["latency_ms"] < 1000
    # The strategy step really was stuck: its order never reached the venue, and the halt's
    # reconcile settled it as confirmed absent instead of leaving it dangling.
    stuck = [o for o in harness.store.list_orders("t0000001") if o["reason"] and "confirmed absent" in o["reason"]]
    assert len(stuck) == 1 and stuck[0]["purpose"] in ("entry_partial", "exit_partial")


def test_a_reduce_breach_moves_to_reducing_and_only_shrinks_positions(tmp_path: Path) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, "btc_basis", "100000", speed=20_000, scenario="squeeze", days=1,
                              risk=["margin_ratio_threshold=0.25", "max_drawdown.policy=warn"])
        outcome = await harness.run_until(timeout=60)
        return harness, outcome

    harness, outcome = run(scenario())
    assert outcome.status == "completed"
    assert harness.engine.state == REDUCING
    orders = harness.store.list_orders("t0000001")
    reducing_at = harness.store.list_events("t0000001", "state.reducing")[0]["wall_time"]
    later = [o for o in orders if o["created_at"] > reducing_at]
    assert later, "the watchdog should have cut exposure"
    assert {o["purpose"] for o in later} <= {"risk_reduce", "exit_partial"}
    assert all(o["reduce_only"] for o in later if o["instrument"].endswith(":USDT"))
    blocked = harness.store.list_events("t0000001", "order.blocked")
    assert all("REDUCING" in e["message"] for e in blocked)


def _ts(text: str):  # type: ignore[no-untyped-def]
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_eth_staking_only_earns_exactly_the_lst_rate_drift_in_eth(tmp_path: Path) -> None:
    # wstETH (Lido): no seasonal reward drops, although the sample feed drops EIGEN / ETHFI on eETH
    # every week (weETH's drops: tests/test_seasonal_rewards.py).
    lido = ["lst_type=wstETH", "venues.lido.enabled=true", "venues.etherfi.enabled=false"]

    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, "eth_staking_only", "10", days=30, speed=10_000_000, overrides=lido)
        outcome = await harness.run_until(timeout=60)
        return harness, outcome

    harness, outcome = run(scenario())
    assert outcome.status == "completed"
    engine = harness.engine
    assert len(harness.feed.inner.reward_drops) >= 4
    assert not [e for e in harness.venues["wallet"]._ledger if e.kind == "reward"]
    assert Decimal(engine.attribution.as_dict()["seasonal_rewards"]) == 0
    (stake,) = harness.store.list_fills("t0000001")
    staked = Decimal(stake["quantity"])
    rate_at_stake = Decimal(stake["price"])
    rate_now = Decimal(repr(engine.market.lst_rate["wstETH"]))
    gas_eth = -sum((e.amount for e in harness.venues["lido"]._ledger if e.kind == "gas"), Decimal(0))
    # ETH share class: idle ETH + LST x oracle rate; no base APR added on top of the rate drift.
    expected = Decimal(10) - staked * rate_at_stake - gas_eth + staked * rate_now
    # The venue debits ETH in wei and valuation goes through USDT and back (28 digits): 1e-15 ETH.
    assert engine.view.equity == pytest.approx(expected, abs=Decimal("1e-15"))
    assert engine.view.net_delta == 0  # ETH exposure in an ETH share class is not a delta
    drift = float(rate_now / rate_at_stake) - 1
    assert 0.001 < drift < 0.005  # a month at ~3 %/yr
    assert float(engine.view.equity - 10) == pytest.approx(float(staked * rate_at_stake) * drift - float(gas_eth), rel=1e-9)


def _lst_depeg(factor: float):  # type: ignore[no-untyped-def]
    def transform(snap):  # type: ignore[no-untyped-def]
        return dataclasses.replace(snap, lst_rate={k: v * factor for k, v in snap.lst_rate.items()})

    return transform


def test_eth_leveraged_loops_to_target_ltv_with_the_health_factor_we_expect(tmp_path: Path) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, "eth_leveraged", "10", days=1)
        await harness.engine.tick()
        return harness

    harness = run(scenario())
    view = harness.engine.view
    aave = harness.venues["aave_v3"]
    rate = Decimal(repr(view.market.lst_rate["weETH"]))
    collateral = aave.supplied("weETH") * rate
    debt = aave.debt()
    target = Decimal(repr(0.93 * (1 - 0.0225)))
    assert debt / collateral == pytest.approx(target, rel=Decimal("0.02"))
    # Health factor = collateral x liquidation threshold / debt (eMode 0.95), independent of ETH/USD.
    assert view.health_factor == pytest.approx(float(collateral * Decimal("0.95") / debt), rel=1e-12)
    assert view.equity == pytest.approx(Decimal(10), rel=Decimal("0.01"))  # gas is all it cost so far


def test_an_lst_depeg_trips_the_health_factor_and_the_watchdog_delevers_above_the_floor(tmp_path: Path) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        # At 11x, a 3 % depeg is also a 33 % drawdown: keep that limit to a warning here.
        harness = await build(tmp_path, "eth_leveraged", "10", days=2, speed=20_000,
                              risk=["max_drawdown.policy=warn"])

        async def depeg(h):  # type: ignore[no-untyped-def]
            h.feed.transform = _lst_depeg(0.97)  # HF 1.045 x 0.97 = 1.014 < 1.02

        outcome = await harness.run_until(lambda e: e.orders.filled_orders >= 3, depeg, timeout=60)
        return harness, outcome

    harness, outcome = run(scenario())
    assert outcome.status == "completed"
    engine = harness.engine
    assert engine.state == REDUCING
    assert engine.min_health_factor < 1.02 < engine.view.health_factor  # breached, then restored
    assert engine.min_health_factor > 1.0  # never liquidatable
    reduces = [o for o in harness.store.list_orders("t0000001") if o["purpose"] == "risk_reduce"]
    assert reduces and all(o["instrument"] == "weETH-loop" and o["side"] == "sell" for o in reduces)
    breach = harness.store.list_events("t0000001", "risk.breach.health_factor_threshold")
    assert len(breach) == 1


def test_emergency_unwind_of_eth_leveraged_repays_before_withdrawing_and_leaves_plain_eth(tmp_path: Path) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, "eth_leveraged", "10", days=1)
        await harness.engine.tick()
        await harness.engine.emergency_stop("drill", unwind=True)
        return harness

    harness = run(scenario())
    aave, chain = harness.venues["aave_v3"], harness.venues["aave_v3"].chain
    assert aave.debt() == 0 and aave.supplied("weETH") == 0
    assert chain.balances.get("weETH", Decimal(0)) == 0
    assert chain.balances["ETH"] == pytest.approx(Decimal(10), rel=Decimal("0.01"))
    unwind = [o for o in harness.store.list_orders("t0000001") if o["purpose"] == "exit_full"]
    assert [(o["venue"], o["instrument"], o["side"]) for o in unwind] == [
        ("aave_v3", "weETH-loop", "sell"), ("aave_v3", "weETH", "sell"), ("etherfi", "weETH", "sell")]
    assert all(o["status"] == "filled" for o in unwind)


@pytest.mark.parametrize("strategy, capital", [
    ("eth_leveraged", "10"),
    ("usdt_market_neutral_no_leverage", "100000"),
    ("usdt_market_neutral", "100000"),
])
def test_a_withdrawal_shrinks_every_leg_one_to_one_and_counts_as_a_flow(tmp_path: Path, strategy: str,
                                                                         capital: str) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, strategy, capital, days=1)
        for _ in range(3):
            await harness.engine.tick()
        before = harness.engine.view
        amount = before.equity * Decimal("0.3")
        message = await harness.engine.move_capital("withdraw", amount)
        return harness, before, amount, message

    harness, before, amount, message = run(scenario())
    engine, after = harness.engine, harness.engine.view
    moved = -engine.net_flows
    assert message.startswith(f"withdraw of {moved.quantize(Decimal('10e-8'))}")
    # All of it reached the wallet (less the few bps the freeing trades cost) and left the books.
    assert moved == pytest.approx(amount, rel=Decimal("0.005"))
    assert after.equity == pytest.approx(before.equity - moved, rel=Decimal("0.002"))
    assert Decimal(engine.summary()["total_pnl"]) == pytest.approx(after.equity - (Decimal(capital) - moved),
                                                                   abs=Decimal("1e-6"))
    assert abs(Decimal(engine.attribution.as_dict()["gap"])) < Decimal(capital) * Decimal("0.0001")
    strategy_config = engine.strategy
    if strategy_config.leverage is not None:
        collateral, debt = engine.mode.loop._book(after) if hasattr(engine.mode, "loop") else engine.mode._book(after)
        target = Decimal(repr(strategy_config.leverage.target_ltv))
        assert debt / collateral == pytest.approx(target, rel=Decimal("0.03"))  # back at target, not above
        assert after.health_factor > 1.02
    if strategy_config.market_neutral:
        assert abs(after.net_delta) / after.gross_exposure < Decimal(repr(strategy_config.delta_tolerance)) * 2


def _one_drop(drop: RewardDrop, gas_gwei: float = 5.0):  # type: ignore[no-untyped-def]
    """The sample market with this one reward drop instead of the feed's own, at a fixed gas price."""
    def transform(snap):  # type: ignore[no-untyped-def]
        paid = (drop,) if snap.timestamp >= drop.timestamp else ()
        spot = {k: v for k, v in snap.spot.items() if k not in ("EIGEN", "ETHFI")}
        if paid:
            spot[drop.token] = drop.price_usd
        return dataclasses.replace(snap, rewards_paid=paid, spot=spot, gas_price_gwei=gas_gwei)

    return transform


@pytest.mark.parametrize("strategy, capital", [
    ("eth_staking_only", "10"),
    ("eth_leveraged", "10"),
    ("usdt_market_neutral_no_leverage", "100000"),
    ("usdt_market_neutral", "100000"),
])
def test_a_weeth_mode_sells_a_reward_drop_for_eth_on_the_next_tick_with_the_pnl_booked_to_its_source(
        tmp_path: Path, strategy: str, capital: str) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, strategy, capital, days=2)
        engine, chain = harness.engine, harness.venues["wallet"].chain
        drop = RewardDrop(harness.feed.start + timedelta(hours=2), "EIGEN", 20.0, 3.5)
        harness.feed.transform = _one_drop(drop)
        await engine.tick()  # entry
        market = await harness.feed.snapshot_at(harness.feed.start + timedelta(hours=3))
        await engine.publish(market)
        # weETH in the wallet + supplied on AAVE (scaled x the index now), x the oracle rate = eETH.
        weeth = chain.balances.get("weETH", Decimal(0)) + harness.venues["wallet"].chain.aave.supplied("weETH")
        credited = (weeth * Decimal(repr(market.lst_rate["weETH"])) * 20).quantize(Decimal("1e-18"), ROUND_DOWN)
        assert chain.balances["EIGEN"] == credited > 0
        await engine.tick()
        return harness, market, credited

    harness, market, credited = run(scenario())
    engine, chain = harness.engine, harness.venues["wallet"].chain
    (reward,) = [e for e in harness.venues["wallet"]._ledger if e.kind == "reward"]
    assert (reward.asset, reward.amount, reward.price_usd) == ("EIGEN", credited, Decimal("3.5"))
    (sale,) = [o for o in harness.store.list_orders("t0000001") if o["purpose"] == "sell_dust"]
    assert (sale["venue"], sale["instrument"], sale["side"], Decimal(sale["quantity"]), sale["status"]) == (
        "uniswap", "EIGEN/ETH", "sell", credited, "filled")
    assert chain.balances["EIGEN"] == 0
    sources = engine.attribution.as_dict()
    share_price = price_usdt(engine.strategy.share_class, market)
    assert Decimal(sources["seasonal_rewards"]) == pytest.approx(credited * Decimal("3.5") / share_price,
                                                                 abs=Decimal("1e-8"))
    assert abs(Decimal(sources["gap"])) < Decimal(capital) * Decimal("1e-8")
    view = engine.view
    if engine.strategy.market_neutral:
        # The ETH the sale returned (~1 % of gross exposure) was hedged in the same tick.
        assert abs(view.net_delta) / view.gross_exposure <= Decimal(repr(engine.strategy.delta_tolerance))


def test_an_emergency_unwind_also_sells_the_reward_tokens_for_eth(tmp_path: Path) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, "eth_leveraged", "10", days=1)
        harness.feed.transform = _one_drop(RewardDrop(harness.feed.start + timedelta(hours=1), "ETHFI", 1.0, 2.8))
        await harness.engine.tick()
        await harness.engine.publish(await harness.feed.snapshot_at(harness.feed.start + timedelta(hours=2)))
        await harness.engine.emergency_stop("drill", unwind=True)
        return harness

    harness = run(scenario())
    chain = harness.venues["aave_v3"].chain
    assert chain.balances["ETHFI"] == 0 and chain.aave.debt() == 0
    orders = [o for o in harness.store.list_orders("t0000001") if o["purpose"] in ("sell_dust", "exit_full")]
    # The sale rides in the unwind's first batch, with the repayment.
    assert [(o["instrument"], o["purpose"]) for o in orders][:2] == [("ETHFI/ETH", "sell_dust"), ("weETH-loop", "exit_full")]
    assert all(o["status"] == "filled" for o in orders)


@pytest.mark.parametrize("step_hours", [24, 7])
def test_a_backtest_step_crossing_funding_settlements_pays_each_one_at_its_own_mark(tmp_path: Path,
                                                                                   step_hours: int) -> None:
    """A daily step crosses three settlements and a 7-hour one (off the 8-hour grid) lands between
    them: every settlement is paid, at the mark at that moment, with the rate quoted before it."""
    from basis_live.config import ConfigManager, build_run_config
    from basis_live.engine.assembly import assemble_paper_run
    from basis_live.feeds.sample import SampleFeed
    from basis_live.store import Store

    feed = SampleFeed(days=5)
    start, end = feed.start, feed.start + timedelta(days=3)

    async def backtest():  # type: ignore[no-untyped-def]
        config = build_run_config(ConfigManager().load("btc_basis", None, None), Decimal(100000),
                                  {"kind": "sample", "speed": 1.0, "scenario": None}, env={})
        store = Store.open(tmp_path / "bt.db")
        assert store is not None
        assembled = await assemble_paper_run("t0000009", config, feed, store, {"test": True}, backtest_start=start)
        await assembled.engine.start()
        outcome = await assembled.engine.run_backtest(assembled.watchdog, end, step_hours * 3600.0)
        books = {}
        for name in ("binance", "bybit", "okx"):
            venue = assembled.venues[name]
            books[name] = ((await venue.fetch_fills(0))[0], (await venue.fetch_ledger(0))[0])
        return outcome, books

    outcome, books = run(backtest())
    assert outcome.status == "completed"
    settlements = [start + timedelta(hours=8 * i) for i in range(1, 10)]  # up to and including `end`
    if step_hours == 7:  # the last tick is at 63 h: the settlement at 72 h is after the run
        settlements = settlements[:-1]
    paid_total = Decimal(0)
    for name, (fills, ledger) in books.items():
        funding = [e for e in ledger if e.kind == "funding"]
        assert [e.timestamp for e in funding] == settlements, name
        for entry in funding:
            # The short held just before the settlement (fills at the settlement's own tick come after it).
            held = sum((f.quantity if f.side == "buy" else -f.quantity for f in fills
                        if f.symbol == "BTC/USDT:USDT" and f.timestamp < entry.timestamp), Decimal(0))
            mark = Decimal(repr(run(feed.snapshot_at(entry.timestamp)).perp_mark[name]["BTC"]))
            rate = Decimal(repr(run(feed.snapshot_at(entry.timestamp - timedelta(seconds=1))).funding_rate[name]["BTC"]))
            assert held < 0 and entry.amount == -held * mark * rate, (name, entry.timestamp)
            paid_total += entry.amount
    assert Decimal(outcome.summary["funding_received"]) == paid_total.quantize(Decimal("0.00000001"))


def test_return_and_apy_are_time_weighted_so_a_withdrawal_is_not_performance(tmp_path: Path) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, "pure_lending", "100000", days=30)
        engine, feed = harness.engine, harness.feed
        await engine.tick()  # supplies
        await engine.publish(await feed.snapshot_at(feed.start + timedelta(days=10)))
        await engine.tick()
        await engine.move_capital("withdraw", engine.view.equity * Decimal("0.9"))
        await engine.publish(await feed.snapshot_at(feed.start + timedelta(days=20)))
        await engine.tick()
        return harness

    harness = run(scenario())
    engine = harness.engine
    summary = engine.summary()
    assert engine.net_flows < Decimal(-89000)
    # All but the gas reserve earned the USDT supply index throughout, whatever the capital was.
    start_index = run(harness.feed.snapshot_at(harness.feed.start)).lending_index["USDT"]
    end_index = engine.market.lending_index["USDT"]
    lending_growth = end_index / start_index - 1
    assert summary["return_pct"] / 100 == pytest.approx(lending_growth, rel=0.1)
    assert summary["apy_pct"] / 100 == pytest.approx((1 + summary["return_pct"] / 100) ** (365 / 20) - 1, rel=1e-3)
    # Money P&L is still what the books gained: equity less capital less the flows.
    assert Decimal(summary["total_pnl"]) == (engine.view.equity - Decimal(100000) - engine.net_flows).quantize(
        Decimal("0.00000001"))


def test_intents_blocked_while_reducing_are_logged_once_a_simulated_day_not_every_tick(tmp_path: Path) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, "pure_lending", "100000", days=5)
        engine, feed = harness.engine, harness.feed
        engine.set_state(REDUCING, "test: a reduce breach before entry")
        for hour in range(0, 3 * 24 + 1):  # the supply it wants is blocked every hour for three days
            await engine.publish(await feed.snapshot_at(feed.start + timedelta(hours=hour)))
            await engine.tick()
        return harness

    harness = run(scenario())
    blocked = harness.store.list_events("t0000001", "order.blocked")
    assert [event["sim_time"][:13] for event in blocked] == [
        "2025-01-01T00", "2025-01-02T00", "2025-01-03T00", "2025-01-04T00"]
    assert all("blocked: trading REDUCING" in event["message"] for event in blocked)
    assert harness.store.list_fills("t0000001") == []


def test_a_withdrawal_of_nearly_everything_leaves_the_margin_the_remaining_legs_need(tmp_path: Path) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, "btc_basis", "100000", days=1)
        for _ in range(3):
            await harness.engine.tick()
        message = await harness.engine.move_capital("withdraw", Decimal(99_000))
        return harness, message

    harness, message = run(scenario())
    engine, view = harness.engine, harness.engine.view
    leverage = engine.strategy.execution.perp_leverage
    # The shorts could only shrink in 0.001 BTC steps; what is left of them keeps 1/leverage of margin.
    assert any(view.position_quantity(v, "BTC/USDT:USDT") for v in ("binance", "bybit", "okx"))
    assert view.margin_ratios and min(view.margin_ratios.values()) >= 1 / leverage - 1e-6
    for venue in harness.venues.values():
        assert all(amount >= 0 for amount in getattr(venue, "balances", {}).values())
    assert "99000.00000000 asked" in message and -engine.net_flows < Decimal(99_000)
    # The freeing trades' costs were a fraction of a percent of the book: no false drawdown breach.
    assert engine.evaluate_risk(view).status == "ok" and engine.state == "ACTIVE"


def test_a_market_feed_outage_pauses_decisions_but_keeps_the_engine_and_its_watchdog_running(tmp_path: Path) -> None:
    from basis_live.feeds.base import FeedError

    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, "pure_lending", "100000", speed=3600, days=3)
        engine = harness.engine
        task = asyncio.create_task(engine.run(harness.watchdog))
        await asyncio.sleep(0.3)

        def unreachable(snapshot):  # type: ignore[no-untyped-def]
            raise FeedError("chain data unavailable: node unreachable (test)")

        harness.feed.transform = unreachable
        await asyncio.sleep(0.2)  # a tick in flight may finish
        ticks_at_outage = engine.ticks
        evaluations_at_outage = harness.watchdog.evaluations
        await asyncio.sleep(0.5)
        during = (engine.ticks - ticks_at_outage, harness.watchdog.evaluations - evaluations_at_outage, task.done())
        harness.feed.transform = None
        await asyncio.sleep(0.5)
        resumed = engine.ticks - ticks_at_outage
        engine.request_stop("test done")
        return harness, await asyncio.wait_for(task, 10), during, resumed

    harness, outcome, (ticks_during, evaluations_during, done_during), resumed = run(scenario())
    assert not done_during and outcome.status == "stopped"
    assert ticks_during == 0  # no decision on stale prices
    assert evaluations_during > 0  # the watchdog still watched the position on the last prices
    assert resumed > 5  # ticks every simulated minute (1/60 s of wall time) again once data are back
    kinds = [event["kind"] for event in harness.store.list_events("t0000001", "feed.")]
    assert kinds == ["feed.unavailable", "feed.available"]


@pytest.mark.parametrize("outage_seconds, acked_as", [(0.5, "done"), (None, "failed")])
def test_an_emergency_stop_retries_a_failing_cancel_and_says_where_orders_may_remain(
        tmp_path: Path, outage_seconds: float | None, acked_as: str) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, "btc_basis", "100000", days=1)
        for _ in range(2):
            await harness.engine.tick()
        okx = harness.venues["okx"]
        okx.faults.unavailable = True  # e.g. answering 503
        if outage_seconds is not None:
            asyncio.get_running_loop().call_later(outage_seconds, setattr, okx.faults, "unavailable", False)
        command_id = harness.store.enqueue_command("t0000001", "emergency_stop", {"reason": "drill"})
        await harness.engine.emergency_stop("drill", unwind=False, command_id=command_id)
        return harness, harness.store.get_command(command_id)

    harness, command = run(scenario())
    assert command.ack_status == acked_as
    kinds = [event["kind"] for event in harness.store.list_events("t0000001", "emergency.")]
    if acked_as == "failed":
        assert "CANCEL FAILED on okx" in command.ack_message and "act on the venue by hand" in command.ack_message
        assert "emergency.cancel_failed" in kinds
        # Three tries (a second, then three seconds apart), each logged.
        assert len(harness.store.list_events("t0000001", "order.cancel_failed")) == 3
    else:
        assert "CANCEL FAILED" not in command.ack_message and "'okx': 0" in command.ack_message
        assert "emergency.cancel_failed" not in kinds


def test_an_unwind_that_cannot_close_everything_says_what_is_still_open(tmp_path: Path) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, "btc_basis", "100000", days=1)
        for _ in range(2):
            await harness.engine.tick()
        harness.venues["okx"].faults.unavailable = True  # its short cannot be bought back
        await harness.engine.emergency_stop("drill", unwind=True)
        return harness

    harness = run(scenario())
    reason = harness.engine._final_reason
    assert "unwind incomplete: still open perp -" in reason and "BTC/USDT:USDT@okx" in reason
    assert "@binance" not in reason.split("unwind incomplete")[1]  # what could be closed was
    kinds = [event["kind"] for event in harness.store.list_events("t0000001", "emergency.")]
    assert "emergency.unwind_incomplete" in kinds and "emergency.unwound" not in kinds


@pytest.mark.parametrize("capital", ["10", "100"])
def test_an_eth_leveraged_book_keeps_the_gas_its_emergency_unwind_needs(tmp_path: Path, capital: str) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        harness = await build(tmp_path, "eth_leveraged", capital, days=5)
        engine, feed = harness.engine, harness.feed
        for minute in range(0, 8 * 60, 3):  # the entry's stake, supply and loop pay gas from the reserve
            await engine.publish(await feed.snapshot_at(feed.start + timedelta(minutes=minute)))
            await engine.tick()
        # The emergency comes when the network is busy: 40 gwei against ~2-4 gwei at entry.
        feed.transform = lambda snap: dataclasses.replace(snap, gas_price_gwei=40.0)
        await engine.publish(await feed.snapshot_at(feed.start + timedelta(hours=8)))
        await engine.emergency_stop("drill", unwind=True)
        return harness

    harness = run(scenario())
    engine = harness.engine
    assert engine.unwind_left is None, engine.unwind_left
    view = engine.view
    assert view.position_quantity("aave_v3", "WETH-debt") == 0 and view.position_quantity("aave_v3", "weETH") == 0
    assert view.balance("wallet", "weETH") == 0 and view.balance("wallet", "ETH") > 0
