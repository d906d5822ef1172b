"""LiveTradingService: what every CLI command calls. It returns plain data; the CLI only renders.

The read side (status, metrics, risk, health, orders) touches only SQLite and the process table,
so it stays fast: the engine, pydantic config and venue code are imported only by the commands
that run or validate a strategy.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from basis_live.errors import (
    EngineInitError,
    MonitoringError,
    RequestValidationError,
    RiskCheckError,
)
from basis_live.process import process_alive
from basis_live.store import ACTIVE_STATUSES, CommandRow, RunRow, Store, default_db_path, iso, parse_iso, utc_now

if TYPE_CHECKING:
    from basis_live.config import RunConfig
    from basis_live.engine.engine import Reporter, RunOutcome


@dataclass
class PreparedRun:
    """A validated request and the one RunConfig built from it (nothing written yet)."""

    request: dict[str, Any]
    config: "RunConfig"


@dataclass
class StopResult:
    run_id: str
    ok: bool
    status: str
    message: str
    elapsed_ms: float = 0.0


@dataclass
class HealthReport:
    healthy: bool
    problems: list[str]
    runs: list[dict[str, Any]] = field(default_factory=list)
    checked_at: str = ""


#: Seconds a queued command may wait for the engine before `health` calls the run unhealthy.
COMMAND_ACK_LIMIT = 30.0
#: How long after a live run ended badly (failed; a stop that could not cancel or unwind everything)
#: `health` keeps reporting it, unless a later live run of the same mode and environment took over.
UNATTENDED_WINDOW_SECONDS = 24 * 3600.0


def _num(value: str | None) -> float | None:
    return None if value is None else float(Decimal(value))


class LiveTradingService:
    def __init__(self, db_path: Path | None = None, strategies_dir: Path | None = None) -> None:
        self.db_path = Path(db_path) if db_path is not None else default_db_path()
        self.strategies_dir = strategies_dir
        self._store: Store | None = None

    # ------------------------------------------------------------------ store access
    def _open(self, create: bool) -> Store | None:
        if self._store is None:
            self._store = Store.open(self.db_path, create=create)
        return self._store

    def _reader(self) -> Store | None:
        return self._open(create=False)

    def _run(self, run_id: str) -> tuple[Store, RunRow]:
        if not run_id.strip():
            # An unset shell variable ("stop $RUN") must not pick the only run there is.
            raise RequestValidationError("run id is empty; give a run id or a unique prefix of one")
        store = self._reader()
        if store is None:
            raise RequestValidationError(f"no run {run_id!r}: no state database at {self.db_path}")
        full_id = store.resolve_run_id(run_id)
        row = store.get_run(full_id)
        assert row is not None
        return store, row

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # ------------------------------------------------------------------ requests
    def create_request(
        self,
        strategy_name: str,
        initial_capital: str | float | Decimal,
        *,
        share_class: str | None = None,
        overrides: list[str] | None = None,
        risk_overrides: list[str] | None = None,
        feed: str = "sample",
        data: Path | None = None,
        scenario: str | None = None,
        speed: float = 1.0,
        seed: int = 7,
        backtest: bool = False,
        environment: str | None = None,
    ) -> PreparedRun:
        """Validate everything (LT-001 / LT-002 / LT-003) before anything is written. ``environment``
        (``start --env``) makes it a live run on that environment."""
        from basis_live.config import ConfigManager, build_run_config, parse_capital
        from basis_live.feeds.sample import SCENARIOS
        from basis_live.modes.catalog import MODES
        from basis_live.modes.registry import create_mode

        capital = parse_capital(initial_capital)
        if speed <= 0 or speed != speed:
            raise RequestValidationError(f"--speed must be > 0, got {speed}")
        if scenario is not None and scenario not in SCENARIOS:
            raise RequestValidationError(f"unknown scenario {scenario!r}; scenarios: {', '.join(SCENARIOS)}")
        strategy = ConfigManager(self.strategies_dir).load(strategy_name, overrides, risk_overrides, share_class)
        feed_options = {"kind": feed, "data": data, "scenario": scenario, "speed": speed, "seed": seed}
        config = build_run_config(strategy, capital, feed_options, backtest=backtest, live_environment=environment)
        create_mode(config.strategy)  # LT-003 for modes that cannot trade yet
        spec = MODES[config.strategy.mode]
        if config.execution_mode == "live":
            from basis_live.venues.live_factory import refuse_unsupported

            refuse_unsupported(config.strategy)
        elif feed == "live" and (backtest or spec.uses_lending or spec.uses_staking):
            raise RequestValidationError(
                "--feed live serves exchange data only (paper trading on the real market); "
                + ("backtests need --data" if backtest else f"{spec.name} also needs on-chain data (AAVE, LST rates)"))
        request = {
            "strategy_name": strategy_name, "initial_capital": str(capital), "share_class": config.share_class,
            "overrides": list(overrides or []), "risk_overrides": list(risk_overrides or []),
            "feed": config.feed.kind, "data": None if data is None else str(data), "scenario": scenario,
            "speed": speed,
            "seed": seed, "execution_mode": config.execution_mode, "environment": config.environment,
        }
        return PreparedRun(request, config)

    # ------------------------------------------------------------------ running
    def start_live_trading(
        self,
        prepared: PreparedRun,
        reporter: "Reporter | None" = None,
        on_started: Callable[[dict[str, Any]], None] | None = None,
    ) -> "RunOutcome":
        """Run the engine in this process until it stops. Writes the run row only once the feed,
        mode and venues are built; SIGINT / SIGTERM stop it gracefully."""
        import asyncio
        import signal

        from basis_live.engine.assembly import assemble_paper_run
        from basis_live.feeds.base import FeedError
        from basis_live.feeds.factory import open_feed

        config = prepared.config
        live = config.execution_mode == "live"
        if live:
            self._validate_before_live_start(config)
        if not live:
            # The feed first: a refused start creates no state file.
            try:
                feed = open_feed(config.feed.kind, config.feed.data, config.feed.scenario, config.feed.seed)
            except FeedError as exc:
                raise EngineInitError(f"market feed unusable: {exc}") from None
        store = self._open(create=True)
        assert store is not None
        run_id = secrets.token_hex(4)

        async def main() -> "RunOutcome":
            if live:
                run = await self._assemble_live(run_id, config, store, prepared.request, reporter)
            else:
                run = await assemble_paper_run(run_id, config, feed, store, prepared.request, reporter)
            engine = run.engine
            loop = asyncio.get_running_loop()
            # SIGHUP: the terminal or ssh session went away; stop as cleanly as for Ctrl-C rather
            # than die with the run left `running` (run under nohup or tmux to keep it going).
            for signum, name in ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP")):
                loop.add_signal_handler(signum, engine.request_stop, f"{name} received")
            try:
                await engine.start()
                if on_started is not None:
                    on_started({"run_id": run_id, "db": str(self.db_path), "feed": engine.feed.label,
                                "is_sample": engine.feed.is_sample, "pid": os.getpid(),
                                "initial_capital": str(engine.initial_capital)})
                return await engine.run(run.watchdog)
            except BaseException as exc:
                store.set_run_status(run_id, "failed", f"engine failed: {exc!r}", only_if=ACTIVE_STATUSES)
                raise
            finally:
                for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    loop.remove_signal_handler(signum)

        return asyncio.run(main())

    @staticmethod
    def _validate_before_live_start(config: "RunConfig") -> None:
        """The same client checks as `validate --env`; any failure refuses the start (LT-004),
        before anything is written or sent."""
        import asyncio

        from basis_live.errors import ExecutionError
        from basis_live.venues.cex_clients import credentials_from_env
        from basis_live.venues.live_factory import (
            CEX_VENUES,
            enabled_venues,
            failed_checks,
            uses_chain,
            validate_live_clients,
        )

        for name in enabled_venues(config.strategy):
            if name in CEX_VENUES:
                credentials_from_env(config.environment, name)  # LT-001 naming the missing variable
        if uses_chain(config.strategy):
            from basis_live.networks import chain_credentials, network_for

            chain_credentials(config.environment)  # LT-001 naming the missing variable
            network_for(config.environment)  # a bad BASIS_NETWORKS_FILE is bad input: LT-002, not a failed check
        failed = failed_checks(asyncio.run(validate_live_clients(config.strategy, config.environment)))
        if failed:
            raise ExecutionError(f"client validation failed, nothing was traded: {'; '.join(failed)}")

    @staticmethod
    async def _assemble_live(run_id: str, config: "RunConfig", store: Store, request: dict[str, Any],
                             reporter: "Reporter | None") -> Any:
        from basis_live.engine.assembly import assemble_live_run
        from basis_live.feeds.live import LiveFeed
        from basis_live.store import StoreJournal
        from basis_live.venues.live_factory import build_live_chain, build_live_venues, prepare_live_chain, uses_chain

        strategy = config.strategy
        venues = build_live_venues(strategy, config.environment)
        if uses_chain(strategy):
            # One venue family per live run for now (LIVE_MODES): chain modes read the chain.
            chain_venues, feed = await build_live_chain(strategy, config.environment, StoreJournal(store))
            venues.update(chain_venues)
        else:
            feed = LiveFeed(config.environment, trading=True,
                            timeout_ms=int(strategy.execution.venue_timeout_seconds * 1000),
                            api_urls={name: venue.api_url for name, venue in strategy.venues.items()})
        run = await assemble_live_run(run_id, config, feed, venues, store, request, reporter)
        await prepare_live_chain(venues, strategy, config.environment, run_id)
        return run

    def run_backtest(
        self,
        prepared: PreparedRun,
        start: datetime | None,
        end: datetime | None,
        step_seconds: float = 3600.0,
        progress: Callable[[datetime, datetime, datetime], None] | None = None,
    ) -> "RunOutcome":
        """Run the same engine, mode and paper venues over history as fast as they compute. The
        result is a run in the store (visible to status / metrics). Start and end default to the
        feed's range; outside it is LT-001."""
        import asyncio

        from basis_live.engine.assembly import assemble_paper_run
        from basis_live.feeds.base import FeedError, utc
        from basis_live.feeds.factory import open_feed

        config = prepared.config
        if not math.isfinite(step_seconds) or step_seconds < 1:
            raise RequestValidationError(f"--step must be > 0 seconds (at least 1, finite), got {step_seconds:g}")
        try:
            feed = open_feed(config.feed.kind, config.feed.data, config.feed.scenario, config.feed.seed)
        except FeedError as exc:
            raise EngineInitError(f"market feed unusable: {exc}") from None
        first = utc(start) if start is not None else feed.start
        last = utc(end) if end is not None else feed.end
        if last is None:
            raise RequestValidationError("--end is required for an endless feed")
        if first < feed.start or last > (feed.end or last) or first >= last:
            raise RequestValidationError(
                f"backtest range {iso(first)} .. {iso(last)} must lie within the data, {iso(feed.start)} .. "
                f"{iso(feed.end)}, and start before it ends"
            )
        store = self._open(create=True)
        assert store is not None
        run_id = secrets.token_hex(4)
        request = {**prepared.request, "start": iso(first), "end": iso(last), "step_seconds": step_seconds}

        async def main() -> "RunOutcome":
            import signal

            run = await assemble_paper_run(run_id, config, feed, store, request, backtest_start=first)
            # Ctrl-C and SIGTERM stop a backtest as they stop a paper run: the ticks so far stay a
            # `stopped` run. Plain signal handlers, not the loop's: a backtest step never yields to it.
            previous = {signum: signal.signal(signum, lambda number, _frame: run.engine.request_stop(
                f"{signal.Signals(number).name} received")) for signum in (signal.SIGINT, signal.SIGTERM)}
            try:
                await run.engine.start()
                report = None if progress is None else (lambda now: progress(first, last, now))
                return await run.engine.run_backtest(run.watchdog, last, step_seconds, report)
            except BaseException as exc:
                store.set_run_status(run_id, "failed", f"backtest failed: {exc!r}", only_if=ACTIVE_STATUSES)
                raise
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)

        return asyncio.run(main())

    def validate_clients(self, strategy_name: str, environment: str, overrides: list[str] | None = None
                         ) -> list[dict[str, Any]]:
        """The seed's client validation: for every client the mode needs, the endpoint matches the
        environment, it is reachable, the credentials authenticate (a private read) and there is
        rate-limit headroom. On-chain clients cannot be checked yet and are reported as failures."""
        import asyncio

        from basis_live.config import ConfigManager
        from basis_live.venues.live_factory import validate_live_clients

        if environment not in ("dev", "staging", "prod"):
            raise RequestValidationError(f"--env {environment!r} is not one of dev, staging, prod")
        strategy = ConfigManager(self.strategies_dir).load(strategy_name, overrides)
        return [check.__dict__ for check in asyncio.run(validate_live_clients(strategy, environment))]

    # ------------------------------------------------------------------ reads
    def _status_row(self, row: RunRow, now: datetime) -> dict[str, Any]:
        heartbeat = parse_iso(row.last_heartbeat)
        alive = process_alive(row.pid, row.host, row.pid_start) if row.status in ACTIVE_STATUSES else False
        return {
            "run_id": row.run_id,
            "strategy_name": row.strategy_name,
            "mode": row.mode,
            "status": row.status,
            "trading_state": row.trading_state,
            "share_class": row.share_class,
            "initial_capital": _num(row.initial_capital),
            "current_value": _num(row.current_value),
            "total_pnl": _num(row.total_pnl),
            "total_trades": row.total_trades,
            "current_drawdown": row.current_drawdown,
            "max_drawdown": row.max_drawdown,
            "risk_status": row.risk_status,
            "last_heartbeat": row.last_heartbeat,
            "heartbeat_age_seconds": None if heartbeat is None else round((now - heartbeat).total_seconds(), 3),
            "sim_time": row.sim_time,
            "pid": row.pid,
            "host": row.host,
            "process_alive": alive,
            "execution_mode": row.execution_mode,
            "feed": row.feed_label,
            "started_at": row.started_at,
            "stopped_at": row.stopped_at,
            "stop_reason": row.stop_reason,
        }

    def get_status(self, run_id: str | None = None) -> list[dict[str, Any]]:
        now = utc_now()
        if run_id is not None:
            _, row = self._run(run_id)
            return [self._status_row(row, now)]
        store = self._reader()
        if store is None:
            return []
        return [self._status_row(row, now) for row in store.list_runs()]

    def get_all_running_strategies(self) -> list[dict[str, Any]]:
        store = self._reader()
        if store is None:
            return []
        now = utc_now()
        return [self._status_row(row, now) for row in store.list_runs(ACTIVE_STATUSES)]

    def get_performance_metrics(self, run_id: str) -> dict[str, Any]:
        store, row = self._run(run_id)
        metrics = row.metrics
        if metrics is None:
            raise MonitoringError(f"run {row.run_id} has no snapshot yet")
        metrics = dict(metrics)
        metrics["status"] = row.status
        metrics["snapshots"] = store.count_snapshots(row.run_id)
        metrics["orders"] = store.count_orders(row.run_id)
        return metrics

    def check_risk_limits(self, run_id: str) -> dict[str, Any]:
        """The last risk evaluation the engine wrote (status, breaches with type / limit / current /
        breach_pct, action_required) plus the configured limits."""
        _, row = self._run(run_id)
        risk = row.risk
        if risk is None:
            raise RiskCheckError(f"run {row.run_id} has no risk evaluation yet")
        config = json.loads(row.config_json)
        return {
            "run_id": row.run_id,
            "strategy_name": row.strategy_name,
            "run_status": row.status,
            "trading_state": row.trading_state,
            "status": risk.get("status", "ok"),
            "breaches": risk.get("breaches", []),
            "warnings": risk.get("warnings", []),
            "action_required": bool(risk.get("action_required")),
            "evaluated_at": risk.get("evaluated_at"),
            "figures": risk.get("figures", {}),
            "degraded_venues": risk.get("degraded_venues", []),
            "limits": config.get("strategy", {}).get("risk", {}),
        }

    def list_orders(self, run_id: str, open_only: bool = False) -> list[dict[str, Any]]:
        store, row = self._run(run_id)
        statuses = ("pending_submit", "unknown", "open", "partially_filled") if open_only else None
        return store.list_orders(row.run_id, statuses)

    def list_events(self, run_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        store, row = self._run(run_id)
        return store.list_events(row.run_id, limit=limit)

    # ------------------------------------------------------------------ control
    @staticmethod
    def _check_timeout(timeout: float, option: str = "--timeout") -> None:
        """A wait must be a finite, positive number of seconds (checked before anything is queued)."""
        if not math.isfinite(timeout) or timeout <= 0:
            raise RequestValidationError(f"{option} must be a finite number of seconds > 0, got {timeout}")

    def _await_ack(self, store: Store, command_id: int, timeout: float) -> tuple[bool, bool, str]:
        """(acknowledged, carried out in full, the engine's message) once acknowledged or timed out.
        Not in full: e.g. a stop whose cancel failed on a venue, where orders may still be open."""
        command = self._await_command(store, command_id, timeout)
        if command is None:
            return False, False, ""
        return True, command.ack_status == "done", command.ack_message or ""

    def _await_command(self, store: Store, command_id: int, timeout: float) -> "CommandRow | None":
        """The command once the engine acknowledged it, or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            command = store.get_command(command_id)
            if command is not None and command.acked_at is not None:
                return command
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.005)

    def move_capital(self, run_id: str, kind: str, amount: str, timeout: float = 30.0) -> StopResult:
        """Deposit into or withdraw from a running strategy through its command queue; waits for the
        engine's answer (done, or refused with the reason)."""
        from decimal import InvalidOperation

        from basis_live.config import MAX_AMOUNT

        try:
            value = Decimal(amount)
        except InvalidOperation:
            raise RequestValidationError(f"amount must be a number, got {amount!r}") from None
        if not value.is_finite() or value <= 0:
            raise RequestValidationError(f"amount must be > 0, got {amount}")
        if value > MAX_AMOUNT:
            raise RequestValidationError(f"amount {amount} is beyond any sane size (max 1e12)")
        self._check_timeout(timeout)
        store, row = self._run(run_id)
        if row.status != "running":
            raise RequestValidationError(f"run {row.run_id} is {row.status}; {kind} needs a running run")
        if process_alive(row.pid, row.host, row.pid_start) is False:
            raise MonitoringError(f"run {row.run_id}: engine process {row.pid} is gone; nothing was moved")
        started = time.monotonic()
        command = self._await_command(store, store.enqueue_command(row.run_id, kind, {"amount": str(value)}), timeout)
        elapsed = (time.monotonic() - started) * 1000
        if command is None:
            return StopResult(row.run_id, False, row.status, f"run {row.run_id}: no answer to the {kind} within "
                                                             f"{timeout:g}s (it may still happen: check metrics)", elapsed)
        return StopResult(row.run_id, command.ack_status == "done", row.status,
                          f"run {row.run_id}: {command.ack_message}", elapsed)

    def stop_live_trading(self, run_id: str | None, timeout: float = 10.0) -> list[StopResult]:
        """Ask running engines to stop and wait for each acknowledgement. ``run_id=None`` stops all."""
        self._check_timeout(timeout)
        store = self._reader()
        if run_id is not None:
            store, row = self._run(run_id)
            rows = [row]
        else:
            rows = store.list_runs(ACTIVE_STATUSES) if store is not None else []
        results = []
        for row in rows:
            started = time.monotonic()
            if row.status not in ACTIVE_STATUSES:
                results.append(StopResult(row.run_id, True, row.status, f"run {row.run_id} is already {row.status}"))
                continue
            if process_alive(row.pid, row.host, row.pid_start) is False:
                assert store is not None
                store.set_run_status(row.run_id, "failed", f"engine process {row.pid} gone without stopping",
                                     only_if=ACTIVE_STATUSES)
                store.append_event(row.run_id, "run.dead", f"stop found engine process {row.pid} gone; run marked failed",
                                   level="error")
                results.append(StopResult(row.run_id, False, "failed",
                                          f"run {row.run_id}: engine process {row.pid} is gone; marked failed "
                                          "(positions stay on the venues unattended)"))
                continue
            assert store is not None
            command_id = store.enqueue_command(row.run_id, "stop", {"by": f"pid {os.getpid()}"})
            store.set_run_status(row.run_id, "stopping", only_if=("running",))
            acked, done, message = self._await_ack(store, command_id, timeout)
            elapsed = (time.monotonic() - started) * 1000
            if acked:
                final = store.get_run(row.run_id)
                results.append(StopResult(row.run_id, done, final.status if final else "stopped",
                                          f"run {row.run_id} {message}", elapsed))
            else:
                results.append(StopResult(row.run_id, False, "stopping",
                                          f"run {row.run_id}: no acknowledgement within {timeout:g}s (engine pid "
                                          f"{row.pid} hung? the stop stays queued and happens if it resumes; "
                                          "try emergency-stop, or kill the process)", elapsed))
        return results

    def emergency_stop(self, run_id: str, reason: str, unwind: bool = False, timeout: float = 10.0) -> StopResult:
        """HALT the run now (no new orders), cancel its open orders, optionally unwind."""
        if not reason.strip():
            raise RequestValidationError("--reason must not be empty")
        self._check_timeout(timeout)
        store, row = self._run(run_id)
        started = time.monotonic()
        if row.status not in ACTIVE_STATUSES:
            if unwind:
                return StopResult(row.run_id, False, row.status,
                                  f"run {row.run_id} is already {row.status}: no engine runs it, so nothing was "
                                  "unwound; close any positions it left on live venues there")
            return StopResult(row.run_id, True, row.status, f"run {row.run_id} is already {row.status}; nothing to halt")
        if process_alive(row.pid, row.host, row.pid_start) is False:
            note = (f"{reason} [engine process {row.pid} was gone: no orders cancelled, nothing unwound; "
                    "check the venues by hand]")
            store.set_run_status(row.run_id, "emergency_stopped", note, only_if=ACTIVE_STATUSES)
            store.set_trading_state(row.run_id, "HALTED")
            store.append_event(row.run_id, "run.emergency_stopped", note, level="critical")
            return StopResult(row.run_id, False, "emergency_stopped",
                              f"run {row.run_id}: engine process {row.pid} is gone; marked emergency_stopped, "
                              "but no order was cancelled: act on the venues by hand")
        command_id = store.enqueue_command(row.run_id, "emergency_stop", {"reason": reason, "unwind": unwind})
        acked, done, message = self._await_ack(store, command_id, timeout)
        elapsed = (time.monotonic() - started) * 1000
        if not acked:
            return StopResult(row.run_id, False, "running",
                              f"run {row.run_id}: no acknowledgement of the emergency stop within {timeout:g}s "
                              f"(engine pid {row.pid} hung? it stays queued and happens if the engine resumes; "
                              "or kill it and check the venues)", elapsed)
        final = store.get_run(row.run_id)
        return StopResult(row.run_id, done, final.status if final else "emergency_stopped",
                          f"run {row.run_id} {message}", elapsed)

    def health_check(self, max_heartbeat_age: float | None = None) -> HealthReport:
        """Healthy only when every running run has a live process, a fresh heartbeat, a strategy
        loop that still ticks, no command left unacknowledged and no unhandled breach, and no live
        run ended badly in the last day with nothing taking over its positions."""
        from basis_live.risk.limits import unhandled_breaches

        if max_heartbeat_age is not None:
            self._check_timeout(max_heartbeat_age, "--max-heartbeat-age")

        now = utc_now()
        problems: list[str] = []
        store = self._reader()
        rows = store.list_runs(ACTIVE_STATUSES) if store is not None else []
        runs = [self._status_row(row, now) for row in rows]
        for row, run in zip(rows, runs):
            label = f"run {row.run_id} ({row.strategy_name})"
            limit = max_heartbeat_age if max_heartbeat_age is not None else row.heartbeat_timeout
            if run["process_alive"] is False:
                problems.append(f"{label} is dead: engine process {row.pid} is not running "
                                f"(last heartbeat {row.last_heartbeat}); its positions are unattended: check the "
                                f"venues, then `basis-live stop {row.run_id}` marks it")
                continue
            age = run["heartbeat_age_seconds"]
            if age is None or age > limit:
                problems.append(f"{label} heartbeat is stale: {age if age is not None else 'never'}s old "
                                f"(limit {limit:g}s)")
            config = json.loads(row.config_json)
            tick_wall = config["strategy"]["monitoring_interval"] / config["feed"]["speed"]
            stall_limit = max(limit, 3 * tick_wall)
            last_tick = parse_iso(row.last_tick_at) or parse_iso(row.started_at)
            if last_tick is not None and (now - last_tick).total_seconds() > stall_limit:
                # A live chain step can take many blocks inside one tick (a leverage loop signs a
                # transaction per block for minutes): it is moving while it keeps signing.
                signed = parse_iso(store.last_transaction_signed(row.run_id))  # type: ignore[union-attr]
                if signed is None or (now - signed).total_seconds() > stall_limit:
                    problems.append(f"{label} strategy loop stalled: last tick "
                                    f"{(now - last_tick).total_seconds():.0f}s ago (limit {stall_limit:g}s)" +
                                    (f", last chain transaction signed {(now - signed).total_seconds():.0f}s ago"
                                     if signed is not None else ""))
            for command in store.unacknowledged_commands(row.run_id):  # type: ignore[union-attr]
                waiting = (now - parse_iso(command.created_at)).total_seconds()  # type: ignore[operator]
                if waiting > COMMAND_ACK_LIMIT:
                    problems.append(f"{label}: {command.kind} command {command.id} not acknowledged for "
                                    f"{waiting:.0f}s")
            for breach in unhandled_breaches(row.risk, row.trading_state):
                problems.append(f"{label} has an unhandled {breach['type']} breach: {breach['current']:.6g} vs "
                                f"limit {breach['limit']:.6g} (policy {breach['policy']})")
            for venue in (row.risk or {}).get("degraded_venues", []):
                problems.append(f"{label}: venue {venue} is degraded (LT-004)")
        if store is not None:
            problems.extend(self._unattended_live_runs(store, now))
        return HealthReport(not problems, problems, runs, iso(now) or "")

    @staticmethod
    def _unattended_live_runs(store: Store, now: datetime) -> list[str]:
        """Live runs that ended in the last UNATTENDED_WINDOW_SECONDS in a way that can leave money on
        the venues unwatched (failed; or a stop that could not cancel or unwind everything) and that
        no later live run of the same mode and environment has taken over (a new start adopts them)."""
        problems = []
        live = [row for row in store.list_runs() if row.execution_mode == "live"]
        ended = [row for row in live if row.status in ("failed", "emergency_stopped", "stopped") and row.stopped_at]
        for row in ended:
            stopped = parse_iso(row.stopped_at)
            if stopped is None or (now - stopped).total_seconds() > UNATTENDED_WINDOW_SECONDS:
                continue
            if row.status != "failed" and "act on the venue" not in (row.stop_reason or ""):
                continue
            if any(later.mode == row.mode and later.environment == row.environment and later.created_at > row.stopped_at
                   for later in live):
                continue
            problems.append(f"live run {row.run_id} ({row.strategy_name}) ended {row.status} "
                            f"{(now - stopped).total_seconds() / 60:.0f} min ago and nothing has taken over its "
                            f"positions: {row.stop_reason or 'no reason recorded'}; check the venues, or start it "
                            "again to adopt them")
        return problems
