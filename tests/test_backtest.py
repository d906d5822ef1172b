"""`basis-live backtest`: the same engine over history, stored as a run, with a summary."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import Cli

REFERENCE_DATA = Path(__file__).resolve().parents[2] / "shared" / "reference-data"
MANIFEST = Path(__file__).resolve().parents[1] / "examples" / "reference-data.yaml"


def test_backtest_on_the_sample_history_is_stored_as_a_completed_run(cli: Cli) -> None:
    result = cli.run("backtest", "pure_lending", "--capital", "100000", "--start", "2025-01-01",
                     "--end", "2025-01-31", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed"
    assert summary["ticks"] == 30 * 24 + 1
    assert summary["sim_start"] == "2025-01-01T00:00:00.000Z"
    assert summary["sim_time"] == "2025-01-31T00:00:00.000Z"
    # A month of AAVE USDT supply near 5 %/yr on ~99.9k, less one supply's gas.
    pnl = Decimal(summary["total_pnl"])
    assert Decimal(200) < pnl < Decimal(700)
    assert summary["apy_pct"] == pytest.approx(((1 + float(pnl) / 1e5) ** (365 / 30) - 1) * 100, abs=1e-3)

    (run,) = cli.status()
    assert run["status"] == "completed" and run["execution_mode"] == "backtest"
    assert run["run_id"] == summary["run_id"]
    metrics = json.loads(cli.run("metrics", run["run_id"], "--json").stdout)
    assert metrics["total_pnl"] == summary["total_pnl"]


def test_backtest_is_deterministic(cli: Cli) -> None:
    args = ("backtest", "btc_basis", "--capital", "50000", "--end", "2025-01-08", "--json")
    first, second = (json.loads(cli.run(*args).stdout) for _ in range(2))
    assert first["total_pnl"] == second["total_pnl"] and first["run_id"] != second["run_id"]


def test_a_crash_in_a_backtest_trips_the_same_watchdog_policy(cli: Cli) -> None:
    result = cli.run("backtest", "btc_basis", "--capital", "100000", "--scenario", "crash", "--end", "2025-01-03",
                     "--step", "300", "--risk", "max_drawdown=0.01", "--json")
    assert result.returncode == 3  # as for `start`: the run ended in an emergency stop
    summary = json.loads(result.stdout)
    assert summary["status"] == "emergency_stopped"
    assert "max_drawdown" in summary["reason"]
    assert summary["trading_state"] == "HALTED"


def test_a_backtest_stores_a_snapshot_of_every_tick_written_in_batches_with_one_keeper_per_hour(cli: Cli) -> None:
    import sqlite3

    from basis_live.engine.engine import SNAPSHOT_BATCH

    summary = json.loads(cli.run("backtest", "btc_basis", "--capital", "100000", "--start", "2025-01-01",
                                 "--end", "2025-01-31", "--step", "1800", "--json").stdout)
    assert summary["status"] == "completed" and summary["ticks"] == 30 * 48 + 1 > 2 * SNAPSHOT_BATCH
    db = sqlite3.connect(cli.db)
    rows = db.execute("SELECT sim_time, keep, equity FROM snapshots WHERE run_id = ? ORDER BY id",
                      (summary["run_id"],)).fetchall()
    # The start, every tick, and the final one: none lost between batches, in time order.
    assert len(rows) == summary["ticks"] + 2
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    keepers = [r[0] for r in rows if r[1]]
    assert len(keepers) == len({r[0][:13] for r in rows}) == 30 * 24 + 1
    assert all(k.endswith("00:00.000Z") for k in keepers)  # the first row of each hour
    # The runs row shows the last batch's figures (what `status` and `metrics` read).
    current = db.execute("SELECT current_value FROM runs WHERE run_id = ?", (summary["run_id"],)).fetchone()[0]
    assert current == rows[-1][2] == summary["current_value"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--start", "2020-01-01"], "must lie within the data"),
        (["--start", "2025-03-01", "--end", "2025-02-01"], "start before it ends"),
        (["--start", "yesterday"], "--start 'yesterday' is not a date"),
        (["--step", "0"], "--step must be > 0"),
        (["--step", "nan"], "--step must be > 0"),
        (["--step", "inf"], "--step must be > 0"),
        (["--step", "1e-9"], "--step must be > 0 seconds (at least 1"),
        (["--start", "0001-01-01T00:00:00+01:00"], "is not a date"),
        (["--end", "9999-12-31T23:59:59-01:00"], "is not a date"),
    ],
)
def test_bad_backtest_ranges_are_one_line_lt_001(cli: Cli, args: list[str], fragment: str) -> None:
    result = cli.run("backtest", "pure_lending", "--capital", "1000", *args)
    assert result.returncode == 2
    assert result.stderr.startswith("error LT-001: ") and fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert cli.status() == []


@pytest.mark.skipif(not REFERENCE_DATA.is_dir(), reason="../shared/reference-data is absent (only outside CI)")
def test_btc_basis_backtest_over_real_history_earns_funding_and_stays_hedged(cli: Cli) -> None:
    result = cli.run("backtest", "btc_basis", "--capital", "100000", "--start", "2024-06-01", "--end", "2024-09-01",
                     "--data", str(MANIFEST), "--json", timeout=300)
    assert result.returncode == 0, result.stderr
    s = json.loads(result.stdout)
    assert s["status"] == "completed" and s["feed"].startswith("REPLAY DATA")
    # Summer 2024 funding: positive on binance/bybit (reference means ~9 %/yr), but far from absurd.
    assert 0 < float(s["funding_received"]) < 0.05 * 100000
    assert -5 < s["return_pct"] < 5
    assert s["max_drawdown"] < 0.05
    assert s["min_margin_ratio"] > 0.1
    assert float(s["max_abs_delta"]) < 0.02 * 100000


@pytest.mark.parametrize("strategy", ["btc_basis", "eth_basis", "usdt_market_neutral_no_leverage", "usdt_market_neutral"])
def test_market_neutral_modes_stay_within_delta_tolerance_on_every_tick(cli: Cli, strategy: str) -> None:
    import sqlite3

    result = cli.run("backtest", strategy, "--capital", "100000", "--end", "2025-03-01", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed"
    db = sqlite3.connect(cli.db)
    rows = db.execute("SELECT exposures_json, positions_json FROM snapshots WHERE run_id = ? ORDER BY id",
                      (summary["run_id"],)).fetchall()
    assert len(rows) > 1400  # two months, hourly
    for exposures_json, positions_json in rows[1:]:  # the first snapshot is before entry
        exposures = json.loads(exposures_json)
        gross, net = float(exposures["gross_exposure"]), float(exposures["net_delta"])
        assert gross > 0
        # delta_tolerance 0.005 of gross, plus the perp quantity step (0.001) of rounding.
        assert abs(net) / gross <= 0.005 + 1e-4, (exposures, gross, net)
        for position in json.loads(positions_json):
            if position["kind"] in ("balance", "supply", "stake"):
                assert float(position["quantity"]) >= 0, position


def test_a_basis_book_stays_hedged_through_risk_reductions_while_reducing(cli: Cli) -> None:
    import sqlite3

    summary = json.loads(cli.run("backtest", "btc_basis", "--capital", "100000", "--scenario", "squeeze",
                                 "--start", "2025-01-01", "--end", "2025-01-03", "--step", "900", "--json").stdout)
    assert summary["trading_state"] == "REDUCING"
    db = sqlite3.connect(cli.db)
    reductions = db.execute("SELECT COUNT(*) FROM events WHERE run_id = ? AND kind = 'risk.reduce'",
                            (summary["run_id"],)).fetchone()[0]
    assert reductions >= 3  # each cuts every leg by a quarter, the perps rounded to 0.001 BTC
    rows = [json.loads(r[0]) for r in db.execute(
        "SELECT exposures_json FROM snapshots WHERE run_id = ? ORDER BY id", (summary["run_id"],))][1:]
    off = [abs(float(e["net_delta"])) / float(e["gross_exposure"]) > 0.005 + 1e-4 for e in rows]
    # While REDUCING only exposure-reducing orders pass: the tick after a reduction brings the
    # larger leg down to the smaller one, so the book is never off its hedge two rows running.
    assert not any(a and b for a, b in zip(off, off[1:])), off
    assert not off[-1]


@pytest.mark.parametrize("strategy", ["eth_leveraged", "usdt_market_neutral"])
def test_leveraged_modes_never_approach_liquidation_over_a_year(cli: Cli, strategy: str) -> None:
    capital = "10" if strategy == "eth_leveraged" else "100000"
    summary = json.loads(cli.run("backtest", strategy, "--capital", capital, "--json").stdout)
    assert summary["status"] == "completed"
    # Target LTV 0.909 under an eMode liquidation threshold of 0.95: HF ~1.045, floor 1.02.
    assert 1.02 < summary["min_health_factor"] < 1.06
    assert summary["apy_pct"] is not None
    # The loop itself (staking and lending less borrowing) earns a few points; EtherFi's seasonal
    # rewards come on top, on ~11x the equity in weETH (~2 %/yr of it in the sample year).
    rewards = Decimal(summary["pnl_by_source"]["seasonal_rewards"])
    assert 0 < _apy_pct_without(summary, rewards, capital) < 15
    if strategy == "eth_leveraged":
        assert 0.05 < float(rewards) / float(capital) < 0.5
    else:
        assert rewards > 0


def _apy_pct_without(summary: dict, source_pnl: Decimal, capital: str) -> float:
    """The run's APY (%) had it not earned ``source_pnl``."""
    ret = float((Decimal(summary["total_pnl"]) - source_pnl) / Decimal(capital))
    return ((1 + ret) ** (365 / summary["sim_elapsed_days"]) - 1) * 100


