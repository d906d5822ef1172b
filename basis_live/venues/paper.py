"""Paper venues: simulated exchange accounts (spot + linear perps) and an on-chain account (wallet +
AAVE V3-style lending), driven by market snapshots.

They implement the same ``Venue`` interface as the live venues. What they simulate:

- Market orders fill at once at the mark (perp) or spot price, moved against the taker by the
  slippage bucket for the order's notional; taker fee in USDT.
- Limit orders rest until the market trades through their price, then fill at the limit price with
  the maker fee.
- Perps: one cross-margined USDT account per venue (unified account): margin balance = USDT
  balance; an order that would take notional above ``max_leverage`` x (margin + uPnL) is refused
  as insufficient margin. Funding settles at 00:00 / 08:00 / 16:00 UTC: a position receives
  -quantity x mark x rate (shorts receive positive funding).
- Inverse (coin-margined) perps (``inverse_bases``; "BTC/USD:BTC" like Binance COIN-M BTCUSD_PERP):
  quantity in contracts of 100 USD (step and minimum 1 contract); margin, P&L, fees and funding in
  BTC, from the BTC balance (its own margin pool, apart from the USDT one). uPnL = contracts x 100 x
  (1/entry - 1/mark) (a short's is the negative); entry is the contract-weighted harmonic mean of
  the fill prices; fee = contracts x 100 / price x fee rate; funding = -contracts x 100 / mark x rate;
  an order is refused when the BTC notional (contracts x 100 / price) would exceed ``max_leverage`` x
  (BTC margin + uPnL). The feeds quote no inverse series: its mark and funding rate are the venue's
  linear perp's (an approximation: on Binance the two differ by a few bps).
- Lending: supply stores scaled = amount / liquidityIndex; the balance is scaled x the current
  index. Every on-chain action pays gas = gas price x gas units, in ETH from the wallet if it holds
  ETH, otherwise in USDT at the ETH price (the paper wallet's gas reserve).
- Seasonal rewards: at each EtherFi drop in the snapshots' ``rewards_paid``, the wallet receives
  weETH held (wallet + supplied on AAVE) x the weETH oracle rate (= eETH) x the drop's amount per
  eETH, as a ``reward`` ledger entry of the wallet; the swap route sells them for ETH.
- ``faults`` lets tests make a venue lose submit responses, hang, or refuse (unit tests only).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from basis_live.feeds.base import REWARD_TOKENS, MarketSnapshot, last_funding_settlement
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
    VenueUnavailable,
    inverse_contract_value,
)

D = Decimal
_BPS = D("0.0001")
_SATOSHI = D("0.00000001")


@dataclass
class PaperFaults:
    """Faults a test can inject into a paper venue."""

    lose_submit_responses: int = 0  # the next N submits execute, then raise AmbiguousOrderError
    drop_submits: int = 0  # the next N submits never reach the venue, and raise AmbiguousOrderError
    hang_submits_seconds: float = 0.0  # submits sleep this long first (a venue stuck on orders)
    hang_seconds: float = 0.0  # every call sleeps this long first (a hung venue)
    unavailable: bool = False  # every call raises VenueUnavailable


@dataclass(frozen=True)
class FeeSchedule:
    maker: Decimal
    taker: Decimal


@dataclass(frozen=True)
class SlippageSchedule:
    """(max_notional, bps) buckets, ascending; beyond the last bucket its bps apply."""

    buckets: tuple[tuple[Decimal, Decimal], ...] = ((D(10_000), D(5)), (D(100_000), D(7)), (D(1_000_000), D(13)))

    def bps_for(self, notional: Decimal) -> Decimal:
        for max_notional, bps in self.buckets:
            if notional <= max_notional:
                return bps
        return self.buckets[-1][1]


def _d(value: float) -> Decimal:
    # Market data are floats; money is Decimal. Going through repr keeps the shortest exact form.
    return Decimal(repr(value))


class _PaperBase(Venue):
    def __init__(self, name: str) -> None:
        self.name = name
        self.faults = PaperFaults()
        self.market: MarketSnapshot | None = None
        self._orders: dict[str, OrderState] = {}
        self._resting: dict[str, OrderRequest] = {}  # open limit orders, by client order id
        self._fills: list[Fill] = []
        self._ledger: list[LedgerEntry] = []
        self._ids = itertools.count(1)

    async def _enter(self) -> None:
        if self.faults.hang_seconds:
            await asyncio.sleep(self.faults.hang_seconds)
        if self.faults.unavailable:
            raise VenueUnavailable(f"{self.name}: venue unavailable (simulated)")

    def _now(self) -> datetime:
        if self.market is None:
            raise VenueUnavailable(f"{self.name}: no market data yet")
        return self.market.timestamp

    async def fetch_order(self, client_order_id: str) -> OrderState | None:
        await self._enter()
        return self._orders.get(client_order_id)

    async def fetch_open_orders(self) -> list[OrderState]:
        await self._enter()
        return [o for o in self._orders.values() if o.is_open]

    async def cancel_order(self, client_order_id: str) -> OrderState:
        await self._enter()
        order = self._orders.get(client_order_id)
        if order is None:
            raise OrderRejected(f"{self.name}: no order {client_order_id}")
        if order.is_open:
            order = _replace(order, status="cancelled")
            self._orders[client_order_id] = order
        return order

    async def fetch_fills(self, since: int = 0) -> tuple[list[Fill], int]:
        await self._enter()
        return self._fills[since:], len(self._fills)

    async def fetch_ledger(self, since: int = 0) -> tuple[list[LedgerEntry], int]:
        await self._enter()
        return self._ledger[since:], len(self._ledger)

    async def place_order(self, request: OrderRequest) -> OrderState:
        await self._enter()
        if self.faults.hang_submits_seconds:
            await asyncio.sleep(self.faults.hang_submits_seconds)
        if self.faults.drop_submits > 0:
            self.faults.drop_submits -= 1
            raise AmbiguousOrderError(f"{self.name}: submit timed out before reaching the venue (simulated)")
        if request.client_order_id in self._orders:
            # Like bybit: a client id is unique for ever. The engine never resends a known id.
            raise OrderRejected(f"{self.name}: duplicate client order id {request.client_order_id}")
        state = self._execute(request)
        if self.faults.lose_submit_responses > 0:
            self.faults.lose_submit_responses -= 1
            raise AmbiguousOrderError(f"{self.name}: submit timed out after sending (simulated)")
        return state

    def _execute(self, request: OrderRequest) -> OrderState:
        raise NotImplementedError

    def _record(self, request: OrderRequest, state: OrderState) -> OrderState:
        self._orders[request.client_order_id] = state
        if state.is_open:
            self._resting[request.client_order_id] = request
        return state

    def _add_fill(self, request: OrderRequest, quantity: Decimal, price: Decimal, fee: Decimal, fee_asset: str) -> None:
        self._fills.append(
            # The client order id makes the fill id unique across runs sharing one state database
            # (the store keeps a fill once per venue and fill id).
            Fill(f"{self.name}-{request.client_order_id}-f{next(self._ids)}", request.client_order_id, self.name,
                 request.symbol, request.side, quantity, price, fee, fee_asset, self._now())
        )

    def _reject(self, request: OrderRequest, reason: str) -> OrderState:
        self._record(request, OrderState(request.client_order_id, self.name, request.symbol, request.side,
                                         request.quantity, "rejected", reason=reason))
        raise OrderRejected(f"{self.name}: {reason}")


def _replace(state: OrderState, **changes: object) -> OrderState:
    from dataclasses import replace

    return replace(state, **changes)


@dataclass
class _Perp:
    quantity: Decimal = ZERO
    entry_price: Decimal = ZERO


class PaperExchange(_PaperBase):
    """A CEX account with spot markets (``spot_bases``), linear USDT perps (``perp_bases``) and
    inverse coin-margined perps (``inverse_bases``)."""

    def __init__(
        self,
        name: str,
        fees: FeeSchedule,
        slippage: SlippageSchedule = SlippageSchedule(),
        spot_bases: tuple[str, ...] = (),
        perp_bases: tuple[str, ...] = ("BTC", "ETH"),
        max_leverage: Decimal = D(10),
        inverse_bases: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name)
        self.fees = fees
        self.slippage = slippage
        self.max_leverage = max_leverage
        self.balances: dict[str, Decimal] = {"USDT": ZERO}
        self.perps: dict[str, _Perp] = {base: _Perp() for base in perp_bases}
        self._instruments: dict[str, Instrument] = {}
        for base in spot_bases:
            self.balances.setdefault(base, ZERO)
            self._instruments[f"{base}/USDT"] = Instrument(
                name, f"{base}/USDT", "spot", base, "USDT",
                quantity_step=D("0.00001") if base == "BTC" else D("0.0001"), price_step=D("0.01"),
                min_quantity=D("0.00001") if base == "BTC" else D("0.0001"), min_notional=D(5))
        for base in perp_bases:
            self._instruments[f"{base}/USDT:USDT"] = Instrument(
                name, f"{base}/USDT:USDT", "perp", base, "USDT",
                quantity_step=D("0.001"), price_step=D("0.01") if base == "ETH" else D("0.1"),
                min_quantity=D("0.001"), min_notional=D(5))
        self.inverse: dict[str, _Perp] = {base: _Perp() for base in inverse_bases}
        for base in inverse_bases:
            self.balances.setdefault(base, ZERO)
            symbol = f"{base}/USD:{base}"
            # Quantity in contracts: step and minimum one contract, so no separate notional minimum.
            self._instruments[symbol] = Instrument(name, symbol, "perp", base, "USD", quantity_step=D(1),
                                                   price_step=D("0.1"), min_quantity=D(1), min_notional=ZERO)
        self._last_settlement: datetime | None = None

    # -- simulation inputs
    def fund(self, asset: str, amount: Decimal) -> None:
        self.balances[asset] = self.balances.get(asset, ZERO) + amount

    def on_market(self, snapshot: MarketSnapshot) -> None:
        previous = self.market
        self.market = snapshot
        settlement = last_funding_settlement(snapshot.timestamp)
        if previous is not None and self._last_settlement is not None and settlement > self._last_settlement:
            # Settle with the rate quoted just before the settlement (the one that was due).
            self._settle_funding(previous, settlement)
        self._last_settlement = settlement
        self._fill_resting_orders()

    def _settle_funding(self, quote: MarketSnapshot, when: datetime) -> None:
        for base, perp in self.perps.items():
            if not perp.quantity:
                continue
            rate = quote.decimal("funding_rate", base, self.name)
            mark = self.market.decimal("perp_mark", base, self.name)  # type: ignore[union-attr]
            amount = -perp.quantity * mark * rate
            self.balances["USDT"] += amount
            self._ledger.append(LedgerEntry(f"{self.name}-l{next(self._ids)}", self.name, "funding", "USDT",
                                            amount, when, f"{base}/USDT:USDT"))
        for base, perp in self.inverse.items():
            if not perp.quantity:
                continue
            rate = quote.decimal("funding_rate", base, self.name)
            mark = self.market.decimal("perp_mark", base, self.name)  # type: ignore[union-attr]
            amount = (-perp.quantity * self._contract_value(base) / mark * rate).quantize(_SATOSHI)
            self.balances[base] += amount
            self._ledger.append(LedgerEntry(f"{self.name}-l{next(self._ids)}", self.name, "funding", base,
                                            amount, when, f"{base}/USD:{base}"))

    # -- prices
    def _price(self, instrument: Instrument) -> Decimal:
        m = self.market
        if m is None:
            raise VenueUnavailable(f"{self.name}: no market data yet")
        if instrument.kind == "perp":
            return m.decimal("perp_mark", instrument.base, self.name)
        return m.decimal("spot", instrument.base)

    def mark_price(self, base: str) -> Decimal:
        """The perp mark of ``base``: the linear perp's, which inverse perps also use (no inverse series)."""
        if self.market is None:
            raise VenueUnavailable(f"{self.name}: no market data yet")
        return self.market.decimal("perp_mark", base, self.name)

    def unrealized_pnl(self) -> Decimal:
        return sum((p.quantity * (self.mark_price(b) - p.entry_price) for b, p in self.perps.items() if p.quantity), ZERO)

    def _contract_value(self, base: str) -> Decimal:
        value = inverse_contract_value(f"{base}/USD:{base}")
        assert value is not None
        return value

    def inverse_unrealized_pnl(self, base: str) -> Decimal:
        """uPnL of the inverse perp on ``base``, in ``base``: contracts x value x (1/entry - 1/mark)."""
        perp = self.inverse[base]
        if not perp.quantity:
            return ZERO
        return perp.quantity * self._contract_value(base) * (1 / perp.entry_price - 1 / self.mark_price(base))

    # -- Venue interface
    async def instruments(self) -> dict[str, Instrument]:
        return dict(self._instruments)

    async def fetch_account(self) -> VenueAccount:
        await self._enter()
        positions = []
        for base, perp in self.perps.items():
            if perp.quantity:
                mark = self.mark_price(base)
                positions.append(Position(self.name, f"{base}/USDT:USDT", "perp", base, "USDT", perp.quantity,
                                          perp.entry_price, mark, perp.quantity * (mark - perp.entry_price)))
        for base, perp in self.inverse.items():
            if perp.quantity:
                positions.append(Position(self.name, f"{base}/USD:{base}", "perp", base, "USD", perp.quantity,
                                          perp.entry_price, self.mark_price(base), self.inverse_unrealized_pnl(base)))
        return VenueAccount(self.name, dict(self.balances), positions)

    def _execute(self, request: OrderRequest) -> OrderState:
        instrument = self._instruments.get(request.symbol)
        if instrument is None:
            return self._reject(request, f"unknown symbol {request.symbol}")
        if request.quantity <= 0 or instrument.round_quantity(request.quantity) != request.quantity:
            return self._reject(request, f"quantity {request.quantity} not a multiple of {instrument.quantity_step}")
        mark = self._price(instrument)
        problem = instrument.check_minimums(request.quantity, mark)
        if problem:
            return self._reject(request, problem)
        if request.order_type == "limit":
            if request.price is None or request.price <= 0:
                return self._reject(request, "limit order without a price")
            problem = self._check_funds(instrument, request, request.price, self.fees.maker)
            if problem:
                return self._reject(request, problem)
            state = self._record(request, OrderState(request.client_order_id, self.name, request.symbol,
                                                     request.side, request.quantity, "open",
                                                     venue_order_id=f"{self.name}-{next(self._ids)}"))
            self._fill_resting_orders()
            return self._orders[request.client_order_id] if request.client_order_id in self._orders else state
        contract = inverse_contract_value(request.symbol)
        bps = self.slippage.bps_for(request.quantity * contract if contract else request.quantity * mark)
        direction = 1 if request.side == "buy" else -1
        price = instrument.round_price(mark * (1 + direction * bps * _BPS))
        problem = self._check_funds(instrument, request, price, self.fees.taker)
        if problem:
            return self._reject(request, problem)
        return self._fill(instrument, request, price, self.fees.taker,
                          venue_order_id=f"{self.name}-{next(self._ids)}")

    def _check_funds(self, instrument: Instrument, request: OrderRequest, price: Decimal, fee_rate: Decimal) -> str | None:
        notional = request.quantity * price
        fee = notional * fee_rate
        if instrument.kind == "spot":
            if request.side == "buy" and self.balances["USDT"] < notional + fee:
                return f"insufficient balance: need {notional + fee:.2f} USDT, have {self.balances['USDT']:.2f}"
            if request.side == "sell" and self.balances.get(instrument.base, ZERO) < request.quantity:
                return (f"insufficient balance: need {request.quantity} {instrument.base}, "
                        f"have {self.balances.get(instrument.base, ZERO)}")
            return None
        contract = inverse_contract_value(instrument.symbol)
        if contract is not None:
            return self._check_inverse_margin(instrument.base, request, price, fee_rate, contract)
        perp = self.perps[instrument.base]
        signed = request.quantity if request.side == "buy" else -request.quantity
        new_quantity = perp.quantity + signed
        if request.reduce_only and (abs(new_quantity) > abs(perp.quantity) or new_quantity * perp.quantity < 0):
            return "reduce-only order would increase the position"
        if abs(new_quantity) <= abs(perp.quantity):
            return None  # reducing never needs margin
        equity = self.balances["USDT"] + self.unrealized_pnl() - fee
        gross = sum((abs(p.quantity) * self.mark_price(b) for b, p in self.perps.items() if b != instrument.base), ZERO)
        gross += abs(new_quantity) * price
        if gross > equity * self.max_leverage:
            return (f"insufficient margin: notional {gross:.2f} USDT exceeds {self.max_leverage}x "
                    f"margin {equity:.2f}")
        return None

    def _check_inverse_margin(self, base: str, request: OrderRequest, price: Decimal, fee_rate: Decimal,
                              contract: Decimal) -> str | None:
        """Margin in ``base``: initial margin = notional / price / leverage, against BTC margin + uPnL."""
        perp = self.inverse[base]
        signed = request.quantity if request.side == "buy" else -request.quantity
        new_quantity = perp.quantity + signed
        if request.reduce_only and (abs(new_quantity) > abs(perp.quantity) or new_quantity * perp.quantity < 0):
            return "reduce-only order would increase the position"
        if abs(new_quantity) <= abs(perp.quantity):
            return None
        fee = request.quantity * contract / price * fee_rate
        margin = self.balances[base] + self.inverse_unrealized_pnl(base) - fee
        notional = abs(new_quantity) * contract / price
        if notional > margin * self.max_leverage:
            return (f"insufficient margin: notional {notional:.8f} {base} exceeds {self.max_leverage}x "
                    f"margin {margin:.8f} {base}")
        return None

    def _fill_inverse(self, instrument: Instrument, request: OrderRequest, price: Decimal, fee_rate: Decimal,
                      contract: Decimal) -> Decimal:
        """Apply an inverse perp fill; returns its fee (in the base coin)."""
        base, quantity = instrument.base, request.quantity
        perp = self.inverse[base]
        fee = (quantity * contract / price * fee_rate).quantize(_SATOSHI)
        signed = quantity if request.side == "buy" else -quantity
        if perp.quantity == 0 or (perp.quantity > 0) == (signed > 0):
            total = perp.quantity + signed
            # Harmonic mean: the position's BTC cost (contracts / price) is additive, so the uPnL of
            # the whole equals the sum of the lots'.
            perp.entry_price = abs(total) / (abs(perp.quantity) / perp.entry_price + quantity / price) \
                if perp.quantity else price
            perp.quantity = total
        else:
            closed = min(abs(signed), abs(perp.quantity))
            direction = 1 if perp.quantity > 0 else -1
            realized = closed * contract * (1 / perp.entry_price - 1 / price) * direction
            self.balances[base] += realized.quantize(_SATOSHI)  # settled in whole satoshis
            perp.quantity += signed
            if perp.quantity == 0:
                perp.entry_price = ZERO
            elif (perp.quantity > 0) != (direction > 0):  # flipped through zero
                perp.entry_price = price
        self.balances[base] -= fee
        return fee

    def _fill(self, instrument: Instrument, request: OrderRequest, price: Decimal, fee_rate: Decimal,
              venue_order_id: str) -> OrderState:
        quantity = request.quantity
        contract = inverse_contract_value(instrument.symbol)
        if contract is not None:
            fee = self._fill_inverse(instrument, request, price, fee_rate, contract)
            self._add_fill(request, quantity, price, fee, instrument.base)
            return self._record(request, OrderState(request.client_order_id, self.name, request.symbol, request.side,
                                                    quantity, "filled", venue_order_id, quantity, price, fee,
                                                    instrument.base))
        notional = quantity * price
        fee = (notional * fee_rate).quantize(D("0.00000001"))
        if instrument.kind == "spot":
            sign = 1 if request.side == "buy" else -1
            self.balances["USDT"] -= sign * notional + fee
            self.balances[instrument.base] = self.balances.get(instrument.base, ZERO) + sign * quantity
        else:
            perp = self.perps[instrument.base]
            signed = quantity if request.side == "buy" else -quantity
            if perp.quantity == 0 or (perp.quantity > 0) == (signed > 0):
                total = perp.quantity + signed
                perp.entry_price = (perp.entry_price * abs(perp.quantity) + price * quantity) / abs(total)
                perp.quantity = total
            else:
                closed = min(abs(signed), abs(perp.quantity))
                direction = 1 if perp.quantity > 0 else -1
                self.balances["USDT"] += closed * (price - perp.entry_price) * direction
                perp.quantity += signed
                if perp.quantity == 0:
                    perp.entry_price = ZERO
                elif (perp.quantity > 0) != (direction > 0):  # flipped through zero
                    perp.entry_price = price
            self.balances["USDT"] -= fee
        self._add_fill(request, quantity, price, fee, "USDT")
        return self._record(request, OrderState(request.client_order_id, self.name, request.symbol, request.side,
                                                quantity, "filled", venue_order_id, quantity, price, fee, "USDT"))

    def _fill_resting_orders(self) -> None:
        for cid, request in list(self._resting.items()):
            order = self._orders[cid]
            if not order.is_open:
                del self._resting[cid]  # cancelled or filled: nothing more to watch
                continue
            instrument = self._instruments[request.symbol]
            market = self._price(instrument)
            assert request.price is not None
            crossed = market <= request.price if request.side == "buy" else market >= request.price
            if not crossed:
                continue
            if self._check_funds(instrument, request, request.price, self.fees.maker):
                self._orders[cid] = _replace(order, status="cancelled", reason="insufficient funds at fill time")
                continue
            self._fill(instrument, request, request.price, self.fees.maker, order.venue_order_id or "")


