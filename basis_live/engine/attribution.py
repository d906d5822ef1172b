"""P&L attribution by source, each tracked from its own events, reconciled against balance P&L.

Between two attribution points (strategy ticks) the holdings of the earlier point are revalued from
the earlier market to the later one, factor by factor, so each factor's move lands in its source:

- price: spot and perp marks, the ETH price behind LSTs, USDT's value in an ETH/BTC share class; an
  inverse perp's whole revaluation (contracts x C x (1/entry - 1/mark), in its coin, at the coin's
  price: both factors are prices);
- lending_interest: an AAVE supply's liquidityIndex; borrow_cost: the variableBorrowIndex on debt;
- staking_yield: an LST's oracle rate (no base APR on top).

Trades, funding and gas are cash events read from the fills and the venues' ledgers: fees (the fee
of each fill), slippage (fill price against the mark at the fill, in the pair's quote asset; for an
inverse perp contracts x C x (1/price - 1/mark) in its coin),
funding, gas, and seasonal_rewards: each EIGEN / ETHFI drop (a ``reward`` ledger entry) at the
token's price at the drop; a held token's later price moves are price P&L. What the balance
P&L moves beyond the sum of all sources is the ``gap``; it is stored and shown, and one above
0.01 % of capital means an unmodelled flow (a bug). Decimal throughout: this is money.
"""

from __future__ import annotations

from decimal import Decimal

from basis_live.engine.portfolio import PRICE_ALIASES, price_usdt
from basis_live.feeds.base import MarketSnapshot
from basis_live.venues.base import Fill, LedgerEntry, VenueAccount, inverse_contract_value

SOURCES = ("price", "funding", "lending_interest", "borrow_cost", "staking_yield", "seasonal_rewards", "fees",
           "slippage", "gas")
#: Ledger entry kind -> source (anything else is gas).
_LEDGER_SOURCES = {"funding": "funding", "fee": "fees", "reward": "seasonal_rewards"}
ZERO = Decimal(0)


class _Holding:
    """One line of the book: quantity x unit value, the unit value a product of named factors.
    Never changed once made (a plain slotted class, not a frozen dataclass: a tick builds the whole
    book anew and a frozen dataclass costs several times as much to make)."""

    __slots__ = ("kind", "venue", "asset", "quantity", "entry_price", "contract")

    def __init__(self, kind: str, venue: str, asset: str, quantity: Decimal, entry_price: Decimal = ZERO,
                 contract: Decimal | None = None) -> None:
        self.kind = kind  # balance | supply | debt | perp
        self.venue = venue
        self.asset = asset
        self.quantity = quantity  # balances and perps: units; supply/debt: scaled (divided by the index)
        self.entry_price = entry_price  # perps only
        self.contract = contract  # inverse perps: USD per contract (quantity in contracts)


def _factors(h: _Holding, market: MarketSnapshot) -> tuple[tuple[str, Decimal], ...]:
    """(source, factor) pairs whose product is the holding's unit value in USDT (memoised on the
    snapshot per kind and asset)."""
    key = ("factors", h.kind, h.asset)
    factors = market.decimals.get(key)
    if factors is None:
        asset = PRICE_ALIASES.get(h.asset, h.asset)
        if asset in market.lst_rate:
            base = (("staking_yield", market.decimal("lst_rate", asset)),
                    ("price", market.decimal("spot", "ETH")))
        else:
            base = (("price", price_usdt(asset, market)),)
        if h.kind == "supply":
            factors = (("lending_interest", market.decimal("lending_index", h.asset)),) + base
        elif h.kind == "debt":
            factors = (("borrow_cost", market.decimal("borrow_index", h.asset)),) + base
        else:
            factors = base
        market.decimals[key] = factors
    return factors


def _holding_value(h: _Holding, market: MarketSnapshot) -> Decimal:
    if h.kind == "perp" and h.contract is not None:
        if not h.entry_price:
            return ZERO
        coin = h.quantity * h.contract * (1 / h.entry_price - 1 / market.decimal("perp_mark", h.asset, h.venue))
        return coin * price_usdt(h.asset, market)
    if h.kind == "perp":
        return h.quantity * (market.decimal("perp_mark", h.asset, h.venue) - h.entry_price)
    value = h.quantity
    for _, factor in _factors(h, market):
        value *= factor
    return -value if h.kind == "debt" else value


def holdings(accounts: dict[str, VenueAccount], market: MarketSnapshot) -> list[_Holding]:
    book = []
    for venue, account in accounts.items():
        for asset, amount in account.balances.items():
            if amount:
                book.append(_Holding("balance", venue, asset, amount))
        for p in account.positions:
            if p.kind == "perp":
                book.append(_Holding("perp", venue, p.base, p.quantity, p.entry_price or ZERO,
                                     inverse_contract_value(p.symbol)))
            elif p.kind in ("supply", "debt"):
                table = "lending_index" if p.kind == "supply" else "borrow_index"
                book.append(_Holding(p.kind, venue, p.base, p.quantity / market.decimal(table, p.base)))
    return book


def book_value(book: list[_Holding], market: MarketSnapshot) -> Decimal:
    return sum((_holding_value(h, market) for h in book), ZERO)


