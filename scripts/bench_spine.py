#!/usr/bin/env python3
"""Benchmark the operator spine of basis-live: read latency, stop latency, breach-to-halt latency.

Three measurements, each in its own temporary directory (state DB, XDG_STATE_HOME and
XDG_CONFIG_HOME all point inside it, so the user's real state and strategies are never touched):

1. ``status_cold``: wall time of a fresh ``basis-live status`` process (and ``status --json``)
   against a fresh ``python -c "import typer, rich.console, sqlite3"`` on the same interpreter,
   plus the slowest imports of ``python -X importtime -m basis_live status``.
2. ``stop_ack``: a background ``basis-live start pure_lending`` engine is stopped with
   ``basis-live stop RUN_ID``; measured are the stop command's wall time and the engine's own
   ``commands.created_at`` -> ``acked_at`` span, and the engine must exit afterwards.
3. ``breach_halt``: in this process, a btc_basis run whose feed turns breaching on demand (perp
   marks +40% over spot on every venue); measured is breaching snapshot -> trading state HALTED,
   both as the watchdog records it and independently here.

Every repeat loop is bounded in count and in wall time; every process started here is ended on
exit, error or SIGTERM. Run it with the interpreter of the project's venv:

    /work/venv/bin/python scripts/bench_spine.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import random
import re
import secrets
import shlex
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from benchlib import BenchFailure, Budget, Progress, percentile

#: Fresh processes of each command timed for measurement 1 (after one discarded warm-up run).
DEFAULT_STATUS_RUNS = 30
#: Stop cycles (start engine, stop it, wait for exit) for measurement 2.
DEFAULT_STOP_RUNS = 25
#: In-process breach runs for measurement 3.
DEFAULT_BREACH_RUNS = 50
QUICK_RUNS = (5, 5, 10)

#: Wall-time budget of each measurement's repeat loop; a loop that runs out stops early and says so.
MEASUREMENT_BUDGET_SECONDS = 90.0
#: Paper runs written to the status DB before timing (status lists them all).
STATUS_SEED_RUNS = 3
#: How long each seeding run trades before it is stopped.
STATUS_SEED_RUN_SECONDS = 1.0
#: Slowest imports listed from -X importtime.
SLOWEST_IMPORTS = 8

#: Simulated seconds per wall second of the engines in measurements 2 and 3.
ENGINE_SPEED = 3600.0
#: Longest wait for a started engine to show up running with a fresh heartbeat.
ENGINE_READY_TIMEOUT = 30.0
#: Longest wait for an engine process to exit once its stop was acknowledged.
ENGINE_EXIT_TIMEOUT = 10.0
#: Timeout of one `basis-live stop` (also passed to it as --timeout).
STOP_TIMEOUT = 15.0
#: Timeout of one short CLI call (status, importtime).
CLI_TIMEOUT = 30.0

#: Perp mark over spot on every venue once the breach feed is armed (+40%).
PERP_JUMP = 1.40
#: Drawdown limit of the breach runs (policy emergency_stop, as btc_basis ships it).
BREACH_DRAWDOWN_LIMIT = "0.01"
#: After the position is open, the feed turns breaching after a random delay up to this (seconds),
#: so breaches land at every phase of the market, strategy and watchdog loops.
BREACH_ARM_JITTER = 0.1
#: Longest a single breach run may take from start to its final state.
BREACH_RUN_TIMEOUT = 30.0

GOALS = {"status_ratio_max": 1.5, "stop_ack_p99_ms": 250.0, "breach_halt_p99_ms": 50.0}


# --------------------------------------------------------------------------------------------------
# statistics and small helpers


def summarize(values: list[float]) -> dict[str, Any]:
    """n, p50 (median), p90, p99, max and min of ``values`` (milliseconds), rounded to 0.01 ms."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(statistics.median(values), 2),
            "p90": round(percentile(values, 90), 2), "p99": round(percentile(values, 99), 2),
            "max": round(max(values), 2), "min": round(min(values), 2)}


