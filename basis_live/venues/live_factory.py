"""Builds and validates the live venues of a run: ccxt accounts on the exchanges (and, once wired,
the on-chain accounts). The engine never knows which kind it drives; ``venues.factory`` builds
the paper ones.

- Which symbols each exchange trades follows the paper venues: the strategy's asset as spot on
  binance (the basis modes' long leg) and as a USDT-margined linear perp on every enabled exchange.
- Credentials, endpoint routing and overrides come from ``venues.cex_clients`` (environment
  variables per environment and venue; ``venues.<venue>.api_url`` or ``..._API_URL`` overrides).
- ``validate_live_clients`` is what ``basis-live validate --env`` prints and what a live ``start``
  runs before it trades: a run refuses to start when any check fails.

ccxt is imported only when a live venue is built or validated (``status`` and ``health`` stay fast).
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Mapping

from basis_live.errors import EngineInitError
from basis_live.venues.base import Venue

if TYPE_CHECKING:
    from basis_live.config import StrategyConfig
    from basis_live.venues.cex_clients import ClientCheck

CEX_VENUES = ("binance", "bybit", "okx")
#: The exchange that holds the spot leg (as in the paper venues).
SPOT_VENUE = "binance"


def enabled_venues(strategy: "StrategyConfig") -> list[str]:
    return [name for name, venue in strategy.venues.items() if venue.enabled]


def cex_symbols(strategy: "StrategyConfig", venue: str) -> list[str]:
    """ccxt symbols one exchange trades for this strategy: "BTC/USDT" spot on binance, "BTC/USDT:USDT"
    perps wherever the strategy hedges or trades perps."""
    asset = strategy.asset
    symbols = [f"{asset}/USDT"] if venue == SPOT_VENUE and strategy.mode in ("btc_basis", "eth_basis") else []
    return symbols + [f"{asset}/USDT:USDT"]


def refuse_unsupported(strategy: "StrategyConfig") -> None:
    """LT-003 before anything is built for a live run this build cannot trade."""
    chain = [name for name in enabled_venues(strategy) if name not in CEX_VENUES]
    if chain:
        raise EngineInitError(
            f"live trading of {strategy.mode} needs on-chain venues ({', '.join(chain)}), which are not wired into "
            "live runs yet; paper-trade it (no --env) or run a CEX-only mode (btc_basis, eth_basis)")


def build_live_venues(strategy: "StrategyConfig", environment: str,
                      env: Mapping[str, str] | None = None) -> dict[str, Venue]:
    """One CcxtVenue per enabled exchange, with credentials and endpoints of ``environment``.
    Missing credentials are LT-001 naming the variable (nothing is built)."""
    from basis_live.venues.cex import CcxtVenue
    from basis_live.venues.cex_clients import api_url_override, create_exchange, credentials_from_env

    refuse_unsupported(strategy)
    env = os.environ if env is None else env
    names = [name for name in enabled_venues(strategy) if name in CEX_VENUES]
    credentials = {name: credentials_from_env(environment, name, env) for name in names}
    timeout_ms = int(strategy.execution.venue_timeout_seconds * 1000)
    venues: dict[str, Venue] = {}
    for name in names:
        exchange = create_exchange(name, environment, credentials[name],
                                   api_url_override(environment, name, strategy.venues[name].api_url, env), timeout_ms)
        venues[name] = CcxtVenue(exchange, name, cex_symbols(strategy, name),
                                 funding_poll_seconds=strategy.execution.funding_poll_seconds)
    return venues


async def validate_live_clients(strategy: "StrategyConfig", environment: str,
                                env: Mapping[str, str] | None = None) -> list["ClientCheck"]:
    """Every client the strategy needs, checked in parallel (see ``validate_cex_client``)."""
    from basis_live.venues.cex_clients import api_url_override, validate_cex_client

    env = os.environ if env is None else env
    enabled = enabled_venues(strategy)
    jobs = [validate_cex_client(name, environment, api_url_override(environment, name, strategy.venues[name].api_url,
                                                                    env), env)
            for name in enabled if name in CEX_VENUES]
    if any(name not in CEX_VENUES for name in enabled):
        from basis_live.venues.chain_clients import validate_chain_client

        jobs.append(validate_chain_client(strategy, environment, env))
    return [check for checks in await asyncio.gather(*jobs) for check in checks]


def failed_checks(checks: list["ClientCheck"]) -> list[str]:
    """One line per failed check: "binance reachable: ConnectionRefused..."."""
    return [f"{c.client} {c.check}: {c.detail}" for c in checks if not c.ok]
