"""Deploy a complete Aave V3.2 market onto a test chain, from the compiled foundry artifacts.

The market is the real protocol (Pool, PoolConfigurator, AaveOracle, data provider, interest rate
strategy, aToken and debt-token proxies), not a mock of it; only the assets and price feeds are
test doubles: MintableERC20 USDT (6 decimals), weETH and wstETH (18), a WETH9Mocked, and one
MockAggregator (USD, 8 decimals) per asset; a caller may pass its own token contracts instead, as
``lst_market`` does (our staking contracts for weETH and wstETH, a WETH9Mocked whose WETH is all
deposited ETH). Reserves get mainnet-like parameters:

- every asset is collateral at the standard 80% LTV / 85% liquidation threshold / 5% bonus, and
  borrowable;
- eMode category 1 ("ETH correlated", 93% / 95% / 1%) takes WETH, weETH and wstETH as collateral
  and lets WETH be borrowed;
- a liquidity provider supplies USDT and WETH so that borrowers find liquidity.

Roles: ``admin`` (dev account 0) deploys and holds every Aave role; ``liquidity_provider`` (dev
account 1) owns the seed supply; tests use the other dev accounts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError
from web3.types import TxReceipt

RAY = 10**27
MAX_UINT256 = 2**256 - 1
VARIABLE_RATE = 2  # interestRateMode for borrow/repay; v3.2 has no stable rate any more
ORACLE_DECIMALS = 8  # AaveOracle's base currency is USD with 8 decimals, as on Ethereum mainnet
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string): how v3.2 reverts ('36', ...)


@dataclass(frozen=True)
class RiskParams:
    """Collateral parameters in basis points, as the PoolConfigurator takes them."""

    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int  # 10000 + the bonus, e.g. 10500 for 5%


STANDARD = RiskParams(ltv=8000, liquidation_threshold=8500, liquidation_bonus=10500)
EMODE_ETH_ID = 1
EMODE_ETH = RiskParams(ltv=9300, liquidation_threshold=9500, liquidation_bonus=10100)
EMODE_ETH_COLLATERAL = ("WETH", "weETH", "wstETH")
EMODE_ETH_BORROWABLE = ("WETH",)


@dataclass(frozen=True)
class AssetSpec:
    symbol: str
    name: str
    decimals: int
    usd_price: Decimal
    #: DefaultReserveInterestRateStrategyV2 data in bps: optimal usage, base rate, slope 1, slope 2.
    rates: tuple[int, int, int, int]


#: Prices are round numbers near late-2025 levels; weETH and wstETH at 1.065 and 1.21 ETH.
ASSETS = (
    AssetSpec("USDT", "Tether USD", 6, Decimal("1"), (9200, 0, 600, 3500)),
    AssetSpec("WETH", "Wrapped Ether", 18, Decimal("3000"), (9000, 0, 270, 8000)),
    AssetSpec("weETH", "Wrapped eETH", 18, Decimal("3195"), (3000, 0, 700, 30000)),
    AssetSpec("wstETH", "Wrapped liquid staked Ether 2.0", 18, Decimal("3630"), (4500, 0, 700, 30000)),
)
#: What the liquidity provider supplies at deployment, in whole tokens.
SEED_LIQUIDITY = {"USDT": 10_000_000, "WETH": 10_000}


class Artifacts:
    """Reads ``<Contract>.json`` foundry artifacts and deploys them, linking libraries on demand."""

    def __init__(self, directory: Path, w3: Web3, deployer: str) -> None:
        self._dir = directory
        self._w3 = w3
        self._deployer = deployer
        self._libraries: dict[str, str] = {}  # library name -> deployed address
        self._loaded: dict[str, dict[str, Any]] = {}

    def _load(self, name: str) -> dict[str, Any]:
        if name not in self._loaded:
            self._loaded[name] = json.loads((self._dir / f"{name}.json").read_text())
        return self._loaded[name]

    def abi(self, name: str) -> list[dict[str, Any]]:
        return self._load(name)["abi"]

    def at(self, name: str, address: str) -> Contract:
        """A contract object for an already deployed ``name``; structs decode to named tuples."""
        return self._w3.eth.contract(address=address, abi=self.abi(name), decode_tuples=True)

    def _linked_bytecode(self, name: str) -> str:
        """The creation code of ``name`` with every library placeholder replaced by an address.

        Foundry records each placeholder as a byte offset; libraries that link other libraries
        (FlashLoanLogic needs BorrowLogic) are deployed first by the recursion.
        """
        bytecode = self._load(name)["bytecode"]
        code = bytecode["object"].removeprefix("0x")
        for libraries in bytecode["linkReferences"].values():
            for library, places in libraries.items():
                address = self._library(library).removeprefix("0x").lower()
                for place in places:
                    start = 2 * place["start"]
                    code = code[:start] + address + code[start + 2 * place["length"]:]
        return "0x" + code

    def _library(self, name: str) -> str:
        if name not in self._libraries:
            self._libraries[name] = self.deploy(name).address
        return self._libraries[name]

    def deploy(self, name: str, *args: Any) -> Contract:
        factory = self._w3.eth.contract(abi=self.abi(name), bytecode=self._linked_bytecode(name))
        receipt = _wait(self._w3, factory.constructor(*args).transact({"from": self._deployer}), name)
        return self.at(name, receipt["contractAddress"])


def _wait(w3: Web3, tx_hash: bytes, what: str) -> TxReceipt:
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.01)
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction failed: {what} ({tx_hash.hex()})")
    return receipt


def send(fn: ContractFunction, sender: str) -> TxReceipt:
    """Send ``fn`` from an account the node holds the key of; return the receipt or raise.

    web3 estimates gas first, so a call that would revert raises ``ContractLogicError`` here
    without being mined (use ``revert_reason`` on it).
    """
    return _wait(fn.w3, fn.transact({"from": sender}), fn.fn_name)


def revert_reason(error: ContractLogicError) -> str:
    """The ``Error(string)`` reason of a revert: for Aave v3.2 a numeric code such as ``'36'``."""
    data = error.data if isinstance(error.data, str) else ""
    raw = bytes.fromhex(data.removeprefix("0x"))
    if raw[:4] != ERROR_STRING_SELECTOR:
        raise ValueError(f"not an Error(string) revert: {error!r}")
    (reason,) = abi_decode(["string"], raw[4:])
    return reason


def _units(amount: Decimal | int, decimals: int) -> int:
    return int(Decimal(amount) * 10**decimals)


@dataclass
class AaveMarket:
    """A deployed market: contract objects for what tests and venues call, and admin helpers."""

    w3: Web3
    artifacts: Artifacts
    admin: str
    liquidity_provider: str
    addresses_provider: Contract
    pool: Contract
    configurator: Contract
    oracle: Contract
    data_provider: Contract
    #: Underlying tokens by symbol: USDT, WETH, weETH, wstETH.
    tokens: dict[str, Contract]
    errors_library: Contract
    #: How ``mint`` makes tokens that have no public mint (``lst_market`` stakes ETH for them).
    minters: dict[str, Callable[[str, int], None]] = field(default_factory=dict)
    _error_names: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    @property
    def addresses(self) -> dict[str, str]:
        """Every address a venue's configuration may need, by role or by token symbol."""
        return {
            "pool_addresses_provider": self.addresses_provider.address,
            "pool": self.pool.address,
            "pool_configurator": self.configurator.address,
            "oracle": self.oracle.address,
            "data_provider": self.data_provider.address,
            **{symbol: token.address for symbol, token in self.tokens.items()},
        }

    def _asset(self, asset: str) -> str:
        """Accept a token symbol or an address."""
        return self.tokens[asset].address if asset in self.tokens else Web3.to_checksum_address(asset)

    def a_token(self, asset: str) -> Contract:
        address = self.data_provider.functions.getReserveTokensAddresses(self._asset(asset)).call()[0]
        return self.artifacts.at("ATokenInstance", address)

    def debt_token(self, asset: str) -> Contract:
        address = self.data_provider.functions.getReserveTokensAddresses(self._asset(asset)).call()[2]
        return self.artifacts.at("VariableDebtTokenInstance", address)

    def price(self, asset: str) -> int:
        """The oracle's price of ``asset`` in USD with 8 decimals."""
        return self.oracle.functions.getAssetPrice(self._asset(asset)).call()

    def set_price(self, asset: str, usd: Decimal | int | str) -> None:
        """Point the oracle at a new fixed USD price for ``asset``.

        MockAggregator has no setter, so this deploys a new feed and swaps the oracle source.
        """
        feed = self.artifacts.deploy("MockAggregator", _units(Decimal(usd), ORACLE_DECIMALS))
        send(self.oracle.functions.setAssetSources([self._asset(asset)], [feed.address]), self.admin)

    def units(self, symbol: str, amount: Decimal | int) -> int:
        """``amount`` whole tokens in the token's raw units."""
        return _units(amount, self.tokens[symbol].functions.decimals().call())

    def mint(self, symbol: str, to: str, raw_amount: int) -> None:
        """Give ``to`` exactly ``raw_amount`` (token units) of a test asset: minted (anyone may mint
        the MintableERC20 and WETH9Mocked doubles), or made by the asset's registered minter."""
        if symbol in self.minters:
            self.minters[symbol](to, raw_amount)
        else:
            send(self.tokens[symbol].functions.mint(to, raw_amount), self.admin)

    def error_name(self, code: str) -> str:
        """Name of an Aave v3.2 error code, e.g. ``'36'`` -> ``'COLLATERAL_CANNOT_COVER_NEW_BORROW'``.

        The table is read from the deployed ``Errors`` library (one getter per constant), so it
        is the code table of exactly the contracts under test.
        """
        if not self._error_names:
            for entry in self.errors_library.abi:
                if entry["type"] == "function":
                    value = self.errors_library.get_function_by_name(entry["name"])().call()
                    self._error_names[value] = entry["name"]
        return self._error_names[code]


