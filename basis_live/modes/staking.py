"""eth_staking_only: all capital (ETH) staked as the configured LST (weETH via EtherFi, wstETH via
Lido). Equity is in ETH; the staking yield is the drift of the LST's oracle rate, nothing added on
top. A small ETH reserve stays in the wallet for gas. weETH also earns EtherFi's EIGEN / ETHFI
drops: ``sell_dust`` sells them for ETH (``modes.rewards``), which is staked with the idle ETH."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from basis_live.engine.portfolio import PortfolioView
from basis_live.feeds.base import MarketSnapshot
from basis_live.modes.base import OrderIntent, StrategyMode, gas_eth
from basis_live.modes.rewards import sell_dust, with_reward_sales

if TYPE_CHECKING:
    from basis_live.config import StrategyConfig

#: ETH kept for gas: 1 % of equity, at most 0.05 ETH.
GAS_RESERVE_FRACTION = Decimal("0.01")
GAS_RESERVE_CAP = Decimal("0.05")
#: The gas price (gwei) an ETH book's reserve is sized for, at least: an emergency unwind is often
#: needed when the network is busy, and a wallet that cannot pay gas cannot get out.
UNWIND_GAS_GWEI = Decimal(50)
#: ... but never more than this share of equity (a very small account is not all reserve).
GAS_RESERVE_MAX_FRACTION = Decimal("0.05")


def eth_gas_reserve(view: PortfolioView, config: StrategyConfig, unwind_operations: tuple[str, ...]) -> Decimal:
    """ETH the wallet keeps for gas: 1 % of equity up to 0.05 ETH, and at least the gas of the mode's
    unwind operations at max(today's gas price, UNWIND_GAS_GWEI), capped at 5 % of equity."""
    unwind_gas = min(gas_eth(config, view.market, unwind_operations, UNWIND_GAS_GWEI),
                     view.equity * GAS_RESERVE_MAX_FRACTION)
    return max(min(GAS_RESERVE_CAP, view.equity * GAS_RESERVE_FRACTION), unwind_gas)


STAKING_VENUE = {"weETH": "etherfi", "wstETH": "lido"}


class StakingOnly(StrategyMode):
    name = "eth_staking_only"

    def __init__(self, config) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config)
        self.lst = config.lst_type
        self.venue = STAKING_VENUE[self.lst]

    def initial_funding(self, capital: Decimal, market: MarketSnapshot) -> dict[str, dict[str, Decimal]]:
        return {"wallet": {"ETH": capital}}

    def _rate(self, view: PortfolioView) -> Decimal:
        return view.market.decimal("lst_rate", self.lst)

    def decide(self, view: PortfolioView) -> list[OrderIntent]:
        intents, _ = sell_dust(view, self.config)
        reserve = eth_gas_reserve(view, self.config, ("unstake", "swap"))
        idle = view.balance("wallet", "ETH") - reserve
        if view.equity <= 0 or idle <= 0 or idle / view.equity <= Decimal(repr(self.config.position_deviation_threshold)):
            return intents
        staked = view.balance("wallet", self.lst)
        purpose = "entry_full" if staked == 0 else "entry_partial"
        intents.append(OrderIntent(self.venue, self.lst, "buy", idle / self._rate(view), purpose, reduces_exposure=False))
        return intents

    def reduce(self, view: PortfolioView, breach_types: list[str]) -> list[OrderIntent]:
        cap = self.config.risk.max_position_size.limit
        staked_value = view.balance("wallet", self.lst) * self._rate(view)
        if "max_position_size" in breach_types and cap is not None and staked_value > Decimal(repr(cap)):
            excess = (staked_value - Decimal(repr(cap))) / self._rate(view)
            return [OrderIntent(self.venue, self.lst, "sell", excess, "risk_reduce", True)]
        return []

    def unwind(self, view: PortfolioView) -> list[list[OrderIntent]]:
        staked = view.balance("wallet", self.lst)
        plan = [[OrderIntent(self.venue, self.lst, "sell", staked, "exit_full", True)]] if staked > 0 else []
        return with_reward_sales(plan, view, self.config)

    def free_for_withdrawal(self, view: PortfolioView, fraction: Decimal) -> list[OrderIntent] | None:
        staked = view.balance("wallet", self.lst)
        needed = view.equity * fraction - max(view.balance("wallet", "ETH") - GAS_RESERVE_CAP, Decimal(0))
        if needed <= 0 or staked <= 0:
            return []
        return [OrderIntent(self.venue, self.lst, "sell", min(needed / self._rate(view), staked), "exit_partial", True)]