def _reference_reward_yield(start: str, end: str) -> float:
    """ETH per eETH that EtherFi dropped with payout in (start, end], straight from the reference
    CSV (each drop's amount x its token's USD price / the row's ETH price; APY-only rows, from
    2025-08, as (1 + apy)^(days/365) - 1)."""
    path = (REFERENCE_DATA / "protocol_data" / "staking" / "restaking_final" /
            "etherfi_seasonal_rewards_2024-01-01_2025-09-18.csv")
    total = 0.0
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if not start < row["payout_date"] <= end:
                continue
            if row["eigen_per_eeth_weekly"]:
                total += float(row["eigen_per_eeth_weekly"]) * float(row["eigen_price_usd"]) / float(row["eth_price_usd"])
            elif row["ethfi_per_eeth"]:
                total += float(row["ethfi_per_eeth"]) * float(row["ethfi_price_usd"]) / float(row["eth_price_usd"])
            else:
                total += (1 + float(row["defillama_reward_apy"])) ** (float(row["period_days"]) / 365) - 1
    return total


PAPER_MODES = [("pure_lending", "100000"), ("btc_basis", "100000"), ("eth_basis", "100000"),
               ("eth_staking_only", "10"), ("eth_leveraged", "10"), ("usdt_market_neutral_no_leverage", "100000"),
               ("usdt_market_neutral", "100000")]