def parse_iso(text: str) -> datetime:
    """The store's ISO 8601 UTC timestamps ("2025-01-01T00:00:00.123Z"; millisecond resolution)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def log_tail(path: Path, lines: int = 6) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def isolated_state(label: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """A temporary directory and an environment whose state DB, XDG_STATE_HOME and XDG_CONFIG_HOME
    all live inside it (paper execution, dev environment). Removed afterwards.

    Bytecode is cached under the directory (PYTHONPYCACHEPREFIX, PYTHONDONTWRITEBYTECODE unset), so
    after the first run every command, baseline included, starts from cached bytecode as an
    installed CLI does, whatever the caller's environment says, and nothing is written to the tree."""
    with tempfile.TemporaryDirectory(prefix=f"bench-spine-{label}-") as tmp:
        root = Path(tmp)
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update({
            "PYTHONPYCACHEPREFIX": str(root / "pycache"),
            "BASIS_LIVE_DB": str(root / "state.db"),
            "XDG_STATE_HOME": str(root / "xdg-state"),
            "XDG_CONFIG_HOME": str(root / "xdg-config"),
            "BASIS_ENVIRONMENT": "dev",
            "BASIS_EXECUTION_MODE": "paper",
        })
        yield root, env


@contextlib.contextmanager
def process_environ(env: dict[str, str]) -> Iterator[None]:
    """This process's os.environ replaced by ``env`` for the duration (restored afterwards)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# --------------------------------------------------------------------------------------------------
# engine processes


class EngineProcesses:
    """Every engine process this benchmark starts. ``end_all`` terminates, by pid, each one still
    running (SIGTERM, then SIGKILL after 3 s); it runs on every exit path."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        with open(log_path, "wb") as log:
            process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append(process)
        return process

    def end_all(self) -> None:
        for process in self.started:
            if process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=3)


class Cli:
    """The basis-live console script and the interpreter its shebang names."""

    def __init__(self, script: Path) -> None:
        if not script.is_file():
            raise SystemExit(f"bench_spine: no basis-live console script at {script} (use --cli)")
        self.script = script
        first_line = script.read_text(errors="replace").splitlines()[0]
        self.python = first_line[2:].strip() if first_line.startswith("#!") else sys.executable

    def run(self, args: list[str], env: dict[str, str], timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.script), *args], env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def status_rows(self, env: dict[str, str]) -> list[dict[str, Any]]:
        result = self.run(["status", "--json"], env)
        if result.returncode != 0:
            raise BenchFailure(f"status --json exited {result.returncode}: {result.stderr.strip()}")
        return json.loads(result.stdout)


def start_engine(cli: Cli, engines: EngineProcesses, env: dict[str, str], log_path: Path,
                 capital: str, speed: float) -> subprocess.Popen[bytes]:
    return engines.start([str(cli.script), "start", "pure_lending", "--capital", capital, "--speed", f"{speed:g}"],
                         env, log_path)


def wait_until_running(cli: Cli, env: dict[str, str], engine: subprocess.Popen[bytes], log_path: Path) -> str:
    """Poll ``status --json`` until the engine's run is running with a live process and its
    heartbeat has moved once (proof that the engine's loops, not just its setup, are writing).
    Returns the run id."""
    deadline = time.monotonic() + ENGINE_READY_TIMEOUT
    first_heartbeat: str | None = None
    while time.monotonic() < deadline:
        if engine.poll() is not None:
            raise BenchFailure(f"engine exited {engine.returncode} before running: {log_tail(log_path)}")
        for row in cli.status_rows(env):
            if row["pid"] != engine.pid or row["status"] != "running" or not row["process_alive"]:
                continue
            if first_heartbeat is None:
                first_heartbeat = row["last_heartbeat"]
            elif row["last_heartbeat"] != first_heartbeat:
                return str(row["run_id"])
        time.sleep(0.05)
    raise BenchFailure(f"engine pid {engine.pid} not running with a heartbeat after {ENGINE_READY_TIMEOUT:g}s")


