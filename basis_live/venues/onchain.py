"""The strategy account on chain behind the ``Venue`` interface: Aave V3 (``AaveV3Venue``) and the
wallet (``WalletVenue``), both over one ``TransactionSender`` (one key, one nonce sequence, one
journal).

Semantics match the paper venues (``PaperAave`` / ``PaperWallet``):

- ``<asset>`` (supply): ``buy`` = approve exactly the amount + ``Pool.supply`` from the wallet;
  ``sell`` = ``Pool.withdraw`` (``type(uint256).max`` when the request is the whole balance, so no
  aToken dust is left).
- ``<asset>-debt`` (debt, WETH by default): ``buy`` = ``Pool.borrow`` at the variable rate (the
  wallet receives WETH, the token; the paper venue credits ETH); ``sell`` = approve + ``Pool.repay``
  (``type(uint256).max`` for the whole debt).
- Quantities are Decimals in token units; the instrument's quantity step is one raw token unit.

Exactly-once: each order is an *intent* journaled under our client order id, and its transactions
are journaled under ``<venue>/<client id>/approve`` and ``<venue>/<client id>/action`` before they
are broadcast. ``fetch_order`` answers from the action transaction's receipt: ``open`` while it is
in the pool, ``filled`` (quantity from the Pool event), ``rejected`` (reverted, with the decoded
Aave error; or its nonce taken by another transaction). It returns None when no action transaction
was signed for the id: the order has no effect on chain, and a resend with the same id is safe
(a journaled approval is resumed, not sent twice).

Errors: refused before signing (would revert at gas estimation, fee above the cap, no gas money,
insufficient wallet balance) and mined reverts are ``OrderRejected`` with the Aave error name
(``COLLATERAL_CANNOT_COVER_NEW_BORROW (36)``); no receipt in time (after the fee bumps) is
``AmbiguousOrderError``; a node that does not answer before signing is ``VenueUnavailable``.

Fills and gas: every mined action of this venue is one ``Fill`` (id = transaction hash, price 1,
fee 0 as on the paper venue); every mined transaction of this venue (approvals, actions, eMode,
transfers, reverted ones included) is one ``gas`` ledger entry in ETH. Cursors index this object's
in-process lists, rebuilt from the journal after a restart (the store ignores fills seen twice).

Contract addresses come from configuration (``AaveV3Config``), never from this module. The ABIs are
the few functions and events used, written out below (no protocol artifact ships). The venues do
not own the web3 client: whoever built it closes it (``await w3.provider.disconnect()``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from typing import Any, Iterable, Mapping

from eth_abi import decode as abi_decode
from web3 import AsyncWeb3
from web3.exceptions import Web3Exception

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
)
from basis_live.venues.transactions import (
    CONNECTION_ERRORS,
    ERC20_ABI,
    ERROR_STRING_SELECTOR,
    MAX_UINT256,
    NodeUnavailable,
    TransactionDropped,
    TransactionError,
    TransactionPending,
    TransactionRefused,
    TransactionReverted,
    TransactionSender,
    TxOutcome,
    TxStatus,
    abi_from_signatures,
    decode_standard_revert,
)

log = logging.getLogger(__name__)

D = Decimal
WAD = 10**18
VARIABLE_RATE = 2  # interestRateMode; Aave v3.2 has no stable rate

POOL_ABI = abi_from_signatures(
    "function supply(address asset, uint256 amount, address onBehalfOf, uint16 referralCode) nonpayable",
    "function withdraw(address asset, uint256 amount, address to) nonpayable returns (uint256)",
    "function borrow(address asset, uint256 amount, uint256 interestRateMode, uint16 referralCode, address onBehalfOf) nonpayable",
    "function repay(address asset, uint256 amount, uint256 interestRateMode, address onBehalfOf) nonpayable returns (uint256)",
    "function setUserEMode(uint8 categoryId) nonpayable",
    "function getUserEMode(address user) view returns (uint256)",
    "function getUserAccountData(address user) view returns (uint256 totalCollateralBase, uint256 totalDebtBase, "
    "uint256 availableBorrowsBase, uint256 currentLiquidationThreshold, uint256 ltv, uint256 healthFactor)",
    "event Supply(address indexed reserve, address user, address indexed onBehalfOf, uint256 amount, uint16 indexed referralCode)",
    "event Withdraw(address indexed reserve, address indexed user, address indexed to, uint256 amount)",
    "event Borrow(address indexed reserve, address user, address indexed onBehalfOf, uint256 amount, uint8 interestRateMode, "
    "uint256 borrowRate, uint16 indexed referralCode)",
    "event Repay(address indexed reserve, address indexed user, address indexed repayer, uint256 amount, bool useATokens)",
)
DATA_PROVIDER_ABI = abi_from_signatures(
    "function getReserveTokensAddresses(address asset) view returns (address aTokenAddress, "
    "address stableDebtTokenAddress, address variableDebtTokenAddress)",
    "function getUserReserveData(address asset, address user) view returns (uint256 currentATokenBalance, "
    "uint256 currentStableDebt, uint256 currentVariableDebt, uint256 principalStableDebt, uint256 scaledVariableDebt, "
    "uint256 stableBorrowRate, uint256 liquidityRate, uint40 stableRateLastUpdated, bool usageAsCollateralEnabled)",
)

#: Aave v3.2 ``Errors`` library: the revert string is the code, the constant's name says what it is.
#: (Checked against the deployed library by the chain tests.)
AAVE_V3_ERRORS = {
    "1": "CALLER_NOT_POOL_ADMIN", "2": "CALLER_NOT_EMERGENCY_ADMIN", "3": "CALLER_NOT_POOL_OR_EMERGENCY_ADMIN",
    "4": "CALLER_NOT_RISK_OR_POOL_ADMIN", "5": "CALLER_NOT_ASSET_LISTING_OR_POOL_ADMIN",
    "6": "CALLER_NOT_BRIDGE", "7": "ADDRESSES_PROVIDER_NOT_REGISTERED", "8": "INVALID_ADDRESSES_PROVIDER_ID",
    "9": "NOT_CONTRACT", "10": "CALLER_NOT_POOL_CONFIGURATOR", "11": "CALLER_NOT_ATOKEN",
    "12": "INVALID_ADDRESSES_PROVIDER", "13": "INVALID_FLASHLOAN_EXECUTOR_RETURN",
    "14": "RESERVE_ALREADY_ADDED", "15": "NO_MORE_RESERVES_ALLOWED", "16": "EMODE_CATEGORY_RESERVED",
    "17": "INVALID_EMODE_CATEGORY_ASSIGNMENT", "18": "RESERVE_LIQUIDITY_NOT_ZERO",
    "19": "FLASHLOAN_PREMIUM_INVALID", "20": "INVALID_RESERVE_PARAMS", "21": "INVALID_EMODE_CATEGORY_PARAMS",
    "22": "BRIDGE_PROTOCOL_FEE_INVALID", "23": "CALLER_MUST_BE_POOL", "24": "INVALID_MINT_AMOUNT",
    "25": "INVALID_BURN_AMOUNT", "26": "INVALID_AMOUNT", "27": "RESERVE_INACTIVE", "28": "RESERVE_FROZEN",
    "29": "RESERVE_PAUSED", "30": "BORROWING_NOT_ENABLED", "32": "NOT_ENOUGH_AVAILABLE_USER_BALANCE",
    "33": "INVALID_INTEREST_RATE_MODE_SELECTED", "34": "COLLATERAL_BALANCE_IS_ZERO",
    "35": "HEALTH_FACTOR_LOWER_THAN_LIQUIDATION_THRESHOLD", "36": "COLLATERAL_CANNOT_COVER_NEW_BORROW",
    "37": "COLLATERAL_SAME_AS_BORROWING_CURRENCY", "39": "NO_DEBT_OF_SELECTED_TYPE",
    "40": "NO_EXPLICIT_AMOUNT_TO_REPAY_ON_BEHALF", "42": "NO_OUTSTANDING_VARIABLE_DEBT",
    "43": "UNDERLYING_BALANCE_ZERO", "44": "INTEREST_RATE_REBALANCE_CONDITIONS_NOT_MET",
    "45": "HEALTH_FACTOR_NOT_BELOW_THRESHOLD", "46": "COLLATERAL_CANNOT_BE_LIQUIDATED",
    "47": "SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER", "49": "INCONSISTENT_FLASHLOAN_PARAMS",
    "50": "BORROW_CAP_EXCEEDED", "51": "SUPPLY_CAP_EXCEEDED", "52": "UNBACKED_MINT_CAP_EXCEEDED",
    "53": "DEBT_CEILING_EXCEEDED", "54": "UNDERLYING_CLAIMABLE_RIGHTS_NOT_ZERO",
    "56": "VARIABLE_DEBT_SUPPLY_NOT_ZERO", "57": "LTV_VALIDATION_FAILED", "58": "INCONSISTENT_EMODE_CATEGORY",
    "59": "PRICE_ORACLE_SENTINEL_CHECK_FAILED", "60": "ASSET_NOT_BORROWABLE_IN_ISOLATION",
    "61": "RESERVE_ALREADY_INITIALIZED", "62": "USER_IN_ISOLATION_MODE_OR_LTV_ZERO",
    "63": "INVALID_LTV", "64": "INVALID_LIQ_THRESHOLD", "65": "INVALID_LIQ_BONUS", "66": "INVALID_DECIMALS",
    "67": "INVALID_RESERVE_FACTOR", "68": "INVALID_BORROW_CAP", "69": "INVALID_SUPPLY_CAP",
    "70": "INVALID_LIQUIDATION_PROTOCOL_FEE", "71": "INVALID_EMODE_CATEGORY", "72": "INVALID_UNBACKED_MINT_CAP",
    "73": "INVALID_DEBT_CEILING", "74": "INVALID_RESERVE_INDEX", "75": "ACL_ADMIN_CANNOT_BE_ZERO",
    "76": "INCONSISTENT_PARAMS_LENGTH", "77": "ZERO_ADDRESS_NOT_VALID", "78": "INVALID_EXPIRATION",
    "79": "INVALID_SIGNATURE", "80": "OPERATION_NOT_SUPPORTED", "81": "DEBT_CEILING_NOT_ZERO",
    "82": "ASSET_NOT_LISTED", "83": "INVALID_OPTIMAL_USAGE_RATIO", "85": "UNDERLYING_CANNOT_BE_RESCUED",
    "86": "ADDRESSES_PROVIDER_ALREADY_ADDED", "87": "POOL_ADDRESSES_DO_NOT_MATCH",
    "89": "SILOED_BORROWING_VIOLATION", "90": "RESERVE_DEBT_NOT_ZERO", "91": "FLASHLOAN_DISABLED",
    "92": "INVALID_MAX_RATE", "93": "WITHDRAW_TO_ATOKEN", "94": "SUPPLY_TO_ATOKEN", "95": "SLOPE_2_MUST_BE_GTE_SLOPE_1",
    "96": "CALLER_NOT_RISK_OR_POOL_OR_EMERGENCY_ADMIN", "97": "LIQUIDATION_GRACE_SENTINEL_CHECK_FAILED",
    "98": "INVALID_GRACE_PERIOD", "99": "INVALID_FREEZE_STATE", "100": "NOT_BORROWABLE_IN_EMODE",
}


def aave_revert_reason(data: bytes, errors: Mapping[str, str] = AAVE_V3_ERRORS) -> str:
    """Decode an Aave v3 revert: ``Error("36")`` -> ``COLLATERAL_CANNOT_COVER_NEW_BORROW (36)``;
    anything else as the standard decoder does (token errors such as ``ERC20: ...`` stay text)."""
    reason = decode_standard_revert(data)
    if data[:4] == ERROR_STRING_SELECTOR and reason in errors:
        return f"{errors[reason]} ({reason})"
    return reason


def _units(quantity: Decimal, decimals: int) -> int:
    raw = quantity.scaleb(decimals)
    if raw != raw.to_integral_value():
        raise ValueError(f"{quantity} has more than {decimals} decimals")
    return int(raw)


def _amount(raw: int, decimals: int) -> Decimal:
    return D(raw).scaleb(-decimals)


# ------------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class AaveV3Config:
    """Where the market is and what this venue trades on it. Addresses from configuration, per chain."""

    pool: str
    data_provider: str
    #: underlying token address by our symbol ("USDT", "WETH", "weETH"...): the supply instruments
    tokens: Mapping[str, str]
    #: symbols that may be borrowed: one "<symbol>-debt" instrument each
    borrowable: tuple[str, ...] = ("WETH",)
    #: getUserAccountData reports values in the oracle's base currency (USD, 8 decimals on Ethereum)
    base_currency_decimals: int = 8
    #: a withdraw / repay within this fraction of the whole balance or debt takes all of it
    #: (type(uint256).max): interest accrues between the engine's read and the mined block
    full_balance_tolerance: Decimal = D("0.00001")
    #: a full repay approves the debt plus this fraction (the debt grows until the block is mined)
    repay_allowance_margin: Decimal = D("0.0001")


@dataclass(frozen=True)
class AaveAccountData:
    """Pool.getUserAccountData, decoded. Values in the base currency (USD)."""

    total_collateral: Decimal
    total_debt: Decimal
    available_borrows: Decimal
    liquidation_threshold: Decimal  # weighted average, e.g. 0.95
    max_ltv: Decimal  # weighted average, e.g. 0.93
    health_factor: Decimal | None  # None: no debt (Aave reports max uint256)
    emode_category: int = 0

    @property
    def ltv(self) -> Decimal:
        """Current debt / collateral."""
        return self.total_debt / self.total_collateral if self.total_collateral else ZERO


# ------------------------------------------------------------------------------------ shared base
class _ChainVenue(Venue):
    """Journal keys, receipts -> fills and gas entries, error mapping: what both venues share."""

    #: The engine's bound on one call (OrderManager): an order is several transactions, each bounded
    #: by the sender's receipt timeout and fee bumps; reads are bounded by the RPC client's timeout.
    call_timeout_seconds = 900.0

    def __init__(self, w3: AsyncWeb3, sender: TransactionSender, name: str) -> None:
        self.name = name
        self.w3 = w3
        self.sender = sender
        self.journal = sender.journal
        self.account = sender.address
        self._fills: list[Fill] = []
        self._ledger: list[LedgerEntry] = []
        self._seen_tx: set[str] = set()  # hashes of mined transactions already in the ledger
        self._settled: dict[str, OrderState] = {}  # client id -> final state
        self._observed: set[str] = set()  # intent keys with nothing left to observe (see _observe)
        self._booked_keys: set[str] = set()  # transaction keys whose mined outcome's gas is booked
        self._lock = asyncio.Lock()  # one order flow at a time (approve then act on one allowance)

    # -- keys
    def _intent_key(self, cid: str) -> str:
        return f"{self.name}/{cid}"

    def _action_key(self, cid: str) -> str:
        return f"{self.name}/{cid}/action"

    async def _read(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except (*CONNECTION_ERRORS, NodeUnavailable) as exc:
            raise VenueUnavailable(f"{self.name}: node did not answer: {exc!r}") from exc
        except Web3Exception as exc:
            raise VenueUnavailable(f"{self.name}: node error: {exc}") from exc

    def _map_send_error(self, exc: TransactionError) -> Exception:
        if isinstance(exc, TransactionPending):
            return AmbiguousOrderError(f"{self.name}: {exc}")
        if isinstance(exc, NodeUnavailable):
            return VenueUnavailable(f"{self.name}: {exc}")
        if isinstance(exc, (TransactionRefused, TransactionReverted)):
            return OrderRejected(f"{self.name}: {exc.reason}")
        if isinstance(exc, TransactionDropped):
            return OrderRejected(f"{self.name}: {exc}")
        return AmbiguousOrderError(f"{self.name}: {exc}")

    async def _gas_entry(self, outcome: TxOutcome, label: str) -> None:
        if outcome.tx_hash in self._seen_tx:
            return
        self._seen_tx.add(outcome.tx_hash)
        when = await self._read(self.sender.block_timestamp(outcome.block_number))
        self._ledger.append(LedgerEntry(f"gas-{outcome.tx_hash}", self.name, "gas", "ETH",
                                        -_amount(outcome.gas_cost_wei, 18), when, label))

    async def _gas_for_keys(self, keys: Iterable[str]) -> None:
        """Gas entries for every mined transaction under ``keys`` not seen yet. A key whose
        transaction is mined is final (its nonce is used): it is not read again."""
        for key in keys:
            if key in self._booked_keys:
                continue
            records = self.journal.transactions(key)
            if not records:
                continue
            if any(r.tx_hash in self._seen_tx for r in records):
                self._booked_keys.add(key)
                continue
            status = await self._read(self.sender.status(key))
            if status.outcome is not None:
                await self._gas_entry(status.outcome, records[0].label)
                self._booked_keys.add(key)

    def _tx_keys(self, intent_key: str) -> list[str]:
        """The transaction keys of one intent, in signing order."""
        return self.journal.transaction_keys(intent_key + "/")

    async def fetch_fills(self, since: int = 0) -> tuple[list[Fill], int]:
        await self._observe()
        return self._fills[since:], len(self._fills)

    async def fetch_ledger(self, since: int = 0) -> tuple[list[LedgerEntry], int]:
        await self._observe()
        return self._ledger[since:], len(self._ledger)

    async def _observe(self) -> None:
        """Turn receipts of this venue's journaled transactions into fills and gas entries. A settled
        order whose every transaction has its gas booked is not looked at again, nor is a mined
        transaction: the journal keeps every run's intents, and rescanning them all made each
        checkpoint slower as the account aged (it was quadratic in its transactions)."""
        for intent_key in self.journal.intent_keys(self.name + "/"):
            if intent_key in self._observed:
                continue
            await self._observe_intent(intent_key)
            if self._observed_fully(intent_key):
                self._observed.add(intent_key)

    async def _observe_intent(self, intent_key: str) -> None:
        await self._gas_for_keys(self._tx_keys(intent_key))

    def _observed_fully(self, intent_key: str) -> bool:
        """The intent is one of this venue's orders, settled (no transaction can be added to it),
        and every transaction signed for it has its gas booked."""
        return self._order_settled(intent_key) and all(key in self._booked_keys for key in self._tx_keys(intent_key))

    def _order_settled(self, intent_key: str) -> bool:
        """Whether ``intent_key`` is an order of this venue with its final state recorded. Other
        intents (a loop's steps, eMode, transfers) may still get transactions: never skipped."""
        return False


# ---------------------------------------------------------------------------------------- Aave V3
class AaveV3Venue(_ChainVenue):
    """Aave V3 for one account (see the module docstring)."""

    def __init__(self, w3: AsyncWeb3, sender: TransactionSender, config: AaveV3Config, name: str = "aave_v3") -> None:
        super().__init__(w3, sender, name)
        self.config = config
        self.pool = w3.eth.contract(address=AsyncWeb3.to_checksum_address(config.pool), abi=POOL_ABI)
        self.data_provider = w3.eth.contract(address=AsyncWeb3.to_checksum_address(config.data_provider),
                                             abi=DATA_PROVIDER_ABI)
        self.tokens = {symbol: w3.eth.contract(address=AsyncWeb3.to_checksum_address(address), abi=ERC20_ABI)
                       for symbol, address in config.tokens.items()}
        unknown = [s for s in config.borrowable if s not in self.tokens]
        if unknown:
            raise ValueError(f"borrowable {unknown} not among the configured tokens {sorted(self.tokens)}")
        self._decimals: dict[str, int] = {}
        self._debt_tokens: dict[str, Any] = {}
        self._a_tokens: dict[str, Any] = {}
        self._instruments: dict[str, Instrument] | None = None

    # ------------------------------------------------------------------ reads
    async def _token_decimals(self, symbol: str) -> int:
        if symbol not in self._decimals:
            self._decimals[symbol] = int(await self._read(self.tokens[symbol].functions.decimals().call()))
        return self._decimals[symbol]

    async def _reserve_tokens(self, symbol: str) -> tuple[Any, Any]:
        if symbol not in self._a_tokens:
            a_token, _, debt_token = await self._read(
                self.data_provider.functions.getReserveTokensAddresses(self.tokens[symbol].address).call())
            self._a_tokens[symbol] = self.w3.eth.contract(address=a_token, abi=ERC20_ABI)
            self._debt_tokens[symbol] = self.w3.eth.contract(address=debt_token, abi=ERC20_ABI)
        return self._a_tokens[symbol], self._debt_tokens[symbol]

    async def instruments(self) -> dict[str, Instrument]:
        if self._instruments is None:
            instruments = {}
            for symbol in self.tokens:
                step = D(1).scaleb(-await self._token_decimals(symbol))
                instruments[symbol] = Instrument(self.name, symbol, "supply", symbol, symbol, step, D("1e-18"), step, ZERO)
            for symbol in self.config.borrowable:
                step = D(1).scaleb(-await self._token_decimals(symbol))
                instruments[f"{symbol}-debt"] = Instrument(self.name, f"{symbol}-debt", "debt", symbol, symbol, step,
                                                           D("1e-18"), step, ZERO)
            self._instruments = instruments
        return dict(self._instruments)

    async def fetch_account(self) -> VenueAccount:
        positions = []
        for symbol, token in self.tokens.items():
            decimals = await self._token_decimals(symbol)
            data = await self._read(self.data_provider.functions.getUserReserveData(token.address, self.account).call())
            supplied, variable_debt = data[0], data[2]
            if supplied:
                positions.append(Position(self.name, symbol, "supply", symbol, symbol, _amount(supplied, decimals)))
            if variable_debt:
                positions.append(Position(self.name, f"{symbol}-debt", "debt", symbol, symbol,
                                          _amount(variable_debt, decimals)))
        # Aave's own health factor (its thresholds, oracle and rounding) is what the risk checks use.
        health = (await self.account_data()).health_factor if any(p.kind == "debt" for p in positions) else None
        return VenueAccount(self.name, {}, positions, health_factor=health)

    async def account_data(self) -> AaveAccountData:
        """getUserAccountData decoded: values in the base currency, HF with 18 decimals (None = no debt)."""
        collateral, debt, available, threshold, ltv, health = await self._read(
            self.pool.functions.getUserAccountData(self.account).call())
        category = await self._read(self.pool.functions.getUserEMode(self.account).call())
        base = self.config.base_currency_decimals
        return AaveAccountData(
            total_collateral=_amount(collateral, base), total_debt=_amount(debt, base),
            available_borrows=_amount(available, base), liquidation_threshold=_amount(threshold, 4),
            max_ltv=_amount(ltv, 4), health_factor=None if health == MAX_UINT256 else _amount(health, 18),
            emode_category=int(category),
        )

    async def set_emode(self, category: int, action_id: str | None = None) -> TxOutcome | None:
        """Enter eMode ``category`` (0 leaves it); None when already there. ``action_id`` makes a
        retried call resume the same transaction instead of sending another."""
        intent_key = self._intent_key(f"emode-{action_id or uuid.uuid4().hex[:16]}")
        if not self.journal.transactions(f"{intent_key}/action"):
            current = await self._read(self.pool.functions.getUserEMode(self.account).call())
            if int(current) == category:
                return None
        if self.journal.intent(intent_key) is None:
            self.journal.put_intent(intent_key, {"kind": "emode", "category": category})
        try:
            outcome = await self.sender.send(f"{intent_key}/action", to=self.pool.address,
                                             data=self.pool.encode_abi("setUserEMode", args=[category]),
                                             label=f"setUserEMode({category})")
        except TransactionReverted as exc:
            await self._gas_entry(exc.outcome, f"setUserEMode({category})")
            raise OrderRejected(f"{self.name}: eMode {category}: {exc.reason}") from exc
        except TransactionError as exc:
            raise self._map_send_error(exc) from exc
        await self._gas_entry(outcome, f"setUserEMode({category})")
        return outcome

    # ------------------------------------------------------------------ orders
    def _reject(self, reason: str) -> OrderRejected:
        return OrderRejected(f"{self.name}: {reason}")

    async def place_order(self, request: OrderRequest) -> OrderState:
        instruments = await self.instruments()
        instrument = instruments.get(request.symbol)
        if instrument is None:
            raise self._reject(f"no Aave reserve {request.symbol}")
        if request.quantity <= 0 or instrument.round_quantity(request.quantity) != request.quantity:
            raise self._reject(f"amount {request.quantity} not a multiple of {instrument.quantity_step}")
        cid = request.client_order_id
        async with self._lock:
            if self.journal.transactions(self._action_key(cid)):
                # Already signed for this id (a resend after a lost answer): never a second one.
                state = await self.fetch_order(cid)
                assert state is not None
                return state
            intent = {"symbol": request.symbol, "side": request.side, "quantity": str(request.quantity),
                      "asset": instrument.base, "kind": instrument.kind}
            self.journal.put_intent(self._intent_key(cid), intent)
            try:
                await self._prepare_and_submit(request, instrument)
            except TransactionError as exc:
                await self._gas_for_keys(self._tx_keys(self._intent_key(cid)))
                raise self._map_send_error(exc) from exc
        # The action is journaled and broadcast: wait for it outside the lock.
        try:
            await self.sender.wait(self._action_key(cid))
        except TransactionError as exc:
            if isinstance(exc, (TransactionReverted, TransactionDropped)):
                state = await self.fetch_order(cid)  # records the rejected state, fills and gas
                raise self._reject(state.reason if state and state.reason else str(exc)) from exc
            raise self._map_send_error(exc) from exc
        state = await self.fetch_order(cid)
        assert state is not None
        return state

    async def _prepare_and_submit(self, request: OrderRequest, instrument: Instrument) -> None:
        """Checks, approvals (awaited), then the action signed, journaled and broadcast."""
        cid = request.client_order_id
        asset = instrument.base
        token = self.tokens[asset]
        decimals = await self._token_decimals(asset)
        raw = _units(request.quantity, decimals)
        approve_key = f"{self._intent_key(cid)}/approve"
        if instrument.kind == "supply" and request.side == "buy":
            wallet = await self._read(token.functions.balanceOf(self.account).call())
            if wallet < raw:
                raise TransactionRefused(f"insufficient {asset} in wallet: {_amount(wallet, decimals)} < {request.quantity}")
            await self.sender.approve_exact(approve_key, token.address, self.pool.address, raw,
                                            label=f"approve {request.quantity} {asset} for supply")
            action = {"data": self.pool.encode_abi("supply", args=[token.address, raw, self.account, 0]),
                      "label": f"supply {request.quantity} {asset}"}
        elif instrument.kind == "supply":
            a_token, _ = await self._reserve_tokens(asset)
            balance = await self._read(a_token.functions.balanceOf(self.account).call())
            whole = self._is_whole(raw, balance)
            if not whole and raw > balance:
                raise TransactionRefused(f"withdraw {request.quantity} {asset} exceeds supplied {_amount(balance, decimals)}")
            amount = MAX_UINT256 if whole else raw
            action = {"data": self.pool.encode_abi("withdraw", args=[token.address, amount, self.account]),
                      "label": f"withdraw {'all' if whole else request.quantity} {asset}"}
        elif request.side == "buy":
            action = {"data": self.pool.encode_abi("borrow", args=[token.address, raw, VARIABLE_RATE, 0, self.account]),
                      "label": f"borrow {request.quantity} {asset}"}
        else:
            _, debt_token = await self._reserve_tokens(asset)
            debt = await self._read(debt_token.functions.balanceOf(self.account).call())
            if debt == 0:
                raise TransactionRefused(f"no {asset} debt to repay")
            wallet = await self._read(token.functions.balanceOf(self.account).call())
            whole = self._is_whole(raw, debt)
            needed = debt if whole else raw
            if wallet < needed:
                raise TransactionRefused(f"insufficient {asset} to repay: {_amount(wallet, decimals)} < {_amount(needed, decimals)}")
            if whole:
                margin = Fraction(self.config.repay_allowance_margin)
                allowance = min(debt + -(-debt * margin.numerator // margin.denominator) + 1, wallet)
            else:
                allowance = raw
            await self.sender.approve_exact(approve_key, token.address, self.pool.address, allowance,
                                            label=f"approve {_amount(allowance, decimals)} {asset} for repay")
            amount = MAX_UINT256 if whole else raw
            action = {"data": self.pool.encode_abi("repay", args=[token.address, amount, VARIABLE_RATE, self.account]),
                      "label": f"repay {'all' if whole else request.quantity} {asset}"}
        intent_key = self._intent_key(cid)
        self.journal.put_intent(intent_key, {**(self.journal.intent(intent_key) or {}), "label": action["label"]})
        await self.sender.submit(self._action_key(cid), to=self.pool.address, **action)

    def _is_whole(self, raw: int, balance: int) -> bool:
        """A request within the tolerance of the whole balance (either side) takes all of it."""
        tolerance = max(1, int(D(balance) * self.config.full_balance_tolerance))
        return abs(balance - raw) <= tolerance

    # ------------------------------------------------------------------ order state
    async def fetch_order(self, client_order_id: str) -> OrderState | None:
        if client_order_id in self._settled:
            return self._settled[client_order_id]
        intent_key = self._intent_key(client_order_id)
        intent = self.journal.intent(intent_key)
        if intent is None or not self.journal.transactions(self._action_key(client_order_id)):
            return None
        status = await self._read(self.sender.status(self._action_key(client_order_id)))
        state = await self._state(client_order_id, intent, status)
        if not state.is_open:
            await self._gas_for_keys(self._tx_keys(intent_key))
            self._settled[client_order_id] = state
        return state

    async def _state(self, cid: str, intent: dict[str, Any], status: TxStatus) -> OrderState:
        symbol, side, quantity = intent["symbol"], intent["side"], D(intent["quantity"])
        base = OrderState(cid, self.name, symbol, side, quantity, "open",
                          venue_order_id=status.hashes[-1] if status.hashes else None, fee_asset="ETH")
        if status.state == "pending":
            return base
        if status.state == "dropped":
            return replace(base, status="rejected", reason=f"dropped: nonce taken by another transaction "
                                                            f"({', '.join(status.hashes)})")
        outcome = status.outcome
        assert outcome is not None
        base = replace(base, venue_order_id=outcome.tx_hash)
        if outcome.status != 1:
            return replace(base, status="rejected", reason=outcome.revert_reason)
        asset = intent["asset"]
        decimals = await self._token_decimals(asset)
        raw = self._event_amount(outcome, intent)
        filled = _amount(raw, decimals) if raw is not None else quantity
        state = replace(base, status="filled", filled_quantity=filled, average_price=D(1))
        if outcome.tx_hash not in {f.fill_id for f in self._fills}:
            when = await self._read(self.sender.block_timestamp(outcome.block_number))
            self._fills.append(Fill(outcome.tx_hash, cid, self.name, symbol, side, filled, D(1), ZERO, asset, when))
        return state

    def _event_amount(self, outcome: TxOutcome, intent: dict[str, Any]) -> int | None:
        """The amount the Pool event of the action reports (the real amount of a max withdraw/repay)."""
        event = {("supply", "buy"): "Supply", ("supply", "sell"): "Withdraw",
                 ("debt", "buy"): "Borrow", ("debt", "sell"): "Repay"}[(intent["kind"], intent["side"])]
        abi = next(e for e in POOL_ABI if e["type"] == "event" and e["name"] == event)
        topic = AsyncWeb3.keccak(text=f"{event}({','.join(i['type'] for i in abi['inputs'])})")
        reserve = self.tokens[intent["asset"]].address.lower()
        for entry in outcome.receipt["logs"]:
            topics = entry["topics"]
            if entry["address"].lower() != self.pool.address.lower() or not topics or bytes(topics[0]) != bytes(topic):
                continue
            if "0x" + bytes(topics[1])[-20:].hex() != reserve:
                continue
            names = [i["name"] for i in abi["inputs"] if not i["indexed"]]
            values = abi_decode([i["type"] for i in abi["inputs"] if not i["indexed"]], bytes(entry["data"]))
            return int(dict(zip(names, values))["amount"])
        return None

    async def fetch_open_orders(self) -> list[OrderState]:
        states = []
        for intent_key in self.journal.intent_keys(self.name + "/"):
            cid = intent_key[len(self.name) + 1:]
            if cid in self._settled or (self.journal.intent(intent_key) or {}).get("kind") not in ("supply", "debt"):
                continue
            state = await self.fetch_order(cid)
            if state is not None and state.is_open:
                states.append(state)
        return states

    async def cancel_order(self, client_order_id: str) -> OrderState:
        """A broadcast transaction cannot be recalled here: the order's current state is returned
        (an open one settles when mined, or is rejected if its nonce is taken)."""
        state = await self.fetch_order(client_order_id)
        if state is None:
            raise self._reject(f"no order {client_order_id}")
        return state

    async def _observe_intent(self, intent_key: str) -> None:
        intent = self.journal.intent(intent_key) or {}
        if intent.get("kind") in ("supply", "debt"):
            await self.fetch_order(intent_key[len(self.name) + 1:])
        await self._gas_for_keys(self._tx_keys(intent_key))

    def _order_settled(self, intent_key: str) -> bool:
        cid = intent_key[len(self.name) + 1:]
        return cid in self._settled and (self.journal.intent(intent_key) or {}).get("kind") in ("supply", "debt")


# ---------------------------------------------------------------------------------------- wallet
class WalletVenue(_ChainVenue):
    """The strategy wallet: ETH and ERC-20 balances; no orders. ``transfer`` sends only to
    addresses on the configured allowlist."""

    def __init__(self, w3: AsyncWeb3, sender: TransactionSender, tokens: Mapping[str, str],
                 transfer_allowlist: Iterable[str] = (), name: str = "wallet") -> None:
        super().__init__(w3, sender, name)
        self.tokens = {symbol: w3.eth.contract(address=AsyncWeb3.to_checksum_address(address), abi=ERC20_ABI)
                       for symbol, address in tokens.items()}
        self.allowlist = frozenset(AsyncWeb3.to_checksum_address(a) for a in transfer_allowlist)
        self._decimals: dict[str, int] = {"ETH": 18}

    async def _token_decimals(self, symbol: str) -> int:
        if symbol not in self._decimals:
            self._decimals[symbol] = int(await self._read(self.tokens[symbol].functions.decimals().call()))
        return self._decimals[symbol]

    async def instruments(self) -> dict[str, Instrument]:
        return {}

    async def fetch_account(self) -> VenueAccount:
        balances = {"ETH": _amount(await self._read(self.w3.eth.get_balance(self.account)), 18)}
        for symbol, token in self.tokens.items():
            balances[symbol] = _amount(await self._read(token.functions.balanceOf(self.account).call()),
                                       await self._token_decimals(symbol))
        return VenueAccount(self.name, {k: v for k, v in balances.items() if v})

    async def place_order(self, request: OrderRequest) -> OrderState:
        raise OrderRejected(f"{self.name}: the wallet takes no orders")

    async def fetch_order(self, client_order_id: str) -> OrderState | None:
        return None  # it never takes one

    async def fetch_open_orders(self) -> list[OrderState]:
        return []

    async def cancel_order(self, client_order_id: str) -> OrderState:
        raise OrderRejected(f"{self.name}: no order {client_order_id}")

    async def transfer(self, asset: str, to: str, amount: Decimal, transfer_id: str) -> TxOutcome:
        """Send ``amount`` of ``asset`` ("ETH" or a configured token) to an allowlisted address.
        ``transfer_id`` is ours, like a client order id: a retry with it never sends twice."""
        try:
            destination = AsyncWeb3.to_checksum_address(to)
        except ValueError as exc:
            raise OrderRejected(f"{self.name}: invalid address {to!r}") from exc
        if destination not in self.allowlist:
            raise OrderRejected(f"{self.name}: {destination} is not on the transfer allowlist; not sent")
        if asset != "ETH" and asset not in self.tokens:
            raise OrderRejected(f"{self.name}: unknown asset {asset}")
        if amount <= 0:
            raise OrderRejected(f"{self.name}: transfer amount must be positive")
        decimals = await self._token_decimals(asset)
        try:
            raw = _units(amount, decimals)
        except ValueError as exc:
            raise OrderRejected(f"{self.name}: {exc}") from exc
        intent_key = self._intent_key(f"transfer-{transfer_id}")
        if self.journal.intent(intent_key) is None:
            self.journal.put_intent(intent_key, {"kind": "transfer", "asset": asset, "to": destination,
                                                 "amount": str(amount)})
        if asset == "ETH":
            call: dict[str, Any] = {"to": destination, "value": raw}
        else:
            token = self.tokens[asset]
            call = {"to": token.address, "data": token.encode_abi("transfer", args=[destination, raw])}
        label = f"transfer {amount} {asset} to {destination}"
        try:
            outcome = await self.sender.send(f"{intent_key}/action", label=label, **call)
        except TransactionReverted as exc:
            await self._gas_entry(exc.outcome, label)
            raise OrderRejected(f"{self.name}: {label}: {exc.reason}") from exc
        except TransactionError as exc:
            raise self._map_send_error(exc) from exc
        await self._observe_intent(intent_key)
        return outcome

    async def _observe_intent(self, intent_key: str) -> None:
        intent = self.journal.intent(intent_key) or {}
        key = f"{intent_key}/action"
        if intent.get("kind") == "transfer" and self.journal.transactions(key):
            records = self.journal.transactions(key)
            if not any(r.tx_hash in self._seen_tx for r in records):
                status = await self._read(self.sender.status(key))
                if status.outcome is not None and status.outcome.status == 1:
                    when = await self._read(self.sender.block_timestamp(status.outcome.block_number))
                    self._ledger.append(LedgerEntry(f"withdrawal-{status.outcome.tx_hash}", self.name, "withdrawal",
                                                    intent["asset"], -D(intent["amount"]), when, intent["to"]))
        await self._gas_for_keys(self._tx_keys(intent_key))