@pytest.mark.parametrize(("strategy", "capital"), PAPER_MODES)
def test_pnl_by_source_adds_up_to_balance_pnl_for_every_mode(cli: Cli, strategy: str, capital: str) -> None:
    summary = json.loads(cli.run("backtest", strategy, "--capital", capital, "--end", "2025-02-15", "--json").stdout)
    sources = summary["pnl_by_source"]
    tracked = sum(Decimal(v) for k, v in sources.items() if k != "gap")
    pnl = Decimal(summary["total_pnl"])
    # Each source is tracked from its own events; the gap is what they miss: < 0.01 % of capital.
    assert abs(Decimal(sources["gap"])) < Decimal(capital) * Decimal("0.0001")
    assert tracked + Decimal(sources["gap"]) == pytest.approx(pnl, abs=Decimal("1e-7"))
    assert Decimal(summary["fees_paid"]) == -Decimal(sources["fees"])


@pytest.mark.skipif(not REFERENCE_DATA.is_dir(), reason="../shared/reference-data is absent (only outside CI)")
@pytest.mark.parametrize(("strategy", "capital"), PAPER_MODES)
def test_every_mode_backtests_a_year_of_real_history_within_sane_bands(cli: Cli, strategy: str, capital: str) -> None:
    result = cli.run("backtest", strategy, "--capital", capital, "--start", "2024-06-01", "--end", "2025-06-01",
                     "--data", str(MANIFEST), "--json", timeout=300)
    assert result.returncode == 0, result.stderr
    s = json.loads(result.stdout)
    assert s["status"] == "completed", s.get("reason")
    assert abs(Decimal(s["attribution_gap"])) < Decimal(capital) * Decimal("0.0001")
    # Real 2024-25 yields: lending ~5 %, staking ~3 %, funding ~9 %, loops a few points more; a
    # result outside -10..+30 % APY would be the old system's kind of nonsense. EtherFi's seasonal
    # rewards come on top, checked on their own below: 2.8 % of the weETH held, ~11x equity in a loop.
    assert set(s["pnl_by_source"]) == {"price", "funding", "lending_interest", "borrow_cost", "staking_yield",
                                       "seasonal_rewards", "fees", "slippage", "gas", "gap"}
    rewards = Decimal(s["pnl_by_source"]["seasonal_rewards"])
    assert -10 < _apy_pct_without(s, rewards, capital) < 30, s["apy_pct"]
    if strategy == "pure_lending":
        assert 3 < s["apy_pct"] < 9
    if strategy in ("eth_staking_only", "eth_leveraged"):
        # Independently from the CSV: the ETH per eETH dropped over the year, on the weETH held
        # (~capital in eETH staked; capital / (1 - target LTV) in the loop, more as it compounds).
        weeth_per_capital = 1.0 if strategy == "eth_staking_only" else 1 / (1 - 0.93 * (1 - 0.0225))
        expected = float(capital) * weeth_per_capital * _reference_reward_yield("2024-06-01", "2025-06-01")
        assert 0.025 < expected / float(capital) / weeth_per_capital < 0.03  # 2.8 % of the eETH
        ceiling = 1.15 if strategy == "eth_staking_only" else 1.4  # the loop compounds a ~35 % year
        assert 0.85 * expected < float(rewards) < ceiling * expected, (float(rewards), expected)
        # The file's APY-only rows (2025-08 on) are converted, and every run on it says so.
        import sqlite3

        notes = sqlite3.connect(cli.db).execute(
            "SELECT level, message FROM events WHERE run_id = ? AND kind = 'feed.note'", (s["run_id"],)).fetchall()
        assert len(notes) == 1 and notes[0][0] == "warning" and "only an APY approximation" in notes[0][1]
    elif strategy.startswith("usdt_market_neutral"):
        assert rewards > 0
    else:
        assert rewards == 0  # no weETH
    if strategy in ("eth_leveraged", "usdt_market_neutral"):
        assert s["min_health_factor"] > 1.0


