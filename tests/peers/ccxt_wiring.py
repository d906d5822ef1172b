"""Real ccxt async exchange objects (``ccxt.async_support.binance`` / ``bybit`` / ``okx``) pointed at
an ``ExchangePeer``.

The recipe (see shared/GOTCHAS.md, "ccxt against a loopback server"):

1. construct with the peer's test keys (okx also needs the passphrase as ``password``),
   ``has.fetchCurrencies`` off (with keys, load_markets would call private currency endpoints),
   ``options.fetchMarkets.types`` trimmed to spot + linear perps, and for okx
   ``options.createOrder = "privatePostTradeOrder"`` (ccxt's default is the batch endpoint);
2. ``set_sandbox_mode(True)`` first: it swaps ``urls['api']`` for the testnet URLs (and makes okx
   send ``x-simulated-trading: 1``);
3. then rewrite the scheme and host of every ``urls['api']`` entry to the peer's, keeping paths
   (bybit and okx hosts are ``{hostname}`` templates), and refuse to hand out an object with any
   URL left that is not the peer's, so a test can never reach a real venue.

The rate limiter is off by default (on loopback it only adds seconds); keep it on in production.
"""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import ccxt.async_support as ccxt_async

from .exchange_server import ExchangePeer
from .venue_common import Credentials

MARKET_TYPES = {"binance": ["spot", "linear"], "bybit": ["spot", "linear"], "okx": ["spot", "swap"]}


def point_at(url: str, base: str) -> str:
    """``url`` with the scheme and host of ``base`` and its own path."""
    target = urlsplit(base)
    parts = urlsplit(url)
    return urlunsplit((target.scheme, target.netloc, parts.path, parts.query, parts.fragment))


def make_exchange(peer: ExchangePeer, venue: str, *, timeout_ms: int = 3000,
                  credentials: Credentials | None = None, options: dict[str, Any] | None = None,
                  enable_rate_limit: bool = False) -> Any:
    """A ready ccxt async exchange for ``venue`` on ``peer``; the caller must ``await close()``."""
    creds = credentials or peer.credentials
    venue_options: dict[str, Any] = {"fetchMarkets": {"types": MARKET_TYPES[venue]}}
    if venue == "okx":
        venue_options["createOrder"] = "privatePostTradeOrder"
    config: dict[str, Any] = {
        "apiKey": creds.api_key,
        "secret": creds.secret,
        "enableRateLimit": enable_rate_limit,
        "timeout": timeout_ms,
        "has": {"fetchCurrencies": False},
        "options": {**venue_options, **(options or {})},
    }
    if venue == "okx":
        config["password"] = creds.passphrase
    exchange = getattr(ccxt_async, venue)(config)
    # close() sleeps timeout_on_exit (250 ms) to let TLS transports wind down; plain HTTP on
    # loopback has none, and the sleep would dominate every test.
    exchange.timeout_on_exit = 0
    exchange.set_sandbox_mode(True)
    base = peer.url(venue)
    exchange.urls["api"] = {name: point_at(url, base) for name, url in exchange.urls["api"].items()}
    stray = [url for url in exchange.urls["api"].values() if not url.startswith(base)]
    if stray:
        raise RuntimeError(f"{venue}: URLs not rewritten to the peer: {stray}")
    return exchange


@contextlib.asynccontextmanager
async def connected(peer: ExchangePeer, venue: str, **kwargs: Any) -> AsyncIterator[Any]:
    """``make_exchange`` that closes the exchange's HTTP session on the way out."""
    exchange = make_exchange(peer, venue, **kwargs)
    try:
        yield exchange
    finally:
        await exchange.close()
