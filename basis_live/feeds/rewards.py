"""Seasonal reward drops (EtherFi's EIGEN / ETHFI) as the feeds serve them.

``RewardCalendar`` answers, for an instant, the drops paid so far and the reward tokens' prices; a
feed builds one from its drops and asks it once per snapshot (one bisect). The sample feed fills it
with synthetic drops; the replay feed reads a drops table described by the manifest's
``seasonal_rewards`` entry (``reward_table_spec`` / ``load_reward_table``; format in README.md and in
``basis_live.feeds.replay``).

Rows with only an APY approximation (no per-eETH amount: the reference file's DeFiLlama rows) are
never ignored silently. ``apy_only.policy: convert`` books each as a drop of ``apy_only.token``
worth (1 + apy)^(days / 365) - 1 ETH per eETH, priced at the last recorded price of that token
(the first one if the row precedes every recorded drop) and the feed's ETH price at the payout;
``skip`` books nothing for them. Either way the feed keeps one note saying what was done, which the
engine records as a run event.
"""

from __future__ import annotations

import math
import os
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from basis_live.feeds.base import FeedError, RewardDrop, TimeOutOfRange
from basis_live.feeds.csvfile import read_commented_csv

APY_POLICIES: tuple[str, ...] = ("convert", "skip")
_DAYS_PER_YEAR = 365.0
_TABLE_KEYS = {"file", "time_column", "time_format", "tokens", "origin_column", "apy_only"}
_TOKEN_KEYS = {"amount_column", "price_column"}
_APY_KEYS = {"apy_column", "days_column", "token", "policy"}


class RewardCalendar:
    """Drops sorted by payout time, with the reward tokens' prices after each one."""

    def __init__(self, drops: Iterable[RewardDrop]) -> None:
        self.drops: tuple[RewardDrop, ...] = tuple(sorted(drops, key=lambda d: d.timestamp))
        self._times = [d.timestamp.timestamp() for d in self.drops]
        # A token has a price from its first drop on (nobody holds it earlier); no look-ahead.
        current: dict[str, float] = {}
        self._prices = [dict(current)]
        for drop in self.drops:
            current[drop.token] = drop.price_usd
            self._prices.append(dict(current))

    def at(self, t: float) -> tuple[tuple[RewardDrop, ...], dict[str, float]]:
        """(drops paid at or before unix time ``t``, token -> USD price at ``t``)."""
        i = bisect_right(self._times, t)
        return self.drops[:i], self._prices[i]


# --- the replay manifest's drops table -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApyOnlyRows:
    """What to do with rows that give only an APY approximation."""

    apy_column: str
    days_column: str
    token: str
    policy: str = "convert"


@dataclass(frozen=True, slots=True)
class RewardTableSpec:
    """The manifest's ``seasonal_rewards`` entry, validated, with its file resolved."""

    file: Path
    time_column: str
    time_format: str
    tokens: dict[str, tuple[str, str]]  # token -> (amount per eETH column, USD price column)
    origin_column: str | None = None
    apy_only: ApyOnlyRows | None = None


def reward_table_spec(where: str, root: Path, entry: Any, time_formats: tuple[str, ...]) -> RewardTableSpec:
    """Validate a manifest's ``seasonal_rewards`` mapping (``where`` names the manifest in errors)."""
    where = f"{where}: seasonal_rewards"
    if not isinstance(entry, dict):
        raise FeedError(f"{where} must be a mapping with file, time_column and tokens")
    _check_keys(where, entry, _TABLE_KEYS, ("file", "time_column", "tokens"))
    time_format = str(entry.get("time_format", "iso"))
    if time_format not in time_formats:
        raise FeedError(f"{where}: time_format {time_format!r} is not one of {', '.join(time_formats)}")
    tokens = entry["tokens"]
    if not isinstance(tokens, dict) or not tokens:
        raise FeedError(f"{where}: tokens must map a token (EIGEN, ETHFI) to amount_column and price_column")
    columns: dict[str, tuple[str, str]] = {}
    for token, spec in tokens.items():
        if not isinstance(spec, dict):
            raise FeedError(f"{where}: tokens.{token} must be a mapping with amount_column and price_column")
        _check_keys(f"{where}: tokens.{token}", spec, _TOKEN_KEYS, tuple(sorted(_TOKEN_KEYS)))
        columns[str(token)] = (str(spec["amount_column"]), str(spec["price_column"]))
    apy_only = None
    if entry.get("apy_only") is not None:
        apy = entry["apy_only"]
        if not isinstance(apy, dict):
            raise FeedError(f"{where}: apy_only must be a mapping with apy_column, days_column, token, policy")
        _check_keys(f"{where}: apy_only", apy, _APY_KEYS, ("apy_column", "days_column", "token"))
        policy = str(apy.get("policy", "convert"))
        if policy not in APY_POLICIES:
            raise FeedError(f"{where}: apy_only.policy {policy!r} is not one of {', '.join(APY_POLICIES)}")
        token = str(apy["token"])
        if policy == "convert" and token not in columns:
            raise FeedError(f"{where}: apy_only.token {token} has no entry under tokens (its recorded price "
                            f"is what converts the APY)")
        apy_only = ApyOnlyRows(str(apy["apy_column"]), str(apy["days_column"]), token, policy)
    origin = entry.get("origin_column")
    return RewardTableSpec(Path(os.path.normpath(root / str(entry["file"]))), str(entry["time_column"]), time_format, columns,
                           None if origin is None else str(origin), apy_only)


def _check_keys(where: str, entry: dict, allowed: set[str], required: tuple[str, ...]) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise FeedError(f"{where}: unknown key(s) {', '.join(map(str, unknown))} (allowed: {', '.join(sorted(allowed))})")
    missing = [key for key in required if not entry.get(key)]
    if missing:
        raise FeedError(f"{where}: missing {', '.join(missing)}")


