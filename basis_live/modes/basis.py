"""btc_basis / eth_basis: long spot on binance, short linear perps of equal size split across the
perp venues by ``hedge_allocation``; earns funding while delta-neutral.

Sizing from equity E (USDT) with perp leverage L: spot notional S = E x L / (L + 1), kept on
binance; each perp venue v holds margin alloc_v x S / L and a short of alloc_v x S / price. A leg
trades only when it deviates from its target by more than ``position_deviation_threshold``.
"""

from __future__ import annotations

from decimal import Decimal

from basis_live.engine.portfolio import PortfolioView, price_usdt
from basis_live.feeds.base import MarketSnapshot
from basis_live.modes.base import OrderIntent, StrategyMode
from basis_live.venues.base import ZERO

SPOT_VENUE = "binance"
#: Share of a leg cut by one ``reduce`` step (margin ratio or drawdown breach with policy reduce).
REDUCE_FRACTION = Decimal("0.25")


class BasisMode(StrategyMode):
    def __init__(self, config) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config)
        self.name = config.mode
        self.asset = config.asset
        self.spot_symbol = f"{self.asset}/USDT"
        self.perp_symbol = f"{self.asset}/USDT:USDT"
        self.leverage = Decimal(repr(config.execution.perp_leverage))
        self.allocation = {v: Decimal(repr(w)) for v, w in config.hedge_allocation.items() if w > 0}

    def _spot_budget(self, equity: Decimal) -> Decimal:
        return equity * self.leverage / (self.leverage + 1)

    def initial_funding(self, capital: Decimal, market: MarketSnapshot) -> dict[str, dict[str, Decimal]]:
        spot = self._spot_budget(capital)
        funding: dict[str, dict[str, Decimal]] = {v: {"USDT": w * spot / self.leverage} for v, w in self.allocation.items()}
        funding.setdefault(SPOT_VENUE, {"USDT": ZERO})
        funding[SPOT_VENUE]["USDT"] += capital - sum(a["USDT"] for a in funding.values())
        return funding

    def _leg(self, venue: str, symbol: str, current: Decimal, target: Decimal, entering: bool,
             threshold: Decimal | None = None) -> OrderIntent | None:
        if threshold is None:
            threshold = Decimal(repr(self.config.position_deviation_threshold))
        delta = target - current
        if target == 0 and current == 0:
            return None
        if target != 0 and abs(delta) / abs(target) <= threshold:
            return None
        grows = abs(target) > abs(current) and (current == 0 or (current > 0) == (target > 0))
        purpose = ("entry_full" if entering else "entry_partial") if grows else "exit_partial"
        side = "buy" if delta > 0 else "sell"
        is_perp = symbol == self.perp_symbol
        return OrderIntent(venue, symbol, side, abs(delta), purpose, reduces_exposure=not grows,
                           reduce_only=is_perp and not grows)

    def decide(self, view: PortfolioView) -> list[OrderIntent]:
        if view.equity <= 0:
            return []
        price = price_usdt(self.asset, view.market)
        spot_target = self._spot_budget(view.equity) / price
        spot_now = view.balance(SPOT_VENUE, self.asset)
        entering = spot_now == 0
        intents = []
        spot_after = spot_now
        if self.reducing:
            # Only exposure-reducing orders pass: a spot buy, or a short hedging one, would be
            # blocked and leave the book off its hedge. Bring the larger leg down to the smaller.
            shorts = sum((abs(view.position_quantity(v, self.perp_symbol)) for v in self.allocation), ZERO)
            spot_target = min(spot_now, shorts)
        spot = self._leg(SPOT_VENUE, self.spot_symbol, spot_now, spot_target, entering)
        if spot is not None and spot.side == "buy":
            # Never spend the perp margin that binance's own short needs.
            margin_needed = self.allocation.get(SPOT_VENUE, ZERO) * spot_target * price / self.leverage
            affordable = (view.balance(SPOT_VENUE, "USDT") - margin_needed) / (price * Decimal("1.003"))
            if affordable < spot.quantity:
                spot = OrderIntent(SPOT_VENUE, self.spot_symbol, "buy", affordable, spot.purpose, False) \
                    if affordable > 0 else None
        if spot is not None:
            intents.append(spot)
            spot_after = spot_now + (spot.quantity if spot.side == "buy" else -spot.quantity)
        # The hedge follows the spot actually held (after this tick's spot order), not the equity
        # target: a spot leg that cannot be bought in full must not leave the book net short.
        intents.extend(self._hedge(view, spot_after, entering))
        return intents

    def _hedge(self, view: PortfolioView, long_quantity: Decimal, entering: bool) -> list[OrderIntent]:
        """Perp shorts matching ``long_quantity`` split by allocation. A leg normally trades only
        beyond ``position_deviation_threshold``; when the book as a whole is off by more than
        ``delta_tolerance`` every leg is brought back to its exact target."""
        shorts = {venue: view.position_quantity(venue, self.perp_symbol) for venue in self.allocation}
        gross = long_quantity + sum((abs(q) for q in shorts.values()), Decimal(0))
        net = long_quantity + sum(shorts.values(), Decimal(0))
        off_delta = gross > 0 and abs(net) / gross > Decimal(repr(self.config.delta_tolerance))
        threshold = Decimal(0) if off_delta else None
        intents = []
        for venue, weight in self.allocation.items():
            leg = self._leg(venue, self.perp_symbol, shorts[venue], -weight * long_quantity, entering, threshold)
            if leg is not None:
                intents.append(leg)
        return intents

    def reduce(self, view: PortfolioView, breach_types: list[str]) -> list[OrderIntent]:
        """Cut every leg by REDUCE_FRACTION (or to max_position_size), keeping the hedge matched."""
        fraction = REDUCE_FRACTION
        cap = self.config.risk.max_position_size.limit
        if "max_position_size" in breach_types and cap is not None and view.largest_position > 0:
            fraction = max(fraction, 1 - Decimal(repr(cap)) / view.largest_position)
        return self._shrink(view, min(fraction, Decimal(1)), "risk_reduce")

    def free_for_withdrawal(self, view: PortfolioView, fraction: Decimal) -> list[OrderIntent] | None:
        """Sell ``fraction`` of the spot and buy back the same fraction of every short: the freed
        USDT sits where a deposit would put it (spot budget on binance, margin on each venue)."""
        return self._shrink(view, fraction, "exit_partial")

    def _shrink(self, view: PortfolioView, fraction: Decimal, purpose: str) -> list[OrderIntent]:
        """Close ``fraction`` of the spot leg and of every perp leg together (the hedge stays matched)."""
        intents = self._cover_perps(view, fraction, purpose)
        spot_now = view.balance(SPOT_VENUE, self.asset)
        if spot_now > 0:
            intents.append(OrderIntent(SPOT_VENUE, self.spot_symbol, "sell", spot_now * fraction, purpose, True))  # type: ignore[arg-type]
        return intents

    def _cover_perps(self, view: PortfolioView, fraction: Decimal, purpose: str) -> list[OrderIntent]:
        """Reduce-only orders closing ``fraction`` of every perp leg."""
        intents = []
        for venue in self.allocation:
            quantity = view.position_quantity(venue, self.perp_symbol)
            if quantity:
                intents.append(OrderIntent(venue, self.perp_symbol, "buy" if quantity < 0 else "sell",
                                           abs(quantity) * fraction, purpose, True, reduce_only=True))  # type: ignore[arg-type]
        return intents

    def unwind(self, view: PortfolioView) -> list[list[OrderIntent]]:
        # Both legs in one batch: closing one side first would leave the book naked in between.
        batch = self._shrink(view, Decimal(1), "exit_full")
        return [batch] if batch else []
