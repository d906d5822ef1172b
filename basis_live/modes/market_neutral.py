"""usdt_market_neutral_no_leverage: ``stake_allocation_eth`` (0.5) of the USDT equity is swapped to ETH
on chain and staked as the LST; the rest is USDT margin on the CEXs, shorting ETH perps equal to the
ETH held (LST x oracle rate + wallet ETH), split by ``hedge_allocation``. It earns the staking yield
plus funding while delta-neutral in USDT.

The hedge follows the ETH actually held (after this tick's swap), like the basis modes' hedge
follows the spot held. Moving capital between the chain wallet and the exchanges is not modelled
yet: each side grows with its own P&L.

EtherFi's EIGEN / ETHFI drops on the weETH are sold for ETH, not USDT (``sell_dust``, see
``modes.rewards`` for why): the ETH they return is hedged in the same tick (it counts in the hedge
target) and staked by a later tick with the other idle ETH.
"""

from __future__ import annotations

from decimal import Decimal

from basis_live.engine.portfolio import PortfolioView, price_usdt
from basis_live.feeds.base import MarketSnapshot
from basis_live.modes.base import OrderIntent
from basis_live.modes.basis import REDUCE_FRACTION, BasisMode
from basis_live.modes.rewards import sell_dust, with_reward_sales
from basis_live.modes.staking import STAKING_VENUE

#: Kept in the wallet for gas: USDT (1 % of equity, at most 100) and ETH (at most 0.05).
USDT_GAS_RESERVE = Decimal(100)
ETH_GAS_RESERVE = Decimal("0.05")
#: Headroom on a swap's USDT cost for slippage and the pool fee.
SWAP_HEADROOM = Decimal("1.003")


class MarketNeutralStaking(BasisMode):
    def __init__(self, config) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config)
        self.lst = config.lst_type
        self.staking_venue = STAKING_VENUE[self.lst]
        self.stake_fraction = Decimal(repr(config.stake_allocation_eth))

    def initial_funding(self, capital: Decimal, market: MarketSnapshot) -> dict[str, dict[str, Decimal]]:
        stake = capital * self.stake_fraction
        funding = {venue: {"USDT": weight * (capital - stake)} for venue, weight in self.allocation.items()}
        funding["wallet"] = {"USDT": stake}
        return funding

    def _swap_idle_usdt(self, view: PortfolioView, price: Decimal, threshold: Decimal, entering: bool,
                        intents: list[OrderIntent]) -> Decimal:
        """Append a swap of the wallet's idle USDT (beyond the gas reserve and the deviation band)
        to ETH; returns the ETH it buys."""
        idle_usdt = view.balance("wallet", "USDT") - min(USDT_GAS_RESERVE, view.equity / 100)
        if idle_usdt <= 0 or idle_usdt / view.equity <= threshold:
            return Decimal(0)
        bought = idle_usdt / (price * SWAP_HEADROOM)
        intents.append(OrderIntent("uniswap", "ETH/USDT", "buy", bought, "entry_full" if entering else "entry_partial",
                                   False))
        return bought

    def _eth_held(self, view: PortfolioView) -> Decimal:
        rate = view.market.decimal("lst_rate", self.lst)
        return view.balance("wallet", self.lst) * rate + view.balance("wallet", "ETH")

    def decide(self, view: PortfolioView) -> list[OrderIntent]:
        if view.equity <= 0:
            return []
        threshold = Decimal(repr(self.config.position_deviation_threshold))
        price = price_usdt("ETH", view.market)
        rate = view.market.decimal("lst_rate", self.lst)
        intents, proceeds = sell_dust(view, self.config)
        entering = view.balance("wallet", self.lst) == 0
        bought = self._swap_idle_usdt(view, price, threshold, entering, intents)
        eth_after = self._eth_held(view) + bought + proceeds
        idle_eth = view.balance("wallet", "ETH") + bought - ETH_GAS_RESERVE
        if idle_eth > 0 and idle_eth * price / view.equity > threshold:
            intents.append(OrderIntent(self.staking_venue, self.lst, "buy", idle_eth / rate,
                                       "entry_full" if entering else "entry_partial", False))
        intents.extend(self._hedge(view, eth_after, entering))
        return intents

    def free_for_withdrawal(self, view: PortfolioView, fraction: Decimal) -> list[OrderIntent] | None:
        """Shrink both sides by ``fraction`` together (the book stays hedged): redeem that share of
        the LST and buy back that share of every short (its margin is freed on each exchange); the
        ETH the redemption returns is sold back to USDT by ``settle_withdrawal``."""
        intents, _ = self._release_eth(view, fraction)
        intents.extend(self._cover_perps(view, fraction, "exit_partial"))
        return intents

    def settle_withdrawal(self, view: PortfolioView) -> list[OrderIntent]:
        """Sell the wallet's ETH above the gas reserve (what the redemption returned) for USDT."""
        eth = view.balance("wallet", "ETH") - ETH_GAS_RESERVE
        return [OrderIntent("uniswap", "ETH/USDT", "sell", eth, "exit_partial", True)] if eth > 0 else []

    def _release_eth(self, view: PortfolioView, fraction: Decimal) -> tuple[list[OrderIntent], Decimal]:
        """Redeem ``fraction`` of the LST held; returns the intents and the ETH they should free."""
        rate = view.market.decimal("lst_rate", self.lst)
        staked = view.balance("wallet", self.lst) * fraction
        intents = [OrderIntent(self.staking_venue, self.lst, "sell", staked, "exit_partial", True)] if staked > 0 else []
        return intents, staked * rate

    def reduce(self, view: PortfolioView, breach_types: list[str]) -> list[OrderIntent]:
        """Cut the staked leg and its hedge by REDUCE_FRACTION together."""
        intents = []
        staked = view.balance("wallet", self.lst)
        if staked > 0:
            intents.append(OrderIntent(self.staking_venue, self.lst, "sell", staked * REDUCE_FRACTION, "risk_reduce",
                                       True))
        intents.extend(self._cover_perps(view, REDUCE_FRACTION, "risk_reduce"))
        return intents

    def unwind(self, view: PortfolioView) -> list[list[OrderIntent]]:
        # First close the hedge and redeem the LST together (the ETH stays hedged until both are
        # done in the same batch), then sell the ETH back to USDT.
        first = []
        first.extend(self._cover_perps(view, Decimal(1), "exit_full"))
        staked = view.balance("wallet", self.lst)
        if staked > 0:
            first.append(OrderIntent(self.staking_venue, self.lst, "sell", staked, "exit_full", True))
        if first:
            return with_reward_sales([first], view, self.config)
        eth = view.balance("wallet", "ETH") - ETH_GAS_RESERVE
        plan = [[OrderIntent("uniswap", "ETH/USDT", "sell", eth, "exit_full", True)]] if eth > 0 else []
        return with_reward_sales(plan, view, self.config)


