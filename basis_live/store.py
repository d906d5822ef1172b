"""The SQLite state store: every SQL statement of basis-live lives in this module.

One file (default ``$XDG_STATE_HOME/basis-live/state.db``) shared by the engine process, which
writes runs, snapshots, orders, fills and events, and by the other commands (``status``, ``stop``,
``health``...), which read it and queue commands for the engine. WAL lets readers run while the
engine writes; a busy timeout absorbs short write contention. Migrations are small named steps
applied in order at every open and recorded in ``migrations``; an applied migration is never
edited, a new one is added.

Money is stored as TEXT (Decimal strings), analytics (drawdown, ratios) as REAL. Timestamps are
ISO 8601 UTC strings ending in ``Z``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import orjson

from basis_live.errors import EngineInitError, RequestValidationError

#: Snapshots kept per run at full resolution; older ones are thinned to the first of each hour.
SNAPSHOT_RETENTION = 10_000
_PRUNE_EVERY = 500

RUN_STATUSES = ("running", "stopping", "stopped", "emergency_stopped", "failed", "completed")
ACTIVE_STATUSES = ("running", "stopping")


def default_db_path(env: Mapping[str, str] | None = None) -> Path:
    """``BASIS_LIVE_DB`` if set, else ``$XDG_STATE_HOME/basis-live/state.db``."""
    env = os.environ if env is None else env
    if env.get("BASIS_LIVE_DB"):
        return _expand(Path(env["BASIS_LIVE_DB"]), "BASIS_LIVE_DB")
    state_home = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return _expand(Path(state_home), "XDG_STATE_HOME") / "basis-live" / "state.db"


#: How long the write that ends a run (its final status) keeps retrying a state file another process
#: holds locked: a run must not stay "running" after its engine has gone because of a passing lock.
FINAL_WRITE_SECONDS = 60.0


def is_locked(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "another connection holds the lock" (after busy_timeout)."""
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def _expand(path: Path, what: str) -> Path:
    """``~`` / ``~user`` expanded; an unknown user is LT-003 naming where the path came from."""
    try:
        return path.expanduser()
    except RuntimeError:
        raise EngineInitError(f"state database path {path} ({what}): cannot expand '~': no such user "
                              "or no home directory") from None


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --------------------------------------------------------------------------------------------------
# Migrations


