"""A live btc_basis run end to end: `basis-live start btc_basis --capital 100000 --env dev`, run as an
operator runs it (the installed script, in a subprocess) against the loopback exchange peer with
the real ccxt classes. Credentials and endpoint overrides come from the environment, as in
production; no test reaches the internet.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conftest import Cli, wait_for
from peers.exchange_server import ExchangePeer

D = Decimal
PERP = "BTC/USDT:USDT"
SPOT = "BTC/USDT"
VENUES = ("binance", "bybit", "okx")


@pytest.fixture
def peer() -> Any:
    with ExchangePeer() as server:
        fund(server)
        yield server


def fund(peer: ExchangePeer, capital: Decimal = D(100_000)) -> None:
    """Accounts holding exactly what btc_basis needs for ``capital`` at perp leverage 3: the spot
    leg's USDT in binance's spot wallet, each venue's perp margin (hedge 0.4 / 0.3 / 0.3 of a
    quarter of the capital) where its perps are margined."""
    spot = capital * 3 / 4
    margin = {"binance": spot / 3 * D("0.4"), "bybit": spot / 3 * D("0.3"), "okx": spot / 3 * D("0.3")}
    for venue in VENUES:
        for asset in ("BTC", "ETH", "USDT"):
            for wallet in (("spot", "futures") if venue == "binance" else (None,)):
                peer.set_balance(venue, asset, 0, wallet)
    peer.set_balance("binance", "USDT", spot, "spot")
    peer.set_balance("binance", "USDT", margin["binance"], "futures")
    peer.set_balance("bybit", "USDT", margin["bybit"])
    peer.set_balance("okx", "USDT", margin["okx"])


def live_env(peer: ExchangePeer, environment: str = "dev") -> dict[str, str]:
    env = {}
    for venue in VENUES:
        prefix = f"BASIS_{environment.upper()}__CEX__{venue.upper()}"
        env[f"{prefix}_API_KEY"] = peer.credentials.api_key
        env[f"{prefix}_SECRET"] = peer.credentials.secret
        env[f"{prefix}_PASSPHRASE"] = peer.credentials.passphrase
        env[f"{prefix}_API_URL"] = peer.url(venue)
    return env


def start_args(*extra: str) -> list[str]:
    # A strategy tick every second (the shipped 60 s would make the test wait minutes).
    return ["btc_basis", "--capital", "100000", "--env", "dev", "--set", "monitoring_interval=1",
            "--set", "execution.funding_poll_seconds=1", *extra]


def no_duplicate_orders(peer: ExchangePeer) -> None:
    """Every client order id exists at most once on each venue."""
    for venue in VENUES:
        counts = Counter(order.client_id for order in peer.orders(venue))
        assert all(n == 1 for n in counts.values()), f"{venue} duplicates: {counts.most_common(3)}"


def open_orders(peer: ExchangePeer) -> dict[str, list[str]]:
    return {venue: [o.client_id for o in peer.orders(venue) if o.is_open] for venue in VENUES}


#: okx BTC-USDT-SWAP contracts are 0.01 BTC each; the peer reports okx positions in contracts.
CONTRACT_SIZE = {"binance": D(1), "bybit": D(1), "okx": D("0.01")}


def legs(peer: ExchangePeer) -> dict[str, Decimal]:
    """Spot BTC held on binance and each venue's perp position, in BTC."""
    return {"spot": peer.balance("binance", "BTC", "spot"),
            **{venue: peer.position(venue, PERP) * CONTRACT_SIZE[venue] for venue in VENUES}}


def hedged(peer: ExchangePeer, tolerance: Decimal = D("0.03")) -> dict[str, Decimal] | None:
    """The legs once the spot is held and each venue's short is its share of it (within tolerance)."""
    now = legs(peer)
    spot = now["spot"]
    if spot <= 0:
        return None
    for venue, weight in (("binance", D("0.4")), ("bybit", D("0.3")), ("okx", D("0.3"))):
        if abs(-now[venue] - weight * spot) > tolerance * weight * spot:
            return None
    return now


