"""A local exchange server for tests: binance, bybit and okx REST on 127.0.0.1, one ephemeral port
per venue, served by aiohttp on an event loop in a background thread so synchronous pytest
fixtures can start and stop it (well under a second).

Each venue's protocol lives in its own module (``binance_api``, ``bybit_api``, ``okx_api``) over a
venue-neutral ``ledger.Ledger``; this module owns the sockets, the request log, fault injection
and the Python control API the tests drive:

    with ExchangePeer() as peer:
        peer.url("okx")                                  # "http://127.0.0.1:PORT"
        peer.set_price("okx", "BTC/USDT:USDT", 61000)    # moves the book, fills resting orders
        peer.settle_funding("okx", "BTC/USDT:USDT")      # books funding, listed in the bills
        peer.drop_response("bybit", op="create_order")   # accept-then-drop, once
        peer.requests("bybit", op="create_order")        # what reached the venue

Faults, as they look on the wire:

* ``drop_response``: the order (or whatever the op does) is executed, then the response is lost:
  ``how="close"`` aborts the TCP connection (client: server disconnected), ``how="stall"`` holds
  the response for ``stall`` seconds, past the client's timeout.
* ``rate_limit``: HTTP 429 with ``Retry-After`` and the venue's own rate-limit body (binance
  code -1003, bybit retCode 10006 plus its X-Bapi-Limit-* headers, okx code 50011); not executed.
* ``server_errors``: a burst of 5xx with a gateway's HTML page (as a load balancer in front of the
  venue sends); not executed unless ``executed=True`` (Binance documents 5xx as "execution status
  UNKNOWN").
* ``partial_fill``: the next taker executions fill only a fraction; the venue kills a market
  order's rest and rests a limit order's.
* ``reject_for_funds``: the next orders are refused with the venue's insufficient balance/margin
  error.
* ``venue_down``: ``mode="refuse"`` closes the listening socket and resets open connections
  (connection refused); ``mode="503"`` answers every request with a 503 page. ``venue_up`` undoes it.

Every request is logged (venue, op, method, path, params, status, fault) whether or not it was
answered; ``op`` is the endpoint's short name from the venue module's route table.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web

from .binance_api import BinanceApi
from .bybit_api import BybitApi
from .ledger import Order
from .okx_api import OkxApi
from .venue_common import ApiRequest, Credentials, Response, VenueApi

VENUE_APIS: dict[str, type[VenueApi]] = {"binance": BinanceApi, "bybit": BybitApi, "okx": OkxApi}
REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Temporarily Unavailable",
           504: "Gateway Time-out"}


def gateway_page(status: int) -> Response:
    title = f"{status} {REASONS.get(status, 'Server Error')}"
    return Response(status, f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
                            f"<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n")


@dataclass
class LoggedRequest:
    venue: str
    op: str
    method: str
    path: str
    params: dict[str, Any]
    json: Any
    ts: float
    status: int | None = None  # None: no response reached the client
    fault: str | None = None


@dataclass
class FaultRule:
    venue: str
    kind: str  # drop | rate_limit | server_error
    ops: frozenset[str] | None  # None: every endpoint
    remaining: int
    options: dict[str, Any] = field(default_factory=dict)

    def matches(self, venue: str, op: str) -> bool:
        return self.remaining > 0 and self.venue == venue and (self.ops is None or op in self.ops)


class ExchangePeer:
    """The three venues on loopback. Not reusable after ``stop``."""

    def __init__(self, credentials: Credentials | None = None, host: str = "127.0.0.1") -> None:
        self.credentials = credentials or Credentials()
        self.host = host
        self.apis: dict[str, VenueApi] = {name: cls(self.credentials) for name, cls in VENUE_APIS.items()}
        self.ports: dict[str, int] = {}
        self._lock = threading.Lock()
        self._log: list[LoggedRequest] = []
        self._faults: list[FaultRule] = []
        self._down: dict[str, str] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="exchange-peer", daemon=True)
        self._runners: dict[str, web.AppRunner] = {}
        self._sites: dict[str, web.SockSite] = {}
        self._stopping: asyncio.Event | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ExchangePeer:
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> ExchangePeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, venue: str) -> str:
        return f"http://{self.host}:{self.ports[venue]}"

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _start(self) -> None:
        self._stopping = asyncio.Event()
        for venue in self.apis:
            async def handle(http: web.Request, venue: str = venue) -> web.StreamResponse:
                return await self._handle(venue, http)

            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
            await runner.setup()
            self._runners[venue] = runner
            await self._listen(venue)

    async def _listen(self, venue: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.ports.get(venue, 0)))
        self.ports[venue] = sock.getsockname()[1]
        site = web.SockSite(self._runners[venue], sock)
        await site.start()
        self._sites[venue] = site

    async def _stop(self) -> None:
        self._stopping.set()
        for runner in self._runners.values():
            await runner.cleanup()

    # ---- request handling --------------------------------------------------------------------

    async def _handle(self, venue: str, http: web.Request) -> web.StreamResponse:
        api = self.apis[venue]
        request = await self._read(http)
        route = api.route(request.method, request.path)
        entry = LoggedRequest(venue, route.op if route else "unknown", request.method, request.path,
                              request.params, request.json, time.time())
        with self._lock:
            self._log.append(entry)
            down = self._down.get(venue)
            rule = None if down else next((r for r in self._faults if r.matches(venue, entry.op)), None)
            if rule is not None:
                rule.remaining -= 1
                entry.fault = rule.kind
                self._faults = [r for r in self._faults if r.remaining > 0]
        if down == "refuse":  # a kept-alive connection from before the listener closed
            entry.fault = "venue_down"
            return self._abort(http)
        if down == "503":
            entry.fault = "venue_down"
            return self._send(entry, gateway_page(503))
        if rule is not None and rule.kind == "rate_limit":
            return self._send(entry, api.rate_limited(rule.options["retry_after"]))
        if rule is not None and rule.kind == "server_error" and not rule.options["executed"]:
            return self._send(entry, gateway_page(rule.options["status"]))
        response = api.respond(request, route) if route else api.not_found(request)
        if rule is not None and rule.kind == "server_error":
            return self._send(entry, gateway_page(rule.options["status"]))
        if rule is not None and rule.kind == "drop":
            if rule.options["how"] == "close":
                return self._abort(http)
            try:
                await asyncio.wait_for(self._stopping.wait(), rule.options["stall"])
            except asyncio.TimeoutError:
                pass
        return self._send(entry, response)

    @staticmethod
    def _abort(http: web.Request) -> web.Response:
        """Reset the connection; the response returned is never sent."""
        if http.transport is not None:
            http.transport.abort()
        return web.Response(status=503)

    @staticmethod
    async def _read(http: web.Request) -> ApiRequest:
        body = await http.text()
        query_string = http.raw_path.partition("?")[2]
        params: dict[str, Any] = dict(urllib.parse.parse_qsl(query_string, keep_blank_values=True))
        parsed: Any = None
        if body and http.content_type == "application/json":
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                params.update(parsed)
        elif body:
            params.update(urllib.parse.parse_qsl(body, keep_blank_values=True))
        return ApiRequest(http.method, http.path, query_string, body, http.headers, params, parsed)

    @staticmethod
    def _send(entry: LoggedRequest, response: Response) -> web.Response:
        entry.status = response.status
        if isinstance(response.payload, str):
            return web.Response(status=response.status, text=response.payload, content_type="text/html",
                                headers=response.headers)
        return web.Response(status=response.status, text=json.dumps(response.payload),
                            content_type="application/json", headers=response.headers)

    # ---- market and account control ----------------------------------------------------------

    def set_price(self, venue: str, symbol: str, price: Decimal | float | str) -> None:
        """Move the mid of ``symbol`` (ccxt symbol); resting limit orders it crosses fill."""
        ledger = self.apis[venue].ledger
        with ledger.lock:
            ledger.set_mid(symbol, Decimal(str(price)))

    def set_funding_rate(self, venue: str, symbol: str, rate: Decimal | float | str) -> None:
        ledger = self.apis[venue].ledger
        with ledger.lock:
            ledger.funding_rate[symbol] = Decimal(str(rate))

    def settle_funding(self, venue: str, symbol: str, at_ms: int | None = None) -> Decimal:
        """Book one funding payment on the position in ``symbol`` at the current mid and funding
        rate; returns the amount booked (+ received). The venue lists it in its income history
        (binance ``/fapi/v1/income``, bybit ``/v5/execution/list``, okx ``/api/v5/account/bills``
        and ``bills-archive``), stamped ``at_ms`` (default now). A flat position books nothing."""
        ledger = self.apis[venue].ledger
        with ledger.lock:
            return ledger.settle_funding(symbol, at_ms)

    def set_balance(self, venue: str, asset: str, amount: Decimal | float | str,
                    wallet: str | None = None) -> None:
        """Set a wallet balance. Wallets: binance "spot" / "futures", bybit "unified",
        okx "trading"; the default is the venue's first wallet."""
        ledger = self.apis[venue].ledger
        with ledger.lock:
            ledger.balances[wallet or next(iter(ledger.balances))][asset] = Decimal(str(amount))

    def balance(self, venue: str, asset: str, wallet: str | None = None) -> Decimal:
        ledger = self.apis[venue].ledger
        with ledger.lock:
            return ledger.balances[wallet or next(iter(ledger.balances))].get(asset, Decimal(0))

    def position(self, venue: str, symbol: str) -> Decimal:
        """Signed position in the venue's order units (contracts on okx)."""
        ledger = self.apis[venue].ledger
        with ledger.lock:
            return ledger.positions[symbol].qty

    def leverage(self, venue: str, symbol: str) -> int:
        ledger = self.apis[venue].ledger
        with ledger.lock:
            return ledger.leverage[symbol]

    def orders(self, venue: str, client_id: str | None = None) -> list[Order]:
        ledger = self.apis[venue].ledger
        with ledger.lock:
            return [o for o in ledger.orders if client_id is None or o.client_id == client_id]

    # ---- faults ------------------------------------------------------------------------------

    def _add_rule(self, venue: str, kind: str, op: str | tuple[str, ...] | None, times: int,
                  **options: Any) -> None:
        ops = None if op is None else frozenset([op] if isinstance(op, str) else op)
        with self._lock:
            self._faults.append(FaultRule(venue, kind, ops, times, options))

    def drop_response(self, venue: str, op: str | tuple[str, ...] | None = "create_order", times: int = 1,
                      how: str = "close", stall: float = 2.0) -> None:
        """Execute the request, then lose the response (``how``: "close" or "stall")."""
        if how not in ("close", "stall"):
            raise ValueError(how)
        self._add_rule(venue, "drop", op, times, how=how, stall=stall)

    def rate_limit(self, venue: str, op: str | tuple[str, ...] | None = None, times: int = 1,
                   retry_after: int = 1) -> None:
        self._add_rule(venue, "rate_limit", op, times, retry_after=retry_after)

    def server_errors(self, venue: str, op: str | tuple[str, ...] | None = None, times: int = 3,
                      status: int = 503, executed: bool = False) -> None:
        self._add_rule(venue, "server_error", op, times, status=status, executed=executed)

    def partial_fill(self, venue: str, fraction: Decimal | float | str = "0.5", times: int = 1) -> None:
        ledger = self.apis[venue].ledger
        with ledger.lock:
            ledger.partial_fills.extend([Decimal(str(fraction))] * times)

    def reject_for_funds(self, venue: str, times: int = 1) -> None:
        ledger = self.apis[venue].ledger
        with ledger.lock:
            ledger.forced_rejects += times

    def venue_down(self, venue: str, mode: str = "refuse") -> None:
        if mode not in ("refuse", "503"):
            raise ValueError(mode)
        with self._lock:
            previous, self._down[venue] = self._down.get(venue), mode
        if mode == "refuse" and previous != "refuse":
            self._call(self._sites.pop(venue).stop())
        elif mode == "503" and previous == "refuse":
            self._call(self._listen(venue))

    def venue_up(self, venue: str) -> None:
        with self._lock:
            mode = self._down.pop(venue, None)
        if mode == "refuse":
            self._call(self._listen(venue))

    def clear_faults(self) -> None:
        """Drop pending fault rules and queued ledger faults, and bring every venue back up."""
        with self._lock:
            self._faults.clear()
        for venue, api in self.apis.items():
            self.venue_up(venue)
            with api.ledger.lock:
                api.ledger.partial_fills.clear()
                api.ledger.forced_rejects = 0

    # ---- request log -------------------------------------------------------------------------

    def requests(self, venue: str | None = None, op: str | None = None) -> list[LoggedRequest]:
        with self._lock:
            return [e for e in self._log if venue in (None, e.venue) and op in (None, e.op)]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()
