"""pure_lending: all capital supplied to AAVE V3 USDT; idle USDT beyond the deviation band is
supplied, a small gas reserve stays in the wallet."""

from __future__ import annotations

from decimal import Decimal

from basis_live.engine.portfolio import PortfolioView
from basis_live.feeds.base import MarketSnapshot
from basis_live.modes.base import OrderIntent, StrategyMode, gas_eth

#: USDT kept in the wallet to pay gas (paper gas is charged in USDT when the wallet holds no ETH):
#: 1% of equity, at most 100 USDT.
GAS_RESERVE_FRACTION = Decimal("0.01")
GAS_RESERVE_CAP = Decimal(100)


class PureLending(StrategyMode):
    name = "pure_lending"

    def initial_funding(self, capital: Decimal, market: MarketSnapshot) -> dict[str, dict[str, Decimal]]:
        return {"wallet": {"USDT": capital}}

    def _reserve(self, view: PortfolioView) -> Decimal:
        """1 % of equity (at most 100 USDT), and never less than the gas of one supply and one
        withdrawal at today's gas price: a small account must still be able to get out."""
        gas = gas_eth(self.config, view.market, ("supply", "withdraw")) * view.market.decimal("spot", "ETH")
        return max(min(GAS_RESERVE_CAP, view.equity * GAS_RESERVE_FRACTION), gas)

    def decide(self, view: PortfolioView) -> list[OrderIntent]:
        idle = view.balance("wallet", "USDT") - self._reserve(view)
        if view.equity <= 0 or idle <= 0:
            return []
        supplied = view.position_quantity("aave_v3", "USDT")
        if idle / view.equity <= Decimal(repr(self.config.position_deviation_threshold)):
            return []
        purpose = "entry_full" if supplied == 0 else "entry_partial"
        return [OrderIntent("aave_v3", "USDT", "buy", idle, purpose, reduces_exposure=False)]

    def reduce(self, view: PortfolioView, breach_types: list[str]) -> list[OrderIntent]:
        # Lending USDT in a USDT share class has no market exposure to cut: a breach here (drawdown
        # from gas, a position-size cap) is handled by withdrawing the excess over the cap.
        supplied = view.position_quantity("aave_v3", "USDT")
        cap = self.config.risk.max_position_size.limit
        if "max_position_size" in breach_types and cap is not None and supplied > Decimal(repr(cap)):
            return [OrderIntent("aave_v3", "USDT", "sell", supplied - Decimal(repr(cap)), "risk_reduce", True)]
        return []

    def unwind(self, view: PortfolioView) -> list[list[OrderIntent]]:
        supplied = view.position_quantity("aave_v3", "USDT")
        if supplied <= 0:
            return []
        return [[OrderIntent("aave_v3", "USDT", "sell", supplied, "exit_full", reduces_exposure=True)]]

    def free_for_withdrawal(self, view: PortfolioView, fraction: Decimal) -> list[OrderIntent] | None:
        supplied = view.position_quantity("aave_v3", "USDT")
        amount = view.equity * fraction - max(view.balance("wallet", "USDT") - self._reserve(view), Decimal(0))
        if amount <= 0 or supplied <= 0:
            return []
        return [OrderIntent("aave_v3", "USDT", "sell", min(amount, supplied), "exit_partial", reduces_exposure=True)]