@dataclass
class _Reserve:
    scaled_supply: Decimal = ZERO
    supply_principal: Decimal = ZERO
    scaled_debt: Decimal = ZERO
    debt_principal: Decimal = ZERO


class PaperChain:
    """One on-chain account: the wallet's token balances and its AAVE V3 positions. Venues
    ``wallet`` and ``aave_v3`` are two views of it, as on chain (AAVE pulls tokens from the wallet)."""

    QUANTITY_STEPS = {"USDT": D("0.000001"), "WETH": D("0.000000000000000001"),
                      "weETH": D("0.000000000000000001"), "wstETH": D("0.000000000000000001"),
                      "ETH": D("0.000000000000000001")}
    #: EIGEN and ETHFI are 18-decimal ERC-20s (not AAVE reserves, hence not in QUANTITY_STEPS).
    REWARD_STEP = D("0.000000000000000001")

    def __init__(self, gas_units: dict[str, int], aave_risk: AaveRiskParams | None = None) -> None:
        self.balances: dict[str, Decimal] = {}
        self.reserves: dict[str, _Reserve] = {}
        self.gas_units = gas_units
        self.market: MarketSnapshot | None = None
        self.wallet = PaperWallet(self)
        self.aave = PaperAave(self, aave_risk or AaveRiskParams())
        self.etherfi = PaperStaking(self, "etherfi", "weETH")
        self.lido = PaperStaking(self, "lido", "wstETH")
        self.swap: PaperSwap | None = None
        self._rewards_seen: int | None = None  # how many of the snapshots' rewards_paid are booked

    def add_swap(self, fee: Decimal, slippage: SlippageSchedule) -> "PaperSwap":
        self.swap = PaperSwap(self, fee, slippage)
        self.swap.market = self.market
        return self.swap

    def on_market(self, snapshot: MarketSnapshot) -> None:
        self.market = snapshot
        for venue in (self.wallet, self.aave, self.etherfi, self.lido, self.swap):
            if venue is not None:
                venue.market = snapshot
        self._credit_rewards(snapshot)

    def weeth_held(self) -> Decimal:
        """weETH in the wallet plus weETH supplied on AAVE (scaled x the current index)."""
        reserve = self.reserves.get("weETH")
        supplied = ZERO
        if reserve is not None and reserve.scaled_supply and self.market is not None:
            supplied = reserve.scaled_supply * self.market.decimal("lending_index", "weETH")
        return self.balances.get("weETH", ZERO) + supplied

    def _credit_rewards(self, snapshot: MarketSnapshot) -> None:
        """Credit the drops paid since the previous snapshot (those paid before the first one are
        history): weETH held x the weETH oracle rate now (= eETH) x the amount per eETH, rounded
        down to the token's 18 decimals. Holdings cannot change between two snapshots (orders are
        placed on the latest one), so what is held now is what was held at the drop."""
        paid = snapshot.rewards_paid
        seen, self._rewards_seen = self._rewards_seen, len(paid)
        if seen is None or len(paid) <= seen:
            return
        weeth = self.weeth_held()
        if weeth <= 0:
            return
        eeth = weeth * _d(snapshot.lst_rate["weETH"])
        for drop in paid[seen:]:
            amount = (eeth * _d(drop.per_eeth)).quantize(self.REWARD_STEP, rounding=ROUND_DOWN)
            if amount <= 0:
                continue
            self.balances[drop.token] = self.balances.get(drop.token, ZERO) + amount
            self.wallet._ledger.append(LedgerEntry(f"wallet-l{next(self.wallet._ids)}", "wallet", "reward",
                                                   drop.token, amount, drop.timestamp, "weETH", _d(drop.price_usd)))

    def fund(self, asset: str, amount: Decimal) -> None:
        self.balances[asset] = self.balances.get(asset, ZERO) + amount

    def _eth_cost(self, operation: str) -> Decimal:
        """The gas of ``operation`` in ETH at the current gas price (whole wei)."""
        m = self.market
        assert m is not None
        units = D(self.gas_units.get(operation, 250_000))
        return (_d(m.gas_price_gwei) * units * D("1e-9")).quantize(D("1e-18"))

    def _gas(self, operation: str, spending: dict[str, Decimal] | None = None) -> tuple[Decimal, str] | None:
        """(amount, asset) the gas of ``operation`` costs once ``spending`` has left the wallet: ETH
        when enough is left, else its USDT value; None when neither covers it."""
        m = self.market
        assert m is not None
        spending = spending or {}
        eth_cost = self._eth_cost(operation)
        if self.balances.get("ETH", ZERO) - spending.get("ETH", ZERO) >= eth_cost:
            return eth_cost, "ETH"
        usdt_cost = (eth_cost * _d(m.spot["ETH"])).quantize(D("0.000001"))
        if self.balances.get("USDT", ZERO) - spending.get("USDT", ZERO) >= usdt_cost:
            return usdt_cost, "USDT"
        return None

    def gas_problem(self, operation: str, spending: dict[str, Decimal] | None = None) -> str | None:
        """Why the wallet cannot pay the gas of ``operation`` after ``spending`` (None: it can). As on
        chain, a transaction the sender cannot pay gas for is never executed."""
        if self._gas(operation, spending) is not None:
            return None
        spending = spending or {}
        return (f"insufficient funds for gas: {operation} needs {self._eth_cost(operation)} ETH (or its USDT value) "
                f"and the wallet would hold {self.balances.get('ETH', ZERO) - spending.get('ETH', ZERO)} ETH, "
                f"{self.balances.get('USDT', ZERO) - spending.get('USDT', ZERO)} USDT")

    def pay_gas(self, operation: str, venue: _PaperBase) -> tuple[Decimal, str]:
        """Charge gas for one operation (checked beforehand with ``gas_problem``); returns (amount, asset)."""
        m = self.market
        assert m is not None
        gas = self._gas(operation)
        assert gas is not None, f"{operation}: gas not checked before the operation"
        amount, asset = gas
        self.balances[asset] = self.balances.get(asset, ZERO) - amount
        venue._ledger.append(LedgerEntry(f"{venue.name}-l{next(venue._ids)}", venue.name, "gas", asset, -amount,
                                         m.timestamp, operation))
        return amount, asset


