#!/usr/bin/env python3
"""Benchmark the live on-chain path against anvil with the real Aave V3 market and our Lido / EtherFi /
swap contracts: time per on-chain action, and breaching oracle update -> first deleveraging transaction.

Everything runs in this process on the real code path: anvil and the contracts come from the chain
tests' helpers (``tests/chain``: ``start_anvil``, ``deploy_lsts_and_aave``, ``AaveMarket.set_price``),
the networks file from ``tests/test_live_chain_run.networks_file``; the venues are built by
``build_live_chain`` (one ``TransactionSender`` over a ``StoreJournal`` in a fresh SQLite store), so
web3, the sender, the venues and (section 2) the engine and its watchdog all run for real.

1. ``actions``: one order at a time through a venue's ``place_order`` (``build_live_chain``'s venues for
   a fresh wallet per repeat, funded with ETH, USDT and WETH by the dev accounts): Aave supply /
   withdraw USDT, borrow / repay WETH, EtherFi stake / redeem weETH, Lido stake / redeem wstETH, swap
   ETH -> USDT and back, setUserEMode, supply weETH, then one ``weETH-loop`` buy from 1 ETH of weETH
   collateral to the strategy's target LTV and the loop sell of the whole debt. Per action: wall time,
   transactions, gas used (from the receipts), JSON-RPC requests (``AsyncHTTPProvider.make_request``
   wrapped on the class; the eth_chainId share separately), time inside those requests, time in the
   journal's SQLite writes and reads, and signing. The sender polls receipts every
   ``--poll`` s (0.02; the networks file's ``receipt_poll_seconds``); a few actions are repeated with
   the production default (2 s) to show what the poll interval costs on anvil's automine. And what
   every engine checkpoint pays before it values anything (``OrderManager.collect_fills``' venue calls:
   ``fetch_fills`` + ``fetch_ledger`` on each venue), at three journal sizes.
2. ``breach``: a live eth_leveraged run (10 ETH) built as ``LiveTradingService._assemble_live`` builds
   it (``BASIS_DEV__CHAIN__PRIVATE_KEY`` / ``_RPC_URL`` and ``BASIS_NETWORKS_FILE`` in os.environ,
   ``ConfigManager().load`` + ``build_run_config(live_environment="dev")``, a fresh SQLite store,
   ``build_live_chain(..., StoreJournal(store))``, ``assemble_live_run``, ``prepare_live_chain``,
   ``engine.start()``, then ``engine.run(watchdog)`` as a task). Once the first tick's loop reached the
   target LTV (every order filled, Aave LTV in 0.89..0.92), the weETH oracle price drops 2.5%
   (``AaveMarket.set_price`` in a thread, so the engine keeps running) and every step is timed from
   the moment set_price returned (its transaction's receipt): the first account read showing the
   breaching health factor, the first feed refresh, the watchdog evaluation that saw the breach, the
   state change, the decision (``mode.reduce`` / the emergency unwind's first plan), the first
   deleveraging transaction signed (journaled) and broadcast, the health factor back above the limit
   (the first delever transaction after whose block Aave reports it above, read afterwards at that
   block; timed when the sender saw its receipt), and the delever step's end. The drop is placed
   at evenly spread phases of the watchdog's account-read cycle (repeat i of R waits
   (i + 0.5) / R of it after the last read), since that cycle, not the feed's, decides when the
   breach is seen. Variants: ``market_refresh_seconds`` 12 (the default) and 0.5; each with
   ``max_drawdown`` raised to 0.5 (``--risk``, as an operator would) so that the reduce path is
   what runs (the run is stopped when the reduce step returns), and ``--stock-repeats`` runs of the
   strategy as shipped (a 2.5% LST drop at ~11x leverage is a ~27% drawdown: the shipped 10%
   max_drawdown limit, policy emergency_stop, halts and unwinds as soon as a valuation uses the new
   price; the run is stopped at the unwind's first transaction). Also recorded: the reduce's size
   against the size the mode's formula gives at the oracle's new rate, the lowest HF after any
   transaction of the step (read at each block), and whether the watchdog evaluated, wrote
   heartbeats (or could take commands) while the step ran. Each repeat reverts anvil to a snapshot;
   each engine is stopped as ``basis-live stop`` stops it (``request_stop``), and web3's shared HTTP
   session lock is checked afterwards (see ``web3_lock_leaked``).

Caveats: anvil mines each transaction as it arrives (automine), so a transaction's "confirmation" is
its receipt at the first poll; mainnet's ~12 s blocks are not modelled. anvil, the engine and this
script share the machine's cores.

    /work/venv/bin/python scripts/bench_chain.py [--repeats 5] [--breach-repeats 3] [--stock-repeats 1]
                                                 [--refresh 12,0.5] [--poll 0.02] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import functools
import inspect
import itertools
import json
import logging
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
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from benchlib import BenchFailure, Progress, percentile, time_store_calls  # noqa: E402  (this folder is on sys.path: run as a script)

D = Decimal
WAD = 10**18
STRATEGY = "eth_leveraged"
CAPITAL = D(10)
DEFAULT_REPEATS = 3
DEFAULT_BREACH_REPEATS = 3
DEFAULT_STOCK_REPEATS = 1
DEFAULT_REFRESH = (12.0, 0.5)
DEFAULT_POLL = 0.02
PRODUCTION_POLL = 2.0  # ChainNetwork.receipt_poll_seconds' default (SenderSettings' too)
PRODUCTION_POLL_REPEATS = 3
DROP = D("0.975")  # the weETH oracle price after the drop, as a fraction of before (the chain test's)
ISOLATE_REDUCE_RISK = ["max_drawdown.limit=0.5"]
LOOP_TIMEOUT = 60.0  # seconds for the first tick's loop to reach the target LTV
DELEVER_TIMEOUT = 60.0  # seconds from the drop for the delever step to end
#: Part 1: the strategy with every chain venue on (the loop venue then has both LSTs).
ACTION_OVERRIDES = ["venues.lido.enabled=true", "venues.uniswap.enabled=true"]


#: Set inside the watchdog's check (a task of its own): tells its risk evaluations from the ticks'.
IN_WATCHDOG: contextvars.ContextVar[bool] = contextvars.ContextVar("in_watchdog", default=False)


# --------------------------------------------------------------------------------------------------
# statistics and output helpers


def summarize(values: list[float], digits: int = 3) -> dict[str, Any]:
    values = [v for v in values if v is not None]
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(statistics.median(values), digits),
            "p95": round(percentile(values, 95), digits), "max": round(max(values), digits),
            "min": round(min(values), digits)}


# --------------------------------------------------------------------------------------------------
# instrumentation (instance attributes and one class method of web3; no file of the project changes)


@dataclass
class Recorder:
    """Timed spans, time.perf_counter(). ``rpc``: every JSON-RPC request of any AsyncHTTPProvider (the
    provider's id, so the bench's own monitor client can be told apart)."""

    rpc: list[tuple[int, str, float, float]] = field(default_factory=list)
    sqlite: list[tuple[str, float, float]] = field(default_factory=list)
    sign: list[tuple[float, float]] = field(default_factory=list)
    #: (time, name, data) milestones of section 2
    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)

    def mark(self) -> tuple[int, int, int]:
        return len(self.rpc), len(self.sqlite), len(self.sign)

    def event(self, name: str, **data: Any) -> None:
        self.events.append((time.perf_counter(), name, data))

    def rpc_since(self, mark: tuple[int, int, int], provider: int, upto: float | None = None) -> list[tuple]:
        return [s for s in self.rpc[mark[0]:] if s[0] == provider and (upto is None or s[2] <= upto)]

    def sqlite_since(self, mark: tuple[int, int, int], start: float = 0.0, end: float = math.inf) -> float:
        return sum(e - s for _, s, e in self.sqlite[mark[1]:] if s >= start and e <= end) * 1000

    def sign_since(self, mark: tuple[int, int, int]) -> float:
        return sum(e - s for s, e in self.sign[mark[2]:]) * 1000


def count_rpc_requests(recorder: Recorder) -> None:
    """Wrap ``AsyncHTTPProvider.make_request`` (the class: web3 caches the bound method in its request
    function on first use, so this must run before any provider is built)."""
    from web3 import AsyncHTTPProvider

    original = AsyncHTTPProvider.make_request
    if getattr(original, "_bench_chain", False):
        return
    try:
        params = list(inspect.signature(original).parameters)
    except (TypeError, ValueError):
        params = []
    if params[:3] != ["provider", "method", "params"] and params[:3] != ["self", "method", "params"]:
        raise SystemExit(f"bench_chain: AsyncHTTPProvider.make_request{tuple(params)} is not (self, method, "
                         "params): web3 changed; update the RPC counter in scripts/bench_chain.py")

    @functools.wraps(original)
    async def counted(provider: Any, method: Any, params: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original(provider, method, params)
        finally:
            recorder.rpc.append((id(provider), str(method), started, time.perf_counter()))

    counted._bench_chain = True  # type: ignore[attr-defined]
    AsyncHTTPProvider.make_request = counted  # type: ignore[method-assign]


def _timed_sync(spans: list, label: str | None, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spans.append((label, started, time.perf_counter()) if label is not None
                         else (started, time.perf_counter()))
    return wrapper


JOURNAL_METHODS = ("record_signed", "transactions", "all_transactions", "transaction_keys", "last_nonce", "put_intent", "intent",
                   "intent_keys")


def instrument_sender(sender: Any, recorder: Recorder) -> None:
    """Journal SQLite time and signing time of one TransactionSender (its venues share both)."""
    journal = sender.journal
    for name in JOURNAL_METHODS:
        setattr(journal, name, _timed_sync(recorder.sqlite, f"journal.{name}", getattr(journal, name)))
    sender._sign = _timed_sync(recorder.sign, None, sender._sign)


def instrument_store(store: Any, recorder: Recorder) -> None:
    """Every public Store call (outermost only) as SQLite time."""
    time_store_calls(store, recorder.sqlite, "store.")


# --------------------------------------------------------------------------------------------------
# the chain


class Chain:
    """anvil with the Aave market and our contracts deployed, a base snapshot to return to, and a
    monitor client of its own (its requests are not counted as the venues')."""

    def __init__(self) -> None:
        from chain.anvil import start_anvil
        from chain.lst_market import DEV_ACCOUNT_ETH, deploy_lsts_and_aave
        from chain.tools import ensure_aave_artifacts, ensure_anvil

        started = time.perf_counter()
        self.node = start_anvil(ensure_anvil(), balance_eth=DEV_ACCOUNT_ETH)
        try:
            deployment = deploy_lsts_and_aave(self.node.web3(), ensure_aave_artifacts(), self.node.accounts)
        except BaseException:
            self.node.stop()
            raise
        self.market = deployment.aave
        self.lsts = deployment.lsts
        self.w3 = self.market.w3
        self.setup_seconds = time.perf_counter() - started
        self._snapshot = self._take()

    def _take(self) -> str:
        from chain.anvil import snapshot

        return snapshot(self.w3)

    def reset(self) -> None:
        """Back to the state right after deployment (as the chain tests' ``market`` fixture does)."""
        from chain.anvil import revert, rpc

        rpc(self.w3, "evm_setAutomine", True)
        rpc(self.w3, "anvil_dropAllTransactions")
        revert(self.w3, self._snapshot)
        rpc(self.w3, "anvil_setNextBlockBaseFeePerGas", hex(self.w3.eth.get_block("latest")["baseFeePerGas"]))
        self._snapshot = self._take()

    def new_wallet(self, eth: int, usdt: int = 0, weth: int = 0) -> Any:
        from eth_account import Account

        account = Account.create()
        self.w3.eth.wait_for_transaction_receipt(self.w3.eth.send_transaction(
            {"from": self.node.accounts[5], "to": account.address, "value": eth * WAD}), timeout=30, poll_latency=0.01)
        if usdt:
            self.market.mint("USDT", account.address, usdt * 10**6)
        if weth:
            self.market.mint("WETH", account.address, weth * WAD)
        return account

    def networks(self, directory: Path, **changes: Any) -> Path:
        from test_live_chain_run import networks_file

        directory.mkdir(parents=True, exist_ok=True)
        return networks_file(directory, self.node, self.market, self.lsts, **changes)

    def env(self, wallet: Any, networks: Path) -> dict[str, str]:
        from test_live_chain_run import chain_env

        return chain_env(self.node, wallet, networks)

    def account_at(self, address: str, block: int | str = "latest") -> dict[str, Any]:
        collateral, debt, _, _, _, health = self.market.pool.functions.getUserAccountData(address).call(
            block_identifier=block)
        return {"collateral": collateral, "debt": debt, "ltv": debt / collateral if collateral else 0.0,
                "health_factor": None if health == 2**256 - 1 else health / WAD}

    def gas_used(self, tx_hashes: list[str]) -> int:
        return sum(int(self.w3.eth.get_transaction_receipt(h)["gasUsed"]) for h in tx_hashes)

    def stop(self) -> None:
        self.node.stop()


@contextlib.contextmanager
def bench_environment(root: Path, chain_env: dict[str, str]) -> Iterator[None]:
    """os.environ with the wallet's key, the RPC URL and the networks file for dev (as an operator sets
    them), the user's strategies and state out of the way; restored afterwards."""
    saved = dict(os.environ)
    os.environ.pop("BASIS_EXECUTION_MODE", None)
    os.environ.pop("BASIS_LIVE_DB", None)
    os.environ.update(chain_env)
    os.environ.update({"XDG_CONFIG_HOME": str(root / "xdg-config"), "XDG_STATE_HOME": str(root / "xdg-state"),
                       "BASIS_ENVIRONMENT": "dev"})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# --------------------------------------------------------------------------------------------------
# 1. one action at a time


@dataclass
class ActionSample:
    name: str
    wall_ms: float
    txs: int
    gas: int
    rpc: int
    rpc_chain_id: int
    rpc_ms: float
    sqlite_ms: float
    sign_ms: float
    status: str
    rounds: int | None = None
    rpc_methods: dict[str, int] = field(default_factory=dict)


async def timed_action(name: str, call: Callable[[], Any], journal: Any, provider: int, chain: Chain,
                       recorder: Recorder, loop_prefix: str | None = None) -> ActionSample:
    before = {tx.tx_hash for tx in journal.all_transactions()}
    mark = recorder.mark()
    started = time.perf_counter()
    result = await call()
    wall = (time.perf_counter() - started) * 1000
    rpc = recorder.rpc_since(mark, provider)
    sqlite_ms = recorder.sqlite_since(mark)
    sign_ms = recorder.sign_since(mark)
    new = [tx for tx in journal.all_transactions() if tx.tx_hash not in before]
    rounds = None
    if loop_prefix is not None:
        rounds = max((int(k[len(loop_prefix):].split(".", 1)[0]) for k in journal.intent_keys(loop_prefix)), default=0)
    status = getattr(result, "status", "done" if result is not None else "none")
    methods = Counter(method for _, method, _, _ in rpc)
    return ActionSample(name, wall, len(new), chain.gas_used([tx.tx_hash for tx in new]), len(rpc),
                        methods.get("eth_chainId", 0), sum(e - s for _, _, s, e in rpc) * 1000, sqlite_ms, sign_ms,
                        status, rounds, dict(methods))


async def scan_sample(name: str, venues: dict[str, Any], journal: Any, provider: int, recorder: Recorder
                      ) -> dict[str, Any]:
    """What every engine checkpoint pays before it values anything: ``OrderManager.collect_fills``'
    calls (``fetch_fills`` then ``fetch_ledger`` on each venue, in turn), at the journal's current
    size. The first pass settles whatever is new; the second, timed, is the steady-state cost."""
    async def collect() -> None:
        for venue in venues.values():
            await venue.fetch_fills(0)
            await venue.fetch_ledger(0)

    await collect()
    mark = recorder.mark()
    started = time.perf_counter()
    await collect()
    wall = (time.perf_counter() - started) * 1000
    queries = recorder.sqlite[mark[1]:]
    return {"name": name, "journal_txs": len(journal.all_transactions()), "intents": len(journal.intent_keys()),
            "wall_ms": wall, "sqlite_calls": len(queries), "sqlite_ms": sum(e - s for _, s, e in queries) * 1000,
            "rpc": len(recorder.rpc_since(mark, provider))}


async def build_action_venues(chain: Chain, wallet: Any, networks: Path, db: Path, recorder: Recorder
                              ) -> tuple[dict[str, Any], Any, Any]:
    from basis_live.config import ConfigManager
    from basis_live.store import Store, StoreJournal
    from basis_live.venues.live_factory import build_live_chain

    strategy = ConfigManager().load(STRATEGY, overrides=ACTION_OVERRIDES)
    store = Store.open(db, create=True)
    assert store is not None
    venues, _feed = await build_live_chain(strategy, "dev", StoreJournal(store), env=chain.env(wallet, networks))
    instrument_sender(venues["wallet"].sender, recorder)
    return venues, store, strategy


async def actions_once(chain: Chain, root: Path, poll: float, recorder: Recorder, repeat: int,
                       production_poll: bool) -> tuple[list[ActionSample], list[dict[str, Any]]]:
    from basis_live.venues.base import OrderRequest

    chain.reset()
    wallet = chain.new_wallet(eth=100, usdt=10_000, weth=1)
    venues, store, strategy = await build_action_venues(
        chain, wallet, chain.networks(root / f"poll-{poll:g}", receipt_poll_seconds=poll),
        root / f"actions-{repeat}.db", recorder)
    sender = venues["wallet"].sender
    journal, provider = sender.journal, id(venues["wallet"].w3.provider)
    aave, etherfi, lido, swap = venues["aave_v3"], venues["etherfi"], venues["lido"], venues["uniswap"]
    samples: list[ActionSample] = []
    scans: list[dict[str, Any]] = []
    counter = iter(range(10_000))

    async def order(name: str, venue: Any, symbol: str, side: str, quantity: Decimal,
                    loop: bool = False) -> ActionSample:
        cid = f"bench{repeat}x{next(counter)}"
        sample = await timed_action(
            name, lambda: venue.place_order(OrderRequest(cid, venue.name, symbol, side, quantity)), journal, provider,
            chain, recorder, loop_prefix=f"{venue.name}/{cid}/" if loop else None)
        if sample.status != "filled":
            raise BenchFailure(f"{name}: order ended {sample.status}")
        samples.append(sample)
        return sample

    try:
        await order("aave supply 1000 USDT", aave, "USDT", "buy", D(1000))
        await order("aave borrow 0.1 WETH", aave, "WETH-debt", "buy", D("0.1"))
        await order("aave repay WETH (whole debt)", aave, "WETH-debt", "sell", D("0.1"))
        await order("aave withdraw USDT (whole)", aave, "USDT", "sell", D(1000))
        await order("etherfi stake 1 weETH", etherfi, "weETH", "buy", D(1))
        await order("etherfi redeem 1 weETH", etherfi, "weETH", "sell", D(1))
        await order("lido stake 1 wstETH", lido, "wstETH", "buy", D(1))
        await order("lido redeem 1 wstETH", lido, "wstETH", "sell", D(1))
        await order("swap 1 ETH -> USDT", swap, "ETH/USDT", "sell", D(1))
        await order("swap USDT -> 1 ETH", swap, "ETH/USDT", "buy", D(1))
        scans.append(await scan_sample("after the 10 wallet-level orders", venues, journal, provider, recorder))
        emode = await timed_action("aave setUserEMode(1)", lambda: aave.set_emode(1, f"bench{repeat}"), journal,
                                   provider, chain, recorder)
        samples.append(emode)
        rate = await etherfi.lst_rate()
        collateral = (D(1) / rate).quantize(D("1e-18"), rounding=ROUND_FLOOR)  # weETH worth 1 ETH
        await order("etherfi stake ~0.94 weETH (1 ETH)", etherfi, "weETH", "buy", collateral)
        await order("aave supply ~0.94 weETH", aave, "weETH", "buy", collateral)
        target = D(repr(strategy.leverage.target_ltv))
        debt = (D(1) * target / (1 - target)).quantize(D("1e-18"), rounding=ROUND_FLOOR)
        await order(f"weETH-loop buy {debt:.3f} WETH (to LTV {target:.4f})", aave, "weETH-loop", "buy", debt, loop=True)
        owed = next(p.quantity for p in (await aave.fetch_account()).positions if p.symbol == "WETH-debt")
        scans.append(await scan_sample("after the loop buy", venues, journal, provider, recorder))
        await order("weETH-loop sell the whole debt", aave, "weETH-loop", "sell", owed, loop=True)
        scans.append(await scan_sample("after the loop sell", venues, journal, provider, recorder))
        if production_poll:
            slow, slow_store, _ = await build_action_venues(
                chain, wallet, chain.networks(root / f"poll-{PRODUCTION_POLL:g}", receipt_poll_seconds=PRODUCTION_POLL),
                root / f"actions-{repeat}-slow.db", recorder)
            try:
                slow_provider = id(slow["wallet"].w3.provider)
                for name, venue, symbol, side, quantity in (
                        ("aave supply 1000 USDT", slow["aave_v3"], "USDT", "buy", D(1000)),
                        ("swap 1 ETH -> USDT", slow["uniswap"], "ETH/USDT", "sell", D(1))):
                    cid = f"slow{repeat}x{next(counter)}"
                    sample = await timed_action(
                        f"{name} [poll {PRODUCTION_POLL:g} s]",
                        lambda v=venue, s=symbol, sd=side, q=quantity, c=cid: v.place_order(
                            OrderRequest(c, v.name, s, sd, q)),
                        slow["wallet"].sender.journal, slow_provider, chain, recorder)
                    samples.append(sample)
            finally:
                await slow["wallet"].w3.provider.disconnect()
                slow_store.close()
    finally:
        await venues["wallet"].w3.provider.disconnect()
        store.close()
    return samples, scans


def measure_actions(chain: Chain, root: Path, repeats: int, poll: float, recorder: Recorder,
                    progress: Progress) -> dict[str, Any]:
    by_name: dict[str, list[ActionSample]] = {}
    scans_by_name: dict[str, list[dict[str, Any]]] = {}
    failures: list[str] = []
    for repeat in range(repeats):
        started = time.perf_counter()
        try:
            samples, scans = asyncio.run(actions_once(chain, root, poll, recorder, repeat,
                                               production_poll=repeat < PRODUCTION_POLL_REPEATS))
        except Exception as exc:  # noqa: BLE001 - recorded, the next repeat goes on
            failures.append(f"repeat {repeat}: {type(exc).__name__}: {exc}")
            progress(f"actions repeat {repeat + 1}/{repeats} FAILED: {exc}")
            continue
        for sample in samples:
            by_name.setdefault(sample.name, []).append(sample)
        for scan in scans:
            scans_by_name.setdefault(scan["name"], []).append(scan)
        progress(f"actions repeat {repeat + 1}/{repeats}: {time.perf_counter() - started:.1f} s")
    rows = []
    for name, samples in by_name.items():
        methods: Counter[str] = Counter()
        for s in samples:
            methods.update(s.rpc_methods)
        rows.append({
            "action": name, "n": len(samples),
            "wall_ms": summarize([s.wall_ms for s in samples], 1),
            "txs": summarize([s.txs for s in samples], 1),
            "gas": summarize([s.gas for s in samples], 0),
            "rounds": summarize([s.rounds for s in samples if s.rounds is not None], 1),
            "rpc": summarize([s.rpc for s in samples], 1),
            "rpc_chain_id": summarize([s.rpc_chain_id for s in samples], 1),
            "rpc_ms": summarize([s.rpc_ms for s in samples], 1),
            "sqlite_ms": summarize([s.sqlite_ms for s in samples], 1),
            "sign_ms": summarize([s.sign_ms for s in samples], 1),
            "rpc_methods_per_action": {m: round(c / len(samples), 1) for m, c in methods.most_common()},
        })
    scan_rows = [{"name": name, "n": len(items),
                  **{key: summarize([i[key] for i in items], 1)
                     for key in ("journal_txs", "intents", "wall_ms", "sqlite_calls", "sqlite_ms", "rpc")}}
                 for name, items in scans_by_name.items()]
    return {"repeats": repeats, "poll_seconds": poll, "rows": rows, "collect_fills_scan": scan_rows,
            "failures": failures}


# --------------------------------------------------------------------------------------------------
# 2. breaching oracle update -> first deleveraging transaction


@dataclass
class LiveRun:
    engine: Any
    watchdog: Any
    venues: dict[str, Any]
    feed: Any
    store: Any
    run_id: str
    provider: int
    task: asyncio.Task | None = None


async def build_live_run(root: Path, risk: list[str], recorder: Recorder) -> LiveRun:
    """A live eth_leveraged run as LiveTradingService builds one (``_assemble_live``), started and
    instrumented (instance attributes only)."""
    from basis_live.config import ConfigManager, build_run_config
    from basis_live.engine.assembly import assemble_live_run
    from basis_live.store import Store, StoreJournal
    from basis_live.venues.live_factory import (
        build_live_chain,
        build_live_venues,
        prepare_live_chain,
    )

    strategy = ConfigManager().load(STRATEGY, risk=risk)
    feed_options = {"kind": "sample", "data": None, "scenario": None, "speed": 1.0, "seed": 7}
    config = build_run_config(strategy, CAPITAL, feed_options, live_environment="dev")
    request = {"strategy_name": STRATEGY, "initial_capital": str(CAPITAL), "share_class": config.share_class,
               "overrides": [], "risk_overrides": risk, "feed": config.feed.kind, "data": None, "scenario": None,
               "speed": 1.0, "seed": 7, "execution_mode": config.execution_mode, "environment": config.environment}
    store = Store.open(root / f"run-{secrets.token_hex(3)}.db", create=True)
    assert store is not None
    run_id = secrets.token_hex(4)
    venues = build_live_venues(strategy, config.environment)
    chain_venues, feed = await build_live_chain(strategy, config.environment, StoreJournal(store))
    venues.update(chain_venues)
    sender = venues["wallet"].sender
    instrument_sender(sender, recorder)
    instrument_store(store, recorder)
    assembled = await assemble_live_run(run_id, config, feed, venues, store, request)
    await prepare_live_chain(venues, strategy, config.environment, run_id)
    run = LiveRun(assembled.engine, assembled.watchdog, venues, feed, store, run_id, id(venues["wallet"].w3.provider))
    instrument_run(run, recorder)
    await run.engine.start()
    return run


def instrument_run(run: LiveRun, recorder: Recorder) -> None:
    """Milestones of the breach path as recorder events."""
    engine, sender, feed = run.engine, run.venues["wallet"].sender, run.feed
    ev = recorder.event

    def wrap_async(owner: Any, name: str, on_done: Callable[..., None], on_start: Callable[..., None] | None = None
                   ) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            if on_start is not None:
                on_start(*args, **kwargs)
            result = await original(*args, **kwargs)
            on_done(started, result, *args, **kwargs)
            return result

        setattr(owner, name, wrapper)

    def wrap_sync(owner: Any, name: str, on_done: Callable[..., None]) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = original(*args, **kwargs)
            on_done(started, result, *args, **kwargs)
            return result

        setattr(owner, name, wrapper)

    wrap_async(feed, "_read", lambda s, r, *a: ev("feed_read", started=s, weeth_rate=r.lst_rate.get("weETH")))
    wrap_async(run.venues["aave_v3"], "fetch_account",
               lambda s, r, *a: ev("aave_read", started=s,
                                   hf=None if r.health_factor is None else float(r.health_factor)))
    wrap_async(engine, "checkpoint", lambda s, r, *a: ev("checkpoint", started=s))
    wrap_async(engine.orders, "collect_fills", lambda s, r, *a: ev("collect_fills", started=s))
    wrap_async(engine, "refresh_view", lambda s, r, *a, **k: ev("refresh_view", started=s))
    wrap_async(engine, "execute", lambda s, r, intents, **k: ev(
        "execute_done", started=s, purposes=[i.purpose for i in intents], sent=r))
    wrap_async(engine, "emergency_stop", lambda s, r, reason, *a, **k: ev("emergency_done", started=s),
               on_start=lambda reason, *a, **k: ev("emergency_start", reason=reason))
    check = run.watchdog.check

    @functools.wraps(check)
    async def watchdog_check(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        token = IN_WATCHDOG.set(True)
        try:
            return await check(*args, **kwargs)
        finally:
            IN_WATCHDOG.reset(token)
            ev("watchdog_check", started=started)

    run.watchdog.check = watchdog_check
    wrap_async(sender, "_broadcast", lambda s, r, tx: ev("broadcast", started=s, tx_hash=tx.tx_hash, ok=r))

    def receipt_seen(started: float, receipt: Any, tx_hash: str) -> None:
        if receipt is not None:
            ev("receipt", started=started, tx_hash=tx_hash, block=int(receipt["blockNumber"]))

    wrap_async(sender, "_receipt", receipt_seen)

    def evaluated(started: float, report: Any, view: Any) -> None:
        ev("evaluate", watchdog=IN_WATCHDOG.get(), hf=view.health_factor,
           breaches=[(b.type, b.policy) for b in report.breaches],
           weeth_rate=view.market.lst_rate.get("weETH"), market_received=view.market.received_monotonic)

    wrap_sync(engine, "evaluate_risk", evaluated)
    wrap_sync(engine, "set_state", lambda s, r, state, reason, *a, **k: ev("set_state", state=state, reason=reason))

    def reduced(started: float, intents: Any, view: Any, breaches: Any) -> None:
        ev("reduce", intents=[(i.symbol, i.side, str(i.quantity)) for i in intents],
           weeth_rate=view.market.lst_rate.get("weETH"), hf=view.health_factor,
           weeth=str(view.position_quantity("aave_v3", "weETH")),
           debt=str(view.position_quantity("aave_v3", "WETH-debt")))

    wrap_sync(engine.mode, "reduce", reduced)
    wrap_sync(engine.mode, "unwind", lambda s, plan, view: ev(
        "unwind_plan", batches=[[(i.symbol, i.side, str(i.quantity)) for i in b] for b in plan]))
    journal = sender.journal
    record = journal.record_signed

    @functools.wraps(record)
    def record_signed(tx: Any) -> None:
        record(tx)
        ev("signed", tx_hash=tx.tx_hash, key=tx.key, label=tx.label)

    journal.record_signed = record_signed


#: Locks of web3's HTTPSessionManager found leaked (see ``web3_lock_leaked``); kept so that the process
#: knows to leave without joining the executor threads still blocked on them.
LEAKED_LOCKS: list[Any] = []
ENGINE_STOP_TIMEOUT = 20.0


def web3_lock_leaked() -> bool:
    """web3 8's ``HTTPSessionManager._lock`` is one ``threading.Lock`` for every HTTP provider in the
    process, taken through ``run_in_executor(lock.acquire)`` on every request; a request cancelled
    while it waits for it can leave it held for good (web3.py issue 3867), and then every later
    request of every provider waits forever. Called when no request is in flight: held means leaked.
    A leaked lock is replaced by a fresh one so the next repeat can run."""
    from web3._utils.http_session_manager import HTTPSessionManager

    lock = HTTPSessionManager._lock
    if not lock.locked():
        return False
    LEAKED_LOCKS.append(lock)
    HTTPSessionManager._lock = threading.Lock()
    return True


async def stop_run(run: LiveRun) -> dict[str, Any]:
    """Stop the engine as `basis-live stop` does (request_stop: engine.run cancels its tasks, then
    ``_finish``), and record whether that left web3's session lock held."""
    info: dict[str, Any] = {}
    started = time.perf_counter()
    if run.task is not None:
        if not run.task.done():
            run.engine.request_stop("benchmark done")
        try:
            outcome = await asyncio.wait_for(run.task, ENGINE_STOP_TIMEOUT)
            info["outcome"] = getattr(outcome, "status", repr(outcome))
        except TimeoutError:
            info["outcome"] = f"engine did not stop within {ENGINE_STOP_TIMEOUT:.0f} s"
        except Exception as exc:  # noqa: BLE001 - reported, never hides the measurement
            info["outcome"] = repr(exc)
    info["engine_stop_seconds"] = round(time.perf_counter() - started, 2)
    await asyncio.sleep(0.2)  # nothing of the engine's runs any more: a held lock is a leaked one
    info["web3_lock_leaked_at_stop"] = web3_lock_leaked()
    if not info["web3_lock_leaked_at_stop"]:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(run.venues["wallet"].w3.provider.disconnect(), 5)
    run.store.close()
    return info


def _first(events: list[tuple[float, str, dict]], name: str, after: float,
           where: Callable[[dict], bool] = lambda d: True) -> tuple[float, dict] | None:
    for t, n, data in events:
        if n == name and t >= after and where(data):
            return t, data
    return None


async def breach_once(chain: Chain, root: Path, refresh: float, poll: float, risk: list[str], phase: float,
                      recorder: Recorder) -> dict[str, Any]:
    from basis_live.modes.leveraged import REDUCE_TO_HF_MULTIPLE
    from basis_live.venues.onchain import POOL_ABI
    from basis_live.venues.transactions import connect

    chain.reset()
    wallet = chain.new_wallet(eth=int(CAPITAL))
    networks = chain.networks(root / f"refresh-{refresh:g}", receipt_poll_seconds=poll,
                              market_refresh_seconds=refresh)
    monitor = connect(chain.node.rpc_url)
    pool = monitor.eth.contract(address=chain.market.pool.address, abi=POOL_ABI)

    async def account() -> dict[str, Any]:
        collateral, debt, _, _, _, health = await pool.functions.getUserAccountData(wallet.address).call()
        return {"ltv": debt / collateral if collateral else 0.0, "debt": debt,
                "health_factor": None if health == 2**256 - 1 else health / WAD}

    result: dict[str, Any] = {"refresh_seconds": refresh, "risk_overrides": risk, "phase": round(phase, 3)}
    with bench_environment(root, chain.env(wallet, networks)):
        started = time.perf_counter()
        run = await build_live_run(root, risk, recorder)
        try:
            engine = run.engine
            limit = float(engine.strategy.risk.health_factor_threshold.limit)
            result["account_max_age_seconds"] = engine.account_max_age
            result["setup_seconds"] = round(time.perf_counter() - started, 2)
            run.task = asyncio.create_task(engine.run(run.watchdog), name="engine-run")
            loop_started = time.perf_counter()
            while True:
                if run.task.done():
                    raise BenchFailure(f"the run ended before reaching the target LTV: {run.task.result()}")
                orders = run.store.list_orders(run.run_id)
                data = await account()
                # ... and the first tick is over (its last checkpoint and risk evaluation included).
                if any(o["instrument"].endswith("-loop") for o in orders) and all(
                        o["status"] == "filled" for o in orders) and 0.89 < data["ltv"] < 0.92 \
                        and engine.ticks >= 1 and engine.last_tick_at is not None and not engine.trade_lock.locked():
                    break
                if time.perf_counter() - loop_started > LOOP_TIMEOUT:
                    events = [f"{kind}: {message[:160]}" for kind, message in run.store.db.execute(
                        "SELECT kind, message FROM events WHERE run_id = ? ORDER BY id", (run.run_id,))]
                    journal = run.venues["wallet"].sender.journal
                    described = [(o["instrument"], o["status"], o["filled_quantity"], o["reason"],
                                  {k: v for k, v in (journal.intent(f"{o['venue']}/{o['client_order_id']}")
                                                     or {}).items() if k in ("final", "reason")})
                                 for o in orders]
                    raise BenchFailure(f"no target LTV after {LOOP_TIMEOUT:.0f} s (LTV {data['ltv']:.4f}, orders "
                                       f"{described}; events {events[-12:]})")
                await asyncio.sleep(0.1)
            result["loop_to_target_seconds"] = round(time.perf_counter() - loop_started, 2)
            result["loop_transactions"] = len(run.venues["wallet"].sender.journal.all_transactions())
            result["hf_before"] = round(data["health_factor"], 6)
            # Place the drop at the wanted phase of the watchdog's account-read cycle.
            cycle = engine.account_max_age
            last_read = max((t for t, n, _ in recorder.events if n == "aave_read"), default=time.perf_counter())
            wait = last_read + phase * cycle - time.perf_counter()
            while wait < 0:
                wait += cycle
            await asyncio.sleep(wait)
            price = D(chain.market.price("weETH")) / 10**8 * DROP
            dropping = time.perf_counter()
            await asyncio.to_thread(chain.market.set_price, "weETH", price)
            t0 = time.perf_counter()
            recorder.event("drop")
            result["set_price_ms"] = round((t0 - dropping) * 1000, 1)
            dropped = await account()
            result["hf_dropped"] = round(dropped["health_factor"], 6)
            if not 1.0 < dropped["health_factor"] < limit:
                raise BenchFailure(f"the drop left HF {dropped['health_factor']:.5f}, not between 1 and {limit}")
            rpc_mark = recorder.mark()
            deadline = t0 + DELEVER_TIMEOUT
            # With max_drawdown raised, the reduce step is the whole story. As shipped, the drawdown
            # limit halts and unwinds as soon as a valuation uses the new price (before or after a
            # reduce): wait for the unwind's first transaction and the HF above the limit, then stop
            # (the unwind itself would take the rest of the position apart).
            wait_for_emergency = not any(r.startswith("max_drawdown") for r in risk)
            while time.perf_counter() < deadline:
                events = recorder.events
                if run.task.done():
                    break
                reduced = _first(events, "execute_done", t0, lambda d: "risk_reduce" in d["purposes"])
                if reduced is not None and not wait_for_emergency:
                    break  # the reduce step returned
                emergency = _first(events, "emergency_start", t0)
                if emergency is not None and _first(events, "signed", emergency[0]) is not None:
                    now = await account()
                    if now["health_factor"] is None or now["health_factor"] > limit:
                        break
                await asyncio.sleep(0.05)
            else:
                result["timeout"] = f"no delever step ended within {DELEVER_TIMEOUT:.0f} s"
            await asyncio.sleep(0.2)
        finally:
            result.update(await stop_run(run))
        if not result["web3_lock_leaked_at_stop"]:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(monitor.provider.disconnect(), 5)
    result.update(analyse_breach(chain, recorder, t0, rpc_mark, run, wallet.address, limit, price,
                                 REDUCE_TO_HF_MULTIPLE))
    return result


def analyse_breach(chain: Chain, recorder: Recorder, t0: float, rpc_mark: tuple[int, int, int], run: LiveRun,
                   address: str, limit: float, new_price: Decimal, reduce_multiple: Decimal) -> dict[str, Any]:
    events = [e for e in recorder.events if e[0] >= t0]
    ms = lambda t: None if t is None else round((t - t0) * 1000, 1)
    out: dict[str, Any] = {}
    read = _first(events, "aave_read", t0, lambda d: d["hf"] is not None and d["hf"] < limit)
    feed = _first(events, "feed_read", t0)
    breach = _first(events, "evaluate", t0, lambda d: d["watchdog"] and bool(d["breaches"]))
    state = _first(events, "set_state", t0)
    reduce = _first(events, "reduce", t0)
    emergency = _first(events, "emergency_start", t0)
    signed = _first(events, "signed", t0)
    path = "none"
    if emergency is not None and (reduce is None or emergency[0] < reduce[0]):
        path = "emergency_stop+unwind"
        decision = _first(events, "unwind_plan", emergency[0])
        done = _first(events, "emergency_done", emergency[0])
    elif reduce is not None:
        path = "reduce"
        decision = reduce
        done = _first(events, "execute_done", reduce[0], lambda d: "risk_reduce" in d["purposes"])
    else:
        decision = done = None
    broadcast = (_first(events, "broadcast", signed[0], lambda d: d["tx_hash"] == signed[1]["tx_hash"])
                 if signed else None)
    out["path"] = path
    if path == "reduce" and emergency is not None:
        out["then"] = f"emergency_stop + unwind ({emergency[1]['reason'][:60]}...)"
    unwind_tx = _first(events, "signed", emergency[0]) if emergency is not None else None
    out["breaches_seen"] = breach[1]["breaches"] if breach else []
    out["state"] = state[1]["state"] if state else None
    out["state_reason"] = state[1]["reason"] if state else None
    out["first_tx_label"] = signed[1]["label"] if signed else None
    # The health factor back above the limit: the first delever transaction after whose block Aave
    # reports it so (read now, at that block), timed when the sender saw that transaction's receipt.
    restored_at = None
    restored_label = None
    last_delever_block = None
    lowest: float | None = None  # the lowest HF after any transaction of the delever step
    for t, name, data in events:
        if name != "signed":
            continue
        receipt = _first(events, "receipt", t, lambda d, h=data["tx_hash"]: d["tx_hash"] == h)
        if receipt is None:
            continue
        block = receipt[1]["block"]
        in_step = done is not None and t <= done[0]
        if in_step:
            last_delever_block = block
        if restored_at is None or in_step:
            hf = chain.account_at(address, block)["health_factor"]
            if in_step and hf is not None:
                lowest = hf if lowest is None else min(lowest, hf)
            if restored_at is None and (hf is None or hf > limit):
                restored_at, restored_label = receipt[0], data["label"]
    out["hf_restored_by"] = restored_label
    out["hf_lowest_during_step"] = None if lowest is None else round(lowest, 6)
    if last_delever_block is not None:
        after = chain.account_at(address, last_delever_block)["health_factor"]
        out["hf_after_delever_step"] = None if after is None else round(after, 6)
    out["milestones_ms"] = {
        "fresh_hf_read": ms(read[0] if read else None),
        "feed_refresh": ms(feed[0] if feed else None),
        "breach_evaluated": ms(breach[0] if breach else None),
        "state_change": ms(state[0] if state else None),
        "decision": ms(decision[0] if decision else None),
        "first_tx_signed": ms(signed[0] if signed else None),
        "first_tx_broadcast": ms(broadcast[0] if broadcast else None),
        "hf_above_limit": ms(restored_at),
        "delever_step_done": ms(done[0] if done else None),
        "emergency_stop": ms(emergency[0] if emergency else None),
        "unwind_first_tx_signed": ms(unwind_tx[0] if unwind_tx else None),
    }
    # Where the time goes between the watchdog seeing the breach and the first signature.
    if breach is not None and signed is not None and decision is not None:
        checkpoints = [(d["started"], t) for t, n, d in events if n == "checkpoint" and breach[0] <= d["started"]
                       and t <= decision[0]]
        fills = [(d["started"], t) for t, n, d in events if n == "collect_fills" and breach[0] <= d["started"]
                 and t <= decision[0]]
        views = [(d["started"], t) for t, n, d in events if n == "refresh_view" and breach[0] <= d["started"]
                 and t <= decision[0]]
        rpc_pre = [s for s in recorder.rpc_since(rpc_mark, run.provider) if decision[0] <= s[2] and s[3] <= signed[0]]
        rpc_cp = [s for s in recorder.rpc_since(rpc_mark, run.provider) if breach[0] <= s[2] and s[3] <= decision[0]]
        out["decomposition_ms"] = {
            "breach_to_decision": ms(decision[0]) - ms(breach[0]),
            "  checkpoint": round(sum(e - s for s, e in checkpoints) * 1000, 1),
            "    collect_fills": round(sum(e - s for s, e in fills) * 1000, 1),
            "    refresh_view (account reads)": round(sum(e - s for s, e in views) * 1000, 1),
            "decision_to_first_signed": ms(signed[0]) - ms(decision[0]),
            "  RPC wait": round(sum(e - s for _, _, s, e in rpc_pre) * 1000, 1),
            "  SQLite": round(recorder.sqlite_since(rpc_mark, decision[0], signed[0]), 1),
        }
        out["rpc_breach_to_decision"] = len(rpc_cp)
        out["rpc_decision_to_signed"] = len(rpc_pre)
        out["rpc_decision_to_signed_methods"] = dict(Counter(m for _, m, _, _ in rpc_pre).most_common())
    # Is the watchdog still there while the delever step runs (commands, heartbeats, evaluations)?
    if decision is not None and done is not None:
        beats = sorted(s for label, s, _ in recorder.sqlite if label == "store.heartbeat")
        before = [b for b in beats if b <= decision[0]][-1:]
        during = [b for b in beats if decision[0] < b <= done[0]]
        after = [b for b in beats if b > done[0]][:1] or [done[0]]
        series = before + during + after
        gaps = [b - a for a, b in itertools.pairwise(series)]
        out["during_delever_step"] = {
            "step_ms": round((done[0] - decision[0]) * 1000, 1),
            "heartbeats": len(during),
            "longest_heartbeat_gap_ms": round(max(gaps) * 1000, 1) if gaps else None,
            "watchdog_evaluations": sum(1 for t, n, d in events if n == "evaluate" and d["watchdog"]
                                        and decision[0] < t <= done[0]),
            "longest_watchdog_check_ms": round(max(((t - d["started"]) for t, n, d in events
                                                    if n == "watchdog_check"), default=0.0) * 1000, 1),
        }
    if breach is not None:
        out["watchdog_evaluations_before_breach"] = sum(1 for t, n, d in events if n == "evaluate" and d["watchdog"]
                                                        and t < breach[0])
    if reduce is not None:
        # The reduce's size, and the size the mode's own formula gives at the oracle's new rate.
        data = reduce[1]
        used_rate = D(repr(data["weeth_rate"]))
        weth_price = D(chain.market.price("WETH")) / 10**8
        fresh_rate = new_price / weth_price
        weeth, debt = D(data["weeth"]), D(data["debt"])
        floor = D(repr(limit))
        leverage = run.engine.strategy.leverage
        safe_ltv = D(repr(leverage.liquidation_threshold)) / (floor * reduce_multiple)
        q_fresh = (debt - safe_ltv * weeth * fresh_rate) / (1 - safe_ltv)
        out["reduce_sizing"] = {
            "feed_rate_used": float(used_rate), "oracle_rate_now": float(round(fresh_rate, 6)),
            "quantity": float(D(data["intents"][0][2])) if data["intents"] else 0.0,
            "quantity_at_oracle_rate": float(round(q_fresh, 6)),
            "target_hf": float(floor * reduce_multiple),
        }
    return out


def measure_breach(chain: Chain, root: Path, refresh: float, poll: float, risk: list[str], repeats: int,
                   recorder: Recorder, progress: Progress, label: str) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    failures: list[str] = []
    for repeat in range(repeats):
        phase = (repeat + 0.5) / repeats
        started = time.perf_counter()
        try:
            sample = asyncio.run(breach_once(chain, root, refresh, poll, risk, phase, recorder))
        except Exception as exc:  # noqa: BLE001 - recorded, the next repeat goes on
            failures.append(f"repeat {repeat}: {type(exc).__name__}: {exc}")
            progress(f"breach {label} refresh {refresh:g} s repeat {repeat + 1}/{repeats} FAILED: {exc}")
            continue
        finally:
            recorder.events.clear()
        samples.append(sample)
        progress(f"breach {label} refresh {refresh:g} s repeat {repeat + 1}/{repeats}: path {sample['path']}, "
                 f"first tx at {sample['milestones_ms']['first_tx_signed']} ms, {time.perf_counter() - started:.1f} s")
    milestones = {key: summarize([s["milestones_ms"][key] for s in samples if s["milestones_ms"][key] is not None], 1)
                  for key in (samples[0]["milestones_ms"] if samples else {})}
    decomposition = {}
    with_decomp = [s for s in samples if "decomposition_ms" in s]
    if with_decomp:
        decomposition = {key: summarize([s["decomposition_ms"][key] for s in with_decomp], 1)
                         for key in with_decomp[0]["decomposition_ms"]}
    return {"label": label, "refresh_seconds": refresh, "risk_overrides": risk, "repeats": repeats,
            "paths": dict(Counter(s["path"] for s in samples)), "milestones_ms": milestones,
            "decomposition_ms": decomposition,
            "rpc_decision_to_signed": summarize([s["rpc_decision_to_signed"] for s in with_decomp], 1),
            "rpc_breach_to_decision": summarize([s["rpc_breach_to_decision"] for s in with_decomp], 1),
            "samples": samples, "failures": failures}


# --------------------------------------------------------------------------------------------------
# report


def machine_facts(chain: Chain | None) -> dict[str, Any]:
    import web3
    from chain.tools import ANVIL_VERSION

    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(), "web3": web3.__version__, "anvil": ANVIL_VERSION,
        "sqlite": sqlite3.sqlite_version, "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "chain_setup_seconds": round(chain.setup_seconds, 2) if chain else None,
    }


def _cells(stats: dict[str, Any], keys: tuple[str, ...] = ("p50", "p95", "max"), fmt: str = "{:>9.1f}") -> str:
    if not stats.get("n"):
        return "".join(f"{'-':>9}" for _ in keys)
    return "".join(fmt.format(stats[k]) for k in keys)


def _p50(stats: dict[str, Any], fmt: str = "{:.0f}") -> str:
    return fmt.format(stats["p50"]) if stats.get("n") else "-"


def render_table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [(f"basis-live chain benchmark: anvil {m['anvil']} (automine) with Aave V3.2 and our LST / swap "
              f"contracts; {m['cpu_count']} CPUs ({m['cpus_usable']} usable), Python {m['python']}, web3 "
              f"{m['web3']}, SQLite {m['sqlite']}, load {m['loadavg_at_start']}; chain deployed in "
              f"{m['chain_setup_seconds']} s")]
    if "actions" in results:
        a = results["actions"]
        lines += ["", (f"1. one order through place_order, {a['repeats']} repeats (fresh wallet, anvil reverted each); "
                       f"receipt poll {a['poll_seconds']:g} s unless marked"),
                  (f"  {'action':<44}{'p50 ms':>9}{'p95':>9}{'max':>9}  {'txs':>4}{'gas':>9}{'RPCs':>6}"
                   f"{'chainId':>8}{'RPC ms':>8}{'SQLite':>8}{'sign':>6}")]
        for row in a["rows"]:
            if row["rounds"].get("n"):
                continue
            lines.append(f"  {row['action']:<44}{_cells(row['wall_ms'])}  {_p50(row['txs']):>4}{_p50(row['gas']):>9}"
                         f"{_p50(row['rpc']):>6}{_p50(row['rpc_chain_id']):>8}{_p50(row['rpc_ms']):>8}"
                         f"{_p50(row['sqlite_ms']):>8}{_p50(row['sign_ms'], '{:.1f}'):>6}")
        lines.append(f"  {'leverage loop (OnchainLeverageVenue)':<44}{'p50 s':>9}{'p95':>9}{'max':>9}  {'rounds':>6}"
                     f"{'txs':>5}{'gas':>10}{'RPCs':>6}{'chainId':>8}{'RPC s':>7}{'SQLite s':>9}")
        for row in a["rows"]:
            if not row["rounds"].get("n"):
                continue
            w = {k: (v / 1000 if k != "n" else v) for k, v in row["wall_ms"].items()}
            lines.append(f"  {row['action']:<44}{_cells(w, fmt='{:>9.2f}')}  {_p50(row['rounds']):>6}"
                         f"{_p50(row['txs']):>5}{_p50(row['gas']):>10}{_p50(row['rpc']):>6}{_p50(row['rpc_chain_id']):>8}"
                         f"{row['rpc_ms']['p50'] / 1000:>7.2f}{row['sqlite_ms']['p50'] / 1000:>9.2f}")
        lines.append("  collect_fills' venue calls (every checkpoint: each tick, each reduce, each unwind step), "
                     "steady state, by journal size:")
        lines.append(f"    {'':<36}{'txs':>6}{'intents':>8}{'p50 ms':>9}{'max':>9}{'SQLite calls':>13}{'SQLite ms':>10}"
                     f"{'RPCs':>6}")
        for row in a["collect_fills_scan"]:
            lines.append(f"    {row['name']:<36}{_p50(row['journal_txs']):>6}{_p50(row['intents']):>8}"
                         f"{row['wall_ms']['p50']:>9.1f}{row['wall_ms']['max']:>9.1f}{_p50(row['sqlite_calls']):>13}"
                         f"{_p50(row['sqlite_ms'], '{:.1f}'):>10}{_p50(row['rpc']):>6}")
        lines.append("  RPC requests per action by method (p50 action 'aave supply 1000 USDT'): " + ", ".join(
            f"{k} {v:g}" for k, v in next((r["rpc_methods_per_action"] for r in a["rows"]
                                           if r["action"] == "aave supply 1000 USDT"), {}).items()))
        lines += [f"  FAILURE actions: {f}" for f in a["failures"]]
    for section in results.get("breach", []):
        lines += ["", (f"2. {section['label']}: weETH oracle -2.5% -> delever, market_refresh_seconds "
                       f"{section['refresh_seconds']:g} (watchdog account reads every "
                       f"{section['samples'][0]['account_max_age_seconds'] if section['samples'] else '?'} s), "
                       f"{section['repeats']} repeats; risk {section['risk_overrides'] or 'as shipped'}; "
                       f"paths {section['paths']}"),
                  f"  {'ms from the set_price receipt':<44}{'p50':>9}{'p95':>9}{'max':>9}{'n':>4}"]
        titles = {"fresh_hf_read": "account read shows the breaching HF", "feed_refresh": "first feed refresh",
                  "breach_evaluated": "watchdog evaluation sees the breach", "state_change": "REDUCING / HALTED set",
                  "decision": "decision (mode.reduce / first unwind plan)",
                  "first_tx_signed": "first delever tx signed + journaled",
                  "first_tx_broadcast": "first delever tx broadcast", "hf_above_limit": "HF back above the limit",
                  "delever_step_done": "delever step returned",
                  "emergency_stop": "emergency stop (max_drawdown) started",
                  "unwind_first_tx_signed": "first unwind tx signed"}
        for key, stats in section["milestones_ms"].items():
            if key in ("emergency_stop", "unwind_first_tx_signed") and not stats.get("n"):
                continue
            lines.append(f"  {titles.get(key, key):<44}{_cells(stats)}{stats.get('n', 0):>4}")
        during = [s["during_delever_step"] for s in section["samples"] if "during_delever_step" in s]
        if during:
            lines.append(
                f"  while the delever step ran (p50 of {len(during)}): step "
                f"{statistics.median(d['step_ms'] for d in during):.0f} ms, longest watchdog check "
                f"{statistics.median(d['longest_watchdog_check_ms'] for d in during):.0f} ms, watchdog evaluations "
                f"{statistics.median(d['watchdog_evaluations'] for d in during):g}, heartbeats "
                f"{statistics.median(d['heartbeats'] for d in during):g} (longest gap "
                f"{statistics.median(d['longest_heartbeat_gap_ms'] or 0 for d in during):.0f} ms)")
        if section["decomposition_ms"]:
            lines.append("  breach evaluated -> first tx signed, ms:")
            for key, stats in section["decomposition_ms"].items():
                lines.append(f"    {key:<42}{_cells(stats)}")
            lines.append(f"    RPC requests: breach -> decision p50 {_p50(section['rpc_breach_to_decision'])}, "
                         f"decision -> signed p50 {_p50(section['rpc_decision_to_signed'])}")
        for s in section["samples"]:
            extra = ""
            if "reduce_sizing" in s:
                r = s["reduce_sizing"]
                extra = (f"; reduce {r['quantity']:.3f} WETH on feed rate {r['feed_rate_used']:.6f} "
                         f"(oracle now {r['oracle_rate_now']:.6f}: {r['quantity_at_oracle_rate']:.3f})")
            lines.append(f"    repeat phase {s['phase']:.2f}: loop {s['loop_to_target_seconds']} s / "
                         f"{s['loop_transactions']} txs, HF {s['hf_before']} -> {s['hf_dropped']} -> "
                         f"{s.get('hf_after_delever_step')} after the step (lowest in it "
                         f"{s.get('hf_lowest_during_step')}, target "
                         f"{s.get('reduce_sizing', {}).get('target_hf', '-')}), breaches {s['breaches_seen']}, "
                         f"first tx {s['first_tx_label']!r}{extra}"
                         + (f"; then {s['then']}" if s.get("then") else "")
                         + (f"; TIMEOUT {s['timeout']}" if s.get("timeout") else ""))
        lines += [f"  FAILURE: {f}" for f in section["failures"]]
    stops = [s for section in results.get("breach", []) for s in section["samples"]]
    if stops:
        leaked = sum(1 for s in stops if s.get("web3_lock_leaked_at_stop"))
        lines.append(f"\nengine stops (request_stop, as `basis-live stop`): {len(stops)}, p50 "
                     f"{statistics.median(s['engine_stop_seconds'] for s in stops):.2f} s, max "
                     f"{max(s['engine_stop_seconds'] for s in stops):.2f} s; web3's HTTPSessionManager lock left held "
                     f"(leaked) by {leaked} of them")
    lines.append(f"\ntotal {results['elapsed_seconds']:.0f} s")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", "-n", type=int, default=DEFAULT_REPEATS,
                        help=f"section 1: repeats of the action sequence (default {DEFAULT_REPEATS}; ~20 s each)")
    parser.add_argument("--breach-repeats", "-r", type=int, default=DEFAULT_BREACH_REPEATS,
                        help=f"section 2: repeats per refresh period with the reduce path isolated "
                             f"(default {DEFAULT_BREACH_REPEATS}; 15-25 s each)")
    parser.add_argument("--stock-repeats", type=int, default=DEFAULT_STOCK_REPEATS,
                        help=f"section 2: repeats per refresh period of the strategy as shipped "
                             f"(default {DEFAULT_STOCK_REPEATS}; 0 skips)")
    parser.add_argument("--refresh", default=",".join(f"{r:g}" for r in DEFAULT_REFRESH),
                        help="section 2: market_refresh_seconds values, comma-separated (default 12,0.5)")
    parser.add_argument("--poll", type=float, default=DEFAULT_POLL,
                        help=f"receipt_poll_seconds of the networks file (SenderSettings.poll_interval; default "
                             f"{DEFAULT_POLL:g})")
    parser.add_argument("--skip-actions", action="store_true", help="skip section 1")
    parser.add_argument("--skip-breach", action="store_true", help="skip section 2")
    parser.add_argument("--json", action="store_true", help="print only the JSON results")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.breach_repeats < 0 or args.stock_repeats < 0:
        parser.error("--repeats must be >= 1, --breach-repeats and --stock-repeats >= 0")
    try:
        args.refresh = [float(x) for x in args.refresh.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--refresh {args.refresh!r}: comma-separated seconds")
    if args.poll <= 0:
        parser.error("--poll must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    progress = Progress(not args.json, "bench_chain")
    logging.getLogger("basis_live").setLevel(logging.WARNING)
    started = time.monotonic()
    recorder = Recorder()
    count_rpc_requests(recorder)
    results: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "json"}}
    chain = Chain()
    progress(f"anvil up, market and contracts deployed in {chain.setup_seconds:.1f} s")
    results["machine"] = machine_facts(chain)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-chain-") as tmp:
            root = Path(tmp)
            if not args.skip_actions:
                results["actions"] = measure_actions(chain, root, args.repeats, args.poll, recorder, progress)
            if not args.skip_breach:
                results["breach"] = []
                for refresh in args.refresh:
                    if args.breach_repeats:
                        results["breach"].append(measure_breach(
                            chain, root, refresh, args.poll, ISOLATE_REDUCE_RISK, args.breach_repeats, recorder,
                            progress, "reduce path (max_drawdown limit 0.5)"))
                    if args.stock_repeats:
                        results["breach"].append(measure_breach(
                            chain, root, refresh, args.poll, [], args.stock_repeats, recorder, progress,
                            "strategy as shipped"))
    finally:
        chain.stop()
    results["web3_locks_leaked"] = len(LEAKED_LOCKS)
    results["elapsed_seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(results, indent=2, default=str) if args.json else render_table(results))
    if LEAKED_LOCKS:
        # Executor threads still wait on the leaked locks: a normal exit would join them for ever.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
