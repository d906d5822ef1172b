"""ml_usdt_directional: a BTC perp on binance long, short or flat from ML signals, USDT-margined.

A signal at or above ``signal_threshold`` confidence opens a position of equity x
``position_leverage`` in its direction; each position is closed by, in this order of precedence:
its stop-loss price, its take-profit price, or the end of the signal's candle. A neutral signal or
one below the threshold opens nothing. Each signal is acted on once.

ml_btc_directional (``InverseDirectional``) trades the same signals in a BTC share class: its capital
is BTC margin on binance and it trades the BTC-margined inverse perp "BTC/USD:BTC" (Binance COIN-M
BTCUSD_PERP: contracts of 100 USD, P&L, fees and funding in BTC). A position's notional is equity in
BTC x price x ``position_leverage`` USD, i.e. that / 100 contracts (rounded down to whole contracts).
The paper venues and the feeds have no inverse price series: its mark and funding rate are binance's
linear BTC perp's (an approximation; the two usually differ by a few bps).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from basis_live.engine.portfolio import PortfolioView
from basis_live.feeds.base import MarketSnapshot
from basis_live.modes.base import OrderIntent, StrategyMode
from basis_live.modes.signals import Signal, SignalBook
from basis_live.venues.base import inverse_contract_value

VENUE = "binance"


class Directional(StrategyMode):
    """USDT-margined: a linear perp sized in BTC."""

    def __init__(self, config) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config)
        self.name = config.mode
        self.symbol = self.perp_symbol(config.asset)
        self.ml = config.ml
        self.book = SignalBook(config.ml.signal_source)
        self.acted: set = set()  # signal timestamps already traded
        self.open_signal: Signal | None = None

    @staticmethod
    def perp_symbol(asset: str) -> str:
        return f"{asset}/USDT:USDT"

    def initial_funding(self, capital: Decimal, market: MarketSnapshot) -> dict[str, dict[str, Decimal]]:
        return {VENUE: {"USDT": capital}}

    def entry_quantity(self, equity: Decimal, mark: float) -> Decimal:
        """Order quantity (unrounded) for a position of equity x ``position_leverage``."""
        return equity * Decimal(repr(self.ml.position_leverage)) / Decimal(repr(mark))

    def _exit_reason(self, signal: Signal, mark: float, now) -> str | None:  # type: ignore[no-untyped-def]
        long = signal.signal == "long"
        if signal.stop_loss is not None and (mark <= signal.stop_loss if long else mark >= signal.stop_loss):
            return "stop_loss"
        if signal.take_profit is not None and (mark >= signal.take_profit if long else mark <= signal.take_profit):
            return "take_profit"
        if now >= signal.timestamp + timedelta(seconds=self.ml.candle_seconds):
            return "end_of_candle"
        return None

    def decide(self, view: PortfolioView) -> list[OrderIntent]:
        now = view.market.timestamp
        mark = view.market.perp_mark[VENUE][self.config.asset]
        position = view.position_quantity(VENUE, self.symbol)
        if position and self.open_signal is not None:
            if self._exit_reason(self.open_signal, mark, now) is None:
                return []
            self.open_signal = None
            return [OrderIntent(VENUE, self.symbol, "sell" if position > 0 else "buy", abs(position), "exit_full", True,
                                reduce_only=True)]
        signal = self.book.latest(now)
        if signal is None or signal.timestamp in self.acted:
            return []
        self.acted.add(signal.timestamp)
        if signal.signal == "neutral" or signal.confidence < self.ml.signal_threshold:
            return []
        if self._exit_reason(signal, mark, now) is not None:
            return []  # already stopped out, at target or past its candle
        quantity = self.entry_quantity(view.equity, mark)
        self.open_signal = signal
        return [OrderIntent(VENUE, self.symbol, "buy" if signal.signal == "long" else "sell", quantity, "entry_full",
                            False)]

    def reduce(self, view: PortfolioView, breach_types: list[str]) -> list[OrderIntent]:
        return self._close(view, "risk_reduce")

    def free_for_withdrawal(self, view: PortfolioView, fraction: Decimal) -> list[OrderIntent] | None:
        """Close ``fraction`` of the open position (reduce-only); its margin stays on binance (USDT, or
        BTC for the inverse perp), where ``initial_funding`` puts deposits."""
        position = view.position_quantity(VENUE, self.symbol)
        if not position:
            return []
        return [OrderIntent(VENUE, self.symbol, "sell" if position > 0 else "buy", abs(position) * fraction,
                            "exit_partial", True, reduce_only=True)]

    def unwind(self, view: PortfolioView) -> list[list[OrderIntent]]:
        intents = self._close(view, "exit_full")
        return [intents] if intents else []

    def _close(self, view: PortfolioView, purpose: str) -> list[OrderIntent]:
        position = view.position_quantity(VENUE, self.symbol)
        if not position:
            return []
        self.open_signal = None
        return [OrderIntent(VENUE, self.symbol, "sell" if position > 0 else "buy", abs(position), purpose, True,  # type: ignore[arg-type]
                            reduce_only=True)]


class InverseDirectional(Directional):
    """ml_btc_directional: BTC share class, BTC margin, the inverse perp in 100 USD contracts."""

    @staticmethod
    def perp_symbol(asset: str) -> str:
        return f"{asset}/USD:{asset}"

    def initial_funding(self, capital: Decimal, market: MarketSnapshot) -> dict[str, dict[str, Decimal]]:
        return {VENUE: {self.config.asset: capital}}

    def entry_quantity(self, equity: Decimal, mark: float) -> Decimal:
        # equity is in BTC: notional = equity x price x leverage USD, in contracts of 100 USD.
        contract = inverse_contract_value(self.symbol)
        assert contract is not None
        return equity * Decimal(repr(mark)) * Decimal(repr(self.ml.position_leverage)) / contract