class PaperStaking(_PaperBase):
    """A liquid staking protocol on the paper chain (EtherFi weETH, Lido wstETH). ``buy`` stakes ETH
    for ``quantity`` LST at the oracle rate (ETH per LST), ``sell`` redeems LST for ETH at that
    rate. Paper redemption is instant; on chain Lido and EtherFi withdrawals wait in a queue (the
    live venue will model that)."""

    def __init__(self, chain: PaperChain, name: str, lst: str) -> None:
        super().__init__(name)
        self.chain = chain
        self.lst = lst
        step = PaperChain.QUANTITY_STEPS[lst]
        self._instruments = {lst: Instrument(name, lst, "stake", lst, "ETH", step, D("1e-18"), step, ZERO)}

    async def instruments(self) -> dict[str, Instrument]:
        return dict(self._instruments)

    async def fetch_account(self) -> VenueAccount:
        await self._enter()
        return VenueAccount(self.name, {})  # LST balances sit in the wallet

    def _execute(self, request: OrderRequest) -> OrderState:
        instrument = self._instruments.get(request.symbol)
        if instrument is None:
            return self._reject(request, f"{self.name} stakes only {self.lst}")
        if request.quantity <= 0 or instrument.round_quantity(request.quantity) != request.quantity:
            return self._reject(request, f"amount {request.quantity} not a multiple of {instrument.quantity_step}")
        assert self.market is not None
        rate = self.market.decimal("lst_rate", self.lst)
        eth = (request.quantity * rate).quantize(PaperChain.QUANTITY_STEPS["ETH"])
        balances = self.chain.balances
        problem = self.chain.gas_problem("stake" if request.side == "buy" else "unstake",
                                         {"ETH": eth} if request.side == "buy" else {})
        if problem:
            return self._reject(request, problem)
        if request.side == "buy":
            if balances.get("ETH", ZERO) < eth:
                return self._reject(request, f"insufficient ETH in wallet: {balances.get('ETH', ZERO)} < {eth}")
            balances["ETH"] -= eth
            balances[self.lst] = balances.get(self.lst, ZERO) + request.quantity
        else:
            if balances.get(self.lst, ZERO) < request.quantity:
                return self._reject(request, f"insufficient {self.lst}: {balances.get(self.lst, ZERO)} < {request.quantity}")
            balances[self.lst] -= request.quantity
            balances["ETH"] = balances.get("ETH", ZERO) + eth
        self.chain.pay_gas("stake" if request.side == "buy" else "unstake", self)
        self._add_fill(request, request.quantity, rate, ZERO, "ETH")
        return self._record(request, OrderState(request.client_order_id, self.name, request.symbol, request.side,
                                                request.quantity, "filled", f"0xpaper{next(self._ids):060x}",
                                                request.quantity, rate, ZERO, "ETH"))