def _execute_script(db: sqlite3.Connection, script: str) -> None:
    """Run a multi-statement script inside the caller's transaction (executescript would commit)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in migration: {statement.strip()[:60]}")


def _m001_initial(db: sqlite3.Connection) -> None:
    _execute_script(db, 
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            strategy_name TEXT NOT NULL,
            mode TEXT NOT NULL,
            share_class TEXT NOT NULL,
            initial_capital TEXT NOT NULL,
            execution_mode TEXT NOT NULL,
            environment TEXT NOT NULL,
            feed_label TEXT NOT NULL,
            request_json TEXT NOT NULL,
            config_json TEXT NOT NULL,
            pid INTEGER,
            host TEXT,
            pid_start TEXT,
            status TEXT NOT NULL CHECK (status IN
                ('running','stopping','stopped','emergency_stopped','failed','completed')),
            trading_state TEXT NOT NULL DEFAULT 'ACTIVE',
            created_at TEXT NOT NULL,
            started_at TEXT,
            stopped_at TEXT,
            stop_reason TEXT,
            heartbeat_timeout REAL NOT NULL,
            last_heartbeat TEXT,
            sim_time TEXT,
            current_value TEXT,
            total_pnl TEXT,
            net_flows TEXT NOT NULL DEFAULT '0',
            total_trades INTEGER NOT NULL DEFAULT 0,
            current_drawdown REAL NOT NULL DEFAULT 0,
            max_drawdown REAL NOT NULL DEFAULT 0,
            peak_value TEXT,
            risk_status TEXT,
            risk_json TEXT,
            metrics_json TEXT
        );
        CREATE INDEX runs_status ON runs(status);

        CREATE TABLE snapshots (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            wall_time TEXT NOT NULL,
            sim_time TEXT NOT NULL,
            equity TEXT NOT NULL,
            pnl TEXT NOT NULL,
            drawdown REAL NOT NULL,
            positions_json TEXT NOT NULL,
            exposures_json TEXT NOT NULL,
            risk_json TEXT NOT NULL,
            hour_bucket TEXT NOT NULL,
            keep INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX snapshots_run ON snapshots(run_id, id);

        CREATE TABLE orders (
            client_order_id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            venue TEXT NOT NULL,
            instrument TEXT NOT NULL,
            side TEXT NOT NULL,
            order_type TEXT NOT NULL,
            quantity TEXT NOT NULL,
            price TEXT,
            reduce_only INTEGER NOT NULL DEFAULT 0,
            purpose TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL,
            venue_order_id TEXT,
            filled_quantity TEXT NOT NULL DEFAULT '0',
            average_price TEXT,
            fee TEXT NOT NULL DEFAULT '0',
            fee_asset TEXT,
            reason TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            sim_time TEXT
        );
        CREATE INDEX orders_run ON orders(run_id, status);

        CREATE TABLE fills (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            client_order_id TEXT NOT NULL REFERENCES orders(client_order_id),
            venue TEXT NOT NULL,
            fill_id TEXT NOT NULL,
            instrument TEXT NOT NULL,
            side TEXT NOT NULL,
            quantity TEXT NOT NULL,
            price TEXT NOT NULL,
            fee TEXT NOT NULL,
            fee_asset TEXT NOT NULL,
            sim_time TEXT NOT NULL,
            wall_time TEXT NOT NULL,
            UNIQUE (venue, fill_id)
        );

        CREATE TABLE commands (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            kind TEXT NOT NULL,
            args_json TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            picked_at TEXT,
            acked_at TEXT,
            ack_status TEXT,
            ack_message TEXT
        );
        CREATE INDEX commands_pending ON commands(run_id, acked_at);

        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            run_id TEXT,
            wall_time TEXT NOT NULL,
            sim_time TEXT,
            kind TEXT NOT NULL,
            level TEXT NOT NULL,
            message TEXT NOT NULL,
            data_json TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX events_run ON events(run_id, id);
        -- The audit trail is append-only.
        CREATE TRIGGER events_no_update BEFORE UPDATE ON events
            BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
        CREATE TRIGGER events_no_delete BEFORE DELETE ON events
            BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
        """
    )


def _m002_last_tick(db: sqlite3.Connection) -> None:
    # When the strategy loop last completed a tick: a fresh heartbeat alone does not prove the
    # strategy is making progress (the watchdog beats on even when a tick is stuck).
    db.execute("ALTER TABLE runs ADD COLUMN last_tick_at TEXT")


def _m003_snapshot_hour_index(db: sqlite3.Connection) -> None:
    # Every snapshot insert asks whether its hour already has a keeper: without this index that is
    # a scan of the run's snapshots, quadratic over a long run or backtest.
    db.execute("CREATE INDEX snapshots_hour_keep ON snapshots(run_id, hour_bucket) WHERE keep = 1")


def _m004_snapshot_attribution(db: sqlite3.Connection) -> None:
    # P&L by source and the attribution gap with every snapshot, so the reconciliation can be
    # audited at any point of a run, not only at its end.
    db.execute("ALTER TABLE snapshots ADD COLUMN pnl_by_source_json TEXT NOT NULL DEFAULT '{}'")


