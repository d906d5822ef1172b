"""Liquid staking and swaps on chain behind the ``Venue`` interface: Lido (``LidoVenue``, wstETH),
EtherFi (``EtherFiVenue``, weETH) and an ETH/USDT swap route (``SwapVenue``), over the same
``TransactionSender`` and journal as ``AaveV3Venue``; and ``OnchainLeverageVenue``, Aave plus the
``<lst>-loop`` leverage step composed of single transactions on those venues (see its docstring).

Semantics match the paper venues (``PaperStaking`` / ``PaperSwap``):

- ``<lst>`` (stake), quantities in LST units. ``buy q`` stakes the ETH worth q LST and wraps it:
  ``submit`` (Lido) / ``deposit`` (EtherFi) with ceil(q x pooled ether / shares) wei, which mints
  exactly q shares while the rate is >= 1; then an exact approval of the stETH / eETH amount worth
  those q shares, and ``wrap`` of it, which mints the q shares as q wstETH / weETH. The fill price
  is the ETH paid per LST received (the rate, up to a wei). ``sell q`` redeems q LST for ETH through
  the swap router's LST route (a stand-in for the Curve stETH/ETH pool: the protocols' own
  withdrawal queues take days), at the token's own rate less the route fee: price = gross rate,
  fee in ETH.
- ``ETH/USDT`` (spot) on the swap venue: ``buy q`` buys exactly q ETH with wallet USDT (exact
  output), ``sell q`` sells exactly q ETH for USDT (exact input); price = notional / q, fee in USDT.
- Every swap carries a deadline (latest block time + ``deadline_seconds``) and a slippage bound:
  from a limit order's price when one is given (fill or kill at that price or better), otherwise
  the router's quote moved by ``max_slippage``. A quote already outside a limit is refused before
  anything is signed.

ETH vs WETH: staking and the swap routes use the wallet's native ETH, as the protocols do. Aave
lends WETH (the token); ``WethGateway`` wraps and unwraps it (WETH9 ``deposit`` / ``withdraw``)
where a composite order needs to move between the two (``OnchainLeverageVenue``); the staking and
swap venues never touch WETH.

Exactly-once: an order is an intent journaled under ``<venue>/<client id>``; its transactions are
journaled, before broadcast, under ``<venue>/<client id>/<n>-<step>`` (stake: ``1-submit``,
``2-approve``, ``3-wrap``; LST sale: ``1-approve``, ``2-swap``; ETH purchase: ``1-approve``,
``2-swap``; ETH sale: ``1-swap``). Amounts that later steps depend on are written to the intent
before the step that uses them, so a resent order (same client id) resumes the remaining steps
with the same amounts and never signs a journaled step again. ``fetch_order`` answers from the
receipts: None while no step that moves funds (anything but an approval) was signed, ``open``
while a step is pending or steps remain, ``filled`` (quantities from the token / router events),
``rejected`` when the first such step failed, ``cancelled`` when a later one did.
``cancel_order`` on a stake whose ETH is already staked completes the approve and wrap (stopping
would strand stETH / eETH, which no strategy tracks); any other order cannot be recalled once
signed.

Fills and gas: one ``Fill`` per filled order (id = the last transaction's hash); one ``gas`` ledger
entry per mined transaction, reverted ones included. Addresses come from the config dataclasses,
never from this module.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any

from web3 import AsyncWeb3
from web3.logs import DISCARD

from basis_live.venues.base import (
    ZERO,
    AmbiguousOrderError,
    Fill,
    Instrument,
    LedgerEntry,
    OrderRejected,
    OrderRequest,
    OrderState,
    Venue,
    VenueAccount,
    VenueUnavailable,
)
from basis_live.venues.onchain import (
    AaveAccountData,
    AaveV3Venue,
    _amount,
    _ChainVenue,
    _units,
)
from basis_live.venues.transactions import (
    ERC20_ABI,
    NodeUnavailable,
    TransactionError,
    TransactionPending,
    TransactionRefused,
    TransactionReverted,
    TransactionSender,
    TxOutcome,
    abi_from_signatures,
)

D = Decimal
ETH_DECIMALS = 18
WAD = 10**18
ONE_WEI = D("1e-18")
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
DEFAULT_MAX_SLIPPAGE = D("0.005")

STETH_ABI = ERC20_ABI + abi_from_signatures(
    "function submit(address _referral) payable returns (uint256)",
    "function getTotalShares() view returns (uint256)",
    "function getTotalPooledEther() view returns (uint256)",
    "function sharesOf(address account) view returns (uint256)",
    "function getSharesByPooledEth(uint256 _ethAmount) view returns (uint256)",
    "function getPooledEthByShares(uint256 _sharesAmount) view returns (uint256)",
)
WSTETH_ABI = ERC20_ABI + abi_from_signatures(
    "function wrap(uint256 _stETHAmount) nonpayable returns (uint256)",
    "function unwrap(uint256 _wstETHAmount) nonpayable returns (uint256)",
    "function stEthPerToken() view returns (uint256)",
    "function getStETHByWstETH(uint256 _wstETHAmount) view returns (uint256)",
    "function getWstETHByStETH(uint256 _stETHAmount) view returns (uint256)",
)
LIQUIDITY_POOL_ABI = abi_from_signatures(
    "function deposit() payable returns (uint256)",
    "function getTotalPooledEther() view returns (uint256)",
    "function sharesForAmount(uint256 _amount) view returns (uint256)",
    "function amountForShare(uint256 _share) view returns (uint256)",
)
EETH_ABI = ERC20_ABI + abi_from_signatures(
    "function shares(address _user) view returns (uint256)",
    "function totalShares() view returns (uint256)",
)
WEETH_ABI = ERC20_ABI + abi_from_signatures(
    "function wrap(uint256 _eETHAmount) nonpayable returns (uint256)",
    "function unwrap(uint256 _weETHAmount) nonpayable returns (uint256)",
    "function getRate() view returns (uint256)",
    "function getEETHByWeETH(uint256 _weETHAmount) view returns (uint256)",
    "function getWeETHByeETH(uint256 _eETHAmount) view returns (uint256)",
)
SWAP_ROUTER_ABI = abi_from_signatures(
    "function quoteExactEthForUsdt(uint256 ethIn) view returns (uint256 usdtOut, uint256 fee)",
    "function quoteUsdtForExactEth(uint256 ethOut) view returns (uint256 usdtIn, uint256 fee)",
    "function quoteExactLstForEth(address lst, uint256 amountIn) view returns (uint256 ethOut, uint256 fee)",
    "function swapExactEthForUsdt(uint256 amountOutMin, address to, uint256 deadline) payable returns (uint256 amountOut)",
    "function swapUsdtForExactEth(uint256 amountOut, uint256 amountInMax, address to, uint256 deadline) "
    "nonpayable returns (uint256 amountIn)",
    "function swapExactLstForEth(address lst, uint256 amountIn, uint256 amountOutMin, address to, uint256 deadline) "
    "nonpayable returns (uint256 amountOut)",
    "event Swap(address indexed sender, address indexed tokenIn, address indexed tokenOut, uint256 amountIn, "
    "uint256 amountOut, uint256 fee, address to)",
)
WETH_ABI = ERC20_ABI + abi_from_signatures(
    "function deposit() payable",
    "function withdraw(uint256 wad) nonpayable",
)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _scale(raw: int, factor: Decimal, rounding: str) -> int:
    return int((D(raw) * factor).to_integral_value(rounding=rounding))


# ------------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class SwapSettings:
    """How swaps are bounded: ``max_slippage`` from the router's quote for market orders, and the
    deadline after the latest block."""

    max_slippage: Decimal = DEFAULT_MAX_SLIPPAGE
    deadline_seconds: int = 600


@dataclass(frozen=True)
class LidoConfig:
    steth: str
    wsteth: str
    swap_router: str  # where wstETH is redeemed for ETH
    swap: SwapSettings = SwapSettings()


@dataclass(frozen=True)
class EtherFiConfig:
    liquidity_pool: str
    eeth: str
    weeth: str
    swap_router: str  # where weETH is redeemed for ETH
    swap: SwapSettings = SwapSettings()


@dataclass(frozen=True)
class SwapConfig:
    router: str
    usdt: str
    swap: SwapSettings = SwapSettings()


# ------------------------------------------------------------------------------------ WETH
class WethGateway:
    """WETH9 ``deposit`` (ETH -> WETH) and ``withdraw`` (WETH -> ETH) for the sender's account, each
    one journaled transaction under the caller's key (resumed, never sent twice)."""

    def __init__(self, w3: AsyncWeb3, sender: TransactionSender, weth: str) -> None:
        self.sender = sender
        self.token = w3.eth.contract(address=AsyncWeb3.to_checksum_address(weth), abi=WETH_ABI)

    async def wrap(self, key: str, raw: int) -> TxOutcome:
        return await self.sender.send(key, to=self.token.address, data=self.token.encode_abi("deposit"), value=raw,
                                      label=f"wrap {_amount(raw, 18)} ETH to WETH")

    async def unwrap(self, key: str, raw: int) -> TxOutcome:
        return await self.sender.send(key, to=self.token.address, data=self.token.encode_abi("withdraw", args=[raw]),
                                      label=f"unwrap {_amount(raw, 18)} WETH to ETH")


