"""Live public market data from the exchanges through ccxt (no keys): paper trading on the real
market, with fills simulated by the paper venues.

Every refresh (at most one per ``refresh_seconds``) reads binance spot tickers for BTC and ETH and,
per perp venue, the funding rate with its mark price. The exchanges' production public endpoints are
used (real prices), unless ``BASIS_<ENV>__CEX__<VENUE>_API_URL`` points a venue elsewhere (a proxy;
the tests' loopback peer). Only exchange data is live: AAVE indices, LST rates and gas are not, so
the feed serves only modes that need nothing else (the basis modes); the service refuses the others.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from basis_live.feeds.base import BASE_ASSETS, PERP_VENUES, FeedError, MarketSnapshot, PolledFeed

#: What the snapshot carries where no live source exists (documented, never used by the modes the
#: live feed serves): neutral indices and rates.
_NEUTRAL_INDEX = {"USDT": 1.0, "WETH": 1.0, "weETH": 1.0, "wstETH": 1.0}
_ZERO_RATE = {"USDT": 0.0, "WETH": 0.0, "weETH": 0.0, "wstETH": 0.0}


class LiveFeed(PolledFeed):
    is_sample = False

    def __init__(self, environment: str = "dev", refresh_seconds: float = 5.0,
                 env: dict[str, str] | None = None, timeout_ms: int = 10_000, trading: bool = False,
                 api_urls: dict[str, str | None] | None = None) -> None:
        """``trading=False`` (paper on the real market): production public endpoints. ``trading=True``
        (a live run): the endpoints of ``environment`` (testnets in dev / staging), so prices come
        from where the orders fill. ``api_urls`` are the strategy's per-venue overrides."""
        from basis_live.venues.cex_clients import api_url_override, create_exchange

        env = dict(os.environ if env is None else env)
        self.refresh_seconds = refresh_seconds
        # The engine's market loop polls no faster than the data changes.
        self.poll_seconds = refresh_seconds
        self.clients: dict[str, Any] = {}
        routing = environment if trading else "prod"
        for venue in PERP_VENUES:
            configured = (api_urls or {}).get(venue)
            exchange = create_exchange(venue, routing, None, api_url_override(environment, venue, configured, env),
                                       timeout_ms)
            exchange.timeout_on_exit = 0
            self.clients[venue] = exchange
        self.start = datetime.now(timezone.utc)
        self.end = None
        self.label = (f"LIVE MARKET DATA ({environment} endpoints of binance, bybit, okx via ccxt)" if trading
                      else "LIVE PUBLIC DATA (binance, bybit, okx via ccxt; fills simulated)")

    async def _read(self, ts: datetime) -> MarketSnapshot:
        spot: dict[str, float] = {"USDT": 1.0}
        marks: dict[str, dict[str, float]] = {venue: {} for venue in PERP_VENUES}
        funding: dict[str, dict[str, float]] = {venue: {} for venue in PERP_VENUES}
        try:
            for asset in BASE_ASSETS:
                ticker = await self.clients["binance"].fetch_ticker(f"{asset}/USDT")
                spot[asset] = float(ticker["last"])
            for venue, client in self.clients.items():
                for asset in BASE_ASSETS:
                    symbol = f"{asset}/USDT:USDT"
                    rate = await client.fetch_funding_rate(symbol)
                    mark = rate.get("markPrice")
                    if mark is None:
                        mark = (await client.fetch_ticker(symbol)).get("last")
                    marks[venue][asset] = float(mark)
                    funding[venue][asset] = float(rate["fundingRate"])
        except Exception as exc:  # noqa: BLE001 - any failure means no fresh market: say which
            raise FeedError(f"live market data unavailable: {type(exc).__name__}: {str(exc)[:160]}") from None
        spot["weETH"] = spot["wstETH"] = spot["ETH"]
        return MarketSnapshot(
            timestamp=ts, spot=spot, perp_mark=marks, funding_rate=funding, lending_index=_NEUTRAL_INDEX,
            lending_apr=_ZERO_RATE, borrow_index=_NEUTRAL_INDEX, borrow_apr=_ZERO_RATE,
            lst_rate={"weETH": 1.0, "wstETH": 1.0}, gas_price_gwei=0.0, source="live",
        )

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()