def independent_equity(peer: ExchangePeer) -> Decimal:
    """USDT in every wallet, spot BTC at the peer's mid, plus every perp's unrealised P&L at mid."""
    total = D(0)
    for venue in VENUES:
        ledger = peer.apis[venue].ledger
        with ledger.lock:
            for assets in ledger.balances.values():
                total += assets.get("USDT", D(0)) + assets.get("BTC", D(0)) * ledger.mid[SPOT]
            total += ledger.unrealized(ledger.instruments[PERP])
    return total


def run_events(db: Path, run_id: str) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT message FROM events WHERE run_id = ? ORDER BY id", (run_id,))]


def test_live_btc_basis_opens_both_legs_rebalances_and_survives_faults_without_duplicates(
        cli: Cli, peer: ExchangePeer) -> None:
    # Faults the first minutes of a live run meet: a submit whose answer is lost after the venue
    # accepted it, 429s with Retry-After on reads, a burst of 5xx.
    peer.drop_response("bybit", "create_order", times=1)
    # ...and an order that fills only in part, and one refused for insufficient margin.
    peer.partial_fill("okx", "0.5", times=1)
    peer.reject_for_funds("binance", times=1)
    proc = cli.start(*start_args(), env=live_env(peer))
    row = cli.wait_running(proc)
    peer.rate_limit("binance", "position_risk", times=1)
    peer.server_errors("okx", "balance", times=2)
    assert row["execution_mode"] == "live"
    assert D(str(row["initial_capital"])) == D(100_000)
    opened = wait_for(lambda: hedged(peer), timeout=60)
    spot_value = opened["spot"] * D(60_000)
    assert D("74000") < spot_value <= D("75000")  # equity x L/(L+1), less fees
    assert [e for e in peer.requests("bybit", "create_order") if e.fault == "drop"]
    wait_for(lambda: [e for e in peer.requests("binance", "position_risk") if e.fault == "rate_limit"])
    wait_for(lambda: len([e for e in peer.requests("okx", "balance") if e.fault == "server_error"]) == 2)
    no_duplicate_orders(peer)

    # A funding settlement on every venue: shorts receive notional x rate.
    received = D(0)
    for venue in VENUES:
        peer.set_funding_rate(venue, PERP, "0.0001")
        received += peer.settle_funding(venue, PERP)
    assert received > 0

    # Rebalance: BTC +10% everywhere shrinks the target spot quantity by ~9%; both legs follow. The
    # market moves in 1% steps: the feed reads spot and each perp one after another, and a 10% jump
    # between two reads would show the run a drawdown that its 5% limit rightly halts on.
    for price in range(60_600, 66_001, 600):
        for venue in VENUES:
            peer.set_price(venue, PERP, price)
        peer.set_price("binance", SPOT, price)
        time.sleep(0.3)
    rebalanced = wait_for(lambda: (lambda h: h if h and h["spot"] < opened["spot"] * D("0.95") else None)(hedged(peer)),
                          timeout=60)
    assert rebalanced["spot"] * D(66_000) < D(76_000)
    no_duplicate_orders(peer)

    stop = cli.run("stop", row["run_id"])
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert proc.wait(timeout=30) == 0
    status = cli.run("status", row["run_id"], "--json")
    final = json.loads(status.stdout)[0]
    assert final["status"] == "stopped" and final["total_trades"] >= 8
    # Equity from the venues' balances agrees with an independent valuation of the peer's own books.
    assert abs(D(str(final["current_value"])) - independent_equity(peer)) < D("0.01"), final
    assert abs(final["total_pnl"] - (final["current_value"] - 100_000)) < 1e-6
    # Every source is tracked from its own events and they add up to the balance-based P&L: the
    # gap stays under 0.01% of the capital (binance's futures fees come from its income history).
    metrics = json.loads(cli.run("metrics", row["run_id"], "--json").stdout)
    by_source = {k: D(v) for k, v in metrics["pnl_by_source"].items()}
    assert abs(by_source["gap"]) < D(10), by_source
    assert abs(by_source["funding"] - received) < D("0.01"), (by_source, received)
    assert by_source["fees"] < 0
    events = "\n".join(run_events(cli.db, row["run_id"]))
    assert "reconciling by client order id" in events and "found on bybit" in events
    assert "rejected" in events  # the margin refusal, logged; the next tick's order went through
    orders = json.loads(cli.run("orders", row["run_id"], "--json").stdout)
    assert any(o["status"] == "rejected" and o["venue"] == "binance" for o in orders)
    assert any(o["venue"] == "okx" and 0 < float(o["filled_quantity"]) < float(o["quantity"]) for o in orders)
    for secret in (peer.credentials.api_key, peer.credentials.secret, peer.credentials.passphrase):
        assert secret not in cli.db.read_bytes().decode("latin-1")
        assert secret not in status.stdout