# ------------------------------------------------------------------------------------ shared base
@dataclass(frozen=True)
class _Step:
    name: str  # the key suffix, e.g. "1-submit"
    moves_funds: bool  # False for approvals: signing one alone does not make the order exist


class _StepVenue(_ChainVenue):
    """Orders made of a fixed sequence of transactions, each journaled under its own key."""

    #: the kinds of intent this venue journals (others under the same prefix are not its orders)
    intent_kind = "steps"

    def __init__(self, w3: AsyncWeb3, sender: TransactionSender, name: str) -> None:
        super().__init__(w3, sender, name)
        self._decimals: dict[str, int] = {"ETH": ETH_DECIMALS}
        self._instruments: dict[str, Instrument] = {}

    def _reject(self, reason: str) -> OrderRejected:
        return OrderRejected(f"{self.name}: {reason}")

    def _contract(self, address: str, abi: list[dict[str, Any]]) -> Any:
        return self.w3.eth.contract(address=AsyncWeb3.to_checksum_address(address), abi=abi)

    async def instruments(self) -> dict[str, Instrument]:
        return dict(self._instruments)

    async def fetch_account(self) -> VenueAccount:
        return VenueAccount(self.name, {})  # the tokens sit in the wallet

    async def _deadline(self) -> int:
        block = await self._read(self.w3.eth.get_block("latest"))
        return int(block["timestamp"]) + self._swap_settings().deadline_seconds

    def _swap_settings(self) -> SwapSettings:
        raise NotImplementedError

    # -- what each venue defines
    def _steps(self, intent: dict[str, Any]) -> list[_Step]:
        raise NotImplementedError

    async def _run(self, key: str, intent: dict[str, Any], request: OrderRequest) -> None:
        """Sign and wait for every step not done yet (journaled steps are resumed)."""
        raise NotImplementedError

    async def _filled_state(self, base: OrderState, intent: dict[str, Any], key: str,
                            outcome: TxOutcome) -> OrderState:
        """The filled state from the last step's receipt."""
        raise NotImplementedError

    # -- orders
    async def place_order(self, request: OrderRequest) -> OrderState:
        state = await self.run_at(self._intent_key(request.client_order_id), request)
        return await self._settle(request.client_order_id, state)

    async def run_at(self, key: str, request: OrderRequest, record_gas: bool = True) -> OrderState:
        """Execute (or resume) the order ``request`` journaled under intent ``key``; its final or open
        state. Raises OrderRejected when nothing moved, AmbiguousOrderError when a step is pending.
        ``record_gas=False`` when the caller's venue books the gas (a step of a composite order)."""
        instrument = self._instruments.get(request.symbol)
        if instrument is None:
            raise self._reject(f"no instrument {request.symbol}")
        if request.quantity <= 0 or instrument.round_quantity(request.quantity) != request.quantity:
            raise self._reject(f"amount {request.quantity} not a multiple of {instrument.quantity_step}")
        if request.order_type == "limit" and (request.price is None or request.price <= 0):
            raise self._reject("limit order without a price")
        cid = request.client_order_id
        async with self._lock:
            intent = self.journal.intent(key)
            if intent is None:
                intent = {"kind": self.intent_kind, "symbol": request.symbol, "side": request.side,
                          "quantity": str(request.quantity), "order_type": request.order_type,
                          "price": None if request.price is None else str(request.price)}
                self.journal.put_intent(key, intent)
            elif (intent.get("symbol"), intent.get("side"), intent.get("quantity")) != (
                    request.symbol, request.side, str(request.quantity)):
                raise self._reject(f"client order id {cid} was used for another order ({intent.get('side')} "
                                   f"{intent.get('quantity')} {intent.get('symbol')})")
            try:
                await self._run(key, intent, request)
            except TransactionError as exc:
                if record_gas:
                    await self._gas_for_keys(self._tx_keys(key))
                if isinstance(exc, TransactionPending):
                    raise AmbiguousOrderError(f"{self.name}: {exc}") from exc
                if isinstance(exc, NodeUnavailable):
                    raise VenueUnavailable(f"{self.name}: {exc}") from exc
                reason = exc.reason if isinstance(exc, (TransactionRefused, TransactionReverted)) else str(exc)
                state = await self.state_at(key, cid)
                if state is None or state.status == "rejected":
                    raise self._reject(state.reason if state is not None and state.reason else reason) from exc
                if isinstance(exc, TransactionRefused):  # a later step cannot be sent: the order stops here
                    self.journal.put_intent(key, {**(self.journal.intent(key) or {}), "stopped": reason})
                    state = await self.state_at(key, cid)
                    assert state is not None
                return state
        state = await self.state_at(key, cid)
        assert state is not None
        return state

    async def fetch_order(self, client_order_id: str) -> OrderState | None:
        if client_order_id in self._settled:
            return self._settled[client_order_id]
        state = await self.state_at(self._intent_key(client_order_id), client_order_id)
        return None if state is None else await self._settle(client_order_id, state)

    async def _settle(self, cid: str, state: OrderState) -> OrderState:
        """Record a final state once: its fill and the gas of its transactions."""
        if not state.is_open and cid not in self._settled:
            key = self._intent_key(cid)
            if state.status == "filled" and state.venue_order_id not in {f.fill_id for f in self._fills}:
                outcome = (await self._read(self.sender.status(self._last_key(key)))).outcome
                assert outcome is not None
                when = await self._read(self.sender.block_timestamp(outcome.block_number))
                self._fills.append(Fill(outcome.tx_hash, cid, self.name, state.symbol, state.side,
                                        state.filled_quantity, state.average_price or ZERO, state.fee,
                                        state.fee_asset or "ETH", when))
            await self._gas_for_keys(self._tx_keys(key))
            self._settled[cid] = state
        return state

    def _last_key(self, key: str) -> str:
        return f"{key}/{self._steps(self.journal.intent(key) or {})[-1].name}"

    async def state_at(self, key: str, cid: str) -> OrderState | None:
        """The order journaled under intent ``key``, from its transactions' receipts; None while no
        step that moves funds was signed."""
        intent = self.journal.intent(key)
        if intent is None:
            return None
        steps = self._steps(intent)
        first = next(s for s in steps if s.moves_funds)
        if not self.journal.transactions(f"{key}/{first.name}"):
            return None
        base = OrderState(cid, self.name, intent["symbol"], intent["side"], D(intent["quantity"]), "open",
                          fee_asset="ETH")
        moved = False  # a step that moves funds was mined before the current one
        outcome: TxOutcome | None = None
        for step in steps:
            step_key = f"{key}/{step.name}"
            keys = [k for k in ((f"{step_key}/reset",) if not step.moves_funds else ()) + (step_key,)
                    if self.journal.transactions(k)]
            if not self.journal.transactions(step_key):
                if step.moves_funds:  # not signed yet: in progress, or stopped for good
                    stopped = intent.get("stopped")
                    return replace(base, status="cancelled", reason=stopped) if stopped else base
                continue  # the allowance was already exact: no approval needed
            for tx_key in keys:
                status = await self._read(self.sender.status(tx_key))
                base = replace(base, venue_order_id=status.hashes[-1] if status.hashes else base.venue_order_id)
                if status.state == "pending":
                    return base
                if status.state == "dropped":
                    reason = f"{step.name}: dropped, its nonce was taken by another transaction"
                    return replace(base, status="cancelled" if moved else "rejected", reason=reason)
                outcome = status.outcome
                assert outcome is not None
                base = replace(base, venue_order_id=outcome.tx_hash)
                if outcome.status != 1:
                    reason = f"{step.name}: {outcome.revert_reason or 'reverted'}"
                    if moved:
                        reason += self._stranded_note()
                    return replace(base, status="cancelled" if moved else "rejected", reason=reason)
            moved = moved or step.moves_funds
        assert outcome is not None
        return await self._filled_state(base, intent, key, outcome)

    def _stranded_note(self) -> str:
        return ""

    async def fetch_open_orders(self) -> list[OrderState]:
        states = []
        for key in self.journal.intent_keys(self.name + "/"):
            cid = key[len(self.name) + 1:]
            if cid in self._settled or (self.journal.intent(key) or {}).get("kind") != self.intent_kind:
                continue
            state = await self.fetch_order(cid)
            if state is not None and state.is_open:
                states.append(state)
        return states

    async def cancel_order(self, client_order_id: str) -> OrderState:
        """A signed transaction cannot be recalled: the order's current state."""
        state = await self.fetch_order(client_order_id)
        if state is None:
            raise self._reject(f"no order {client_order_id}")
        return state

    async def _observe_intent(self, intent_key: str) -> None:
        if (self.journal.intent(intent_key) or {}).get("kind") == self.intent_kind:
            await self.fetch_order(intent_key[len(self.name) + 1:])
        await self._gas_for_keys(self._tx_keys(intent_key))

    def _order_settled(self, intent_key: str) -> bool:
        cid = intent_key[len(self.name) + 1:]
        return cid in self._settled and (self.journal.intent(intent_key) or {}).get("kind") == self.intent_kind

    # -- helpers for the steps
    def _events(self, contract: Any, event: str, outcome: TxOutcome) -> list[Any]:
        return list(getattr(contract.events, event)().process_receipt(outcome.receipt, errors=DISCARD))

    def _swap_event(self, router: Any, outcome: TxOutcome) -> Any:
        events = [e for e in self._events(router, "Swap", outcome) if e.address == router.address]
        if len(events) != 1:
            raise VenueUnavailable(f"{self.name}: no Swap event in {outcome.tx_hash}")
        return events[0].args

    async def _check_balance(self, token: Any | None, raw: int, symbol: str) -> None:
        if token is None:
            held = await self._read(self.w3.eth.get_balance(self.account))
        else:
            held = await self._read(token.functions.balanceOf(self.account).call())
        if held < raw:
            decimals = self._decimals.get(symbol, ETH_DECIMALS)
            raise TransactionRefused(f"insufficient {symbol} in wallet: {_amount(held, decimals)} < "
                                     f"{_amount(raw, decimals)}")


