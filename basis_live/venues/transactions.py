"""Signing and sending transactions for one account, exactly once, through an async web3 client.

What a ``TransactionSender`` guarantees, and how:

- **Journal before broadcast.** Every transaction is signed locally and recorded in a
  ``TransactionJournal`` (hash, nonce, fees and the signed raw bytes, under a caller-chosen key)
  *before* it is broadcast. A key that is already in the journal is never signed again with a new
  nonce: ``send`` on it resumes the recorded transaction (checks its receipt, broadcasts the same
  signed bytes again if the node does not know it, replaces it when stuck). A restarted sender with
  the same journal therefore finds what it signed and never sends a second transaction for a key.
  Once signed, a transaction counts as committed: it stays in the pool until it is mined or another
  transaction takes its nonce (``TransactionDropped``).
- **Refusals happen before signing**, so a refused transaction leaves nothing behind: wrong chain,
  fees above the configured cap (``FeeCapExceeded``), a call that would revert (gas estimation
  fails; the revert data is decoded by the optional ``decode_revert``), not enough ETH for gas.
- **Fees** are EIP-1559: max fee = next base fee x ``base_fee_multiplier`` + priority fee (the
  node's ``eth_maxPriorityFeePerGas`` unless configured), clamped to ``max_fee_gwei``; when even the
  base fee plus the priority fee is above the cap the transaction is refused.
- **Gas limit** = the node's estimate x ``gas_margin`` (1.2), rounded up.
- **Nonces** survive restarts: next nonce = max(the node's pending nonce, the journal's last nonce
  for this account + 1). Journaled transactions the node has lost (a crash between journal and
  broadcast, a node restart) are broadcast again before a new nonce is handed out, so there is no gap.
- **Stuck transactions**: without a receipt after ``receipt_timeout`` seconds the transaction is
  replaced (same nonce, same call) with both fee fields raised by at least ``replacement_bump``
  (12.5%, what nodes require), never above the cap, up to ``max_replacements`` times; then
  ``TransactionPending`` (outcome unknown: ask ``status`` later). Any of the versions may be the
  one mined; all are watched.
- **Reverts** of mined transactions are decoded from ``debug_traceTransaction`` (callTracer) when
  the node has it, else by replaying the call at the transaction's block.

The private key is only held inside the eth-account ``LocalAccount``; it is never logged, printed or
put in an exception message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Literal, Protocol

import aiohttp
from eth_abi import decode as abi_decode
from eth_account import Account
from hexbytes import HexBytes
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.types import RPCEndpoint
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)

log = logging.getLogger(__name__)

GWEI = 10**9
MAX_UINT256 = 2**256 - 1
ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)

#: Failures of the node connection (as opposed to an answer we do not like).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError, asyncio.TimeoutError, ProviderConnectionError, TimeExhausted, OSError,
)


# ---------------------------------------------------------------------------------------- errors
class TransactionError(Exception):
    """A transaction could not be sent or did not succeed."""


class TransactionRefused(TransactionError):
    """Refused before signing: nothing was sent and the nonce is untouched. Not worth retrying as is
    (the operator raises the fee cap, funds gas, or the call itself is invalid)."""

    def __init__(self, reason: str, revert_data: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.revert_data = revert_data


class FeeCapExceeded(TransactionRefused):
    """The network's fee is above the configured cap; the transaction was not signed."""


class NodeUnavailable(TransactionError):
    """The node did not answer before anything was signed; nothing was sent. Safe to retry."""


class TransactionReverted(TransactionError):
    """Mined, and reverted (gas was paid). ``reason`` is the decoded revert."""

    def __init__(self, reason: str, outcome: "TxOutcome") -> None:
        super().__init__(f"transaction {outcome.tx_hash} reverted: {reason}")
        self.reason = reason
        self.outcome = outcome


class TransactionPending(TransactionError):
    """Signed and broadcast but not mined in time (after the allowed fee bumps): the outcome is
    unknown. The journal has it; ask ``status(key)`` later. Usually resolves itself."""

    def __init__(self, key: str, hashes: list[str], detail: str) -> None:
        super().__init__(f"{key}: no receipt for {', '.join(hashes)} ({detail})")
        self.key = key
        self.hashes = hashes


