"""A CEX account (binance, bybit or okx) behind the ``Venue`` interface, through a ccxt async exchange.

The caller builds the ``ccxt.async_support`` exchange object (credentials, sandbox, URLs, rate
limiter) and hands it over with our venue name and the symbols to trade ("BTC/USDT" spot,
"BTC/USDT:USDT" linear perp). This module owns what the engine needs on top of ccxt:

- **Units.** The engine speaks base units (BTC) everywhere. okx swaps trade in contracts
  (``contractSize`` base units each): quantities are divided by the contract size on the way out
  and multiplied back on the way in. What is sent is ``amount_to_precision`` /
  ``price_to_precision`` of the Decimal; a quantity that is not a multiple of the venue step is
  refused before sending (the engine rounds with ``Instrument.round_quantity`` first).
- **Client order ids.** Ours goes out in ccxt's unified ``clientOrderId`` param, which ccxt maps to
  binance ``newClientOrderId``, bybit ``orderLinkId`` and okx ``clOrdId`` (and then injects no
  broker id of its own). Orders are read and cancelled by that id.
- **Submits are never retried here.** A refusal (the venue answered with an error) is
  ``OrderRejected``; anything that may have reached the venue without a clear answer (timeout,
  connection lost, 5xx, 429, unparsable answer, "execution status unknown" codes) is
  ``AmbiguousOrderError``, and the engine reconciles with ``fetch_order``. A "duplicate client
  order id" refusal means an order with our id already exists: the venue looks it up and returns
  its state instead of calling it rejected (a resend after a lagging "not found" must not turn the
  live original into a "rejected" row).
- **Reads are retried** (tenacity): exponential backoff with jitter, a few attempts, at least the
  venue's ``Retry-After`` on a 429; then ``VenueUnavailable``. Cancels are idempotent and retried
  the same way.
- **Errors by code.** After a URL rewrite ccxt binance no longer recognises its futures hostnames
  and raises plain ``ExchangeError`` for futures codes (-2019 margin, -2022 reduce-only, -4116
  duplicate id): the refusal reason is classified from the venue code in the error body.

Account view (``fetch_account``): balances are wallet balances, without unrealised PnL (the
engine adds each position's uPnL itself): binance = spot wallet totals (free + locked) plus the
USDⓈ-M futures wallet's ``walletBalance``, summed per asset into one ``VenueAccount``; bybit (unified
account) = per-coin ``walletBalance``; okx = per-currency ``cashBal``. Positions are the perps
among the configured symbols, signed, in base units.

Fills (``fetch_fills``): the venues' trade-history endpoints are not used (the test peer has none);
fills are derived from the filled amounts of the orders this venue object has seen (placed,
fetched or cancelled by client id): each increase of an order's filled quantity is one ``Fill``
(quantity and price from the change of filled and filled x average, fee from the change of the
fee), id ``<client id>:<filled after>``. Open orders are polled by ``fetch_fills``. The cursor is
the index into this object's fill journal (in-process, like the paper venues).

Funding (``fetch_ledger``): the funding payments of the configured perps, read with ccxt's unified
``fetch_funding_history(symbol, since)`` one symbol at a time (binance ``GET /fapi/v1/income``
incomeType FUNDING_FEE; bybit ``GET /v5/execution/list`` execType Funding; okx ``GET
/api/v5/account/bills-archive`` type 8, to which we add ``instId`` and ``begin``, as ccxt sends
neither). Each is a ``LedgerEntry`` of kind "funding": asset the settlement currency (USDT),
amount signed (+ received, - paid) from the venue's raw field (binance ``income``, okx ``balChg``;
bybit's ``execFee`` is a fee, positive when paid, so it is negated: ccxt 4.5 passes it through
unchanged, the opposite sign of its binance and okx amounts), symbol the ccxt unified symbol, id
``<venue>-funding-<the venue's id>`` (tranId, execId, billId).

- **Polling.** The venue is asked at most once per ``funding_poll_seconds`` (default 60 s;
  settlements come every 8 hours), except on the first call. A call in between returns what the
  journal holds.
- **Windows and the cursor.** Per symbol, a millisecond high-water mark: the time the last
  successful poll started. The next poll asks from one hour (``FUNDING_OVERLAP_MS``) before it,
  so a row the venue lists late is still found; the overlap comes back again and is dropped by
  entry id. The first poll asks from when this venue object was created: funding settled before
  belongs to positions this process did not hold yet (or was reported by an earlier process; the
  engine's ledger keeps no ids across restarts). New entries go to an in-process journal, like the
  fills; the cursor is the index into it, so each entry is returned exactly once.
- **binance USDⓈ-M commissions** come the same way, from the income history's COMMISSION rows
  (``fee`` entries, negative = paid): binance's futures order reads carry no commission.
- **Failures.** A symbol whose read fails (after the usual retries) is logged and asked again at
  the next poll from the same high-water mark: its payments come late, never lost, and a failing
  funding endpoint does not fail ``fetch_ledger`` (the engine reads fills and ledger together and
  would drop both).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Awaitable, Callable, TypeVar

import ccxt
from tenacity import (AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential,
                      wait_random)

from basis_live.venues.base import (
    ZERO,
    AmbiguousOrderError,
    Fill,
    Instrument,
    LedgerEntry,
    OrderRejected,
    OrderRequest,
    OrderState,
    Position,
    Venue,
    VenueAccount,
    VenueError,
    VenueUnavailable,
    one_line,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: ccxt errors worth another try on a read: the venue did not answer, or answered "later".
TRANSIENT = (ccxt.NetworkError, ccxt.BadResponse)
RATE_LIMITED = (ccxt.DDoSProtection, ccxt.RateLimitExceeded)
#: ccxt's precision modes (ccxt.base.decimal_to_precision).
DECIMAL_PLACES, SIGNIFICANT_DIGITS, TICK_SIZE = 2, 3, 4
#: How often ``fetch_ledger`` asks the venues for funding payments (seconds). Funding settles every
#: 8 hours; asking more often only spends rate-limit weight (binance's income history weighs 30).
DEFAULT_FUNDING_POLL_SECONDS = 60.0
#: Each funding poll asks again from this long (ms) before the previous poll started, for rows a
#: venue lists with a delay; rows seen twice are dropped by entry id.
FUNDING_OVERLAP_MS = 3600 * 1000
#: A funding poll's window never starts more than this (ms) before the time it advances to: bybit
#: answers at most 7 days from ``startTime``; after a longer outage the polls catch up in steps.
FUNDING_MAX_WINDOW_MS = 6 * 24 * 3600 * 1000
#: Rows asked for per funding request (binance allows 1000, bybit and okx 100).
FUNDING_PAGE = {"binance": 1000, "bybit": 100, "okx": 100}


class UnknownSymbolError(VenueError):
    """A configured symbol the exchange does not list (or lists as a market we cannot trade)."""


@dataclass(frozen=True)
class RetrySettings:
    """How reads (and cancels) are retried. Submits never are."""

    attempts: int = 4  # tries in all, the first included
    initial_wait: float = 0.5  # seconds before the first retry; doubles on each retry...
    max_wait: float = 8.0  # ...up to this
    jitter: float = 0.5  # plus uniform(0, jitter) seconds
    max_retry_after: float = 30.0  # a 429's Retry-After is honoured up to this many seconds
    #: fetch_order asks again after this long before answering "absent" (venues index a new order
    #: with a small lag; a false "absent" makes the engine resend). 0 disables the second look.
    absence_recheck_delay: float = 0.5


@dataclass(frozen=True)
class _Dialect:
    """What differs between the venues beyond ccxt's unified API."""

    client_id_param: str  # how fetch_order / cancel_order take our client id
    fetch_id: str | None = None  # the id argument of fetch_order when looking up by client id
    fetch_params: dict[str, Any] = field(default_factory=dict)
    cancel_all: str = "endpoint"  # "endpoint": cancel_all_orders(symbol); "batch": cancel_orders(ids)
    insufficient: frozenset[str] = frozenset()
    reduce_only: frozenset[str] = frozenset()
    duplicate: frozenset[str] = frozenset()
    #: codes whose documented meaning is "execution status unknown": a submit may have executed.
    ambiguous: frozenset[str] = frozenset()


