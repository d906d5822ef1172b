"""The interface between the engine and a strategy mode.

A mode turns a ``PortfolioView`` into ``OrderIntent``s; it never talks to a venue, the store or the
clock. The engine rounds intents to venue precision, gates them by trading state (REDUCING lets
only exposure-reducing intents through, HALTED none) and sends them exactly once.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from basis_live.config import StrategyConfig
from basis_live.engine.portfolio import PortfolioView
from basis_live.feeds.base import MarketSnapshot
from basis_live.venues.base import Side

#: Why an intent exists; the five standard actions plus rebalance / risk reduction / unwind.
Purpose = Literal["entry_full", "entry_partial", "exit_full", "exit_partial", "sell_dust", "rebalance",
                  "risk_reduce", "unwind"]


@dataclass(frozen=True)
class OrderIntent:
    venue: str
    symbol: str
    side: Side
    quantity: Decimal  # unrounded; the engine rounds down to the venue step
    purpose: Purpose
    reduces_exposure: bool  # True when it can only shrink a position (allowed while REDUCING)
    reduce_only: bool = False  # sent to the venue as reduce-only (perps)


def gas_eth(config: StrategyConfig, market: MarketSnapshot, operations: tuple[str, ...],
            floor_gwei: Decimal = Decimal(0)) -> Decimal:
    """What ``operations`` cost in gas (ETH) by the strategy's ``execution.gas_units``, at
    max(``market``'s gas price, ``floor_gwei``): what a mode keeps in its wallet to be able to get out."""
    units = sum((Decimal(config.execution.gas_units.get(op, 250_000)) for op in operations), Decimal(0))
    return units * max(Decimal(repr(market.gas_price_gwei)), floor_gwei) * Decimal("1e-9")


class StrategyMode(abc.ABC):
    """One mode of MODES.md. ``initial_funding`` says where paper capital sits at the start."""

    name: str
    #: True while the run is REDUCING (set by the engine): only intents that reduce exposure pass,
    #: so a mode plans around the orders that will be blocked (e.g. it hedges the spot it holds,
    #: not the spot it would buy).
    reducing: bool = False

    def __init__(self, config: StrategyConfig) -> None:
        self.config = config

    @abc.abstractmethod
    def initial_funding(self, capital: Decimal, market: MarketSnapshot) -> dict[str, dict[str, Decimal]]:
        """venue -> asset -> amount that a paper run starts with (live runs read real balances)."""

    @abc.abstractmethod
    def decide(self, view: PortfolioView) -> list[OrderIntent]:
        """Intents that move the portfolio to the mode's target (empty inside the deviation band)."""

    @abc.abstractmethod
    def reduce(self, view: PortfolioView, breach_types: list[str]) -> list[OrderIntent]:
        """Intents that cut exposure after a breach with policy ``reduce``; never build a position."""

    @abc.abstractmethod
    def unwind(self, view: PortfolioView) -> list[list[OrderIntent]]:
        """Batches that close everything back to the share class, in a safe order (each batch
        completes before the next starts, e.g. repay before withdraw)."""

    def free_for_withdrawal(self, view: PortfolioView, fraction: Decimal) -> list[OrderIntent] | None:
        """Intents that shrink every position by ``fraction`` so that a withdrawal of that share of
        equity leaves in the places ``initial_funding`` puts deposits. None: the mode cannot do it
        yet (the withdrawal is refused)."""
        return None

    def settle_withdrawal(self, view: PortfolioView) -> list[OrderIntent]:
        """A second step of a withdrawal, planned on the balances the first one really left (e.g.
        selling the ETH a redemption returned, whose exact amount is known only afterwards)."""
        return []

    def venues_used(self) -> list[str]:
        return [name for name, venue in self.config.venues.items() if venue.enabled]
