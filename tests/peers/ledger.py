"""Venue-neutral simulation of one exchange account: instruments, a one-level book around a settable
mid price, orders, fills, fees, spot balances and one-way perpetual positions.

Each venue module (``binance_api``, ``bybit_api``, ``okx_api``) owns one ``Ledger`` and translates
its wire protocol to and from it; the ledger knows nothing of field names or error codes. It raises
``Reject`` with a neutral reason that each venue maps to its own error.

Model (deliberately small, documented so tests know what to expect):

* The book has one level each side: bid = mid - 1 tick, ask = mid + 1 tick (rounded to the tick).
  Its depth is unlimited: a market order fills completely at the touch, unless a ``partial_fills``
  fault is queued, in which case it fills that fraction and the venue kills the rest.
* A limit order that crosses the touch fills at the touch (taker); otherwise it rests and fills at
  its own price (maker) when ``set_mid`` moves the touch through it.
* Perpetuals are one-way (net) positions settled in the quote currency (USDT): cross margin,
  initial margin = notional / leverage, unrealised PnL at mid, realised PnL and fees booked to the
  wallet. Spot balances in a unified wallet are not counted as perp collateral.
* Spot buys pay the fee in the base currency, spot sells in the quote currency, perps in the quote
  currency (as all three venues do without fee-token discounts).
* Reduce-only orders fill at most the open position; the rest is killed.
* Funding is settled only when a test asks (``settle_funding``): the position pays or receives
  |position| x mid x rate in the quote currency (longs pay shorts when the rate is positive), and
  the payment is journaled as a ``FundingPayment`` (each venue serves it as its own income / bill
  row). A flat position books nothing, as on the venues.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Iterator

ZERO = Decimal(0)
FUNDING_INTERVAL_MS = 8 * 3600 * 1000


def now_ms() -> int:
    return int(time.time() * 1000)


def fmt(value: Decimal) -> str:
    """A plain decimal string, no exponent and no trailing zeros ("0.001", "60000")."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def floor_to(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(ROUND_FLOOR) * step


