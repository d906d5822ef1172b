"""eth_leveraged: the LST supplied to AAVE as collateral, WETH borrowed and restaked, to the target
LTV = max_ltv x (1 - max_stake_spread_move) (0.909 in eMode).

With equity E (ETH) at target LTV t: collateral = E / (1 - t), debt = E x t / (1 - t). Idle ETH is
staked and supplied; the gap to the target debt is closed with the venue's atomic leverage step
(``<lst>-loop``: borrow, stake, supply in one operation, as a flash-loan helper does on chain), in
either direction. ``reduce`` (health factor breach) delevers to a safer LTV; ``unwind`` repays all
debt before withdrawing any collateral, then redeems the LST to ETH. EtherFi's EIGEN / ETHFI drops on
the supplied weETH are sold for ETH (``sell_dust``, ``modes.rewards``) and levered with the idle ETH.
"""

from __future__ import annotations

from decimal import Decimal

from basis_live.engine.portfolio import PortfolioView
from basis_live.feeds.base import MarketSnapshot
from basis_live.modes.base import OrderIntent, StrategyMode
from basis_live.modes.rewards import sell_dust, with_reward_sales
from basis_live.modes.staking import STAKING_VENUE, eth_gas_reserve

#: A health-factor reduce step delevers to this multiple of the configured HF floor.
REDUCE_TO_HF_MULTIPLE = Decimal("1.03")


#: What an emergency unwind of the loop sends: the delever loop, the last withdrawal, the redemption
#: and a reward-token sale (sizes the wallet's gas reserve).
UNWIND_OPERATIONS = ("leverage", "withdraw", "unstake", "swap")


