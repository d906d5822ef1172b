"""Builds and validates the live venues of a run: ccxt accounts on the exchanges (and, once wired,
the on-chain accounts). The engine never knows which kind it drives; ``venues.factory`` builds
the paper ones.

- Which symbols each exchange trades follows the paper venues: the strategy's asset as spot on
  binance (the basis modes' long leg) and as a USDT-margined linear perp on every enabled exchange.
- Credentials, endpoint routing and overrides come from ``venues.cex_clients`` (environment
  variables per environment and venue; ``venues.<venue>.api_url`` or ``..._API_URL`` overrides).
- ``validate_live_clients`` is what ``basis-live validate --env`` prints and what a live ``start``
  runs before it trades: a run refuses to start when any check fails.

ccxt is imported only when a live venue is built or validated (``status`` and ``health`` stay fast).
"""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Mapping

from basis_live.errors import EngineInitError
from basis_live.venues.base import Venue

if TYPE_CHECKING:
    from basis_live.config import StrategyConfig
    from basis_live.venues.cex_clients import ClientCheck

CEX_VENUES = ("binance", "bybit", "okx")
#: The exchange that holds the spot leg (as in the paper venues).
SPOT_VENUE = "binance"


def enabled_venues(strategy: "StrategyConfig") -> list[str]:
    return [name for name, venue in strategy.venues.items() if venue.enabled]


def cex_symbols(strategy: "StrategyConfig", venue: str) -> list[str]:
    """ccxt symbols one exchange trades for this strategy: "BTC/USDT" spot on binance, "BTC/USDT:USDT"
    perps wherever the strategy hedges or trades perps."""
    asset = strategy.asset
    symbols = [f"{asset}/USDT"] if venue == SPOT_VENUE and strategy.mode in ("btc_basis", "eth_basis") else []
    return symbols + [f"{asset}/USDT:USDT"]


#: Modes whose live venues are wired: the CEX-only basis modes and the chain-only modes. The
#: market-neutral modes need both at once (a feed merging exchange and chain data, capital on both
#: sides), and the ML modes a live signal loop: not built yet.
LIVE_MODES = ("btc_basis", "eth_basis", "pure_lending", "eth_staking_only", "eth_leveraged")


def refuse_unsupported(strategy: "StrategyConfig") -> None:
    """LT-003 before anything is built for a live run this build cannot trade."""
    if strategy.mode not in LIVE_MODES:
        raise EngineInitError(
            f"live trading of {strategy.mode} is not supported yet (live modes: {', '.join(LIVE_MODES)}); "
            "paper-trade it without --env")


def uses_chain(strategy: "StrategyConfig") -> bool:
    return any(name not in CEX_VENUES for name in enabled_venues(strategy))


async def build_live_chain(strategy: "StrategyConfig", environment: str, journal: Any,
                           env: Mapping[str, str] | None = None) -> tuple[dict[str, Venue], Any]:
    """The strategy's on-chain venues for ``environment``'s network, over one TransactionSender (the
    strategy wallet's key, the fee cap and receipt timeout of the network, ``journal`` for
    exactly-once), and the ChainFeed reading the same node. Credentials are LT-001 when missing."""
    from basis_live.feeds.base import FeedError
    from basis_live.feeds.chain import ChainFeed
    from basis_live.networks import chain_credentials, network_for
    from basis_live.venues.onchain import AaveV3Config, AaveV3Venue, WalletVenue, aave_revert_reason
    from basis_live.venues.staking_onchain import (
        EtherFiConfig,
        EtherFiVenue,
        LeverageConfig,
        LidoConfig,
        LidoVenue,
        OnchainLeverageVenue,
        SwapConfig,
        SwapSettings,
        SwapVenue,
    )
    from basis_live.venues.transactions import FeePolicy, SenderSettings, TransactionSender, connect

    credentials = chain_credentials(environment, env)
    network_name, network = network_for(environment, env)
    w3 = connect(credentials.rpc_url, timeout=strategy.execution.venue_timeout_seconds)
    sender = TransactionSender(
        w3, credentials.private_key, journal, FeePolicy(max_fee_gwei=Decimal(repr(network.max_fee_gwei))),
        SenderSettings(receipt_timeout=network.receipt_timeout_seconds, poll_interval=network.receipt_poll_seconds,
                       chain_id=network.chain_id),
        decode_revert=aave_revert_reason)
    # The run's market data, and where the leverage loop finds Aave's oracle.
    try:
        feed = ChainFeed(w3, network, network_name, refresh_seconds=network.market_refresh_seconds)
    except FeedError as exc:  # a network without the Aave oracle to price from: a config problem
        raise EngineInitError(str(exc)) from None
    enabled = set(enabled_venues(strategy))
    swap = SwapSettings(max_slippage=Decimal(repr(network.swap.max_slippage_bps)) / 10_000) if network.swap else None
    router = network.swap.router if network.swap else None
    venues: dict[str, Venue] = {}
    if "wallet" in enabled:
        # The rebasing tokens too: a stake holds them for a moment before the wrap.
        rebasing = {**({"stETH": network.lido.steth} if network.lido else {}),
                    **({"eETH": network.etherfi.eeth} if network.etherfi else {})}
        venues["wallet"] = WalletVenue(w3, sender, {**network.tokens, **rebasing}, network.wallet_allowlist)
    staking: dict[str, Any] = {}
    if "lido" in enabled and network.lido and router:
        staking["wstETH"] = venues["lido"] = LidoVenue(
            w3, sender, LidoConfig(network.lido.steth, network.lido.wsteth, router, swap))  # type: ignore[arg-type]
    if "etherfi" in enabled and network.etherfi and router:
        staking["weETH"] = venues["etherfi"] = EtherFiVenue(
            w3, sender, EtherFiConfig(network.etherfi.liquidity_pool, network.etherfi.eeth, network.etherfi.weeth,
                                      router, swap))  # type: ignore[arg-type]
    if "uniswap" in enabled and router:
        venues["uniswap"] = SwapVenue(w3, sender, SwapConfig(router, network.tokens["USDT"], swap))  # type: ignore[arg-type]
    if "aave_v3" in enabled and network.aave_v3:
        reserves = {symbol: address for symbol, address in network.tokens.items()
                    if symbol in ("USDT", "WETH", "weETH", "wstETH")}
        aave = AaveV3Venue(w3, sender, AaveV3Config(pool=network.aave_v3.pool, data_provider=network.aave_v3.data_provider,
                                                     tokens=reserves))
        venues["aave_v3"] = aave
        if strategy.leverage is not None:
            oracle = await feed.oracle_contract()
            # The loop's floor guards against liquidation inside a step, not the strategy's risk
            # threshold: a delever after a breach must still be able to withdraw a little collateral.
            venues["aave_v3"] = OnchainLeverageVenue(aave, staking, LeverageConfig(weth=network.tokens["WETH"],
                                                                                   oracle=oracle.address))
    missing = sorted(enabled - set(venues))
    if missing:
        raise EngineInitError(f"{network_name} has no configured addresses for {', '.join(missing)} "
                              "(see `basis-live validate --env`)")
    return venues, feed


