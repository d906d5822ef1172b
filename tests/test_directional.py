"""ml_usdt_directional: signals in, positions out; exits by stop-loss, take-profit, end of candle."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from basis_live.errors import ConfigError
from basis_live.feeds.sample import SampleFeed
from basis_live.modes.signals import load_signals
from conftest import Cli

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _mark(feed: SampleFeed, ts: datetime) -> float:
    return asyncio.run(feed.snapshot_at(ts)).perp_mark["binance"]["BTC"]


def test_signals_drive_entries_and_exits_in_precedence_order(cli: Cli, tmp_path: Path) -> None:
    feed = SampleFeed()
    p0, p1 = _mark(feed, T0 + timedelta(hours=3)), _mark(feed, T0 + timedelta(hours=3, minutes=5))
    direction = "long" if p1 > p0 else "short"
    target = (p0 + p1) / 2  # reached at the first 5-minute tick after entry
    p5 = _mark(feed, T0 + timedelta(hours=5))
    rows = [
        ("2025-01-01T00:00:00Z", "long", 0.9, "", ""),           # held to the end of its 1 h candle
        ("2025-01-01T01:30:00Z", "short", 0.3, "", ""),          # below the 0.6 threshold: no trade
        ("2025-01-01T02:00:00Z", "neutral", 0.99, "", ""),       # neutral: flat
        ("2025-01-01T03:00:00Z", direction, 0.8, target, ""),    # take-profit five minutes in
        ("2025-01-01T05:00:00Z", "long", 0.95, "", p5 * 1.5),    # already through its stop: no trade
    ]
    signals = tmp_path / "signals.csv"
    signals.write_text("timestamp,signal,confidence,take_profit,stop_loss\n" +
                       "".join(",".join(map(str, r)) + "\n" for r in rows))
    result = cli.run("backtest", "ml_usdt_directional", "--capital", "10000", "--end", "2025-01-01T08:00",
                     "--step", "300", "--set", f"ml.signal_source={signals}", "--set", "ml.candle_seconds=3600",
                     "--json")
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    orders = json.loads(cli.run("orders", run_id, "--json").stdout)
    timeline = [(o["sim_time"][11:16], o["side"], o["purpose"], o["status"]) for o in orders]
    entry_side = "buy" if direction == "long" else "sell"
    exit_side = "sell" if direction == "long" else "buy"
    assert timeline == [
        ("00:00", "buy", "entry_full", "filled"),
        ("01:00", "sell", "exit_full", "filled"),
        ("03:00", entry_side, "entry_full", "filled"),
        ("03:05", exit_side, "exit_full", "filled"),
    ]
    # Position notional = equity x position_leverage (1): about 10k USDT of BTC.
    assert float(orders[0]["quantity"]) * p0 == pytest.approx(10_000, rel=0.05)


def test_ml_modes_without_signals_or_with_bad_signals_are_refused(cli: Cli, tmp_path: Path) -> None:
    missing = cli.run("backtest", "ml_usdt_directional", "--capital", "1000")
    assert missing.returncode == 2 and "needs ml.signal_source" in missing.stderr
    btc = cli.run("backtest", "ml_btc_directional", "--capital", "1")
    assert btc.returncode == 2 and "inverse" in btc.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,signal,confidence,take_profit,stop_loss\n2025-01-01T00:00:00Z,up,0.9,,\n")
    with pytest.raises(ConfigError, match="line 2: signal 'up' is not long, short or neutral"):
        load_signals(str(bad))


def test_signals_load_from_jsonl_and_from_an_http_endpoint(tmp_path: Path) -> None:
    import http.server
    import threading

    payload = [{"timestamp": "2025-01-01T00:05:00Z", "signal": "short", "confidence": 0.7,
                "take_profit": 90000, "stop_loss": 99000}]
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text("\n".join(json.dumps(p) for p in payload) + "\n")
    assert load_signals(str(jsonl))[0].stop_loss == 99000

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (signal,) = load_signals(f"http://127.0.0.1:{server.server_port}/signals")
        assert (signal.signal, signal.confidence, signal.take_profit) == ("short", 0.7, 90000.0)
    finally:
        server.shutdown()