# ---------------------------------------------------------------------------------------- staking
class _StakingVenue(_StepVenue):
    """Stake ETH for a wrapped LST, and redeem it through the router's LST route."""

    intent_kind = "stake"
    lst: str
    rebasing_symbol: str
    wrapper: Any  # wstETH / weETH
    rebasing: Any  # stETH / eETH

    def __init__(self, w3: AsyncWeb3, sender: TransactionSender, name: str, swap_router: str,
                 swap: SwapSettings) -> None:
        super().__init__(w3, sender, name)
        self.router = self._contract(swap_router, SWAP_ROUTER_ABI)
        self.swap = swap
        self._decimals[self.lst] = 18
        step = D(1).scaleb(-18)
        self._instruments = {self.lst: Instrument(name, self.lst, "stake", self.lst, "ETH", step, ONE_WEI, step, ZERO)}

    def _swap_settings(self) -> SwapSettings:
        return self.swap

    # -- protocol specifics
    async def _pool_state(self) -> tuple[int, int]:
        """(total shares, total pooled ether)."""
        raise NotImplementedError

    async def _shares_of(self, account: str) -> int:
        raise NotImplementedError

    def _stake_call(self) -> tuple[str, str]:
        """(contract address, calldata) of the payable staking call."""
        raise NotImplementedError

    async def _rate_raw(self) -> int:
        raise NotImplementedError

    async def lst_rate(self) -> Decimal:
        """ETH per LST, as the token reports it (18 decimals)."""
        return _amount(await self._rate_raw(), 18)

    # -- steps
    def _steps(self, intent: dict[str, Any]) -> list[_Step]:
        if intent.get("side") == "buy":
            return [_Step("1-submit", True), _Step("2-approve", False), _Step("3-wrap", True)]
        return [_Step("1-approve", False), _Step("2-swap", True)]

    def _stranded_note(self) -> str:
        return f" (the staked ETH is held as {self.rebasing_symbol})"

    async def _run(self, key: str, intent: dict[str, Any], request: OrderRequest) -> None:
        raw = _units(request.quantity, 18)
        if request.side == "buy":
            await self._stake(key, intent, raw)
        else:
            await self._redeem(key, request, raw)

    async def _stake(self, key: str, intent: dict[str, Any], shares: int) -> None:
        submit_key = f"{key}/1-submit"
        if not self.journal.transactions(submit_key):
            total_shares, pooled = await self._pool_state()
            eth = _ceil_div(shares * pooled, total_shares)  # mints exactly `shares` while the rate >= 1
            await self._check_balance(None, eth, "ETH")
            to, data = self._stake_call()
            await self.sender.send(submit_key, to=to, data=data, value=eth,
                                   label=f"stake {_amount(eth, 18)} ETH for {_amount(shares, 18)} {self.lst}")
        else:
            await self.sender.wait(submit_key)
        intent = self.journal.intent(key) or intent
        if "wrap_amount" not in intent:
            # The amount of the rebasing token worth exactly the shares to wrap, at the rate now.
            total_shares, pooled = await self._pool_state()
            held = await self._shares_of(self.account)
            wrap_shares = min(shares, held)
            if wrap_shares == 0:
                raise TransactionRefused(f"no {self.rebasing_symbol} to wrap")
            intent = {**intent, "wrap_amount": str(_ceil_div(wrap_shares * pooled, total_shares))}
            self.journal.put_intent(key, intent)
        amount = int(intent["wrap_amount"])
        wrap_key = f"{key}/3-wrap"
        if self.journal.transactions(wrap_key):  # already wrapped (or wrapping): nothing to approve again
            await self.sender.wait(wrap_key)
            return
        await self.sender.approve_exact(f"{key}/2-approve", self.rebasing.address, self.wrapper.address, amount,
                                        label=f"approve {_amount(amount, 18)} {self.rebasing_symbol} to wrap")
        await self.sender.send(wrap_key, to=self.wrapper.address,
                               data=self.wrapper.encode_abi("wrap", args=[amount]),
                               label=f"wrap {_amount(amount, 18)} {self.rebasing_symbol} to {self.lst}")

    async def _redeem(self, key: str, request: OrderRequest, raw: int) -> None:
        swap_key = f"{key}/2-swap"
        if not self.journal.transactions(swap_key):
            out, _ = await self._read(self.router.functions.quoteExactLstForEth(self.wrapper.address, raw).call())
            if request.order_type == "limit":
                assert request.price is not None
                min_out = _scale(raw, request.price, ROUND_CEILING)
                if out < min_out:
                    raise TransactionRefused(f"route pays {_amount(out, 18)} ETH for {request.quantity} {self.lst}, "
                                             f"below the limit {_amount(min_out, 18)} ETH")
            else:
                min_out = _scale(out, 1 - self.swap.max_slippage, ROUND_FLOOR)
            await self._check_balance(self.wrapper, raw, self.lst)
            await self.sender.approve_exact(f"{key}/1-approve", self.wrapper.address, self.router.address, raw,
                                            label=f"approve {request.quantity} {self.lst} to the swap router")
            data = self.router.encode_abi("swapExactLstForEth",
                                          args=[self.wrapper.address, raw, min_out, self.account, await self._deadline()])
            await self.sender.send(swap_key, to=self.router.address, data=data,
                                   label=f"redeem {request.quantity} {self.lst} for >= {_amount(min_out, 18)} ETH")
        else:
            await self.sender.wait(swap_key)

    async def _filled_state(self, base: OrderState, intent: dict[str, Any], key: str,
                            outcome: TxOutcome) -> OrderState:
        if intent["side"] == "buy":
            minted = sum(int(e.args.value) for e in self._events(self.wrapper, "Transfer", outcome)
                         if e.address == self.wrapper.address and e.args["from"] == ZERO_ADDRESS
                         and e.args.to == self.account)
            (submit,) = self.journal.transactions(f"{key}/1-submit")[-1:]
            filled = _amount(minted, 18)
            price = D(submit.value) / D(minted) if minted else None
            return replace(base, status="filled", filled_quantity=filled, average_price=price)
        swap = self._swap_event(self.router, outcome)
        gross = int(swap.amountOut) + int(swap.fee)
        return replace(base, status="filled", filled_quantity=_amount(int(swap.amountIn), 18),
                       average_price=D(gross) / D(int(swap.amountIn)), fee=_amount(int(swap.fee), 18), fee_asset="ETH")

    async def cancel_order(self, client_order_id: str) -> OrderState:
        """A stake whose ETH is staked is completed (approve and wrap), not abandoned; anything
        else cannot be recalled once signed."""
        state = await self.fetch_order(client_order_id)
        if state is None:
            raise self._reject(f"no order {client_order_id}")
        key = self._intent_key(client_order_id)
        intent = self.journal.intent(key) or {}
        if state.is_open and intent.get("side") == "buy" and not intent.get("stopped"):
            status = await self._read(self.sender.status(f"{key}/1-submit"))
            if status.state == "mined" and status.outcome is not None and status.outcome.status == 1:
                request = OrderRequest(client_order_id, self.name, intent["symbol"], "buy", D(intent["quantity"]))
                try:
                    return await self.place_order(request)
                except AmbiguousOrderError:
                    pass
        return state