def test_emergency_stop_on_a_live_run_leaves_no_open_order_on_any_venue(cli: Cli, peer: ExchangePeer) -> None:
    # Passive limit orders 1% away rest on the books: what an emergency stop must clear.
    proc = cli.start(*start_args("--set", "execution.order_type=limit", "--set", "execution.limit_offset_bps=100"),
                     env=live_env(peer))
    row = cli.wait_running(proc)
    resting = wait_for(lambda: (lambda o: o if all(o.values()) else None)(open_orders(peer)), timeout=60)
    assert all(len(ids) >= 1 for ids in resting.values())
    # The money of a live run moves outside basis-live: a withdrawal is refused with the reason.
    refused = cli.run("withdraw", row["run_id"], "1000")
    assert refused.returncode == 1 and "deposits and withdrawals on live venues are not supported yet" in refused.stderr
    result = cli.run("emergency-stop", row["run_id"], "--reason", "test: venue incident")
    assert result.returncode == 0, result.stdout + result.stderr
    assert proc.wait(timeout=30) == 3
    assert open_orders(peer) == {venue: [] for venue in VENUES}
    no_duplicate_orders(peer)
    events = "\n".join(run_events(cli.db, row["run_id"]))
    assert "emergency stop: cancelled open orders" in events


def test_live_start_with_a_venue_down_is_refused_before_anything_is_written_or_sent(
        cli: Cli, peer: ExchangePeer) -> None:
    peer.venue_down("okx")
    result = cli.run(*(["start"] + start_args()), env=live_env(peer))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error LT-004: client validation failed")
    assert "okx reachable" in lines[0]
    assert not any(peer.orders(venue) for venue in VENUES)
    assert json.loads(cli.run("status", "--json").stdout) == []


def test_live_start_without_credentials_names_the_missing_variable(cli: Cli, peer: ExchangePeer) -> None:
    env = live_env(peer)
    env["BASIS_DEV__CEX__BYBIT_SECRET"] = ""
    result = cli.run(*(["start"] + start_args()), env=env)
    assert result.returncode == 2
    assert "error LT-001" in result.stderr and "BASIS_DEV__CEX__BYBIT_SECRET" in result.stderr
    assert peer.requests() == []


def test_live_start_refuses_accounts_with_open_orders_it_did_not_place(cli: Cli, peer: ExchangePeer) -> None:
    import asyncio

    from peers.ccxt_wiring import connected

    async def place_by_hand() -> None:
        async with connected(peer, "bybit") as exchange:
            await exchange.create_order(PERP, "limit", "buy", 0.01, 50_000, {"clientOrderId": "manual-1"})

    asyncio.run(place_by_hand())
    result = cli.run(*(["start"] + start_args()), env=live_env(peer))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "open order(s) basis-live did not place" in result.stderr and "manual-1" in result.stderr
    assert [o.client_id for o in peer.orders("bybit")] == ["manual-1"]


def test_live_start_refuses_when_the_accounts_do_not_hold_the_capital(cli: Cli, peer: ExchangePeer) -> None:
    result = cli.run("start", "btc_basis", "--capital", "250000", "--env", "dev", env=live_env(peer))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "the accounts hold 100,000.00 USDT of equity, --capital is 250,000" in result.stderr
    assert not any(peer.orders(venue) for venue in VENUES)