class PnLAttribution:
    def __init__(self, share_class: str) -> None:
        self.share_class = share_class
        self.totals: dict[str, Decimal] = {source: ZERO for source in SOURCES}
        self.gap = ZERO
        self._book: list[_Holding] = []
        self._market: MarketSnapshot | None = None
        self._value_usdt = ZERO
        self._fills: list[Fill] = []
        self._ledger: list[LedgerEntry] = []
        self._fill_marks: list[tuple[Decimal, str] | None] = []

    def start(self, accounts: dict[str, VenueAccount], market: MarketSnapshot) -> None:
        self._book = holdings(accounts, market)
        self._market = market
        self._value_usdt = book_value(self._book, market)

    def rebase(self, accounts: dict[str, VenueAccount], market: MarketSnapshot) -> None:
        """After a deposit or withdrawal: the new book is the baseline, the flow is not P&L. Call
        ``step`` just before the flow so nothing earlier is lost."""
        self.start(accounts, market)

    def record_fill(self, fill: Fill, market: MarketSnapshot) -> None:
        """A fill, with the mark it traded against (the market when it was collected)."""
        self._fills.append(fill)
        self._fill_marks.append(_mark_for(fill, market))

    def record_ledger(self, entry: LedgerEntry) -> None:
        self._ledger.append(entry)

    def step(self, accounts: dict[str, VenueAccount], market: MarketSnapshot) -> None:
        """Attribute everything between the previous point and now."""
        if self._market is None:
            self.start(accounts, market)
            return
        before, now = self._market, market
        moves: dict[str, Decimal] = {source: ZERO for source in SOURCES}
        for h in self._book:
            if h.kind == "perp" and h.contract is not None:
                moves["price"] += _holding_value(h, now) - _holding_value(h, before)
                continue
            if h.kind == "perp":
                moves["price"] += h.quantity * (now.decimal("perp_mark", h.asset, h.venue)
                                                - before.decimal("perp_mark", h.asset, h.venue))
                continue
            # Move one factor at a time (old -> new), in a fixed order: the products telescope, so
            # the parts add up exactly to the holding's change in value.
            old = _factors(h, before)
            new = _factors(h, now)
            if old == new:
                continue  # e.g. a USDT balance in a USDT share class: nothing moved
            sign = -1 if h.kind == "debt" else 1
            count = len(old)
            for i in range(count):
                source, old_factor = old[i]
                new_factor = new[i][1]
                if new_factor == old_factor:
                    continue  # this factor's part is exactly zero
                part = h.quantity * (new_factor - old_factor)
                for j in range(i):
                    part *= new[j][1]
                for j in range(i + 1, count):
                    part *= old[j][1]
                moves[source] += sign * part
        for fill, mark in zip(self._fills, self._fill_marks):
            moves["fees"] -= fill.fee * price_usdt(fill.fee_asset, now) if fill.fee else ZERO
            if mark is not None:
                quote_mark, quote = mark
                signed = fill.quantity if fill.side == "buy" else -fill.quantity
                contract = inverse_contract_value(fill.symbol)
                if contract is not None:
                    # Paid in the coin: the new position's value at the mark less what it cost.
                    moves["slippage"] += signed * contract * (1 / fill.price - 1 / quote_mark) * price_usdt(quote, now)
                    continue
                moves["slippage"] += (quote_mark - fill.price) * signed * price_usdt(quote, now)
        for entry in self._ledger:
            price = price_usdt(entry.asset, now)
            source = _LEDGER_SOURCES.get(entry.kind, "gas")
            if source == "seasonal_rewards" and entry.price_usd is not None:
                # Booked at the drop's price; what the token moved since is price P&L.
                moves["price"] += entry.amount * (price - entry.price_usd)
                price = entry.price_usd
            moves[source] += entry.amount * price
        book = holdings(accounts, now)
        value_now = book_value(book, now)
        # Convert to the share class at today's price; the old book's USDT value also moves with
        # the share class's own price (an ETH share class holding USDT): that is price P&L too.
        share_before, share_now = price_usdt(self.share_class, before), price_usdt(self.share_class, now)
        for source, amount in moves.items():
            self.totals[source] += amount / share_now
        self.totals["price"] += self._value_usdt * (1 / share_now - 1 / share_before)
        change = value_now / share_now - self._value_usdt / share_before
        self.gap += change - sum((amount / share_now for amount in moves.values()), ZERO) - \
            self._value_usdt * (1 / share_now - 1 / share_before)
        self._book, self._market, self._value_usdt = book, now, value_now
        self._fills, self._fill_marks, self._ledger = [], [], []

    def as_dict(self) -> dict[str, str]:
        out = {source: str(amount.quantize(Decimal("0.00000001"))) for source, amount in self.totals.items()}
        out["gap"] = str(self.gap.quantize(Decimal("0.00000001")))
        return out


def _mark_for(fill: Fill, market: MarketSnapshot) -> tuple[Decimal, str] | None:
    """(the mark a fill traded against in its quote asset, that asset); None for fills that move
    value 1:1 (AAVE, staking). An inverse perp's: (its mark in USD, its settle coin)."""
    if inverse_contract_value(fill.symbol) is not None:
        return market.decimal("perp_mark", fill.symbol.split("/")[0], fill.venue), fill.symbol.split(":")[1]
    if fill.symbol.endswith(":USDT"):
        return market.decimal("perp_mark", fill.symbol.split("/")[0], fill.venue), "USDT"
    if "/" in fill.symbol:
        base, quote = fill.symbol.split("/")[:2]
        if quote == "USDT":
            return price_usdt(base, market), quote
        return price_usdt(base, market) / price_usdt(quote, market), quote
    return None