class LidoVenue(_StakingVenue):
    """Lido: ETH -> stETH (``submit``) -> wstETH (``wrap``); wstETH -> ETH through the swap router."""

    lst = "wstETH"
    rebasing_symbol = "stETH"

    def __init__(self, w3: AsyncWeb3, sender: TransactionSender, config: LidoConfig, name: str = "lido") -> None:
        super().__init__(w3, sender, name, config.swap_router, config.swap)
        self.config = config
        self.rebasing = self._contract(config.steth, STETH_ABI)
        self.wrapper = self._contract(config.wsteth, WSTETH_ABI)

    async def _pool_state(self) -> tuple[int, int]:
        return (await self._read(self.rebasing.functions.getTotalShares().call()),
                await self._read(self.rebasing.functions.getTotalPooledEther().call()))

    async def _shares_of(self, account: str) -> int:
        return int(await self._read(self.rebasing.functions.sharesOf(account).call()))

    def _stake_call(self) -> tuple[str, str]:
        return self.rebasing.address, self.rebasing.encode_abi("submit", args=[ZERO_ADDRESS])

    async def _rate_raw(self) -> int:
        return int(await self._read(self.wrapper.functions.stEthPerToken().call()))


class EtherFiVenue(_StakingVenue):
    """EtherFi: ETH -> eETH (``LiquidityPool.deposit``) -> weETH (``wrap``); weETH -> ETH through the
    swap router."""

    lst = "weETH"
    rebasing_symbol = "eETH"

    def __init__(self, w3: AsyncWeb3, sender: TransactionSender, config: EtherFiConfig,
                 name: str = "etherfi") -> None:
        super().__init__(w3, sender, name, config.swap_router, config.swap)
        self.config = config
        self.pool = self._contract(config.liquidity_pool, LIQUIDITY_POOL_ABI)
        self.rebasing = self._contract(config.eeth, EETH_ABI)
        self.wrapper = self._contract(config.weeth, WEETH_ABI)

    async def _pool_state(self) -> tuple[int, int]:
        return (await self._read(self.rebasing.functions.totalShares().call()),
                await self._read(self.pool.functions.getTotalPooledEther().call()))

    async def _shares_of(self, account: str) -> int:
        return int(await self._read(self.rebasing.functions.shares(account).call()))

    def _stake_call(self) -> tuple[str, str]:
        return self.pool.address, self.pool.encode_abi("deposit")

    async def _rate_raw(self) -> int:
        return int(await self._read(self.wrapper.functions.getRate().call()))


