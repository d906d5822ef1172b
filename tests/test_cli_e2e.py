"""End to end: the installed basis-live script in separate processes, as an operator uses it."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import Cli, wait_for


def test_status_from_another_process_shows_a_running_paper_run_and_stop_is_acknowledged(cli: Cli) -> None:
    engine = cli.start("pure_lending", "--capital", "100000", "--speed", "3600")
    run = cli.wait_running(engine)
    assert run["strategy_name"] == "pure_lending"
    assert run["initial_capital"] == 100000.0
    assert run["process_alive"] is True
    for key in ("run_id", "status", "current_value", "total_pnl", "total_trades", "current_drawdown",
                "last_heartbeat", "pid"):
        assert key in run
    assert run["last_heartbeat"].endswith("Z")

    # The engine supplies the capital to AAVE on its first tick.
    wait_for(lambda: cli.status()[0]["total_trades"] >= 1)

    stopped = cli.run("stop", run["run_id"], "--timeout", "10")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith(f"run {run['run_id']} stopped: stopped by operator (acknowledged in ")
    assert engine.wait(timeout=15) == 0
    output = engine.stdout.read()
    assert output.splitlines()[0].startswith("PAPER TRADING on SAMPLE DATA")
    final = cli.status()[0]
    assert final["status"] == "stopped"
    assert final["stop_reason"] == "stopped by operator"
    # Interest accrued on the supplied capital minus the gas of one supply.
    assert final["current_value"] != 100000.0


def test_emergency_stop_records_the_reason_and_cancels_open_orders(cli: Cli) -> None:
    # Limit orders 5% away from the market rest on the venues: there is something to cancel.
    engine = cli.start("btc_basis", "--capital", "100000", "--speed", "60",
                       "--set", "execution.order_type=limit", "--set", "execution.limit_offset_bps=500",
                       "--set", "execution.order_timeout_seconds=86400")
    run = cli.wait_running(engine)
    run_id = run["run_id"]

    def open_orders() -> list[dict]:
        result = cli.run("orders", run_id, "--open", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    resting = wait_for(open_orders)
    assert {o["venue"] for o in resting} == {"binance", "bybit", "okx"}

    halted = cli.run("emergency-stop", run_id, "--reason", "exchange incident drill")
    assert halted.returncode == 0, halted.stderr
    assert engine.wait(timeout=15) == 3  # exit status of a run ended by an emergency stop

    final = cli.status()[0]
    assert final["status"] == "emergency_stopped"
    assert final["trading_state"] == "HALTED"
    assert "exchange incident drill" in final["stop_reason"]
    assert open_orders() == []
    all_orders = json.loads(cli.run("orders", run_id, "--json").stdout)
    cancelled = {o["client_order_id"] for o in all_orders if o["status"] == "cancelled"}
    assert {o["client_order_id"] for o in resting} <= cancelled


def test_emergency_stop_with_unwind_closes_every_position(cli: Cli) -> None:
    engine = cli.start("btc_basis", "--capital", "100000", "--speed", "600")
    run_id = cli.wait_running(engine)["run_id"]
    wait_for(lambda: cli.status()[0]["total_trades"] >= 4)  # spot + three perp legs

    halted = cli.run("emergency-stop", run_id, "--reason", "unwind drill", "--unwind")
    assert halted.returncode == 0, halted.stderr
    assert engine.wait(timeout=15) == 3
    db = sqlite3.connect(cli.db)
    exposures = json.loads(db.execute(
        "SELECT exposures_json FROM snapshots WHERE run_id = ? ORDER BY id DESC LIMIT 1", (run_id,)).fetchone()[0])
    positions = json.loads(db.execute(
        "SELECT positions_json FROM snapshots WHERE run_id = ? ORDER BY id DESC LIMIT 1", (run_id,)).fetchone()[0])
    assert [p for p in positions if p["kind"] == "perp"] == []
    assert float(exposures["gross_exposure"]) < 5  # BTC dust below the spot step, in USDT
    purposes = {row[0] for row in db.execute("SELECT purpose FROM orders WHERE run_id = ? AND status = 'filled'",
                                              (run_id,))}
    assert "exit_full" in purposes


def test_an_emergency_stop_queued_behind_a_stop_on_a_hung_engine_still_halts_and_unwinds(cli: Cli) -> None:
    engine = cli.start("btc_basis", "--capital", "100000", "--speed", "600")
    run_id = cli.wait_running(engine)["run_id"]
    wait_for(lambda: cli.status()[0]["total_trades"] >= 4)
    engine.send_signal(signal.SIGSTOP)  # hung: the operator's stop times out, so they escalate
    try:
        assert cli.run("stop", run_id, "--timeout", "0.5").returncode == 1
        escalated = cli.run("emergency-stop", run_id, "--reason", "hung, escalating", "--unwind", "--timeout", "0.5")
        assert escalated.returncode == 1
    finally:
        engine.send_signal(signal.SIGCONT)
    assert engine.wait(timeout=30) == 3
    db = sqlite3.connect(cli.db)
    assert db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0] == "emergency_stopped"
    positions = json.loads(db.execute(
        "SELECT positions_json FROM snapshots WHERE run_id = ? ORDER BY id DESC LIMIT 1", (run_id,)).fetchone()[0])
    assert [p for p in positions if p["kind"] == "perp"] == []
    commands = db.execute("SELECT kind, ack_status FROM commands WHERE run_id = ? ORDER BY id", (run_id,)).fetchall()
    assert commands == [("stop", "done"), ("emergency_stop", "done")]


def test_stop_and_deposits_reach_a_running_backtest(cli: Cli) -> None:
    backtest = cli.start_command("backtest", "btc_basis", "--capital", "100000", "--step", "60", "--json")
    run = cli.wait_running(backtest)
    refused = cli.run("deposit", run["run_id"], "1000", "--timeout", "10")
    assert refused.returncode == 1 and "a backtest replays history" in refused.stdout + refused.stderr
    stopped = cli.run("stop", run["run_id"], "--timeout", "10")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    out, _ = backtest.communicate(timeout=30)
    summary = json.loads(out)
    assert summary["status"] == "stopped" and summary["net_flows"] == "0"
    assert summary["sim_time"] < "2025-12-31"  # it stopped long before the end of the sample year


def test_crash_scenario_trips_max_drawdown_and_the_watchdog_halts_the_run(cli: Cli) -> None:
    engine = cli.start("btc_basis", "--capital", "100000", "--speed", "7200", "--scenario", "crash",
                       "--risk", "max_drawdown=0.01")
    assert engine.wait(timeout=60) == 3
    output = engine.stdout.read()
    assert "max_drawdown breached" in output
    final = cli.status()[0]
    assert final["status"] == "emergency_stopped"
    assert final["trading_state"] == "HALTED"
    assert "max_drawdown" in final["stop_reason"]
    risk = json.loads(cli.run("risk", final["run_id"], "--json").stdout)
    breach = next(b for b in risk["breaches"] if b["type"] == "max_drawdown")
    assert breach["limit"] == 0.01
    assert breach["current"] > 0.01
    assert breach["breach_pct"] == pytest.approx((breach["current"] - 0.01) / 0.01 * 100, abs=1e-4)
    # The crash starts one simulated hour in (sample feed scenario): the halt comes after it.
    assert final["sim_time"] > "2025-01-01T01:00"


def test_health_is_ok_while_running_then_reports_a_stale_heartbeat_and_a_dead_engine(cli: Cli) -> None:
    assert cli.run("health").returncode == 0  # nothing running is healthy
    engine = cli.start("pure_lending", "--capital", "5000", "--speed", "60")
    run = cli.wait_running(engine)

    healthy = cli.run("health")
    assert healthy.returncode == 0, healthy.stdout
    assert "1 running run(s) healthy" in healthy.stdout

    engine.send_signal(signal.SIGSTOP)  # a hung engine: alive, but no heartbeat
    try:
        time.sleep(2.5)
        stale = cli.run("health", "--max-heartbeat-age", "2")
        assert stale.returncode == 1
        assert f"run {run['run_id']} (pure_lending) heartbeat is stale" in stale.stdout
    finally:
        engine.send_signal(signal.SIGCONT)

    engine.send_signal(signal.SIGKILL)
    engine.wait(timeout=10)
    dead = cli.run("health", "--json")
    assert dead.returncode == 1
    report = json.loads(dead.stdout)
    assert report["healthy"] is False
    assert any("is dead" in p and run["run_id"] in p for p in report["problems"])
    plain = cli.run("health")
    assert plain.returncode == 1
    assert plain.stdout.strip().splitlines() == [p.join(("unhealthy: ", "")) for p in report["problems"]]


def test_stop_of_a_killed_engine_says_so_and_marks_the_run_failed(cli: Cli) -> None:
    engine = cli.start("pure_lending", "--capital", "5000", "--speed", "60")
    run_id = cli.wait_running(engine)["run_id"]
    engine.kill()
    engine.wait(timeout=10)
    result = cli.run("stop", run_id)
    assert result.returncode == 1
    assert "engine process" in result.stderr and "is gone" in result.stderr
    assert cli.status()[0]["status"] == "failed"


def test_emergency_stop_of_a_dead_engine_marks_the_run_and_says_nothing_was_cancelled(cli: Cli) -> None:
    engine = cli.start("pure_lending", "--capital", "5000", "--speed", "60")
    run_id = cli.wait_running(engine)["run_id"]
    engine.kill()
    engine.wait(timeout=10)
    result = cli.run("emergency-stop", run_id, "--reason", "engine vanished")
    assert result.returncode == 1
    assert "is gone" in result.stderr and "no order was cancelled" in result.stderr
    final = cli.status()[0]
    assert final["status"] == "emergency_stopped"
    assert "engine vanished" in final["stop_reason"]


def _assert_refused(result, code: str, fragment: str, db: Path) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error {code}: "), lines[0]
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr
    if db.exists():
        assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["no_such_strategy", "--capital", "1000"], "LT-002", "unknown strategy 'no_such_strategy'"),
        (["pure_lending", "--capital", "0"], "LT-001", "--capital must be > 0"),
        (["pure_lending", "--capital", "-5"], "LT-001", "--capital must be > 0"),
        (["pure_lending", "--capital", "lots"], "LT-001", "--capital must be a number"),
        (["pure_lending", "--capital", "1000", "--share-class", "ETH"], "LT-001", "not allowed for pure_lending"),
        (["pure_lending", "--capital", "1000", "--set", "execution.no_such_key=1"], "LT-002",
         "unknown key 'execution.no_such_key'"),
        (["btc_basis", "--capital", "1000", "--set", "hedge_allocation.okx=0.5"], "LT-002",
         "hedge_allocation must sum to 1"),
        (["pure_lending", "--capital", "1000", "--risk", "max_drawdown=1.5"], "LT-002", "max_drawdown"),
        (["pure_lending", "--capital", "1000", "--scenario", "meteor"], "LT-001", "unknown scenario 'meteor'"),
        (["ml_btc_directional", "--capital", "1"], "LT-003", "ml_btc_directional needs ml.signal_source"),
        (["pure_lending", "--capital", "1000", "--speed", "0"], "LT-001", "--speed must be > 0"),
    ],
)
def test_bad_start_input_gives_one_line_with_its_code_exit_2_and_no_run(cli: Cli, args, code, fragment) -> None:
    _assert_refused(cli.run("start", *args), code, fragment, cli.db)


def test_ml_btc_directional_starts_on_paper_with_btc_capital_and_trades_the_inverse_perp(cli: Cli,
                                                                                       tmp_path: Path) -> None:
    signals = tmp_path / "signals.csv"
    signals.write_text("timestamp,signal,confidence,take_profit,stop_loss\n2025-01-01T00:00:00Z,long,0.9,,\n")
    engine = cli.start("ml_btc_directional", "--capital", "0.5", "--speed", "600",
                       "--set", f"ml.signal_source={signals}")
    run = cli.wait_running(engine)
    assert (run["strategy_name"], run["initial_capital"]) == ("ml_btc_directional", 0.5)
    wait_for(lambda: cli.status()[0]["total_trades"] >= 1)
    orders = json.loads(cli.run("orders", run["run_id"], "--json").stdout)
    assert (orders[0]["instrument"], orders[0]["side"], orders[0]["purpose"]) == ("BTC/USD:BTC", "buy", "entry_full")
    stopped = cli.run("stop", run["run_id"], "--timeout", "10")
    assert stopped.returncode == 0, stopped.stderr
    assert engine.wait(timeout=15) == 0
    final = cli.status()[0]
    assert final["status"] == "stopped"
    assert 0.45 < final["current_value"] < 0.55  # in BTC, the share class


@pytest.mark.parametrize(("args", "code", "fragment"), [
    (["--seed", "99999999999999999999999"], "LT-001", "seed"),
    (["--db", "~no-such-user-here/state.db"], "LT-003", "no such user"),
    (["--set", "execution.slippage=[]"], "LT-002", "execution.slippage"),
    (["--risk", "max_drawdown=.nan"], "LT-002", "finite number"),
    (["--feed", "replay", "--data", "/no/such/manifest.yaml"], "LT-003", "replay manifest not found"),
])
def test_more_bad_start_input_is_one_line_and_creates_no_state_file(cli: Cli, args: list[str], code: str,
                                                                   fragment: str) -> None:
    result = cli.run("start", "pure_lending", "--capital", "1000", *args)
    _assert_refused(result, code, fragment, cli.db)
    assert not cli.db.exists()


def test_malformed_strategy_yaml_is_refused_with_its_location(cli: Cli, tmp_path: Path) -> None:
    directory = tmp_path / "mine"
    directory.mkdir()
    (directory / "broken.yaml").write_text("mode: pure_lending\nvenues: {aave_v3: {enabled: true}\n")
    result = cli.run("start", "broken", "--capital", "1000", "--strategies-dir", str(directory))
    _assert_refused(result, "LT-002", "malformed YAML", cli.db)
    assert "broken.yaml" in result.stderr


def test_unwritable_db_is_refused_and_nothing_is_written(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    db = blocker / "state.db"
    result = cli.run("start", "pure_lending", "--capital", "1000", "--db", str(db))
    _assert_refused(result, "LT-003", "cannot be created", db)
    assert blocker.read_text() == "a file where a directory should be"


def test_live_starts_name_missing_chain_credentials_and_refuse_modes_not_live_yet(cli: Cli) -> None:
    result = cli.run("start", "pure_lending", "--capital", "1000", env={"BASIS_EXECUTION_MODE": "live"})
    _assert_refused(result, "LT-001", "set BASIS_DEV__CHAIN__PRIVATE_KEY, BASIS_DEV__CHAIN__RPC_URL", cli.db)
    both_sides = cli.run("start", "usdt_market_neutral", "--capital", "1000", "--env", "staging")
    _assert_refused(both_sides, "LT-003", "live trading of usdt_market_neutral is not supported yet", cli.db)
    bad = cli.run("start", "pure_lending", "--capital", "1000", env={"BASIS_ENVIRONMENT": "moon"})
    _assert_refused(bad, "LT-001", "BASIS_ENVIRONMENT='moon'", cli.db)
    for key in ("0x" + "0" * 64, "0x" + "f" * 64):  # 32 bytes of hex, but not a secp256k1 key
        out_of_range = cli.run("start", "pure_lending", "--capital", "1000", "--env", "dev",
                               env={"BASIS_DEV__CHAIN__PRIVATE_KEY": key, "BASIS_DEV__CHAIN__RPC_URL": "http://127.0.0.1:9"})
        _assert_refused(out_of_range, "LT-001", "BASIS_DEV__CHAIN__PRIVATE_KEY is not a valid private key", cli.db)
        assert key[4:] not in out_of_range.stderr


def test_unknown_run_id_is_a_one_line_error(cli: Cli) -> None:
    engine = cli.start("pure_lending", "--capital", "1000", "--speed", "60")
    cli.wait_running(engine)
    for command in (["status", "deadbeef"], ["metrics", "deadbeef"], ["risk", "deadbeef"], ["stop", "deadbeef"],
                    ["emergency-stop", "deadbeef", "--reason", "x"]):
        result = cli.run(*command)
        assert result.returncode == 2, command
        assert result.stderr.strip() == f"error LT-001: no run 'deadbeef' in {cli.db}"
    cli.run("stop", "--all")


def test_stop_all_stops_every_running_run(cli: Cli) -> None:
    first = cli.start("pure_lending", "--capital", "1000", "--speed", "60")
    second = cli.start("btc_basis", "--capital", "50000", "--speed", "60")
    cli.wait_running(first)
    cli.wait_running(second)
    result = cli.run("stop", "--all")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and all(" stopped: stopped by operator (acknowledged in " in line for line in lines)
    assert first.wait(timeout=15) == 0 and second.wait(timeout=15) == 0
    assert {r["status"] for r in cli.status()} == {"stopped"}


def test_state_db_is_private_and_in_wal_mode(cli: Cli) -> None:
    engine = cli.start("pure_lending", "--capital", "1000", "--speed", "60")
    cli.wait_running(engine)
    assert os.stat(cli.db).st_mode & 0o777 == 0o600
    assert sqlite3.connect(cli.db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cli.run("stop", "--all")


def test_default_db_lives_under_xdg_state_home(isolated_dirs: Path) -> None:
    import subprocess

    from conftest import BASIS_LIVE

    env = {k: v for k, v in os.environ.items() if k != "BASIS_LIVE_DB"}
    expected = isolated_dirs / "state" / "basis-live" / "state.db"
    result = subprocess.run([BASIS_LIVE, "status", "--json"], capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 0 and json.loads(result.stdout) == []
    assert not expected.exists()  # reading never creates the database
    proc = subprocess.Popen([BASIS_LIVE, "start", "pure_lending", "--capital", "1000", "--speed", "60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_for(lambda: expected.exists() and Cli(expected).status())
        assert Cli(expected).run("stop", "--all").returncode == 0
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


REFERENCE_DATA = Path(__file__).resolve().parents[2] / "shared" / "reference-data"


@pytest.mark.skipif(not REFERENCE_DATA.is_dir(), reason="../shared/reference-data is absent (only outside CI)")
def test_a_paper_run_replays_the_reference_data_through_its_manifest(cli: Cli) -> None:
    manifest = Path(__file__).resolve().parents[1] / "examples" / "reference-data.yaml"
    engine = cli.start("btc_basis", "--capital", "100000", "--speed", "36000", "--feed", "replay",
                       "--data", str(manifest))
    run = cli.wait_running(engine)
    assert run["feed"].startswith("REPLAY DATA")
    wait_for(lambda: cli.status()[0]["total_trades"] >= 4)
    assert cli.run("stop", run["run_id"]).returncode == 0
    assert engine.wait(timeout=15) == 0
    assert engine.stdout.read().splitlines()[0].startswith("PAPER TRADING on REPLAY DATA")
    final = cli.status()[0]
    assert final["sim_time"].startswith("2024-05")  # the data set starts 2024-05-12


def test_health_reports_a_command_the_engine_never_acknowledged(cli: Cli) -> None:
    engine = cli.start("pure_lending", "--capital", "5000", "--speed", "60")
    run_id = cli.wait_running(engine)["run_id"]
    engine.send_signal(signal.SIGSTOP)  # hung: the stop below is never picked up
    try:
        assert cli.run("stop", run_id, "--timeout", "0.5").returncode == 1
        db = sqlite3.connect(cli.db)
        db.execute("UPDATE commands SET created_at = '2020-01-01T00:00:00.000Z'")  # queued long ago
        db.commit()
        result = cli.run("health", "--max-heartbeat-age", "3600")
        assert result.returncode == 1
        assert f"run {run_id} (pure_lending): stop command 1 not acknowledged for" in result.stdout
    finally:
        engine.send_signal(signal.SIGCONT)
    assert engine.wait(timeout=15) == 0  # once it runs again, it picks the stop up and stops


def test_health_reports_a_strategy_loop_that_stopped_ticking(cli: Cli) -> None:
    engine = cli.start("pure_lending", "--capital", "5000", "--speed", "60")
    run_id = cli.wait_running(engine)["run_id"]
    cli.run("stop", run_id)
    engine.wait(timeout=15)
    db = sqlite3.connect(cli.db)
    # A run still marked running, with a live heartbeat but a last tick long ago (the engine's
    # watchdog beats on while its strategy step is stuck): point it at this live test process.
    db.execute("UPDATE runs SET status = 'running', pid = ?, host = NULL, pid_start = NULL, "
               "last_heartbeat = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), "
               "last_tick_at = '2020-01-01T00:00:00.000Z'", (os.getpid(),))
    db.commit()
    result = cli.run("health")
    assert result.returncode == 1
    assert f"run {run_id} (pure_lending) strategy loop stalled: last tick" in result.stdout

    # A live chain step inside that tick (a leverage loop, one transaction per block for minutes)
    # that keeps signing transactions for this run's order is progress, not a stall.
    def signed(key: str, when: str) -> None:
        db.execute("INSERT INTO chain_transactions (key, sender, nonce, tx_hash, raw, to_address, value, data, gas, "
                   "max_fee_per_gas, max_priority_fee_per_gas, label, signed_at) "
                   "VALUES (?, '0xabc', ?, ?, '0x', '0xdef', '0', '0x', 21000, '1', '1', 'loop step', ?)",
                   (key, hash(key) % 1000, f"0x{abs(hash(key)):x}", when))
        db.commit()

    now = datetime.now(timezone.utc)
    signed(f"aave_v3/blzz{run_id}000009/1.1-borrow/action", now.isoformat(timespec="milliseconds"))  # another run's
    assert cli.run("health").returncode == 1
    signed(f"aave_v3/bl{run_id}000001/1.1-borrow/action", (now - timedelta(hours=1)).isoformat(timespec="milliseconds"))
    result = cli.run("health")
    assert result.returncode == 1 and re.search(r"last chain transaction signed 36\d\ds ago", result.stdout)
    signed(f"aave_v3/bl{run_id}000001/3.2-supply/action", now.isoformat(timespec="milliseconds"))
    result = cli.run("health")
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_sigterm_ctrl_c_and_a_closed_terminal_stop_the_engine_gracefully(cli: Cli, signum: int) -> None:
    engine = cli.start("btc_basis", "--capital", "100000", "--speed", "600")
    run_id = cli.wait_running(engine)["run_id"]
    engine.send_signal(signum)
    assert engine.wait(timeout=15) == 0
    final = cli.status()[0]
    assert final["status"] == "stopped"
    assert final["stop_reason"] == f"{signal.Signals(signum).name} received"
    assert json.loads(cli.run("orders", run_id, "--open", "--json").stdout) == []


def test_deposits_and_withdrawals_are_flows_not_pnl(cli: Cli) -> None:
    engine = cli.start("pure_lending", "--capital", "100000", "--speed", "600")
    run_id = cli.wait_running(engine)["run_id"]
    wait_for(lambda: cli.status()[0]["total_trades"] >= 1)
    deposit = cli.run("deposit", run_id, "50000")
    assert deposit.returncode == 0, deposit.stderr
    assert "deposit of 50000" in deposit.stdout
    wait_for(lambda: cli.status()[0]["total_trades"] >= 2)  # the deposit is supplied too
    withdraw = cli.run("withdraw", run_id, "30000")
    assert withdraw.returncode == 0, withdraw.stderr
    metrics = json.loads(cli.run("metrics", run_id, "--json").stdout)
    assert Decimal(metrics["net_flows"]) == Decimal(20000)
    # Interest minus gas over minutes of simulated time: nowhere near the 20k of flows.
    assert abs(Decimal(metrics["total_pnl"])) < Decimal(100)
    assert Decimal(metrics["current_value"]) == pytest.approx(
        Decimal(120000) + Decimal(metrics["total_pnl"]), abs=Decimal("1e-6"))
    assert abs(Decimal(metrics["attribution_gap"])) < Decimal("0.01")
    too_much = cli.run("withdraw", run_id, "1000000")
    assert too_much.returncode == 1 and "is not below equity" in too_much.stderr
    bad = cli.run("deposit", run_id, "lots")
    assert bad.returncode == 2 and bad.stderr.startswith("error LT-001: amount must be a number")
    cli.run("stop", run_id)


def test_bad_control_command_input_is_one_line_lt_001_exit_2_and_queues_nothing(cli: Cli) -> None:
    engine = cli.start("pure_lending", "--capital", "5000", "--speed", "60")
    run_id = cli.wait_running(engine)["run_id"]
    cases = [
        (["stop", run_id, "--timeout", "nan"], "--timeout must be a finite number of seconds > 0"),
        (["stop", run_id, "--timeout", "-1"], "--timeout must be a finite number of seconds > 0"),
        (["emergency-stop", run_id, "--reason", "r", "--timeout", "inf"], "--timeout must be a finite number"),
        (["emergency-stop", run_id, "--reason", "r", "--timeout", "0"], "--timeout must be a finite number"),
        (["deposit", run_id, "10", "--timeout", "-1"], "--timeout must be a finite number"),
        (["withdraw", run_id, "10", "--timeout", "nan"], "--timeout must be a finite number"),
        (["deposit", run_id, "1e21"], "beyond any sane size"),
        (["health", "--max-heartbeat-age", "nan"], "--max-heartbeat-age must be a finite number"),
        (["health", "--max-heartbeat-age", "-5"], "--max-heartbeat-age must be a finite number"),
        (["stop", ""], "run id is empty"),
        (["deposit", " ", "10"], "run id is empty"),
    ]
    for args, fragment in cases:
        result = cli.run(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("error LT-001: ") and fragment in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    db = sqlite3.connect(cli.db)
    assert db.execute("SELECT COUNT(*) FROM commands").fetchone()[0] == 0
    assert cli.status()[0]["status"] == "running"
    assert cli.run("stop", run_id).returncode == 0
    assert engine.wait(timeout=15) == 0
    # On a run that has ended, an unwind cannot happen: said so, exit 1 (a plain halt is a no-op, exit 0).
    assert cli.run("emergency-stop", run_id, "--reason", "late").returncode == 0
    late = cli.run("emergency-stop", run_id, "--reason", "late", "--unwind")
    assert late.returncode == 1 and "nothing was unwound" in late.stderr


def test_status_piped_to_a_file_shows_whole_run_ids_and_pids(cli: Cli) -> None:
    engine = cli.start("usdt_market_neutral_no_leverage", "--capital", "5000", "--speed", "60")
    run_id = cli.wait_running(engine)["run_id"]
    piped = cli.run("status", env={"COLUMNS": "40"})  # captured, not a terminal
    row = next(line for line in piped.stdout.splitlines() if line.startswith(run_id))
    assert "usdt_market_neutral_no_leverage" in row and row.rstrip().endswith(str(engine.pid))
    assert "…" not in piped.stdout


def test_a_state_file_locked_by_another_process_neither_kills_the_engine_nor_prints_a_traceback(cli: Cli) -> None:
    engine = cli.start("pure_lending", "--capital", "5000", "--speed", "60")
    run_id = cli.wait_running(engine)["run_id"]
    holder = sqlite3.connect(cli.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # e.g. a backup tool or a stuck process holding a write lock
    try:
        blocked = cli.run("stop", run_id, "--timeout", "2")
        assert blocked.returncode == 1
        assert blocked.stderr.startswith("error LT-005: the state database is locked by another process")
        assert len(blocked.stderr.strip().splitlines()) == 1
        time.sleep(3)  # the engine's snapshot and heartbeat writes wait past busy_timeout too
        assert engine.poll() is None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    wait_for(lambda: cli.status()[0]["heartbeat_age_seconds"] < 2)  # beating again
    assert cli.run("stop", run_id).returncode == 0
    assert engine.wait(timeout=15) == 0
    assert cli.status()[0]["status"] == "stopped"
