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

    python scripts/bench_backtest.py [--data examples/reference-data.yaml] [--modes a,b] [--json]
"""

from __future__ import annotations

import argparse
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


def bench_mode(mode: str, capital: str, data: Path | None, start: datetime | None, end: datetime | None) -> dict:
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
        outcome = service.run_backtest(prepared, first, last, 3600.0)
        service.close()
    summary = outcome.summary
    engine_seconds = summary["wall_elapsed_seconds"]
    return {
        "mode": mode, "status": outcome.status, "ticks": summary["ticks"], "trades": summary["total_trades"],
        "data_load_seconds": round(load_seconds, 3),
        "engine_seconds": engine_seconds, "ticks_per_second": round(summary["ticks"] / engine_seconds, 1),
        "apy_pct": summary["apy_pct"], "attribution_gap": summary["attribution_gap"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="replay manifest (default: the built-in sample year)")
    parser.add_argument("--start", help="YYYY-MM-DD (default: the data's start)")
    parser.add_argument("--modes", help="comma-separated subset")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("XDG_STATE_HOME", tempfile.mkdtemp())
    start = datetime.fromisoformat(args.start).replace(tzinfo=timezone.utc) if args.start else None
    modes = args.modes.split(",") if args.modes else list(MODES)
    rows = [bench_mode(mode, MODES[mode], args.data, start, None) for mode in modes]
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