def wait_for_exit(engine: subprocess.Popen[bytes], log_path: Path) -> int:
    """The engine's exit status; an engine still alive after ENGINE_EXIT_TIMEOUT is killed and is a failure."""
    try:
        return engine.wait(timeout=ENGINE_EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        engine.kill()
        engine.wait(timeout=5)
        raise BenchFailure(f"engine pid {engine.pid} still running {ENGINE_EXIT_TIMEOUT:g}s after its stop was "
                           f"acknowledged; killed: {log_tail(log_path)}") from None


def stop_run(cli: Cli, env: dict[str, str], run_id: str) -> float:
    """Run ``basis-live stop RUN_ID``; returns its wall time in ms (a non-zero exit is a failure)."""
    started = time.perf_counter()
    result = cli.run(["stop", run_id, "--timeout", f"{STOP_TIMEOUT:g}"], env, timeout=STOP_TIMEOUT + CLI_TIMEOUT)
    elapsed = (time.perf_counter() - started) * 1000
    if result.returncode != 0:
        raise BenchFailure(f"stop {run_id} exited {result.returncode}: {result.stderr.strip()}")
    return elapsed


# --------------------------------------------------------------------------------------------------
# 1. cold status


def time_fresh_process(argv: list[str], env: dict[str, str]) -> float:
    """Wall time (ms) of one fresh process from spawn to exit; a non-zero exit is a failure."""
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, timeout=CLI_TIMEOUT)
    elapsed = (time.perf_counter() - started) * 1000
    if result.returncode != 0:
        raise BenchFailure(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.decode(errors='replace')}")
    return elapsed


def seed_status_db(cli: Cli, engines: EngineProcesses, env: dict[str, str], root: Path) -> list[str]:
    """Write STATUS_SEED_RUNS finished paper runs into the DB: each a pure_lending engine at
    100000x that trades ~1 s and is stopped with `basis-live stop`."""
    run_ids = []
    for number in range(STATUS_SEED_RUNS):
        log_path = root / f"seed-{number}.log"
        engine = start_engine(cli, engines, env, log_path, "1000", 100_000)
        run_id = wait_until_running(cli, env, engine, log_path)
        time.sleep(STATUS_SEED_RUN_SECONDS)
        stop_run(cli, env, run_id)
        wait_for_exit(engine, log_path)
        run_ids.append(run_id)
    return run_ids