# ---------------------------------------------------------------------------------------- swap
class SwapVenue(_StepVenue):
    """ETH <-> USDT through the swap router (see the module docstring)."""

    intent_kind = "swap"

    def __init__(self, w3: AsyncWeb3, sender: TransactionSender, config: SwapConfig, name: str = "uniswap") -> None:
        super().__init__(w3, sender, name)
        self.config = config
        self.router = self._contract(config.router, SWAP_ROUTER_ABI)
        self.usdt = self._contract(config.usdt, ERC20_ABI)
        self._instruments = {"ETH/USDT": Instrument(name, "ETH/USDT", "spot", "ETH", "USDT", D("0.000001"), D("0.01"),
                                                    D("0.000001"), D(1))}

    def _swap_settings(self) -> SwapSettings:
        return self.config.swap

    async def _usdt_decimals(self) -> int:
        if "USDT" not in self._decimals:
            self._decimals["USDT"] = int(await self._read(self.usdt.functions.decimals().call()))
        return self._decimals["USDT"]

    def _steps(self, intent: dict[str, Any]) -> list[_Step]:
        if intent.get("side") == "buy":
            return [_Step("1-approve", False), _Step("2-swap", True)]
        return [_Step("1-swap", True)]

    async def _run(self, key: str, intent: dict[str, Any], request: OrderRequest) -> None:
        raw = _units(request.quantity, 18)
        decimals = await self._usdt_decimals()
        settings = self.config.swap
        if request.side == "sell":
            swap_key = f"{key}/1-swap"
            if self.journal.transactions(swap_key):
                await self.sender.wait(swap_key)
                return
            out, _ = await self._read(self.router.functions.quoteExactEthForUsdt(raw).call())
            if request.order_type == "limit":
                assert request.price is not None
                min_out = int((request.quantity * request.price).scaleb(decimals).to_integral_value(ROUND_CEILING))
                if out < min_out:
                    raise TransactionRefused(f"router pays {_amount(out, decimals)} USDT for {request.quantity} ETH, "
                                             f"below the limit {_amount(min_out, decimals)} USDT")
            else:
                min_out = _scale(out, 1 - settings.max_slippage, ROUND_FLOOR)
            await self._check_balance(None, raw, "ETH")
            data = self.router.encode_abi("swapExactEthForUsdt", args=[min_out, self.account, await self._deadline()])
            await self.sender.send(swap_key, to=self.router.address, data=data, value=raw,
                                   label=f"sell {request.quantity} ETH for >= {_amount(min_out, decimals)} USDT")
            return
        swap_key = f"{key}/2-swap"
        if self.journal.transactions(swap_key):
            await self.sender.wait(swap_key)
            return
        if "max_in" not in intent:
            cost, _ = await self._read(self.router.functions.quoteUsdtForExactEth(raw).call())
            if request.order_type == "limit":
                assert request.price is not None
                max_in = int((request.quantity * request.price).scaleb(decimals).to_integral_value(ROUND_FLOOR))
                if cost > max_in:
                    raise TransactionRefused(f"router asks {_amount(cost, decimals)} USDT for {request.quantity} ETH, "
                                             f"above the limit {_amount(max_in, decimals)} USDT")
            else:
                max_in = _scale(cost, 1 + settings.max_slippage, ROUND_CEILING)
            await self._check_balance(self.usdt, cost, "USDT")
            intent = {**intent, "max_in": str(max_in)}
            self.journal.put_intent(key, intent)
        max_in = int(intent["max_in"])
        # The router takes at most max_in; what it does not take stays approved until the next
        # approval resets it.
        await self.sender.approve_exact(f"{key}/1-approve", self.usdt.address, self.router.address, max_in,
                                        label=f"approve {_amount(max_in, decimals)} USDT to the swap router")
        data = self.router.encode_abi("swapUsdtForExactEth", args=[raw, max_in, self.account, await self._deadline()])
        await self.sender.send(swap_key, to=self.router.address, data=data,
                               label=f"buy {request.quantity} ETH for <= {_amount(max_in, decimals)} USDT")

    async def _filled_state(self, base: OrderState, intent: dict[str, Any], key: str,
                            outcome: TxOutcome) -> OrderState:
        decimals = await self._usdt_decimals()
        swap = self._swap_event(self.router, outcome)
        fee = int(swap.fee)
        if intent["side"] == "buy":
            eth, notional = int(swap.amountOut), int(swap.amountIn) - fee
        else:
            eth, notional = int(swap.amountIn), int(swap.amountOut) + fee
        return replace(base, status="filled", filled_quantity=_amount(eth, 18),
                       average_price=_amount(notional, decimals) / _amount(eth, 18),
                       fee=_amount(fee, decimals), fee_asset="USDT")



# ---------------------------------------------------------------------------------------- leverage
ORACLE_ABI = abi_from_signatures("function getAssetPrice(address asset) view returns (uint256)")
DEFAULT_HEALTH_FACTOR_FLOOR = D("1.01")
DEFAULT_SIZING_MARGIN = D("0.000001")
DEFAULT_REPAY_MARGIN = D("0.0001")
DUST = ONE_WEI * 1000  # what a loop may end short of its quantity by (rounding of the contracts' math)
LOOP_STEPS = {"buy": ("borrow", "unwrap", "stake", "supply"), "sell": ("withdraw", "redeem", "wrap", "repay", "unwrap")}


@dataclass(frozen=True)
class LeverageConfig:
    """The composite leverage venue's addresses and limits."""

    weth: str
    oracle: str  # AaveOracle: USD prices, ``base_currency_decimals`` as in AaveV3Config
    #: no step that lowers the health factor may leave it below this (e.g. the strategy's
    #: health_factor_threshold); steps that raise it (supply, repay) are never held back
    health_factor_floor: Decimal = DEFAULT_HEALTH_FACTOR_FLOOR
    #: steps are sized this fraction inside the limits (Aave's max LTV, the floor): the account data
    #: they are computed from is rounded to the base unit and interest accrues until the step is mined
    sizing_margin: Decimal = DEFAULT_SIZING_MARGIN
    #: the last repay of a whole debt wraps this fraction more (interest accrues until it is mined)
    repay_margin: Decimal = DEFAULT_REPAY_MARGIN
    #: rounds of one loop order before it stops as partially done
    max_rounds: int = 64


class LoopStopped(Exception):
    """The loop cannot take another step (health-factor floor, a refused step): it ends here."""