def _m005_chain_journal(db: sqlite3.Connection) -> None:
    # On-chain exactly-once: every signed transaction is recorded before its broadcast (a restart
    # checks its receipt instead of signing again), and every order's intent under its key. Kept
    # across runs: the nonce sequence and a pending transaction belong to the account, not a run.
    _execute_script(
        db,
        """
        CREATE TABLE chain_transactions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL,
            sender TEXT NOT NULL,
            nonce INTEGER NOT NULL,
            tx_hash TEXT NOT NULL UNIQUE,
            raw TEXT NOT NULL,
            to_address TEXT NOT NULL,
            value TEXT NOT NULL,
            data TEXT NOT NULL,
            gas INTEGER NOT NULL,
            max_fee_per_gas TEXT NOT NULL,
            max_priority_fee_per_gas TEXT NOT NULL,
            label TEXT NOT NULL,
            signed_at TEXT NOT NULL
        );
        CREATE INDEX chain_transactions_key ON chain_transactions(key);
        CREATE INDEX chain_transactions_sender ON chain_transactions(sender, nonce);
        CREATE TABLE chain_intents (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL UNIQUE,
            intent_json TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        """,
    )


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("001_initial", _m001_initial),
    ("002_last_tick", _m002_last_tick),
    ("003_snapshot_hour_index", _m003_snapshot_hour_index),
    ("004_snapshot_attribution", _m004_snapshot_attribution),
    ("005_chain_journal", _m005_chain_journal),
]


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply the migrations not yet recorded; return the names applied."""
    db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in db.execute("SELECT name FROM migrations")}
    applied = []
    for name, step in MIGRATIONS:
        if name in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            # A concurrent opener may have applied it between our read and the lock.
            if db.execute("SELECT 1 FROM migrations WHERE name = ?", (name,)).fetchone():
                db.execute("COMMIT")
                continue
            step(db)
            db.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, iso(utc_now())))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


# --------------------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True)
class RunRow:
    run_id: str
    strategy_name: str
    mode: str
    share_class: str
    initial_capital: str
    execution_mode: str
    environment: str
    feed_label: str
    request_json: str
    config_json: str
    pid: int | None
    host: str | None
    pid_start: str | None
    status: str
    trading_state: str
    created_at: str
    started_at: str | None
    stopped_at: str | None
    stop_reason: str | None
    heartbeat_timeout: float
    last_heartbeat: str | None
    sim_time: str | None
    current_value: str | None
    total_pnl: str | None
    net_flows: str
    total_trades: int
    current_drawdown: float
    max_drawdown: float
    peak_value: str | None
    risk_status: str | None
    risk_json: str | None
    metrics_json: str | None
    last_tick_at: str | None

    @property
    def risk(self) -> dict[str, Any] | None:
        return json.loads(self.risk_json) if self.risk_json else None

    @property
    def metrics(self) -> dict[str, Any] | None:
        return json.loads(self.metrics_json) if self.metrics_json else None


@dataclass(frozen=True)
class CommandRow:
    id: int
    run_id: str
    kind: str
    args: dict[str, Any]
    created_at: str
    picked_at: str | None
    acked_at: str | None
    ack_status: str | None
    ack_message: str | None


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    """One tick's snapshot (JSON-able values; Decimals are written as strings)."""

    sim_time: datetime
    equity: str
    pnl: str
    drawdown: float
    positions: Any
    exposures: Any
    risk: dict[str, Any]
    pnl_by_source: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RunFigures:
    """A run's current figures as the runs row shows them (``status``, ``metrics``)."""

    equity: str
    pnl: str
    peak_value: str
    drawdown: float
    max_drawdown: float
    total_trades: int
    sim_time: datetime
    risk: dict[str, Any]
    metrics: dict[str, Any]
    trading_state: str


#: orjson writes every JSON column: a backtest writes four per tick, and the standard library took a
#: tenth of the engine's time doing it. Anything it does not know natively (Decimal) and anything the
#: standard library's ``default=str`` used to render (datetimes, dataclasses) goes through ``str``,
#: so the text reads back as ``json.dumps(value, default=str, sort_keys=True)``'s did (only float
#: spelling differs: 1e-7, not 1e-07).
_ORJSON_OPTIONS = (orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
                   | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS)


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=str, option=_ORJSON_OPTIONS).decode()