def slowest_imports(cli: Cli, env: dict[str, str]) -> list[dict[str, Any]]:
    """The SLOWEST_IMPORTS modules with the largest cumulative import time in one
    ``python -X importtime -m basis_live status``; ``depth`` is the nesting level (0 = imported
    directly by the command), so a child's time is already inside its parent's."""
    result = subprocess.run([cli.python, "-X", "importtime", "-m", "basis_live", "status"], env=env,
                            capture_output=True, text=True, timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
    imports = []
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            imports.append({"module": match[4], "cumulative_ms": int(match[2]) / 1000,
                            "self_ms": int(match[1]) / 1000, "depth": len(match[3]) // 2})
    imports.sort(key=lambda entry: entry["cumulative_ms"], reverse=True)
    return imports[:SLOWEST_IMPORTS]


def measure_status_cold(cli: Cli, engines: EngineProcesses, runs: int, progress: Progress) -> dict[str, Any]:
    """Wall time of a fresh `basis-live status` (table to a pipe) and `status --json` process, each
    against the baseline `python -c "import typer, rich.console, sqlite3"` on the console script's
    interpreter. The three commands are interleaved in each round so drifting machine load hits
    them alike; one warm-up round (bytecode and page cache) is discarded. The DB holds
    STATUS_SEED_RUNS finished runs."""
    with isolated_state("status") as (root, env):
        progress(f"status: seeding {STATUS_SEED_RUNS} paper runs")
        seeded = seed_status_db(cli, engines, env, root)
        commands = {
            "baseline": [cli.python, "-c", "import typer, rich.console, sqlite3"],
            "status": [str(cli.script), "status"],
            "status_json": [str(cli.script), "status", "--json"],
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        failures: list[str] = []
        for argv in commands.values():
            time_fresh_process(argv, env)
        progress(f"status: timing {runs} rounds of {', '.join(commands)}")
        budget = Budget(runs, MEASUREMENT_BUDGET_SECONDS)
        rounds = 0
        while budget.more(rounds):
            rounds += 1
            for name, argv in commands.items():
                try:
                    samples[name].append(time_fresh_process(argv, env))
                except (BenchFailure, subprocess.TimeoutExpired) as exc:
                    failures.append(f"{name}: {exc}")
        imports = slowest_imports(cli, env)
    stats = {name: summarize(values) for name, values in samples.items()}
    ratio = (stats["status"]["p50"] / stats["baseline"]["p50"]) if samples["status"] and samples["baseline"] else None
    ratio_json = (stats["status_json"]["p50"] / stats["baseline"]["p50"]) if samples["status_json"] and samples["baseline"] else None
    return {
        "runs_in_db": len(seeded),
        "baseline_command": shlex.join(commands["baseline"]),
        "wall_ms": stats,
        "ratio_median_status_over_baseline": None if ratio is None else round(ratio, 3),
        "ratio_median_status_json_over_baseline": None if ratio_json is None else round(ratio_json, 3),
        "goal_ratio_max": GOALS["status_ratio_max"],
        "meets_goal": ratio is not None and ratio <= GOALS["status_ratio_max"],
        "slowest_imports": imports,
        "failures": failures,
        "budget_exhausted": budget.exhausted,
    }


# --------------------------------------------------------------------------------------------------
# 2. stop -> acknowledgement


def command_timings(db_path: Path, run_id: str) -> tuple[float, float]:
    """(created_at -> picked_at, created_at -> acked_at) in ms of the run's last stop command, from
    the engine-written timestamps (millisecond resolution)."""
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)) as db:
        row = db.execute("SELECT created_at, picked_at, acked_at FROM commands WHERE run_id = ? AND kind = 'stop' "
                         "ORDER BY id DESC LIMIT 1", (run_id,)).fetchone()
    if row is None or row[2] is None:
        raise BenchFailure(f"run {run_id}: no acknowledged stop command in the commands table")
    created, picked, acked = (parse_iso(text) for text in row)
    return (picked - created).total_seconds() * 1000, (acked - created).total_seconds() * 1000


def run_status(db_path: Path, run_id: str) -> str:
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)) as db:
        return db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]


def measure_stop_ack(cli: Cli, engines: EngineProcesses, runs: int, progress: Progress) -> dict[str, Any]:
    """Per cycle: start `basis-live start pure_lending --capital 100000 --speed 3600` in the
    background, wait until `status --json` shows it running with a moving heartbeat, then time
    (a) the whole `basis-live stop RUN_ID` process (spawn, imports, enqueue, poll for the ack, exit)
    and (b) the engine side, commands.created_at -> acked_at (pickup by the watchdog, graceful
    shutdown, final snapshot, ack). The engine must then exit 0 with its run `stopped`."""
    samples: dict[str, list[float]] = {"stop_command_wall": [], "created_to_acked": [], "created_to_picked": []}
    failures: list[str] = []
    exit_codes: list[int] = []
    with isolated_state("stop") as (root, env):
        db_path = Path(env["BASIS_LIVE_DB"])
        budget = Budget(runs, MEASUREMENT_BUDGET_SECONDS)
        cycles = 0
        while budget.more(cycles):
            cycles += 1
            log_path = root / f"engine-{cycles}.log"
            try:
                engine = start_engine(cli, engines, env, log_path, "100000", ENGINE_SPEED)
                run_id = wait_until_running(cli, env, engine, log_path)
                wall = stop_run(cli, env, run_id)
                exit_code = wait_for_exit(engine, log_path)
                exit_codes.append(exit_code)
                picked, acked = command_timings(db_path, run_id)
                final = run_status(db_path, run_id)
                if exit_code != 0 or final != "stopped":
                    raise BenchFailure(f"run {run_id}: engine exited {exit_code}, run {final} "
                                       f"(expected 0 / stopped): {log_tail(log_path)}")
            except (BenchFailure, subprocess.TimeoutExpired) as exc:
                failures.append(f"cycle {cycles}: {exc}")
                engines.end_all()
                continue
            samples["stop_command_wall"].append(wall)
            samples["created_to_acked"].append(acked)
            samples["created_to_picked"].append(picked)
            progress(f"stop {cycles}/{runs}: command {wall:.0f} ms, engine ack {acked:.0f} ms")
    stats = {name: summarize(values) for name, values in samples.items()}
    p99 = stats["created_to_acked"].get("p99")
    return {
        "cycles": cycles,
        "ms": stats,
        "engine_exits": {"exited_0": exit_codes.count(0), "exited_other": len(exit_codes) - exit_codes.count(0)},
        "goal_p99_ms": GOALS["stop_ack_p99_ms"],
        "meets_goal": p99 is not None and p99 < GOALS["stop_ack_p99_ms"] and not failures,
        "failures": failures,
        "budget_exhausted": budget.exhausted,
    }


