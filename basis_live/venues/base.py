"""The one interface every venue implements: paper venues now, ccxt and web3 venues later.

Design points that the live venues need, so the engine is written for them from the start:

- Everything is async: a real venue call can take seconds or hang; the engine bounds each call with
  a timeout.
- Every order carries a client order id chosen (and stored) by the engine before it is sent. A
  submit whose outcome is unknown raises ``AmbiguousOrderError``; the engine then asks the venue
  with ``fetch_order(client_order_id)``: ``None`` means confirmed absent (only then may it resend,
  with the same id), anything else is the order's real state.
- On-chain actions are orders too: on a lending venue ``buy`` supplies and ``sell`` withdraws a
  ``supply`` instrument; ``buy`` borrows and ``sell`` repays a ``debt`` instrument. One exactly-once
  path covers CEX orders and transactions.
- Amounts are Decimals rounded to the instrument's precision by ``Instrument.round_quantity``
  before they are sent; a quantity below the venue minimum is refused before sending.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Literal

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit"]
InstrumentKind = Literal["spot", "perp", "supply", "debt", "stake", "loop"]
OrderStatus = Literal["open", "partially_filled", "filled", "cancelled", "rejected"]
OPEN_STATUSES: tuple[str, ...] = ("open", "partially_filled")

ZERO = Decimal(0)


#: Contract value in USD of the BTC-margined (inverse) perps the paper venues simulate, as on Binance
#: COIN-M ("BTC/USD:BTC" = BTCUSD_PERP: 100 USD a contract; other coins 10 USD).
INVERSE_CONTRACT_USD = {"BTC": Decimal(100)}


def one_line(text: object, limit: int = 300) -> str:
    """An error text as one short line: an exchange's 502 can carry a whole HTML page."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def inverse_contract_value(symbol: str) -> Decimal | None:
    """USD value of one contract when ``symbol`` is an inverse perp ("BTC/USD:BTC": quoted in USD,
    margined and settled in the base coin), else None (linear perps, spot, lending)."""
    pair, _, settle = symbol.partition(":")
    base, _, quote = pair.partition("/")
    if quote != "USD" or settle != base:
        return None
    return INVERSE_CONTRACT_USD.get(base, Decimal(10))


class VenueError(Exception):
    """A venue call failed; the message names the venue and the reason."""


class OrderRejected(VenueError):
    """The venue refused the order (insufficient balance or margin, below minimum...). Not retried."""


class AmbiguousOrderError(VenueError):
    """The submit may or may not have reached the venue (timeout, lost response). Reconcile by
    client order id before doing anything else with this order."""


class VenueUnavailable(VenueError):
    """The venue did not answer (down, timing out, 5xx). Reads may be retried."""


@dataclass(frozen=True)
class Instrument:
    """A tradable thing on a venue, with its precision. ``symbol`` follows ccxt where it applies:
    "BTC/USDT" (spot), "BTC/USDT:USDT" (linear perp), "BTC/USD:BTC" (inverse perp: quantity in
    contracts of ``inverse_contract_value`` USD, margin and P&L in BTC); lending: "USDT" (supply) /
    "WETH" (debt)."""

    venue: str
    symbol: str
    kind: InstrumentKind
    base: str
    quote: str
    quantity_step: Decimal
    price_step: Decimal
    min_quantity: Decimal
    min_notional: Decimal

    def round_quantity(self, quantity: Decimal) -> Decimal:
        """Round down to the quantity step (never send more than was decided)."""
        steps = (abs(quantity) / self.quantity_step).to_integral_value(rounding=ROUND_DOWN)
        return (steps * self.quantity_step).copy_sign(quantity) if steps else ZERO

    def round_price(self, price: Decimal) -> Decimal:
        steps = (price / self.price_step).to_integral_value(rounding=ROUND_HALF_EVEN)
        return steps * self.price_step

    def check_minimums(self, quantity: Decimal, price: Decimal) -> str | None:
        """Why an order of this size would be refused by the venue, or None."""
        if quantity < self.min_quantity:
            return f"quantity {quantity} below {self.venue} minimum {self.min_quantity} for {self.symbol}"
        if self.min_notional and quantity * price < self.min_notional:
            return (f"notional {quantity * price:.2f} below {self.venue} minimum {self.min_notional} "
                    f"for {self.symbol}")
        return None


