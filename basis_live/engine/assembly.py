"""Assembles one paper run: venues funded as the mode says, the run row, the engine and its
watchdog. Shared by ``start`` and by anything else that needs a real run in-process (tests,
benchmarks), so they exercise exactly what operators run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from basis_live.config import RunConfig, redact_secrets
from basis_live.engine.clock import SimClock, SteppedClock
from basis_live.engine.engine import EventDrivenStrategyEngine, Reporter
from basis_live.errors import EngineInitError
from basis_live.feeds.base import FeedError, MarketFeed
from basis_live.modes.registry import create_mode
from basis_live.process import hostname, process_start
from basis_live.risk.watchdog import RiskWatchdog
from basis_live.store import Store
from basis_live.venues.base import Venue
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