class Store:
    """A connection to the state file. Not shared across threads."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path = path
        self.db = db
        self._snapshot_inserts = 0
        self._kept_bucket: dict[str, str] = {}  # run -> hour bucket whose keeper row is written

    # ---------------------------------------------------------------- open / close
    @classmethod
    def open(cls, path: Path, create: bool = True) -> "Store | None":
        """Open (and migrate) the state file. With ``create=False`` a missing file gives None.
        An unusable path is LT-003 (nothing is written)."""
        path = _expand(Path(path), "--db")
        if not path.exists():
            if not create:
                return None
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise EngineInitError(f"state database {path} cannot be created: {path.parent}: "
                                      f"{exc.strerror or 'not a directory'}") from None
            try:
                # Create it 0600 before SQLite touches it: the file holds the trading history.
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except FileExistsError:
                pass  # another process created it a moment ago
            except OSError as exc:
                raise EngineInitError(f"state database {path} cannot be created: {exc.strerror}") from None
        elif path.is_dir():
            raise EngineInitError(f"state database {path} is a directory")
        if create and not os.access(path, os.W_OK):
            raise EngineInitError(f"state database {path} is not writable")
        try:
            db = sqlite3.connect(str(path), timeout=5.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 5000")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise EngineInitError(f"state database {path}: WAL journal mode not available ({mode})")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            migrate(db)
        except sqlite3.DatabaseError as exc:
            raise EngineInitError(f"state database {path} is not usable: {exc}") from None
        for suffix in ("", "-wal", "-shm"):
            extra = Path(str(path) + suffix)
            try:
                if extra.exists() and stat.S_IMODE(extra.stat().st_mode) != 0o600:
                    extra.chmod(0o600)
            except OSError:
                pass
        return cls(path, db)

    def close(self) -> None:
        self.db.close()

    def journal_mode(self) -> str:
        return self.db.execute("PRAGMA journal_mode").fetchone()[0]

    def applied_migrations(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM migrations ORDER BY name")]

    # ---------------------------------------------------------------- runs
    def insert_run(
        self,
        *,
        run_id: str,
        strategy_name: str,
        mode: str,
        share_class: str,
        initial_capital: str,
        execution_mode: str,
        environment: str,
        feed_label: str,
        request: dict[str, Any],
        config: dict[str, Any],
        pid: int,
        host: str,
        pid_start: str | None,
        heartbeat_timeout: float,
    ) -> None:
        now = iso(utc_now())
        self.db.execute(
            """INSERT INTO runs (run_id, strategy_name, mode, share_class, initial_capital,
                   execution_mode, environment, feed_label, request_json, config_json, pid, host,
                   pid_start, status, created_at, started_at, heartbeat_timeout, last_heartbeat,
                   current_value, total_pnl, peak_value)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?, 'running', ?, ?, ?, ?, ?, '0', ?)""",
            (run_id, strategy_name, mode, share_class, initial_capital, execution_mode, environment,
             feed_label, _dumps(request), _dumps(config), pid, host, pid_start, now, now,
             heartbeat_timeout, now, initial_capital, initial_capital),
        )

    def get_run(self, run_id: str) -> RunRow | None:
        cur = self.db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        row = cur.fetchone()
        return RunRow(*row) if row else None

    def resolve_run_id(self, prefix: str) -> str:
        """A full run id from an id or a unique prefix (LT-001 otherwise)."""
        rows = self.db.execute(
            "SELECT run_id FROM runs WHERE run_id = ? OR run_id LIKE ? ESCAPE '\\' LIMIT 3",
            (prefix, prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"),
        ).fetchall()
        ids = {r[0] for r in rows}
        if prefix in ids:
            return prefix
        if len(ids) == 1:
            return ids.pop()
        if not ids:
            raise RequestValidationError(f"no run {prefix!r} in {self.path}")
        raise RequestValidationError(f"run id prefix {prefix!r} is ambiguous; give more characters")

    def list_runs(self, statuses: tuple[str, ...] | None = None) -> list[RunRow]:
        if statuses:
            marks = ",".join("?" for _ in statuses)
            cur = self.db.execute(
                f"SELECT * FROM runs WHERE status IN ({marks}) ORDER BY created_at, run_id", statuses
            )
        else:
            cur = self.db.execute("SELECT * FROM runs ORDER BY created_at, run_id")
        return [RunRow(*row) for row in cur.fetchall()]

    def set_run_status(
        self, run_id: str, status: str, stop_reason: str | None = None, *, only_if: tuple[str, ...] | None = None
    ) -> bool:
        """Move a run to ``status``; with ``only_if`` only from one of those statuses. Returns
        whether the row changed. A terminal status stamps ``stopped_at``."""
        terminal = status not in ACTIVE_STATUSES
        params: list[Any] = [status, stop_reason, iso(utc_now()) if terminal else None, run_id]
        where = "run_id = ?"
        if only_if:
            where += f" AND status IN ({','.join('?' for _ in only_if)})"
            params.extend(only_if)
        sql = f"""UPDATE runs SET status = ?, stop_reason = COALESCE(?, stop_reason),
                      stopped_at = COALESCE(?, stopped_at) WHERE {where}"""
        # A final status is retried through a lock (each try waits busy_timeout): it is what tells
        # `status` and `health` that the engine is gone.
        deadline = time.monotonic() + (FINAL_WRITE_SECONDS if terminal else 0.0)
        while True:
            try:
                return self.db.execute(sql, params).rowcount == 1
            except sqlite3.OperationalError as exc:
                if not is_locked(exc) or time.monotonic() >= deadline:
                    raise

    def set_trading_state(self, run_id: str, trading_state: str) -> None:
        self.db.execute("UPDATE runs SET trading_state = ? WHERE run_id = ?", (trading_state, run_id))

    def heartbeat(self, run_id: str, trading_state: str, risk: dict[str, Any],
                  last_tick_at: datetime | None = None) -> None:
        self.db.execute(
            """UPDATE runs SET last_heartbeat = ?, trading_state = ?, risk_status = ?, risk_json = ?,
                   last_tick_at = COALESCE(?, last_tick_at)
               WHERE run_id = ?""",
            (iso(utc_now()), trading_state, risk.get("status"), _dumps(risk), iso(last_tick_at), run_id),
        )

    def set_net_flows(self, run_id: str, net_flows: str) -> None:
        self.db.execute("UPDATE runs SET net_flows = ? WHERE run_id = ?", (net_flows, run_id))

    # ---------------------------------------------------------------- snapshots
    def record_snapshot(
        self,
        run_id: str,
        *,
        sim_time: datetime,
        equity: str,
        pnl: str,
        peak_value: str,
        drawdown: float,
        max_drawdown: float,
        total_trades: int,
        positions: Any,
        exposures: Any,
        risk: dict[str, Any],
        metrics: dict[str, Any],
        trading_state: str,
    ) -> None:
        """One snapshot row and the run's current figures, in one transaction; prunes old rows."""
        row = SnapshotRow(sim_time, equity, pnl, drawdown, positions, exposures, risk,
                          metrics.get("pnl_by_source", {}))
        self.record_snapshots(run_id, [row], RunFigures(equity, pnl, peak_value, drawdown, max_drawdown,
                                                       total_trades, sim_time, risk, metrics, trading_state))

    def record_snapshots(self, run_id: str, rows: list["SnapshotRow"], figures: "RunFigures") -> None:
        """Snapshot rows (oldest first) and the run's current figures, in one transaction; prunes old
        rows. A backtest writes its ticks in batches this way; a live run one row at a time."""
        if not rows:
            return
        now = iso(utc_now())
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            kept = self._kept_bucket.get(run_id)
            values = []
            for row in rows:
                sim = iso(row.sim_time)
                bucket = sim[:13]  # YYYY-MM-DDTHH
                if kept is not None and bucket > kept:
                    # Sim time only moves forward within a run: a later hour has no keeper yet.
                    keep = True
                elif kept == bucket:
                    keep = False
                else:
                    # The first row of each hour is the one pruning keeps; this process has not
                    # written this hour (or went back in time): ask the table.
                    keep = db.execute(
                        "SELECT 1 FROM snapshots WHERE run_id = ? AND hour_bucket = ? AND keep = 1 LIMIT 1",
                        (run_id, bucket),
                    ).fetchone() is None
                if kept is None or bucket > kept:
                    kept = bucket
                values.append((run_id, now, sim, row.equity, row.pnl, row.drawdown, _dumps(row.positions),
                               _dumps(row.exposures), _dumps(row.risk), bucket, int(keep),
                               _dumps(row.pnl_by_source)))
            db.executemany(
                """INSERT INTO snapshots (run_id, wall_time, sim_time, equity, pnl, drawdown,
                       positions_json, exposures_json, risk_json, hour_bucket, keep, pnl_by_source_json)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?)""",
                values,
            )
            f = figures
            db.execute(
                """UPDATE runs SET current_value = ?, total_pnl = ?, peak_value = ?, current_drawdown = ?,
                       max_drawdown = ?, total_trades = ?, sim_time = ?, last_heartbeat = ?,
                       risk_status = ?, risk_json = ?, metrics_json = ?, trading_state = ?
                   WHERE run_id = ?""",
                (f.equity, f.pnl, f.peak_value, f.drawdown, f.max_drawdown, f.total_trades, iso(f.sim_time), now,
                 f.risk.get("status"), _dumps(f.risk), _dumps(f.metrics), f.trading_state, run_id),
            )
            before = self._snapshot_inserts
            self._snapshot_inserts += len(rows)
            if self._snapshot_inserts // _PRUNE_EVERY != before // _PRUNE_EVERY:
                self._prune_snapshots(run_id)
            db.execute("COMMIT")
        except BaseException:
            self._kept_bucket.pop(run_id, None)
            db.execute("ROLLBACK")
            raise
        self._kept_bucket[run_id] = kept

    def _prune_snapshots(self, run_id: str) -> None:
        self.db.execute(
            """DELETE FROM snapshots WHERE run_id = ? AND keep = 0 AND id <= (
                   SELECT id FROM snapshots WHERE run_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)""",
            (run_id, run_id, SNAPSHOT_RETENTION),
        )

    def last_transaction_signed(self, run_id: str) -> str | None:
        """When the newest on-chain transaction of one of this run's orders was signed (ISO time),
        or None: a live chain step (a leverage loop) signs a transaction every block or so for
        minutes, all inside one strategy tick. Keys hold client order ids ``bl<run_id><seq>``."""
        row = self.db.execute("SELECT MAX(signed_at) FROM chain_transactions WHERE instr(key, ?) > 0",
                              (f"/bl{run_id}",)).fetchone()
        return row[0] if row else None

    def count_snapshots(self, run_id: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM snapshots WHERE run_id = ?", (run_id,)).fetchone()[0]

    def latest_snapshot(self, run_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            """SELECT sim_time, wall_time, equity, pnl, drawdown, positions_json, exposures_json, risk_json
               FROM snapshots WHERE run_id = ? ORDER BY id DESC LIMIT 1""",
            (run_id,),
        ).fetchone()
        if row is None:
            return None
        return {
            "sim_time": row[0], "wall_time": row[1], "equity": row[2], "pnl": row[3], "drawdown": row[4],
            "positions": json.loads(row[5]), "exposures": json.loads(row[6]), "risk": json.loads(row[7]),
        }

    def equity_series(self, run_id: str) -> Iterator[tuple[str, str]]:
        yield from self.db.execute(
            "SELECT sim_time, equity FROM snapshots WHERE run_id = ? ORDER BY id", (run_id,)
        )

    # ---------------------------------------------------------------- orders and fills
    def insert_order(
        self,
        *,
        client_order_id: str,
        run_id: str,
        venue: str,
        instrument: str,
        side: str,
        order_type: str,
        quantity: str,
        price: str | None,
        reduce_only: bool,
        purpose: str,
        sim_time: datetime,
    ) -> None:
        """Record an order as ``pending_submit`` before it is sent (exactly-once: a restart finds it
        and asks the venue instead of sending again)."""
        now = iso(utc_now())
        self.db.execute(
            """INSERT INTO orders (client_order_id, run_id, venue, instrument, side, order_type,
                   quantity, price, reduce_only, purpose, status, created_at, updated_at, sim_time)
               VALUES (?,?,?,?,?,?,?,?,?,?, 'pending_submit', ?, ?, ?)""",
            (client_order_id, run_id, venue, instrument, side, order_type, quantity, price,
             int(reduce_only), purpose, now, now, iso(sim_time)),
        )

    def update_order(
        self,
        client_order_id: str,
        *,
        status: str,
        venue_order_id: str | None = None,
        filled_quantity: str | None = None,
        average_price: str | None = None,
        fee: str | None = None,
        fee_asset: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.db.execute(
            """UPDATE orders SET status = ?, venue_order_id = COALESCE(?, venue_order_id),
                   filled_quantity = COALESCE(?, filled_quantity), average_price = COALESCE(?, average_price),
                   fee = COALESCE(?, fee), fee_asset = COALESCE(?, fee_asset), reason = COALESCE(?, reason),
                   updated_at = ?
               WHERE client_order_id = ?""",
            (status, venue_order_id, filled_quantity, average_price, fee, fee_asset, reason,
             iso(utc_now()), client_order_id),
        )

    def list_orders(self, run_id: str, statuses: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM orders WHERE run_id = ?"
        params: list[Any] = [run_id]
        if statuses:
            sql += f" AND status IN ({','.join('?' for _ in statuses)})"
            params.extend(statuses)
        cur = self.db.execute(sql + " ORDER BY created_at, rowid", params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def list_orders_on_venues(self, venues: list[str], statuses: tuple[str, ...], execution_mode: str,
                              environment: str) -> list[dict[str, Any]]:
        """Orders of any run of this execution mode and environment on these venues, in these
        statuses (a live start reconciles what earlier runs left possibly open)."""
        if not venues or not statuses:
            return []
        cur = self.db.execute(
            f"""SELECT o.* FROM orders o JOIN runs r ON r.run_id = o.run_id
                WHERE r.execution_mode = ? AND r.environment = ?
                  AND o.venue IN ({','.join('?' for _ in venues)})
                  AND o.status IN ({','.join('?' for _ in statuses)})
                ORDER BY o.created_at, o.rowid""",
            [execution_mode, environment, *venues, *statuses])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def known_client_order_ids(self, client_order_ids: list[str]) -> set[str]:
        """Which of these client order ids are orders of ours (any run)."""
        known: set[str] = set()
        for start in range(0, len(client_order_ids), 500):
            chunk = client_order_ids[start:start + 500]
            known.update(row[0] for row in self.db.execute(
                f"SELECT client_order_id FROM orders WHERE client_order_id IN ({','.join('?' for _ in chunk)})", chunk))
        return known

    def count_orders(self, run_id: str) -> dict[str, int]:
        return dict(
            self.db.execute("SELECT status, COUNT(*) FROM orders WHERE run_id = ? GROUP BY status", (run_id,))
        )

    def insert_fill(
        self,
        *,
        run_id: str,
        client_order_id: str,
        venue: str,
        fill_id: str,
        instrument: str,
        side: str,
        quantity: str,
        price: str,
        fee: str,
        fee_asset: str,
        sim_time: datetime,
    ) -> bool:
        """Record a fill once (a fill seen twice, e.g. after a reconcile, is ignored)."""
        cur = self.db.execute(
            """INSERT OR IGNORE INTO fills (run_id, client_order_id, venue, fill_id, instrument, side,
                   quantity, price, fee, fee_asset, sim_time, wall_time)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?)""",
            (run_id, client_order_id, venue, fill_id, instrument, side, quantity, price, fee, fee_asset,
             iso(sim_time), iso(utc_now())),
        )
        return cur.rowcount == 1

    def list_fills(self, run_id: str) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT * FROM fills WHERE run_id = ? ORDER BY id", (run_id,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    # ---------------------------------------------------------------- commands
    def enqueue_command(self, run_id: str, kind: str, args: dict[str, Any] | None = None) -> int:
        cur = self.db.execute(
            "INSERT INTO commands (run_id, kind, args_json, created_at) VALUES (?,?,?,?)",
            (run_id, kind, _dumps(args or {}), iso(utc_now())),
        )
        return int(cur.lastrowid)

    def take_pending_commands(self, run_id: str) -> list[CommandRow]:
        """Commands not yet picked up, oldest first; marks them picked."""
        rows = self.db.execute(
            "SELECT * FROM commands WHERE run_id = ? AND picked_at IS NULL ORDER BY id", (run_id,)
        ).fetchall()
        if rows:
            self.db.execute(
                f"UPDATE commands SET picked_at = ? WHERE id IN ({','.join('?' for _ in rows)})",
                [iso(utc_now()), *[r[0] for r in rows]],
            )
        return [self._command(r) for r in rows]

    def ack_command(self, command_id: int, status: str, message: str) -> None:
        self.db.execute(
            "UPDATE commands SET acked_at = ?, ack_status = ?, ack_message = ? WHERE id = ?",
            (iso(utc_now()), status, message, command_id),
        )

    def unacknowledged_commands(self, run_id: str) -> list[CommandRow]:
        rows = self.db.execute(
            "SELECT * FROM commands WHERE run_id = ? AND acked_at IS NULL ORDER BY id", (run_id,)
        ).fetchall()
        return [self._command(r) for r in rows]

    def get_command(self, command_id: int) -> CommandRow | None:
        row = self.db.execute("SELECT * FROM commands WHERE id = ?", (command_id,)).fetchone()
        return self._command(row) if row else None

    @staticmethod
    def _command(row: tuple[Any, ...]) -> CommandRow:
        return CommandRow(row[0], row[1], row[2], json.loads(row[3]), *row[4:])

    # ---------------------------------------------------------------- events
    def append_event(
        self,
        run_id: str | None,
        kind: str,
        message: str,
        *,
        level: str = "info",
        sim_time: datetime | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.db.execute(
            "INSERT INTO events (run_id, wall_time, sim_time, kind, level, message, data_json) VALUES (?,?,?,?,?,?,?)",
            (run_id, iso(utc_now()), iso(sim_time), kind, level, message, _dumps(data or {})),
        )

    def list_events(self, run_id: str, kind_prefix: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, run_id, wall_time, sim_time, kind, level, message, data_json FROM events WHERE run_id = ?"
        params: list[Any] = [run_id]
        if kind_prefix:
            sql += " AND kind LIKE ?"
            params.append(kind_prefix + "%")
        sql += " ORDER BY id"
        if limit:
            sql = f"SELECT * FROM ({sql.replace(' ORDER BY id', ' ORDER BY id DESC')} LIMIT {int(limit)}) ORDER BY id"
        return [
            {"id": r[0], "run_id": r[1], "wall_time": r[2], "sim_time": r[3], "kind": r[4], "level": r[5],
             "message": r[6], "data": json.loads(r[7])}
            for r in self.db.execute(sql, params)
        ]


# --------------------------------------------------------------------------------------------------
# The on-chain transaction journal


class StoreJournal:
    """``venues.transactions.TransactionJournal`` in the state database: signed transactions and
    order intents, durable (synchronous=FULL for each write) before the caller broadcasts.
    Raw signed transactions are public once broadcast; no key material is stored."""

    _COLUMNS = ("key, sender, nonce, tx_hash, raw, to_address, value, data, gas, max_fee_per_gas, "
                "max_priority_fee_per_gas, label, signed_at")

    def __init__(self, store: Store) -> None:
        self.db = store.db

    def _durable(self, sql: str, params: tuple[Any, ...]) -> None:
        self.db.execute("PRAGMA synchronous = FULL")
        try:
            self.db.execute(sql, params)
        finally:
            self.db.execute("PRAGMA synchronous = NORMAL")

    def record_signed(self, tx: Any) -> None:
        self._durable(
            f"INSERT INTO chain_transactions ({self._COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (tx.key, tx.sender, tx.nonce, tx.tx_hash, tx.raw, tx.to, str(tx.value), tx.data, tx.gas,
             str(tx.max_fee_per_gas), str(tx.max_priority_fee_per_gas), tx.label, tx.signed_at))

    def _rows(self, where: str = "", params: tuple[Any, ...] = ()) -> list[Any]:
        from basis_live.venues.transactions import SignedTransaction

        cur = self.db.execute(f"SELECT {self._COLUMNS} FROM chain_transactions {where} ORDER BY id", params)
        return [SignedTransaction(key=r[0], sender=r[1], nonce=r[2], tx_hash=r[3], raw=r[4], to=r[5], value=int(r[6]),
                                  data=r[7], gas=r[8], max_fee_per_gas=int(r[9]), max_priority_fee_per_gas=int(r[10]),
                                  label=r[11], signed_at=r[12]) for r in cur.fetchall()]

    def transactions(self, key: str) -> list[Any]:
        return self._rows("WHERE key = ?", (key,))

    def all_transactions(self) -> list[Any]:
        return self._rows()

    def transaction_keys(self, prefix: str) -> list[str]:
        # A key range (BINARY collation: byte order) rather than LIKE, which is case-insensitive,
        # treats _ and % as wildcards and cannot use the key index.
        return [row[0] for row in self.db.execute(
            "SELECT key FROM chain_transactions WHERE key >= ? AND key < ? GROUP BY key ORDER BY MIN(id)",
            (prefix, prefix + "\U0010ffff"))]

    def last_nonce(self, sender: str) -> int | None:
        row = self.db.execute("SELECT MAX(nonce) FROM chain_transactions WHERE lower(sender) = lower(?)",
                              (sender,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def put_intent(self, key: str, intent: dict[str, Any]) -> None:
        self._durable(
            """INSERT INTO chain_intents (key, intent_json, updated_at) VALUES (?, ?, ?)
               ON CONFLICT(key) DO UPDATE SET intent_json = excluded.intent_json, updated_at = excluded.updated_at""",
            (key, _dumps(intent), iso(utc_now())))

    def intent(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT intent_json FROM chain_intents WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def intent_keys(self, prefix: str = "") -> list[str]:
        # substr, not LIKE: LIKE is case-insensitive and treats _ and % as wildcards.
        return [row[0] for row in self.db.execute(
            "SELECT key FROM chain_intents WHERE substr(key, 1, ?) = ? ORDER BY id", (len(prefix), prefix))]
