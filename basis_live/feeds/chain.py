"""Market data read from the chain for live on-chain runs: the prices, rates and indices that Aave
itself uses, so the engine's valuation, health factor and attribution agree with the protocol.

Per refresh (at most one per ``refresh_seconds`` of wall time, 12 s: one block):

- ``spot``: ETH, USDT and the LSTs in USD from the Aave oracle (``AaveOracle.getAssetPrice``, 8
  decimals; the oracle comes from ``Pool.ADDRESSES_PROVIDER().getPriceOracle()``). ETH is WETH's
  price.
- ``lst_rate``: LST oracle price / WETH oracle price: the LST/ETH rate Aave values collateral at
  (on mainnet a CAPO-bounded exchange-rate oracle), so staking yield is the drift of that rate.
- ``lending_index`` / ``borrow_index``: ``Pool.getReserveNormalizedIncome`` /
  ``getReserveNormalizedVariableDebt`` (RAY as ratios), which accrue up to the current block
  (``getReserveData``'s stored indices only move when a transaction touches the reserve).
- ``lending_apr`` / ``borrow_apr``: the data provider's current liquidity / variable borrow rates.
- ``gas_price_gwei``: ``eth_gasPrice``.

No perp or BTC data: the on-chain modes hold none (the market-neutral modes, which also hedge on
the exchanges, are not live-wired yet). A read that fails is a ``FeedError`` naming the call.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from basis_live.feeds.base import FeedError, MarketSnapshot, PolledFeed

RAY = Decimal(10) ** 27
ORACLE_DECIMALS = 8


def _abi() -> dict[str, list[dict[str, Any]]]:
    from basis_live.venues.transactions import abi_from_signatures

    return {
        "pool": abi_from_signatures(
            "function ADDRESSES_PROVIDER() view returns (address)",
            "function getReserveNormalizedIncome(address asset) view returns (uint256)",
            "function getReserveNormalizedVariableDebt(address asset) view returns (uint256)",
        ),
        "provider": abi_from_signatures("function getPriceOracle() view returns (address)"),
        "oracle": abi_from_signatures("function getAssetPrice(address asset) view returns (uint256)"),
        "data_provider": abi_from_signatures(
            "function getReserveData(address asset) view returns (uint256 unbacked, uint256 accruedToTreasuryScaled, "
            "uint256 totalAToken, uint256 totalStableDebt, uint256 totalVariableDebt, uint256 liquidityRate, "
            "uint256 variableBorrowRate, uint256 stableBorrowRate, uint256 averageStableBorrowRate, "
            "uint256 liquidityIndex, uint256 variableBorrowIndex, uint40 lastUpdateTimestamp)"),
    }


class ChainFeed(PolledFeed):
    is_sample = False

    def __init__(self, w3: Any, network: Any, network_name: str, refresh_seconds: float = 12.0) -> None:
        if network.aave_v3 is None or "WETH" not in network.tokens:
            raise FeedError(f"{network_name}: the chain feed reads prices from the Aave oracle: configure aave_v3 "
                            "and tokens.WETH for this network")
        self.w3 = w3
        self.network = network
        self.refresh_seconds = refresh_seconds
        self.poll_seconds = refresh_seconds
        self.start = datetime.now(timezone.utc)
        self.end = None
        self.label = f"LIVE CHAIN DATA ({network_name}, Aave oracle and reserves)"
        abi = _abi()
        self._abi = abi
        self.pool = w3.eth.contract(address=w3.to_checksum_address(network.aave_v3.pool), abi=abi["pool"])
        self.data_provider = w3.eth.contract(address=w3.to_checksum_address(network.aave_v3.data_provider),
                                             abi=abi["data_provider"])
        self._oracle: Any = None

    async def _call(self, what: str, awaitable: Any) -> Any:
        try:
            return await awaitable
        except Exception as exc:  # noqa: BLE001 - any failure means no fresh market: say which
            raise FeedError(f"chain data unavailable: {what}: {type(exc).__name__}: {str(exc)[:160]}") from None

    async def oracle_contract(self) -> Any:
        """The AaveOracle the pool's addresses provider names (read once)."""
        if self._oracle is None:
            provider = await self._call("Pool.ADDRESSES_PROVIDER", self.pool.functions.ADDRESSES_PROVIDER().call())
            contract = self.w3.eth.contract(address=provider, abi=self._abi["provider"])
            oracle = await self._call("getPriceOracle", contract.functions.getPriceOracle().call())
            self._oracle = self.w3.eth.contract(address=oracle, abi=self._abi["oracle"])
        return self._oracle

    async def _read(self, ts: datetime) -> MarketSnapshot:
        oracle = await self.oracle_contract()
        tokens = {symbol: self.w3.to_checksum_address(address) for symbol, address in self.network.tokens.items()}
        usd: dict[str, float] = {}
        for symbol, token in tokens.items():
            raw = await self._call(f"oracle price of {symbol}", oracle.functions.getAssetPrice(token).call())
            usd[symbol] = float(Decimal(raw) / Decimal(10**ORACLE_DECIMALS))
        eth = usd["WETH"]
        if eth <= 0:
            raise FeedError("chain data unavailable: the Aave oracle prices WETH at 0")
        lst_rate = {symbol: usd[symbol] / eth for symbol in ("weETH", "wstETH") if symbol in usd}
        spot = {"USDT": usd.get("USDT", 1.0), "ETH": eth, "WETH": eth,
                **{symbol: usd[symbol] for symbol in lst_rate}}
        lending_index, borrow_index, lending_apr, borrow_apr = {}, {}, {}, {}
        for symbol, token in tokens.items():
            income = await self._call(f"normalized income of {symbol}",
                                      self.pool.functions.getReserveNormalizedIncome(token).call())
            debt = await self._call(f"normalized debt of {symbol}",
                                    self.pool.functions.getReserveNormalizedVariableDebt(token).call())
            reserve = await self._call(f"reserve data of {symbol}",
                                       self.data_provider.functions.getReserveData(token).call())
            lending_index[symbol] = float(Decimal(income) / RAY)
            borrow_index[symbol] = float(Decimal(debt) / RAY)
            lending_apr[symbol] = float(Decimal(reserve[5]) / RAY)
            borrow_apr[symbol] = float(Decimal(reserve[6]) / RAY)
        gas = await self._call("eth_gasPrice", self.w3.eth.gas_price)
        return MarketSnapshot(
            timestamp=ts, spot=spot, perp_mark={}, funding_rate={}, lending_index=lending_index,
            lending_apr=lending_apr, borrow_index=borrow_index, borrow_apr=borrow_apr, lst_rate=lst_rate,
            gas_price_gwei=float(Decimal(gas) / Decimal(10**9)), source="chain",
        )