class Leveraged(StrategyMode):
    name = "eth_leveraged"

    def __init__(self, config) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config)
        self.lst = config.lst_type
        self.staking_venue = STAKING_VENUE[self.lst]
        self.target_ltv = Decimal(repr(config.leverage.target_ltv))
        self.liquidation_threshold = Decimal(repr(config.leverage.liquidation_threshold))

    def initial_funding(self, capital: Decimal, market: MarketSnapshot) -> dict[str, dict[str, Decimal]]:
        return {"wallet": {"ETH": capital}}

    def _rate(self, view: PortfolioView) -> Decimal:
        return view.market.decimal("lst_rate", self.lst)

    def _book(self, view: PortfolioView) -> tuple[Decimal, Decimal]:
        """(collateral, debt) in ETH."""
        collateral = view.position_quantity("aave_v3", self.lst) * self._rate(view)
        return collateral, view.position_quantity("aave_v3", "WETH-debt")

    def decide(self, view: PortfolioView) -> list[OrderIntent]:
        if view.equity <= 0:
            return []
        reserve = eth_gas_reserve(view, self.config, UNWIND_OPERATIONS)
        sales, _ = sell_dust(view, self.config)
        return sales + self.lever(view, view.equity, view.balance("wallet", "ETH") - reserve)

    def lever(self, view: PortfolioView, equity_eth: Decimal, idle_eth: Decimal) -> list[OrderIntent]:
        """Stake and supply ``idle_eth``, supply LST left in the wallet, and close the gap between
        the debt and the target for ``equity_eth`` of equity on this book (all in ETH)."""
        threshold = Decimal(repr(self.config.position_deviation_threshold))
        rate = self._rate(view)
        intents: list[OrderIntent] = []
        if idle_eth > 0 and idle_eth / equity_eth > threshold:
            lst_amount = idle_eth / rate
            intents.append(OrderIntent(self.staking_venue, self.lst, "buy", lst_amount, "entry_full", False))
            intents.append(OrderIntent("aave_v3", self.lst, "buy", lst_amount, "entry_full", False))
        wallet_lst = view.balance("wallet", self.lst)
        if wallet_lst > 0 and wallet_lst * rate / equity_eth > threshold:
            intents.append(OrderIntent("aave_v3", self.lst, "buy", wallet_lst, "entry_partial", False))
        _, debt = self._book(view)
        target_debt = equity_eth * self.target_ltv / (1 - self.target_ltv)
        gap = target_debt - debt
        if target_debt > 0 and abs(gap) / target_debt > threshold:
            if gap > 0:
                purpose = "entry_full" if debt == 0 else "entry_partial"
                intents.append(OrderIntent("aave_v3", f"{self.lst}-loop", "buy", gap, purpose, False))
            else:
                intents.append(OrderIntent("aave_v3", f"{self.lst}-loop", "sell", -gap, "exit_partial", True))
        return intents

    def reduce(self, view: PortfolioView, breach_types: list[str]) -> list[OrderIntent]:
        """Delever so that the health factor returns to REDUCE_TO_HF_MULTIPLE x its floor.

        Where AAVE reports its own health factor (live), the collateral is what that figure says
        (HF x debt / liquidation threshold): the breach came from it, on oracle prices that the
        feed's LST rate may not show yet, and sizing on the feed would under-reduce. On paper the
        book's own valuation is the health factor, so nothing changes there."""
        collateral, debt = self._book(view)
        floor = self.config.risk.health_factor_threshold.limit
        if debt <= 0 or floor is None:
            return []
        aave = view.accounts.get("aave_v3")
        if aave is not None and aave.health_factor is not None:
            collateral = Decimal(aave.health_factor) * debt / self.liquidation_threshold
        safe_ltv = self.liquidation_threshold / (Decimal(repr(floor)) * REDUCE_TO_HF_MULTIPLE)
        # Delevering q lowers collateral and debt by q: (debt - q) / (collateral - q) = safe_ltv.
        q = (debt - safe_ltv * collateral) / (1 - safe_ltv)
        if q <= 0:
            return []
        return [OrderIntent("aave_v3", f"{self.lst}-loop", "sell", min(q, debt), "risk_reduce", True)]

    def free_for_withdrawal(self, view: PortfolioView, fraction: Decimal) -> list[OrderIntent] | None:
        """Leave ``fraction`` of the equity as ETH in the wallet with the book still at target LTV."""
        intents, _ = self.release(view, view.equity, fraction)
        return intents

    def release(self, view: PortfolioView, book_eth: Decimal, fraction: Decimal) -> tuple[list[OrderIntent], Decimal]:
        """Intents that turn ``fraction`` of a book worth ``book_eth`` (ETH) into wallet ETH, and
        that amount. First delever by ``fraction`` of the debt target (the atomic step withdraws and
        repays the same ETH: the LTV drops), then withdraw and redeem LST for the ETH still missing
        after the wallet's idle ETH and LST: the LTV is back at its target, never above it."""
        wanted = book_eth * fraction
        rate = self._rate(view)
        collateral, debt = self._book(view)
        intents: list[OrderIntent] = []
        target_debt = book_eth * (1 - fraction) * self.target_ltv / (1 - self.target_ltv)
        if debt > target_debt:
            intents.append(OrderIntent("aave_v3", f"{self.lst}-loop", "sell", debt - target_debt, "exit_partial", True))
        reserve = eth_gas_reserve(view, self.config, UNWIND_OPERATIONS) if self.config.share_class == "ETH" else 0
        missing = wanted - max(view.balance("wallet", "ETH") - reserve, Decimal(0))
        wallet_lst = view.balance("wallet", self.lst)
        from_wallet = min(wallet_lst, max(missing, Decimal(0)) / rate)
        from_aave = max(missing / rate - from_wallet, Decimal(0))
        if from_aave > 0:
            intents.append(OrderIntent("aave_v3", self.lst, "sell", from_aave, "exit_partial", True))
        if from_wallet + from_aave > 0:
            intents.append(OrderIntent(self.staking_venue, self.lst, "sell", from_wallet + from_aave, "exit_partial", True))
        return intents, wanted

    def unwind(self, view: PortfolioView) -> list[list[OrderIntent]]:
        return with_reward_sales(self.unwind_book(view), view, self.config)

    def unwind_book(self, view: PortfolioView) -> list[list[OrderIntent]]:
        """The chain-side unwind: repay, withdraw, redeem (reward tokens not included)."""
        _, debt = self._book(view)
        batches: list[list[OrderIntent]] = []
        if debt > 0:
            batches.append([OrderIntent("aave_v3", f"{self.lst}-loop", "sell", debt, "exit_full", True)])
        # After the repay the collateral is free: withdraw all of it, then redeem every LST.
        supplied = view.position_quantity("aave_v3", self.lst) - (debt / self._rate(view))
        if supplied > 0:
            batches.append([OrderIntent("aave_v3", self.lst, "sell", supplied, "exit_full", True)])
        lst_total = view.balance("wallet", self.lst) + max(supplied, Decimal(0))
        if lst_total > 0:
            batches.append([OrderIntent(self.staking_venue, self.lst, "sell", lst_total, "exit_full", True)])
        return batches