class LeveragedMarketNeutral(MarketNeutralStaking):
    """usdt_market_neutral: as usdt_market_neutral_no_leverage, but the staked ETH is looped on AAVE
    to the target LTV like eth_leveraged. The perps hedge the book's net ETH: LST collateral x rate -
    WETH debt + ETH and LST in the wallet (MODES.md's delta, debt counted as a short)."""

    def __init__(self, config) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config)
        from basis_live.modes.leveraged import Leveraged

        self.loop = Leveraged(config)

    def _eth_held(self, view: PortfolioView) -> Decimal:
        collateral, debt = self.loop._book(view)
        return super()._eth_held(view) + collateral - debt

    def decide(self, view: PortfolioView) -> list[OrderIntent]:
        if view.equity <= 0:
            return []
        threshold = Decimal(repr(self.config.position_deviation_threshold))
        price = price_usdt("ETH", view.market)
        intents, proceeds = sell_dust(view, self.config)
        entering = self.loop._book(view)[0] == 0
        bought = self._swap_idle_usdt(view, price, threshold, entering, intents)
        eth_book = self._eth_held(view) + bought + proceeds
        idle_eth = view.balance("wallet", "ETH") + bought - ETH_GAS_RESERVE
        if eth_book > 0:
            intents.extend(self.loop.lever(view, eth_book, idle_eth))
        intents.extend(self._hedge(view, eth_book, entering))
        return intents

    def _release_eth(self, view: PortfolioView, fraction: Decimal) -> tuple[list[OrderIntent], Decimal]:
        # The leveraged book frees its share as eth_leveraged does (delever, then withdraw and
        # redeem), keeping the LTV at its target.
        return self.loop.release(view, self._eth_held(view), fraction)

    def reduce(self, view: PortfolioView, breach_types: list[str]) -> list[OrderIntent]:
        """A health-factor breach delevers (like eth_leveraged); any other reduce breach cuts the
        hedge and delevers by REDUCE_FRACTION."""
        if "health_factor_threshold" in breach_types:
            return self.loop.reduce(view, breach_types)
        intents = []
        _, debt = self.loop._book(view)
        if debt > 0:
            intents.append(OrderIntent("aave_v3", f"{self.lst}-loop", "sell", debt * REDUCE_FRACTION, "risk_reduce", True))
        intents.extend(self._cover_perps(view, REDUCE_FRACTION, "risk_reduce"))
        return intents

    def unwind(self, view: PortfolioView) -> list[list[OrderIntent]]:
        # Repay all debt (and close the hedge) first, then the chain-side steps of eth_leveraged,
        # then sell the ETH back to USDT: one step per call, re-planned from fresh balances.
        hedge = self._cover_perps(view, Decimal(1), "exit_full")
        chain = self.loop.unwind_book(view)
        if chain:
            plan = [hedge + chain[0], *chain[1:]]
        elif hedge:
            plan = [hedge]
        else:
            eth = view.balance("wallet", "ETH") - ETH_GAS_RESERVE
            plan = [[OrderIntent("uniswap", "ETH/USDT", "sell", eth, "exit_full", True)]] if eth > 0 else []
        return with_reward_sales(plan, view, self.config)
