"""Mode name -> implementation. Modes without one are refused by ``start`` with LT-003."""

from __future__ import annotations

from basis_live.config import StrategyConfig
from basis_live.errors import EngineInitError
from basis_live.modes.base import StrategyMode
from basis_live.modes.catalog import MODES


def create_mode(config: StrategyConfig) -> StrategyMode:
    spec = MODES[config.mode]
    if config.mode == "pure_lending":
        from basis_live.modes.pure_lending import PureLending

        return PureLending(config)
    if config.mode == "eth_staking_only":
        from basis_live.modes.staking import StakingOnly

        return StakingOnly(config)
    if config.mode == "usdt_market_neutral_no_leverage":
        from basis_live.modes.market_neutral import MarketNeutralStaking

        return MarketNeutralStaking(config)
    if config.mode == "usdt_market_neutral":
        from basis_live.modes.market_neutral import LeveragedMarketNeutral

        return LeveragedMarketNeutral(config)
    if config.mode in ("ml_usdt_directional", "ml_btc_directional"):
        if not config.ml or not config.ml.signal_source:
            raise EngineInitError(f"{config.mode} needs ml.signal_source (a signals file or URL): "
                                  "--set ml.signal_source=PATH")
        from basis_live.modes.directional import Directional, InverseDirectional

        return InverseDirectional(config) if config.mode == "ml_btc_directional" else Directional(config)
    if config.mode == "eth_leveraged":
        from basis_live.modes.leveraged import Leveraged

        return Leveraged(config)
    if config.mode in ("btc_basis", "eth_basis") and spec.implemented:
        from basis_live.modes.basis import BasisMode

        return BasisMode(config)
    raise EngineInitError(
        f"mode {config.mode} is not implemented yet (paper trading supports: "
        f"{', '.join(name for name, s in MODES.items() if s.implemented)}); nothing was started"
    )
