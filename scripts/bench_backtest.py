#!/usr/bin/env python3
"""Benchmark: a one-year hourly backtest of every paper mode.

For each mode it reports the data-load time (opening the feed), the engine time (from the first
snapshot to the final summary, as the engine measures it: `wall_elapsed_seconds`), ticks, ticks
per second and trades. Every run writes to a throw-away state database. The issue's goal:
usdt_market_neutral over a year of hourly data in under 0.5 s of engine time.

The ML modes (ml_btc_directional on 1 BTC, ml_usdt_directional on 100000 USDT) need a signals file:
the bench writes one into the run's temporary directory first, a deterministic weekly momentum rule
on the feed's own binance BTC perp over the benchmark range (long when the price is above its level
a week earlier, else short; 10 % take-profit, 5 % stop-loss; one-week candles), and passes it as
`ml.signal_source`. Writing it is data preparation, not counted in the load or engine time. Their
trades column shows the signals were used.

With ``--parts`` it also says where a tick's time goes: each named part of the engine's work (feed
snapshot, publish to the paper venues, fills, account reads, valuation, attribution, mode decision,
execution, risk, snapshot rows built and written, watchdog) timed exclusive of the parts it calls,
in microseconds per tick. The timers cost about a microsecond per timed call, so these runs are
slower than the plain ones; read the shares, not the sum.

    python scripts/bench_backtest.py [--data examples/reference-data.yaml] [--modes a,b] [--parts] [--json]
"""

from __future__ import annotations

import argparse
import collections
import inspect
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

MODES = {
    "pure_lending": "100000", "btc_basis": "100000", "eth_basis": "100000", "eth_staking_only": "10",
    "eth_leveraged": "10", "usdt_market_neutral_no_leverage": "100000", "usdt_market_neutral": "100000",
    "ml_btc_directional": "1", "ml_usdt_directional": "100000",
}
#: Modes that trade from a signals file (see write_momentum_signals).
ML_MODES = ("ml_btc_directional", "ml_usdt_directional")
WEEK = timedelta(days=7)


def write_momentum_signals(feed, path: Path, start: datetime, end: datetime) -> int:
    """A deterministic weekly signals CSV from the feed's binance BTC perp, as the backtest tests'
    helper: every week from ``start`` + 7 days to before ``end``, long when the price is above its
    level a week earlier, else short; confidence 0.8, take-profit 10 % and stop-loss 5 % away.
    Returns how many signals it wrote."""
    import asyncio

    async def marks(times: list[datetime]) -> list[float]:
        return [(await feed.snapshot_at(ts)).perp_mark["binance"]["BTC"] for ts in times]

    days = []
    day = start + WEEK
    while day < end:
        days.append(day)
        day += WEEK
    prices = asyncio.run(marks([start] + days))
    rows = []
    for day, week_ago, price in zip(days, prices, prices[1:]):
        up = price > week_ago
        rows.append(f"{day.isoformat().replace('+00:00', 'Z')},{'long' if up else 'short'},0.8,"
                    f"{price * (1.1 if up else 0.9)},{price * (0.95 if up else 1.05)}\n")
    path.write_text("timestamp,signal,confidence,take_profit,stop_loss\n" + "".join(rows))
    return len(rows)


class PartTimer:
    """Exclusive wall time per labelled part: a timed call's time less that of the timed calls it
    makes. The backtest loop runs one call at a time (no other task interleaves), so one stack of
    open calls is enough."""

    def __init__(self) -> None:
        self.totals: collections.Counter[str] = collections.Counter()
        self._open: list[list] = []  # [label, started, time in timed children]

    def _enter(self, label: str) -> None:
        self._open.append([label, time.perf_counter(), 0.0])

    def _exit(self) -> None:
        label, started, children = self._open.pop()
        elapsed = time.perf_counter() - started
        self.totals[label] += elapsed - children
        if self._open:
            self._open[-1][2] += elapsed

    def wrap(self, owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)
        timer = self
        if inspect.iscoroutinefunction(original):
            async def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
                timer._enter(label)
                try:
                    return await original(*args, **kwargs)
                finally:
                    timer._exit()
        else:
            def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
                timer._enter(label)
                try:
                    return original(*args, **kwargs)
                finally:
                    timer._exit()
        setattr(owner, name, timed)

    def install(self) -> None:
        """Time the engine's parts (once per process: every mode's run goes through the same classes)."""
        from basis_live.engine import engine
        from basis_live.engine.attribution import PnLAttribution
        from basis_live.engine.orders import OrderManager
        from basis_live.feeds.replay import ReplayFeed
        from basis_live.feeds.sample import SampleFeed
        from basis_live.modes import basis, directional, leveraged, market_neutral, pure_lending, staking  # noqa: F401
        from basis_live.modes.base import StrategyMode
        from basis_live.risk.watchdog import RiskWatchdog

        cls = engine.EventDrivenStrategyEngine
        for owner, name, label in [
            (ReplayFeed, "snapshot_at", "feed snapshot"), (SampleFeed, "snapshot_at", "feed snapshot"),
            (cls, "publish", "publish to paper venues"), (cls, "tick", "tick, the rest"),
            (OrderManager, "collect_fills", "fills and ledger collected"),
            (cls, "fetch_accounts", "account reads"), (engine, "value_portfolio", "valuation"),
            (PnLAttribution, "step", "P&L attribution"), (cls, "execute", "orders sent"),
            (cls, "evaluate_risk", "risk evaluation"), (cls, "record_snapshot", "snapshot row built"),
            (cls, "flush_snapshots", "snapshot rows written"), (RiskWatchdog, "check", "watchdog, the rest"),
        ]:
            self.wrap(owner, name, label)
        modes = list(StrategyMode.__subclasses__())
        while modes:
            mode = modes.pop()
            modes.extend(mode.__subclasses__())
            if "decide" in vars(mode):
                self.wrap(mode, "decide", "mode decision")

    def take(self) -> dict[str, float]:
        totals, self.totals = dict(self.totals), collections.Counter()
        return totals