@dataclass(frozen=True, slots=True)
class _Row:
    """One data row of the drops table, for reading its cells with errors that name the line."""

    where: str
    line: int
    cells: list[str]

    def cell(self, i: int) -> str:
        return self.cells[i].strip() if i < len(self.cells) else ""

    def number(self, i: int, column: str) -> float:
        try:
            value = float(self.cell(i))
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise FeedError(f"{self.where}: {column} {self.cell(i)!r} at line {self.line} is not a number >= 0")
        return value


def load_reward_table(spec: RewardTableSpec, parse_time: Callable[[str], float],
                      eth_price: Callable[[float], float | None]) -> tuple[list[RewardDrop], str | None]:
    """Read the drops table: (drops, a note on the APY-only rows or None when there are none).

    ``eth_price(t)`` is the feed's ETH price at unix time ``t`` (None where it has none); only the
    conversion of APY-only rows needs it.
    """
    where = f"seasonal_rewards ({spec.file})"
    header, rows, line_numbers = read_commented_csv(spec.file, "seasonal_rewards")

    def index(column: str) -> int:
        try:
            return header.index(column)
        except ValueError:
            raise FeedError(f"{where}: column {column!r} not found (columns: {', '.join(header)})") from None

    time_i = index(spec.time_column)
    token_i = {token: (index(amount), index(price)) for token, (amount, price) in spec.tokens.items()}
    origin_i = index(spec.origin_column) if spec.origin_column else None
    apy = spec.apy_only
    apy_i = (index(apy.apy_column), index(apy.days_column)) if apy else None

    drops: list[RewardDrop] = []
    apy_rows: list[tuple[float, float, float, int]] = []  # (t, apy, days, line)
    for cells, line in zip(rows, line_numbers):
        row = _Row(where, line, cells)
        cell, number = row.cell, row.number
        try:
            t = parse_time(cell(time_i))
        except TimeOutOfRange as exc:
            raise FeedError(f"{where}: {spec.time_column} {cell(time_i)!r} at line {line} {exc}") from None
        except (ValueError, OverflowError):
            raise FeedError(f"{where}: unparsable {spec.time_column} {cell(time_i)!r} at line {line}") from None
        moment = datetime.fromtimestamp(t, timezone.utc)
        origin = (cell(origin_i) if origin_i is not None else "") or "recorded"
        recorded = False
        for token, (amount_i, price_i) in token_i.items():
            if not cell(amount_i):
                continue
            recorded = True
            amount = number(amount_i, spec.tokens[token][0])
            price = number(price_i, spec.tokens[token][1]) if cell(price_i) else 0.0
            if price <= 0:
                raise FeedError(f"{where}: {token} drop at line {line} has no {spec.tokens[token][1]} "
                                f"(a drop needs its price)")
            if amount > 0:
                drops.append(RewardDrop(moment, token, amount, price, origin))
        if recorded:
            continue
        if apy is None or apy_i is None or not cell(apy_i[0]):
            hint = (f" nor {apy.apy_column}" if apy else "; describe APY-only rows with apy_only (convert or skip)")
            raise FeedError(f"{where}: line {line} has no reward amount ({', '.join(c for c, _ in spec.tokens.values())})"
                            f"{hint}")
        rate = number(apy_i[0], apy.apy_column)
        if rate >= 1:
            raise FeedError(f"{where}: {apy.apy_column} {cell(apy_i[0])!r} at line {line} must be a fraction "
                            f"a year (0.003 = 0.3 %)")
        days = number(apy_i[1], apy.days_column)
        if days <= 0:
            raise FeedError(f"{where}: {apy.days_column} at line {line} must be > 0")
        apy_rows.append((t, rate, days, line))
    if not apy_rows:
        return drops, None
    assert apy is not None
    first, last = (datetime.fromtimestamp(r[0], timezone.utc).date() for r in (min(apy_rows), max(apy_rows)))
    rows = f"1 row of {spec.file.name} carries" if len(apy_rows) == 1 else f"{len(apy_rows)} rows of {spec.file.name} carry"
    what = (f"seasonal rewards: {rows} only an APY approximation "
            f"({apy.apy_column}, {first} .. {last})")
    if apy.policy == "skip":
        return drops, f"{what}: skipped (apy_only.policy skip), no drops booked for them"
    recorded_prices = sorted((d.timestamp.timestamp(), d.price_usd) for d in drops if d.token == apy.token)
    if not recorded_prices:
        raise FeedError(f"{where}: cannot convert APY-only rows to {apy.token}: no recorded {apy.token} drop "
                        f"gives its price")
    price_times = [t for t, _ in recorded_prices]
    used_prices: set[float] = set()
    outside = 0
    for t, rate, days, _ in apy_rows:
        eth = eth_price(t)
        if eth is None:
            outside += 1
            continue
        price = recorded_prices[max(bisect_right(price_times, t) - 1, 0)][1]
        used_prices.add(price)
        eth_per_eeth = (1.0 + rate) ** (days / _DAYS_PER_YEAR) - 1.0
        drops.append(RewardDrop(datetime.fromtimestamp(t, timezone.utc), apy.token, eth_per_eeth * eth / price,
                                price, "apy_converted"))
    prices = ", ".join(f"${p:g}" for p in sorted(used_prices)) or "-"
    note = (f"{what}: converted to {apy.token} drops of (1 + apy)^(days/365) - 1 ETH per eETH at the ETH price at "
            f"payout and the last recorded {apy.token} price ({prices})")
    if outside:
        note += f"; {outside} outside the ETH price data (beyond the feed's range) left out"
    return drops, note