class TransactionDropped(TransactionError):
    """None of the signed versions can be mined any more: another transaction took their nonce."""


# ------------------------------------------------------------------------------------ the journal
@dataclass(frozen=True)
class SignedTransaction:
    """One signed transaction as journaled before its broadcast (everything but the key is public
    once broadcast: ``raw`` is the signed payload, so the same bytes can be broadcast again)."""

    key: str
    sender: str
    nonce: int
    tx_hash: str
    raw: str
    to: str
    value: int
    data: str
    gas: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    label: str
    signed_at: str


class TransactionJournal(Protocol):
    """Where signed transactions and the caller's intents are recorded. ``record_signed`` must be
    durable when it returns: the transaction is broadcast right after."""

    def record_signed(self, tx: SignedTransaction) -> None: ...

    def transactions(self, key: str) -> list[SignedTransaction]:
        """The versions signed for ``key`` (original, then replacements), oldest first."""

    def all_transactions(self) -> list[SignedTransaction]: ...

    def transaction_keys(self, prefix: str) -> list[str]:
        """Distinct keys of the transactions whose key starts with ``prefix``, in signing order."""

    def last_nonce(self, sender: str) -> int | None: ...

    def put_intent(self, key: str, intent: dict[str, Any]) -> None:
        """What the caller means by ``key`` (an order's symbol, side, quantity...)."""

    def intent(self, key: str) -> dict[str, Any] | None: ...

    def intent_keys(self, prefix: str = "") -> list[str]:
        """Intent keys starting with ``prefix``, in the order they were first put."""


class InMemoryJournal:
    """A journal that lives as long as the process (tests, paper-like dry runs)."""

    def __init__(self) -> None:
        self._transactions: list[SignedTransaction] = []
        self._intents: dict[str, dict[str, Any]] = {}

    def record_signed(self, tx: SignedTransaction) -> None:
        self._transactions.append(tx)
        self._saved()

    def transactions(self, key: str) -> list[SignedTransaction]:
        return [tx for tx in self._transactions if tx.key == key]

    def all_transactions(self) -> list[SignedTransaction]:
        return list(self._transactions)

    def transaction_keys(self, prefix: str) -> list[str]:
        return list(dict.fromkeys(tx.key for tx in self._transactions if tx.key.startswith(prefix)))

    def last_nonce(self, sender: str) -> int | None:
        nonces = [tx.nonce for tx in self._transactions if tx.sender.lower() == sender.lower()]
        return max(nonces) if nonces else None

    def put_intent(self, key: str, intent: dict[str, Any]) -> None:
        self._intents[key] = dict(intent)
        self._saved()

    def intent(self, key: str) -> dict[str, Any] | None:
        found = self._intents.get(key)
        return dict(found) if found is not None else None

    def intent_keys(self, prefix: str = "") -> list[str]:
        return [key for key in self._intents if key.startswith(prefix)]

    def _saved(self) -> None:
        """Hook for persistent subclasses."""


