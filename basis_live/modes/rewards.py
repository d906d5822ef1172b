"""``sell_dust``: turn the seasonal reward tokens EtherFi drops on weETH holders (EIGEN, ETHFI) into
ETH through the swap venue's ``<token>/ETH`` pools.

Every mode that holds weETH sells to ETH, whatever its share class: the ETH share classes hold ETH,
and the USDT modes' ETH is their staked (and hedged) leg, so the next ticks stake it and the hedge
covers it like any wallet ETH; one hop on the tokens' deep WETH pools also costs less than two to
USDT and back. A holding is sold only when it is worth at least ``DUST_FLOOR_ETH`` and at least
``GAS_MULTIPLE`` times the swap's gas at the current gas price (gas at most 5 % of the proceeds);
smaller holdings wait for the next drops and are valued in equity meanwhile. A mode without the swap
venue keeps its tokens.
"""

from __future__ import annotations

from decimal import Decimal

from basis_live.config import StrategyConfig
from basis_live.engine.portfolio import PortfolioView, price_usdt
from basis_live.feeds.base import REWARD_TOKENS
from basis_live.modes.base import OrderIntent

SWAP_VENUE = "uniswap"
#: Below this value (in ETH) a reward holding is dust: never worth a transaction.
DUST_FLOOR_ETH = Decimal("0.001")
#: A sale must be worth this many times its gas.
GAS_MULTIPLE = Decimal(20)
#: Discount on the estimated ETH a sale returns (pool fee and slippage stay well below 0.3 %).
PROCEEDS_HAIRCUT = Decimal("1.003")
#: Gas units of a swap when the strategy's execution.gas_units does not name one.
DEFAULT_SWAP_GAS_UNITS = 180_000


def sell_threshold_eth(view: PortfolioView, config: StrategyConfig) -> Decimal:
    """The smallest reward holding worth selling now, in ETH."""
    units = config.execution.gas_units.get("swap", DEFAULT_SWAP_GAS_UNITS)
    gas_eth = Decimal(repr(view.market.gas_price_gwei)) * units * Decimal("1e-9")
    return max(DUST_FLOOR_ETH, GAS_MULTIPLE * gas_eth)


def sell_dust(view: PortfolioView, config: StrategyConfig) -> tuple[list[OrderIntent], Decimal]:
    """Intents selling every reward token in the wallet worth the threshold, and the ETH they should
    return (estimated at the mark less ``PROCEEDS_HAIRCUT``)."""
    venue = config.venues.get(SWAP_VENUE)
    if venue is None or not venue.enabled:
        return [], Decimal(0)
    market = view.market
    intents: list[OrderIntent] = []
    proceeds = Decimal(0)
    threshold: Decimal | None = None
    for token in REWARD_TOKENS:
        amount = view.balance("wallet", token)
        if amount <= 0 or token not in market.spot:
            continue
        value_eth = amount * price_usdt(token, market) / price_usdt("ETH", market)
        threshold = sell_threshold_eth(view, config) if threshold is None else threshold
        if value_eth < threshold:
            continue
        intents.append(OrderIntent(SWAP_VENUE, f"{token}/ETH", "sell", amount, "sell_dust", reduces_exposure=True))
        proceeds += value_eth / PROCEEDS_HAIRCUT
    return intents, proceeds


def with_reward_sales(plan: list[list[OrderIntent]], view: PortfolioView, config: StrategyConfig
                      ) -> list[list[OrderIntent]]:
    """An unwind plan that also sells the reward tokens (in its first batch: a wallet swap that
    depends on no other step); the plan's later ETH -> USDT steps are re-planned from the balances
    it leaves."""
    sales, _ = sell_dust(view, config)
    if not sales:
        return plan
    if not plan:
        return [sales]
    return [sales + plan[0], *plan[1:]]
