"""The basis-live command line: parse, call LiveTradingService, render. Nothing else.

Every ``BasisLiveError`` (and every usage error) becomes one line ``error LT-00x: ...`` on stderr
with its exit status; see the README for the exit codes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from basis_live.errors import (
    EXIT_FAILURE,
    EXIT_HALTED,
    EXIT_OK,
    EXIT_USAGE,
    BasisLiveError,
    ExecutionError,
    MonitoringError,
    RequestValidationError,
    StopError,
)

app = typer.Typer(
    name="basis-live",
    help="Run crypto basis and yield strategies with a risk watchdog; watch and control them from any terminal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DbOption = typer.Option(None, "--db", help="State database (default: $BASIS_LIVE_DB or $XDG_STATE_HOME/basis-live/state.db).",
                        dir_okay=False)
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _service(db: Optional[Path], strategies_dir: Optional[Path] = None):  # type: ignore[no-untyped-def]
    from basis_live.service import LiveTradingService

    return LiveTradingService(db, strategies_dir)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@app.command()
def start(
    strategy: str = typer.Argument(..., help="Strategy name (see `basis-live strategies`)."),
    capital: str = typer.Option(..., "--capital", help="Initial capital in the share class, > 0."),
    share_class: Optional[str] = typer.Option(None, "--share-class", help="USDT, ETH or BTC (must suit the mode)."),
    set_: List[str] = typer.Option([], "--set", help="Override a strategy key: dotted.key=value (repeatable)."),
    risk: List[str] = typer.Option([], "--risk", help="Override a risk limit: name=value or name.policy=warn|reduce|emergency_stop."),
    feed: str = typer.Option("sample", "--feed", help="Market data: sample (built in, offline), replay (--data) or live (public exchange data, real time)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Replay data: a manifest file or a directory with manifest.yaml."),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="Sample-feed scenario, e.g. crash or squeeze."),
    speed: float = typer.Option(1.0, "--speed", help="Simulated seconds per wall second (3600 = an hour a second)."),
    seed: int = typer.Option(7, "--seed", help="Sample-feed seed."),
    env: Optional[str] = typer.Option(None, "--env", help="Trade LIVE on dev, staging (testnets / demo) or prod, with the credentials of that environment."),
    strategies_dir: Optional[Path] = typer.Option(None, "--strategies-dir", help="Extra directory of strategy files (searched first)."),
    db: Optional[Path] = DbOption,
) -> None:
    """Run a strategy in the foreground with its risk watchdog (Ctrl-C or SIGTERM stops it).

    Without --env it paper-trades (on the built-in sample feed by default) and says so first.
    With --env it trades live: it validates every client first and refuses to trade if one fails.

    Example: basis-live start pure_lending --capital 100000 --speed 3600
    Example: basis-live start btc_basis --capital 100000 --env dev
    """
    from basis_live.render import LiveView, render_outcome

    service = _service(db, strategies_dir)
    prepared = service.create_request(
        strategy, capital, share_class=share_class, overrides=set_, risk_overrides=risk, feed=feed, data=data,
        scenario=scenario, speed=speed, seed=seed, environment=env,
    )
    view = LiveView(prepared.config)
    with view:
        outcome = service.start_live_trading(prepared, reporter=view, on_started=view.started)
    render_outcome(outcome)
    if outcome.status == "emergency_stopped":
        raise typer.Exit(EXIT_HALTED)
    if outcome.status == "failed":
        raise typer.Exit(EXIT_FAILURE)


@app.command()
def backtest(
    strategy: str = typer.Argument(..., help="Strategy name (see `basis-live strategies`)."),
    capital: str = typer.Option(..., "--capital", help="Initial capital in the share class, > 0."),
    start_date: Optional[str] = typer.Option(None, "--start", help="First instant, YYYY-MM-DD or ISO 8601 UTC (default: data start)."),
    end_date: Optional[str] = typer.Option(None, "--end", help="Last instant (default: data end)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Replay data (manifest or directory); default the built-in sample history."),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="Sample-history scenario, e.g. crash."),
    step: Optional[float] = typer.Option(None, "--step", help="Seconds of market time per tick (default 3600, the data cadence; ML modes: one candle)."),
    set_: List[str] = typer.Option([], "--set", help="Override a strategy key: dotted.key=value (repeatable)."),
    risk: List[str] = typer.Option([], "--risk", help="Override a risk limit: name=value."),
    strategies_dir: Optional[Path] = typer.Option(None, "--strategies-dir", help="Extra directory of strategy files."),
    as_json: bool = JsonOption,
    db: Optional[Path] = DbOption,
) -> None:
    """Run a strategy over history with the same engine, modes and paper venues, far faster than
    real time; stores the run (see `status`, `metrics`) and prints a summary.

    Example: basis-live backtest btc_basis --capital 100000 --start 2024-06-01 --end 2025-06-01 --data examples/reference-data.yaml
    """
    from basis_live.render import BacktestProgress, render_backtest

    service = _service(db, strategies_dir)
    prepared = service.create_request(
        strategy, capital, overrides=set_, risk_overrides=risk, feed="replay" if data else "sample", data=data,
        scenario=scenario, backtest=True,
    )
    first, last = _parse_date(start_date, "--start"), _parse_date(end_date, "--end")
    ml = prepared.config.strategy.ml
    if step is None:
        step = float(ml.candle_seconds) if ml is not None else 3600.0
    with BacktestProgress(enabled=not as_json) as progress:
        outcome = service.run_backtest(prepared, first, last, step, progress.update)
    if as_json:
        _print_json({"status": outcome.status, "reason": outcome.reason, **outcome.summary})
    else:
        render_backtest(outcome)
    if outcome.status == "emergency_stopped":
        raise typer.Exit(EXIT_HALTED)  # as for `start`: the watchdog (or an operator) stopped it
    if outcome.status == "failed":
        raise typer.Exit(EXIT_FAILURE)


def _parse_date(text: Optional[str], flag: str):  # type: ignore[no-untyped-def]
    from datetime import datetime, timezone


    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        raise RequestValidationError(f"{flag} {text!r} is not a date (YYYY-MM-DD or ISO 8601)") from None


@app.command()
def status(
    run_id: Optional[str] = typer.Argument(None, help="A run id or unique prefix; all runs if omitted."),
    as_json: bool = JsonOption,
    db: Optional[Path] = DbOption,
) -> None:
    """Show every run (or one): status, equity, P&L, drawdown, heartbeat, process.

    Example: basis-live status --json
    """
    rows = _service(db).get_status(run_id)
    if as_json:
        _print_json(rows)
        return
    from basis_live.render import render_status

    render_status(rows)


@app.command()
def metrics(
    run_id: str = typer.Argument(..., help="A run id or unique prefix."),
    as_json: bool = JsonOption,
    db: Optional[Path] = DbOption,
) -> None:
    """Performance metrics of a run: P&L, return, APY, drawdown, trades, fees, funding, interest, gas.

    Example: basis-live metrics 3f9a2c1d
    """
    data = _service(db).get_performance_metrics(run_id)
    if as_json:
        _print_json(data)
        return
    from basis_live.render import render_mapping

    render_mapping(f"metrics of run {data['run_id']}", data)


@app.command()
def risk(
    run_id: str = typer.Argument(..., help="A run id or unique prefix."),
    as_json: bool = JsonOption,
    db: Optional[Path] = DbOption,
) -> None:
    """The last risk check of a run: status, breaches (type, limit, current, breach_pct), action required.

    Example: basis-live risk 3f9a2c1d --json
    """
    data = _service(db).check_risk_limits(run_id)
    if as_json:
        _print_json(data)
        return
    from basis_live.render import render_risk

    render_risk(data)


@app.command()
def orders(
    run_id: str = typer.Argument(..., help="A run id or unique prefix."),
    open_only: bool = typer.Option(False, "--open", help="Only orders that may still be live."),
    as_json: bool = JsonOption,
    db: Optional[Path] = DbOption,
) -> None:
    """Orders of a run with their client order ids, status and fills.

    Example: basis-live orders 3f9a2c1d --open
    """
    rows = _service(db).list_orders(run_id, open_only)
    if as_json:
        _print_json(rows)
        return
    from basis_live.render import render_orders

    render_orders(rows)


@app.command()
def stop(
    run_id: Optional[str] = typer.Argument(None, help="A run id or unique prefix."),
    all_: bool = typer.Option(False, "--all", help="Stop every running run."),
    timeout: float = typer.Option(45.0, "--timeout", help="Seconds to wait for each acknowledgement (a venue whose cancels fail is retried for up to ~35 s)."),
    db: Optional[Path] = DbOption,
) -> None:
    """Ask a running engine to stop gracefully (cancel open orders, keep positions) and wait for its
    acknowledgement. Exit 0 when acknowledged, 1 on timeout or a dead engine.

    Example: basis-live stop 3f9a2c1d
    """

    if (run_id is None) == (not all_):
        raise RequestValidationError("give a RUN_ID or --all (not both)")
    results = _service(db).stop_live_trading(None if all_ else run_id, timeout)
    if not results:
        typer.echo("no running runs")
    failed = False
    for result in results:
        if result.ok:
            typer.echo(f"{result.message} (acknowledged in {result.elapsed_ms:.0f} ms)" if result.elapsed_ms
                       else result.message)
        else:
            failed = True
            typer.echo(f"error {StopError.code}: {result.message}", err=True)
    if failed:
        raise typer.Exit(EXIT_FAILURE)


@app.command("emergency-stop")
def emergency_stop(
    run_id: str = typer.Argument(..., help="A run id or unique prefix."),
    reason: str = typer.Option(..., "--reason", help="Why; recorded with the run."),
    unwind: bool = typer.Option(False, "--unwind", help="Also close every position back to the share class."),
    timeout: float = typer.Option(45.0, "--timeout", help="Seconds to wait for the acknowledgement (a venue whose cancels fail is retried for up to ~35 s)."),
    db: Optional[Path] = DbOption,
) -> None:
    """Halt a run now: no new orders, open orders cancelled, reason recorded; --unwind closes positions.

    Example: basis-live emergency-stop 3f9a2c1d --reason "exchange incident" --unwind
    """
    result = _service(db).emergency_stop(run_id, reason, unwind, timeout)
    if result.ok:
        typer.echo(result.message)
        return
    typer.echo(f"error {StopError.code}: {result.message}", err=True)
    raise typer.Exit(EXIT_FAILURE)


def _move_capital(kind: str, run_id: str, amount: str, timeout: float, db: Optional[Path]) -> None:
    result = _service(db).move_capital(run_id, kind, amount, timeout)
    if result.ok:
        typer.echo(result.message)
        return
    typer.echo(f"error {ExecutionError.code}: {result.message}", err=True)
    raise typer.Exit(EXIT_FAILURE)


@app.command()
def deposit(
    run_id: str = typer.Argument(..., help="A run id or unique prefix."),
    amount: str = typer.Argument(..., help="Amount in the run's share class, > 0."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for the engine's answer."),
    db: Optional[Path] = DbOption,
) -> None:
    """Add capital to a running strategy: counted as a flow, not P&L; the strategy scales in.

    Example: basis-live deposit 3f9a2c1d 25000
    """
    _move_capital("deposit", run_id, amount, timeout, db)


@app.command()
def withdraw(
    run_id: str = typer.Argument(..., help="A run id or unique prefix."),
    amount: str = typer.Argument(..., help="Amount in the run's share class, > 0 and below equity."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for the engine's answer."),
    db: Optional[Path] = DbOption,
) -> None:
    """Take capital out of a running strategy: every position shrinks 1:1 first; a flow, not P&L.

    Example: basis-live withdraw 3f9a2c1d 10000
    """
    _move_capital("withdraw", run_id, amount, timeout, db)


@app.command()
def health(
    as_json: bool = JsonOption,
    max_heartbeat_age: Optional[float] = typer.Option(
        None, "--max-heartbeat-age", help="Seconds; default each run's heartbeat_timeout (300)."),
    db: Optional[Path] = DbOption,
) -> None:
    """For cron: exit 0 only when every running run has a live process, a fresh heartbeat and no
    unhandled breach; otherwise exit 1 with one line per problem.

    Example: basis-live health --max-heartbeat-age 120 || alert-oncall
    """
    report = _service(db).health_check(max_heartbeat_age)
    if as_json:
        _print_json({"healthy": report.healthy, "problems": report.problems, "runs": report.runs,
                     "checked_at": report.checked_at})
    elif report.healthy:
        typer.echo(f"ok: {len(report.runs)} running run(s) healthy")
    else:
        for problem in report.problems:
            typer.echo(f"unhealthy: {problem}")
    if not report.healthy:
        raise typer.Exit(EXIT_FAILURE)


@app.command()
def strategies(
    as_json: bool = JsonOption,
    strategies_dir: Optional[Path] = typer.Option(None, "--strategies-dir", help="Extra directory searched first."),
) -> None:
    """List the strategy files: shipped, user (~/.config/basis-live/strategies) and --strategies-dir.

    Example: basis-live strategies
    """
    from basis_live.config import ConfigManager
    from basis_live.modes.catalog import MODES

    manager = ConfigManager(strategies_dir)
    rows = []
    for found in manager.list_strategies():
        try:
            _, data = manager.read(found.name)
            mode = str(data.get("mode"))
        except BasisLiveError as exc:
            mode = f"invalid: {exc.message}"
        spec = MODES.get(mode)
        rows.append({"name": found.name, "mode": mode, "origin": found.origin, "path": str(found.path),
                     "shadows_shipped": found.shadows_shipped, "implemented": bool(spec and spec.implemented),
                     "summary": spec.summary if spec else ""})
    if as_json:
        _print_json(rows)
        return
    from basis_live.render import render_strategies

    render_strategies(rows)


@app.command()
def validate(
    strategy: str = typer.Argument(..., help="Strategy name."),
    set_: List[str] = typer.Option([], "--set", help="Override: dotted.key=value (repeatable)."),
    risk: List[str] = typer.Option([], "--risk", help="Risk limit override: name=value."),
    env: Optional[str] = typer.Option(None, "--env", help="Also validate the live clients for dev, staging or prod."),
    strategies_dir: Optional[Path] = typer.Option(None, "--strategies-dir", help="Extra directory searched first."),
    as_json: bool = JsonOption,
) -> None:
    """Check a strategy file (with overrides); with --env, also check every client the mode needs:
    endpoint matches the environment, reachable, credentials authenticate, rate-limit headroom.
    Exit 1 if any client check fails.

    Example: basis-live validate btc_basis --env dev
    """
    from basis_live.config import ConfigManager
    from basis_live.modes.catalog import MODES

    config = ConfigManager(strategies_dir).load(strategy, set_, risk)
    data = config.model_dump(mode="json")
    checks = _service(None, strategies_dir).validate_clients(strategy, env, set_) if env else []
    failed = any(not c["ok"] for c in checks)
    if as_json:
        _print_json({"valid": True, "implemented": MODES[config.mode].implemented, "config": data,
                     "environment": env, "clients": checks, "clients_ok": not failed})
    else:
        note = "" if MODES[config.mode].implemented else " (mode not implemented yet: start will refuse it)"
        typer.echo(f"ok: {strategy} is valid{note}")
        if checks:
            from basis_live.render import render_client_checks

            render_client_checks(env or "", checks)
        else:
            typer.echo(json.dumps(data, indent=2))
    if failed:
        raise typer.Exit(EXIT_FAILURE)


def _is_usage_error(exc: BaseException) -> bool:
    """A command-line usage error from the click that typer uses (installed or vendored)."""
    module = type(exc).__module__
    return (module.startswith("click") or module.startswith("typer")) and hasattr(exc, "exit_code")


def main() -> None:
    """Entry point: one line per operational error, tracebacks only for bugs."""
    command = typer.main.get_command(app)
    try:
        # standalone_mode=False returns typer.Exit codes instead of exiting, and raises usage errors
        # so they can be rendered as one line.
        rc = command.main(prog_name="basis-live", standalone_mode=False)
    except BasisLiveError as exc:
        sys.stderr.write(f"error {exc.code}: {exc.message}\n")
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except Exception as exc:
        from basis_live.store import is_locked

        if is_locked(exc):
            sys.stderr.write(f"error {MonitoringError.code}: the state database is locked by another process "
                             f"({exc}); this command may not have completed: check `basis-live status` and try again\n")
            sys.exit(EXIT_FAILURE)
        if not _is_usage_error(exc):
            raise
        if type(exc).__name__.startswith("NoArgsIsHelp"):
            sys.exit(EXIT_OK)  # the help text is already printed
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)  # type: ignore[attr-defined]
        sys.stderr.write(f"error {RequestValidationError.code}: {' '.join(message.split())}\n")
        sys.exit(EXIT_USAGE)
    sys.exit(rc if isinstance(rc, int) else EXIT_OK)


if __name__ == "__main__":
    main()
