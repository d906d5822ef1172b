"""Builds a paper run in-process, as LiveTradingService.start_live_trading does, with a feed and
venues the test controls. Used by the engine tests (not a fake of our interfaces: the real engine,
watchdog, store and paper venues)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Awaitable, Callable

from basis_live.config import ConfigManager, build_run_config
from basis_live.engine.assembly import assemble_paper_run
from basis_live.engine.engine import EventDrivenStrategyEngine, RunOutcome
from basis_live.feeds.base import MarketFeed, MarketSnapshot
from basis_live.feeds.sample import SampleFeed
from basis_live.risk.watchdog import RiskWatchdog
from basis_live.store import Store


class ControlledFeed(MarketFeed):
    """A sample feed whose snapshots a test can rewrite from a given moment (``transform``)."""

    def __init__(self, inner: SampleFeed) -> None:
        self.inner = inner
        self.label, self.is_sample, self.start, self.end = inner.label, True, inner.start, inner.end
        self.transform: Callable[[MarketSnapshot], MarketSnapshot] | None = None

    async def snapshot_at(self, ts: datetime) -> MarketSnapshot:
        snap = await self.inner.snapshot_at(ts)
        return self.transform(snap) if self.transform else snap


@dataclass
class Harness:
    engine: EventDrivenStrategyEngine
    store: Store
    feed: MarketFeed
    venues: dict[str, Any]
    watchdog: RiskWatchdog

    async def run_until(self, condition: Callable[[EventDrivenStrategyEngine], bool] | None = None,
                        action: Callable[["Harness"], Awaitable[None]] | None = None,
                        timeout: float = 30.0) -> RunOutcome:
        """Run the engine; once ``condition`` holds, await ``action`` (if any) and keep running until
        the run ends by itself or ``timeout`` wall seconds pass (then stop it)."""
        task = asyncio.create_task(self.engine.run(self.watchdog))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        acted = False
        while not task.done() and loop.time() < deadline:
            if not acted and condition is not None and condition(self.engine):
                acted = True
                if action is not None:
                    await action(self)
            await asyncio.sleep(0.005)
        if not task.done():
            self.engine.request_stop("test timeout")
        return await asyncio.wait_for(task, 10)


async def build(tmp_path: Path, strategy: str, capital: str, *, speed: float = 36_000, days: int = 3,
                scenario: str | None = None, overrides: list[str] | None = None,
                risk: list[str] | None = None, run_id: str = "t0000001") -> Harness:
    config = build_run_config(ConfigManager().load(strategy, overrides, risk), Decimal(capital),
                              {"kind": "sample", "speed": speed, "scenario": scenario}, env={})
    feed = ControlledFeed(SampleFeed(scenario=scenario, days=days))
    store = Store.open(tmp_path / "engine.db")
    assert store is not None
    run = await assemble_paper_run(run_id, config, feed, store, {"test": True})
    await run.engine.start()
    return Harness(run.engine, store, feed, run.venues, run.watchdog)