async def prepare_live_chain(venues: dict[str, Venue], strategy: "StrategyConfig", environment: str, run_id: str,
                             env: Mapping[str, str] | None = None) -> None:
    """What a leveraged run needs before its first loop: the ETH-correlated eMode on Aave when the
    strategy's leverage is sized for it (once per account; a no-op when already set)."""
    from basis_live.networks import network_for

    leverage = strategy.leverage
    aave = venues.get("aave_v3")
    if leverage is not None and leverage.emode and aave is not None and hasattr(aave, "set_emode"):
        _, network = network_for(environment, env)
        assert network.aave_v3 is not None
        await aave.set_emode(network.aave_v3.emode_eth_category, action_id=f"emode-{run_id}")


def build_live_venues(strategy: "StrategyConfig", environment: str,
                      env: Mapping[str, str] | None = None) -> dict[str, Venue]:
    """One CcxtVenue per enabled exchange, with credentials and endpoints of ``environment``.
    Missing credentials are LT-001 naming the variable (nothing is built)."""
    from basis_live.venues.cex import CcxtVenue
    from basis_live.venues.cex_clients import api_url_override, create_exchange, credentials_from_env

    refuse_unsupported(strategy)
    env = os.environ if env is None else env
    names = [name for name in enabled_venues(strategy) if name in CEX_VENUES]
    credentials = {name: credentials_from_env(environment, name, env) for name in names}
    timeout_ms = int(strategy.execution.venue_timeout_seconds * 1000)
    venues: dict[str, Venue] = {}
    for name in names:
        exchange = create_exchange(name, environment, credentials[name],
                                   api_url_override(environment, name, strategy.venues[name].api_url, env), timeout_ms)
        venues[name] = CcxtVenue(exchange, name, cex_symbols(strategy, name),
                                 funding_poll_seconds=strategy.execution.funding_poll_seconds)
    return venues


async def validate_live_clients(strategy: "StrategyConfig", environment: str,
                                env: Mapping[str, str] | None = None) -> list["ClientCheck"]:
    """Every client the strategy needs, checked in parallel (see ``validate_cex_client``)."""
    from basis_live.venues.cex_clients import api_url_override, validate_cex_client

    env = os.environ if env is None else env
    enabled = enabled_venues(strategy)
    jobs = [validate_cex_client(name, environment, api_url_override(environment, name, strategy.venues[name].api_url,
                                                                    env), env)
            for name in enabled if name in CEX_VENUES]
    if any(name not in CEX_VENUES for name in enabled):
        from basis_live.venues.chain_clients import validate_chain_client

        jobs.append(validate_chain_client(strategy, environment, env))
    return [check for checks in await asyncio.gather(*jobs) for check in checks]


def failed_checks(checks: list["ClientCheck"]) -> list[str]:
    """One line per failed check: "binance reachable: ConnectionRefused..."."""
    return [f"{c.client} {c.check}: {c.detail}" for c in checks if not c.ok]