@dataclass(frozen=True)
class OrderRequest:
    client_order_id: str
    venue: str
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType = "market"
    price: Decimal | None = None
    reduce_only: bool = False


@dataclass(frozen=True)
class OrderState:
    """What the venue says about one order."""

    client_order_id: str
    venue: str
    symbol: str
    side: Side
    quantity: Decimal
    status: OrderStatus
    venue_order_id: str | None = None
    filled_quantity: Decimal = ZERO
    average_price: Decimal | None = None
    fee: Decimal = ZERO
    fee_asset: str | None = None
    reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True)
class Fill:
    fill_id: str
    client_order_id: str
    venue: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str
    timestamp: datetime


@dataclass(frozen=True)
class Position:
    """A position on a venue, in the instrument's base asset.

    - perp: ``quantity`` signed (short < 0), ``entry_price``, ``mark_price`` and ``unrealized_pnl``
      (in ``quote``). An inverse perp ("BTC/USD:BTC", quote "USD"): ``quantity`` in contracts and
      ``unrealized_pnl`` in the base coin (the settle asset).
    - supply / debt: ``quantity`` is the current balance (scaled x index) in ``base``, always >= 0;
      ``principal`` is what was supplied or borrowed net of withdrawals/repayments, so
      ``quantity - principal`` is the interest accrued.
    - stake: ``quantity`` in LST units.
    """

    venue: str
    symbol: str
    kind: InstrumentKind
    base: str
    quote: str
    quantity: Decimal
    entry_price: Decimal | None = None
    mark_price: Decimal | None = None
    unrealized_pnl: Decimal = ZERO
    principal: Decimal | None = None


@dataclass(frozen=True)
class LedgerEntry:
    """A balance change that is not a trade: funding, interest, gas, transfers, reward drops."""

    entry_id: str
    venue: str
    # fee: a trading fee not on the fill; reward: a seasonal reward token credited (EIGEN, ETHFI)
    kind: Literal["funding", "fee", "gas", "deposit", "withdrawal", "reward"]
    asset: str
    amount: Decimal  # signed: + received, - paid
    timestamp: datetime
    symbol: str | None = None
    price_usd: Decimal | None = None  # reward: the token's USD price at the drop


@dataclass
class VenueAccount:
    """Balances and positions read from one venue at one time. A lending venue that computes its
    own health factor (Aave's getUserAccountData) reports it in ``health_factor``: that figure, not
    one recomputed from the positions, is what the risk checks use (None: no debt or not reported)."""

    venue: str
    balances: dict[str, Decimal] = field(default_factory=dict)
    positions: list[Position] = field(default_factory=list)
    health_factor: Decimal | None = None


class Venue(abc.ABC):
    """One trading venue (an exchange account, a lending pool, a staking contract, the wallet)."""

    name: str

    @abc.abstractmethod
    async def instruments(self) -> dict[str, Instrument]:
        """The instruments this venue trades, by symbol."""

    @abc.abstractmethod
    async def fetch_account(self) -> VenueAccount:
        """Current balances (free + used, per asset) and positions."""

    @abc.abstractmethod
    async def place_order(self, request: OrderRequest) -> OrderState:
        """Submit once. Raises OrderRejected (refused, not sent again) or AmbiguousOrderError
        (outcome unknown: reconcile with fetch_order)."""

    @abc.abstractmethod
    async def fetch_order(self, client_order_id: str) -> OrderState | None:
        """The order with this client id, or None when the venue confirms it does not exist."""

    @abc.abstractmethod
    async def fetch_open_orders(self) -> list[OrderState]:
        ...

    @abc.abstractmethod
    async def cancel_order(self, client_order_id: str) -> OrderState:
        ...

    async def cancel_all_orders(self) -> list[OrderState]:
        """Cancel every open order; returns their final states."""
        return [await self.cancel_order(o.client_order_id) for o in await self.fetch_open_orders()]

    @abc.abstractmethod
    async def fetch_fills(self, since: int = 0) -> tuple[list[Fill], int]:
        """Fills after cursor ``since``; returns them and the new cursor."""

    @abc.abstractmethod
    async def fetch_ledger(self, since: int = 0) -> tuple[list[LedgerEntry], int]:
        """Non-trade balance changes after cursor ``since``; returns them and the new cursor."""

    async def close(self) -> None:
        return None
