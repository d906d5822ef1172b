"""Portfolio valuation: equity, exposures, margin ratios and health factor from venue accounts and a
market snapshot. Pure functions of their inputs; the engine knows no venue, only ``VenueAccount``s.

Inverse (coin-margined) perps, e.g. "BTC/USD:BTC" in contracts of C = 100 USD: uPnL = contracts x C
x (1/entry - 1/mark) in BTC, valued at the BTC price. For exposure a long of q contracts is taken
apart into what it is: q x C / entry BTC bought with a debt of q x C USD (with margin M BTC the
account's USD value S x (M + qC/entry) - qC is linear in the BTC price S, so the split is exact).
In a USDT share class that is a BTC delta of q x C / entry. In a BTC share class BTC is the unit and
only the USD leg is exposure: ``exposures["USDT"] = -q x C`` and ``net_delta = -q x C / S`` BTC, with
the usual sign convention (net_delta > 0: long the non-share-class asset). So a long of N USD shows
as short N USD, i.e. N / S BTC of exposure to the BTC/USD price (equity_btc = M + N/entry - N/S).
The venue's margin ratio for inverse perps is in the coin: (coin balance + coin uPnL) / (contracts x
C / mark); a venue with both pools reports the worse.

Equity is Decimal (it is money: balances x prices). Ratios (drawdown, margin ratio, health factor)
are floats: they are analytics compared with limits, never sent to a venue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from basis_live.feeds.base import MarketSnapshot
from basis_live.venues.base import ZERO, Position, VenueAccount, inverse_contract_value

#: Tokens priced as another asset (wrapped or pegged forms).
#: Tokens priced as another: WETH is ETH; stETH and eETH are the protocols' rebasing ETH balances
#: (1:1 with the ETH they hold; a wallet holds them for a moment between a stake and its wrap).
#: USD (what an inverse perp's contracts are worth) is valued as USDT.
PRICE_ALIASES = {"WETH": "ETH", "stETH": "ETH", "eETH": "ETH", "USD": "USDT"}


ONE = Decimal(1)


def price_usdt(asset: str, market: MarketSnapshot) -> Decimal:
    """Price of one unit of ``asset`` in USDT (memoised on the snapshot)."""
    price = market.decimals.get(asset)
    if price is None:
        price = market.decimals[asset] = _price_usdt(asset, market)
    return price


def _price_usdt(asset: str, market: MarketSnapshot) -> Decimal:
    asset = PRICE_ALIASES.get(asset, asset)
    if asset == "USDT":
        return ONE
    if asset in market.lst_rate:
        # LSTs are valued through the oracle rate (what AAVE uses), never a market quote.
        return market.decimal("lst_rate", asset) * market.decimal("spot", "ETH")
    if asset in market.spot:
        return market.decimal("spot", asset)
    raise KeyError(f"no price for {asset}")


def eth_per_unit(asset: str, market: MarketSnapshot) -> Decimal | None:
    """ETH delta of one unit of an ETH-like asset (ETH, WETH, LSTs through the oracle rate)."""
    if asset in ("ETH", "WETH"):
        return ONE
    if asset in market.lst_rate:
        return market.decimal("lst_rate", asset)
    return None


@dataclass
class PortfolioView:
    """The whole portfolio at one instant, valued in the share class."""

    market: MarketSnapshot
    share_class: str
    accounts: dict[str, VenueAccount]
    equity: Decimal
    exposures: dict[str, Decimal]  # underlying asset -> net quantity (delta), e.g. {"BTC": 0.001}
    net_delta: Decimal  # share-class value of the non-share-class exposure
    gross_exposure: Decimal  # share-class value of all long + short exposure legs
    margin_ratios: dict[str, float]  # perp venue -> (margin + uPnL) / notional
    health_factor: float | None  # None without debt
    position_values: list[dict[str, object]] = field(default_factory=list)
    #: The largest |value| among ``position_values`` (share class); the max_position_size figure.
    largest_position: Decimal = ZERO

    def balance(self, venue: str, asset: str) -> Decimal:
        account = self.accounts.get(venue)
        return account.balances.get(asset, ZERO) if account else ZERO

    def position(self, venue: str, symbol: str) -> Position | None:
        account = self.accounts.get(venue)
        if account is None:
            return None
        return next((p for p in account.positions if p.symbol == symbol), None)

    def position_quantity(self, venue: str, symbol: str) -> Decimal:
        position = self.position(venue, symbol)
        return position.quantity if position else ZERO

    @property
    def worst_margin_ratio(self) -> float | None:
        return min(self.margin_ratios.values()) if self.margin_ratios else None


def value_portfolio(
    accounts: dict[str, VenueAccount],
    market: MarketSnapshot,
    share_class: str,
    liquidation_threshold: float | None = None,
) -> PortfolioView:
    """Value every balance and position in ``share_class`` at ``market``'s prices."""
    share_price = price_usdt(share_class, market)
    equity_usdt = ZERO
    exposures: dict[str, Decimal] = {}
    gross_usdt = ZERO
    position_values: list[dict[str, object]] = []
    margin_ratios: dict[str, float] = {}
    collateral_usdt = ZERO
    debt_usdt = ZERO

    largest = ZERO

    def _sized(value: Decimal) -> str:
        """A position's share-class value as stored, noting the largest |value| (a risk figure)."""
        nonlocal largest
        if value.copy_abs() > largest:
            largest = value.copy_abs()
        return str(value)

    def expose(asset: str, quantity: Decimal) -> None:
        nonlocal gross_usdt
        underlying = PRICE_ALIASES.get(asset, asset)
        eth = eth_per_unit(asset, market)
        if eth is not None and underlying != "ETH":
            underlying, quantity = "ETH", quantity * eth
        if underlying != share_class:
            exposures[underlying] = exposures.get(underlying, ZERO) + quantity
            gross_usdt += abs(quantity) * price_usdt(underlying, market)

    for venue, account in accounts.items():
        for asset, amount in account.balances.items():
            if not amount:
                continue
            value = amount * price_usdt(asset, market)
            equity_usdt += value
            expose(asset, amount)
            if asset != "USDT" or venue == "wallet":
                position_values.append({"venue": venue, "symbol": asset, "kind": "balance",
                                        "quantity": str(amount), "value": _sized(value / share_price)})
        perp_notional = ZERO
        upnl = ZERO
        coin_upnl: dict[str, Decimal] = {}
        coin_notional: dict[str, Decimal] = {}
        for p in account.positions:
            contract = inverse_contract_value(p.symbol) if p.kind == "perp" else None
            if contract is not None:
                quoted = market.perp_mark.get(venue, {}).get(p.base)
                mark = (market.decimal("perp_mark", p.base, venue) if quoted is not None
                        else (p.mark_price or price_usdt(p.base, market)))
                unrealized = (p.quantity * contract * (1 / p.entry_price - 1 / mark) if p.entry_price
                              else p.unrealized_pnl)  # in the coin
                coin_upnl[p.base] = coin_upnl.get(p.base, ZERO) + unrealized
                coin_notional[p.base] = coin_notional.get(p.base, ZERO) + abs(p.quantity) * contract / mark
                equity_usdt += unrealized * price_usdt(p.base, market)
                entry = p.entry_price or mark
                expose(p.base, p.quantity * contract / entry)
                expose("USD", -p.quantity * contract)
                position_values.append({"venue": venue, "symbol": p.symbol, "kind": "perp",
                                        "quantity": str(p.quantity), "entry_price": str(p.entry_price),
                                        "mark_price": str(mark), "unrealized_pnl": str(unrealized),
                                        "settle": p.base,
                                        "value": _sized(p.quantity * contract / share_price)})
            elif p.kind == "perp":
                # Revalue at the snapshot's mark: an account read a while ago (a slow venue) must
                # still show what the position is worth now.
                quoted = market.perp_mark.get(venue, {}).get(p.base)
                mark = (market.decimal("perp_mark", p.base, venue) if quoted is not None
                        else (p.mark_price or price_usdt(p.base, market)))
                unrealized = p.quantity * (mark - p.entry_price) if p.entry_price is not None else p.unrealized_pnl
                notional = abs(p.quantity) * mark
                perp_notional += notional
                upnl += unrealized
                equity_usdt += unrealized
                expose(p.base, p.quantity)
                position_values.append({"venue": venue, "symbol": p.symbol, "kind": "perp",
                                        "quantity": str(p.quantity), "entry_price": str(p.entry_price),
                                        "mark_price": str(mark), "unrealized_pnl": str(unrealized),
                                        "value": _sized(p.quantity * mark / share_price)})
            elif p.kind in ("supply", "stake"):
                value = p.quantity * price_usdt(p.base, market)
                equity_usdt += value
                collateral_usdt += value
                expose(p.base, p.quantity)
                position_values.append({"venue": venue, "symbol": p.symbol, "kind": p.kind,
                                        "quantity": str(p.quantity), "value": _sized(value / share_price)})
            elif p.kind == "debt":
                value = p.quantity * price_usdt(p.base, market)
                equity_usdt -= value
                debt_usdt += value
                expose(p.base, -p.quantity)
                position_values.append({"venue": venue, "symbol": p.symbol, "kind": "debt",
                                        "quantity": str(p.quantity), "value": _sized(-value / share_price)})
        ratios = [float((account.balances.get("USDT", ZERO) + upnl) / perp_notional)] if perp_notional else []
        ratios += [float((account.balances.get(coin, ZERO) + coin_upnl[coin]) / notional)
                   for coin, notional in coin_notional.items() if notional]
        if ratios:
            margin_ratios[venue] = min(ratios)  # separate margin pools: the worse one counts

    health_factor = None
    reported = [a.health_factor for a in accounts.values() if a.health_factor is not None]
    if reported:
        # The protocol's own figure (live Aave): what liquidations are decided on.
        health_factor = float(min(reported))
    elif debt_usdt > 0 and liquidation_threshold is not None:
        health_factor = float(collateral_usdt * Decimal(repr(liquidation_threshold)) / debt_usdt)
    net_delta_usdt = sum((q * price_usdt(a, market) for a, q in exposures.items()), ZERO)
    return PortfolioView(
        market=market,
        share_class=share_class,
        accounts=accounts,
        equity=equity_usdt / share_price,
        exposures=exposures,
        net_delta=net_delta_usdt / share_price,
        gross_exposure=gross_usdt / share_price,
        margin_ratios=margin_ratios,
        health_factor=health_factor,
        position_values=position_values,
        largest_position=largest,
    )