class JsonFileJournal(InMemoryJournal):
    """The journal as one JSON file (mode 0600), rewritten atomically (temporary file, fsync,
    rename) on every record. Small and simple: one account's transactions over a run."""

    VERSION = 1

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self.path = Path(path)
        if self.path.exists():
            data = json.loads(self.path.read_text())
            if data.get("version") != self.VERSION:
                raise ValueError(f"{self.path}: unknown journal version {data.get('version')!r}")
            self._transactions = [SignedTransaction(**tx) for tx in data["transactions"]]
            self._intents = dict(data["intents"])

    def _saved(self) -> None:
        payload = json.dumps({"version": self.VERSION, "transactions": [asdict(tx) for tx in self._transactions],
                              "intents": self._intents}, indent=1, sort_keys=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# ------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class FeePolicy:
    """EIP-1559 fee settings. Amounts in gwei."""

    max_fee_gwei: Decimal  # never sign a transaction whose max fee per gas is above this
    base_fee_multiplier: Decimal = Decimal(2)  # room for the base fee to rise while in the pool
    priority_fee_gwei: Decimal | None = None  # None: ask the node (eth_maxPriorityFeePerGas)
    gas_margin: Decimal = Decimal("1.2")  # gas limit = estimate x this
    replacement_bump: Decimal = Decimal("1.125")  # nodes need >= +10-12.5% on both fee fields

    @property
    def max_fee_wei(self) -> int:
        return int(self.max_fee_gwei * GWEI)


@dataclass(frozen=True)
class SenderSettings:
    receipt_timeout: float = 180.0  # seconds without a receipt before a fee bump
    max_replacements: int = 3  # fee bumps before giving up with TransactionPending
    poll_interval: float = 2.0  # seconds between receipt polls
    #: a nonce already counted as used while no receipt of ours is visible yet is not proof of a drop:
    #: nodes (and load-balanced providers) show the nonce before the receipt. Keep looking this long.
    drop_confirm_seconds: float = 5.0
    chain_id: int | None = None  # when set, refuse to sign for any other chain


@dataclass(frozen=True)
class TxOutcome:
    """A mined transaction (one of the versions signed for ``key``)."""

    key: str
    tx_hash: str
    nonce: int
    status: int  # 1 success, 0 reverted
    block_number: int
    gas_used: int
    effective_gas_price: int
    receipt: Any = field(repr=False)
    revert_reason: str | None = None

    @property
    def gas_cost_wei(self) -> int:
        return self.gas_used * self.effective_gas_price


@dataclass(frozen=True)
class TxStatus:
    """What is known about ``key`` right now, without sending anything new."""

    state: Literal["absent", "pending", "mined", "dropped"]
    outcome: TxOutcome | None = None
    hashes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------- helpers
def connect(rpc_url: str, timeout: float = 30.0) -> AsyncWeb3:
    """An async web3 client for ``rpc_url`` (aiohttp ignores proxy variables unless told).

    The node's chain id is asked once per client and then cached by web3 (only that request):
    web3's validation middleware asks for it before every eth_call and gas estimate, which was ~45 %
    of all requests to the node (each one counts against a paid RPC plan's rate limit). The
    transaction sender checks the chain id against the network's before it signs anything."""
    return AsyncWeb3(AsyncHTTPProvider(rpc_url, request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)},
                                       cache_allowed_requests=True,
                                       cacheable_requests={RPCEndpoint("eth_chainId")}))


_SIGNATURE = re.compile(r"^(function|event)\s+(\w+)\((.*?)\)\s*(view|pure|nonpayable|payable)?\s*(?:returns\s*\((.*)\))?$")


def _params(text: str, event: bool) -> list[dict[str, Any]]:
    params = []
    for i, part in enumerate(p.strip() for p in text.split(",") if p.strip()):
        words = part.split()
        entry: dict[str, Any] = {"type": words[0], "name": words[-1] if len(words) > 1 and words[-1] != "indexed" else f"_{i}"}
        if event:
            entry["indexed"] = "indexed" in words[1:]
        params.append(entry)
    return params


def abi_from_signatures(*signatures: str) -> list[dict[str, Any]]:
    """A JSON ABI from Solidity-like lines, e.g. ``function balanceOf(address account) view
    returns (uint256)`` or ``event Approval(address indexed owner, address indexed spender,
    uint256 value)``: only what a venue calls, so no protocol artifact needs to ship."""
    abi = []
    for signature in signatures:
        match = _SIGNATURE.match(" ".join(signature.split()))
        if match is None:
            raise ValueError(f"cannot parse ABI signature {signature!r}")
        kind, name, inputs, mutability, outputs = match.groups()
        if kind == "event":
            abi.append({"type": "event", "name": name, "inputs": _params(inputs, True), "anonymous": False})
        else:
            abi.append({"type": "function", "name": name, "inputs": _params(inputs, False),
                        "outputs": _params(outputs or "", False), "stateMutability": mutability or "nonpayable"})
    return abi