@pytest.mark.parametrize(("strategy", "capital"), [("btc_basis", "100000"), ("usdt_market_neutral", "100000"),
                                                   ("eth_leveraged", "10")])
def test_attribution_reconciles_with_balance_pnl_on_every_snapshot(cli: Cli, strategy: str, capital: str) -> None:
    import sqlite3

    summary = json.loads(cli.run("backtest", strategy, "--capital", capital, "--end", "2025-02-01", "--json").stdout)
    rows = sqlite3.connect(cli.db).execute(
        "SELECT pnl, pnl_by_source_json FROM snapshots WHERE run_id = ? ORDER BY id", (summary["run_id"],)).fetchall()
    assert len(rows) > 700
    limit = Decimal(capital) * Decimal("0.0001")
    for pnl, sources_json in rows[1:]:
        sources = json.loads(sources_json)
        tracked = sum(Decimal(v) for k, v in sources.items() if k != "gap")
        assert abs(Decimal(sources["gap"])) < limit
        # Each value is rounded to 1e-8 when stored: nine sources and the gap.
        assert tracked + Decimal(sources["gap"]) == pytest.approx(Decimal(pnl), abs=Decimal("1e-7"))


def _momentum_signals(path: Path, start: str, end: str) -> int:
    """A deterministic weekly signals file from the replayed binance BTC perp: each Monday-to-Monday
    week long when the price is above its level a week earlier, else short; stop-loss 5 % and
    take-profit 10 % away (one-week candles). Returns how many signals it wrote."""
    import asyncio
    from datetime import datetime, timedelta, timezone

    from basis_live.feeds.replay import ReplayFeed

    feed = ReplayFeed.from_path(MANIFEST)

    def mark(ts: datetime) -> float:
        return asyncio.run(feed.snapshot_at(ts)).perp_mark["binance"]["BTC"]

    day = datetime.fromisoformat(start).replace(tzinfo=timezone.utc) + timedelta(days=7)
    last = datetime.fromisoformat(end).replace(tzinfo=timezone.utc)
    rows = []
    while day < last:
        price, week_ago = mark(day), mark(day - timedelta(days=7))
        up = price > week_ago
        rows.append(f"{day.isoformat().replace('+00:00', 'Z')},{'long' if up else 'short'},0.8,"
                    f"{price * (1.1 if up else 0.9)},{price * (0.95 if up else 1.05)}\n")
        day += timedelta(days=7)
    path.write_text("timestamp,signal,confidence,take_profit,stop_loss\n" + "".join(rows))
    return len(rows)