class PaperSwap(_PaperBase):
    """On-chain swap routes (Uniswap v3 pools) on the paper chain: ETH <-> USDT (``buy`` ETH with
    wallet USDT, ``sell`` ETH for USDT) and the seasonal reward tokens for ETH (``EIGEN/ETH``,
    ``ETHFI/ETH``: ``sell`` the token for ETH, the ``sell_dust`` route). A fill is at the spot price
    in the quote asset (the token's USD price / ETH's for the reward pairs), moved by the slippage
    bucket of its USDT notional, less the pool fee (in the quote asset), plus gas."""

    def __init__(self, chain: PaperChain, fee: Decimal, slippage: SlippageSchedule) -> None:
        super().__init__("uniswap")
        self.chain = chain
        self.fee = fee
        self.slippage = slippage
        self._instruments = {"ETH/USDT": Instrument("uniswap", "ETH/USDT", "spot", "ETH", "USDT", D("0.000001"),
                                                    D("0.01"), D("0.000001"), D(1))}
        step = PaperChain.REWARD_STEP
        for token in REWARD_TOKENS:
            # No minimum notional: the mode decides when a holding is worth its gas.
            self._instruments[f"{token}/ETH"] = Instrument("uniswap", f"{token}/ETH", "spot", token, "ETH", step,
                                                           D("1e-18"), D("0.000001"), ZERO)

    async def instruments(self) -> dict[str, Instrument]:
        return dict(self._instruments)

    async def fetch_account(self) -> VenueAccount:
        await self._enter()
        return VenueAccount(self.name, {})  # the tokens sit in the wallet

    def _execute(self, request: OrderRequest) -> OrderState:
        instrument = self._instruments.get(request.symbol)
        if instrument is None:
            return self._reject(request, f"no pool for {request.symbol}")
        if request.quantity <= 0 or instrument.round_quantity(request.quantity) != request.quantity:
            return self._reject(request, f"amount {request.quantity} not a multiple of {instrument.quantity_step}")
        assert self.market is not None
        base, quote = instrument.base, instrument.quote
        spot = self.market.spot
        if base not in spot:
            return self._reject(request, f"no {base} price yet")
        base_usd = _d(spot[base])
        mark = base_usd / _d(spot[quote]) if quote != "USDT" else base_usd
        direction = 1 if request.side == "buy" else -1
        bps = self.slippage.bps_for(request.quantity * base_usd)
        price = instrument.round_price(mark * (1 + direction * bps * _BPS))
        notional = request.quantity * price
        # USDT legs keep the route's historical 6-decimal fee; ETH legs are wei-exact.
        fee_step = D("0.000001") if quote == "USDT" else PaperChain.QUANTITY_STEPS["ETH"]
        if quote != "USDT":
            notional = notional.quantize(fee_step, rounding=ROUND_DOWN)
        fee = (notional * self.fee).quantize(fee_step)
        balances = self.chain.balances
        problem = self.chain.gas_problem("swap", {quote: notional + fee} if request.side == "buy"
                                         else {base: request.quantity})
        if problem:
            return self._reject(request, problem)
        if request.side == "buy":
            if balances.get(quote, ZERO) < notional + fee:
                return self._reject(request, f"insufficient {quote} in wallet: {balances.get(quote, ZERO)} < {notional + fee}")
            balances[quote] -= notional + fee
            balances[base] = balances.get(base, ZERO) + request.quantity
        else:
            if balances.get(base, ZERO) < request.quantity:
                return self._reject(request, f"insufficient {base} in wallet: {balances.get(base, ZERO)} < {request.quantity}")
            balances[base] -= request.quantity
            balances[quote] = balances.get(quote, ZERO) + notional - fee
        self.chain.pay_gas("swap", self)
        self._add_fill(request, request.quantity, price, fee, quote)
        return self._record(request, OrderState(request.client_order_id, self.name, request.symbol, request.side,
                                                request.quantity, "filled", f"0xpaper{next(self._ids):060x}",
                                                request.quantity, price, fee, quote))