# --------------------------------------------------------------------------------------------------
# 3. breaching price -> HALTED (in process)


def breach_feed_class() -> type:
    """BreachSwitchFeed, defined once the project is importable (measurement 3 only)."""
    from basis_live.feeds.base import MarketFeed, MarketSnapshot
    from basis_live.feeds.sample import SampleFeed

    class BreachSwitchFeed(MarketFeed):
        """The sample feed, until ``armed``: from then on every perp mark on every venue is
        PERP_JUMP x spot. ``first_breach_monotonic`` is time.monotonic() just before the first
        breaching snapshot is returned to the engine."""

        def __init__(self, inner: SampleFeed) -> None:
            self.inner = inner
            self.label = f"{inner.label} with a +{(PERP_JUMP - 1) * 100:.0f}% perp jump on demand"
            self.is_sample = True
            self.start = inner.start
            self.end = inner.end
            self.armed = False
            self.first_breach_monotonic: float | None = None

        async def snapshot_at(self, ts: datetime) -> MarketSnapshot:
            snapshot = await self.inner.snapshot_at(ts)
            if not self.armed:
                return snapshot
            jumped = {venue: {asset: snapshot.spot[asset] * PERP_JUMP for asset in marks}
                      for venue, marks in snapshot.perp_mark.items()}
            snapshot = dataclasses.replace(snapshot, perp_mark=jumped)
            if self.first_breach_monotonic is None:
                self.first_breach_monotonic = time.monotonic()
            return snapshot

    return BreachSwitchFeed


@dataclasses.dataclass
class BreachSample:
    engine_latency_ms: float  # the watchdog's latency_ms in the state.halted event
    feed_to_halted_ms: float  # first breaching snapshot returned -> engine.state set to HALTED
    reason: str
    run_status: str


async def arm_when_position_open(engine: Any, feed: Any, rng: random.Random, run_task: asyncio.Task[Any]) -> None:
    """Wait until every hedge venue holds a perp position (so margin and drawdown can breach), then
    after a random delay up to BREACH_ARM_JITTER arm the feed."""
    hedge_venues = {v for v, w in engine.strategy.hedge_allocation.items() if w > 0}
    while True:
        if run_task.done():
            ended = run_task.exception() or run_task.result().status
            raise BenchFailure(f"run ended ({ended!r}) before its position was open")
        if engine.state != "ACTIVE":
            raise BenchFailure(f"trading state {engine.state} before the breach was armed")
        view = engine.view
        if view is not None and set(view.margin_ratios) >= hedge_venues:
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(rng.uniform(0.0, BREACH_ARM_JITTER))
    if engine.state != "ACTIVE":
        raise BenchFailure(f"trading state {engine.state} before the breach was armed")
    feed.armed = True