def bench_mode(mode: str, capital: str, data: Path | None, start: datetime | None, end: datetime | None,
               parts: PartTimer | None = None) -> dict:
    from basis_live.feeds.factory import open_feed
    from basis_live.service import LiveTradingService

    load_started = time.perf_counter()
    feed = open_feed("replay" if data else "sample", data)
    load_seconds = time.perf_counter() - load_started
    first = start or feed.start
    last = end or (first.replace(year=first.year + 1) if feed.end is None else min(feed.end, first.replace(year=first.year + 1)))
    with tempfile.TemporaryDirectory() as tmp:
        overrides, risk_overrides = [], []
        if mode in ML_MODES:
            signals = Path(tmp) / "momentum.csv"
            write_momentum_signals(feed, signals, first, last)
            overrides = [f"ml.signal_source={signals}", f"ml.candle_seconds={int(WEEK.total_seconds())}"]
            # The toy rule is not a good strategy: it draws down past the modes' 15 % emergency stop
            # within weeks (and past 50 % within the year), which would end the run early and time a
            # fraction of the year. The bench is about engine time, so the drawdown stop is off.
            risk_overrides = ["max_drawdown=null"]
        service = LiveTradingService(Path(tmp) / "bench.db")
        prepared = service.create_request(mode, capital, overrides=overrides, risk_overrides=risk_overrides,
                                          feed="replay" if data else "sample", data=data, backtest=True)
        if parts is not None:
            parts.take()  # what the signals file and setup cost is not the engine's
        outcome = service.run_backtest(prepared, first, last, 3600.0)
        service.close()
    summary = outcome.summary
    engine_seconds = summary["wall_elapsed_seconds"]
    row_parts = ({label: round(seconds / summary["ticks"] * 1e6, 1) for label, seconds in
                  sorted(parts.take().items(), key=lambda item: -item[1])} if parts is not None else None)
    return {
        "mode": mode, "status": outcome.status, "ticks": summary["ticks"], "trades": summary["total_trades"],
        "data_load_seconds": round(load_seconds, 3),
        "engine_seconds": engine_seconds, "ticks_per_second": round(summary["ticks"] / engine_seconds, 1),
        "apy_pct": summary["apy_pct"], "attribution_gap": summary["attribution_gap"],
        **({"parts_us_per_tick": row_parts} if row_parts is not None else {}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="replay manifest (default: the built-in sample year)")
    parser.add_argument("--start", help="YYYY-MM-DD (default: the data's start)")
    parser.add_argument("--modes", help="comma-separated subset")
    parser.add_argument("--parts", action="store_true", help="also time each part of a tick (slower runs)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("XDG_STATE_HOME", tempfile.mkdtemp())
    start = datetime.fromisoformat(args.start).replace(tzinfo=timezone.utc) if args.start else None
    modes = args.modes.split(",") if args.modes else list(MODES)
    parts = None
    if args.parts:
        parts = PartTimer()
        parts.install()
    rows = [bench_mode(mode, MODES[mode], args.data, start, None, parts) for mode in modes]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"one-year hourly backtests, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"data: {args.data or 'built-in sample'}")
    print(f"{'mode':34} {'ticks':>6} {'load s':>7} {'engine s':>9} {'ticks/s':>8} {'trades':>6} {'APY %':>7} "
          f"{'gap':>12}  status")
    for r in rows:
        print(f"{r['mode']:34} {r['ticks']:>6} {r['data_load_seconds']:>7.3f} {r['engine_seconds']:>9.3f} "
              f"{r['ticks_per_second']:>8.1f} {r['trades']:>6} {r['apy_pct']:>7.2f} {r['attribution_gap']:>12}  "
              f"{r['status']}")
    for r in rows:
        if "parts_us_per_tick" in r:
            total = sum(r["parts_us_per_tick"].values())
            print(f"\n{r['mode']}: where a tick goes (exclusive µs per tick, with timers: engine "
                  f"{r['engine_seconds']:.3f} s)")
            for label, us in r["parts_us_per_tick"].items():
                print(f"  {label:30} {us:8.1f} {us / total * 100:6.1f} %")
            print(f"  {'untimed (loop, timers)':30} {r['engine_seconds'] / r['ticks'] * 1e6 - total:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
