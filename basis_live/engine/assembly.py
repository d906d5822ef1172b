"""Assembles one run: its venues (paper venues funded as the mode says, or the live accounts after
a startup reconcile), the run row, the engine and its watchdog. Shared by ``start`` and by anything
else that needs a real run in-process (tests, benchmarks), so they exercise exactly what operators
run."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from decimal import Decimal
from datetime import datetime
from typing import Any

from basis_live.config import RunConfig, redact_secrets
from basis_live.engine.portfolio import value_portfolio
from basis_live.engine.reconcile import adopted_positions, reconcile_at_start, refuse_concurrent_live_runs
from basis_live.engine.clock import SimClock, SteppedClock
from basis_live.engine.engine import EventDrivenStrategyEngine, Reporter
from basis_live.errors import EngineInitError
from basis_live.feeds.base import FeedError, MarketFeed
from basis_live.modes.registry import create_mode
from basis_live.process import hostname, process_start
from basis_live.risk.watchdog import RiskWatchdog
from basis_live.store import Store
from basis_live.venues.base import Venue, VenueError
from basis_live.venues.factory import build_paper_venues


@dataclass
class AssembledRun:
    engine: EventDrivenStrategyEngine
    watchdog: RiskWatchdog
    venues: dict[str, Venue]


async def assemble_paper_run(
    run_id: str,
    config: RunConfig,
    feed: MarketFeed,
    store: Store,
    request: dict[str, Any],
    reporter: Reporter | None = None,
    backtest_start: datetime | None = None,
) -> AssembledRun:
    """Build everything for a paper run and record the run as running (pid = this process). With
    ``backtest_start`` the run is a backtest: a stepped clock from that instant."""
    mode = create_mode(config.strategy)
    start = backtest_start or feed.start
    try:
        first = await feed.snapshot_at(start)
    except FeedError as exc:
        raise EngineInitError(f"market feed unusable: {exc}") from None
    venues, simulated = build_paper_venues(config, mode, first)
    for venue in simulated:
        venue.on_market(first)
    store.insert_run(
        run_id=run_id, strategy_name=config.strategy.name, mode=config.strategy.mode,
        share_class=config.share_class, initial_capital=str(config.initial_capital),
        execution_mode=config.execution_mode, environment=config.environment, feed_label=feed.label,
        request=redact_secrets(request), config=redact_secrets(config.model_dump(mode="json")),
        pid=os.getpid(), host=hostname(), pid_start=process_start(os.getpid()),
        heartbeat_timeout=config.strategy.heartbeat_timeout,
    )
    clock = SteppedClock(start) if backtest_start is not None else SimClock(start, config.feed.speed)
    engine = EventDrivenStrategyEngine(run_id, config, feed, venues, simulated, mode, store, clock, reporter)
    return AssembledRun(engine, RiskWatchdog(engine), venues)


#: Wall seconds the watchdog waits for a live venue's account read (paper venues answer at once).
LIVE_WATCHDOG_VENUE_TIMEOUT = 2.0


async def assemble_live_run(
    run_id: str,
    config: RunConfig,
    feed: MarketFeed,
    venues: dict[str, Venue],
    store: Store,
    request: dict[str, Any],
    reporter: Reporter | None = None,
) -> AssembledRun:
    """Build a live run on ``venues`` (already validated): refuse a second live run on the same
    accounts, reconcile earlier runs' orders and refuse strangers' open orders
    (``engine.reconcile``), value the accounts and check them against ``--capital``, then record the
    run with the equity found as its initial capital (P&L counts from there). Closes the venues and
    the feed when it refuses."""
    strategy = config.strategy
    try:
        refuse_concurrent_live_runs(store, config.environment, list(venues))
        try:
            first = await feed.snapshot_at(feed.start)
        except FeedError as exc:
            raise EngineInitError(f"market data unavailable: {exc}") from None
        timeout = strategy.execution.venue_timeout_seconds
        report = await reconcile_at_start(venues, store, config.environment, timeout)
        accounts = {}
        for name, venue in venues.items():
            try:
                accounts[name] = await asyncio.wait_for(venue.fetch_account(), timeout)
            except (asyncio.TimeoutError, VenueError) as exc:
                raise EngineInitError(f"{name}: account read failed at start: {exc or 'timeout'}") from None
        liquidation = strategy.leverage.liquidation_threshold if strategy.leverage else None
        equity = value_portfolio(accounts, first, strategy.share_class, liquidation).equity
        capital = config.initial_capital
        tolerance = Decimal(repr(strategy.execution.capital_tolerance))
        if abs(equity - capital) > capital * tolerance:
            raise EngineInitError(
                f"the accounts hold {equity:,.2f} {strategy.share_class} of equity, --capital is {capital:,} "
                f"(tolerance {tolerance:%}): basis-live sizes from the accounts' equity, so they must be dedicated "
                f"to this run; fund them to --capital or pass --capital {equity:.2f}")
    except BaseException:
        for closable in (*venues.values(), feed):
            with contextlib.suppress(Exception):
                await closable.close()
        raise
    measured = equity.quantize(Decimal("0.00000001"))
    config = config.model_copy(update={"initial_capital": measured})
    store.insert_run(
        run_id=run_id, strategy_name=strategy.name, mode=strategy.mode, share_class=config.share_class,
        initial_capital=str(measured), execution_mode=config.execution_mode, environment=config.environment,
        feed_label=feed.label, request=redact_secrets(request), config=redact_secrets(config.model_dump(mode="json")),
        pid=os.getpid(), host=hostname(), pid_start=process_start(os.getpid()),
        heartbeat_timeout=strategy.heartbeat_timeout,
    )
    mode = create_mode(strategy)
    engine = EventDrivenStrategyEngine(run_id, config, feed, venues, [], mode, store, SimClock(first.timestamp, 1.0),
                                       reporter)
    for line in report.lines():
        engine.event("startup.reconcile", line, level="warning")
    positions = adopted_positions(accounts)
    if positions:
        engine.event("startup.positions", f"positions found on the venues and adopted: {', '.join(positions)}",
                     level="warning")
    return AssembledRun(engine, RiskWatchdog(engine, venue_timeout_seconds=LIVE_WATCHDOG_VENUE_TIMEOUT), venues)