async def run_breach_once(db_path: Path, prepared: Any, feed_class: type, rng: random.Random) -> BreachSample:
    """One run assembled by ``assemble_paper_run``, as LiveTradingService.start_live_trading
    assembles it (same venues, run row, engine and watchdog; no SIGINT/SIGTERM handlers and no live
    view), but on a BreachSwitchFeed. engine.set_state is wrapped to note time.monotonic() the
    moment the state turns HALTED (before the store writes of set_state)."""
    from basis_live.engine.assembly import assemble_paper_run
    from basis_live.engine.engine import HALTED
    from basis_live.feeds.sample import SampleFeed
    from basis_live.store import Store

    config = prepared.config
    store = Store.open(db_path, create=True)
    assert store is not None
    try:
        feed = feed_class(SampleFeed(seed=config.feed.seed, scenario=config.feed.scenario))
        run_id = secrets.token_hex(4)
        assembled = await assemble_paper_run(run_id, config, feed, store, prepared.request)
        engine = assembled.engine
        halted_at: list[float] = []
        set_state = engine.set_state

        def noting_set_state(state: str, reason: str, latency_ms: float | None = None) -> None:
            if state == HALTED and engine.state != HALTED:
                halted_at.append(time.monotonic())
            set_state(state, reason, latency_ms)

        engine.set_state = noting_set_state  # type: ignore[method-assign]
        await engine.start()
        run_task = asyncio.create_task(engine.run(assembled.watchdog))
        try:
            async with asyncio.timeout(BREACH_RUN_TIMEOUT):
                await arm_when_position_open(engine, feed, rng, run_task)
                outcome = await asyncio.shield(run_task)
        except (TimeoutError, BenchFailure) as exc:
            engine.request_stop("benchmark run abandoned", status="failed")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(run_task, 10)
            if isinstance(exc, TimeoutError):
                raise BenchFailure(f"run {run_id} not finished {BREACH_RUN_TIMEOUT:g}s after start "
                                   f"(state {engine.state})") from None
            raise
        except Exception as exc:
            raise BenchFailure(f"run {run_id}: engine failed: {exc!r}") from exc
        if not halted_at or feed.first_breach_monotonic is None:
            raise BenchFailure(f"run {run_id} ended {outcome.status} without HALTED after the breach")
        events = store.list_events(run_id, kind_prefix="state.halted")
        if not events or "latency_ms" not in events[0]["data"]:
            raise BenchFailure(f"run {run_id}: no state.halted event with latency_ms")
        return BreachSample(
            engine_latency_ms=float(events[0]["data"]["latency_ms"]),
            feed_to_halted_ms=(halted_at[0] - feed.first_breach_monotonic) * 1000,
            reason=events[0]["message"].split(": ", 2)[-1].split(" breached")[0],
            run_status=outcome.status,
        )
    finally:
        store.close()


