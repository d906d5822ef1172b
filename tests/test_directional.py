"""ml_usdt_directional: signals in, positions out; exits by stop-loss, take-profit, end of candle."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from basis_live.config import ConfigManager
from basis_live.errors import ConfigError
from basis_live.feeds.sample import SampleFeed
from basis_live.modes.directional import InverseDirectional
from basis_live.modes.signals import Signal, load_signals
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
    assert btc.returncode == 2 and "ml_btc_directional needs ml.signal_source" in btc.stderr
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


def test_ml_btc_directional_trades_inverse_contracts_with_pnl_in_btc_and_attribution_adding_up_every_tick(
        cli: Cli, tmp_path: Path) -> None:
    feed = SampleFeed()
    p0, p1 = _mark(feed, T0 + timedelta(hours=3)), _mark(feed, T0 + timedelta(hours=3, minutes=5))
    direction = "long" if p1 > p0 else "short"
    stop = (p0 + p1) / 2  # the price moves against a position in the other direction: stopped out
    other = "short" if direction == "long" else "long"
    rows = [
        ("2025-01-01T00:00:00Z", "long", 0.9, "", ""),            # held to the end of its 1 h candle
        ("2025-01-01T01:30:00Z", "short", 0.3, "", ""),           # below the 0.6 threshold: no trade
        ("2025-01-01T03:00:00Z", other, 0.8, "", stop),           # stop-loss five minutes in
        ("2025-01-01T07:30:00Z", "short", 0.9, "", ""),           # held through the 08:00 funding
    ]
    signals = tmp_path / "signals.csv"
    signals.write_text("timestamp,signal,confidence,take_profit,stop_loss\n" +
                       "".join(",".join(map(str, r)) + "\n" for r in rows))
    result = cli.run("backtest", "ml_btc_directional", "--capital", "0.2", "--end", "2025-01-01T09:00",
                     "--step", "300", "--set", f"ml.signal_source={signals}", "--set", "ml.candle_seconds=3600",
                     "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["share_class"] == "BTC"
    orders = json.loads(cli.run("orders", summary["run_id"], "--json").stdout)
    timeline = [(o["sim_time"][11:16], o["instrument"], o["side"], o["purpose"], o["status"]) for o in orders]
    entry_side, exit_side = ("sell", "buy") if other == "short" else ("buy", "sell")
    assert timeline == [
        ("00:00", "BTC/USD:BTC", "buy", "entry_full", "filled"),
        ("01:00", "BTC/USD:BTC", "sell", "exit_full", "filled"),
        ("03:00", "BTC/USD:BTC", entry_side, "entry_full", "filled"),
        ("03:05", "BTC/USD:BTC", exit_side, "exit_full", "filled"),
        ("07:30", "BTC/USD:BTC", "sell", "entry_full", "filled"),
        ("08:30", "BTC/USD:BTC", "buy", "exit_full", "filled"),
    ]
    # Notional = 0.2 BTC x price x leverage 1, in whole contracts of 100 USD.
    contracts = Decimal(orders[0]["quantity"])
    assert contracts == contracts.to_integral_value() and contracts == int(Decimal("0.2") * Decimal(repr(_mark(feed, T0))) / 100)
    # Fees are paid in BTC: contracts x 100 / price x 0.0005 (taker) per fill.
    assert all(o["fee_asset"] == "BTC" for o in orders)
    fees = sum(Decimal(o["fee"]) for o in orders)
    assert Decimal(summary["fees_paid"]) == fees
    assert fees == pytest.approx(Decimal(6) * Decimal("0.2") * Decimal("0.0005"), rel=Decimal("0.05"))
    # The short held over 08:00 paid or received funding, in BTC: about 0.2 BTC x the 8 h rate.
    funding = Decimal(summary["funding_received"])
    assert funding != 0 and abs(funding) < Decimal("0.2") * Decimal("0.001")
    # P&L is in BTC: a few short holds cost a small fraction of the capital, not thousands.
    assert abs(Decimal(summary["total_pnl"])) < Decimal("0.01")
    assert summary["net_delta"] == "0E-8"  # flat at the end
    rows_ = sqlite3.connect(cli.db).execute(
        "SELECT pnl, pnl_by_source_json FROM snapshots WHERE run_id = ? ORDER BY id", (summary["run_id"],)).fetchall()
    assert len(rows_) > 100
    for pnl, sources_json in rows_[1:]:
        sources = json.loads(sources_json)
        tracked = sum(Decimal(v) for k, v in sources.items() if k != "gap")
        assert abs(Decimal(sources["gap"])) < Decimal("0.2") * Decimal("0.0001"), sources
        assert tracked + Decimal(sources["gap"]) == pytest.approx(Decimal(pnl), abs=Decimal("1e-7"))


def test_the_inverse_mode_exits_by_stop_loss_before_take_profit_before_end_of_candle(tmp_path: Path) -> None:
    signals = tmp_path / "s.csv"
    signals.write_text("timestamp,signal,confidence,take_profit,stop_loss\n2025-01-01T00:00:00Z,long,0.9,,\n")
    config = ConfigManager().load("ml_btc_directional", [f"ml.signal_source={signals}"])
    mode = InverseDirectional(config)
    assert mode.symbol == "BTC/USD:BTC"
    assert mode.initial_funding(Decimal("0.5"), None) == {"binance": {"BTC": Decimal("0.5")}}  # type: ignore[arg-type]
    # 0.5 BTC at 60000 x leverage 1 = 30000 USD = 300 contracts.
    assert mode.entry_quantity(Decimal("0.5"), 60_000.0) == Decimal(300)
    late = T0 + timedelta(hours=1)
    both = Signal(T0, "long", 0.9, take_profit=50_000.0, stop_loss=70_000.0)  # a mark of 60k is through both
    assert mode._exit_reason(both, 60_000.0, late) == "stop_loss"
    target = Signal(T0, "long", 0.9, take_profit=50_000.0, stop_loss=40_000.0)
    assert mode._exit_reason(target, 60_000.0, late) == "take_profit"
    assert mode._exit_reason(Signal(T0, "long", 0.9, None, None), 60_000.0, late) == "end_of_candle"
    assert mode._exit_reason(Signal(T0, "long", 0.9, None, None), 60_000.0, T0 + timedelta(minutes=1)) is None
