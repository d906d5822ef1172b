"""--feed live: paper trading on the exchanges' public market data (ccxt, no keys), with the real
ccxt classes pointed at the loopback exchange peer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import Cli, wait_for
from peers.exchange_server import ExchangePeer


@pytest.fixture
def peer() -> Any:
    with ExchangePeer() as server:
        yield server


def _public_env(peer: ExchangePeer) -> dict[str, str]:
    return {f"BASIS_DEV__CEX__{v.upper()}_API_URL": peer.url(v) for v in ("binance", "bybit", "okx")}


def test_btc_basis_paper_trades_on_live_public_data_with_no_keys(cli: Cli, peer: ExchangePeer) -> None:
    import os
    import subprocess

    from conftest import BASIS_LIVE

    for venue in ("binance", "bybit", "okx"):
        peer.set_price(venue, "BTC/USDT:USDT", 61000)
        peer.set_funding_rate(venue, "BTC/USDT:USDT", "0.0002")
    peer.set_price("binance", "BTC/USDT", 60000)
    env = {**os.environ, "BASIS_LIVE_DB": str(cli.db), **_public_env(peer)}
    engine = subprocess.Popen([BASIS_LIVE, "start", "btc_basis", "--capital", "100000", "--feed", "live"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    cli.engines.append(engine)
    run = cli.wait_running(engine)
    assert run["feed"].startswith("LIVE PUBLIC DATA")
    wait_for(lambda: cli.status()[0]["total_trades"] >= 4)  # spot + three perp legs, simulated fills
    orders = json.loads(cli.run("orders", run["run_id"], "--json").stdout)
    spot = next(o for o in orders if o["instrument"] == "BTC/USDT")
    perp = next(o for o in orders if o["instrument"] == "BTC/USDT:USDT")
    # Simulated at the live prices (+/- the slippage bucket), not at any sample price.
    assert 59_000 < float(spot["average_price"]) < 61_000 < float(perp["average_price"]) * 1.02
    # Public data only: no private endpoint was ever called.
    assert not peer.requests("binance", "account") and not peer.requests("binance", "create_order")
    assert cli.run("stop", run["run_id"]).returncode == 0
    assert engine.wait(timeout=15) == 0
    assert engine.stdout.read().splitlines()[0].startswith("PAPER TRADING on LIVE PUBLIC MARKET DATA")


def test_live_feed_refuses_modes_that_need_on_chain_data_and_backtests(cli: Cli) -> None:
    lending = cli.run("start", "pure_lending", "--capital", "1000", "--feed", "live")
    assert lending.returncode == 2 and "needs on-chain data" in lending.stderr
    fast = cli.run("start", "btc_basis", "--capital", "1000", "--feed", "live", "--speed", "10")
    assert fast.returncode == 2 and "runs in real time" in fast.stderr