class PaperWallet(_PaperBase):
    """The strategy wallet: balances only; it places no orders."""

    def __init__(self, chain: PaperChain) -> None:
        super().__init__("wallet")
        self.chain = chain

    async def instruments(self) -> dict[str, Instrument]:
        return {}

    async def fetch_account(self) -> VenueAccount:
        await self._enter()
        return VenueAccount(self.name, {k: v for k, v in self.chain.balances.items() if v})

    def _execute(self, request: OrderRequest) -> OrderState:
        return self._reject(request, "the wallet takes no orders")


@dataclass(frozen=True)
class AaveRiskParams:
    """Collateral parameters: standard 0.80 / 0.85; the ETH-correlated eMode on Ethereum 0.93 / 0.95
    for WETH and the LSTs (MODES.md)."""

    emode: bool = False
    standard_ltv: Decimal = D("0.80")
    standard_liquidation_threshold: Decimal = D("0.85")
    emode_ltv: Decimal = D("0.93")
    emode_liquidation_threshold: Decimal = D("0.95")

    def for_asset(self, asset: str) -> tuple[Decimal, Decimal]:
        if self.emode and asset in ("WETH", "weETH", "wstETH"):
            return self.emode_ltv, self.emode_liquidation_threshold
        return self.standard_ltv, self.standard_liquidation_threshold


