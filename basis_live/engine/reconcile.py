"""Startup reconciliation of a live run with its venues, before the first decision.

A live run trades accounts it assumes are its own. Before it trades, it makes sure of that and
settles what earlier runs left behind:

1. **No other live run on these accounts.** A run of the same environment still marked running on
   any of the same venues, with its process alive, refuses the start (two engines sizing from the
   same equity would fight). A dead one is marked failed.
2. **Orders of earlier runs.** Every order the store holds as possibly live (pending_submit,
   unknown, open, partially filled) on these venues is looked up by its client order id: the
   venue's answer is recorded; one that is still open is cancelled (the run that sent it is gone);
   one confirmed absent after an unknown submit is recorded as never placed. One the venue cannot
   answer for refuses the start: the run must not trade on top of an order it cannot see.
3. **Open orders nobody recorded** (placed by hand or by another tool) refuse the start, naming
   them: the operator cancels them or uses other accounts.
4. **Positions found** (a perp left by a crashed run, a hand-made hedge) are adopted, not closed:
   the mode sizes from the equity and rebalances them toward its targets. They are listed in the
   run's events.

The engine knows no venue here either: only the ``Venue`` interface and the store.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable

from basis_live.engine.orders import UNSETTLED
from basis_live.errors import EngineInitError
from basis_live.process import process_alive
from basis_live.store import ACTIVE_STATUSES, Store
from basis_live.venues.base import Venue, VenueAccount, VenueError


@dataclass
class StartupReport:
    settled: list[str] = field(default_factory=list)  # "<cid> <status>" of earlier runs' orders
    cancelled: list[str] = field(default_factory=list)  # earlier runs' orders still open, cancelled now
    adopted_positions: list[str] = field(default_factory=list)  # "<venue> <symbol> <quantity>"

    def lines(self) -> list[str]:
        lines = []
        if self.settled:
            lines.append(f"orders of earlier runs settled: {', '.join(self.settled)}")
        if self.cancelled:
            lines.append(f"orders of earlier runs still open, cancelled: {', '.join(self.cancelled)}")
        if self.adopted_positions:
            lines.append(f"positions found on the venues and adopted: {', '.join(self.adopted_positions)}")
        return lines


def refuse_concurrent_live_runs(store: Store, environment: str, venue_names: list[str]) -> None:
    """Step 1 (see the module docstring)."""
    import json

    for row in store.list_runs(ACTIVE_STATUSES):
        if row.execution_mode != "live" or row.environment != environment:
            continue
        config = json.loads(row.config_json or "{}")
        theirs = {name for name, venue in (config.get("strategy", {}).get("venues") or {}).items()
                  if venue.get("enabled")}
        shared = sorted(theirs & set(venue_names))
        if not shared:
            continue
        if process_alive(row.pid, row.host, row.pid_start):
            raise EngineInitError(
                f"run {row.run_id} ({row.strategy_name}) is trading live on {', '.join(shared)} in {environment}: "
                "one run per account; stop it first (basis-live stop " + row.run_id + ")")
        store.set_run_status(row.run_id, "failed", "engine process gone; found by a later live start",
                             only_if=ACTIVE_STATUSES)


async def reconcile_at_start(venues: dict[str, Venue], store: Store, environment: str, timeout: float,
                             event: Callable[..., None] | None = None) -> StartupReport:
    """Steps 2 and 3; raises EngineInitError when the run must not trade."""
    report = StartupReport()

    async def call(venue: str, coro):  # type: ignore[no-untyped-def]
        try:
            async with asyncio.timeout(timeout):
                return await coro
        except (asyncio.TimeoutError, VenueError) as exc:
            raise EngineInitError(f"startup reconcile: {venue} did not answer: {exc or 'timeout'}") from None

    for row in store.list_orders_on_venues(list(venues), UNSETTLED, "live", environment):
        cid, name = row["client_order_id"], row["venue"]
        state = await call(name, venues[name].fetch_order(cid))
        if state is None:
            status = "rejected" if row["status"] in ("pending_submit", "unknown") else "cancelled"
            store.update_order(cid, status=status, reason="confirmed absent on venue at a later live start")
            report.settled.append(f"{cid} {status}")
            continue
        if state.is_open:
            state = await call(name, venues[name].cancel_order(cid))
            report.cancelled.append(f"{cid}@{name}")
        store.update_order(cid, status=state.status, venue_order_id=state.venue_order_id,
                           filled_quantity=str(state.filled_quantity),
                           average_price=None if state.average_price is None else str(state.average_price),
                           fee=str(state.fee), fee_asset=state.fee_asset, reason=state.reason)
        report.settled.append(f"{cid} {state.status}")

    strangers: list[str] = []
    for name, venue in venues.items():
        open_orders = await call(name, venue.fetch_open_orders())
        known = store.known_client_order_ids([o.client_order_id for o in open_orders if o.client_order_id])
        strangers += [f"{o.side} {o.quantity} {o.symbol} on {name} (id {o.client_order_id or o.venue_order_id})"
                      for o in open_orders if o.client_order_id not in known]
    if strangers:
        raise EngineInitError(f"{len(strangers)} open order(s) basis-live did not place: {'; '.join(strangers[:5])}"
                              f"{' ...' if len(strangers) > 5 else ''}; cancel them or trade from other accounts")
    if event is not None:
        for line in report.lines():
            event("startup.reconcile", line, level="warning")
    return report


def adopted_positions(accounts: dict[str, VenueAccount]) -> list[str]:
    """Step 4: the positions found at start, for the run's events."""
    return [f"{p.venue} {p.symbol} {p.quantity}" for account in accounts.values() for p in account.positions
            if p.quantity]