DIALECTS: dict[str, _Dialect] = {
    "binance": _Dialect(
        "origClientOrderId",
        insufficient=frozenset({"-2019", "-2018", "-2010"}),  # -2010 also covers spot duplicates: message decides
        reduce_only=frozenset({"-2022"}),
        duplicate=frozenset({"-4116"}),
        ambiguous=frozenset({"-1006", "-1007"}),
    ),
    "bybit": _Dialect(
        # ccxt bybit always sends orderId: "" lets orderLinkId decide; acknowledged silences its
        # "last 500 orders only" guard (see tests/test_exchange_peer.py).
        "orderLinkId", fetch_id="", fetch_params={"acknowledged": True},
        insufficient=frozenset({"110007", "110004", "110012", "110044", "110045", "170131"}),
        reduce_only=frozenset({"110017"}),
        duplicate=frozenset({"110072", "170141"}),
        ambiguous=frozenset({"10000", "10016"}),
    ),
    "okx": _Dialect(
        "clOrdId", cancel_all="batch",  # ccxt okx has no cancelAllOrders
        insufficient=frozenset({"51008"}),
        reduce_only=frozenset({"51205"}),
        duplicate=frozenset({"51016"}),
        ambiguous=frozenset({"50001", "50004", "50013", "50026"}),
    ),
}


# ---- small helpers -------------------------------------------------------------------------------


def _dec(value: Any) -> Decimal | None:
    """A ccxt number (float, int or string) as a Decimal; floats through their shortest repr."""
    if value is None or value == "":
        return None
    try:
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        return None


def _norm(value: Decimal) -> Decimal:
    """Without trailing zeros ("0.010" -> "0.01"), integers without exponent."""
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral_value() else normal


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ms_to_datetime(ms: Any) -> datetime:
    if isinstance(ms, (int, float)) and ms > 0:
        return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return datetime.now(timezone.utc)


def error_details(exc: BaseException) -> tuple[str | None, str]:
    """(venue error code, venue message) from a ccxt exception. ccxt puts the raw body in the
    message ("binance {"code": -2019, "msg": ...}"); okx order errors carry sCode/sMsg per row."""
    text = str(exc)
    code: Any = None
    message: Any = None
    brace = text.find("{")
    if brace >= 0:
        try:
            body = json.loads(text[brace:])
        except ValueError:
            body = None
        if isinstance(body, dict):
            code = body.get("code", body.get("retCode"))
            message = body.get("msg") or body.get("retMsg")
            rows = body.get("data")
            row = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else {}
            if row.get("sCode") not in (None, "", "0"):
                code, message = row["sCode"], row.get("sMsg") or message
    return (None if code is None else str(code)), str(message or text)


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for key, value in dict(headers).items():
        if str(key).lower() == name.lower():
            return str(value)
    return None


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # HTTP-date form
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class _Seen:
    """What this venue object last knew of one of our orders (for fills)."""

    symbol: str
    filled: Decimal = ZERO  # base units
    cost: Decimal = ZERO  # filled x average, quote units
    fee: Decimal = ZERO
    fee_asset: str | None = None
    open: bool = True