def deploy_aave_market(
    w3: Web3,
    artifacts_dir: Path,
    accounts: list[str],
    tokens: Mapping[str, Contract] | None = None,
    minters: Mapping[str, Callable[[str, int], None]] | None = None,
) -> AaveMarket:
    """Deploy and configure the market; ``accounts`` are node-held dev accounts (0 admin, 1 LP).

    ``tokens`` are already deployed contracts to list as the reserves of those symbols (each with
    the decimals of its ``ASSETS`` entry) instead of MintableERC20 doubles; ``minters`` say how
    ``AaveMarket.mint`` makes them."""
    given = dict(tokens or {})
    admin, liquidity_provider = accounts[0], accounts[1]
    art = Artifacts(artifacts_dir, w3, admin)

    def tx(fn: ContractFunction, sender: str = admin) -> TxReceipt:
        return send(fn, sender)

    tokens: dict[str, Contract] = {}
    feeds: dict[str, str] = {}
    for spec in ASSETS:
        if spec.symbol in given:
            tokens[spec.symbol] = given[spec.symbol]
        elif spec.symbol == "WETH":
            tokens[spec.symbol] = art.deploy("WETH9Mocked")
        else:
            tokens[spec.symbol] = art.deploy("MintableERC20", spec.name, spec.symbol, spec.decimals)
        feeds[spec.symbol] = art.deploy("MockAggregator", _units(spec.usd_price, ORACLE_DECIMALS)).address

    # The provider is the registry every other contract finds the market through; the ACL admin
    # must be set on it before ACLManager's constructor, which reads it.
    provider = art.deploy("PoolAddressesProvider", "basis-live test market", admin)
    tx(provider.functions.setACLAdmin(admin))
    acl = art.deploy("ACLManager", provider.address)
    tx(provider.functions.setACLManager(acl.address))
    tx(acl.functions.addPoolAdmin(admin))

    # setPoolImpl / setPoolConfiguratorImpl create the proxies and initialise them; from here
    # on the proxies are the Pool and PoolConfigurator.
    tx(provider.functions.setPoolImpl(art.deploy("PoolInstance", provider.address).address))
    pool = art.at("PoolInstance", provider.functions.getPool().call())
    tx(provider.functions.setPoolConfiguratorImpl(art.deploy("PoolConfiguratorInstance").address))
    configurator = art.at("PoolConfiguratorInstance", provider.functions.getPoolConfigurator().call())

    assets = [tokens[spec.symbol].address for spec in ASSETS]
    oracle = art.deploy(
        "AaveOracle", provider.address, assets, [feeds[spec.symbol] for spec in ASSETS],
        ZERO_ADDRESS,  # no fallback oracle
        ZERO_ADDRESS,  # base currency: USD, whose "address" is zero by Aave convention
        10**ORACLE_DECIMALS,
    )
    tx(provider.functions.setPriceOracle(oracle.address))
    data_provider = art.deploy("AaveProtocolDataProvider", provider.address)
    tx(provider.functions.setPoolDataProvider(data_provider.address))

    rate_strategy = art.deploy("DefaultReserveInterestRateStrategyV2", provider.address)
    a_token_impl = art.deploy("ATokenInstance", pool.address)
    debt_token_impl = art.deploy("VariableDebtTokenInstance", pool.address)
    tx(configurator.functions.initReserves([
        (
            a_token_impl.address,
            debt_token_impl.address,
            True,  # useVirtualBalance: what every non-GHO reserve uses
            rate_strategy.address,
            tokens[spec.symbol].address,
            admin,  # treasury
            ZERO_ADDRESS,  # no incentives controller
            f"Aave Test {spec.symbol}", f"aTest{spec.symbol}",
            f"Aave Test Variable Debt {spec.symbol}", f"variableDebtTest{spec.symbol}",
            b"",
            abi_encode(["uint16", "uint32", "uint32", "uint32"], spec.rates),
        )
        for spec in ASSETS
    ]))
    for spec in ASSETS:
        asset = tokens[spec.symbol].address
        tx(configurator.functions.configureReserveAsCollateral(
            asset, STANDARD.ltv, STANDARD.liquidation_threshold, STANDARD.liquidation_bonus
        ))
        tx(configurator.functions.setReserveBorrowing(asset, True))

    tx(configurator.functions.setEModeCategory(
        EMODE_ETH_ID, EMODE_ETH.ltv, EMODE_ETH.liquidation_threshold, EMODE_ETH.liquidation_bonus,
        "ETH correlated",
    ))
    for symbol in EMODE_ETH_COLLATERAL:
        tx(configurator.functions.setAssetCollateralInEMode(tokens[symbol].address, EMODE_ETH_ID, True))
    for symbol in EMODE_ETH_BORROWABLE:
        tx(configurator.functions.setAssetBorrowableInEMode(tokens[symbol].address, EMODE_ETH_ID, True))

    market = AaveMarket(
        w3=w3, artifacts=art, admin=admin, liquidity_provider=liquidity_provider,
        addresses_provider=provider, pool=pool, configurator=configurator, oracle=oracle,
        data_provider=data_provider, tokens=tokens, errors_library=art.deploy("Errors"),
        minters=dict(minters or {}),
    )
    for symbol, amount in SEED_LIQUIDITY.items():
        raw = market.units(symbol, amount)
        market.mint(symbol, liquidity_provider, raw)
        tx(tokens[symbol].functions.approve(pool.address, raw), liquidity_provider)
        tx(pool.functions.supply(tokens[symbol].address, raw, liquidity_provider, 0), liquidity_provider)
    return market
