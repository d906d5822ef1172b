"""Exactly-once order submission, venue-agnostic.

Every order is written to the store as ``pending_submit`` with our client order id before it is
sent. A submit is never blindly retried: when its outcome is unknown (timeout, lost response) the
venue is asked for the order by client id; only a confirmed absence allows one resubmit with the
same id. Orders still unknown stay ``unknown`` in the store and block new decisions until a later
reconcile settles them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Callable

from basis_live.store import Store
from basis_live.venues.base import (
    AmbiguousOrderError,
    Fill,
    LedgerEntry,
    Instrument,
    OrderRejected,
    OrderRequest,
    OrderState,
    Venue,
    VenueError,
    one_line,
)

#: Order statuses that mean "may still be live on the venue".
UNSETTLED = ("pending_submit", "unknown", "open", "partially_filled")
#: Consecutive failed calls after which a venue counts as degraded (LT-004 in the risk report).
DEGRADED_AFTER = 3


@dataclass
class SubmitResult:
    client_order_id: str
    status: str  # filled | open | partially_filled | rejected | unknown | skipped
    reason: str | None = None


#: Tries of a cancel-all per venue at a stop, and the waits between them (seconds).
CANCEL_ATTEMPTS = 3
CANCEL_RETRY_SECONDS = (1.0, 3.0)


def _reason(exc: BaseException) -> str:
    """A venue error as one short line (an exchange's 503 can carry a whole HTML page)."""
    return one_line(exc) or type(exc).__name__


def cancel_failures(cancelled: dict[str, int]) -> list[str]:
    """Venues whose cancel-all failed (count -1): their open orders may still be live."""
    return [name for name, count in cancelled.items() if count < 0]


class OrderManager:
    def __init__(
        self,
        run_id: str,
        venues: dict[str, Venue],
        store: Store,
        now: Callable[[], datetime],
        call_timeout: float | None,
        event: Callable[..., None],
    ) -> None:
        self.run_id = run_id
        self.venues = venues
        self.store = store
        self.now = now
        self.call_timeout = call_timeout
        self.event = event
        self.instruments: dict[str, dict[str, Instrument]] = {}
        self._seq = itertools.count(1)
        self.failures: dict[str, int] = {name: 0 for name in venues}
        self.filled_orders = 0
        self._fill_cursor: dict[str, int] = {name: 0 for name in venues}
        self._ledger_cursor: dict[str, int] = {name: 0 for name in venues}
        #: This run's possibly-live orders as last read from the store; None after any order write.
        #: Only this manager writes the run's orders, so between its writes the store's answer
        #: cannot change (a tick with nothing in flight then costs no query).
        self._unsettled_rows: list[dict] | None = None
        # Where new fills and ledger entries go besides the store (the P&L attribution).
        self.on_fill: Callable[[Fill], None] = lambda fill: None
        self.on_ledger: Callable[[LedgerEntry], None] = lambda entry: None

    async def load_instruments(self) -> None:
        for name, venue in self.venues.items():
            self.instruments[name] = await venue.instruments()

    def degraded_venues(self) -> list[str]:
        return [name for name, count in self.failures.items() if count >= DEGRADED_AFTER]

    async def _call(self, venue: str, coro):  # type: ignore[no-untyped-def]
        timeout = self.call_timeout
        if timeout is not None:
            # A venue whose one order is many steps (an on-chain leverage loop: dozens of
            # transactions, each bounded by its own receipt timeout) says how long a call may take.
            longer = getattr(self.venues[venue], "call_timeout_seconds", None)
            if longer is not None:
                timeout = max(timeout, longer)
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation. None (a
        # backtest's in-process venues) needs no timer at all.
        bound = asyncio.timeout(timeout) if timeout is not None else contextlib.nullcontext()
        try:
            async with bound:
                result = await coro
        except (asyncio.TimeoutError, VenueError):
            self.failures[venue] += 1
            raise
        self.failures[venue] = 0
        return result

    def next_client_order_id(self) -> str:
        # Unique across runs (run id) and within a run (sequence); short enough for every venue
        # (binance 36, okx 32, bybit 36 characters).
        return f"bl{self.run_id}{next(self._seq):06d}"

    def below_minimum(self, venue: str, symbol: str, quantity: Decimal, price: Decimal) -> str | None:
        """Why an order of ``quantity`` (rounded to the venue's step) at ``price`` would not be sent
        (a venue minimum, or nothing left after rounding); None when it would."""
        instrument = self.instruments[venue].get(symbol)
        if instrument is None:
            return f"{venue} has no instrument {symbol}"
        quantity = instrument.round_quantity(quantity)
        return "quantity rounds to zero" if quantity <= 0 else instrument.check_minimums(quantity, price)

    async def submit(
        self,
        venue: str,
        symbol: str,
        side: str,
        quantity: Decimal,
        *,
        order_type: str,
        price: Decimal | None,
        reduce_only: bool,
        purpose: str,
        mark: Decimal,
    ) -> SubmitResult:
        instrument = self.instruments[venue].get(symbol)
        if instrument is None:
            return SubmitResult("", "skipped", f"{venue} has no instrument {symbol}")
        quantity = instrument.round_quantity(quantity)
        if price is not None:
            price = instrument.round_price(price)
        problem = self.below_minimum(venue, symbol, quantity, price or mark)
        if problem:
            return SubmitResult("", "skipped", problem)
        cid = self.next_client_order_id()
        self._unsettled_rows = None
        self.store.insert_order(
            client_order_id=cid, run_id=self.run_id, venue=venue, instrument=symbol, side=side,
            order_type=order_type, quantity=str(quantity), price=None if price is None else str(price),
            reduce_only=reduce_only, purpose=purpose, sim_time=self.now(),
        )
        request = OrderRequest(cid, venue, symbol, side, quantity, order_type, price, reduce_only)  # type: ignore[arg-type]
        return await self._send(request)

    async def _send(self, request: OrderRequest, resend: bool = False) -> SubmitResult:
        cid = request.client_order_id
        try:
            state = await self._call(request.venue, self.venues[request.venue].place_order(request))
        except OrderRejected as exc:
            self._unsettled_rows = None
            self.store.update_order(cid, status="rejected", reason=str(exc))
            self.event("order.rejected", f"{cid} {request.side} {request.quantity} {request.symbol} on "
                       f"{request.venue} rejected: {_reason(exc)}", level="warning")
            return SubmitResult(cid, "rejected", str(exc))
        except (AmbiguousOrderError, asyncio.TimeoutError, VenueError) as exc:
            reason = str(exc) or "submit timed out"
            self._unsettled_rows = None
            self.store.update_order(cid, status="unknown", reason=reason)
            self.event("order.unknown", f"{cid} outcome unknown ({reason}); reconciling by client order id",
                       level="warning")
            return await self._reconcile_after_ambiguous(request, resend)
        self._record_state(state)
        return SubmitResult(cid, state.status)

    async def _reconcile_after_ambiguous(self, request: OrderRequest, resent: bool) -> SubmitResult:
        cid = request.client_order_id
        try:
            state = await self._call(request.venue, self.venues[request.venue].fetch_order(cid))
        except (asyncio.TimeoutError, VenueError) as exc:
            return SubmitResult(cid, "unknown", f"reconcile failed: {_reason(exc)}")
        if state is None:
            if resent:
                return SubmitResult(cid, "unknown", "absent after resend")
            self.event("order.resend", f"{cid} confirmed absent on {request.venue}; resending with the same id")
            return await self._send(request, resend=True)
        self._record_state(state)
        self.event("order.reconciled", f"{cid} found on {request.venue} as {state.status}")
        return SubmitResult(cid, state.status)

    def _record_state(self, state: OrderState) -> None:
        self._unsettled_rows = None
        self.store.update_order(
            state.client_order_id, status=state.status, venue_order_id=state.venue_order_id,
            filled_quantity=str(state.filled_quantity),
            average_price=None if state.average_price is None else str(state.average_price),
            fee=str(state.fee), fee_asset=state.fee_asset, reason=state.reason,
        )

    async def reconcile_unsettled(self) -> int:
        """Refresh every order the store holds as possibly live; returns how many stay unsettled."""
        unsettled = 0
        for row in self.unsettled_orders():
            venue = row["venue"]
            try:
                state = await self._call(venue, self.venues[venue].fetch_order(row["client_order_id"]))
            except (asyncio.TimeoutError, VenueError):
                unsettled += 1
                continue
            if state is None:
                self._unsettled_rows = None
                if row["status"] in ("pending_submit", "unknown"):
                    # Confirmed never reached the venue: it is safe to forget, the mode re-decides.
                    self.store.update_order(row["client_order_id"], status="rejected",
                                            reason="confirmed absent on venue after unknown submit")
                else:
                    self.store.update_order(row["client_order_id"], status="cancelled", reason="no longer on venue")
                continue
            if state.status != row["status"] or state.filled_quantity != Decimal(row["filled_quantity"]):
                self._record_state(state)
            if state.is_open:
                unsettled += 1
        return unsettled

    async def cancel_all(self, attempts: int = CANCEL_ATTEMPTS) -> dict[str, int]:
        """Cancel every open order on every venue (in parallel); returns the cancelled count per
        venue, -1 for a venue whose cancel still failed after ``attempts`` tries (a second after the
        first, then three: a 503 or a rate limit usually passes)."""

        async def one(name: str, venue: Venue) -> tuple[str, int]:
            try:
                states = await self._call(name, venue.cancel_all_orders())
            except (asyncio.TimeoutError, VenueError) as exc:
                self.event("order.cancel_failed", f"cancel-all on {name} failed: {_reason(exc)}", level="error")
                return name, -1
            for state in states:
                self._record_state(state)
            return name, len(states)

        results = dict(await asyncio.gather(*(one(n, v) for n, v in self.venues.items())))
        for attempt in range(1, attempts):
            failed = [name for name, count in results.items() if count < 0]
            if not failed:
                break
            await asyncio.sleep(CANCEL_RETRY_SECONDS[min(attempt, len(CANCEL_RETRY_SECONDS)) - 1])
            results.update(await asyncio.gather(*(one(n, self.venues[n]) for n in failed)))
        # Orders we sent but the venue never listed as open are settled by a reconcile.
        await self.reconcile_unsettled()
        return results

    async def cancel_stale(self, max_age_sim_seconds: float) -> int:
        """Cancel open orders older than ``max_age_sim_seconds`` of simulated time."""
        now = self.now()
        cancelled = 0
        for row in self.unsettled_orders():
            if row["status"] not in ("open", "partially_filled"):
                continue
            created = datetime.fromisoformat(row["sim_time"].replace("Z", "+00:00"))
            if (now - created).total_seconds() < max_age_sim_seconds:
                continue
            try:
                state = await self._call(row["venue"], self.venues[row["venue"]].cancel_order(row["client_order_id"]))
            except (asyncio.TimeoutError, VenueError):
                continue
            self._record_state(state)
            self.event("order.expired", f"{row['client_order_id']} unfilled after {max_age_sim_seconds:g}s; cancelled")
            cancelled += 1
        return cancelled

    async def collect_fills(self) -> int:
        """Record new fills and ledger entries from every venue; returns the number of new fills."""
        new = 0
        for name, venue in self.venues.items():
            try:
                fills, cursor = await self._call(name, venue.fetch_fills(self._fill_cursor[name]))
                ledger, lcursor = await self._call(name, venue.fetch_ledger(self._ledger_cursor[name]))
            except (asyncio.TimeoutError, VenueError):
                continue
            self._fill_cursor[name] = cursor
            self._ledger_cursor[name] = lcursor
            for fill in fills:
                if self.store.insert_fill(
                    run_id=self.run_id, client_order_id=fill.client_order_id, venue=fill.venue,
                    fill_id=fill.fill_id, instrument=fill.symbol, side=fill.side, quantity=str(fill.quantity),
                    price=str(fill.price), fee=str(fill.fee), fee_asset=fill.fee_asset, sim_time=fill.timestamp,
                ):
                    new += 1
                    self.on_fill(fill)
            for entry in ledger:
                self.on_ledger(entry)
        if new:
            counts = self.store.count_orders(self.run_id)
            self.filled_orders = counts.get("filled", 0)
        return new

    async def skip_history(self) -> None:
        """Move the fill and ledger cursors past everything the venues report now, unrecorded: what
        happened before this run (an earlier run's fills, funding paid last week) is not its P&L."""
        for name, venue in self.venues.items():
            _, self._fill_cursor[name] = await self._call(name, venue.fetch_fills(self._fill_cursor[name]))
            _, self._ledger_cursor[name] = await self._call(name, venue.fetch_ledger(self._ledger_cursor[name]))

    def unsettled_orders(self) -> list[dict]:
        """This run's orders that may still be live on a venue (statuses in UNSETTLED), oldest first."""
        if self._unsettled_rows is None:
            self._unsettled_rows = self.store.list_orders(self.run_id, UNSETTLED)
        return list(self._unsettled_rows)

    def has_unsettled(self) -> bool:
        return bool(self.unsettled_orders())