class CcxtVenue(Venue):
    """One exchange account through a ccxt async exchange object (binance, bybit or okx).

    ``funding_poll_seconds``: ``fetch_ledger`` asks the venue for funding payments at most this
    often (default ``DEFAULT_FUNDING_POLL_SECONDS``, 60 s); 0 asks on every call."""

    def __init__(self, exchange: Any, name: str, symbols: list[str] | tuple[str, ...],
                 retry: RetrySettings | None = None, *,
                 funding_poll_seconds: float = DEFAULT_FUNDING_POLL_SECONDS) -> None:
        if not symbols:
            raise ValueError(f"{name}: no symbols to trade")
        self.exchange = exchange
        self.name = name
        self.symbols = list(dict.fromkeys(symbols))
        self.retry = retry or RetrySettings()
        self.dialect = DIALECTS.get(exchange.id) or _Dialect(
            "clientOrderId", cancel_all="endpoint" if exchange.has.get("cancelAllOrders") else "each")
        # initial x 2^(n-1) capped at max_wait, plus uniform(0, jitter) (tenacity >= 8.2 spells it so;
        # its wait_exponential_jitter renamed ``initial`` in 9.x)
        self._backoff = (wait_exponential(multiplier=self.retry.initial_wait, max=self.retry.max_wait)
                         + wait_random(0, self.retry.jitter))
        self._markets_lock = asyncio.Lock()
        self._ready = False
        self._instruments: dict[str, Instrument] | None = None
        self._seen: dict[str, _Seen] = {}  # our orders by client id
        self._fills: list[Fill] = []
        # funding (see the module docstring): the journal, its ids, per-symbol high-water marks
        self.funding_poll_seconds = funding_poll_seconds
        self._ledger: list[LedgerEntry] = []
        self._ledger_ids: set[str] = set()
        self._funding_hwm: dict[str, int] = {}  # perp symbol -> ms the venue was last asked up to
        self._funding_floor_ms = _now_ms()  # payments before this venue object existed are not ours
        self._funding_polled_at: float | None = None  # time.monotonic() of the last poll
        self._funding_lock = asyncio.Lock()

    # ---- retrying reads ------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        delay = self._backoff(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RATE_LIMITED):
            # ccxt keeps the headers of the last response (the 429) on the exchange object.
            retry_after = _parse_retry_after(_header(getattr(self.exchange, "last_response_headers", None),
                                                     "Retry-After"))
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.retry.max_retry_after))
        return delay

    async def _read(self, what: str, call: Callable[[], Awaitable[T]],
                    passthrough: tuple[type[BaseException], ...] = (),
                    refused: type[VenueError] = VenueUnavailable, attempts: int | None = None) -> T:
        """``call()`` with retries on transient errors. Exceptions in ``passthrough`` are raised as
        they are; a venue refusal becomes ``refused``; transient errors left after the last
        attempt become ``VenueUnavailable``."""
        tries = max(1, attempts or self.retry.attempts)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            first_line = str(exc).splitlines()[0][:200] if str(exc) else ""
            log.info("%s: %s failed (%s: %s); attempt %d of %d, next in %.2fs", self.name, what,
                     type(exc).__name__, first_line, state.attempt_number, tries, wait)

        try:
            async for attempt in AsyncRetrying(stop=stop_after_attempt(tries), wait=self._wait,
                                               retry=retry_if_exception_type(TRANSIENT),
                                               before_sleep=before_sleep, reraise=True):
                with attempt:
                    return await call()
        except passthrough:
            raise
        except TRANSIENT as exc:
            raise VenueUnavailable(f"{self.name}: {what} failed after {tries} attempt(s): "
                                   f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        except ccxt.BaseError as exc:
            raise refused(f"{self.name}: {what} refused: {type(exc).__name__}: {str(exc)[:300]}") from exc
        except Exception as exc:  # a bug in a parser must not look like a healthy venue
            raise VenueUnavailable(f"{self.name}: {what} failed: {type(exc).__name__}: {one_line(exc)}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- markets and instruments ---------------------------------------------------------------

    async def _ensure_ready(self) -> None:
        if self._ready:
            return
        async with self._markets_lock:
            if self._ready:
                return
            await self._read("load_markets", lambda: self.exchange.load_markets())
            if self.exchange.id == "bybit":
                # ccxt bybit asks which account type it talks to before its first private call,
                # create_order included: ask now, so a submit is one request.
                await self._read("account type", lambda: self.exchange.is_unified_enabled())
            self._ready = True

    def _market(self, symbol: str) -> dict[str, Any]:
        if symbol not in self.symbols:
            raise UnknownSymbolError(f"{self.name}: {symbol} is not one of the symbols this venue trades "
                                     f"({', '.join(self.symbols)})")
        market = (self.exchange.markets or {}).get(symbol)
        if market is None:
            raise UnknownSymbolError(f"{self.name}: {self.exchange.id} lists no market {symbol}")
        return market

    @staticmethod
    def _contract_size(market: dict[str, Any]) -> Decimal:
        return (_dec(market.get("contractSize")) or Decimal(1)) if market.get("contract") else Decimal(1)

    def _step(self, precision: Any, symbol: str, what: str) -> Decimal:
        value = _dec(precision)
        if value is None:
            raise UnknownSymbolError(f"{self.name}: {symbol} has no {what} precision")
        mode = self.exchange.precisionMode
        if mode == TICK_SIZE:
            return value
        if mode == DECIMAL_PLACES:
            return Decimal(1).scaleb(-int(value))
        raise UnknownSymbolError(f"{self.name}: precision mode {mode} (significant digits) is not supported")

    async def instruments(self) -> dict[str, Instrument]:
        if self._instruments is not None:
            return dict(self._instruments)
        await self._ensure_ready()
        instruments = {}
        for symbol in self.symbols:
            market = self._market(symbol)
            if market.get("spot"):
                kind = "spot"
            elif market.get("swap") and market.get("linear"):
                kind = "perp"
            else:
                raise UnknownSymbolError(f"{self.name}: {symbol} is a {market.get('type')} market; only spot and "
                                         "linear perpetuals are supported")
            size = self._contract_size(market)
            quantity_step = _norm(self._step(market["precision"].get("amount"), symbol, "amount") * size)
            price_step = _norm(self._step(market["precision"].get("price"), symbol, "price"))
            limits = market.get("limits") or {}
            min_amount = _dec((limits.get("amount") or {}).get("min"))
            min_quantity = _norm(max(min_amount * size, quantity_step)) if min_amount else quantity_step
            min_notional = _dec((limits.get("cost") or {}).get("min")) or ZERO
            instruments[symbol] = Instrument(self.name, symbol, kind, market["base"], market["quote"], quantity_step,
                                             price_step, min_quantity, _norm(min_notional) if min_notional else ZERO)
        self._instruments = instruments
        return dict(instruments)

    # ---- account ---------------------------------------------------------------------------------

    async def fetch_account(self) -> VenueAccount:
        await self._ensure_ready()
        balances: dict[str, Decimal] = {}

        def add(asset: str, amount: Decimal | None) -> None:
            if amount:
                balances[asset] = balances.get(asset, ZERO) + amount

        if self.exchange.id == "binance":
            spot = await self._read("fetch_balance (spot)", lambda: self.exchange.fetch_balance())
            for asset, total in (spot.get("total") or {}).items():
                add(asset, _dec(total))
            futures = await self._read("fetch_balance (USDⓈ-M)", lambda: self.exchange.fetch_balance({"type": "swap"}))
            for asset, amount in self._wallet_balances(futures).items():
                add(asset, amount)
        else:
            balance = await self._read("fetch_balance", lambda: self.exchange.fetch_balance())
            for asset, amount in self._wallet_balances(balance).items():
                add(asset, amount)
        positions = await self._positions()
        return VenueAccount(self.name, {asset: _norm(amount) for asset, amount in balances.items()}, positions)

    def _wallet_balances(self, balance: dict[str, Any]) -> dict[str, Decimal]:
        """Per-asset wallet balance without unrealised PnL, from the venue's raw answer where ccxt's
        ``total`` includes uPnL (binance futures marginBalance, okx eq); ccxt's total otherwise."""
        info = balance.get("info") or {}
        rows: list[tuple[Any, Any]] = []
        if self.exchange.id == "binance" and isinstance(info, dict) and "assets" in info:
            rows = [(a.get("asset"), a.get("walletBalance")) for a in info["assets"]]
        elif self.exchange.id == "bybit" and isinstance(info, dict):
            for account in ((info.get("result") or {}).get("list") or []):
                rows += [(c.get("coin"), c.get("walletBalance")) for c in account.get("coin") or []]
        elif self.exchange.id == "okx" and isinstance(info, dict):
            for account in info.get("data") or []:
                rows += [(d.get("ccy"), d.get("cashBal")) for d in account.get("details") or []]
        parsed = {str(asset): _dec(amount) for asset, amount in rows if asset}
        if rows and all(v is not None for v in parsed.values()):
            return {asset: amount for asset, amount in parsed.items() if amount is not None}
        return {asset: _dec(total) or ZERO for asset, total in (balance.get("total") or {}).items()}

    async def _positions(self) -> list[Position]:
        perps = [s for s in self.symbols if self._market(s).get("contract")]
        if not perps:
            return []
        raw = await self._read("fetch_positions", lambda: self.exchange.fetch_positions(perps))
        positions = []
        for row in raw:
            symbol = row.get("symbol")
            contracts = _dec(row.get("contracts"))
            if symbol not in perps or not contracts:
                continue
            market = self._market(symbol)
            sign = -1 if row.get("side") == "short" else 1
            size = _dec(row.get("contractSize")) or self._contract_size(market)
            positions.append(Position(
                self.name, symbol, "perp", market["base"], market["quote"], _norm(sign * abs(contracts) * size),
                entry_price=_dec(row.get("entryPrice")), mark_price=_dec(row.get("markPrice")),
                unrealized_pnl=_dec(row.get("unrealizedPnl")) or ZERO))
        return positions

    # ---- orders: submit ------------------------------------------------------------------------

    async def place_order(self, request: OrderRequest) -> OrderState:
        cid = request.client_order_id
        try:
            await self._ensure_ready()
            market = self._market(request.symbol)
        except VenueError as exc:  # nothing was sent
            raise OrderRejected(f"{self.name}: {cid} not sent: {one_line(exc)}") from exc
        symbol = request.symbol
        amount, price = self._wire_amounts(request, market)
        params: dict[str, Any] = {"clientOrderId": cid}
        if request.reduce_only and market.get("contract"):
            params["reduceOnly"] = True  # spot has no reduce-only (binance spot refuses the field)
        try:
            order = await self.exchange.create_order(symbol, request.order_type, request.side, amount, price, params)
        except ccxt.ExchangeError as exc:
            return await self._refused(request, exc)
        except asyncio.CancelledError:
            raise  # the engine's timeout: it treats the submit as unknown and reconciles
        except Exception as exc:  # NetworkError (timeout, connection lost, 5xx, 429), BadResponse, bugs
            raise AmbiguousOrderError(f"{self.name}: submit of {cid} may or may not have reached the venue: "
                                      f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        self._track(cid, symbol)
        state, when = self._state(order, market, cid, request)
        if order.get("status") is None:
            # bybit and okx answer a new order with its ids only: read it back (one attempt: the
            # engine reconciles open orders later anyway).
            try:
                fetched = await self._fetch_on(symbol, cid, attempts=1)
            except (VenueError, ccxt.OrderNotFound) as exc:
                log.info("%s: %s accepted; read-back failed (%s), reporting it open", self.name, cid, exc)
                fetched = None
            if fetched is not None:
                state, when = fetched
        self._observe(state, when)
        return state

    def _wire_amounts(self, request: OrderRequest, market: dict[str, Any]) -> tuple[float, float | None]:
        """The order's amount (contracts on okx swaps) and price as ccxt will send them, rounded to
        the venue's precision; refuses what does not survive the rounding unchanged."""
        symbol, cid = request.symbol, request.client_order_id
        size = self._contract_size(market)
        if request.quantity <= 0:
            raise OrderRejected(f"{self.name}: {cid} quantity {request.quantity} is not positive")
        try:
            text = self.exchange.amount_to_precision(symbol, float(request.quantity / size))
            price_text = None
            if request.order_type == "limit":
                if request.price is None or request.price <= 0:
                    raise OrderRejected(f"{self.name}: {cid} limit order without a price")
                price_text = self.exchange.price_to_precision(symbol, float(request.price))
            elif request.order_type != "market":
                raise OrderRejected(f"{self.name}: {cid} order type {request.order_type} not supported")
        except ccxt.BaseError as exc:
            raise OrderRejected(f"{self.name}: {cid} not sent: {one_line(exc)}") from exc
        if Decimal(text) * size != request.quantity:
            step = self._step(market["precision"].get("amount"), symbol, "amount") * size
            raise OrderRejected(f"{self.name}: {cid} quantity {request.quantity} {market['base']} is not a multiple "
                                f"of {_norm(step)}")
        return float(text), None if price_text is None else float(price_text)

    def _classify(self, exc: ccxt.BaseError) -> tuple[str, str | None, str]:
        """(kind, code, message): kind is duplicate | reduce_only | insufficient | ambiguous | refused."""
        code, message = error_details(exc)
        lowered = message.lower()
        d = self.dialect
        if code in d.ambiguous:
            return "ambiguous", code, message
        # binance spot's -2010 covers both "Duplicate order sent." and balance refusals: the message decides
        if isinstance(exc, ccxt.DuplicateOrderId) or code in d.duplicate or "duplicate order" in lowered \
                or "duplicate client" in lowered or "duplicated clordid" in lowered:
            return "duplicate", code, message
        if code in d.reduce_only:  # by code only: binance's min-notional message mentions "reduce only"
            return "reduce_only", code, message
        if isinstance(exc, ccxt.InsufficientFunds) or code in d.insufficient or "insufficient" in lowered:
            return "insufficient", code, message
        return "refused", code, message

    async def _refused(self, request: OrderRequest, exc: ccxt.ExchangeError) -> OrderState:
        cid = request.client_order_id
        kind, code, message = self._classify(exc)
        detail = f"{code} {message}" if code else message
        if kind == "ambiguous":
            raise AmbiguousOrderError(f"{self.name}: submit of {cid}: execution status unknown ({detail})") from exc
        if kind == "duplicate":
            # The venue holds an order with our id: that order is this one (our ids are unique).
            try:
                existing = await self._find(cid, prefer=request.symbol)
            except VenueError as lookup:
                raise AmbiguousOrderError(f"{self.name}: {cid} refused as a duplicate client order id ({detail}) "
                                          f"and the lookup failed: {lookup}") from exc
            if existing is None:
                raise OrderRejected(f"{self.name}: duplicate client order id {cid} ({detail})") from exc
            log.warning("%s: %s refused as a duplicate; the venue already has it as %s", self.name, cid,
                        existing[0].status)
            self._track(cid, existing[0].symbol)
            self._observe(*existing)
            return self._with_known_fee(existing[0])
        label = {"reduce_only": "reduce-only order would not reduce the position",
                 "insufficient": "insufficient balance or margin",
                 "refused": f"order refused ({type(exc).__name__})"}[kind]
        raise OrderRejected(f"{self.name}: {label}: {detail}") from exc

    # ---- orders: reads -------------------------------------------------------------------------

    def _state(self, order: dict[str, Any], market: dict[str, Any], cid: str | None = None,
               request: OrderRequest | None = None) -> tuple[OrderState, datetime]:
        """A ccxt order as our OrderState (base units), and when it last traded."""
        size = self._contract_size(market)
        amount, filled = _dec(order.get("amount")), _dec(order.get("filled"))
        quantity = amount * size if amount is not None else (request.quantity if request else ZERO)
        filled_quantity = filled * size if filled is not None else ZERO
        ccxt_status = order.get("status")
        if ccxt_status == "closed":
            status = "filled"
        elif ccxt_status in ("canceled", "cancelled", "expired"):
            status = "cancelled"
        elif ccxt_status == "rejected":
            status = "rejected"
        else:  # open, or unknown yet (an id-only create answer): possibly live
            status = "partially_filled" if filled_quantity > 0 else "open"
        fees = order.get("fees") or ([order["fee"]] if order.get("fee") else [])
        fee, fee_asset = ZERO, None
        for entry in fees:
            cost = _dec((entry or {}).get("cost"))
            if cost is None:
                continue
            currency = entry.get("currency")
            if fee_asset is None:
                fee_asset = currency
            if currency == fee_asset:
                fee += cost
        average = _dec(order.get("average"))
        reason = None
        if status == "rejected":
            info = order.get("info") or {}
            reason = info.get("rejectReason") or info.get("sMsg") if isinstance(info, dict) else None
        state = OrderState(
            client_order_id=cid or order.get("clientOrderId") or "",
            venue=self.name,
            symbol=market["symbol"],
            side=order.get("side") or (request.side if request else "buy"),
            quantity=_norm(quantity),
            status=status,  # type: ignore[arg-type]
            venue_order_id=None if order.get("id") in (None, "") else str(order["id"]),
            filled_quantity=_norm(filled_quantity),
            average_price=None if average is None or not filled_quantity else _norm(average),
            fee=_norm(fee),
            fee_asset=fee_asset,
            reason=reason,
        )
        return state, _ms_to_datetime(order.get("lastTradeTimestamp") or order.get("timestamp"))

    async def _fetch_raw(self, symbol: str, cid: str | None = None, order_id: str | None = None) -> dict[str, Any]:
        d = self.dialect
        if cid is not None:
            return await self.exchange.fetch_order(d.fetch_id, symbol, {d.client_id_param: cid, **d.fetch_params})
        return await self.exchange.fetch_order(order_id, symbol, dict(d.fetch_params))

    async def _fetch_on(self, symbol: str, cid: str | None = None, order_id: str | None = None,
                        attempts: int | None = None) -> tuple[OrderState, datetime] | None:
        """The order on one market, None on OrderNotFound; VenueUnavailable otherwise."""
        try:
            order = await self._read(f"fetch_order {cid or order_id} on {symbol}",
                                     lambda: self._fetch_raw(symbol, cid, order_id),
                                     passthrough=(ccxt.OrderNotFound,), attempts=attempts)
        except ccxt.OrderNotFound:
            return None
        return self._state(order, self._market(symbol), cid)

    async def _find(self, cid: str, prefer: str | None = None) -> tuple[OrderState, datetime] | None:
        """Look for our order on every market this venue trades (the one we sent it to first).
        None only if every market says it does not exist."""
        known = prefer or (self._seen[cid].symbol if cid in self._seen else None)
        candidates = list(dict.fromkeys(([known] if known else []) + self.symbols))
        failures: list[VenueError] = []
        for symbol in candidates:
            try:
                found = await self._fetch_on(symbol, cid)
            except VenueError as exc:
                failures.append(exc)
                continue
            if found is not None:
                return found
        if failures:
            raise VenueUnavailable(f"{self.name}: cannot confirm whether {cid} exists: {failures[0]}")
        return None

    async def fetch_order(self, client_order_id: str) -> OrderState | None:
        await self._ensure_ready()
        found = await self._find(client_order_id)
        if found is None and self.retry.absence_recheck_delay > 0:
            await asyncio.sleep(self.retry.absence_recheck_delay)
            found = await self._find(client_order_id)
        if found is None:
            if client_order_id in self._seen:
                self._seen[client_order_id].open = False
            return None
        self._track(client_order_id, found[0].symbol)
        self._observe(*found)
        return self._with_known_fee(found[0])

    async def _open_on(self, symbol: str) -> list[tuple[OrderState, datetime]]:
        market = self._market(symbol)
        rows = await self._read(f"fetch_open_orders {symbol}", lambda: self.exchange.fetch_open_orders(symbol))
        return [self._state(row, market) for row in rows]

    async def fetch_open_orders(self) -> list[OrderState]:
        await self._ensure_ready()
        states = []
        for symbol in self.symbols:
            for state, when in await self._open_on(symbol):
                self._observe(state, when)
                states.append(self._with_known_fee(state))
        return states

    # ---- orders: cancel ------------------------------------------------------------------------

    async def _cancel_raw(self, symbol: str, cid: str | None, order_id: str | None) -> None:
        """One cancel request (retried on transient errors); an order already closed or gone is
        not an error here: the caller reads the final state."""
        if cid:
            call = lambda: self.exchange.cancel_order(None, symbol, {self.dialect.client_id_param: cid})  # noqa: E731
        else:
            call = lambda: self.exchange.cancel_order(order_id, symbol)  # noqa: E731
        try:
            await self._read(f"cancel_order {cid or order_id} on {symbol}", call,
                             passthrough=(ccxt.OrderNotFound,), refused=OrderRejected)
        except ccxt.OrderNotFound:
            pass

    async def cancel_order(self, client_order_id: str) -> OrderState:
        await self._ensure_ready()
        cid = client_order_id
        symbol = self._seen[cid].symbol if cid in self._seen else None
        if symbol is None:
            found = await self._find(cid)
            if found is None:
                raise OrderRejected(f"{self.name}: no order {cid}")
            self._track(cid, found[0].symbol)
            if not found[0].is_open:
                self._observe(*found)
                return self._with_known_fee(found[0])
            symbol = found[0].symbol
        await self._cancel_raw(symbol, cid, None)
        final = await self._find(cid, prefer=symbol)
        if final is None:
            raise OrderRejected(f"{self.name}: no order {cid}")
        self._observe(*final)
        return self._with_known_fee(final[0])

    async def cancel_all_orders(self) -> list[OrderState]:
        """Every open order on the symbols this venue trades (ours or not): one cancel-all request
        per symbol (binance, bybit) or batches of 20 ids (okx); then each order's final state is
        read back, and one still open is cancelled on its own."""
        await self._ensure_ready()
        results: list[OrderState] = []
        for symbol in self.symbols:
            listed = [state for state, _ in await self._open_on(symbol)]
            if not listed:
                continue
            try:
                if self.dialect.cancel_all == "endpoint":
                    await self._read(f"cancel_all_orders {symbol}", lambda: self.exchange.cancel_all_orders(symbol),
                                     passthrough=(ccxt.OrderNotFound,), refused=OrderRejected)
                elif self.dialect.cancel_all == "batch":
                    ids = [s.venue_order_id for s in listed if s.venue_order_id]
                    for start in range(0, len(ids), 20):
                        chunk = ids[start:start + 20]
                        await self._read(f"cancel_orders {symbol}", lambda: self.exchange.cancel_orders(chunk, symbol),
                                         passthrough=(ccxt.OrderNotFound,), refused=OrderRejected)
            except ccxt.OrderNotFound:
                pass  # they closed meanwhile: the read-back below tells
            except OrderRejected as exc:  # e.g. a batch with one already-filled order: go one by one
                log.info("%s: bulk cancel on %s refused (%s); cancelling one by one", self.name, symbol, exc)
            for state in listed:
                results.append(await self._final_after_cancel(symbol, state))
        return results

    async def _final_after_cancel(self, symbol: str, listed: OrderState) -> OrderState:
        cid = listed.client_order_id or None
        final = await self._fetch_on(symbol, cid, None if cid else listed.venue_order_id)
        if final is not None and final[0].is_open:
            await self._cancel_raw(symbol, cid, listed.venue_order_id)
            final = await self._fetch_on(symbol, cid, None if cid else listed.venue_order_id)
        if final is None:  # no longer found: report what was listed; the engine's reconcile settles it
            return listed
        self._observe(*final)
        return self._with_known_fee(final[0])

    # ---- fills, ledger ---------------------------------------------------------------------------

    def _track(self, cid: str, symbol: str) -> None:
        """Remember one of our orders (placed, or asked for by client id) for fills and lookups."""
        if cid and cid not in self._seen:
            self._seen[cid] = _Seen(symbol)

    def _observe(self, state: OrderState, when: datetime) -> None:
        """Record an increase of one of our orders' filled quantity as a Fill."""
        seen = self._seen.get(state.client_order_id)
        if seen is None:
            return  # not ours (or no client id): the store only takes fills of our orders
        if state.filled_quantity > seen.filled:
            delta = state.filled_quantity - seen.filled
            cost = (state.average_price or ZERO) * state.filled_quantity
            price = (cost - seen.cost) / delta if state.average_price is not None else ZERO
            fee = max(state.fee - seen.fee, ZERO)
            market = self._market(state.symbol)
            self._fills.append(Fill(
                fill_id=f"{state.client_order_id}:{state.filled_quantity}",
                client_order_id=state.client_order_id, venue=self.name, symbol=state.symbol, side=state.side,
                quantity=_norm(delta), price=_norm(price.quantize(Decimal("1e-10"))), fee=_norm(fee),
                fee_asset=state.fee_asset or market["quote"], timestamp=when))
            seen.filled, seen.cost = state.filled_quantity, cost
        if state.fee > seen.fee:
            seen.fee, seen.fee_asset = state.fee, state.fee_asset
        seen.open = state.is_open

    def _with_known_fee(self, state: OrderState) -> OrderState:
        """binance's order reads carry no commission (only a spot create answer does): keep the
        fee seen earlier rather than report it as zero."""
        seen = self._seen.get(state.client_order_id)
        if seen is not None and seen.fee > state.fee:
            return replace(state, fee=seen.fee, fee_asset=seen.fee_asset)
        return state

    async def fetch_fills(self, since: int = 0) -> tuple[list[Fill], int]:
        """New fills of our orders after cursor ``since`` (an index into this object's journal).
        Open orders we know of are refreshed first: listed open orders by symbol, then a read of
        each one that has left the open list."""
        waiting = {cid: seen for cid, seen in self._seen.items() if seen.open}
        if waiting:
            await self._ensure_ready()
            still_open: set[str] = set()
            for symbol in sorted({seen.symbol for seen in waiting.values()}):
                for state, when in await self._open_on(symbol):
                    self._observe(state, when)
                    still_open.add(state.client_order_id)
            for cid, seen in waiting.items():
                if cid in still_open:
                    continue
                found = await self._fetch_on(seen.symbol, cid)
                if found is None:
                    seen.open = False
                else:
                    self._observe(*found)
        return self._fills[since:], len(self._fills)

    def _funding_due(self) -> bool:
        return (self._funding_polled_at is None
                or time.monotonic() - self._funding_polled_at >= self.funding_poll_seconds)

    async def fetch_ledger(self, since: int = 0) -> tuple[list[LedgerEntry], int]:
        """Funding payments of our perps after cursor ``since`` (an index into this object's
        journal). The venue is asked first unless it was asked less than ``funding_poll_seconds``
        ago; a read that fails is logged and retried at the next poll (module docstring)."""
        if self._funding_due():
            async with self._funding_lock:
                if self._funding_due():  # not polled meanwhile by a concurrent call
                    await self._poll_funding()
        return self._ledger[since:], len(self._ledger)

    async def _poll_funding(self) -> None:
        started = _now_ms()
        try:
            await self._ensure_ready()
            perps = [(symbol, self._market(symbol)) for symbol in self.symbols]
        except VenueError as exc:
            log.warning("%s: funding payments not read (%s); asking again at the next poll", self.name, exc)
            perps = []
        for symbol, market in perps:
            if not (market.get("swap") and market.get("linear")):
                continue
            try:
                await self._poll_funding_of(symbol, market, started)
            except VenueError as exc:
                log.warning("%s: funding payments of %s not read (%s); asking again at the next poll",
                            self.name, symbol, exc)
        self._funding_polled_at = time.monotonic()

    async def _poll_funding_of(self, symbol: str, market: dict[str, Any], started: int) -> None:
        """Journal the funding payments of one perp listed since its high-water mark (less the
        overlap), then move the mark to when this poll started."""
        hwm = self._funding_hwm.get(symbol, self._funding_floor_ms)
        since = max(self._funding_floor_ms, hwm - FUNDING_OVERLAP_MS)
        exchange_id = self.exchange.id
        page = FUNDING_PAGE.get(exchange_id, 100)
        limit: int | None = page
        params: dict[str, Any] = {}
        if exchange_id == "bybit":
            # ccxt sends its limit as ``size``, which v5 ignores (its page size is ``limit``, default 50)
            limit, params = None, {"limit": page}
        elif exchange_id == "okx":
            # ccxt's okx fetch_funding_history sends neither an instrument nor a start time: it reads
            # the latest 100 funding bills of all USDT swaps and filters them by symbol and time itself
            params = {"instId": market["id"], "begin": str(since)}
        rows = await self._read(f"fetch_funding_history {symbol}",
                                lambda: self.exchange.fetch_funding_history(symbol, since, limit, params))
        if len(rows) >= page:
            log.warning("%s: a full page of %d funding rows for %s since %d: older ones may be missing",
                        self.name, len(rows), symbol, since)
        for row in sorted(rows, key=lambda r: r.get("timestamp") or 0):
            if row.get("symbol") != symbol:  # not expected (the request names the symbol), not ours
                continue
            entry = self._funding_entry(row, symbol, market)
            if entry is None:
                log.warning("%s: funding row not understood, skipped: %s", self.name, str(row.get("info"))[:300])
                continue
            if row["timestamp"] < self._funding_floor_ms or entry.entry_id in self._ledger_ids:
                continue
            self._ledger_ids.add(entry.entry_id)
            self._ledger.append(entry)
        if exchange_id == "binance":
            await self._poll_binance_commissions(symbol, market, since)
        self._funding_hwm[symbol] = max(hwm, min(started, since + FUNDING_MAX_WINDOW_MS))

    async def _poll_binance_commissions(self, symbol: str, market: dict[str, Any], since: int) -> None:
        """binance USDⓈ-M order reads carry no commission (only a spot create answer does): the
        futures fees come from the income history's COMMISSION rows, as ``fee`` ledger entries
        (negative = paid), so the P&L attribution sees every fee the wallet paid."""
        params = {"symbol": market["id"], "incomeType": "COMMISSION", "startTime": since,
                  "limit": FUNDING_PAGE["binance"]}
        rows = await self._read(f"income COMMISSION {symbol}", lambda: self.exchange.fapiPrivateGetIncome(params))
        if len(rows) >= FUNDING_PAGE["binance"]:
            log.warning("%s: a full page of commission rows for %s since %d: older ones may be missing",
                        self.name, symbol, since)
        for row in sorted(rows, key=lambda r: int(r.get("time") or 0)):
            amount, when, tran_id = _dec(row.get("income")), int(row.get("time") or 0), row.get("tranId")
            entry_id = f"{self.name}-fee-{tran_id}"
            if amount is None or not tran_id or when < self._funding_floor_ms or entry_id in self._ledger_ids:
                continue
            self._ledger_ids.add(entry_id)
            self._ledger.append(LedgerEntry(entry_id=entry_id, venue=self.name, kind="fee",
                                            asset=str(row.get("asset") or market["settle"]), amount=_norm(amount),
                                            timestamp=_ms_to_datetime(when), symbol=symbol))

    def _funding_entry(self, row: dict[str, Any], symbol: str, market: dict[str, Any]) -> LedgerEntry | None:
        """A ccxt funding history row as a LedgerEntry (amount + received), None if unusable. The
        amount comes from the venue's own field, not ccxt's float ``amount``, whose sign differs
        by venue (bybit: the fee, positive when paid)."""
        info = row.get("info") if isinstance(row.get("info"), dict) else {}
        exchange_id = self.exchange.id
        asset = row.get("code")
        if exchange_id == "binance":
            amount = _dec(info.get("income"))
        elif exchange_id == "bybit":
            fee = _dec(info.get("execFee"))
            amount = None if fee is None else -fee
            asset = market.get("settle")  # ccxt names every non-inverse funding row "USDT"
        elif exchange_id == "okx":  # as ccxt: the balance change, else the position balance change
            amount = _dec(info.get("balChg")) or _dec(info.get("posBalChg"))
        else:
            amount = _dec(row.get("amount"))
        venue_id, timestamp = row.get("id"), row.get("timestamp")
        if amount is None or venue_id in (None, "") or not isinstance(timestamp, int) or timestamp <= 0:
            return None
        return LedgerEntry(entry_id=f"{self.name}-funding-{venue_id}", venue=self.name, kind="funding",
                           asset=str(asset or market.get("settle") or market["quote"]), amount=_norm(amount),
                           timestamp=_ms_to_datetime(timestamp), symbol=symbol)

    async def close(self) -> None:
        await self.exchange.close()