def ceil_to(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(ROUND_CEILING) * step


def is_multiple(value: Decimal, step: Decimal) -> bool:
    return (value / step) == (value / step).to_integral_value()


@dataclass(frozen=True)
class Instrument:
    """One market as the venue lists it. Quantities are in the venue's order unit: the base currency,
    or contracts of ``contract_size`` base units (okx swaps)."""

    venue_id: str
    symbol: str  # ccxt's unified symbol: the ledger's key (spot and perp share wire ids)
    base: str
    quote: str
    perp: bool
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    maker_fee: Decimal
    taker_fee: Decimal
    wallet: str  # the ledger wallet this market settles in
    contract_size: Decimal = Decimal(1)
    max_leverage: int = 100


@dataclass
class Fill:
    trade_id: int
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_asset: str
    maker: bool
    ts: int
    realized: Decimal = ZERO  # perps: PnL this fill realised, in the quote currency
    closed: Decimal = ZERO  # perps: the part of qty that reduced the position
    balance: Decimal = ZERO  # perps: the quote wallet balance once this fill was booked


@dataclass
class Order:
    order_id: str
    client_id: str
    inst: Instrument
    side: str  # "buy" | "sell"
    type: str  # "market" | "limit"
    qty: Decimal  # order units; for a quote-sized market buy, set when it fills
    price: Decimal | None
    reduce_only: bool
    created_ms: int
    quote_qty: Decimal | None = None  # quote-sized market buy (binance quoteOrderQty and kin)
    status: str = "new"  # new | partially_filled | filled | canceled | expired
    filled: Decimal = ZERO
    cum_quote: Decimal = ZERO
    fee: Decimal = ZERO
    fee_asset: str = ""
    updated_ms: int = 0
    fills: list[Fill] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # request fields a venue echoes back verbatim

    @property
    def is_open(self) -> bool:
        return self.status in ("new", "partially_filled")

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled if self.is_open else ZERO

    @property
    def avg_price(self) -> Decimal:
        if not self.filled:
            return ZERO
        return self.cum_quote / (self.filled * self.inst.contract_size)


@dataclass(frozen=True)
class FundingPayment:
    """One funding settlement on one position, as the account's income history records it."""

    seq: int  # 1, 2, ... per ledger: each venue derives its row ids from it
    inst: Instrument
    position: Decimal  # signed, order units, at the settlement
    mark: Decimal
    rate: Decimal
    amount: Decimal  # booked to the wallet: + received, - paid
    balance: Decimal  # the quote wallet balance once it was booked
    ts: int


@dataclass
class Position:
    qty: Decimal = ZERO  # signed, order units
    entry: Decimal = ZERO
    realized: Decimal = ZERO
    updated_ms: int = 0


class Reject(Exception):
    """The venue refuses an order. ``reason`` is one of: insufficient_balance (spot),
    insufficient_margin (perp), reduce_only, lot_size, price_filter, min_notional."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Ledger:
    """Account state of one venue. Every public method must be called with ``lock`` held: the
    server thread and the test thread share it."""

    def __init__(
        self,
        instruments: list[Instrument],
        wallets: dict[str, dict[str, Decimal]],
        mids: dict[str, Decimal],
        order_ids: Iterator[str],
        leverage: int = 10,
    ) -> None:
        self.lock = threading.RLock()
        self.instruments = {inst.symbol: inst for inst in instruments}
        self.balances = {name: dict(assets) for name, assets in wallets.items()}
        self.mid = dict(mids)
        perps = [inst.symbol for inst in instruments if inst.perp]
        self.funding_rate = {symbol: Decimal("0.0001") for symbol in perps}
        self.leverage = {symbol: leverage for symbol in perps}
        self.margin_mode = {symbol: "cross" for symbol in perps}
        self.positions = {symbol: Position() for symbol in perps}
        self.orders: list[Order] = []
        self.fundings: list[FundingPayment] = []
        self.partial_fills: list[Decimal] = []  # fault: fractions for the next taker executions
        self.forced_rejects = 0  # fault: next orders rejected for lack of funds
        self._order_ids = order_ids
        self._trade_ids = itertools.count(100001)
        self._funding_seq = itertools.count(1)

    # ---- market data -------------------------------------------------------------------------

    def bid(self, inst: Instrument) -> Decimal:
        return floor_to(self.mid[inst.symbol] - inst.tick, inst.tick)

    def ask(self, inst: Instrument) -> Decimal:
        return ceil_to(self.mid[inst.symbol] + inst.tick, inst.tick)

    def set_mid(self, symbol: str, mid: Decimal) -> None:
        """Move the book; resting limit orders the new touch crosses fill at their own price."""
        inst = self.instruments[symbol]
        self.mid[symbol] = mid
        for order in self.open_orders(inst):
            crossed = (order.side == "buy" and self.ask(inst) <= order.price) or (
                order.side == "sell" and self.bid(inst) >= order.price
            )
            if crossed:
                self._execute(order, order.remaining, order.price, maker=True)

    @staticmethod
    def next_funding_ms() -> int:
        return (now_ms() // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS

    def settle_funding(self, symbol: str, ts: int | None = None) -> Decimal:
        """Book one funding payment at mid (the mark): longs pay shorts when the rate is positive.
        Returns the amount booked to the wallet (negative = paid); zero, and nothing journaled,
        for a flat position. ``ts`` (ms) stamps the payment; now by default."""
        inst = self.instruments[symbol]
        pos = self.positions[symbol]
        if not pos.qty:
            return ZERO
        mark, rate = self.mid[symbol], self.funding_rate[symbol]
        payment = -pos.qty * inst.contract_size * mark * rate
        wallet = self.balances[inst.wallet]
        wallet[inst.quote] = wallet.get(inst.quote, ZERO) + payment
        self.fundings.append(FundingPayment(next(self._funding_seq), inst, pos.qty, mark, rate, payment,
                                            wallet[inst.quote], now_ms() if ts is None else ts))
        return payment

    # ---- queries -----------------------------------------------------------------------------

    def new_order_id(self) -> str:
        return next(self._order_ids)

    def find(self, inst: Instrument | None, order_id: str | None = None,
             client_id: str | None = None) -> Order | None:
        """The latest order with this id or client id (client ids can repeat once closed)."""
        for order in reversed(self.orders):
            if inst is not None and order.inst is not inst:
                continue
            if order_id is not None and order.order_id == order_id:
                return order
            if client_id is not None and order.client_id == client_id:
                return order
        return None

    def open_orders(self, inst: Instrument | None = None) -> list[Order]:
        return [o for o in self.orders if o.is_open and (inst is None or o.inst is inst)]

    def unrealized(self, inst: Instrument) -> Decimal:
        pos = self.positions[inst.symbol]
        return pos.qty * inst.contract_size * (self.mid[inst.symbol] - pos.entry)

    def position_margin(self, inst: Instrument) -> Decimal:
        pos = self.positions[inst.symbol]
        notional = abs(pos.qty) * inst.contract_size * self.mid[inst.symbol]
        return notional / self.leverage[inst.symbol]

    def order_margin(self, inst: Instrument) -> Decimal:
        return sum(
            (o.remaining * inst.contract_size * o.price / self.leverage[inst.symbol]
             for o in self.open_orders(inst) if o.price is not None and not o.reduce_only),
            ZERO,
        )

    def perps_in(self, wallet: str, asset: str) -> list[Instrument]:
        return [i for i in self.instruments.values()
                if i.perp and i.wallet == wallet and i.quote == asset]

    def locked(self, wallet: str, asset: str) -> Decimal:
        """Spot balance reserved by resting spot orders."""
        total = ZERO
        for order in self.open_orders():
            inst = order.inst
            if inst.perp or inst.wallet != wallet:
                continue
            if order.side == "buy" and inst.quote == asset:
                total += order.remaining * order.price
            elif order.side == "sell" and inst.base == asset:
                total += order.remaining
        return total

    def equity(self, wallet: str, asset: str) -> Decimal:
        balance = self.balances[wallet].get(asset, ZERO)
        return balance + sum((self.unrealized(i) for i in self.perps_in(wallet, asset)), ZERO)

    def initial_margin(self, wallet: str, asset: str) -> tuple[Decimal, Decimal]:
        """(position initial margin, open-order initial margin) of the perps settled in asset."""
        perps = self.perps_in(wallet, asset)
        return (sum((self.position_margin(i) for i in perps), ZERO),
                sum((self.order_margin(i) for i in perps), ZERO))

    def available(self, wallet: str, asset: str) -> Decimal:
        position_im, order_im = self.initial_margin(wallet, asset)
        return self.equity(wallet, asset) - self.locked(wallet, asset) - position_im - order_im

    # ---- orders ------------------------------------------------------------------------------

    def place(self, order: Order) -> Order:
        """Validate, check funds, record and execute what crosses. Raises ``Reject``."""
        inst = order.inst
        self._validate(order)
        if self.forced_rejects:
            self.forced_rejects -= 1
            raise Reject("insufficient_margin" if inst.perp else "insufficient_balance", "fault")
        self._check_funds(order)
        order.updated_ms = order.created_ms
        self.orders.append(order)
        touch = self.ask(inst) if order.side == "buy" else self.bid(inst)
        crosses = order.type == "market" or (
            order.price >= touch if order.side == "buy" else order.price <= touch
        )
        if crosses:
            if order.quote_qty is not None:
                order.qty = floor_to(order.quote_qty / touch, inst.step)
            wanted = order.qty
            if self.partial_fills:
                wanted = floor_to(order.qty * self.partial_fills.pop(0), inst.step)
            self._execute(order, wanted, touch, maker=False)
            if order.type == "market" and order.is_open:
                order.status = "expired"
        return order

    def cancel(self, order: Order) -> None:
        order.status = "canceled"
        order.updated_ms = now_ms()

    def _validate(self, order: Order) -> None:
        inst = order.inst
        if order.quote_qty is None:
            if order.qty < inst.min_qty or order.qty > inst.max_qty or not is_multiple(order.qty, inst.step):
                raise Reject("lot_size", f"qty {order.qty} step {inst.step} min {inst.min_qty}")
        if order.price is not None and (order.price <= 0 or not is_multiple(order.price, inst.tick)):
            raise Reject("price_filter", f"price {order.price} tick {inst.tick}")
        if order.reduce_only:
            pos = self.positions[inst.symbol].qty if inst.perp else ZERO
            if pos == 0 or (pos > 0) == (order.side == "buy"):
                raise Reject("reduce_only", f"position {pos}")
            return
        reference = order.price if order.price is not None else self.mid[inst.symbol]
        notional = order.quote_qty if order.quote_qty is not None else (
            order.qty * inst.contract_size * reference)
        if notional < inst.min_notional:
            raise Reject("min_notional", f"notional {notional} < {inst.min_notional}")

    def _check_funds(self, order: Order) -> None:
        inst = order.inst
        if order.reduce_only:
            return
        price = order.price if order.type == "limit" else (
            self.ask(inst) if order.side == "buy" else self.bid(inst))
        if inst.perp:
            notional = order.qty * inst.contract_size * price
            needed = notional / self.leverage[inst.symbol] + notional * inst.taker_fee
            if self.available(inst.wallet, inst.quote) < needed:
                raise Reject("insufficient_margin", f"needs {needed} {inst.quote}")
        elif order.side == "buy":
            needed = order.quote_qty if order.quote_qty is not None else order.qty * price
            if self.available(inst.wallet, inst.quote) < needed:
                raise Reject("insufficient_balance", f"needs {needed} {inst.quote}")
        elif self.available(inst.wallet, inst.base) < order.qty:
            raise Reject("insufficient_balance", f"needs {order.qty} {inst.base}")

    def _execute(self, order: Order, qty: Decimal, price: Decimal, maker: bool) -> None:
        inst = order.inst
        if order.reduce_only:
            qty = min(qty, abs(self.positions[inst.symbol].qty))
        if qty > 0:
            self._book_fill(order, qty, price, maker)
        order.updated_ms = now_ms()
        if order.filled >= order.qty:
            order.status = "filled"
        elif order.reduce_only:
            order.status = "expired"  # nothing left to reduce
        elif order.filled > 0:
            order.status = "partially_filled"

    def _book_fill(self, order: Order, qty: Decimal, price: Decimal, maker: bool) -> None:
        inst = order.inst
        wallet = self.balances[inst.wallet]
        rate = inst.maker_fee if maker else inst.taker_fee
        notional = qty * inst.contract_size * price
        realized = closed = ZERO
        if inst.perp:
            fee, fee_asset = notional * rate, inst.quote
            realized, closed = self._move_position(inst, qty if order.side == "buy" else -qty, price)
            wallet[inst.quote] = wallet.get(inst.quote, ZERO) + realized - fee
        elif order.side == "buy":
            fee, fee_asset = qty * rate, inst.base
            wallet[inst.base] = wallet.get(inst.base, ZERO) + qty - fee
            wallet[inst.quote] = wallet.get(inst.quote, ZERO) - notional
        else:
            fee, fee_asset = notional * rate, inst.quote
            wallet[inst.base] = wallet.get(inst.base, ZERO) - qty
            wallet[inst.quote] = wallet.get(inst.quote, ZERO) + notional - fee
        order.filled += qty
        order.cum_quote += notional
        order.fee += fee
        order.fee_asset = fee_asset
        order.fills.append(Fill(next(self._trade_ids), price, qty, fee, fee_asset, maker, now_ms(), realized,
                                closed, wallet.get(inst.quote, ZERO) if inst.perp else ZERO))

    def _move_position(self, inst: Instrument, signed: Decimal, price: Decimal) -> tuple[Decimal, Decimal]:
        """Apply a fill to the net position; return the realised PnL in the quote currency and
        the quantity (order units) that reduced the position."""
        pos = self.positions[inst.symbol]
        pos.updated_ms = now_ms()
        if pos.qty == 0 or (pos.qty > 0) == (signed > 0):
            new_qty = pos.qty + signed
            pos.entry = (abs(pos.qty) * pos.entry + abs(signed) * price) / abs(new_qty)
            pos.qty = new_qty
            return ZERO, ZERO
        direction = 1 if pos.qty > 0 else -1
        closing = min(abs(signed), abs(pos.qty))
        realized = closing * inst.contract_size * (price - pos.entry) * direction
        pos.qty += signed
        if pos.qty == 0:
            pos.entry = ZERO
        elif (pos.qty > 0) != (direction > 0):
            pos.entry = price  # flipped through zero: the rest opens at this price
        pos.realized += realized
        return realized, closing
