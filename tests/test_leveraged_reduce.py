"""Sizing of the leveraged modes' health-factor reduce, by hand: the delever that brings the health
factor back to REDUCE_TO_HF_MULTIPLE x its floor, on the collateral AAVE itself sees."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from basis_live.config import ConfigManager
from basis_live.engine.portfolio import value_portfolio
from basis_live.feeds.base import MarketSnapshot
from basis_live.modes.leveraged import REDUCE_TO_HF_MULTIPLE, Leveraged
from basis_live.venues.base import Position, VenueAccount

D = Decimal
LT = D("0.95")  # eth_leveraged's eMode liquidation threshold
TARGET_HF = D("1.02") * REDUCE_TO_HF_MULTIPLE  # the shipped floor x the multiple: 1.0506
SUPPLIED_WEETH, FEED_RATE, DEBT = D(10), D("1.05"), D("9.9")


def _market() -> MarketSnapshot:
    return MarketSnapshot(
        timestamp=datetime(2025, 3, 1, tzinfo=timezone.utc), spot={"USDT": 1.0, "ETH": 3000.0, "weETH": 3150.0},
        perp_mark={}, funding_rate={}, lending_index={"weETH": 1.0, "WETH": 1.0}, lending_apr={},
        borrow_index={"WETH": 1.0}, borrow_apr={}, lst_rate={"weETH": float(FEED_RATE)}, gas_price_gwei=10.0)


def _view(reported_health_factor: Decimal | None):  # type: ignore[no-untyped-def]
    aave = VenueAccount("aave_v3", {}, [Position("aave_v3", "weETH", "supply", "weETH", "weETH", SUPPLIED_WEETH),
                                        Position("aave_v3", "WETH-debt", "debt", "WETH", "WETH", DEBT)],
                        health_factor=reported_health_factor)
    return value_portfolio({"aave_v3": aave, "wallet": VenueAccount("wallet", {"ETH": D("0.05")})}, _market(),
                           "ETH", liquidation_threshold=float(LT))


def _mode() -> Leveraged:
    return Leveraged(ConfigManager().load("eth_leveraged"))


def _health_after(collateral: Decimal, q: Decimal) -> Decimal:
    return LT * (collateral - q) / (DEBT - q)


def test_a_paper_reduce_delevers_the_book_back_to_the_target_health_factor() -> None:
    view = _view(None)
    collateral = SUPPLIED_WEETH * FEED_RATE  # 10.5 ETH: HF 0.95 x 10.5 / 9.9 = 1.0076, below the 1.02 limit
    assert view.health_factor == pytest.approx(float(LT * collateral / DEBT))
    (intent,) = _mode().reduce(view, ["health_factor_threshold"])
    assert (intent.venue, intent.symbol, intent.side, intent.purpose) == ("aave_v3", "weETH-loop", "sell", "risk_reduce")
    # (debt - q) / (collateral - q) = LT / target: q = (9.9 - 0.95 / 1.0506 x 10.5) / (1 - 0.95 / 1.0506)
    safe_ltv = LT / TARGET_HF
    assert intent.quantity == (DEBT - safe_ltv * collateral) / (1 - safe_ltv)
    assert _health_after(collateral, intent.quantity) == pytest.approx(TARGET_HF, abs=D("1e-20"))


def test_a_live_reduce_sizes_on_the_health_factor_aave_reports_not_the_feeds_lagging_rate() -> None:
    # The oracle marked weETH 2.5 % down; the feed's rate has not moved yet (it refreshes every 12 s).
    true_collateral = SUPPLIED_WEETH * FEED_RATE * D("0.975")
    reported = LT * true_collateral / DEBT
    (intent,) = _mode().reduce(_view(reported), ["health_factor_threshold"])
    assert _health_after(true_collateral, intent.quantity) == pytest.approx(TARGET_HF, abs=D("1e-20"))
    # Sized on the feed's book it would have delevered too little, leaving the health factor short.
    (paper,) = _mode().reduce(_view(None), ["health_factor_threshold"])
    assert paper.quantity < intent.quantity
    assert _health_after(true_collateral, paper.quantity) < D("1.03")