@pytest.mark.skipif(not REFERENCE_DATA.is_dir(), reason="../shared/reference-data is absent (only outside CI)")
def test_ml_btc_directional_backtests_a_year_of_real_history_in_btc_within_sane_bands(cli: Cli, tmp_path: Path) -> None:
    import sqlite3

    signals = tmp_path / "momentum.csv"
    assert _momentum_signals(signals, "2024-06-01", "2025-06-01") == 52
    capital = Decimal(1)
    result = cli.run("backtest", "ml_btc_directional", "--capital", str(capital), "--start", "2024-06-01",
                     "--end", "2025-06-01", "--data", str(MANIFEST), "--set", f"ml.signal_source={signals}",
                     "--set", "ml.candle_seconds=604800", "--step", "3600",
                     # The toy rule is not a good strategy: a year of it draws down past the mode's 15 %
                     # emergency stop. This test is about the BTC accounting, so let it run the year.
                     "--risk", "max_drawdown=0.5", "--json", timeout=300)
    assert result.returncode == 0, result.stderr
    s = json.loads(result.stdout)
    assert s["status"] == "completed", s.get("reason")
    assert s["share_class"] == "BTC" and s["feed"].startswith("REPLAY DATA")
    # One trade in and one out a week at most, each paying 0.05 % of ~1 BTC of notional, in BTC.
    assert 60 < s["total_trades"] <= 2 * 52
    assert Decimal("0.02") < Decimal(s["fees_paid"]) < Decimal("0.06")
    assert Decimal(s["funding_received"]) != 0 and abs(Decimal(s["funding_received"])) < Decimal("0.1")
    # A leverage-1 BTC directional book: P&L in BTC, nowhere near the capital's own size.
    assert -60 < s["return_pct"] < 100
    assert s["min_margin_ratio"] > 0.5  # 1x notional on BTC margin
    assert abs(Decimal(s["attribution_gap"])) < capital * Decimal("0.0001")
    rows = sqlite3.connect(cli.db).execute(
        "SELECT pnl, pnl_by_source_json FROM snapshots WHERE run_id = ? ORDER BY id", (s["run_id"],)).fetchall()
    for pnl, sources_json in rows[1:]:
        sources = json.loads(sources_json)
        assert abs(Decimal(sources["gap"])) < capital * Decimal("0.0001")
        tracked = sum(Decimal(v) for k, v in sources.items() if k != "gap")
        assert tracked + Decimal(sources["gap"]) == pytest.approx(Decimal(pnl), abs=Decimal("1e-7"))


def test_a_small_pure_lending_account_keeps_its_gas_and_never_goes_below_zero(cli: Cli) -> None:
    import sqlite3

    # One supply's gas is ~2 % of 500 USDT: past the mode's drawdown stop, which is not what this is about.
    summary = json.loads(cli.run("backtest", "pure_lending", "--capital", "500", "--start", "2025-01-01",
                                 "--end", "2025-01-08", "--risk", "max_drawdown=0.1", "--json").stdout)
    assert summary["status"] == "completed" and summary["total_trades"] == 1  # it supplied
    db = sqlite3.connect(cli.db)
    for (positions_json,) in db.execute("SELECT positions_json FROM snapshots WHERE run_id = ?", (summary["run_id"],)):
        for position in json.loads(positions_json):
            assert float(position["quantity"]) >= 0, position
    # It kept the gas of a supply and a withdrawal: stopping it can still unwind.
    last = json.loads(db.execute("SELECT positions_json FROM snapshots WHERE run_id = ? ORDER BY id DESC LIMIT 1",
                                 (summary["run_id"],)).fetchone()[0])
    wallet = next(p for p in last if p["venue"] == "wallet" and p["symbol"] == "USDT")
    assert float(wallet["quantity"]) > 1


def test_an_order_the_venue_keeps_rejecting_is_retried_with_backoff_not_every_tick(cli: Cli) -> None:
    import sqlite3

    # 0.01 ETH cannot pay the gas of a stake on most days: the paper chain refuses it.
    summary = json.loads(cli.run("backtest", "eth_staking_only", "--capital", "0.01", "--start", "2025-01-01",
                                 "--end", "2025-02-01", "--risk", "max_drawdown=0.9", "--json").stdout)
    assert summary["status"] == "completed" and summary["ticks"] == 31 * 24 + 1
    db = sqlite3.connect(cli.db)
    rejected = [row[0] for row in db.execute(
        "SELECT sim_time FROM orders WHERE run_id = ? AND status = 'rejected' ORDER BY rowid", (summary["run_id"],))]
    # Each try waits twice as long as the last (one monitoring interval, 60 s, at first) up to a day:
    # 122 hourly rejections without the backoff before gas was cheap enough.
    assert 3 <= len(rejected) <= 40
    assert db.execute("SELECT COUNT(*) FROM events WHERE run_id = ? AND kind = 'order.backoff'",
                      (summary["run_id"],)).fetchone()[0] >= 1
