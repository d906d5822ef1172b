"""`basis-live validate STRATEGY --env ENV`: the live clients a mode needs, checked against the
loopback exchange peer with the real ccxt classes (no test reaches the internet)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import Cli
from peers.exchange_server import ExchangePeer


@pytest.fixture
def peer() -> Any:
    with ExchangePeer() as server:
        yield server


def _env(peer: ExchangePeer, environment: str = "dev", **changes: str) -> dict[str, str]:
    env = {}
    for venue in ("binance", "bybit", "okx"):
        prefix = f"BASIS_{environment.upper()}__CEX__{venue.upper()}"
        env[f"{prefix}_API_KEY"] = peer.credentials.api_key
        env[f"{prefix}_SECRET"] = peer.credentials.secret
        env[f"{prefix}_PASSPHRASE"] = peer.credentials.passphrase
        env[f"{prefix}_API_URL"] = peer.url(venue)
    env.update(changes)
    return env


def _checks(result) -> dict[tuple[str, str], dict]:  # type: ignore[no-untyped-def]
    return {(c["client"], c["check"]): c for c in json.loads(result.stdout)["clients"]}


def test_btc_basis_clients_validate_against_the_exchanges(cli: Cli, peer: ExchangePeer) -> None:
    result = cli.run("validate", "btc_basis", "--env", "dev", "--json", env=_env(peer))
    assert result.returncode == 0, result.stdout + result.stderr
    checks = _checks(result)
    for venue in ("binance", "bybit", "okx"):
        for check in ("endpoint", "reachable", "credentials", "rate limit"):
            assert checks[(venue, check)]["ok"], checks[(venue, check)]
    assert "peer-test-secret" not in result.stdout and "peer-test-key" not in result.stdout


def test_wrong_credentials_fail_the_private_read_with_exit_1(cli: Cli, peer: ExchangePeer) -> None:
    result = cli.run("validate", "btc_basis", "--env", "dev", "--json",
                     env=_env(peer, BASIS_DEV__CEX__BYBIT_SECRET="not-the-secret"))
    assert result.returncode == 1
    checks = _checks(result)
    assert not checks[("bybit", "credentials")]["ok"]
    assert checks[("binance", "credentials")]["ok"] and checks[("okx", "credentials")]["ok"]
    assert "not-the-secret" not in result.stdout


def test_a_venue_that_is_down_fails_reachability_with_a_clear_message(cli: Cli, peer: ExchangePeer) -> None:
    peer.venue_down("okx", mode="refuse")
    result = cli.run("validate", "btc_basis", "--env", "dev", env=_env(peer))
    assert result.returncode == 1
    assert "okx" in result.stdout and "FAIL" in result.stdout and "reachable" in result.stdout


def test_a_production_endpoint_in_dev_is_refused_before_anything_is_sent(cli: Cli, peer: ExchangePeer) -> None:
    result = cli.run("validate", "btc_basis", "--env", "dev", "--json",
                     env=_env(peer, BASIS_DEV__CEX__BINANCE_API_URL="https://api.binance.com"))
    assert result.returncode == 1
    check = _checks(result)[("binance", "endpoint")]
    assert not check["ok"] and "production endpoint api.binance.com in dev" in check["detail"]
    assert ("binance", "reachable") not in _checks(result)  # nothing was sent to production


def test_missing_credentials_name_the_variable(cli: Cli, peer: ExchangePeer) -> None:
    env = _env(peer)
    env["BASIS_DEV__CEX__OKX_PASSPHRASE"] = ""
    result = cli.run("validate", "btc_basis", "--env", "dev", "--json", env=env)
    assert result.returncode == 1
    assert "BASIS_DEV__CEX__OKX_PASSPHRASE" in _checks(result)[("okx", "credentials")]["detail"]


def test_chain_clients_without_credentials_fail_naming_the_variables(cli: Cli) -> None:
    result = cli.run("validate", "pure_lending", "--env", "dev", "--json")
    assert result.returncode == 1
    detail = _checks(result)[("chain", "credentials")]["detail"]
    assert "BASIS_DEV__CHAIN__PRIVATE_KEY" in detail and "BASIS_DEV__CHAIN__RPC_URL" in detail
    bad = cli.run("validate", "btc_basis", "--env", "moon")
    assert bad.returncode == 2 and bad.stderr.startswith("error LT-001: --env 'moon'")
