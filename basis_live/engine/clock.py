"""Simulated time. Paper runs move a simulated clock ``speed`` times faster than the wall clock,
starting at the feed's first instant; every strategy interval is in simulated seconds."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta


class SimClock:
    def __init__(self, start: datetime, speed: float = 1.0) -> None:
        self.start = start
        self.speed = speed
        self._wall0 = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._wall0) * self.speed)

    def wall_seconds(self, sim_seconds: float) -> float:
        return sim_seconds / self.speed

    async def sleep_until(self, sim_time: datetime) -> None:
        """Sleep (wall time) until the simulated clock reaches ``sim_time``."""
        remaining = (sim_time - self.now()).total_seconds()
        # Always yield: a loop that is behind schedule must not starve the watchdog.
        await asyncio.sleep(max(remaining, 0.0) / self.speed)


class SteppedClock:
    """Backtest time: it moves only when the driver steps it, never waits for the wall clock."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self._now = start

    def now(self) -> datetime:
        return self._now

    def set(self, ts: datetime) -> None:
        self._now = ts

    async def sleep_until(self, sim_time: datetime) -> None:
        self._now = max(self._now, sim_time)
        await asyncio.sleep(0)
