"""EventDrivenStrategyEngine: one mode-agnostic loop per tick.

market snapshot -> positions -> exposure -> risk -> strategy decision -> orders -> fills -> P&L ->
snapshot and heartbeat.

Three asyncio tasks run side by side so that none can starve the others: the market task keeps the
latest snapshot (and drives the simulated venues), the strategy task ticks every
``monitoring_interval`` simulated seconds, and the risk watchdog (``risk.watchdog``) evaluates
limits on every new snapshot, picks up commands from other processes and writes the heartbeat. A
hung strategy step or venue call stalls only the strategy task.

Trading states: ACTIVE (everything), REDUCING (only exposure-reducing orders), HALTED (no orders,
only cancels and an explicit unwind).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Protocol

from basis_live.config import RunConfig
from basis_live.engine.attribution import PnLAttribution
from basis_live.engine.clock import SimClock, SteppedClock
from basis_live.engine.orders import OrderManager, cancel_failures
from basis_live.engine.portfolio import PortfolioView, price_usdt, value_portfolio
from basis_live.feeds.base import FeedError, MarketFeed, MarketSnapshot, next_funding_settlement
from basis_live.modes.base import OrderIntent, StrategyMode
from basis_live.risk.limits import RiskInputs, RiskReport, evaluate
from basis_live.store import RunFigures, SnapshotRow, Store, is_locked, iso, utc_now
from basis_live.venues.base import ZERO, Venue, VenueAccount, VenueError, inverse_contract_value

ACTIVE, REDUCING, HALTED = "ACTIVE", "REDUCING", "HALTED"
#: After a venue rejects the same (venue, symbol, side) again, it waits one monitoring interval before
#: the next try, then twice that, and so on up to REJECT_BACKOFF_MAX_SECONDS (a first rejection is
#: retried at the next tick: a momentary shortfall passes). Risk reductions and unwinds never wait.
REJECT_BACKOFF_MAX_SECONDS = 86_400.0
URGENT_PURPOSES = ("risk_reduce", "unwind", "exit_full")
#: Simulated seconds between two events of a condition that lasts (see ``_repeated_event``).
REPEAT_LOG_SECONDS = 86_400
#: Snapshot rows a backtest writes per transaction (see ``record_snapshot``).
SNAPSHOT_BATCH = 500
#: Wall seconds between market refreshes (and so between risk evaluations on new prices).
MARKET_REFRESH_SECONDS = 0.02


class Simulated(Protocol):
    def on_market(self, snapshot: MarketSnapshot) -> None: ...


class Reporter(Protocol):
    """What the CLI's live view implements."""

    def update(self, summary: dict[str, Any]) -> None: ...

    def event(self, level: str, message: str) -> None: ...


@dataclass
class RunOutcome:
    status: str  # stopped | completed | emergency_stopped | failed
    reason: str
    summary: dict[str, Any]