def measure_breach_halt(runs: int, progress: Progress) -> dict[str, Any]:
    """Per run (fresh temp DB, fresh feed): btc_basis, capital 100000, --speed 3600,
    `--risk max_drawdown=0.01` (policy emergency_stop); once the position is open the feed's perp
    marks jump +40% over spot on every venue. Measured: the watchdog's own latency_ms (snapshot
    stamped received -> set_state(HALTED)) and, independently, first breaching snapshot returned by
    the feed -> engine.state set to HALTED."""
    from basis_live.service import LiveTradingService

    feed_class = breach_feed_class()
    rng = random.Random(20250101)
    samples: list[BreachSample] = []
    failures: list[str] = []
    budget = Budget(runs, MEASUREMENT_BUDGET_SECONDS)
    attempts = 0
    while budget.more(attempts):
        attempts += 1
        with isolated_state("breach") as (_, env), process_environ(env):
            db_path = Path(env["BASIS_LIVE_DB"])
            service = LiveTradingService(db_path)
            prepared = service.create_request("btc_basis", "100000", risk_overrides=[f"max_drawdown={BREACH_DRAWDOWN_LIMIT}"],
                                              speed=ENGINE_SPEED)
            try:
                samples.append(asyncio.run(run_breach_once(db_path, prepared, feed_class, rng)))
            except BenchFailure as exc:
                failures.append(f"run {attempts}: {exc}")
                continue
        if attempts % 10 == 0:
            progress(f"breach {attempts}/{runs}")
    engine_ms = [s.engine_latency_ms for s in samples]
    feed_ms = [s.feed_to_halted_ms for s in samples]
    p99 = percentile(feed_ms, 99) if feed_ms else None
    reasons: dict[str, int] = {}
    statuses: dict[str, int] = {}
    for sample in samples:
        reasons[sample.reason] = reasons.get(sample.reason, 0) + 1
        statuses[sample.run_status] = statuses.get(sample.run_status, 0) + 1
    return {
        "runs": attempts,
        "ms": {"engine_latency_ms_event": summarize(engine_ms), "feed_breach_to_halted": summarize(feed_ms)},
        "halt_reasons": reasons,
        "final_run_status": statuses,
        "goal_p99_ms": GOALS["breach_halt_p99_ms"],
        "meets_goal": p99 is not None and p99 < GOALS["breach_halt_p99_ms"] and not failures,
        "failures": failures,
        "budget_exhausted": budget.exhausted,
    }


# --------------------------------------------------------------------------------------------------
# report


def machine_facts(cli: Cli) -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "cli": str(cli.script),
        "cli_python": cli.python,
    }


def _row(label: str, stats: dict[str, Any], keys: tuple[str, ...]) -> str:
    cells = "".join(f"{stats.get(k, float('nan')):>10.1f}" if stats.get("n") else f"{'-':>10}" for k in keys)
    return f"  {label:<50}{cells}{stats.get('n', 0):>6}"


def _verdict(ok: bool) -> str:
    return "MEETS GOAL" if ok else "MISSES GOAL"


