"""Terminal rendering of service results (rich). No logic: every figure comes from the service."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

if TYPE_CHECKING:
    from basis_live.config import RunConfig
    from basis_live.engine.engine import RunOutcome

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

_STATE_STYLE = {"ACTIVE": "green", "REDUCING": "yellow", "HALTED": "bold red"}
_RISK_STYLE = {"ok": "green", "warning": "yellow", "breach": "bold red"}


def _money(value: Any, decimals: int = 2) -> str:
    if value is None:
        return "-"
    return f"{float(value):,.{decimals}f}"


def _pct(value: Any, decimals: int = 2) -> str:
    return "-" if value is None else f"{float(value) * 100:.{decimals}f}%"


class LiveView:
    """The foreground view of ``start``: a live panel on a terminal, a line every few seconds when
    the output is piped (systemd, tests)."""

    def __init__(self, config: "RunConfig") -> None:
        self.config = config
        self.tty = sys.stdout.isatty()
        self._live: Any = None
        self._last_line = 0.0
        self.summary: dict[str, Any] | None = None

    def __enter__(self) -> "LiveView":
        feed = self.config.feed
        if self.config.execution_mode == "live":
            environment = self.config.environment
            where = "PRODUCTION endpoints: REAL MONEY" if environment == "prod" else "testnet / demo endpoints"
            venues = ", ".join(name for name, v in self.config.strategy.venues.items() if v.enabled)
            console.print(f"LIVE TRADING in {environment} ({where}): real orders on {venues}; validating clients first",
                          style="bold red", soft_wrap=True)
            return self
        source = {"sample": "SAMPLE DATA (built-in synthetic feed)", "replay": f"REPLAY DATA ({feed.data})",
                  "live": "LIVE PUBLIC MARKET DATA"}[feed.kind]
        console.print(f"PAPER TRADING on {source}: no credentials needed, no order reaches any exchange",
                      style="bold yellow", soft_wrap=True)
        return self

    def started(self, info: dict[str, Any]) -> None:
        strategy = self.config.strategy
        console.print(
            f"run {info['run_id']} started: {strategy.name} ({strategy.mode}), capital "
            f"{info.get('initial_capital', self.config.initial_capital)} {strategy.share_class}, "
            f"speed {self.config.feed.speed:g}x, "
            f"feed {info['feed']}, pid {info['pid']}, db {info['db']}", soft_wrap=True)
        console.print(f"stop it with: basis-live stop {info['run_id']}   (or Ctrl-C here)", soft_wrap=True)
        if self.tty:
            from rich.live import Live

            self._live = Live(self._panel(None), console=console, refresh_per_second=4, transient=False)
            self._live.start()

    def _panel(self, s: dict[str, Any] | None) -> Table:
        table = Table(title="basis-live", show_header=False, box=None)
        if s is None:
            table.add_row("starting...")
            return table
        table.add_row("run", f"{s['run_id']}  {s['strategy_name']}")
        table.add_row("sim time", str(s["sim_time"]))
        table.add_row("equity", f"{_money(s['current_value'])} {s['share_class']}")
        table.add_row("P&L", f"{_money(s['total_pnl'])} {s['share_class']}  ({s['return_pct']:.4f}%)")
        table.add_row("APY", "-" if s["apy_pct"] is None else f"{s['apy_pct']:.2f}%")
        table.add_row("drawdown", f"{_pct(s['current_drawdown'])} (max {_pct(s['max_drawdown'])})")
        table.add_row("trades / fees", f"{s['total_trades']} / {_money(s['fees_paid'])}")
        table.add_row("funding / interest / gas",
                      f"{_money(s['funding_received'])} / {_money(s['interest_earned'])} / {_money(s['gas_paid'])}")
        if s["worst_margin_ratio"] is not None:
            table.add_row("worst margin ratio", f"{s['worst_margin_ratio']:.4f}")
        table.add_row("state", f"[{_STATE_STYLE.get(s['trading_state'], '')}]{s['trading_state']}[/]")
        table.add_row("risk", f"[{_RISK_STYLE.get(s['risk_status'], '')}]{s['risk_status']}[/]")
        return table

    def update(self, summary: dict[str, Any]) -> None:
        self.summary = summary
        if self._live is not None:
            self._live.update(self._panel(summary))
            return
        now = time.monotonic()
        if now - self._last_line >= 2.0:
            self._last_line = now
            self._line(summary)

    def _line(self, s: dict[str, Any]) -> None:
        print(f"{s['sim_time']} equity {_money(s['current_value'])} {s['share_class']} pnl {_money(s['total_pnl'])} "
              f"dd {_pct(s['current_drawdown'])} trades {s['total_trades']} state {s['trading_state']} "
              f"risk {s['risk_status']}", flush=True)

    def event(self, level: str, message: str) -> None:
        style = "yellow" if level == "warning" else "bold red"
        (self._live.console if self._live is not None else console).print(f"{level}: {message}", style=style,
                                                                           soft_wrap=True)

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()


def render_outcome(outcome: "RunOutcome") -> None:
    s = outcome.summary
    style = {"stopped": "green", "completed": "green", "emergency_stopped": "bold red", "failed": "bold red"}
    console.print(f"run {s['run_id']} {outcome.status}: {outcome.reason}", style=style.get(outcome.status, ""),
                  soft_wrap=True)
    console.print(f"final equity {_money(s['current_value'], 8)} {s['share_class']}, P&L {_money(s['total_pnl'], 8)}, "
                  f"max drawdown {_pct(s['max_drawdown'], 4)}, trades {s['total_trades']}, "
                  f"simulated {s['sim_elapsed_days']:.4f} days", soft_wrap=True)


def render_status(rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("no runs")
        return
    table = Table(title="basis-live runs", box=None, pad_edge=False)
    for column, justify in (("run", "left"), ("strategy", "left"), ("status", "left"), ("equity", "right"),
                            ("P&L", "right"), ("dd", "right"), ("trades", "right"), ("beat", "right"), ("pid", "right")):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for r in rows:
        active = r["status"] in ("running", "stopping")
        status = r["status"] if r["trading_state"] == "ACTIVE" else f"{r['status']} {r['trading_state']}"
        if active and r["process_alive"] is False:
            status += " (dead)"
        age = r["heartbeat_age_seconds"]
        table.add_row(r["run_id"], r["strategy_name"], status, f"{_money(r['current_value'])} {r['share_class']}",
                      _money(r["total_pnl"]), _pct(r["current_drawdown"]), str(r["total_trades"]),
                      f"{age:.0f}s" if active and age is not None else "-", str(r["pid"]) if active else "-")
    # What an operator acts on (the id to stop, the state, the pid to kill) is never cut short; piped
    # (cron, ssh, a log) the table is printed at its full width rather than the default 80 columns.
    for index in (0, 2, 8):
        column = table.columns[index]
        column.min_width = max(len(cell) for cell in column.cells)
    if console.is_terminal:
        console.print(table)
    else:
        natural = Measurement.get(console, console.options.update(max_width=10_000), table).maximum
        Console(highlight=False, width=max(natural, console.width)).print(table)


def render_mapping(title: str, data: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("key")
    table.add_column("value")
    for key, value in data.items():
        table.add_row(key, str(value))
    console.print(table)


def render_risk(data: dict[str, Any]) -> None:
    console.print(f"run {data['run_id']} risk [{_RISK_STYLE.get(data['status'], '')}]{data['status']}[/] "
                  f"state {data['trading_state']} action_required {data['action_required']} "
                  f"(evaluated {data['evaluated_at']})")
    table = Table()
    for column in ("limit", "configured", "policy", "current", "status"):
        table.add_column(column)
    flagged = {b["type"]: ("breach", b) for b in data["breaches"]}
    flagged.update({w["type"]: ("warning", w) for w in data["warnings"]})
    for name, limit in data["limits"].items():
        current = data["figures"].get(name)
        state, entry = flagged.get(name, ("ok", None))
        if limit.get("limit") is None:
            state = "off"
        text = state if entry is None else f"{state} ({entry['breach_pct']:+.2f}%)"
        table.add_row(name, str(limit.get("limit")), limit.get("policy", ""),
                      "-" if current is None else f"{current:.6g}", text)
    console.print(table)


def render_orders(rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("no orders")
        return
    table = Table()
    for column in ("client order id", "venue", "instrument", "side", "type", "quantity", "price", "status",
                   "filled", "avg price", "purpose"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["client_order_id"], r["venue"], r["instrument"], r["side"], r["order_type"], r["quantity"],
                      r["price"] or "-", r["status"], r["filled_quantity"], r["average_price"] or "-", r["purpose"])
    console.print(table)


def render_strategies(rows: list[dict[str, Any]]) -> None:
    table = Table(title="strategies")
    for column in ("name", "mode", "origin", "can start", "summary"):
        table.add_column(column)
    for r in rows:
        origin = r["origin"] + (" (overrides shipped)" if r["shadows_shipped"] else "")
        table.add_row(r["name"], r["mode"], origin, "yes" if r["implemented"] else "not yet", r["summary"])
    console.print(table)


class BacktestProgress:
    """A rich progress bar over simulated time (silent when disabled or not on a terminal)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> "BacktestProgress":
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("backtest {task.fields[now]}"), BarColumn(),
                                      TextColumn("{task.percentage:>5.1f}%"), TimeElapsedColumn(),
                                      console=err_console, transient=True)
            self._progress.start()
        return self

    def update(self, first: Any, last: Any, now: Any) -> None:
        if self._progress is None:
            return
        total = (last - first).total_seconds() or 1.0
        if self._task is None:
            self._task = self._progress.add_task("backtest", total=total, now="")
        self._progress.update(self._task, completed=(now - first).total_seconds(), now=now.strftime("%Y-%m-%d %H:%M"))

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def render_backtest(outcome: "RunOutcome") -> None:
    s = outcome.summary
    unit = s["share_class"]
    console.print(f"backtest {s['run_id']} {outcome.status}: {outcome.reason}  ({s['feed']})", soft_wrap=True)
    table = Table(show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("period", f"{s['sim_start']} .. {s['sim_time']} ({s['sim_elapsed_days']:.2f} days, {s['ticks']} ticks)"),
        ("initial capital", f"{_money(s['initial_capital'])} {unit}"),
        ("final equity", f"{_money(s['current_value'], 4)} {unit}"),
        ("P&L (balances)", f"{_money(s['total_pnl'], 4)} {unit}"),
        ("return", f"{s['return_pct']:.4f}%"),
        ("APY", "-" if s["apy_pct"] is None else f"{s['apy_pct']:.2f}%"),
        *((f"  {source.replace('_', ' ')}", _money(amount, 4)) for source, amount in s["pnl_by_source"].items()
          if source != "gap"),
        ("  attribution gap", f"{_money(s['attribution_gap'], 8)} {unit}"),
        ("max drawdown", _pct(s["max_drawdown"], 4)),
        ("trades", str(s["total_trades"])),
        ("min margin ratio", "-" if s["min_margin_ratio"] is None else f"{s['min_margin_ratio']:.4f}"),
        ("min health factor", "-" if s["min_health_factor"] is None else f"{s['min_health_factor']:.4f}"),
        ("max |net delta|", f"{_money(s['max_abs_delta'], 4)} {unit}"),
        ("engine time", f"{s['wall_elapsed_seconds']:.2f} s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def render_client_checks(environment: str, checks: list[dict[str, Any]]) -> None:
    table = Table(title=f"clients for {environment}")
    for column in ("client", "check", "result", "detail"):
        table.add_column(column)
    for c in checks:
        table.add_row(c["client"], c["check"], "[green]ok[/]" if c["ok"] else "[bold red]FAIL[/]", c["detail"])
    console.print(table)
