#!/usr/bin/env python3
"""Benchmark: a one-year hourly backtest of every paper mode.

For each mode it reports the data-load time (opening the feed), the engine time (from the first
snapshot to the final summary, as the engine measures it: `wall_elapsed_seconds`), ticks and ticks
per second. Every run writes to a throw-away state database. The issue's goal:
usdt_market_neutral over a year of hourly data in under 0.5 s of engine time.

    python scripts/bench_backtest.py [--data examples/reference-data.yaml] [--modes a,b] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

MODES = {
    "pure_lending": "100000", "btc_basis": "100000", "eth_basis": "100000", "eth_staking_only": "10",
    "eth_leveraged": "10", "usdt_market_neutral_no_leverage": "100000", "usdt_market_neutral": "100000",
}


def bench_mode(mode: str, capital: str, data: Path | None, start: datetime | None, end: datetime | None) -> dict:
    from basis_live.feeds.factory import open_feed
    from basis_live.service import LiveTradingService

    load_started = time.perf_counter()
    feed = open_feed("replay" if data else "sample", data)
    load_seconds = time.perf_counter() - load_started
    first = start or feed.start
    last = end or (first.replace(year=first.year + 1) if feed.end is None else min(feed.end, first.replace(year=first.year + 1)))
    with tempfile.TemporaryDirectory() as tmp:
        service = LiveTradingService(Path(tmp) / "bench.db")
        prepared = service.create_request(mode, capital, feed="replay" if data else "sample", data=data, backtest=True)
        outcome = service.run_backtest(prepared, first, last, 3600.0)
        service.close()
    summary = outcome.summary
    engine_seconds = summary["wall_elapsed_seconds"]
    return {
        "mode": mode, "status": outcome.status, "ticks": summary["ticks"], "data_load_seconds": round(load_seconds, 3),
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
    print(f"{'mode':34} {'ticks':>6} {'load s':>7} {'engine s':>9} {'ticks/s':>8} {'APY %':>7} {'gap':>12}")
    for r in rows:
        print(f"{r['mode']:34} {r['ticks']:>6} {r['data_load_seconds']:>7.3f} {r['engine_seconds']:>9.3f} "
              f"{r['ticks_per_second']:>8.1f} {r['apy_pct']:>7.2f} {r['attribution_gap']:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
