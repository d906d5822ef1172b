"""Builds the venues a run needs. Paper only for now: live venues (ccxt, web3) come later and
will be chosen here by execution mode, so the engine never knows which kind it drives."""

from __future__ import annotations

from decimal import Decimal

from basis_live.config import RunConfig
from basis_live.feeds.base import MarketSnapshot
from basis_live.modes.base import StrategyMode
from basis_live.venues.base import Venue
from basis_live.venues.paper import AaveRiskParams, FeeSchedule, PaperChain, PaperExchange, SlippageSchedule

CEX_VENUES = ("binance", "bybit", "okx")
CHAIN_VENUES = ("wallet", "aave_v3", "etherfi", "lido", "uniswap")


def build_paper_venues(config: RunConfig, mode: StrategyMode, market: MarketSnapshot) -> tuple[dict[str, Venue], list]:
    """Paper venues for every enabled venue of the strategy, funded as the mode says."""
    strategy = config.strategy
    execution = strategy.execution
    slippage = SlippageSchedule(tuple((Decimal(repr(b.max_notional)), Decimal(repr(b.bps))) for b in execution.slippage))
    venues: dict[str, Venue] = {}
    simulated: list = []
    enabled = [name for name, v in strategy.venues.items() if v.enabled]
    unsupported = [name for name in enabled if name not in CEX_VENUES + CHAIN_VENUES]
    if unsupported:
        from basis_live.errors import EngineInitError

        raise EngineInitError(f"paper venue for {', '.join(unsupported)} is not implemented yet")
    for name in enabled:
        if name in CEX_VENUES:
            venue_cfg = strategy.venues[name]
            exchange = PaperExchange(
                name,
                FeeSchedule(Decimal(repr(venue_cfg.maker_fee)), Decimal(repr(venue_cfg.taker_fee))),
                slippage,
                spot_bases=(strategy.asset,) if name == "binance" else (),
                perp_bases=(strategy.asset,),
                # A coin share class trading perps (ml_btc_directional) margins them in its own coin.
                inverse_bases=(strategy.asset,) if name == "binance" and strategy.share_class == strategy.asset
                and strategy.asset == "BTC" else (),
            )
            venues[name] = exchange
            simulated.append(exchange)
    if any(name in CHAIN_VENUES for name in enabled):
        leverage = strategy.leverage
        risk = AaveRiskParams() if leverage is None else AaveRiskParams(
            emode=leverage.emode,
            emode_ltv=Decimal(repr(leverage.max_ltv)) if leverage.emode else AaveRiskParams.emode_ltv,
            emode_liquidation_threshold=Decimal(repr(leverage.liquidation_threshold)) if leverage.emode
            else AaveRiskParams.emode_liquidation_threshold,
        )
        chain = PaperChain(execution.gas_units, risk)
        if "wallet" in enabled:
            venues["wallet"] = chain.wallet
        if "aave_v3" in enabled:
            venues["aave_v3"] = chain.aave
        if "etherfi" in enabled:
            venues["etherfi"] = chain.etherfi
        if "lido" in enabled:
            venues["lido"] = chain.lido
        if "uniswap" in enabled:
            venues["uniswap"] = chain.add_swap(Decimal(repr(strategy.venues["uniswap"].taker_fee)), slippage)
        simulated.append(chain)
    move_paper_funds(venues, mode.initial_funding(config.initial_capital, market))
    return venues, simulated


def move_paper_funds(venues: dict[str, Venue], plan: dict[str, dict[str, Decimal]], sign: int = 1) -> None:
    """Credit (sign 1) or debit (sign -1) paper accounts: venue -> asset -> amount. On live venues the
    operator moves the money; the engine only accounts for it."""
    for venue_name, assets in plan.items():
        target = venues[venue_name]
        for asset, amount in assets.items():
            if isinstance(target, PaperExchange):
                target.fund(asset, sign * amount)
            else:
                target.chain.fund(asset, sign * amount)  # type: ignore[attr-defined]