def render_table(results: dict[str, Any]) -> str:
    """The human-readable summary of ``results``."""
    m = results["machine"]
    lines = [f"basis-live spine benchmark: {m['cpu_count']} CPUs ({m['cpus_usable']} usable), Python {m['python']}, "
             f"SQLite {m['sqlite']}, load {m['loadavg_at_start']}, {m['platform']}"]
    s = results["status_cold"]
    lines += ["", f"1. cold status: fresh process wall time, ms (DB with {s['runs_in_db']} runs)",
              f"  {'':<50}{'p50':>10}{'p90':>10}{'max':>10}{'n':>6}",
              _row("baseline (import typer, rich.console, sqlite3)", s["wall_ms"]["baseline"], ("p50", "p90", "max")),
              _row("basis-live status", s["wall_ms"]["status"], ("p50", "p90", "max")),
              _row("basis-live status --json", s["wall_ms"]["status_json"], ("p50", "p90", "max")),
              f"  median ratio status/baseline {s['ratio_median_status_over_baseline']}x "
              f"(status --json {s['ratio_median_status_json_over_baseline']}x), goal <= {s['goal_ratio_max']}x: "
              f"{_verdict(s['meets_goal'])}",
              "  slowest imports of `python -X importtime -m basis_live status` (cumulative ms, self ms, depth):"]
    lines += [f"    {imp['cumulative_ms']:8.1f} {imp['self_ms']:7.1f}  {'  ' * imp['depth']}{imp['module']}"
              for imp in s["slowest_imports"]]
    t = results["stop_ack"]
    lines += ["", f"2. stop -> acknowledgement, ms ({t['cycles']} cycles, pure_lending at {ENGINE_SPEED:g}x)",
              f"  {'':<50}{'p50':>10}{'p99':>10}{'max':>10}{'n':>6}",
              _row("(a) `basis-live stop RUN_ID` process wall", t["ms"]["stop_command_wall"], ("p50", "p99", "max")),
              _row("(b) commands.created_at -> acked_at", t["ms"]["created_to_acked"], ("p50", "p99", "max")),
              _row("    of which created_at -> picked_at", t["ms"]["created_to_picked"], ("p50", "p99", "max")),
              f"  engine exits after stop: {t['engine_exits']['exited_0']} exited 0, "
              f"{t['engine_exits']['exited_other']} otherwise; (b) p99 goal < {t['goal_p99_ms']:g} ms: "
              f"{_verdict(t['meets_goal'])}"]
    b = results["breach_halt"]
    lines += ["", f"3. breaching price -> HALTED, ms ({b['runs']} in-process btc_basis runs at {ENGINE_SPEED:g}x, "
                  f"perp +{(PERP_JUMP - 1) * 100:.0f}%)",
              f"  {'':<50}{'p50':>10}{'p99':>10}{'max':>10}{'n':>6}",
              _row("watchdog latency_ms (state.halted event)", b["ms"]["engine_latency_ms_event"], ("p50", "p99", "max")),
              _row("feed returned breach -> engine.state HALTED", b["ms"]["feed_breach_to_halted"], ("p50", "p99", "max")),
              f"  halted on: {b['halt_reasons']}; runs ended: {b['final_run_status']}; "
              f"p99 goal < {b['goal_p99_ms']:g} ms: {_verdict(b['meets_goal'])}"]
    for name in ("status_cold", "stop_ack", "breach_halt"):
        section = results[name]
        if section["budget_exhausted"]:
            lines.append(f"  NOTE {name}: wall-time budget ({MEASUREMENT_BUDGET_SECONDS:g}s) ran out before all repeats")
        lines += [f"  FAILURE {name}: {failure}" for failure in section["failures"]]
    lines.append(f"\ntotal {results['elapsed_seconds']:.0f} s")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--status-runs", type=int, help=f"fresh processes per command (default {DEFAULT_STATUS_RUNS})")
    parser.add_argument("--stop-runs", type=int, help=f"start/stop cycles (default {DEFAULT_STOP_RUNS})")
    parser.add_argument("--breach-runs", type=int, help=f"in-process breach runs (default {DEFAULT_BREACH_RUNS})")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {'/'.join(map(str, QUICK_RUNS))} repeats unless given explicitly")
    parser.add_argument("--json", action="store_true", help="print only the JSON results on stdout")
    parser.add_argument("--cli", type=Path, default=Path(sys.executable).parent / "basis-live",
                        help="the basis-live console script (default: next to this interpreter)")
    args = parser.parse_args(argv)
    defaults = QUICK_RUNS if args.quick else (DEFAULT_STATUS_RUNS, DEFAULT_STOP_RUNS, DEFAULT_BREACH_RUNS)
    for name, default in zip(("status_runs", "stop_runs", "breach_runs"), defaults):
        value = getattr(args, name)
        if value is None:
            setattr(args, name, default)
        elif value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def run_benchmark(args: argparse.Namespace, engines: EngineProcesses) -> dict[str, Any]:
    cli = Cli(args.cli)
    progress = Progress(not args.json, "bench")
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine_facts(cli), "goals": GOALS,
                               "repeats": {"status": args.status_runs, "stop": args.stop_runs, "breach": args.breach_runs}}
    results["status_cold"] = measure_status_cold(cli, engines, args.status_runs, progress)
    results["stop_ack"] = measure_stop_ack(cli, engines, args.stop_runs, progress)
    results["breach_halt"] = measure_breach_halt(args.breach_runs, progress)
    results["elapsed_seconds"] = round(time.monotonic() - started, 1)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    engines = EngineProcesses()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        results = run_benchmark(args, engines)
    except BenchFailure as exc:
        sys.stderr.write(f"bench_spine: setup failed: {exc}\n")
        return 1
    finally:
        engines.end_all()
        signal.signal(signal.SIGTERM, previous)
    if not args.json:
        print(render_table(results))
        print()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
