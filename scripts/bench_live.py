#!/usr/bin/env python3
"""Benchmark a live btc_basis run against the loopback exchange peer: per-tick overhead of the live
loop (excluding the server's own time) and emergency stop -> no open order on any venue.

Everything runs in this process on the real code path: the run is built as the service builds a
live run (``BASIS_DEV__CEX__*`` credentials and ``_API_URL`` overrides in the environment, a fresh
SQLite store, ``ConfigManager().load("btc_basis")`` + ``build_run_config(live_environment="dev")``,
``build_live_venues``, ``LiveFeed(trading=True)``, ``assemble_live_run``, ``engine.start()``), so
ccxt, CcxtVenue, OrderManager and the engine all run for real; only the venues are
``tests/peers.ExchangePeer`` (binance spot + USDⓈ-M perps, bybit and okx perps) on 127.0.0.1.

1. ``tick``: ``await engine.tick()`` back to back (no market, strategy or watchdog task runs; the
   market snapshot is the one taken at start). Ticks that sent orders are "entry" ticks (the first
   tick of each run opens the position with market orders), the others "steady". Per tick: wall
   time; server time = the union of the peer's request-handler intervals inside the tick (its
   ``_handle`` is wrapped here, on the instance); overhead = wall - server; HTTP requests; this
   thread's CPU time; ccxt rate-limiter waits; and where the time goes (engine phases, venue calls,
   endpoints, SQLite, garbage collection). Two rows: ccxt's rate limiter on (as ``create_exchange``
   builds it, as in production) and off (``exchange.enableRateLimit = False`` on every venue's
   exchange). Each limiter-on run ends with one more tick after an idle second: ccxt's leaky bucket
   only refills while a request is waiting, so each request waits for the previous request's cost
   however long the pause (60 s between ticks in production changes nothing). And each run ends
   with one tick with the venues' funding poll due (``funding_poll_seconds`` set to 0 for it), as
   every 60 s in a run: the back-to-back ticks before all fall inside one poll window.
2. ``estop``: btc_basis with ``execution.order_type=limit`` and ``execution.limit_offset_bps=100``;
   one tick leaves resting entry orders on all three venues (checked on the peer), then
   ``await engine.emergency_stop("bench", unwind=False)`` is timed from call to return, and from
   call to the moment the peer holds no open order on any venue (``peer.orders`` checked by the
   peer's thread right after every request it answers, and again after the call returns).
   R repeats per row (limiter on / off, interleaved), each a fresh run and store on one peer
   re-funded with ``fund()`` and checked free of open orders first.
3. ``feed``: one refresh of the live market data (``LiveFeed._read``, every 5 s in a run, beside the
   ticks), limiter on and off; and ``floor``: the loopback HTTP round trip of a bare aiohttp GET and
   of ccxt's ``fetch_time`` beside the peer's handler time, to read the overheads against.

Caveats, measured as they are: the peer runs in a thread of this process, so it and the client
share the GIL (on loopback the client waits for each answer anyway); aiohttp's server-side HTTP
parsing and writing happen outside ``_handle`` and so count as overhead (the ``floor`` row sizes
them). Run setup and the tick that places the resting orders (not measured) run with the limiter
off to save time; in the limiter-on rows it is then switched on and primed with one account read
per venue (the state a previous tick leaves it in) before anything is measured.

    /work/venv/bin/python scripts/bench_live.py [--ticks 200] [--ticks-limited 60] [--runs 5]
                                                [--stops 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import inspect
import json
import math
import os
import platform
import secrets
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from benchlib import BenchFailure, Budget, Progress, percentile, time_store_calls  # noqa: E402  (this folder is on sys.path: run as a script)

VENUES = ("binance", "bybit", "okx")
CAPITAL = Decimal(100_000)
STRATEGY = "btc_basis"
ESTOP_OVERRIDES = ["execution.order_type=limit", "execution.limit_offset_bps=100"]

DEFAULT_TICKS = 200  # limiter-off row: the client-side overhead proper
DEFAULT_TICKS_LIMITED = 60  # limiter-on row: ~0.45 s a tick, almost all of it deliberate waiting
DEFAULT_RUNS = 5  # fresh runs (fresh peer) per tick row: each gives one entry tick
DEFAULT_STOPS = 20
DEFAULT_FEED_READS = 8
FLOOR_REQUESTS = 200
#: Wall-time budget of each measurement's repeat loop (the whole benchmark stays near 3 minutes).
SECTION_BUDGET_SECONDS = {"tick": 75.0, "estop": 100.0, "feed": 20.0}
#: Idle wall seconds before one extra steady tick in each limiter-on run.
IDLE_GAP_SECONDS = 1.0
#: Longest wait for the peer to show no open order after emergency_stop returned.
CLEAR_TIMEOUT = 10.0

#: Engine methods timed as tick phases (attribute path on the engine, label).
PHASES = (
    ("orders.cancel_stale", "cancel_stale"),
    ("orders.collect_fills", "collect_fills"),
    ("refresh_view", "refresh_view (account reads + valuation)"),
    ("attribution.step", "attribution.step"),
    ("orders.reconcile_unsettled", "reconcile_unsettled"),
    ("mode.decide", "mode.decide"),
    ("execute", "execute (submits)"),
    ("evaluate_risk", "evaluate_risk"),
    ("record_snapshot", "record_snapshot (summary + store)"),
)
VENUE_METHODS = ("fetch_account", "fetch_fills", "fetch_ledger", "place_order", "fetch_order", "fetch_open_orders",
                 "cancel_order", "cancel_all_orders", "instruments")


# --------------------------------------------------------------------------------------------------
# statistics


def summarize(values: list[float], digits: int = 3) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(statistics.median(values), digits),
            "p95": round(percentile(values, 95), digits), "p99": round(percentile(values, 99), digits),
            "max": round(max(values), digits), "min": round(min(values), digits)}


def union_ms(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Length (ms) of the union of ``intervals`` clipped to [lo, hi]."""
    total, end = 0.0, lo
    for start, stop in sorted(intervals):
        start, stop = max(start, end), min(stop, hi)
        if stop > start:
            total += stop - start
            end = stop
    return total * 1000