class OnchainLeverageVenue(Venue):
    """Aave V3 plus the leverage step, as the paper ``PaperAave``: every ``AaveV3Venue`` instrument
    (delegated) and ``<lst>-loop`` for each staking venue given, without a flash loan.

    ``<lst>-loop`` ``buy q`` borrows q WETH in rounds of single transactions: borrow WETH (as much
    as the max LTV and the health-factor floor allow) -> unwrap to ETH -> stake -> supply the LST;
    until q is borrowed. ``sell q`` repays q of debt in rounds: withdraw the LST that redeems for
    what is left to repay, as far as the floor allows -> redeem it to ETH (router) -> wrap ->
    repay; the last round of a whole debt repays all of it (interest included) and unwraps the
    WETH left over. Before a step that lowers the health factor (borrow, withdraw), the factor it
    would leave is computed from ``getUserAccountData`` and the oracle price; below the floor the
    step is not sent and the loop ends there. filled_quantity = the debt moved (borrowed or
    repaid, from the Pool events); price = the LST rate the stake / redemption steps got.

    Exactly-once: the order is an intent under ``aave_v3/<client id>``; each step is its own
    journaled sub-order under ``<client id>/<round>.<n>-<step>`` (``7.3-stake``) on the inner venue
    that does it, with its amount journaled before it is signed, so a resend resumes the step
    where it was and never signs one twice. ``fetch_order`` is None while no step was signed,
    ``open`` / ``partially_filled`` while a step is pending or the loop is unfinished, then
    ``filled`` / ``cancelled`` (stopped early; the debt actually moved as filled_quantity) /
    ``rejected``. ``cancel_order`` stops the loop at the end of the current round (a round is
    finished so that no funds are left half-way, e.g. borrowed WETH not yet supplied); after a
    restart it finishes that round itself.

    Fills: one per loop order; the steps' own fills are not reported. Gas: every transaction of
    every step, once, in the inner Aave venue's ledger (all are journaled under ``aave_v3/``).
    """

    #: One loop order is dozens of transactions (minutes on mainnet): the engine's bound on one call.
    call_timeout_seconds = 3600.0

    def __init__(self, aave: AaveV3Venue, staking: dict[str, _StakingVenue], config: LeverageConfig,
                 name: str = "aave_v3") -> None:
        if aave.name != name:
            raise ValueError(f"the inner Aave venue must be named {name!r} (its journal keys are the loop's)")
        self.name = name
        self.aave = aave
        self.staking = dict(staking)
        self.config = config
        self.sender: TransactionSender = aave.sender
        self.journal = aave.journal
        self.weth = WethGateway(aave.w3, self.sender, config.weth)
        self.oracle = aave.w3.eth.contract(address=AsyncWeb3.to_checksum_address(config.oracle), abi=ORACLE_ABI)
        self._fills: list[Fill] = []
        self._inner_cursor = 0
        self._settled: dict[str, OrderState] = {}
        self._not_loops: set[str] = set()  # intent keys under this venue's name that are not loops
        self._running: set[str] = set()
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ delegation
    async def instruments(self) -> dict[str, Instrument]:
        instruments = await self.aave.instruments()
        for lst in self.staking:
            if lst in instruments:
                instruments[f"{lst}-loop"] = Instrument(self.name, f"{lst}-loop", "loop", lst, "ETH", ONE_WEI, ONE_WEI,
                                                        ONE_WEI, ZERO)
        return instruments

    async def fetch_account(self) -> VenueAccount:
        return await self.aave.fetch_account()

    async def account_data(self) -> AaveAccountData:
        return await self.aave.account_data()

    async def set_emode(self, category: int, action_id: str | None = None) -> TxOutcome | None:
        return await self.aave.set_emode(category, action_id)

    async def fetch_ledger(self, since: int = 0) -> tuple[list[LedgerEntry], int]:
        return await self.aave.fetch_ledger(since)

    async def fetch_fills(self, since: int = 0) -> tuple[list[Fill], int]:
        """The inner venue's fills but those of loop steps, and one fill per settled loop order."""
        inner, self._inner_cursor = await self.aave.fetch_fills(self._inner_cursor)
        self._fills.extend(f for f in inner if "/" not in f.client_order_id)
        await self._observe()
        return self._fills[since:], len(self._fills)

    async def _observe(self) -> None:
        """Settle loop orders that have ended; settled ones, their steps and intents that are not
        loops are not read again (the journal keeps every run's intents)."""
        for key in self.journal.intent_keys(self.name + "/"):
            cid = key[len(self.name) + 1:]
            if "/" in cid or cid in self._settled or key in self._not_loops:
                continue
            if (self.journal.intent(key) or {}).get("kind") != "loop":
                self._not_loops.add(key)
                continue
            await self.fetch_order(cid)

    def _is_loop(self, cid: str) -> bool:
        return (self.journal.intent(self._key(cid)) or {}).get("kind") == "loop"

    def _key(self, cid: str) -> str:
        return f"{self.name}/{cid}"

    async def place_order(self, request: OrderRequest) -> OrderState:
        if not request.symbol.endswith("-loop"):
            return await self.aave.place_order(request)
        lst = request.symbol.removesuffix("-loop")
        if lst not in self.staking or request.quantity <= 0:
            raise OrderRejected(f"{self.name}: no leverage loop {request.symbol} (or amount {request.quantity})")
        if request.quantity != request.quantity.quantize(ONE_WEI):
            raise OrderRejected(f"{self.name}: amount {request.quantity} has more than 18 decimals")
        key = self._key(request.client_order_id)
        intent = self.journal.intent(key)
        if intent is None:
            self.journal.put_intent(key, {"kind": "loop", "symbol": request.symbol, "side": request.side,
                                          "quantity": str(request.quantity), "lst": lst})
        elif (intent.get("symbol"), intent.get("side"), intent.get("quantity")) != (
                request.symbol, request.side, str(request.quantity)):
            raise OrderRejected(f"{self.name}: client order id {request.client_order_id} was used for another order")
        return await self._drive(request.client_order_id)

    async def fetch_order(self, client_order_id: str) -> OrderState | None:
        if not self._is_loop(client_order_id):
            return await self.aave.fetch_order(client_order_id)
        if client_order_id in self._settled:
            return self._settled[client_order_id]
        state = await self._loop_state(client_order_id)
        if state is not None and not state.is_open:
            await self._settle(client_order_id, state)
        return state

    async def fetch_open_orders(self) -> list[OrderState]:
        states = [s for s in await self.aave.fetch_open_orders() if "/" not in s.client_order_id]
        for key in self.journal.intent_keys(self.name + "/"):
            cid = key[len(self.name) + 1:]
            if "/" not in cid and cid not in self._settled and self._is_loop(cid):
                state = await self.fetch_order(cid)
                if state is not None and state.is_open:
                    states.append(state)
        return states

    async def cancel_order(self, client_order_id: str) -> OrderState:
        if not self._is_loop(client_order_id):
            return await self.aave.cancel_order(client_order_id)
        key = self._key(client_order_id)
        intent = self.journal.intent(key) or {}
        if "final" not in intent and not intent.get("cancel"):
            self.journal.put_intent(key, {**intent, "cancel": True})
        state = await self.fetch_order(client_order_id)
        if state is None:
            raise OrderRejected(f"{self.name}: no order {client_order_id}")
        if state.is_open and client_order_id not in self._running:
            # Nobody drives it in this process (a restart): finish the current round, then stop.
            with contextlib.suppress(AmbiguousOrderError):
                return await self._drive(client_order_id)
        return state

    # ------------------------------------------------------------------ reads
    async def _price(self, asset: str) -> Decimal:
        """Oracle price in the base currency."""
        raw = await self.aave._read(self.oracle.functions.getAssetPrice(self.aave.tokens[asset].address).call())
        return _amount(int(raw), self.aave.config.base_currency_decimals)

    async def _position(self, symbol: str) -> Decimal:
        for position in (await self.aave.fetch_account()).positions:
            if position.symbol == symbol:
                return position.quantity
        return ZERO

    def _sizing_floor(self) -> Decimal:
        return self.config.health_factor_floor * (1 + self.config.sizing_margin)

    def _floor_check(self, step: str, health_factor: Decimal) -> None:
        if health_factor < self.config.health_factor_floor:
            raise LoopStopped(f"{step} would leave health factor {health_factor:.6f} below the floor "
                              f"{self.config.health_factor_floor}")

    # ------------------------------------------------------------------ the loop
    def _sub_key(self, cid: str, round_no: int, index: int, step: str) -> tuple[str, str]:
        sub_cid = f"{cid}/{round_no}.{index}-{step}"
        return sub_cid, self._key(sub_cid)

    async def _drive(self, cid: str) -> OrderState:
        """Run (or resume) the loop order ``cid`` until it is done, stopped or cancelled."""
        key = self._key(cid)
        async with self._lock:
            self._running.add(cid)
            try:
                intent = self.journal.intent(key) or {}
                if "final" not in intent:
                    try:
                        final, reason = await self._rounds(cid, intent)
                    except OrderRejected as exc:
                        final, reason = "stopped", str(exc)
                    except (AmbiguousOrderError, VenueUnavailable):
                        raise
                    self.journal.put_intent(key, {**(self.journal.intent(key) or {}), "final": final,
                                                  "reason": reason})
            finally:
                self._running.discard(cid)
        state = await self.fetch_order(cid)
        if state is None or state.status == "rejected":
            reason = (state.reason if state else None) or (self.journal.intent(key) or {}).get("reason")
            raise OrderRejected(f"{self.name}: loop refused before any step: {reason or 'no reason recorded'}")
        return state

    async def _rounds(self, cid: str, intent: dict[str, Any]) -> tuple[str, str | None]:
        side, quantity = intent["side"], D(intent["quantity"])
        staking = self.staking[intent["lst"]]
        moved = ZERO
        for round_no in range(1, self.config.max_rounds + 1):
            started = self.journal.intent(self._sub_key(cid, round_no, 1, LOOP_STEPS[side][0])[1]) is not None
            if not started:
                current = self.journal.intent(self._key(cid)) or {}
                if current.get("cancel"):
                    return "cancelled", "cancelled"
                if moved >= quantity - DUST:
                    return "done", None
                if side == "sell" and moved > 0 and await self._position("WETH-debt") == 0:
                    return "done", None  # the whole debt (as it was when mined) is repaid
            try:
                if side == "buy":
                    moved += await self._lever_round(cid, round_no, staking, quantity - moved)
                else:
                    moved += await self._delever_round(cid, round_no, staking, quantity - moved)
            except LoopStopped as exc:
                return "stopped", str(exc)
        return "stopped", f"not done after {self.config.max_rounds} rounds"

    async def _aave_step(self, sub_cid: str, symbol: str, side: str, plan: Any) -> OrderState:
        """Place (or resume) one Aave sub-order; ``plan()`` gives its quantity when it is new."""
        journaled = self.journal.intent(self._key(sub_cid))
        quantity = D(journaled["quantity"]) if journaled is not None else await plan()
        return await self.aave.place_order(OrderRequest(sub_cid, self.name, symbol, side, quantity))

    async def _staking_step(self, sub_cid: str, staking: _StakingVenue, side: str, plan: Any) -> OrderState:
        key = self._key(sub_cid)
        journaled = self.journal.intent(key)
        quantity = D(journaled["quantity"]) if journaled is not None else await plan()
        return await staking.run_at(key, OrderRequest(sub_cid, staking.name, staking.lst, side, quantity),
                                    record_gas=False)

    async def _weth_step(self, sub_cid: str, op: str, raw: int) -> int:
        key = self._key(sub_cid)
        journaled = self.journal.intent(key)
        if journaled is None:
            self.journal.put_intent(key, {"kind": "weth", "op": op, "amount": str(raw)})
        else:
            raw = int(journaled["amount"])
        try:
            if op == "wrap":
                await self.weth.wrap(f"{key}/action", raw)
            else:
                await self.weth.unwrap(f"{key}/action", raw)
        except TransactionPending as exc:
            raise AmbiguousOrderError(f"{self.name}: {exc}") from exc
        except TransactionError as exc:
            raise LoopStopped(f"{op} WETH: {getattr(exc, 'reason', exc)}") from exc
        return raw

    async def _lever_round(self, cid: str, round_no: int, staking: _StakingVenue, remaining: Decimal) -> Decimal:
        async def plan_borrow() -> Decimal:
            data = await self.aave.account_data()
            weth_price = await self._price("WETH")
            capacity = data.total_collateral * data.liquidation_threshold
            by_floor = (capacity / self._sizing_floor() - data.total_debt) / weth_price
            by_ltv = data.available_borrows / weth_price * (1 - self.config.sizing_margin)
            amount = min(remaining, by_floor, by_ltv).quantize(ONE_WEI, rounding=ROUND_FLOOR)
            if amount <= 0:
                raise LoopStopped("no borrowing room left above the health-factor floor and under the max LTV")
            self._floor_check("borrow", capacity / (data.total_debt + amount * weth_price))
            return amount

        sub_cid, _ = self._sub_key(cid, round_no, 1, "borrow")
        borrowed = (await self._aave_step(sub_cid, "WETH-debt", "buy", plan_borrow)).filled_quantity
        raw = _units(borrowed, 18)
        await self._weth_step(self._sub_key(cid, round_no, 2, "unwrap")[0], "unwrap", raw)

        async def plan_stake() -> Decimal:
            shares, pooled = await staking._pool_state()
            return _amount(raw * shares // pooled, 18)  # the shares that many wei buy: costs <= raw

        staked = await self._staking_step(self._sub_key(cid, round_no, 3, "stake")[0], staking, "buy", plan_stake)
        if staked.status != "filled":
            raise LoopStopped(f"stake step {staked.status}: {staked.reason}")

        async def plan_supply() -> Decimal:
            return staked.filled_quantity

        await self._aave_step(self._sub_key(cid, round_no, 4, "supply")[0], staking.lst, "buy", plan_supply)
        return borrowed

    async def _delever_round(self, cid: str, round_no: int, staking: _StakingVenue, remaining: Decimal) -> Decimal:
        lst = staking.lst
        debt = await self._position("WETH-debt")
        # What is left to repay is the whole debt (give or take the interest since it was read), as
        # the Aave venue judges a repay of the whole debt: then the round repays all of it.
        whole = remaining >= debt * (1 - self.aave.config.full_balance_tolerance)

        async def plan_withdraw() -> Decimal:
            if debt <= 0:
                raise LoopStopped("no debt left to repay")
            target = debt * (1 + self.config.repay_margin) if whole else remaining
            needed = await self._lst_for_eth(staking, target)
            data = await self.aave.account_data()
            lst_price = await self._price(lst)
            threshold = data.liquidation_threshold
            capacity = data.total_collateral * threshold
            by_floor = (capacity - self._sizing_floor() * data.total_debt) / (threshold * lst_price)
            supplied = await self._position(lst)
            amount = min(needed, by_floor.quantize(ONE_WEI, rounding=ROUND_FLOOR), supplied)
            if amount <= 0:
                raise LoopStopped("the health factor is at its floor: no collateral can be withdrawn")
            self._floor_check("withdraw", (capacity - amount * lst_price * threshold) / data.total_debt)
            return amount

        withdrawn = (await self._aave_step(self._sub_key(cid, round_no, 1, "withdraw")[0], lst, "sell",
                                           plan_withdraw)).filled_quantity

        async def plan_redeem() -> Decimal:
            return withdrawn

        redeemed = await self._staking_step(self._sub_key(cid, round_no, 2, "redeem")[0], staking, "sell", plan_redeem)
        if redeemed.status != "filled":
            raise LoopStopped(f"redeem step {redeemed.status}: {redeemed.reason}")
        # gross = quantity x price is a whole number of wei; the division behind the price is exact to
        # ~1e-27, so rounding to the nearest wei recovers it.
        gross = (redeemed.filled_quantity * (redeemed.average_price or ZERO)).quantize(ONE_WEI, rounding=ROUND_HALF_EVEN)
        received = gross - redeemed.fee
        cap = debt * (1 + self.config.repay_margin) if whole else remaining
        wrapped = await self._weth_step(self._sub_key(cid, round_no, 3, "wrap")[0], "wrap",
                                        _units(min(received, cap.quantize(ONE_WEI, rounding=ROUND_CEILING)), 18))
        repay_all = whole and _amount(wrapped, 18) >= debt

        async def plan_repay() -> Decimal:
            if repay_all:
                return debt
            # A partial repay must stay clear of what the Aave venue takes for "the whole debt".
            near_whole = debt * (1 - 2 * self.aave.config.full_balance_tolerance)
            return min(_amount(wrapped, 18), near_whole.quantize(ONE_WEI, rounding=ROUND_FLOOR))

        repaid = (await self._aave_step(self._sub_key(cid, round_no, 4, "repay")[0], "WETH-debt", "sell",
                                        plan_repay)).filled_quantity
        left = wrapped - _units(repaid, 18)
        if left > 0:  # a whole repay takes the debt as mined: give back the WETH it did not need
            await self._weth_step(self._sub_key(cid, round_no, 5, "unwrap")[0], "unwrap", left)
        return repaid

    async def _lst_for_eth(self, staking: _StakingVenue, eth: Decimal) -> Decimal:
        """The LST amount the router redeems for at least ``eth`` ETH now."""
        target = _units(eth.quantize(ONE_WEI, rounding=ROUND_CEILING), 18)

        async def quote(raw: int) -> int:
            out, _ = await staking._read(
                staking.router.functions.quoteExactLstForEth(staking.wrapper.address, raw).call())
            return int(out)

        net_rate = await quote(WAD)  # wei of ETH per whole LST, after the fee
        raw = _ceil_div(target * WAD, net_rate)
        for _ in range(4):  # the router rounds each part in its favour: top up until the quote covers it
            short = target - await quote(raw)
            if short <= 0:
                return _amount(raw, 18)
            raw += _ceil_div(short * WAD, net_rate) + 1
        raise LoopStopped(f"the router quote does not cover {eth} ETH")

    # ------------------------------------------------------------------ state
    def _steps_of(self, cid: str) -> list[tuple[str, str]]:
        """(sub client id, step name) of every step journaled for loop ``cid``, in order."""
        prefix = self._key(cid) + "/"
        steps = []
        for key in self.journal.intent_keys(prefix):
            rest = key[len(prefix):]
            if "/" not in rest:
                steps.append((f"{cid}/{rest}", rest.split("-", 1)[1]))
        return steps

    async def _loop_state(self, cid: str) -> OrderState | None:
        intent = self.journal.intent(self._key(cid))
        if intent is None or not self.aave._tx_keys(self._key(cid)):
            return None
        staking = self.staking[intent["lst"]]
        side = intent["side"]
        base = OrderState(cid, self.name, intent["symbol"], side, D(intent["quantity"]), "open", fee_asset="ETH")
        moved = ZERO
        pending = False
        lst_amount, eth_amount, fees = ZERO, ZERO, ZERO
        last_hash: str | None = None
        for sub_cid, step in self._steps_of(cid):
            key = self._key(sub_cid)
            if step in ("borrow", "supply", "withdraw", "repay"):
                state = await self.aave.fetch_order(sub_cid)
            elif step in ("stake", "redeem"):
                state = await staking.state_at(key, sub_cid)
            else:
                status = await self.aave._read(self.sender.status(f"{key}/action"))
                pending = pending or status.state == "pending"
                if status.outcome is not None:
                    last_hash = status.outcome.tx_hash
                continue
            if state is None:
                continue
            pending = pending or state.is_open
            last_hash = state.venue_order_id or last_hash
            if state.status != "filled":
                continue
            if step in ("borrow", "repay"):
                moved += state.filled_quantity
            elif step in ("stake", "redeem"):
                lst_amount += state.filled_quantity
                eth_amount += state.filled_quantity * (state.average_price or ZERO)
                fees += state.fee or ZERO  # the swap route's fee on a redemption, in ETH
        price = (eth_amount / lst_amount) if lst_amount else None
        base = replace(base, filled_quantity=moved, average_price=price, venue_order_id=last_hash, fee=fees)
        final = intent.get("final")
        if pending or final is None:
            return replace(base, status="partially_filled" if moved > 0 else "open")
        if final == "done":
            return replace(base, status="filled")
        reason = intent.get("reason")
        if moved == 0 and final == "stopped":
            return replace(base, status="rejected", reason=reason)
        return replace(base, status="cancelled", reason=reason)

    async def _settle(self, cid: str, state: OrderState) -> None:
        if state.filled_quantity > 0 and state.venue_order_id:
            receipt_block = (await self.aave._read(self.aave.w3.eth.get_transaction_receipt(state.venue_order_id)))
            when = await self.aave._read(self.sender.block_timestamp(int(receipt_block["blockNumber"])))
            # The loop's fill carries its steps' route fees: attributed as fees, not left in the gap.
            self._fills.append(Fill(state.venue_order_id, cid, self.name, state.symbol, state.side, state.filled_quantity,
                                    state.average_price or ZERO, state.fee, "ETH", when))
        self._settled[cid] = state