class PaperAave(_PaperBase):
    """AAVE V3 on the paper chain.

    - ``<asset>`` (supply): ``buy`` supplies from the wallet, ``sell`` withdraws (refused when the
      health factor would drop below 1).
    - ``WETH-debt``: ``buy`` borrows (the wallet receives ETH, as through Aave's WETH gateway),
      ``sell`` repays with wallet ETH. A borrow beyond the collateral's max LTV is refused, as Aave's
      COLLATERAL_CANNOT_COVER_NEW_BORROW.
    - ``<lst>-loop`` (atomic leverage, like a flash-loan helper contract): ``buy q`` borrows q ETH,
      stakes it and supplies the LST in one operation; ``sell q`` withdraws LST worth q ETH, redeems
      it and repays q of debt. One gas charge of ``leverage`` units (1.25M) per call.
    """

    def __init__(self, chain: PaperChain, risk: AaveRiskParams) -> None:
        super().__init__("aave_v3")
        self.chain = chain
        self.risk = risk
        self._instruments = {}
        for asset, step in PaperChain.QUANTITY_STEPS.items():
            if asset == "ETH":
                continue
            self._instruments[asset] = Instrument("aave_v3", asset, "supply", asset, asset, step, D("1e-18"), step, ZERO)
        eth_step = PaperChain.QUANTITY_STEPS["ETH"]
        self._instruments["WETH-debt"] = Instrument("aave_v3", "WETH-debt", "debt", "WETH", "WETH", eth_step,
                                                    D("1e-18"), eth_step, ZERO)
        for lst in ("weETH", "wstETH"):
            self._instruments[f"{lst}-loop"] = Instrument("aave_v3", f"{lst}-loop", "loop", lst, "ETH", eth_step,
                                                          D("1e-18"), eth_step, ZERO)

    def _index(self, asset: str, debt: bool = False) -> Decimal:
        m = self.market
        if m is None:
            raise VenueUnavailable("aave_v3: no market data yet")
        return m.decimal("borrow_index" if debt else "lending_index", asset)

    def supplied(self, asset: str) -> Decimal:
        reserve = self.chain.reserves.get(asset)
        return reserve.scaled_supply * self._index(asset) if reserve else ZERO

    def debt(self, asset: str = "WETH") -> Decimal:
        reserve = self.chain.reserves.get(asset)
        return reserve.scaled_debt * self._index(asset, debt=True) if reserve else ZERO

    def _value_eth(self, asset: str, amount: Decimal) -> Decimal:
        """Oracle value in ETH: LSTs through their rate, USDT through the ETH price."""
        m = self.market
        assert m is not None
        if asset in ("ETH", "WETH"):
            return amount
        if asset in m.lst_rate:
            return amount * m.decimal("lst_rate", asset)
        return amount * m.decimal("spot", asset) / m.decimal("spot", "ETH")

    def account_data(self, supply_change: tuple[str, Decimal] | None = None, debt_change: Decimal = ZERO
                     ) -> tuple[Decimal, Decimal, Decimal]:
        """(borrowing power, liquidation capacity, debt), in ETH, after hypothetical changes."""
        power = capacity = ZERO
        for asset, reserve in self.chain.reserves.items():
            amount = reserve.scaled_supply * self._index(asset) if reserve.scaled_supply else ZERO
            if supply_change is not None and supply_change[0] == asset:
                amount += supply_change[1]
            if amount <= 0:
                continue
            value = self._value_eth(asset, amount)
            ltv, threshold = self.risk.for_asset(asset)
            power += value * ltv
            capacity += value * threshold
        return power, capacity, self.debt() + debt_change

    async def instruments(self) -> dict[str, Instrument]:
        return dict(self._instruments)

    async def fetch_account(self) -> VenueAccount:
        await self._enter()
        positions = []
        for asset, reserve in self.chain.reserves.items():
            if reserve.scaled_supply:
                positions.append(Position("aave_v3", asset, "supply", asset, asset,
                                          reserve.scaled_supply * self._index(asset),
                                          principal=reserve.supply_principal))
            if reserve.scaled_debt:
                positions.append(Position("aave_v3", f"{asset}-debt", "debt", asset, asset,
                                          reserve.scaled_debt * self._index(asset, debt=True),
                                          principal=reserve.debt_principal))
        return VenueAccount(self.name, {}, positions)

    def _execute(self, request: OrderRequest) -> OrderState:
        instrument = self._instruments.get(request.symbol)
        if instrument is None:
            return self._reject(request, f"no AAVE reserve {request.symbol}")
        if request.quantity <= 0 or instrument.round_quantity(request.quantity) != request.quantity:
            return self._reject(request, f"amount {request.quantity} not a multiple of {instrument.quantity_step}")
        if instrument.kind == "supply":
            return self._supply_or_withdraw(request, instrument)
        if instrument.kind == "debt":
            return self._borrow_or_repay(request)
        return self._loop(request, instrument.base)

    def _filled(self, request: OrderRequest, quantity: Decimal, operation: str, price: Decimal = D(1)) -> OrderState:
        _, gas_asset = self.chain.pay_gas(operation, self)
        self._add_fill(request, quantity, price, ZERO, request.symbol)
        return self._record(request, OrderState(request.client_order_id, self.name, request.symbol, request.side,
                                                quantity, "filled", f"0xpaper{next(self._ids):060x}", quantity, price,
                                                ZERO, gas_asset))

    def _supply_or_withdraw(self, request: OrderRequest, instrument: Instrument) -> OrderState:
        asset = instrument.base
        reserve = self.chain.reserves.setdefault(asset, _Reserve())
        balances = self.chain.balances
        amount = request.quantity
        index = self._index(asset)
        problem = self.chain.gas_problem("supply" if request.side == "buy" else "withdraw",
                                         {asset: amount} if request.side == "buy" else {})
        if problem:
            return self._reject(request, problem)
        if request.side == "buy":
            if balances.get(asset, ZERO) < amount:
                return self._reject(request, f"insufficient {asset} in wallet: {balances.get(asset, ZERO)} < {amount}")
            balances[asset] -= amount
            reserve.scaled_supply += amount / index
            reserve.supply_principal += amount
            return self._filled(request, amount, "supply")
        available = reserve.scaled_supply * index
        if amount > available:
            return self._reject(request, f"withdraw {amount} {asset} exceeds supplied {available}")
        whole = available - amount <= instrument.quantity_step
        _, capacity, debt = self.account_data(supply_change=(asset, -(available if whole else amount)))
        if debt > 0 and capacity < debt:
            return self._reject(request, "HEALTH_FACTOR_LOWER_THAN_LIQUIDATION_THRESHOLD: withdrawal would "
                                         f"leave health factor {capacity / debt:.4f} < 1")
        if whole:
            # Like withdraw(type(uint256).max) on chain: take the whole balance, no dust left
            # supplied, paid out in whole token units (wei): the scaled balance x index carries
            # digits below them that no token transfer can move.
            amount = available.quantize(instrument.quantity_step, rounding=ROUND_DOWN)
            reserve.scaled_supply, reserve.supply_principal = ZERO, ZERO
        else:
            reserve.scaled_supply = (available - amount) / index
            reserve.supply_principal = max(ZERO, reserve.supply_principal - amount)
        balances[asset] = balances.get(asset, ZERO) + amount
        return self._filled(request, amount, "withdraw")

    def _borrow_or_repay(self, request: OrderRequest) -> OrderState:
        reserve = self.chain.reserves.setdefault("WETH", _Reserve())
        balances = self.chain.balances
        amount = request.quantity
        index = self._index("WETH", debt=True)
        owed_now = reserve.scaled_debt * index
        problem = self.chain.gas_problem("borrow" if request.side == "buy" else "repay",
                                         {} if request.side == "buy" else {"ETH": min(amount, owed_now)})
        if problem:
            return self._reject(request, problem)
        if request.side == "buy":
            power, _, debt = self.account_data(debt_change=amount)
            if debt > power:
                return self._reject(request, f"COLLATERAL_CANNOT_COVER_NEW_BORROW: debt {debt:.6f} ETH would exceed "
                                             f"borrowing power {power:.6f} ETH")
            self._add_debt(reserve, amount, index)
            balances["ETH"] = balances.get("ETH", ZERO) + amount
            return self._filled(request, amount, "borrow")
        owed = reserve.scaled_debt * index
        amount = min(amount, owed)
        if balances.get("ETH", ZERO) < amount:
            return self._reject(request, f"insufficient ETH to repay: {balances.get('ETH', ZERO)} < {amount}")
        self._repay_debt(reserve, amount, index)
        balances["ETH"] -= amount
        return self._filled(request, amount, "repay")

    @staticmethod
    def _add_debt(reserve: _Reserve, amount: Decimal, index: Decimal) -> None:
        reserve.scaled_debt += amount / index
        reserve.debt_principal += amount

    @staticmethod
    def _repay_debt(reserve: _Reserve, amount: Decimal, index: Decimal) -> None:
        owed = reserve.scaled_debt * index
        if owed - amount <= PaperChain.QUANTITY_STEPS["ETH"]:
            reserve.scaled_debt, reserve.debt_principal = ZERO, ZERO
        else:
            reserve.scaled_debt = (owed - amount) / index
            reserve.debt_principal = max(ZERO, reserve.debt_principal - amount)

    def _loop(self, request: OrderRequest, lst: str) -> OrderState:
        """Atomic lever-up / lever-down by ``quantity`` ETH of debt (flash-loan style)."""
        assert self.market is not None
        rate = self.market.decimal("lst_rate", lst)
        step = PaperChain.QUANTITY_STEPS[lst]
        lst_amount = (request.quantity / rate).quantize(step)
        supply = self.chain.reserves.setdefault(lst, _Reserve())
        debt = self.chain.reserves.setdefault("WETH", _Reserve())
        supply_index, debt_index = self._index(lst), self._index("WETH", debt=True)
        problem = self.chain.gas_problem("leverage")
        if problem:
            return self._reject(request, problem)
        if request.side == "buy":
            power, _, new_debt = self.account_data(supply_change=(lst, lst_amount), debt_change=request.quantity)
            if new_debt > power:
                return self._reject(request, f"COLLATERAL_CANNOT_COVER_NEW_BORROW: leverage to debt {new_debt:.6f} ETH "
                                             f"exceeds borrowing power {power:.6f} ETH")
            supply.scaled_supply += lst_amount / supply_index
            supply.supply_principal += lst_amount
            self._add_debt(debt, request.quantity, debt_index)
        else:
            owed = debt.scaled_debt * debt_index
            available = supply.scaled_supply * supply_index
            if request.quantity > owed + step or lst_amount > available:
                return self._reject(request, f"delever {request.quantity} ETH exceeds debt {owed} or collateral")
            remaining = available - lst_amount
            supply.scaled_supply = remaining / supply_index if remaining > step else ZERO
            supply.supply_principal = max(ZERO, supply.supply_principal - lst_amount) if remaining > step else ZERO
            # Redeeming the LST returns lst_amount x rate ETH: it repays the debt, dust stays in the wallet.
            self._repay_debt(debt, min(request.quantity, owed), debt_index)
            self.chain.balances["ETH"] = self.chain.balances.get("ETH", ZERO) + lst_amount * rate - min(request.quantity, owed)
        return self._filled(request, request.quantity, "leverage", price=rate)