class EventDrivenStrategyEngine:
    def __init__(
        self,
        run_id: str,
        config: RunConfig,
        feed: MarketFeed,
        venues: dict[str, Venue],
        simulated: list[Simulated],
        mode: StrategyMode,
        store: Store,
        clock: SimClock | SteppedClock,
        reporter: Reporter | None = None,
    ) -> None:
        self.run_id = run_id
        self.config = config
        self.strategy = config.strategy
        self.feed = feed
        self.venues = venues
        self.simulated = simulated
        self.mode = mode
        self.store = store
        self.clock = clock
        self.reporter = reporter
        self.state = ACTIVE
        self.market: MarketSnapshot | None = None
        self.market_event = asyncio.Event()
        self.view: PortfolioView | None = None
        self.risk: RiskReport | None = None
        self._risk_view: PortfolioView | None = None  # the view self.risk was evaluated on
        self._snapshot_rows: list[SnapshotRow] = []
        # A backtest's venues are in-process simulations on a stepped clock: venue calls need no
        # wall-clock bound and run one after another (no tasks, no timers: most of a tick's cost).
        self.backtest = isinstance(clock, SteppedClock)
        self.live = config.execution_mode == "live"
        #: How old an account read the watchdog may revalue (live venues only; see ExecutionConfig):
        #: never older than one market refresh, so a venue-reported figure (Aave's health factor)
        #: follows each new price.
        self.account_max_age = min(config.strategy.execution.account_refresh_seconds,
                                   getattr(feed, "poll_seconds", 0.0)) if self.live else 0.0
        self._accounts_read_at = 0.0
        self.orders = OrderManager(run_id, venues, store, self.sim_now,
                                   None if self.backtest else config.strategy.execution.venue_timeout_seconds,
                                   self.event)
        self.attribution = PnLAttribution(config.strategy.share_class)
        self.orders.on_fill = lambda fill: self.attribution.record_fill(fill, self.market)  # type: ignore[arg-type]
        self.orders.on_ledger = self.attribution.record_ledger
        self.initial_capital = config.initial_capital
        self.net_flows = Decimal(0)  # deposits - withdrawals, share-class units: not P&L
        # Time-weighted return: the growth of every period between flows, chained, and the equity
        # the current period started from (after the last flow).
        self._linked_growth = Decimal(1)
        self._period_base = config.initial_capital
        self.peak_equity = config.initial_capital
        self.max_drawdown = 0.0
        self.day_start_equity = config.initial_capital
        self._day = None
        # Extremes over the run (analytics, floats): what the backtest summary reports.
        self.min_margin_ratio: float | None = None
        self.min_health_factor: float | None = None
        self.max_abs_delta = Decimal(0)
        self.started_wall = time.monotonic()
        self.sim_start: datetime | None = None
        self._stop_requested = asyncio.Event()
        self._final_status = "stopped"
        self._final_reason = ""
        self._pending_acks: list[int] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._halt_lock = asyncio.Lock()
        self._warned_once: set[str] = set()
        self._market_down_since: float | None = None  # monotonic time the market feed began failing
        self._cancel_failed: set[str] = set()  # venues whose cancel-all failed at a stop
        self.unwind_left: str | None = None  # what an unwind could not close, said in the run's reason
        #: (venue, symbol, side) -> (not before this sim time, consecutive rejections): see execute.
        self._rejected: dict[tuple[str, str, str], tuple[datetime, int]] = {}
        #: Held while holdings are read and changed together (a tick, a reduce, a flow, an unwind): one
        #: actor trades at a time, and an account read never straddles a venue step half done (on
        #: chain: borrowed WETH not yet supplied). Not reentrant: taken only at those outer levels.
        self.trade_lock = asyncio.Lock()
        #: A risk reduce waiting for the trade lock (set by the watchdog); cancelled by a halt.
        self.reduce_task: asyncio.Task[Any] | None = None
        self.ticks = 0
        self.last_tick_at: datetime | None = None  # wall clock, UTC
        self._repeat_logged: dict[tuple[str, ...], datetime] = {}

    # ------------------------------------------------------------------ helpers
    def sim_now(self) -> datetime:
        return self.market.timestamp if self.market is not None else self.clock.now()

    def event(self, kind: str, message: str, level: str = "info", data: dict[str, Any] | None = None) -> None:
        self.store.append_event(self.run_id, kind, message, level=level, sim_time=self.sim_now(), data=data)
        if self.reporter is not None and level in ("warning", "error", "critical"):
            self.reporter.event(level, message)

    async def fetch_accounts(self, timeout: float | None = None, max_age: float = 0.0) -> dict[str, VenueAccount]:
        """Every venue's account, in parallel; a venue that fails or times out keeps its last
        known account (so valuation never stops) and counts a failure. With ``max_age`` > 0 an
        account read less than ``max_age`` wall seconds ago is reused (the watchdog on live venues:
        a fresh price needs no fresh balance read)."""
        previous = self.view.accounts if self.view is not None else {}
        if max_age > 0 and previous and time.monotonic() - self._accounts_read_at < max_age:
            return dict(previous)
        self._accounts_read_at = time.monotonic()
        if self.backtest:
            # In-process venues on a stepped clock: no timers, no tasks (most of a tick's cost).
            accounts = {}
            failures = self.orders.failures
            for name, venue in self.venues.items():
                try:
                    accounts[name] = await venue.fetch_account()
                    failures[name] = 0
                except VenueError:
                    failures[name] += 1
                    accounts[name] = previous.get(name, VenueAccount(name))
            return accounts
        timeout = timeout or self.strategy.execution.venue_timeout_seconds

        async def one(name: str, venue: Venue) -> tuple[str, VenueAccount]:
            try:
                async with asyncio.timeout(timeout):
                    account = await venue.fetch_account()
                self.orders.failures[name] = 0
                return name, account
            except (asyncio.TimeoutError, VenueError):
                self.orders.failures[name] += 1
                return name, previous.get(name, VenueAccount(name))

        return dict(await asyncio.gather(*(one(n, v) for n, v in self.venues.items())))

    async def refresh_view(self, timeout: float | None = None, max_age: float = 0.0) -> PortfolioView:
        assert self.market is not None
        accounts = await self.fetch_accounts(timeout, max_age)
        liquidation = self.strategy.leverage.liquidation_threshold if self.strategy.leverage else None
        view = value_portfolio(accounts, self.market, self.strategy.share_class, liquidation)
        self.view = view
        self._track_equity(view)
        return view

    async def checkpoint(self) -> PortfolioView:
        """Collect new fills and ledger entries, revalue, and attribute P&L up to now. Called at
        every tick and around every trade made outside one, so each interval's holdings are known."""
        await self.orders.collect_fills()
        view = await self.refresh_view()
        self.attribution.step(view.accounts, view.market)
        return view

    def _track_equity(self, view: PortfolioView) -> None:
        day = view.market.timestamp.date()
        if self._day != day:
            self._day = day
            self.day_start_equity = view.equity
        if view.equity > self.peak_equity:
            self.peak_equity = view.equity
        self.max_drawdown = max(self.max_drawdown, self.current_drawdown(view))
        if view.worst_margin_ratio is not None:
            self.min_margin_ratio = min(view.worst_margin_ratio, self.min_margin_ratio or view.worst_margin_ratio)
        if view.health_factor is not None:
            self.min_health_factor = min(view.health_factor, self.min_health_factor or view.health_factor)
        self.max_abs_delta = max(self.max_abs_delta, abs(view.net_delta))

    def current_drawdown(self, view: PortfolioView) -> float:
        if self.peak_equity <= 0:
            return 0.0
        return float((self.peak_equity - view.equity) / self.peak_equity)

    def risk_inputs(self, view: PortfolioView) -> RiskInputs:
        worst_venue = min(view.margin_ratios, key=view.margin_ratios.__getitem__) if view.margin_ratios else None
        return RiskInputs(
            drawdown=self.current_drawdown(view),
            largest_position=float(view.largest_position),
            daily_loss=float(self.day_start_equity - view.equity),
            health_factor=view.health_factor,
            worst_margin_ratio=view.worst_margin_ratio,
            worst_margin_venue=worst_venue,
        )

    def evaluate_risk(self, view: PortfolioView) -> RiskReport:
        # A view's risk figures depend only on the view and the peaks tracked when it was made, so
        # the watchdog re-checking the view a tick just valued gets the tick's report.
        if view is self._risk_view and self.risk is not None:
            return self.risk
        report = evaluate(self.strategy.risk, self.risk_inputs(view), iso(view.market.timestamp) or "")
        self.risk, self._risk_view = report, view
        return report

    def risk_dict(self) -> dict[str, Any]:
        if self.risk is None:
            return {"status": "ok", "breaches": [], "warnings": [], "action_required": False}
        data = self.risk.as_dict()
        data["trading_state"] = self.state
        data["degraded_venues"] = self.orders.degraded_venues()
        return data

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict[str, Any]:
        view = self.view
        equity = view.equity if view is not None else self.initial_capital
        invested = self.initial_capital + self.net_flows
        pnl = equity - invested
        sim_now = self.sim_now()
        elapsed_days = (sim_now - self.sim_start).total_seconds() / 86400 if self.sim_start else 0.0
        # Time-weighted, so a deposit or withdrawal does not count as performance: the periods between
        # flows are chained (without flows this is pnl / capital).
        base = self._period_base
        ret = float((self._linked_growth * equity - base) / base) if base > 0 else 0.0
        # Annualising a few hours of P&L produces absurd APYs (the old system's 1166%): only from
        # one simulated day on.
        apy = ((1 + ret) ** (365 / elapsed_days) - 1) if elapsed_days >= 1 and ret > -1 else None
        attribution = self.attribution.as_dict()
        return {
            "run_id": self.run_id,
            "strategy_name": self.strategy.name,
            "mode": self.strategy.mode,
            "share_class": self.strategy.share_class,
            "trading_state": self.state,
            "sim_start": iso(self.sim_start),
            "sim_time": iso(sim_now),
            "sim_elapsed_days": round(elapsed_days, 6),
            "wall_elapsed_seconds": round(time.monotonic() - self.started_wall, 3),
            "initial_capital": str(self.initial_capital),
            "net_flows": str(self.net_flows),
            "current_value": str(_q(equity)),
            "total_pnl": str(_q(pnl)),
            "return_pct": round(ret * 100, 6),
            "apy_pct": None if apy is None else round(apy * 100, 4),
            "peak_value": str(_q(self.peak_equity)),
            "current_drawdown": round(self.current_drawdown(view), 8) if view else 0.0,
            "max_drawdown": round(self.max_drawdown, 8),
            "total_trades": self.orders.filled_orders,
            "fees_paid": str(-Decimal(attribution["fees"])),
            "funding_received": attribution["funding"],
            "interest_earned": attribution["lending_interest"],
            "gas_paid": str(-Decimal(attribution["gas"])),
            "pnl_by_source": attribution,
            "attribution_gap": attribution["gap"],
            "net_delta": str(_q(view.net_delta)) if view else "0",
            "gross_exposure": str(_q(view.gross_exposure)) if view else "0",
            "worst_margin_ratio": view.worst_margin_ratio if view else None,
            "health_factor": view.health_factor if view else None,
            "min_margin_ratio": self.min_margin_ratio,
            "min_health_factor": self.min_health_factor,
            "max_abs_delta": str(_q(self.max_abs_delta)),
            "risk_status": self.risk.status if self.risk else "ok",
            "feed": self.feed.label,
            "ticks": self.ticks,
        }

    def record_snapshot(self) -> None:
        """Write this moment's snapshot row and the run's figures. A backtest buffers its rows and
        writes them SNAPSHOT_BATCH at a time (one transaction each, plus at the end): history runs
        thousands of ticks a second, and `status` from another process still sees a backtest move."""
        view = self.view
        if view is None:
            return
        equity = _q(view.equity)
        pnl = _q(view.equity - self.initial_capital - self.net_flows)
        self._snapshot_rows.append(SnapshotRow(
            sim_time=view.market.timestamp,
            equity=str(equity),
            pnl=str(pnl),
            drawdown=round(self.current_drawdown(view), 8),
            positions=view.position_values,
            exposures={"by_asset": {k: str(v) for k, v in view.exposures.items()},
                       "net_delta": str(_q(view.net_delta)), "gross_exposure": str(_q(view.gross_exposure)),
                       "margin_ratios": view.margin_ratios, "health_factor": view.health_factor},
            risk=self.risk_dict(),
            pnl_by_source=self.attribution.as_dict(),
        ))
        if not self.backtest or len(self._snapshot_rows) >= SNAPSHOT_BATCH:
            self.flush_snapshots()

    def flush_snapshots(self) -> None:
        rows, self._snapshot_rows = self._snapshot_rows, []
        if not rows:
            return
        summary = self.summary()
        last = rows[-1]
        try:
            self.store.record_snapshots(self.run_id, rows, RunFigures(
                equity=last.equity, pnl=last.pnl, peak_value=summary["peak_value"], drawdown=last.drawdown,
                max_drawdown=summary["max_drawdown"], total_trades=summary["total_trades"], sim_time=last.sim_time,
                risk=last.risk, metrics=summary, trading_state=self.state,
            ))
        except sqlite3.OperationalError as exc:
            if not is_locked(exc):
                raise
            # Another process holds the state file locked: keep the rows for the next flush rather
            # than stop trading over a snapshot.
            self._snapshot_rows = rows + self._snapshot_rows
            self.warn_once("state.locked", f"state database locked by another process ({exc}); snapshots are "
                           "kept and written when it frees")

    def warn_once(self, key: str, message: str) -> None:
        """A warning for the operator's terminal, once per ``key`` per run (the state file may be
        the very thing that cannot be written)."""
        if key in self._warned_once:
            return
        self._warned_once.add(key)
        if self.reporter is not None:
            self.reporter.event("warning", message)

    # ------------------------------------------------------------------ state changes
    def set_state(self, state: str, reason: str, latency_ms: float | None = None) -> None:
        if self.state == state:
            return
        previous, self.state = self.state, state
        self.mode.reducing = state == REDUCING
        self.store.set_trading_state(self.run_id, state)
        data: dict[str, Any] = {"from": previous, "to": state}
        if latency_ms is not None:
            data["latency_ms"] = round(latency_ms, 3)
        self.event(f"state.{state.lower()}", f"trading state {previous} -> {state}: {reason}",
                   level="warning" if state != ACTIVE else "info", data=data)

    async def execute(self, intents: list[OrderIntent], *, allow_when_halted: bool = False) -> int:
        """Send intents that the trading state allows; reducing-only while REDUCING. Returns how
        many orders were sent."""
        assert self.market is not None
        execution = self.strategy.execution
        sent = 0
        for intent in intents:
            if self.state == HALTED and not allow_when_halted:
                self.event("order.blocked", f"{intent.purpose} {intent.side} {intent.symbol} on {intent.venue} "
                           "blocked: trading HALTED")
                continue
            key = (intent.venue, intent.symbol, intent.side)
            if self.state == REDUCING and not intent.reduces_exposure:
                self._repeated_event(("reducing", *key), "order.blocked", f"{intent.purpose} {intent.side} "
                                     f"{intent.symbol} on {intent.venue} blocked: trading REDUCING (only "
                                     "exposure-reducing orders)")
                continue
            if intent.venue in self.orders.degraded_venues():
                self._repeated_event(("degraded", *key), "order.blocked", f"{intent.venue} is degraded; "
                                     f"{intent.purpose} order not sent", level="warning")
                continue
            backoff = self._rejected.get(key)
            if backoff is not None and intent.purpose not in URGENT_PURPOSES and self.sim_now() < backoff[0]:
                self._repeated_event(("rejected", *key), "order.backoff", f"{intent.purpose} {intent.side} "
                                     f"{intent.symbol} on {intent.venue} not sent: the venue rejected the last "
                                     f"{backoff[1]} in a row; next try at {iso(backoff[0])}")
                continue
            mark = self._mark(intent)
            order_type, price = "market", None
            # Unwinds and risk reductions take liquidity: getting out matters more than the fee.
            if execution.order_type == "limit" and intent.purpose not in ("risk_reduce", "unwind", "exit_full"):
                offset = Decimal(repr(execution.limit_offset_bps)) / Decimal(10_000)
                order_type = "limit"
                price = mark * (1 - offset) if intent.side == "buy" else mark * (1 + offset)
            result = await self.orders.submit(
                intent.venue, intent.symbol, intent.side, intent.quantity, order_type=order_type, price=price,
                reduce_only=intent.reduce_only, purpose=intent.purpose, mark=mark,
            )
            if result.status == "rejected":
                # A venue that keeps refusing an order (funds, gas, limits) would be sent it every
                # tick (a month of a too-small account: 1,600 rejections): back off exponentially.
                count = (self._rejected[key][1] + 1) if key in self._rejected else 1
                wait = 0.0 if count == 1 else min(self.strategy.monitoring_interval * 2 ** (count - 2),
                                                  REJECT_BACKOFF_MAX_SECONDS)
                self._rejected[key] = (self.sim_now() + _seconds(wait), count)
            elif result.status != "skipped":
                self._rejected.pop(key, None)
            if result.status != "skipped":
                sent += 1
                self._repeat_logged.pop(("skipped", *key), None)
            else:
                self._repeated_event(("skipped", *key), "order.skipped", f"{intent.purpose} {intent.side} "
                                     f"{intent.quantity:.8f} {intent.symbol} on {intent.venue} not sent: "
                                     f"{result.reason}")
        return sent

    def _repeated_event(self, key: tuple[str, ...], kind: str, message: str, level: str = "info") -> None:
        """An event that would repeat every tick while a condition lasts (a leg stuck below the venue
        minimum, intents blocked while REDUCING): logged when it starts, then once per simulated
        day (REPEAT_LOG_SECONDS) while it lasts."""
        last = self._repeat_logged.get(key)
        now = self.sim_now()
        if last is None or (now - last).total_seconds() >= REPEAT_LOG_SECONDS:
            self._repeat_logged[key] = now
            self.event(kind, message, level=level)

    def _dust(self, intent: OrderIntent) -> bool:
        """Whether the venue would not take ``intent`` at all (below its minimum after rounding)."""
        try:
            return self.orders.below_minimum(intent.venue, intent.symbol, intent.quantity, self._mark(intent)) is not None
        except KeyError:  # no price for it in this market: not known to be dust
            return False

    def _mark(self, intent: OrderIntent) -> Decimal:
        assert self.market is not None
        base = intent.symbol.split("/")[0].split("-")[0]
        if ":" in intent.symbol:  # a perp, linear ("BTC/USDT:USDT") or inverse ("BTC/USD:BTC")
            return Decimal(repr(self.market.perp_mark[intent.venue][base]))
        return price_usdt(base, self.market)

    # ------------------------------------------------------------------ tasks
    async def _market_loop(self) -> None:
        end = self.feed.end
        while not self._stop_requested.is_set():
            now = self.clock.now()
            if end is not None and now >= end:
                await self.publish(await self.feed.snapshot_at(end))
                self.request_stop("feed ended", status="completed")
                return
            try:
                snapshot = await self.feed.snapshot_at(now)
            except FeedError as exc:
                self._market_unavailable(exc)
            else:
                self._market_available()
                await self.publish(snapshot)
            await asyncio.sleep(getattr(self.feed, "poll_seconds", MARKET_REFRESH_SECONDS))

    def _market_unavailable(self, exc: FeedError) -> None:
        """A market read failed (a node or an exchange briefly unreachable): the engine, its watchdog
        and the position stay watched on the last prices; the strategy decides nothing until data are
        back (``health`` reports the stalled loop if it lasts)."""
        if self._market_down_since is None:
            self._market_down_since = time.monotonic()
            self.event("feed.unavailable", f"market data unavailable: {exc}; retrying, no new decisions until "
                       "it is back", level="warning")

    def _market_available(self) -> None:
        if self._market_down_since is not None:
            seconds = time.monotonic() - self._market_down_since
            self._market_down_since = None
            self.event("feed.available", f"market data back after {seconds:.1f} s")

    async def publish(self, snapshot: MarketSnapshot) -> None:
        previous = self.market
        if self.simulated and previous is not None:
            # A paper exchange pays funding when the market it sees crosses a settlement, one per
            # snapshot. A step that crosses several (a daily or one-candle backtest step, a very
            # fast paper run) would pay only the first: show it the market at each one in between.
            moment = next_funding_settlement(previous.timestamp)
            while moment < snapshot.timestamp:
                try:
                    between = await self.feed.snapshot_at(moment)
                except FeedError:
                    break  # a network feed that cannot answer now: settle on the step's own snapshot
                self._publish(between)
                moment = next_funding_settlement(moment)
        self._publish(snapshot)

    def _publish(self, snapshot: MarketSnapshot) -> None:
        # Feeds hand out a new snapshot per call (MarketFeed.snapshot_at), so stamping it in place
        # is safe and spares a copy of every field each tick.
        object.__setattr__(snapshot, "received_monotonic", time.monotonic())
        for venue in self.simulated:
            venue.on_market(snapshot)
        self.market = snapshot
        self.market_event.set()

    async def _strategy_loop(self) -> None:
        interval = self.strategy.monitoring_interval
        next_tick = self.sim_now()
        while not self._stop_requested.is_set():
            await self.clock.sleep_until(next_tick)
            if self.market is None or self.market.timestamp < next_tick:
                # Decide on the market at the tick's own time, not on a snapshot from before it.
                try:
                    snapshot = await self.feed.snapshot_at(min(self.clock.now(), self.feed.end or self.clock.now()))
                except FeedError as exc:
                    self._market_unavailable(exc)
                    await asyncio.sleep(getattr(self.feed, "poll_seconds", MARKET_REFRESH_SECONDS))
                    continue  # never decide on stale prices; the market loop keeps trying too
                self._market_available()
                await self.publish(snapshot)
            await self.tick()
            next_tick = max(next_tick + _seconds(interval), self.clock.now())

    async def tick(self) -> None:
        """One strategy step."""
        async with self.trade_lock:
            await self._tick()

    async def _tick(self) -> None:
        self.ticks += 1
        await self.orders.cancel_stale(self.strategy.execution.order_timeout_seconds)
        view = await self.checkpoint()
        if self.state != HALTED:
            if self.orders.has_unsettled():
                # Never decide on top of orders that may still fill: first settle them.
                await self.orders.reconcile_unsettled()
            elif not self.orders.degraded_venues() or self.state == REDUCING:
                intents = self.mode.decide(view)
                if intents and await self.execute(intents):
                    # Only an order sent can change holdings: intents all skipped (below venue
                    # minimums) or blocked (by the trading state) left the view as it is.
                    view = await self.checkpoint()
        self.evaluate_risk(view)
        self.record_snapshot()
        self.last_tick_at = utc_now()

    # ------------------------------------------------------------------ deposits and withdrawals
    async def move_capital(self, kind: str, amount: Decimal) -> str:
        """A deposit (scaled in by the next ticks, sized from equity) or a withdrawal (every position
        shrunk by amount / equity first, then the cash released). Flows are not P&L: peak and
        day-start equity move with them and the attribution is re-based. Paper venues only: on live
        venues the operator moves the money."""
        async with self.trade_lock:
            return await self._move_capital(kind, amount)

    async def _move_capital(self, kind: str, amount: Decimal) -> str:
        from basis_live.venues.factory import move_paper_funds

        assert self.market is not None
        if self.state == HALTED:
            raise ValueError("trading is HALTED")
        if self.live:
            raise ValueError("deposits and withdrawals on live venues are not supported yet: the money moves "
                             "outside basis-live and the accounting of such flows is not built; stop the run, move "
                             "the funds, and start again with the new --capital")
        view = await self.checkpoint()
        if kind == "withdraw":
            if amount >= view.equity:
                raise ValueError(f"withdrawal {amount} is not below equity {_q(view.equity)}; use emergency-stop --unwind")
            intents = self.mode.free_for_withdrawal(view, amount / view.equity)
            if intents is None:
                raise ValueError(f"withdrawals are not supported yet for {self.strategy.mode}")
            await self.execute(intents, allow_when_halted=False)
            view = await self.checkpoint()
            settle = self.mode.settle_withdrawal(view)
            if settle:
                await self.execute(settle, allow_when_halted=False)
                view = await self.checkpoint()
        plan = self.mode.initial_funding(amount, self.market)
        if kind == "withdraw":
            # Take what the plan asks for, never more than is free: fees and slippage of the freeing
            # trades can leave a little less, and legs that could not shrink exactly (venue steps and
            # minimums) still need their margin.
            plan = {v: {a: min(q, self._withdrawable(view, v, a)) for a, q in assets.items()}
                    for v, assets in plan.items()}
        moved = sum((q for assets in plan.values() for q in assets.values()), Decimal(0))
        # The period before the flow ends here (a withdrawal's freeing trades belong to it).
        if self._period_base > 0:
            self._linked_growth *= view.equity / self._period_base
        move_paper_funds(self.venues, plan, sign=1 if kind == "deposit" else -1)
        signed = moved if kind == "deposit" else -moved
        self.net_flows += signed
        # Peak and day-start equity scale with the book (same market: equity moves by exactly the
        # flow), so drawdown and daily loss keep their meaning: what the earlier costs were of the
        # capital that bore them, not of what is left (a 99 % withdrawal turned 0.25 % of entry
        # costs into a 30 % "drawdown" and an emergency stop).
        if view.equity > 0:
            scale = (view.equity + signed) / view.equity
            self.peak_equity *= scale
            self.day_start_equity *= scale
        else:
            self.peak_equity += signed
            self.day_start_equity += signed
        self.store.set_net_flows(self.run_id, str(self.net_flows))
        view = await self.refresh_view()
        self._period_base = view.equity
        self.attribution.rebase(view.accounts, view.market)
        message = f"{kind} of {_q(moved)} {self.strategy.share_class} done; equity {_q(view.equity)}"
        if kind == "withdraw" and moved < amount:
            message += (f" ({_q(amount)} asked: the rest pays the freeing trades' costs or is margin for legs "
                        "that could not shrink exactly)")
        self.event(f"flow.{kind}", message, data={"amount": str(moved)})
        self.record_snapshot()
        return message

    def _withdrawable(self, view: PortfolioView, venue: str, asset: str) -> Decimal:
        """What a withdrawal may take of ``asset`` on ``venue``: its balance less the margin of the
        perps still open there that settle in it, at the run's perp leverage, with their unrealised
        loss (a profit is not cash). Never below zero."""
        balance = view.balance(venue, asset)
        account = view.accounts.get(venue)
        if account is None:
            return max(balance, ZERO)
        leverage = Decimal(repr(self.strategy.execution.perp_leverage))
        needed = ZERO
        for position in account.positions:
            if position.kind != "perp" or not position.quantity:
                continue
            contract = inverse_contract_value(position.symbol)
            settle = position.base if contract is not None else position.quote
            if settle != asset:
                continue
            mark = position.mark_price or price_usdt(position.base, view.market)
            notional = abs(position.quantity) * (contract / mark if contract is not None else mark)
            needed += notional / leverage - min(position.unrealized_pnl, ZERO)
        return max(balance - needed, ZERO)

    # ------------------------------------------------------------------ stop paths
    @property
    def stopping(self) -> bool:
        """A stop was requested (by an operator, a signal, the end of the data or an emergency)."""
        return self._stop_requested.is_set()

    async def halted_fully(self) -> None:
        """Return once no emergency stop (halt, cancel, unwind) is under way."""
        async with self._halt_lock:
            pass

    def request_stop(self, reason: str, status: str = "stopped", command_id: int | None = None) -> None:
        if command_id is not None:
            self._pending_acks.append(command_id)
        if not self._stop_requested.is_set():
            self._final_status = status
            self._final_reason = reason
            self._stop_requested.set()

    async def emergency_stop(self, reason: str, unwind: bool, command_id: int | None = None,
                             latency_from: float | None = None) -> None:
        """HALT now (no new orders), cancel every open order, optionally unwind, then end the run."""
        async with self._halt_lock:
            if self._final_status == "emergency_stopped" and self._stop_requested.is_set():
                if command_id is not None:
                    self._pending_acks.append(command_id)
                return
            latency = (time.monotonic() - latency_from) * 1000 if latency_from else None
            self.set_state(HALTED, reason, latency_ms=latency)
            # The strategy step may be hung in a venue call: stop it before touching orders (its
            # cancellation releases the trade lock).
            for task in self._tasks:
                if task.get_name() == "strategy":
                    task.cancel()
            if self.reduce_task is not None:
                self.reduce_task.cancel()
            cancelled = await self.orders.cancel_all()
            failed = cancel_failures(cancelled)
            if failed:
                self._cancel_failed.update(failed)
                self.event("emergency.cancel_failed", f"emergency stop could not cancel the open orders on "
                           f"{', '.join(failed)}: they may still be live there; act on the venue by hand",
                           level="critical")
            if command_id is not None:
                # The operator learns at once that trading is halted and orders are cancelled (or on
                # which venue they could not be); an unwind (on chain: minutes of transactions) goes
                # on, visible in status and events.
                self.store.ack_command(
                    command_id, "failed" if failed else "done",
                    f"HALTED, open orders cancelled {cancelled}" +
                    (f"; CANCEL FAILED on {', '.join(failed)}: orders may still be open there, act on the venue "
                     "by hand" if failed else "") + ("; unwinding now (see basis-live status)" if unwind else ""))
            async with self.trade_lock:
                await self.checkpoint()
                self.event("emergency.cancelled", f"emergency stop: cancelled open orders {cancelled}",
                           level="warning", data={"cancelled": cancelled, "reason": reason})
                if unwind:
                    await self.unwind()
            if self.unwind_left:
                reason = f"{reason}; {self.unwind_left}"
            self.request_stop(reason, status="emergency_stopped")
            # request_stop keeps the first reason; an emergency overrides a pending graceful stop.
            self._final_status, self._final_reason = "emergency_stopped", reason

    async def unwind(self, max_rounds: int = 10) -> None:
        """Close every position back to the share class in the mode's safe order. Only the first
        batch of the mode's plan runs each round, then the plan is made again from fresh balances, so
        each step uses what the previous one really left (no dust from predicted amounts)."""
        for number in range(1, max_rounds + 1):
            plan = self.mode.unwind(await self.checkpoint())
            if not plan:
                break
            batch = plan[0]
            self.event("emergency.unwind", f"unwind step {number}: " +
                       ", ".join(f"{i.side} {i.quantity:.8f} {i.symbol}@{i.venue}" for i in batch), level="warning")
            if not await self.execute(batch, allow_when_halted=True):
                break  # only dust below the venues' minimums is left
        else:
            self.event("emergency.unwind_incomplete", f"unwind still has steps after {max_rounds} rounds",
                       level="error")
        view = await self.checkpoint()
        # What is still open, read from the venues (not inferred from exposure: debt against
        # collateral of the same asset nets to no exposure but is very much a position).
        left = [f"{p.kind} {_q(p.quantity)} {p.symbol}@{venue}" for venue, account in view.accounts.items()
                for p in account.positions if p.quantity and p.kind in ("supply", "debt", "perp", "stake")]
        # And what the mode would still do (e.g. an LST left in the wallet because its redemption
        # was refused): an LST in an ETH share class is no exposure either, but it is not unwound.
        left += [f"to {i.side} {_q(i.quantity)} {i.symbol}@{i.venue}" for batch in self.mode.unwind(view)[:1]
                 for i in batch if not self._dust(i)]
        if left:
            hf = f", health factor {view.health_factor:.4f}" if view.health_factor is not None else ""
            self.unwind_left = f"unwind incomplete: still open {', '.join(left)}{hf}; act on the venues by hand"
            self.event("emergency.unwind_incomplete", self.unwind_left, level="critical")
            return
        self.event("emergency.unwound", f"unwind done: equity {_q(view.equity)} {self.strategy.share_class}, "
                   f"gross exposure {_q(view.gross_exposure)}", level="warning")

    # ------------------------------------------------------------------ run
    async def start(self) -> None:
        """Take the first snapshot, load instruments, value the funded accounts, baseline the
        attribution and write the first snapshot."""
        await self.publish(await self.feed.snapshot_at(self.clock.now()))
        snapshot = self.market
        assert snapshot is not None
        self.sim_start = snapshot.timestamp
        await self.orders.load_instruments()
        if self.live:
            await self.orders.skip_history()
        self.event("run.started", f"run {self.run_id} started: {self.strategy.name} ({self.strategy.mode}), capital "
                   f"{self.initial_capital} {self.strategy.share_class}, feed {self.feed.label}")
        for note in getattr(self.feed, "notes", ()):  # data caveats, e.g. approximated reward rows
            self.event("feed.note", note, level="warning")
        view = await self.refresh_view()
        self.attribution.start(view.accounts, view.market)
        self.evaluate_risk(view)
        self.record_snapshot()

    async def run(self, watchdog: Any) -> RunOutcome:
        """Run until stopped, completed, halted or failed; always leaves the run row final."""
        loop_tasks = {
            "market": self._market_loop(),
            "strategy": self._strategy_loop(),
            "watchdog": watchdog.run(),
        }
        self._tasks = [asyncio.create_task(coro, name=name) for name, coro in loop_tasks.items()]
        if self.reporter is not None:
            self._tasks.append(asyncio.create_task(self._report_loop(), name="reporter"))
        stop_wait = asyncio.create_task(self._stop_requested.wait(), name="stop-wait")
        failure: BaseException | None = None
        try:
            while not self._stop_requested.is_set():
                done, _ = await asyncio.wait([stop_wait, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is stop_wait or task.cancelled():
                        continue
                    exc = task.exception()
                    if exc is not None:
                        failure = exc
                        self.request_stop(f"engine task {task.get_name()} failed: {exc!r}", status="failed")
                if stop_wait in done:
                    break
        finally:
            # The strategy step goes first (it may hold the trade lock, hung in a venue call). A
            # command or an emergency stop under way in the watchdog then ends: cancelled half-way it
            # would leave orders open, an unwind half done or money half moved.
            for task in self._tasks:
                if task.get_name() == "strategy":
                    task.cancel()
            if self.reduce_task is not None:
                self.reduce_task.cancel()
            with contextlib.suppress(Exception):
                await watchdog.idle()
            pending = [*self._tasks, stop_wait, *([self.reduce_task] if self.reduce_task else [])]
            for task in pending:
                task.cancel()
            # Loops also check the stop flag; a task stuck in a hung venue call is abandoned here.
            await asyncio.wait(pending, timeout=2.0)
        return await self._finish(failure, watchdog)

    async def run_backtest(self, watchdog: Any, end: datetime, step_seconds: float,
                           progress: Callable[[datetime], None] | None = None) -> RunOutcome:
        """Step the same tick and risk checks through history as fast as they compute: one strategy
        tick and one watchdog evaluation per ``step_seconds`` of market time, from the clock's
        start to ``end``. Policies apply exactly as in a paper run (a breach can halt it)."""
        assert isinstance(self.clock, SteppedClock)
        step = _seconds(step_seconds)
        now = self.clock.now()
        failure: BaseException | None = None
        commands_due = 0.0
        try:
            while now <= end and not self._stop_requested.is_set():
                self.clock.set(now)
                await self.publish(await self.feed.snapshot_at(now))
                await self.tick()
                await watchdog.check(self.view)  # the tick just valued this very snapshot
                if time.monotonic() >= commands_due:
                    # `stop` and `emergency-stop` reach a backtest too (every poll interval of wall
                    # time, as in a paper run: a query per tick would cost more than the tick).
                    await watchdog.handle_commands()
                    commands_due = time.monotonic() + watchdog.poll
                if progress is not None:
                    progress(now)
                now += step
            if not self._stop_requested.is_set():
                self.request_stop(f"backtest reached {iso(end)}", status="completed")
        except (VenueError, FeedError) as exc:
            failure = exc
            self.request_stop(f"backtest failed: {exc}", status="failed")
        except BaseException:
            # A bug or Ctrl-C: keep the ticks already run in the store before the error goes on.
            with contextlib.suppress(Exception):
                self.flush_snapshots()
            raise
        return await self._finish(failure, watchdog)

    async def _finish(self, failure: BaseException | None, watchdog: Any) -> RunOutcome:
        # Commands queued after the watchdog's last look: an emergency stop is still carried out
        # (halt, cancel, unwind), a stop is acknowledged with the run's end, a flow is refused.
        with contextlib.suppress(Exception):
            await watchdog.handle_commands()
        status, reason = self._final_status, self._final_reason
        if status in ("stopped", "completed", "failed"):
            cancelled = await self.orders.cancel_all()
            if any(cancelled.values()):
                self.event("run.cancelled_orders", f"cancelled open orders on stop: {cancelled}")
            self._cancel_failed.update(cancel_failures(cancelled))
        if self._cancel_failed:
            # Said where the operator looks: the run's reason, `status`, and the stop's answer.
            reason = (f"{reason}; open orders may remain on {', '.join(sorted(self._cancel_failed))} (cancel "
                      "failed): act on the venue by hand")
            self.event("run.cancel_failed", reason, level="critical")
        with contextlib.suppress(Exception):
            view = await self.checkpoint()
            self.evaluate_risk(view)
        self.record_snapshot()
        self.flush_snapshots()
        self.store.set_run_status(self.run_id, status, reason)
        self.event(f"run.{status}", f"run {self.run_id} {status}: {reason}",
                   level="error" if status == "failed" else ("warning" if status == "emergency_stopped" else "info"))
        for command_id in self._pending_acks:
            self.store.ack_command(command_id, "failed" if self._cancel_failed else "done", f"{status}: {reason}")
        for closable in (*self.venues.values(), self.feed):
            with contextlib.suppress(Exception):
                await closable.close()
        if failure is not None and not isinstance(failure, (VenueError, FeedError)):
            raise failure
        return RunOutcome(status, reason, self.summary())

    async def _report_loop(self) -> None:
        assert self.reporter is not None
        while True:
            self.reporter.update(self.summary())
            await asyncio.sleep(0.25)


def _q(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.00000001"))


def _seconds(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)