ERC20_ABI = abi_from_signatures(
    "function balanceOf(address account) view returns (uint256)",
    "function decimals() view returns (uint8)",
    "function symbol() view returns (string)",
    "function allowance(address owner, address spender) view returns (uint256)",
    "function approve(address spender, uint256 amount) nonpayable returns (bool)",
    "function transfer(address recipient, uint256 amount) nonpayable returns (bool)",
    "event Approval(address indexed owner, address indexed spender, uint256 value)",
    "event Transfer(address indexed from, address indexed to, uint256 value)",
)


def decode_standard_revert(data: bytes) -> str:
    """``Error(string)`` -> the string; ``Panic(uint256)`` -> "panic 0x.."; else the raw hex."""
    if data[:4] == ERROR_STRING_SELECTOR:
        try:
            (reason,) = abi_decode(["string"], data[4:])
            return str(reason)
        except Exception:  # malformed payload: fall through to hex
            pass
    if data[:4] == PANIC_SELECTOR and len(data) >= 36:
        return f"panic 0x{int.from_bytes(data[4:36], 'big'):02x}"
    return f"revert data 0x{data.hex()}" if data else "reverted without a reason"


def _revert_bytes(error: ContractLogicError) -> bytes:
    data = error.data
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return b""
    return b""


def _ceil_mul(value: int, factor: Fraction) -> int:
    return -(-value * factor.numerator // factor.denominator)


def _gwei(wei: int) -> str:
    return f"{Decimal(wei) / GWEI:.4f}"


def _is_known_error(error: Web3RPCError, *fragments: str) -> bool:
    text = str(error).lower()
    return any(fragment in text for fragment in fragments)


# ----------------------------------------------------------------------------------- the sender
class TransactionSender:
    """Sends transactions for one account (see the module docstring for the guarantees)."""

    def __init__(
        self,
        w3: AsyncWeb3,
        private_key: str,
        journal: TransactionJournal,
        fees: FeePolicy,
        settings: SenderSettings = SenderSettings(),
        decode_revert: Callable[[bytes], str] | None = None,
    ) -> None:
        self.w3 = w3
        self._account = Account.from_key(private_key)
        self.address: str = self._account.address
        self.journal = journal
        self.fees = fees
        self.settings = settings
        self.decode_revert = decode_revert or decode_standard_revert
        self._lock = asyncio.Lock()  # one nonce allocation / sign / journal / broadcast at a time
        self._chain_id: int | None = None
        self._receipts: dict[str, Any] = {}  # tx hash -> receipt, once mined (reorgs are not handled)

    @property
    def _bump(self) -> Fraction:
        return Fraction(self.fees.replacement_bump)

    @property
    def _margin(self) -> Fraction:
        return Fraction(self.fees.gas_margin)

    @property
    def _multiplier(self) -> Fraction:
        return Fraction(self.fees.base_fee_multiplier)

    def __repr__(self) -> str:  # never the key
        return f"TransactionSender({self.address})"

    # ------------------------------------------------------------------ public API
    async def send(self, key: str, *, to: str, data: bytes | str = b"", value: int = 0,
                   label: str = "") -> TxOutcome:
        """Send the call under ``key`` exactly once and return the successful outcome: ``submit``
        then ``wait``.

        Raises ``TransactionRefused`` / ``FeeCapExceeded`` / ``NodeUnavailable`` (nothing sent),
        ``TransactionReverted`` (mined, failed), ``TransactionPending`` (unknown yet),
        ``TransactionDropped`` (its nonce went to another transaction)."""
        await self.submit(key, to=to, data=data, value=value, label=label)
        return await self.wait(key)

    async def submit(self, key: str, *, to: str, data: bytes | str = b"", value: int = 0,
                     label: str = "") -> SignedTransaction:
        """Sign, journal and broadcast the call under ``key`` without waiting for it. A key already
        journaled is not signed again: its latest version is returned as it is."""
        async with self._lock:
            existing = self.journal.transactions(key)
            if existing:
                return existing[-1]
            signed = await self._sign_new(key, to, HexBytes(data), value, label or key)
            # The journal write is the commit point: a crash after it leaves a transaction that a
            # restarted sender finds (and broadcasts again if the node lacks it).
            self.journal.record_signed(signed)
            log.info("signed %s nonce %d %s (%s); broadcasting", key, signed.nonce, signed.tx_hash, signed.label)
            await self._broadcast(signed)
            return signed

    async def wait(self, key: str) -> TxOutcome:
        """Wait for ``key``'s journaled transaction (replacing it when stuck); the successful outcome
        or ``TransactionReverted`` / ``TransactionPending`` / ``TransactionDropped``."""
        if not self.journal.transactions(key):
            raise ValueError(f"nothing journaled under {key!r}")
        outcome = await self._wait(key)
        if outcome.status != 1:
            raise TransactionReverted(outcome.revert_reason or "reverted", outcome)
        return outcome

    async def status(self, key: str) -> TxStatus:
        """The state of ``key``'s transaction, signing nothing new for it. A pending one is kept
        going: broadcast again if the node lost it, replaced with higher fees when its latest
        version is older than ``receipt_timeout`` (so a reconcile loop moves a stuck transaction
        along even when nobody waits in ``send``)."""
        records = self.journal.transactions(key)
        if not records:
            return TxStatus("absent")
        outcome = await self._find_outcome(key, records)
        if outcome is not None:
            return TxStatus("mined", outcome, tuple(r.tx_hash for r in records))
        if await self._nonce_taken(records):
            outcome = await self._outcome_after_nonce_taken(key, records)
            hashes = tuple(r.tx_hash for r in records)
            return TxStatus("mined", outcome, hashes) if outcome else TxStatus("dropped", None, hashes)
        await self._keep_in_pool(records[-1])
        signed_at = datetime.fromisoformat(records[-1].signed_at)
        age = (datetime.now(timezone.utc) - signed_at).total_seconds()
        if age >= self.settings.receipt_timeout and len(records) - 1 < self.settings.max_replacements:
            replacement = await self._replace(records[-1])
            if replacement is not None:
                records.append(replacement)
        return TxStatus("pending", None, tuple(r.tx_hash for r in records))

    async def approve_exact(self, key: str, token: str, spender: str, amount: int, label: str = "") -> list[TxOutcome]:
        """Make ``spender``'s allowance on ``token`` exactly ``amount`` (never infinite). A different
        non-zero allowance is reset to 0 first (USDT-style tokens refuse non-zero to non-zero).
        Resumable like ``send``: journaled approvals are awaited, not signed again."""
        contract = self.w3.eth.contract(address=AsyncWeb3.to_checksum_address(token), abi=ERC20_ABI)
        spender = AsyncWeb3.to_checksum_address(spender)
        reset_key = f"{key}/reset"
        outcomes: list[TxOutcome] = []
        if not self.journal.transactions(key):
            current = await self._read(contract.functions.allowance(self.address, spender).call())
            if current == amount:
                return outcomes
            if current != 0 or self.journal.transactions(reset_key):
                outcomes.append(await self.send(reset_key, to=contract.address,
                                                data=contract.encode_abi("approve", args=[spender, 0]),
                                                label=f"{label or key}: reset allowance to 0"))
        outcomes.append(await self.send(key, to=contract.address,
                                        data=contract.encode_abi("approve", args=[spender, amount]),
                                        label=label or f"approve {amount}"))
        return outcomes

    async def block_timestamp(self, block_number: int) -> datetime:
        block = await self._read(self.w3.eth.get_block(block_number))
        return datetime.fromtimestamp(block["timestamp"], tz=timezone.utc)

    # ------------------------------------------------------------------ signing
    async def _read(self, awaitable: Any) -> Any:
        """A node read before anything is signed: connection trouble is ``NodeUnavailable``."""
        try:
            return await awaitable
        except CONNECTION_ERRORS as exc:
            raise NodeUnavailable(f"node did not answer: {exc!r}") from exc

    async def _check_chain(self) -> int:
        if self._chain_id is None:
            chain_id = await self._read(self.w3.eth.chain_id)
            if self.settings.chain_id is not None and chain_id != self.settings.chain_id:
                raise TransactionRefused(f"node is on chain {chain_id}, configured for {self.settings.chain_id}")
            self._chain_id = chain_id
        return self._chain_id

    async def base_fee(self) -> int:
        """The base fee the next block will charge: the pending block's when the node reports one
        (geth, anvil), else the latest block's."""
        try:
            pending = await self.w3.eth.get_block("pending")
            if pending.get("baseFeePerGas") is not None:
                return int(pending["baseFeePerGas"])
        except (*CONNECTION_ERRORS, Web3Exception) as exc:
            log.debug("no pending block (%r); using the latest block's base fee", exc)
        block = await self._read(self.w3.eth.get_block("latest"))
        return int(block["baseFeePerGas"])

    async def current_fees(self) -> tuple[int, int, int]:
        """(base fee, max fee, priority fee) in wei for a new transaction; ``FeeCapExceeded`` when
        the base fee plus the priority fee is above the cap."""
        base = await self.base_fee()
        if self.fees.priority_fee_gwei is not None:
            priority = int(self.fees.priority_fee_gwei * GWEI)
        else:
            priority = int(await self._read(self.w3.eth.max_priority_fee))
        cap = self.fees.max_fee_wei
        if base + priority > cap:
            raise FeeCapExceeded(
                f"network fee {_gwei(base + priority)} gwei (base {_gwei(base)} + priority {_gwei(priority)}) "
                f"is above the max fee cap {_gwei(cap)} gwei; not sent")
        max_fee = min(_ceil_mul(base, self._multiplier) + priority, cap)
        return base, max_fee, priority

    async def _next_nonce(self) -> int:
        pending = await self._read(self.w3.eth.get_transaction_count(self.address, "pending"))
        last = self.journal.last_nonce(self.address)
        if last is not None and last >= pending:
            # The node lacks journaled transactions (crash before broadcast, node restart):
            # broadcast them again first, or the new nonce would sit behind a gap for ever.
            for nonce in range(pending, last + 1):
                versions = [tx for tx in self.journal.all_transactions()
                            if tx.nonce == nonce and tx.sender.lower() == self.address.lower()]
                if versions:
                    await self._broadcast(versions[-1])
        return max(pending, last + 1 if last is not None else 0)

    async def _sign_new(self, key: str, to: str, data: HexBytes, value: int, label: str) -> SignedTransaction:
        chain_id = await self._check_chain()
        _, max_fee, priority = await self.current_fees()
        call = {"from": self.address, "to": AsyncWeb3.to_checksum_address(to), "data": data, "value": value}
        try:
            estimate = await self.w3.eth.estimate_gas(call)  # type: ignore[arg-type]
        except ContractLogicError as exc:
            raw = _revert_bytes(exc)
            reason = self.decode_revert(raw) if raw else (exc.message or str(exc))
            raise TransactionRefused(f"{label}: would revert: {reason}", raw or None) from exc
        except CONNECTION_ERRORS as exc:
            raise NodeUnavailable(f"node did not answer the gas estimate: {exc!r}") from exc
        except Web3RPCError as exc:  # e.g. "insufficient funds for transfer"
            raise TransactionRefused(f"{label}: gas estimate refused: {exc}") from exc
        gas = _ceil_mul(int(estimate), self._margin)
        balance = await self._read(self.w3.eth.get_balance(self.address))
        if balance < value + gas * max_fee:
            raise TransactionRefused(
                f"{label}: insufficient ETH for gas: have {Decimal(balance) / 10**18} ETH, need up to "
                f"{Decimal(value + gas * max_fee) / 10**18} ETH")
        nonce = await self._next_nonce()
        return self._sign(key, nonce, call["to"], data, value, gas, max_fee, priority, label, chain_id)

    def _sign(self, key: str, nonce: int, to: str, data: HexBytes, value: int, gas: int, max_fee: int,
              priority: int, label: str, chain_id: int) -> SignedTransaction:
        tx = {"type": 2, "chainId": chain_id, "nonce": nonce, "to": to, "value": value, "data": data,
              "gas": gas, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": priority}
        signed = self._account.sign_transaction(tx)
        return SignedTransaction(
            key=key, sender=self.address, nonce=nonce, tx_hash=signed.hash.to_0x_hex(),
            raw=signed.raw_transaction.to_0x_hex(), to=to, value=value, data=HexBytes(data).to_0x_hex(), gas=gas,
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=priority, label=label,
            signed_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        )

    async def _broadcast(self, tx: SignedTransaction) -> bool:
        """Broadcast the signed bytes; True when the node has them. Failures are logged, not
        raised: the transaction is journaled, the wait loop keeps it in the pool."""
        try:
            await self.w3.eth.send_raw_transaction(HexBytes(tx.raw))
            return True
        except Web3RPCError as exc:
            if _is_known_error(exc, "already known", "already imported", "known transaction"):
                return True
            if _is_known_error(exc, "nonce too low"):  # mined meanwhile (or taken): the wait loop sees which
                log.info("broadcast of %s: nonce %d already used", tx.tx_hash, tx.nonce)
                return False
            log.warning("broadcast of %s (nonce %d) refused by the node: %s", tx.tx_hash, tx.nonce, exc)
        except CONNECTION_ERRORS as exc:
            log.warning("broadcast of %s (nonce %d) failed: %r", tx.tx_hash, tx.nonce, exc)
        return False

    # ------------------------------------------------------------------ waiting
    async def _receipt(self, tx_hash: str) -> Any | None:
        if tx_hash in self._receipts:
            return self._receipts[tx_hash]
        try:
            receipt = await self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except TransactionNotFound:
            return None
        if receipt is None or receipt.get("blockNumber") is None:
            return None
        self._receipts[tx_hash] = receipt
        return receipt

    async def _find_outcome(self, key: str, records: list[SignedTransaction]) -> TxOutcome | None:
        for record in records:
            receipt = await self._receipt(record.tx_hash)
            if receipt is not None:
                reason = None if receipt["status"] == 1 else await self._revert_reason(record, receipt)
                return TxOutcome(key, record.tx_hash, record.nonce, int(receipt["status"]), int(receipt["blockNumber"]),
                                 int(receipt["gasUsed"]), int(receipt["effectiveGasPrice"]), receipt, reason)
        return None

    async def _nonce_taken(self, records: list[SignedTransaction]) -> bool:
        mined = await self.w3.eth.get_transaction_count(self.address, "latest")
        return mined > records[0].nonce

    async def _keep_in_pool(self, record: SignedTransaction) -> None:
        try:
            await self.w3.eth.get_transaction(HexBytes(record.tx_hash))
            return
        except TransactionNotFound:
            pass
        log.info("node does not know %s (nonce %d); broadcasting it again", record.tx_hash, record.nonce)
        await self._broadcast(record)

    async def _outcome_after_nonce_taken(self, key: str, records: list[SignedTransaction]) -> TxOutcome | None:
        """Our receipt, looked for again for up to ``drop_confirm_seconds`` once the nonce counts as
        used: None only then (another transaction took the nonce)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drop_confirm_seconds
        while True:
            outcome = await self._find_outcome(key, records)
            if outcome is not None or loop.time() >= deadline:
                return outcome
            await asyncio.sleep(min(max(self.settings.poll_interval, 0.05), 1.0))

    async def _wait(self, key: str) -> TxOutcome:
        loop = asyncio.get_running_loop()
        records = self.journal.transactions(key)
        deadline = loop.time() + self.settings.receipt_timeout
        replacements = len(records) - 1
        detail = "receipt timeout"
        while True:
            try:
                outcome = await self._find_outcome(key, records)
                if outcome is not None:
                    return outcome
                if await self._nonce_taken(records):
                    outcome = await self._outcome_after_nonce_taken(key, records)
                    if outcome is not None:
                        return outcome
                    raise TransactionDropped(f"{key}: nonce {records[0].nonce} was used by another transaction; "
                                             f"none of {', '.join(r.tx_hash for r in records)} will be mined")
                await self._keep_in_pool(records[-1])
            except (*CONNECTION_ERRORS, Web3RPCError) as exc:  # keep waiting: the transaction is out there
                log.warning("waiting for %s: node error %r", key, exc)
                detail = f"node error {exc!r}"
            if loop.time() >= deadline:
                replacement = None
                if replacements < self.settings.max_replacements:
                    try:
                        replacement = await self._replace(records[-1])
                    except (NodeUnavailable, *CONNECTION_ERRORS) as exc:
                        detail = f"replacement failed: {exc!r}"
                    if replacement is None and detail == "receipt timeout":
                        detail = f"fee bump would exceed the cap of {self.fees.max_fee_gwei} gwei"
                if replacement is None:
                    raise TransactionPending(key, [r.tx_hash for r in records], detail)
                records.append(replacement)
                replacements += 1
                deadline = loop.time() + self.settings.receipt_timeout
                continue
            await asyncio.sleep(self.settings.poll_interval)

    async def _replace(self, stuck: SignedTransaction) -> SignedTransaction | None:
        """Sign, journal and broadcast ``stuck`` again with both fees raised by the bump; None when
        the cap leaves no room for a valid replacement."""
        async with self._lock:
            base = await self.base_fee()
            cap = self.fees.max_fee_wei
            min_priority = max(_ceil_mul(stuck.max_priority_fee_per_gas, self._bump), stuck.max_priority_fee_per_gas + 1)
            min_max_fee = max(_ceil_mul(stuck.max_fee_per_gas, self._bump), stuck.max_fee_per_gas + 1)
            max_fee = min(max(min_max_fee, _ceil_mul(base, self._multiplier) + min_priority), cap)
            if max_fee < min_max_fee or min_priority > max_fee:
                log.warning("%s stuck at nonce %d: a fee bump would exceed the cap of %s gwei", stuck.key,
                            stuck.nonce, self.fees.max_fee_gwei)
                return None
            replacement = self._sign(stuck.key, stuck.nonce, stuck.to, HexBytes(stuck.data), stuck.value,
                                     stuck.gas, max_fee, min_priority, stuck.label, await self._check_chain())
            self.journal.record_signed(replacement)
            log.info("replacing stuck %s (nonce %d) by %s: max fee %s -> %s gwei, priority %s -> %s gwei",
                     stuck.tx_hash, stuck.nonce, replacement.tx_hash, _gwei(stuck.max_fee_per_gas), _gwei(max_fee),
                     _gwei(stuck.max_priority_fee_per_gas), _gwei(min_priority))
            await self._broadcast(replacement)
            return replacement

    # ------------------------------------------------------------------ reverts
    async def _revert_reason(self, record: SignedTransaction, receipt: Any) -> str:
        data = await self._trace_revert_data(record.tx_hash)
        if data is None:
            data = await self._replay_revert_data(record, receipt)
        if data is None:
            return "reverted (reason unavailable)"
        return data if isinstance(data, str) else self.decode_revert(data)

    async def _trace_revert_data(self, tx_hash: str) -> bytes | str | None:
        try:
            response = await self.w3.provider.make_request(
                "debug_traceTransaction", [tx_hash, {"tracer": "callTracer"}])  # type: ignore[arg-type]
        except (Web3Exception, *CONNECTION_ERRORS):
            return None
        result = response.get("result") if isinstance(response, dict) else None
        if not isinstance(result, dict):
            return None
        output = result.get("output")
        if isinstance(output, str) and output.startswith("0x") and len(output) > 2:
            return bytes.fromhex(output[2:])
        error = result.get("error")
        return str(error) if error else None  # e.g. "out of gas": no revert data

    async def _replay_revert_data(self, record: SignedTransaction, receipt: Any) -> bytes | None:
        call = {"from": self.address, "to": record.to, "data": HexBytes(record.data), "value": record.value,
                "gas": record.gas}
        block = int(receipt["blockNumber"])
        # The state before the block first; then after it (a revert caused by an earlier
        # transaction in the same block only shows there).
        for block_id in (block - 1, block):
            try:
                await self.w3.eth.call(call, block_identifier=block_id)  # type: ignore[arg-type]
            except ContractLogicError as exc:
                return _revert_bytes(exc)
            except (Web3Exception, *CONNECTION_ERRORS):
                return None
        return None
