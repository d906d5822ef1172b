"""The risk watchdog: an asyncio task in the engine process, independent of the strategy tick.

Every ``poll_seconds`` (50 ms) it picks up commands from other processes (stop, emergency-stop).
On every new market snapshot, and at least every ``interval_seconds`` (<= 1 s), it revalues the
portfolio (venue reads bounded by a short timeout: a hung venue keeps its last known account), checks
the limits and applies each breached limit's policy:

- warn: recorded once per episode, shown by ``risk`` / ``health``.
- reduce: state REDUCING (sticky for the run: nothing re-grows a position after a reduce breach)
  and the mode's ``reduce`` intents, at most once per ``monitoring_interval`` of simulated time.
- emergency_stop: state HALTED, open orders cancelled, unwind if configured, run ends.

It writes the heartbeat at least every ``heartbeat_seconds`` (1 s).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import datetime
from typing import TYPE_CHECKING

from basis_live.engine.engine import HALTED, REDUCING
from basis_live.store import is_locked
from basis_live.venues.base import VenueError

if TYPE_CHECKING:
    from basis_live.engine.engine import EventDrivenStrategyEngine
    from basis_live.engine.portfolio import PortfolioView
    from basis_live.store import CommandRow


class RiskWatchdog:
    def __init__(
        self,
        engine: "EventDrivenStrategyEngine",
        interval_seconds: float = 0.5,
        poll_seconds: float = 0.05,
        heartbeat_seconds: float = 1.0,
        venue_timeout_seconds: float = 0.5,
    ) -> None:
        self.engine = engine
        self.interval = min(interval_seconds, 1.0)
        self.poll = poll_seconds
        self.heartbeat_every = heartbeat_seconds
        self.venue_timeout = venue_timeout_seconds
        self._last_eval = 0.0
        self._last_heartbeat = 0.0
        self._last_reduce: datetime | None = None
        self._warned: set[str] = set()
        self.evaluations = 0
        #: Held while commands are acted on: the engine waits for it before it shuts down (``idle``).
        self._handling = asyncio.Lock()

    async def run(self) -> None:
        engine = self.engine
        while True:
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation.
                async with asyncio.timeout(self.poll):
                    await engine.market_event.wait()
            except TimeoutError:
                pass
            fresh_market = engine.market_event.is_set()
            engine.market_event.clear()
            try:
                await self.handle_commands()
                now = time.monotonic()
                if fresh_market or now - self._last_eval >= self.interval:
                    await self.check()
                    self._last_eval = now
                if now - self._last_heartbeat >= self.heartbeat_every:
                    engine.store.heartbeat(engine.run_id, engine.state, engine.risk_dict(), engine.last_tick_at)
                    self._last_heartbeat = now
            except sqlite3.OperationalError as exc:
                if not is_locked(exc):
                    raise
                # Another process holds the state file locked (past busy_timeout): the watchdog
                # goes on and retries next round; `health` sees the missed beats.
                engine.warn_once("state.locked", f"state database locked by another process ({exc}); "
                                 "the watchdog retries")

    async def handle_commands(self) -> None:
        """Act on the commands other processes queued. Emergency stops go first, so one queued behind
        a stop (an operator escalating on an engine that was slow to answer) still halts, cancels
        and unwinds. Once the run is stopping, deposits and withdrawals are refused."""
        engine = self.engine
        commands = engine.store.take_pending_commands(engine.run_id)
        if not commands:
            return
        commands.sort(key=lambda command: command.kind != "emergency_stop")  # stable otherwise
        async with self._handling:
            for command in commands:
                await self._handle(command)

    async def idle(self) -> None:
        """Wait until no command is being acted on and no emergency stop is under way: cut short,
        they would leave orders open, an unwind half done or money half moved."""
        async with self._handling:
            pass
        await self.engine.halted_fully()

    async def _handle(self, command: "CommandRow") -> None:
        engine = self.engine
        if command.kind == "stop":
            engine.event("command.stop", f"stop requested by {command.args.get('by', 'operator')}")
            engine.request_stop(command.args.get("reason") or "stopped by operator", command_id=command.id)
        elif command.kind == "emergency_stop":
            reason = command.args.get("reason") or "emergency stop by operator"
            unwind = bool(command.args.get("unwind")) or engine.strategy.emergency.unwind
            engine.event("command.emergency_stop", f"emergency stop requested: {reason}"
                         f"{' (with unwind)' if unwind else ''}", level="warning")
            await engine.emergency_stop(reason, unwind, command_id=command.id)
        elif command.kind in ("deposit", "withdraw") and (engine.stopping or engine.backtest):
            why = ("the run is stopping" if engine.stopping else
                   "a backtest replays history; deposits and withdrawals apply to paper runs")
            engine.store.ack_command(command.id, "rejected", f"{command.kind} refused: {why}; nothing was moved")
        elif command.kind in ("deposit", "withdraw"):
            from decimal import Decimal

            try:
                message = await engine.move_capital(command.kind, Decimal(command.args["amount"]))
            except (ValueError, ArithmeticError) as exc:  # a bad amount refuses the flow, never kills the run
                engine.event(f"flow.{command.kind}_refused", f"{command.kind} refused: {exc}", level="warning")
                engine.store.ack_command(command.id, "rejected", f"{command.kind} refused: {exc}")
            else:
                engine.store.ack_command(command.id, "done", message)
        else:
            engine.store.ack_command(command.id, "rejected", f"unknown command {command.kind!r}")

    async def check(self, view: "PortfolioView | None" = None) -> None:
        """Evaluate the limits on ``view`` (a fresh valuation when None) and apply the policies."""
        engine = self.engine
        if engine.market is None or engine.state == HALTED:
            return
        if view is None:
            if engine.trade_lock.locked():
                # Holdings are changing (a step is being sent): value the last consistent read at
                # the fresh prices rather than read accounts half-way through a step.
                view = await engine.refresh_view(timeout=self.venue_timeout, max_age=float("inf"))
            else:
                async with engine.trade_lock:
                    view = await engine.refresh_view(timeout=self.venue_timeout, max_age=engine.account_max_age)
        # The snapshot this evaluation used (a newer one may have arrived during the venue reads).
        snapshot_received = view.market.received_monotonic
        report = engine.evaluate_risk(view)
        self.evaluations += 1
        current_types = {b.type for b in report.breaches}
        self._warned &= current_types  # a cleared breach can warn again next time
        for breach in report.breaches:
            message = (f"{breach.type} breached: {breach.current:.6g} vs limit {breach.limit:.6g} "
                       f"({breach.breach_pct:+.2f}%), policy {breach.policy}")
            if breach.policy == "emergency_stop":
                await engine.emergency_stop(
                    f"risk: {message}", unwind=engine.strategy.emergency.unwind, latency_from=snapshot_received
                )
                return
            if breach.type not in self._warned:
                engine.event(f"risk.breach.{breach.type}", message, level="warning", data=breach.__dict__)
                self._warned.add(breach.type)
        reducing = [b.type for b in report.breaches if b.policy == "reduce"]
        if reducing:
            if engine.state != REDUCING:
                engine.set_state(REDUCING, f"risk: {', '.join(reducing)} breached",
                                 latency_ms=(time.monotonic() - snapshot_received) * 1000)
            now = view.market.timestamp
            cooldown = engine.strategy.monitoring_interval
            due = self._last_reduce is None or (now - self._last_reduce).total_seconds() >= cooldown
            busy = engine.reduce_task is not None and not engine.reduce_task.done()
            if due and not busy:
                self._last_reduce = now
                if engine.backtest:
                    await self._reduce(reducing)  # a backtest steps in order: reduce in this very step
                else:
                    # In its own task: it may wait for a step in flight and take minutes itself (an
                    # on-chain delever); the watchdog goes on evaluating, beating and taking commands.
                    engine.reduce_task = asyncio.create_task(self._reduce(reducing), name="reduce")

    async def _reduce(self, reducing: list[str]) -> None:
        """Cut exposure for the breached limits, planned on fresh holdings under the trade lock."""
        engine = self.engine
        try:
            async with engine.trade_lock:
                if engine.state == HALTED:
                    return
                view = await engine.checkpoint()  # fresh holdings; attribute up to this moment
                intents = engine.mode.reduce(view, reducing)
                if intents:
                    engine.event("risk.reduce", f"reducing exposure for {', '.join(reducing)}: " +
                                 ", ".join(f"{i.side} {i.quantity:.8f} {i.symbol}@{i.venue}" for i in intents),
                                 level="warning")
                    await engine.execute(intents)
                    await engine.checkpoint()
        except VenueError as exc:
            engine.event("risk.reduce_failed", f"risk reduce for {', '.join(reducing)} failed: {exc}; "
                         "retried at the next evaluation", level="error")
