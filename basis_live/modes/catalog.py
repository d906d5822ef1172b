"""What each of the nine modes is, without importing any mode logic (cheap: used by config checks).

``implemented`` says whether the engine can trade the mode yet; ``start`` refuses the others with
LT-003 instead of pretending.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModeSpec:
    name: str
    share_classes: tuple[str, ...]
    asset: str
    uses_perps: bool
    uses_lending: bool
    uses_borrowing: bool
    uses_staking: bool
    implemented: bool
    summary: str


MODES: dict[str, ModeSpec] = {
    spec.name: spec
    for spec in (
        ModeSpec("pure_lending", ("USDT",), "USDT", False, True, False, False, True,
                 "all capital supplied to AAVE V3 USDT"),
        ModeSpec("btc_basis", ("USDT",), "BTC", True, False, False, False, True,
                 "long BTC spot, short BTC perps of equal size across binance/bybit/okx"),
        ModeSpec("eth_basis", ("USDT",), "ETH", True, False, False, False, True,
                 "long ETH spot, short ETH perps of equal size across binance/bybit/okx"),
        ModeSpec("eth_staking_only", ("ETH",), "ETH", False, False, False, True, True,
                 "all capital staked as an LST (weETH or wstETH)"),
        ModeSpec("eth_leveraged", ("ETH",), "ETH", False, True, True, True, True,
                 "LST supplied to AAVE, WETH borrowed and restaked to a target LTV"),
        ModeSpec("usdt_market_neutral_no_leverage", ("USDT",), "ETH", True, False, False, True, True,
                 "half staked as LST, hedged with short ETH perps"),
        ModeSpec("usdt_market_neutral", ("USDT",), "ETH", True, True, True, True, True,
                 "leveraged LST on AAVE, hedged with short ETH perps"),
        ModeSpec("ml_btc_directional", ("BTC",), "BTC", True, False, False, False, True,
                 "BTC perp long/short/flat from ML signals, BTC-margined (inverse)"),
        ModeSpec("ml_usdt_directional", ("USDT",), "BTC", True, False, False, False, True,
                 "BTC perp long/short/flat from ML signals, USDT-margined"),
    )
}
