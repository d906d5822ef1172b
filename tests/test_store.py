"""The SQLite store: pragmas, file mode, migrations, the command queue, the audit trail, retention."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from basis_live import store as store_module
from basis_live.errors import EngineInitError, RequestValidationError
from basis_live.store import Store, default_db_path


def _open(path: Path) -> Store:
    opened = Store.open(path)
    assert opened is not None
    return opened


def _run(store: Store, run_id: str = "abcd1234") -> str:
    store.insert_run(run_id=run_id, strategy_name="pure_lending", mode="pure_lending", share_class="USDT",
                     initial_capital="1000", execution_mode="paper", environment="dev", feed_label="SAMPLE",
                     request={}, config={}, pid=1, host="h", pid_start=None, heartbeat_timeout=300)
    return run_id


def test_open_creates_a_private_wal_database_with_all_migrations(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "state.db"
    store = _open(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert store.journal_mode() == "wal"
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert store.applied_migrations() == [name for name, _ in store_module.MIGRATIONS]


def test_reopening_applies_no_migration_twice(tmp_path: Path) -> None:
    _open(tmp_path / "s.db").close()
    store = _open(tmp_path / "s.db")
    assert store_module.migrate(store.db) == []


def test_a_new_migration_is_applied_to_an_old_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _open(tmp_path / "s.db").close()

    def add_column(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE runs ADD COLUMN note TEXT")

    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, ("999_note", add_column)])
    store = _open(tmp_path / "s.db")
    assert "999_note" in store.applied_migrations()
    assert "note" in [row[1] for row in store.db.execute("PRAGMA table_info(runs)")]


def test_read_only_open_of_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    assert Store.open(tmp_path / "none.db", create=False) is None
    assert not (tmp_path / "none.db").exists()


def test_unusable_paths_are_lt_003(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(EngineInitError, match="cannot be created"):
        Store.open(tmp_path / "file" / "state.db")
    with pytest.raises(EngineInitError, match="is a directory"):
        Store.open(tmp_path)
    (tmp_path / "garbage.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(EngineInitError, match="not usable"):
        Store.open(tmp_path / "garbage.db")


def test_default_path_follows_basis_live_db_then_xdg_state_home() -> None:
    assert default_db_path({"BASIS_LIVE_DB": "/x/y.db"}) == Path("/x/y.db")
    assert default_db_path({"XDG_STATE_HOME": "/s"}) == Path("/s/basis-live/state.db")
    assert default_db_path({}).parts[-4:] == (".local", "state", "basis-live", "state.db")


def test_events_are_append_only(tmp_path: Path) -> None:
    store = _open(tmp_path / "s.db")
    run_id = _run(store)
    store.append_event(run_id, "x", "first")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("UPDATE events SET message = 'rewritten'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("DELETE FROM events")
    assert [e["message"] for e in store.list_events(run_id)] == ["first"]


def test_commands_are_picked_once_and_acknowledged(tmp_path: Path) -> None:
    store = _open(tmp_path / "s.db")
    run_id = _run(store)
    other = _open(tmp_path / "s.db")  # another process's connection
    command_id = other.enqueue_command(run_id, "stop", {"by": "test"})
    picked = store.take_pending_commands(run_id)
    assert [(c.id, c.kind, c.args) for c in picked] == [(command_id, "stop", {"by": "test"})]
    assert store.take_pending_commands(run_id) == []
    store.ack_command(command_id, "done", "stopped")
    acked = other.get_command(command_id)
    assert acked is not None and acked.ack_status == "done" and acked.acked_at is not None


def test_run_ids_resolve_from_unique_prefixes(tmp_path: Path) -> None:
    store = _open(tmp_path / "s.db")
    _run(store, "abcd1234")
    _run(store, "abce9999")
    assert store.resolve_run_id("abcd") == "abcd1234"
    with pytest.raises(RequestValidationError, match="ambiguous"):
        store.resolve_run_id("abc")
    with pytest.raises(RequestValidationError, match="no run"):
        store.resolve_run_id("zz")
    with pytest.raises(RequestValidationError, match="no run"):
        store.resolve_run_id("%")  # LIKE wildcards are literal


def test_terminal_status_is_not_overwritten_by_a_late_writer(tmp_path: Path) -> None:
    store = _open(tmp_path / "s.db")
    run_id = _run(store)
    assert store.set_run_status(run_id, "stopped", "done")
    assert not store.set_run_status(run_id, "stopping", only_if=("running",))
    row = store.get_run(run_id)
    assert row is not None and row.status == "stopped" and row.stopped_at is not None


def test_snapshot_retention_keeps_recent_rows_and_one_per_hour(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "SNAPSHOT_RETENTION", 50)
    monkeypatch.setattr(store_module, "_PRUNE_EVERY", 10)
    store = _open(tmp_path / "s.db")
    run_id = _run(store)
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    # Ten hours of one-minute snapshots: 600 rows written.
    for minute in range(600):
        store.record_snapshot(run_id, sim_time=start + timedelta(minutes=minute), equity="1000", pnl="0",
                              peak_value="1000", drawdown=0.0, max_drawdown=0.0, total_trades=0, positions=[],
                              exposures={}, risk={"status": "ok"}, metrics={}, trading_state="ACTIVE")
    count = store.count_snapshots(run_id)
    hours = {row[0] for row in store.db.execute("SELECT hour_bucket FROM snapshots WHERE keep = 1")}
    assert len(hours) == 10  # the first snapshot of every hour survives
    assert 50 <= count <= 50 + 10 + 10  # retention + hourly keepers + rows since the last prune
    latest = store.latest_snapshot(run_id)
    assert latest is not None and latest["sim_time"] == "2025-01-01T09:59:00.000Z"


def test_snapshot_batches_keep_the_first_row_of_each_hour_across_batches_and_a_reopen(tmp_path: Path) -> None:
    from basis_live.store import RunFigures, SnapshotRow

    path = tmp_path / "s.db"
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)

    def rows(first: int, count: int) -> list[SnapshotRow]:  # one row every 20 minutes
        return [SnapshotRow(start + timedelta(minutes=20 * i), "1000", "0", 0.0, [], {}, {"status": "ok"}, {})
                for i in range(first, first + count)]

    def figures(last: SnapshotRow) -> RunFigures:
        return RunFigures("1000", "0", "1000", 0.0, 0.0, 0, last.sim_time, {"status": "ok"}, {}, "ACTIVE")

    store = _open(path)
    run_id = _run(store)
    for first in (0, 5, 10):  # batches of five rows: an hour's rows fall into two batches
        batch = rows(first, 5)
        store.record_snapshots(run_id, batch, figures(batch[-1]))
    store.close()
    store = _open(path)  # a new connection remembers nothing: the table says which hours have a keeper
    batch = rows(15, 4)  # 05:00 .. 06:00: 05:00's keeper was written before the reopen
    store.record_snapshots(run_id, [SnapshotRow(start + timedelta(hours=4, minutes=50), "1000", "0", 0.0, [], {},
                                                {"status": "ok"}, {}), *batch], figures(batch[-1]))
    kept = store.db.execute("SELECT sim_time FROM snapshots WHERE keep = 1 ORDER BY id").fetchall()
    assert [k[0][11:16] for k in kept] == ["00:00", "01:00", "02:00", "03:00", "04:00", "05:00", "06:00"]
    assert store.count_snapshots(run_id) == 20
    assert store.get_run(run_id).sim_time == "2025-01-01T06:00:00.000Z"  # type: ignore[union-attr]


def test_json_columns_read_back_as_the_standard_library_would_write_them() -> None:
    import json
    from dataclasses import dataclass
    from decimal import Decimal

    @dataclass
    class Point:
        x: int

    value = {"b": Decimal("1.50"), "a": [1, 2.5, 1e-7, None, True],
             "when": datetime(2025, 1, 1, tzinfo=timezone.utc), "point": Point(1), "nested": {"z": Decimal("-0E-8")}}
    written = store_module._dumps(value)
    assert json.loads(written) == json.loads(json.dumps(value, default=str, sort_keys=True))
    assert written.index('"a"') < written.index('"b"')  # sorted keys, as before


def test_chain_journal_keeps_signed_transactions_and_intents_across_reopen(tmp_path: Path) -> None:
    from basis_live.store import StoreJournal
    from basis_live.venues.transactions import SignedTransaction

    path = tmp_path / "state.db"
    store = Store.open(path)
    journal = StoreJournal(store)

    def signed(key: str, nonce: int, tx_hash: str) -> SignedTransaction:
        return SignedTransaction(key=key, sender="0xAbC0000000000000000000000000000000000001", nonce=nonce,
                                 tx_hash=tx_hash, raw="0x02f8", to="0x00000000000000000000000000000000000000aa",
                                 value=10**18, data="0x", gas=21000, max_fee_per_gas=30 * 10**9,
                                 max_priority_fee_per_gas=10**9, label="supply", signed_at="2026-01-01T00:00:00.000+00:00")

    journal.record_signed(signed("aave_v3/bl1/action", 7, "0x01"))
    journal.record_signed(signed("aave_v3/bl1/action", 7, "0x02"))  # a fee-bumped replacement
    journal.record_signed(signed("wallet/bl2/action", 8, "0x03"))
    journal.put_intent("aave_v3/bl1", {"symbol": "USDT", "side": "buy", "quantity": "100"})
    journal.put_intent("aave_v3_x/bl9", {"symbol": "WETH"})
    journal.put_intent("aave_v3/bl1", {"symbol": "USDT", "side": "buy", "quantity": "100", "done": True})
    store.close()

    reopened = StoreJournal(Store.open(path))
    assert [tx.tx_hash for tx in reopened.transactions("aave_v3/bl1/action")] == ["0x01", "0x02"]
    assert reopened.transactions("aave_v3/bl1/action")[1] == signed("aave_v3/bl1/action", 7, "0x02")
    assert reopened.last_nonce("0xabc0000000000000000000000000000000000001") == 8
    assert reopened.last_nonce("0x0000000000000000000000000000000000000002") is None
    assert reopened.intent("aave_v3/bl1") == {"symbol": "USDT", "side": "buy", "quantity": "100", "done": True}
    # Prefixes are exact: "aave_v3/" does not match "aave_v3_x/" (no LIKE wildcards) nor other cases.
    assert reopened.intent_keys("aave_v3/") == ["aave_v3/bl1"]
    assert reopened.intent_keys("AAVE_V3/") == []
    assert reopened.intent_keys() == ["aave_v3/bl1", "aave_v3_x/bl9"]


def test_health_reports_a_live_run_that_ended_badly_until_a_new_live_run_takes_over(tmp_path: Path) -> None:
    from basis_live.service import LiveTradingService

    path = tmp_path / "state.db"
    store = _open(path)

    def live_run(run_id: str, status: str, reason: str, mode: str = "btc_basis") -> None:
        store.insert_run(run_id=run_id, strategy_name=mode, mode=mode, share_class="USDT", initial_capital="1000",
                         execution_mode="live", environment="dev", feed_label="LIVE", request={}, config={}, pid=1,
                         host="h", pid_start=None, heartbeat_timeout=300)
        store.set_run_status(run_id, status, reason)

    live_run("aaaa0001", "stopped", "stopped by operator")  # a clean stop: nothing to report
    live_run("aaaa0002", "failed", "engine task market failed: FeedError('...')")
    live_run("aaaa0003", "emergency_stopped", "drill; open orders may remain on okx (cancel failed): act on the "
                                              "venue by hand", mode="eth_basis")
    service = LiveTradingService(path)
    report = service.health_check()
    assert not report.healthy
    assert [p.split(" ")[2] for p in report.problems] == ["aaaa0002", "aaaa0003"]
    assert "ended failed" in report.problems[0] and "start it again to adopt them" in report.problems[0]
    time.sleep(0.002)  # created_at has millisecond resolution
    live_run("aaaa0004", "stopped", "stopped by operator")  # a later btc_basis live run adopted them
    assert [p.split(" ")[2] for p in service.health_check().problems] == ["aaaa0003"]