# --------------------------------------------------------------------------------------------------
# instrumentation


@dataclass
class Recorder:
    """Timed spans (time.perf_counter(), shared by both threads). The peer's thread appends to
    ``server``; this thread to the rest. ``list.append`` is atomic, readers slice after the fact."""

    server: list[tuple[str, str, float, float]] = field(default_factory=list)  # venue, endpoint, start, end
    http: list[tuple[str, str, float, float]] = field(default_factory=list)  # client round trip (ccxt fetch)
    limiter: list[tuple[str, str, float, float]] = field(default_factory=list)  # ccxt throttle() awaits
    calls: list[tuple[str, float, float]] = field(default_factory=list)  # venue methods, engine phases
    store: list[tuple[str, float, float]] = field(default_factory=list)  # Store methods (outermost only)
    gc: list[tuple[int, float, float, bool]] = field(default_factory=list)  # generation, start, end, in peer thread
    #: set while an emergency stop is measured: the peer checks for open orders after each request
    watch_clear: bool = False
    cleared_at: float | None = None

    def mark(self) -> tuple[int, int, int, int, int]:
        return len(self.server), len(self.http), len(self.limiter), len(self.calls), len(self.store)

    def watch_gc(self) -> None:
        """Note every garbage collection (gc.callbacks), whichever thread triggers it."""
        started: list[float] = []

        def callback(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                started.append(time.perf_counter())
            elif started:
                self.gc.append((int(info.get("generation", -1)), started.pop(), time.perf_counter(),
                                threading.current_thread() is not threading.main_thread()))

        gc.callbacks.append(callback)

    def since(self, mark: tuple[int, int, int, int, int]) -> tuple[list, list, list, list, list]:
        return (self.server[mark[0]:], self.http[mark[1]:], self.limiter[mark[2]:], self.calls[mark[3]:],
                self.store[mark[4]:])


def endpoint_label(peer: Any, venue: str, method: str, path: str) -> str:
    route = peer.apis[venue].route(method, path)
    op = route.op if route else "unknown"
    return f"{venue} {op} {method} {path}"


def instrument_peer(peer: Any, recorder: Recorder) -> None:
    """Wrap the peer's request handler (on this instance): per request, the handler's duration,
    and while ``watch_clear`` is set, whether no venue holds an open order any more."""
    original = peer._handle
    try:
        params = list(inspect.signature(original).parameters)
    except (TypeError, ValueError):
        params = []
    if params[:2] != ["venue", "http"]:
        raise SystemExit(f"bench_live: ExchangePeer._handle{tuple(params)} is not (venue, http, ...): the "
                         "peer changed; update the timing wrapper in scripts/bench_live.py")

    @functools.wraps(original)
    async def timed(venue: str, http: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original(venue, http, *args, **kwargs)
        finally:
            ended = time.perf_counter()
            recorder.server.append((venue, endpoint_label(peer, venue, http.method, http.path), started, ended))
            if recorder.watch_clear and recorder.cleared_at is None and not any(open_orders(peer).values()):
                recorder.cleared_at = ended

    peer._handle = timed


def instrument_exchange(exchange: Any, venue: str, peer: Any, recorder: Recorder) -> None:
    """Time ccxt's rate-limiter waits and HTTP round trips (``throttle`` / ``fetch`` on the instance)."""
    throttle, fetch = exchange.throttle, exchange.fetch

    async def timed_throttle(cost: Any = None) -> Any:
        started = time.perf_counter()
        try:
            return await throttle(cost)
        finally:
            recorder.limiter.append((venue, str(cost), started, time.perf_counter()))

    async def timed_fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        started = time.perf_counter()
        try:
            return await fetch(url, method, headers, body)
        finally:
            recorder.http.append((venue, endpoint_label(peer, venue, method, urlsplit(url).path), started,
                                  time.perf_counter()))

    exchange.throttle = timed_throttle
    exchange.fetch = timed_fetch


def _timed(recorder_list: list, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                recorder_list.append((label, started, time.perf_counter()))
        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            recorder_list.append((label, started, time.perf_counter()))
    return wrapper


def instrument_engine(engine: Any, recorder: Recorder) -> None:
    """Time the tick's phases, every venue call and every Store call (instance attributes only)."""
    for path, label in PHASES:
        *owner_path, name = path.split(".")
        owner = functools.reduce(getattr, owner_path, engine)
        setattr(owner, name, _timed(recorder.calls, f"phase {label}", getattr(owner, name)))
    for venue_name, venue in engine.venues.items():
        for method in VENUE_METHODS:
            setattr(venue, method, _timed(recorder.calls, f"venue {venue_name}.{method}", getattr(venue, method)))
    time_store_calls(engine.store, recorder.store)


# --------------------------------------------------------------------------------------------------
# building a run exactly as the service does


def open_orders(peer: Any) -> dict[str, list[str]]:
    return {venue: [o.client_id for o in peer.orders(venue) if o.is_open] for venue in VENUES}


@contextlib.contextmanager
def bench_environment(peer: Any, root: Path) -> Iterator[None]:
    """os.environ with the peer's credentials and endpoints for dev (as an operator sets them), the
    user's strategies and state out of the way; restored afterwards."""
    from test_live_cex_run import live_env

    saved = dict(os.environ)
    os.environ.pop("BASIS_EXECUTION_MODE", None)
    os.environ.update(live_env(peer, "dev"))
    os.environ.update({"XDG_CONFIG_HOME": str(root / "xdg-config"), "XDG_STATE_HOME": str(root / "xdg-state"),
                       "BASIS_ENVIRONMENT": "dev"})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class LiveRun:
    engine: Any
    venues: dict[str, Any]
    feed: Any
    store: Any
    setup_seconds: float

    async def close(self) -> None:
        for closable in (*self.venues.values(), self.feed):
            with contextlib.suppress(Exception):
                await closable.close()
        self.store.close()


def set_limiter(exchanges: list[Any], on: bool) -> None:
    for exchange in exchanges:
        exchange.enableRateLimit = on


async def build_run(db_path: Path, overrides: list[str], recorder: Recorder, peer: Any) -> LiveRun:
    """A live btc_basis run as LiveTradingService builds one (``_assemble_live``), started. The
    limiter is off during setup (every exchange, the feed's too); the caller switches it."""
    from basis_live.config import ConfigManager, build_run_config
    from basis_live.engine.assembly import assemble_live_run
    from basis_live.feeds.live import LiveFeed
    from basis_live.store import Store
    from basis_live.venues.live_factory import build_live_venues

    started = time.perf_counter()
    strategy = ConfigManager().load(STRATEGY, overrides=overrides)
    feed_options = {"kind": "sample", "data": None, "scenario": None, "speed": 1.0, "seed": 7}
    config = build_run_config(strategy, CAPITAL, feed_options, live_environment="dev")
    request = {"strategy_name": STRATEGY, "initial_capital": str(CAPITAL), "share_class": config.share_class,
               "overrides": overrides, "risk_overrides": [], "feed": config.feed.kind, "data": None,
               "scenario": None, "speed": 1.0, "seed": 7, "execution_mode": config.execution_mode,
               "environment": config.environment}
    store = Store.open(db_path, create=True)
    assert store is not None
    venues = build_live_venues(strategy, config.environment)
    feed = LiveFeed(config.environment, trading=True,
                    timeout_ms=int(strategy.execution.venue_timeout_seconds * 1000),
                    api_urls={name: venue.api_url for name, venue in strategy.venues.items()})
    limiter_default = {venue.exchange.enableRateLimit for venue in venues.values()}
    if limiter_default != {True}:
        raise SystemExit(f"bench_live: build_live_venues no longer enables ccxt's rate limiter ({limiter_default})")
    set_limiter([*(v.exchange for v in venues.values()), *feed.clients.values()], False)
    for name, venue in venues.items():
        instrument_exchange(venue.exchange, name, peer, recorder)
    for name, client in feed.clients.items():
        instrument_exchange(client, name, peer, recorder)
    try:
        assembled = await assemble_live_run(secrets.token_hex(4), config, feed, venues, store, request)
        engine = assembled.engine
        await engine.start()
    except BaseException:
        for closable in (*venues.values(), feed):
            with contextlib.suppress(Exception):
                await closable.close()
        store.close()
        raise
    instrument_engine(engine, recorder)
    return LiveRun(engine, venues, feed, store, time.perf_counter() - started)


async def prime_limiter(run: LiveRun) -> None:
    """Switch the venues' limiters on and leave each in the state a previous tick leaves it in (ccxt's
    leaky bucket charges each request's cost to the next request, however long the gap)."""
    set_limiter([v.exchange for v in run.venues.values()], True)
    await asyncio.gather(*(venue.fetch_account() for venue in run.venues.values()))


# --------------------------------------------------------------------------------------------------
# 1. ticks


@dataclass
class TickSample:
    kind: str  # entry | steady | after_idle | funding_poll
    wall_ms: float
    server_ms: float  # union of handler intervals within the tick
    server_sum_ms: float
    cpu_ms: float  # this thread's CPU time
    requests: int
    limiter_wait_ms: float  # summed over requests (venues wait in parallel)
    store_ms: float
    gc_ms: float
    endpoints: Counter
    server_by_endpoint: dict[str, list[float]]
    http_by_endpoint: dict[str, list[float]]
    limiter_by_endpoint: dict[str, list[float]]
    calls: dict[str, float]
    call_counts: Counter

    @property
    def overhead_ms(self) -> float:
        return self.wall_ms - self.server_ms


def limiter_waits_by_endpoint(http: list, limiter: list) -> dict[str, list[float]]:
    """Each throttle() wait (ms) under the endpoint of the request it preceded: on one exchange
    object requests go one at a time, so the n-th wait of a venue belongs to its n-th request."""
    by: dict[str, list[float]] = defaultdict(list)
    per_venue: dict[str, list[str]] = defaultdict(list)
    for venue, label, _, _ in http:
        per_venue[venue].append(label)
    seen: Counter = Counter()
    for venue, _, start, end in limiter:
        index = seen[venue]
        seen[venue] += 1
        labels = per_venue[venue]
        by[labels[index] if index < len(labels) else f"{venue} (no request)"].append((end - start) * 1000)
    return dict(by)


async def timed_tick(engine: Any, recorder: Recorder) -> TickSample:
    mark = recorder.mark()
    gc_mark = len(recorder.gc)
    cpu0, t0 = time.thread_time(), time.perf_counter()
    await engine.tick()
    t1, cpu1 = time.perf_counter(), time.thread_time()
    gc_ms = sum(e - s for _, s, e, _ in recorder.gc[gc_mark:]) * 1000
    server, http, limiter, calls, store = recorder.since(mark)
    server = [s for s in server if s[2] >= t0]
    endpoints = Counter(label for _, label, _, _ in server)
    server_by: dict[str, list[float]] = defaultdict(list)
    for _, label, start, end in server:
        server_by[label].append((end - start) * 1000)
    http_by: dict[str, list[float]] = defaultdict(list)
    http_labels = []
    for _, label, start, end in http:
        http_by[label].append((end - start) * 1000)
        http_labels.append(label)
    limiter_by = limiter_waits_by_endpoint(http, limiter)
    call_ms: dict[str, float] = defaultdict(float)
    call_counts: Counter = Counter()
    for label, start, end in calls:
        call_ms[label] += (end - start) * 1000
        call_counts[label] += 1
    sent = any(label.endswith(".place_order") for label, _, _ in calls)
    return TickSample(
        kind="entry" if sent else "steady", wall_ms=(t1 - t0) * 1000,
        server_ms=union_ms([(s, e) for _, _, s, e in server], t0, t1),
        server_sum_ms=sum(e - s for _, _, s, e in server) * 1000, cpu_ms=(cpu1 - cpu0) * 1000,
        requests=len(server), limiter_wait_ms=sum(e - s for _, _, s, e in limiter) * 1000,
        store_ms=sum(e - s for _, s, e in store) * 1000, gc_ms=gc_ms, endpoints=endpoints, server_by_endpoint=dict(server_by),
        http_by_endpoint=dict(http_by), limiter_by_endpoint=dict(limiter_by), calls=dict(call_ms),
        call_counts=call_counts)


async def tick_run(peer: Any, root: Path, limiter: bool, ticks: int, recorder: Recorder) -> tuple[list[TickSample], float]:
    run = await build_run(root / f"tick-{secrets.token_hex(3)}.db", [], recorder, peer)
    try:
        if limiter:
            await prime_limiter(run)
        samples = [await timed_tick(run.engine, recorder) for _ in range(ticks)]
        if limiter:
            # ccxt's leaky bucket refills only while a request waits: an idle gap (60 s between ticks
            # in production) buys nothing. One more tick after IDLE_GAP_SECONDS shows it.
            await asyncio.sleep(IDLE_GAP_SECONDS)
            after_gap = await timed_tick(run.engine, recorder)
            after_gap.kind = "after_idle" if after_gap.kind == "steady" else after_gap.kind
            samples.append(after_gap)
        # The venues ask for funding payments once per funding_poll_seconds (60 s): the ticks above
        # all fall inside one such window. One tick with the poll due, as every 60 s in a run.
        polls = {name: venue.funding_poll_seconds for name, venue in run.venues.items()}
        for venue in run.venues.values():
            venue.funding_poll_seconds = 0.0
        try:
            funding = await timed_tick(run.engine, recorder)
        finally:
            for name, venue in run.venues.items():
                venue.funding_poll_seconds = polls[name]
        funding.kind = "funding_poll" if funding.kind == "steady" else funding.kind
        samples.append(funding)
        if run.engine.state != "ACTIVE":
            raise BenchFailure(f"trading state {run.engine.state} after {ticks} ticks")
        return samples, run.setup_seconds
    finally:
        await run.close()


def fresh_peer(recorder: Recorder) -> Any:
    from peers.exchange_server import ExchangePeer
    from test_live_cex_run import fund

    peer = ExchangePeer().start()
    instrument_peer(peer, recorder)
    fund(peer, CAPITAL)
    return peer


def summarize_ticks(samples: list[TickSample]) -> dict[str, Any]:
    if not samples:
        return {"n": 0}
    n = len(samples)
    endpoints: Counter = Counter()
    for s in samples:
        endpoints.update(s.endpoints)
    per_endpoint = {}
    for label, count in sorted(endpoints.items(), key=lambda kv: -kv[1]):
        server = [v for s in samples for v in s.server_by_endpoint.get(label, [])]
        http = [v for s in samples for v in s.http_by_endpoint.get(label, [])]
        waits = [v for s in samples for v in s.limiter_by_endpoint.get(label, [])]
        per_endpoint[label] = {
            "per_tick": round(count / n, 2),
            "server_ms_p50": round(statistics.median(server), 3) if server else None,
            "client_round_trip_ms_p50": round(statistics.median(http), 3) if http else None,
            "limiter_wait_ms_p50": round(statistics.median(waits), 3) if waits else None,
        }
    calls = sorted({label for s in samples for label in s.calls})
    breakdown = {label: {"ms_p50": round(statistics.median([s.calls.get(label, 0.0) for s in samples]), 3),
                         "calls_per_tick": round(sum(s.call_counts[label] for s in samples) / n, 2)}
                 for label in calls}
    return {
        "n": n,
        "wall_ms": summarize([s.wall_ms for s in samples]),
        "server_ms": summarize([s.server_ms for s in samples]),
        "overhead_ms": summarize([s.overhead_ms for s in samples]),
        "client_cpu_ms": summarize([s.cpu_ms for s in samples]),
        "requests": summarize([float(s.requests) for s in samples], 1),
        "limiter_wait_sum_ms": summarize([s.limiter_wait_ms for s in samples]),
        "store_ms": summarize([s.store_ms for s in samples]),
        "gc_ms": summarize([s.gc_ms for s in samples]),
        "server_sum_ms": summarize([s.server_sum_ms for s in samples]),
        "endpoints": per_endpoint,
        "breakdown_ms_p50": breakdown,
    }


def measure_ticks(root: Path, limiter: bool, ticks: int, runs: int, recorder: Recorder,
                  progress: Progress, budget_seconds: float) -> dict[str, Any]:
    """``runs`` fresh runs (each on a fresh peer: positions start flat) of ticks/runs ticks each."""
    per_run = max(2, math.ceil(ticks / runs))
    samples: list[TickSample] = []
    failures: list[str] = []
    setups: list[float] = []
    budget = Budget(runs, budget_seconds)
    done = 0
    while budget.more(done):
        done += 1
        peer = fresh_peer(recorder)
        try:
            with bench_environment(peer, root):
                got, setup = asyncio.run(tick_run(peer, root, limiter, per_run, recorder))
            samples += got
            setups.append(setup * 1000)
        except BenchFailure as exc:
            failures.append(f"run {done}: {exc}")
        finally:
            peer.stop()
        progress(f"ticks, limiter {'on' if limiter else 'off'}: run {done}/{runs} ({len(samples)} ticks)")
    entry = [s for s in samples if s.kind == "entry"]
    steady = [s for s in samples if s.kind == "steady"]
    after_idle = [s for s in samples if s.kind == "after_idle"]
    funding = [s for s in samples if s.kind == "funding_poll"]
    return {"limiter": limiter, "runs": done, "ticks_per_run": per_run, "entry": summarize_ticks(entry),
            "steady": summarize_ticks(steady), "steady_with_funding_poll": summarize_ticks(funding),
            **({"steady_after_idle": summarize_ticks(after_idle), "idle_gap_seconds": IDLE_GAP_SECONDS}
               if limiter else {}),
            "setup_ms_limiter_off": summarize(setups),
            "failures": failures, "budget_exhausted": budget.exhausted}


# --------------------------------------------------------------------------------------------------
# 2. emergency stop


@dataclass
class StopSample:
    return_ms: float
    clear_ms: float
    requests: int
    server_ms: float
    limiter_wait_ms: float
    endpoints: Counter
    cancelled_orders: int
    resting: dict[str, int]
    calls: dict[str, float]
    limiter_by_endpoint: dict[str, list[float]]


async def estop_once(peer: Any, root: Path, limiter: bool, recorder: Recorder) -> StopSample:
    run = await build_run(root / f"estop-{secrets.token_hex(3)}.db", list(ESTOP_OVERRIDES), recorder, peer)
    try:
        await run.engine.tick()  # limiter still off: not measured
        resting = open_orders(peer)
        if not all(resting.values()):
            raise BenchFailure(f"no resting order on every venue after the first tick: {resting}")
        if limiter:
            await prime_limiter(run)
        orders = run.engine.orders
        orders.cancel_all = _timed(recorder.calls, "orders.cancel_all (venues in parallel, then reconcile_unsettled)",
                                   orders.cancel_all)
        mark = recorder.mark()
        recorder.cleared_at = None
        recorder.watch_clear = True
        try:
            t0 = time.perf_counter()
            await run.engine.emergency_stop("bench", unwind=False)
            t1 = time.perf_counter()
        finally:
            recorder.watch_clear = False
        cleared_at = recorder.cleared_at
        if cleared_at is None:  # not clear when the call returned: poll the peer
            deadline = time.perf_counter() + CLEAR_TIMEOUT
            while any(open_orders(peer).values()):
                if time.perf_counter() > deadline:
                    raise BenchFailure(f"open orders {CLEAR_TIMEOUT:g}s after emergency_stop returned: "
                                       f"{open_orders(peer)}")
                await asyncio.sleep(0.001)
            cleared_at = time.perf_counter()
        server, http, limiter_spans, calls, _ = recorder.since(mark)
        call_ms: dict[str, float] = defaultdict(float)
        for label, start, end in calls:
            call_ms[label] += (end - start) * 1000
        server = [s for s in server if s[2] >= t0]
        if run.engine.state != "HALTED":
            raise BenchFailure(f"trading state {run.engine.state} after emergency_stop")
        return StopSample(
            return_ms=(t1 - t0) * 1000, clear_ms=(cleared_at - t0) * 1000, requests=len(server),
            server_ms=union_ms([(s, e) for _, _, s, e in server], t0, t1),
            limiter_wait_ms=sum(e - s for _, _, s, e in limiter_spans) * 1000,
            endpoints=Counter(label for _, label, _, _ in server),
            cancelled_orders=sum(len(v) for v in resting.values()),
            resting={venue: len(ids) for venue, ids in resting.items()}, calls=dict(call_ms),
            limiter_by_endpoint=limiter_waits_by_endpoint(http, limiter_spans))
    finally:
        await run.close()


def _by_occurrence(samples: list[StopSample], label: str) -> list[list[float]]:
    columns: list[list[float]] = []
    for sample in samples:
        for index, wait in enumerate(sample.limiter_by_endpoint.get(label, [])):
            if index == len(columns):
                columns.append([])
            columns[index].append(wait)
    return columns


def measure_estop(root: Path, repeats: int, recorder: Recorder, progress: Progress,
                  budget_seconds: float) -> dict[str, Any]:
    """``repeats`` emergency stops per row, rows interleaved, on one peer re-funded each time."""
    from test_live_cex_run import fund

    samples: dict[bool, list[StopSample]] = {True: [], False: []}
    failures: list[str] = []
    budget = Budget(repeats * 2, budget_seconds)
    done = 0
    peer = fresh_peer(recorder)
    try:
        with bench_environment(peer, root):
            while budget.more(done):
                limiter = done % 2 == 0
                done += 1
                leftover = open_orders(peer)
                if any(leftover.values()):
                    failures.append(f"stop {done}: skipped, open orders left on the peer: {leftover}")
                    break
                fund(peer, CAPITAL)
                try:
                    samples[limiter].append(asyncio.run(estop_once(peer, root, limiter, recorder)))
                except BenchFailure as exc:
                    failures.append(f"stop {done} (limiter {'on' if limiter else 'off'}): {exc}")
                if done % 10 == 0:
                    progress(f"emergency stops: {done}/{repeats * 2}")
    finally:
        peer.stop()

    def row(got: list[StopSample]) -> dict[str, Any]:
        endpoints: Counter = Counter()
        for s in got:
            endpoints.update(s.endpoints)
        return {"n": len(got), "return_ms": summarize([s.return_ms for s in got]),
                "all_cancelled_ms": summarize([s.clear_ms for s in got]),
                "requests": summarize([float(s.requests) for s in got], 1),
                "server_ms": summarize([s.server_ms for s in got]),
                "limiter_wait_sum_ms": summarize([s.limiter_wait_ms for s in got]),
                "resting_orders_per_stop": summarize([float(s.cancelled_orders) for s in got], 1),
                "endpoints_per_stop": {k: round(v / max(1, len(got)), 2)
                                       for k, v in sorted(endpoints.items(), key=lambda kv: -kv[1])},
                # per endpoint, one p50 per occurrence within a stop (in order)
                "limiter_wait_before_ms_p50": {
                    label: [round(statistics.median(waits), 3) for waits in _by_occurrence(got, label)]
                    for label in endpoints if any(label in s.limiter_by_endpoint for s in got)},
                "calls_ms_p50": {label: round(statistics.median([s.calls.get(label, 0.0) for s in got]), 3)
                                 for label in sorted({label for s in got for label in s.calls})}}

    return {"limiter_on": row(samples[True]), "limiter_off": row(samples[False]), "repeats": done,
            "failures": failures, "budget_exhausted": budget.exhausted}


# --------------------------------------------------------------------------------------------------
# 3. market refresh and the loopback floor


def measure_feed_and_floor(root: Path, reads: int, recorder: Recorder, progress: Progress,
                           budget_seconds: float) -> dict[str, Any]:
    import aiohttp

    from basis_live.feeds.live import LiveFeed
    from basis_live.venues.cex_clients import create_exchange

    peer = fresh_peer(recorder)

    async def main() -> dict[str, Any]:
        feed = LiveFeed("dev", trading=True)
        for name, client in feed.clients.items():
            instrument_exchange(client, name, peer, recorder)
        result: dict[str, Any] = {}
        budget = Budget(reads * 2, budget_seconds)
        try:
            set_limiter(list(feed.clients.values()), False)
            await feed._read(feed.start)  # markets loaded (not measured)
            rows: dict[bool, list[tuple[float, float, int]]] = {True: [], False: []}
            done = 0
            while budget.more(done):
                limiter = done % 2 == 0
                done += 1
                set_limiter(list(feed.clients.values()), limiter)
                mark = recorder.mark()
                t0 = time.perf_counter()
                await feed._read(feed.start)
                t1 = time.perf_counter()
                server = [s for s in recorder.since(mark)[0] if s[2] >= t0]
                rows[limiter].append(((t1 - t0) * 1000, union_ms([(s, e) for _, _, s, e in server], t0, t1),
                                      len(server)))
            for limiter, got in rows.items():
                result[f"limiter_{'on' if limiter else 'off'}"] = {
                    "wall_ms": summarize([g[0] for g in got]), "server_ms": summarize([g[1] for g in got]),
                    "overhead_ms": summarize([g[0] - g[1] for g in got]),
                    "requests": summarize([float(g[2]) for g in got], 1)}
            result["budget_exhausted"] = budget.exhausted
        finally:
            await feed.close()

        # the floor: a bare aiohttp GET, and ccxt's fetch_time, on the same peer endpoint
        floor: dict[str, Any] = {}
        url = peer.url("binance") + "/api/v3/time"
        async with aiohttp.ClientSession() as session:
            samples = []
            for _ in range(FLOOR_REQUESTS):
                mark = recorder.mark()
                t0 = time.perf_counter()
                async with session.get(url) as response:
                    await response.read()
                t1 = time.perf_counter()
                server = [s for s in recorder.since(mark)[0] if s[2] >= t0]
                samples.append(((t1 - t0) * 1000, sum(e - s for _, _, s, e in server) * 1000))
        floor["aiohttp_get"] = {"round_trip_ms": summarize([s[0] for s in samples[10:]]),
                                "handler_ms": summarize([s[1] for s in samples[10:]]),
                                "outside_handler_ms": summarize([s[0] - s[1] for s in samples[10:]])}
        exchange = create_exchange("binance", "dev", None, peer.url("binance"), enable_rate_limit=False)
        exchange.timeout_on_exit = 0
        try:
            await exchange.fetch_time()
            samples = []
            for _ in range(FLOOR_REQUESTS):
                mark = recorder.mark()
                t0 = time.perf_counter()
                await exchange.fetch_time()
                t1 = time.perf_counter()
                server = [s for s in recorder.since(mark)[0] if s[2] >= t0]
                samples.append(((t1 - t0) * 1000, sum(e - s for _, _, s, e in server) * 1000))
        finally:
            await exchange.close()
        floor["ccxt_fetch_time"] = {"round_trip_ms": summarize([s[0] for s in samples[10:]]),
                                    "handler_ms": summarize([s[1] for s in samples[10:]]),
                                    "outside_handler_ms": summarize([s[0] - s[1] for s in samples[10:]])}
        result["floor"] = floor
        return result

    try:
        with bench_environment(peer, root):
            result = asyncio.run(main())
    finally:
        peer.stop()
    progress("market refresh and loopback floor done")
    return result


# --------------------------------------------------------------------------------------------------
# report


def machine_facts() -> dict[str, Any]:
    import ccxt

    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(), "ccxt": ccxt.__version__, "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def _cells(stats: dict[str, Any], keys: tuple[str, ...] = ("p50", "p95", "p99", "max"), fmt: str = "{:>9.2f}") -> str:
    if not stats.get("n"):
        return "".join(f"{'-':>9}" for _ in keys) + f"{0:>6}"
    return "".join(fmt.format(stats[k]) for k in keys) + f"{stats['n']:>6}"


def render_table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [(f"basis-live live-loop benchmark: btc_basis on binance (spot + perp), bybit, okx via the loopback "
              f"ExchangePeer; {m['cpu_count']} CPUs ({m['cpus_usable']} usable), Python {m['python']}, "
              f"ccxt {m['ccxt']}, SQLite {m['sqlite']}, load {m['loadavg_at_start']}")]
    head = f"  {'':<44}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}{'n':>6}"
    lines += ["", "1. engine.tick(), ms per tick (server = peer handler time inside the tick; overhead = wall - server)",
              head]
    for key, title in (("tick_limiter_on", "rate limiter ON (production)"), ("tick_limiter_off", "rate limiter OFF")):
        row = results[key]
        lines.append(f"  {title}: {row['runs']} runs x {row['ticks_per_run']} ticks")
        for kind in ("entry", "steady", "steady_after_idle", "steady_with_funding_poll"):
            if kind not in row:
                continue
            s = row[kind]
            if not s.get("n"):
                lines.append(f"    {kind} ticks: none")
                continue
            label = {"entry": "entry ticks (sent orders)", "steady": "steady ticks",
                     "steady_after_idle": f"steady tick after {row.get('idle_gap_seconds', 0):g} s idle",
                     "steady_with_funding_poll": "steady tick with the funding poll due"}[kind]
            if kind in ("steady_after_idle", "steady_with_funding_poll"):
                lines += [f"    {label:<42}{_cells(s['wall_ms'])}",
                          f"      {'overhead (wall - server)':<40}{_cells(s['overhead_ms'])}",
                          f"      {'limiter wait (sum over requests)':<40}{_cells(s['limiter_wait_sum_ms'])}",
                          f"      {'HTTP requests':<40}{_cells(s['requests'], fmt='{:>9.0f}')}"]
                continue
            lines += [f"    {label:<42}{_cells(s['wall_ms'])}",
                      f"      {'server':<40}{_cells(s['server_ms'])}",
                      f"      {'overhead (wall - server)':<40}{_cells(s['overhead_ms'])}",
                      f"      {'client thread CPU':<40}{_cells(s['client_cpu_ms'])}",
                      f"      {'limiter wait (sum over requests)':<40}{_cells(s['limiter_wait_sum_ms'])}",
                      f"      {'SQLite (Store calls)':<40}{_cells(s['store_ms'])}",
                      f"      {'garbage collection (both threads)':<40}{_cells(s['gc_ms'])}",
                      f"      {'HTTP requests':<40}{_cells(s['requests'], fmt='{:>9.0f}')}"]
    for key, kind, title in (("tick_limiter_off", "steady", "steady tick, limiter OFF"),
                             ("tick_limiter_on", "steady", "steady tick, limiter ON"),
                             ("tick_limiter_on", "entry", "entry tick, limiter ON"),
                             ("tick_limiter_on", "steady_with_funding_poll", "funding-poll tick, limiter ON")):
        s = results[key][kind]
        if not s.get("n"):
            continue
        lines += ["", (f"  where the time goes, {title} (p50 ms per tick, calls per tick; phases nest the venue "
                       "calls, venues run in parallel):")]
        for label, item in sorted(s["breakdown_ms_p50"].items(), key=lambda kv: -kv[1]["ms_p50"]):
            if item["ms_p50"] >= 0.05:
                lines.append(f"    {item['ms_p50']:8.2f}  x{item['calls_per_tick']:<5g} {label}")
        lines.append(f"  endpoints per {title} (p50 ms: peer handler / client round trip / limiter wait before "
                     "the request, i.e. the previous request's cost on that exchange x its rateLimit):")
        for label, e in s["endpoints"].items():
            def f(v: float | None) -> str:
                return f"{v:7.2f}" if v is not None else f"{'-':>7}"
            lines.append(f"    x{e['per_tick']:<5g}{f(e['server_ms_p50'])}{f(e['client_round_trip_ms_p50'])}"
                         f"{f(e['limiter_wait_ms_p50'])}  {label}")
    fl = results["feed"]
    lines += ["", "   market refresh (LiveFeed._read, every 5 s in a run, beside the ticks), ms", head]
    for key in ("limiter_on", "limiter_off"):
        if key in fl:
            r = fl[key]
            lines += [f"    {'wall, ' + key.replace('_', ' '):<42}{_cells(r['wall_ms'])}",
                      f"      {'overhead (wall - server)':<40}{_cells(r['overhead_ms'])}",
                      f"      {'HTTP requests':<40}{_cells(r['requests'], fmt='{:>9.0f}')}"]
    floor = fl["floor"]
    lines += ["   loopback floor per request (binance GET /api/v3/time), ms", head]
    for key, title in (("aiohttp_get", "bare aiohttp GET"), ("ccxt_fetch_time", "ccxt fetch_time (limiter off)")):
        lines += [f"    {title + ': round trip':<42}{_cells(floor[key]['round_trip_ms'])}",
                  f"      {'peer handler':<40}{_cells(floor[key]['handler_ms'])}",
                  f"      {'outside the handler':<40}{_cells(floor[key]['outside_handler_ms'])}"]
    e = results["estop"]
    lines += ["", (f"2. emergency_stop(unwind=False) with resting limit orders on all three venues, ms "
                   f"({e['repeats']} stops, rows interleaved)"), head]
    for key, title in (("limiter_on", "rate limiter ON (production)"), ("limiter_off", "rate limiter OFF")):
        r = e[key]
        lines += [(f"  {title}: {r['n']} stops, resting orders per stop p50 "
                   f"{r['resting_orders_per_stop'].get('p50', '-')}"),
                  f"    {'call -> peer shows no open order':<42}{_cells(r['all_cancelled_ms'])}",
                  f"    {'call -> return':<42}{_cells(r['return_ms'])}",
                  f"      {'server':<40}{_cells(r['server_ms'])}",
                  f"      {'limiter wait (sum over requests)':<40}{_cells(r['limiter_wait_sum_ms'])}",
                  f"      {'HTTP requests':<40}{_cells(r['requests'], fmt='{:>9.0f}')}"]
    for key, title in (("limiter_on", "limiter ON"), ("limiter_off", "limiter OFF")):
        r = e[key]
        if not r["n"]:
            continue
        lines.append(f"  where an emergency stop goes ({title}; p50 ms; nested, venues in parallel):")
        for label, ms in sorted(r["calls_ms_p50"].items(), key=lambda kv: -kv[1]):
            if ms >= 0.05:
                lines.append(f"    {ms:8.2f}  {label}")
    r = e["limiter_on"]
    if r["n"]:
        lines.append("  requests per stop (x count, limiter ON: p50 ms waited before it):")
        by_venue: dict[str, list[str]] = defaultdict(list)
        for label, count in r["endpoints_per_stop"].items():
            venue, op, _method, _path = label.split(" ", 3)
            waits = r["limiter_wait_before_ms_p50"].get(label)
            by_venue[venue].append(f"{op} x{count:g}" + (f" ({'+'.join(f'{w:.0f}' for w in waits)})" if waits else ""))
        lines += [f"    {venue}: {', '.join(items)}" for venue, items in by_venue.items()]
    for name in ("tick_limiter_on", "tick_limiter_off", "estop", "feed"):
        section = results[name]
        if section.get("budget_exhausted"):
            lines.append(f"  NOTE {name}: wall-time budget ran out before all repeats")
        lines += [f"  FAILURE {name}: {failure}" for failure in section.get("failures", [])]
    g = results["gc"]
    lines.append("  garbage collections in this process (both threads), ms: " + ", ".join(
        f"{gen} n={g[gen]['n']} p50 {g[gen].get('p50', 0):.2f} max {g[gen].get('max', 0):.1f}" for gen in ("gen0", "gen1", "gen2")
    ) + f" ({g['gen2_in_peer_thread']} gen2 in the peer's thread)")
    lines.append(f"\ntotal {results['elapsed_seconds']:.0f} s")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=DEFAULT_TICKS,
                        help=f"ticks measured with the rate limiter off (default {DEFAULT_TICKS})")
    parser.add_argument("--ticks-limited", type=int, default=DEFAULT_TICKS_LIMITED,
                        help=f"ticks measured with the rate limiter on (default {DEFAULT_TICKS_LIMITED}; "
                             "~0.45 s each)")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                        help=f"fresh runs per tick row, the ticks split between them; each run's first tick is "
                             f"an entry tick (default {DEFAULT_RUNS})")
    parser.add_argument("--stops", type=int, default=DEFAULT_STOPS,
                        help=f"emergency stops per row, limiter on and off (default {DEFAULT_STOPS})")
    parser.add_argument("--feed-reads", type=int, default=DEFAULT_FEED_READS,
                        help=f"market refreshes per row (default {DEFAULT_FEED_READS})")
    parser.add_argument("--json", action="store_true", help="print only the JSON results")
    args = parser.parse_args(argv)
    for name in ("ticks", "ticks_limited", "runs", "stops", "feed_reads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    progress = Progress(not args.json, "bench_live")
    import logging

    logging.getLogger("basis_live").setLevel(logging.WARNING)
    started = time.monotonic()
    recorder = Recorder()
    recorder.watch_gc()
    results: dict[str, Any] = {"machine": machine_facts(),
                               "args": {k: v for k, v in vars(args).items() if k != "json"}}
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        root = Path(tmp)
        results["tick_limiter_off"] = measure_ticks(root, False, args.ticks, args.runs, recorder, progress,
                                                    SECTION_BUDGET_SECONDS["tick"] / 3)
        results["tick_limiter_on"] = measure_ticks(root, True, args.ticks_limited, args.runs, recorder, progress,
                                                   SECTION_BUDGET_SECONDS["tick"])
        results["estop"] = measure_estop(root, args.stops, recorder, progress, SECTION_BUDGET_SECONDS["estop"])
        results["feed"] = measure_feed_and_floor(root, args.feed_reads, recorder, progress,
                                                 SECTION_BUDGET_SECONDS["feed"])
    results["gc"] = {f"gen{gen}": summarize([(e - s) * 1000 for g, s, e, _ in recorder.gc if g == gen])
                     for gen in (0, 1, 2)}
    results["gc"]["gen2_in_peer_thread"] = sum(1 for g, _, _, peer in recorder.gc if g == 2 and peer)
    results["elapsed_seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(results, indent=2, default=str) if args.json else render_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
