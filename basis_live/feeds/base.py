"""The market-data contract every feed (sample, replay, live) fulfils.

A feed answers one question: what did the market look like at time ``ts``? The engine asks it on its
own clock, so the same feed drives paper trading (sim clock at ``--speed``), backtests (stepped clock)
and, later, live data. Market data are floats: they are analytics inputs, not balances. Amounts that
reach a venue are Decimals rounded to venue precision (see ``basis_live.venues``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Mapping

#: Perp venues every feed quotes.
PERP_VENUES: tuple[str, ...] = ("binance", "bybit", "okx")
#: Base assets with spot prices and perps.
BASE_ASSETS: tuple[str, ...] = ("BTC", "ETH")
#: Assets with an AAVE V3 reserve in the feeds.
LENDING_ASSETS: tuple[str, ...] = ("USDT", "WETH", "weETH", "wstETH")
#: Liquid staking tokens with an oracle rate (LST per ETH, in ETH).
LST_ASSETS: tuple[str, ...] = ("weETH", "wstETH")
#: Funding settles at these UTC hours on every venue in sample and replay data.
FUNDING_HOURS_UTC: tuple[int, ...] = (0, 8, 16)
#: Seasonal reward tokens EtherFi drops on eETH holders (weETH wraps eETH; wstETH earns none).
REWARD_TOKENS: tuple[str, ...] = ("EIGEN", "ETHFI")


@dataclass(frozen=True, slots=True)
class RewardDrop:
    """One seasonal reward drop (MODES.md: EtherFi's EIGEN / ETHFI drops, booked as lump sums).

    At ``timestamp`` every eETH held, i.e. weETH x its oracle rate (in the wallet or supplied on
    AAVE), receives ``per_eeth`` units of ``token``, worth ``price_usd`` each at the drop. ``origin``
    says where the figure comes from ("exact", "estimated", "apy_converted", "synthetic").
    """

    timestamp: datetime
    token: str
    per_eeth: float
    price_usd: float
    origin: str = "exact"


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """The market at one instant (UTC). Every price is quoted in USDT.

    - ``spot``: asset -> price in USDT; always contains "USDT": 1.0, "BTC", "ETH", and the LSTs
      ("weETH", "wstETH") valued as lst_rate x ETH.
    - ``perp_mark``: venue -> base asset -> perp mark price in USDT.
    - ``funding_rate``: venue -> base asset -> the funding rate (fraction per 8 h period) that will
      settle at the next settlement time; a short position receives notional x rate when positive.
    - ``lending_index``: asset -> AAVE liquidityIndex as a ratio (near 1.0; on chain it is RAY).
    - ``lending_apr``: asset -> AAVE supply APR (fraction per year).
    - ``borrow_index`` / ``borrow_apr``: asset -> AAVE variableBorrowIndex and variable borrow APR.
    - ``lst_rate``: LST -> ETH per LST (oracle rate), e.g. weETH 1.04.
    - ``gas_price_gwei``: Ethereum gas price.
    - ``rewards_paid``: every seasonal reward drop paid at or before ``timestamp``, oldest first
      (the feed's calendar up to now). It only ever grows, so a venue credits the drops beyond the
      ones it has already seen. From a reward token's first drop on, ``spot`` also prices it
      ("EIGEN", "ETHFI") at its last drop's price.
    """

    timestamp: datetime
    spot: Mapping[str, float]
    perp_mark: Mapping[str, Mapping[str, float]]
    funding_rate: Mapping[str, Mapping[str, float]]
    lending_index: Mapping[str, float]
    lending_apr: Mapping[str, float]
    borrow_index: Mapping[str, float]
    borrow_apr: Mapping[str, float]
    lst_rate: Mapping[str, float]
    gas_price_gwei: float
    source: str = "sample"
    scenario: str | None = None
    rewards_paid: tuple[RewardDrop, ...] = field(default=(), repr=False)
    #: time.monotonic() when the engine received this snapshot; set by the engine, used to measure
    #: breach-to-halt latency.
    received_monotonic: float = field(default=0.0, compare=False)
    #: Decimal forms of this snapshot's figures, made once each on first use (valuation, P&L
    #: attribution, the modes and the paper venues read the same few prices many times a tick);
    #: see ``decimal`` and ``engine.portfolio.price_usdt``.
    decimals: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def decimal(self, table: str, key: str, venue: str | None = None) -> Decimal:
        """``self.<table>[key]`` (or ``[venue][key]``) as an exact Decimal of the float's shortest
        repr, converted once per snapshot. Raises KeyError like the mapping does."""
        cache_key = (table, venue, key)
        value = self.decimals.get(cache_key)
        if value is None:
            source = getattr(self, table)
            value = self.decimals[cache_key] = Decimal(repr((source[venue] if venue is not None else source)[key]))
        return value


class FeedError(Exception):
    """A feed cannot produce data (missing series, misaligned range, unreadable file)."""


class TimeOutOfRange(ValueError):
    """A data file's time (or nan / inf) outside the range a feed accepts; the message says which."""


class MarketFeed(abc.ABC):
    """A source of MarketSnapshots indexed by time.

    ``start`` is the first instant with data. ``end`` is the last (``None`` for an endless feed).
    ``label`` is shown to the operator in the first line of output, e.g.
    "SAMPLE DATA (synthetic, seed 7, scenario crash)"; ``is_sample`` is True for synthetic data.
    """

    label: str
    is_sample: bool
    start: datetime
    end: datetime | None
    #: Wall seconds between the engine's market refreshes: file feeds are cheap to read every
    #: 20 ms; a network feed sets its own refresh period.
    poll_seconds: float = 0.02
    #: The seasonal reward drops this feed knows, oldest first (none for most feeds).
    reward_drops: tuple[RewardDrop, ...] = ()
    #: Caveats about the data an operator should know (the engine records each as a run event).
    notes: tuple[str, ...] = ()

    @abc.abstractmethod
    async def snapshot_at(self, ts: datetime) -> MarketSnapshot:
        """The market at ``ts`` (UTC, start <= ts <= end); interpolated between data points. A new
        snapshot object every call: the engine stamps it with the time it received it."""

    def rewards_between(self, start: datetime, end: datetime) -> list[RewardDrop]:
        """The reward drops paid in (start, end]."""
        start, end = utc(start), utc(end)
        return [drop for drop in self.reward_drops if start < drop.timestamp <= end]

    async def close(self) -> None:  # pragma: no cover - nothing to release for file feeds
        return None


class PolledFeed(MarketFeed):
    """A feed read from the network (exchanges, a node): the latest read, refreshed when older than
    ``refresh_seconds`` of wall time, stamped with the time asked for. Subclasses read in ``_read``."""

    refresh_seconds: float = 5.0
    _latest: MarketSnapshot | None = None
    _fetched_at: float = 0.0

    @abc.abstractmethod
    async def _read(self, ts: datetime) -> MarketSnapshot:
        """A fresh read of the market, stamped ``ts``; FeedError naming what failed."""

    async def snapshot_at(self, ts: datetime) -> MarketSnapshot:
        import dataclasses
        import time

        now = time.monotonic()
        if self._latest is None or now - self._fetched_at >= self.refresh_seconds:
            self._latest = await self._read(ts)
            self._fetched_at = now
        return dataclasses.replace(self._latest, timestamp=ts)


def utc(ts: datetime) -> datetime:
    """Return ``ts`` as an aware UTC datetime (naive input is taken as UTC)."""
    if ts.tzinfo is None:
        return ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(timezone.utc)


def last_funding_settlement(ts: datetime) -> datetime:
    """The most recent funding settlement at or before ``ts`` (00:00, 08:00, 16:00 UTC)."""
    ts = utc(ts)
    hour = max(h for h in FUNDING_HOURS_UTC if h <= ts.hour)
    return ts.replace(hour=hour, minute=0, second=0, microsecond=0)


def next_funding_settlement(ts: datetime) -> datetime:
    """The first funding settlement strictly after ``ts``."""
    last = last_funding_settlement(ts)
    return last + timedelta(hours=8)
