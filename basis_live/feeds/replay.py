"""Replay recorded market data (CSV files described by a YAML manifest) as a ``MarketFeed``.

``ReplayFeed.from_path(path)`` takes a manifest file, or a directory holding ``manifest.yaml``. The
manifest says which CSV file and columns hold each series, so real data files can be used as they
are: lines starting with ``#`` are comments (skipped anywhere in a file), column names differ from
file to file, and timestamps may be ISO 8601 (``2024-01-01T00:00:00Z``, ``2024-01-01 01:00:00+00:00``,
``2024-01-01``; no offset means UTC) or unix epochs.

Manifest format
---------------
.. code-block:: yaml

    root: ../data              # optional: folder the files are relative to; itself relative to the
                               # manifest's folder (default: the manifest's folder)
    max_gap_hours: 48          # optional: replaces the per-kind default gap limit for every series
    description: free text     # optional, ignored
    series:
      spot.BTC:
        file: spot/binance_BTCUSDT_1h.csv
        time_column: timestamp
        value_column: open
      spot.ETH:
        file: spot/uniswap_WETHUSDT_1h.csv
        time_column: timestamp
        value_column: open
        time_format: epoch_s   # iso (default) | epoch_s | epoch_ms
      lending_apr.USDT:
        file: aave/USDT_rates.csv
        time_column: targetDate
        value_column: apr_percent
        scale: 0.01            # optional: multiply every value (percent -> fraction, RAY -> ratio)
      funding.okx.BTC:
        file: funding/okx_BTCUSDT.csv
        time_column: funding_timestamp
        value_column: funding_rate
        duplicates: min        # optional: error (default) | first | last | min | max | mean
        max_gap_hours: 48      # optional: longest allowed hole between two points
        on_gap: default        # optional: error (default) | default

      seasonal_rewards:        # optional: EtherFi's EIGEN / ETHFI drops, one row per drop
        file: etherfi/seasonal_rewards.csv
        time_column: payout_date
        time_format: iso       # optional, as for series
        tokens:                # token -> its amount per eETH and its USD price at the drop
          EIGEN: {amount_column: eigen_per_eeth_weekly, price_column: eigen_price_usd}
          ETHFI: {amount_column: ethfi_per_eeth, price_column: ethfi_price_usd}
        origin_column: data_quality   # optional: recorded as each drop's origin
        apy_only:              # optional; required when rows carry only an APY approximation
          apy_column: defillama_reward_apy   # fraction a year
          days_column: period_days
          token: EIGEN
          policy: convert      # convert (default) | skip

Series names: ``spot.<BTC|ETH>``, ``perp_mark.<venue>.<BTC|ETH>`` and ``funding.<venue>.<BTC|ETH>``
(venue: binance, bybit, okx), ``lending_index.<asset>``, ``lending_apr.<asset>``,
``borrow_index.<asset>``, ``borrow_apr.<asset>`` (asset: USDT, WETH, weETH, wstETH; indices as ratios
near 1.0, APRs as fractions a year), ``lst_rate.<weETH|wstETH>`` (ETH per LST) and
``gas_price_gwei``. Funding rows are the rate settled at each 00:00 / 08:00 / 16:00 UTC settlement
(other times are rejected). Required: ``spot.BTC``, ``spot.ETH``, ``lending_index.USDT``,
``lending_apr.USDT``. An index and its APR come as a pair: give both or neither.

Missing optional series get a deliberately conservative default, so a thin manifest can only make a
strategy look worse, never better:

==============================  ============================================  ========================
series                          default                                       why it is conservative
==============================  ============================================  ========================
``perp_mark.<venue>.<asset>``   the asset's spot price                        no basis gain
``funding.<venue>.<asset>``     0.0                                           a short perp earns
                                                                              nothing
``lending_index`` / ``_apr``    index 1.0 (constant), APR 0                   supply earns nothing
``borrow_index`` / ``_apr``     APR 10%/yr; index 1.0 at the feed's start,    debt costs more than
                                compounding at 10%/yr                         AAVE's 2024-25 USDT and
                                                                              WETH means (7.3%, 2.7%)
``lst_rate.<lst>``              1.0 (constant)                                no staking yield
``gas_price_gwei``              50 gwei (constant)                            above the 2024-25 95th
                                                                              percentile (44 gwei)
==============================  ============================================  ========================

Time range and gaps: the feed's ``start`` / ``end`` is the intersection of the ranges of every
series in the manifest (except ``on_gap: default`` ones, below); ``snapshot_at`` outside it raises
``FeedError``. Within that range, two consecutive points of a series may be at most
``max_gap_hours`` apart (default 24 h for spot and perp marks, where a longer straight line would
invent prices; 48 h for everything else, e.g. daily AAVE files or funding with a few missed
settlements), otherwise loading fails. ``on_gap: default`` (perp marks, funding, APRs and gas only)
accepts holes instead: where such a series has no data (before its first point, after its last, or
inside a gap longer than ``max_gap_hours``) the default above is used, and the series does not
narrow the feed's range. Duplicate timestamps with equal values collapse silently; with different
values the ``duplicates`` policy decides (``error`` by default). Rows out of time order are sorted.

Lookups: prices, perp marks, indices, APRs, LST rates and gas are interpolated linearly between the
two surrounding points. ``funding_rate`` at ``ts`` is the rate recorded for the next settlement,
``next_funding_settlement(ts)``, the first one strictly after ``ts``: what will settle next. At a
settlement instant the rate just paid is history and the next period's is quoted (the paper venues
settle each period with the rate quoted before it). At the file's last settlement, whose successor
is not recorded, the rate is that last one.

Seasonal rewards: each row of the ``seasonal_rewards`` table with a non-empty amount column is a drop
of that token at the row's time (``RewardDrop``: every eETH held then receives the amount), priced by
the row's price column; a row may drop several tokens. A row without any amount is an APY-only row:
``apy_only.policy: convert`` books it as a drop of ``apy_only.token`` worth (1 + apy)^(days/365) - 1
ETH per eETH (at the ETH price of ``spot.ETH`` at the payout and the token's last recorded price),
``skip`` books nothing; either way the feed's ``notes`` say what was done (the engine records them
as a run event), and without ``apy_only`` such a row is a load error. Snapshots carry the drops paid
so far (``rewards_paid``) and price each reward token in ``spot`` at its last drop's price.

Every load error is a ``FeedError`` with a one-line message naming the series, the file and, when
known, the time range.
"""

from __future__ import annotations

import logging
import math
import os
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import yaml

from basis_live.feeds.base import (
    BASE_ASSETS,
    LENDING_ASSETS,
    LST_ASSETS,
    PERP_VENUES,
    FeedError,
    MarketFeed,
    MarketSnapshot,
    TimeOutOfRange,
    utc,
)
from basis_live.feeds.csvfile import read_commented_csv
from basis_live.feeds.rewards import RewardCalendar, RewardTableSpec, load_reward_table, reward_table_spec
from basis_live.textfiles import not_utf8, read_utf8

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.yaml"
REQUIRED_SERIES: tuple[str, ...] = ("spot.BTC", "spot.ETH", "lending_index.USDT", "lending_apr.USDT")
TIME_FORMATS: tuple[str, ...] = ("iso", "epoch_s", "epoch_ms")
DUPLICATE_POLICIES: tuple[str, ...] = ("error", "first", "last", "min", "max", "mean")
GAP_POLICIES: tuple[str, ...] = ("error", "default")

#: Conservative defaults for missing optional series (see the module docstring).
DEFAULT_BORROW_APR = 0.10
DEFAULT_GAS_PRICE_GWEI = 50.0
DEFAULT_LST_RATE = 1.0

#: Gap limits by series kind (hours); the manifest can override them.
PRICE_MAX_GAP_HOURS = 24.0
DEFAULT_MAX_GAP_HOURS = 48.0

_SECONDS_PER_YEAR = 365 * 86_400
_FUNDING_PERIOD_S = 8 * 3600
_MANIFEST_KEYS = {"root", "series", "max_gap_hours", "description", "seasonal_rewards"}
_SERIES_REQUIRED_KEYS = ("file", "time_column", "value_column")
_SERIES_KEYS = set(_SERIES_REQUIRED_KEYS) | {"time_format", "scale", "max_gap_hours", "on_gap", "duplicates"}
#: Kinds whose values may fall back to a default mid-run (an index or a rate jumping to 1.0 may not).
_GAP_DEFAULT_KINDS = {"perp_mark", "funding", "lending_apr", "borrow_apr", "gas_price_gwei"}


def series_names() -> tuple[str, ...]:
    """Every series name a manifest may use."""
    names = [f"spot.{a}" for a in BASE_ASSETS]
    names += [f"{kind}.{v}.{a}" for kind in ("perp_mark", "funding") for v in PERP_VENUES for a in BASE_ASSETS]
    names += [f"{kind}.{a}" for kind in ("lending_index", "lending_apr", "borrow_index", "borrow_apr")
              for a in LENDING_ASSETS]
    names += [f"lst_rate.{lst}" for lst in LST_ASSETS]
    names.append("gas_price_gwei")
    return tuple(names)


_SERIES_NAMES = frozenset(series_names())


def _kind(name: str) -> str:
    return name.split(".", 1)[0]


def _fmt_time(t: float) -> str:
    dt = datetime.fromtimestamp(t, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ" if dt.second else "%Y-%m-%dT%H:%MZ")


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    """One series entry of a manifest, validated, with its file resolved."""

    name: str
    file: Path
    time_column: str
    value_column: str
    time_format: str = "iso"
    scale: float = 1.0
    max_gap_hours: float = DEFAULT_MAX_GAP_HOURS
    on_gap: str = "error"
    duplicates: str = "error"

    @property
    def is_funding(self) -> bool:
        return _kind(self.name) == "funding"


@dataclass(slots=True)
class LoadedSeries:
    """A series as loaded: sorted unique timestamps (unix seconds, UTC) and values.

    ``value_at`` answers None where the series has no usable data (outside its points, or inside a
    gap longer than ``max_gap_hours``); the feed then applies the default or, for a series that
    bounds the range, never asks (loading already proved it covers the range).
    """

    spec: SeriesSpec
    times: list[float]
    values: list[float]
    _max_gap_s: float = field(init=False)
    _funding: bool = field(init=False)

    def __post_init__(self) -> None:
        self._max_gap_s = self.spec.max_gap_hours * 3600.0
        self._funding = self.spec.is_funding

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def first(self) -> float:
        return self.times[0]

    @property
    def last(self) -> float:
        return self.times[-1]

    def describe(self) -> str:
        """``name (file, first .. last)`` for error messages."""
        return f"{self.name} ({self.spec.file}, {_fmt_time(self.first)} .. {_fmt_time(self.last)})"

    def value_at(self, t: float) -> float | None:
        """The value at unix time ``t``: linear between points, or the next settlement for funding."""
        times = self.times
        i = bisect_right(times, t)
        if self._funding:
            # times[i] is the first settlement strictly after t.
            if i == len(times):
                return self.values[-1] if times[-1] == t else None
            if i == 0 or times[i] - times[i - 1] > self._max_gap_s:
                return None
            return self.values[i]
        if i == 0:
            return None
        if i == len(times):
            return self.values[-1] if times[-1] == t else None
        t0, t1 = times[i - 1], times[i]
        if t1 - t0 > self._max_gap_s:
            return None
        v0 = self.values[i - 1]
        return v0 + (self.values[i] - v0) * (t - t0) / (t1 - t0)

    def covered_value_at(self, t: float) -> float:
        """``value_at`` for a series that bounds the feed's range, where a hole is a bug, not a default."""
        value = self.value_at(t)
        if value is None:
            raise FeedError(f"series {self.describe()} has no data at {_fmt_time(t)}")
        return value

    def largest_gap(self, start: float, end: float) -> tuple[float, float] | None:
        """The longest hole between consecutive points that overlaps [start, end], if it is too long."""
        times = self._times_around(start, end)
        worst: tuple[float, float] | None = None
        for t0, t1 in zip(times, times[1:]):
            if t1 - t0 > self._max_gap_s and (worst is None or t1 - t0 > worst[1] - worst[0]):
                worst = (t0, t1)
        return worst

    def _times_around(self, start: float, end: float) -> list[float]:
        lo = max(0, bisect_right(self.times, start) - 1)
        hi = bisect_left(self.times, end) + 1
        return self.times[lo:hi]


class ReplayFeed(MarketFeed):
    """Market snapshots replayed from CSV files listed in a manifest; see the module docstring."""

    is_sample = False

    def __init__(self, manifest_path: Path, series: dict[str, LoadedSeries],
                 rewards: RewardTableSpec | None = None) -> None:
        """Build from loaded series (and the drops table, if any); use ``from_path`` to read a manifest."""
        missing = [name for name in REQUIRED_SERIES if name not in series]
        if missing:
            raise FeedError(f"manifest {manifest_path}: required series missing: {', '.join(missing)} "
                            f"(required: {', '.join(REQUIRED_SERIES)})")
        self.manifest_path = manifest_path
        self._series = series
        start, end = _common_range(series)
        _check_gaps(series, start, end)
        self._t_start, self._t_end = start, end
        self.start = datetime.fromtimestamp(start, timezone.utc)
        self.end = datetime.fromtimestamp(end, timezone.utc)
        self.label = f"REPLAY DATA ({manifest_path}, {_fmt_time(start)} .. {_fmt_time(end)})"
        self._plan = self._lookup_plan()
        self._rewards: RewardCalendar | None = None
        if rewards is not None:
            drops, note = load_reward_table(rewards, _TIME_PARSERS[rewards.time_format],
                                            self._series["spot.ETH"].value_at)
            self._rewards = RewardCalendar(drops)
            self.reward_drops = self._rewards.drops
            self.notes = (note,) if note else ()
            if note:
                log.info(note)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> ReplayFeed:
        """Load the manifest at ``path`` (a manifest file, or a directory holding manifest.yaml)."""
        manifest_path = Path(path)
        if manifest_path.is_dir():
            manifest_path = manifest_path / MANIFEST_NAME
        if not manifest_path.is_file():
            raise FeedError(f"replay manifest not found: {manifest_path}")
        manifest = load_manifest(manifest_path)
        return cls(manifest_path, load_series(manifest.series), manifest.seasonal_rewards)

    @property
    def series_names(self) -> tuple[str, ...]:
        """Names of the series the manifest provides (the rest use defaults)."""
        return tuple(sorted(self._series))

    def series(self, name: str) -> LoadedSeries:
        """The series ``name`` exactly as loaded from its file (its whole range, not just the feed's)."""
        try:
            return self._series[name]
        except KeyError:
            raise FeedError(f"series {name} is not in manifest {self.manifest_path}") from None

    async def snapshot_at(self, ts: datetime) -> MarketSnapshot:
        """The market at ``ts`` (start <= ts <= end); see ``snapshot``."""
        return self.snapshot(ts)

    def snapshot(self, ts: datetime) -> MarketSnapshot:
        """Synchronous ``snapshot_at`` for backtests and analytics: a few bisects, no I/O."""
        ts = utc(ts)
        t = ts.timestamp()
        if t < self._t_start or t > self._t_end:
            raise FeedError(f"{ts.isoformat()} is outside the replay data range "
                            f"{_fmt_time(self._t_start)} .. {_fmt_time(self._t_end)} ({self.manifest_path})")
        plan = self._plan
        spot = {"USDT": 1.0}
        for asset, series in plan.spot:
            spot[asset] = series.covered_value_at(t)
        perp_mark: dict[str, dict[str, float]] = {venue: {} for venue in PERP_VENUES}
        for venue, asset, series in plan.perp_mark:
            value = series.value_at(t) if series is not None else None
            perp_mark[venue][asset] = spot[asset] if value is None else value
        funding_rate: dict[str, dict[str, float]] = {venue: {} for venue in PERP_VENUES}
        for venue, asset, series in plan.funding:
            value = series.value_at(t) if series is not None else None
            funding_rate[venue][asset] = 0.0 if value is None else value
        years = (t - self._t_start) / _SECONDS_PER_YEAR
        lending_index: dict[str, float] = {}
        lending_apr: dict[str, float] = {}
        borrow_index: dict[str, float] = {}
        borrow_apr: dict[str, float] = {}
        for asset, index_series, apr_series in plan.lending:
            lending_index[asset] = 1.0 if index_series is None else index_series.covered_value_at(t)
            apr = apr_series.value_at(t) if apr_series is not None else None
            lending_apr[asset] = 0.0 if apr is None else apr
        for asset, index_series, apr_series in plan.borrow:
            if index_series is None:
                borrow_index[asset] = math.exp(DEFAULT_BORROW_APR * years)
                borrow_apr[asset] = DEFAULT_BORROW_APR
                continue
            borrow_index[asset] = index_series.covered_value_at(t)
            apr = apr_series.value_at(t) if apr_series is not None else None
            borrow_apr[asset] = DEFAULT_BORROW_APR if apr is None else apr
        lst_rate: dict[str, float] = {}
        for lst, series in plan.lst_rate:
            lst_rate[lst] = DEFAULT_LST_RATE if series is None else series.covered_value_at(t)
            spot[lst] = lst_rate[lst] * spot["ETH"]
        gas = plan.gas.value_at(t) if plan.gas is not None else None
        paid: tuple = ()
        if self._rewards is not None:
            paid, prices = self._rewards.at(t)
            spot.update(prices)
        return MarketSnapshot(
            timestamp=ts,
            spot=spot,
            perp_mark=perp_mark,
            funding_rate=funding_rate,
            lending_index=lending_index,
            lending_apr=lending_apr,
            borrow_index=borrow_index,
            borrow_apr=borrow_apr,
            lst_rate=lst_rate,
            gas_price_gwei=DEFAULT_GAS_PRICE_GWEI if gas is None else gas,
            source="replay",
            scenario=None,
            rewards_paid=paid,
        )

    def _lookup_plan(self) -> _LookupPlan:
        get = self._series.get
        return _LookupPlan(
            spot=[(a, self._series[f"spot.{a}"]) for a in BASE_ASSETS],
            perp_mark=[(v, a, get(f"perp_mark.{v}.{a}")) for v in PERP_VENUES for a in BASE_ASSETS],
            funding=[(v, a, get(f"funding.{v}.{a}")) for v in PERP_VENUES for a in BASE_ASSETS],
            lending=[(a, get(f"lending_index.{a}"), get(f"lending_apr.{a}")) for a in LENDING_ASSETS],
            borrow=[(a, get(f"borrow_index.{a}"), get(f"borrow_apr.{a}")) for a in LENDING_ASSETS],
            lst_rate=[(lst, get(f"lst_rate.{lst}")) for lst in LST_ASSETS],
            gas=get("gas_price_gwei"),
        )


@dataclass(frozen=True, slots=True)
class _LookupPlan:
    """Which loaded series answers each snapshot field (None: use the default)."""

    spot: list[tuple[str, LoadedSeries]]
    perp_mark: list[tuple[str, str, LoadedSeries | None]]
    funding: list[tuple[str, str, LoadedSeries | None]]
    lending: list[tuple[str, LoadedSeries | None, LoadedSeries | None]]
    borrow: list[tuple[str, LoadedSeries | None, LoadedSeries | None]]
    lst_rate: list[tuple[str, LoadedSeries | None]]
    gas: LoadedSeries | None


# --- manifest ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest, validated: its series and its seasonal rewards table (files resolved, not read)."""

    series: list[SeriesSpec]
    seasonal_rewards: RewardTableSpec | None = None


def read_manifest(manifest_path: Path) -> list[SeriesSpec]:
    """Parse and validate a manifest file into series specs (files resolved, not yet read)."""
    return load_manifest(manifest_path).series


def load_manifest(manifest_path: Path) -> Manifest:
    """Parse and validate a manifest file (files resolved, not yet read)."""
    where = f"manifest {manifest_path}"
    try:
        document = yaml.safe_load(read_utf8(manifest_path))
    except UnicodeDecodeError as exc:
        raise FeedError(f"{where}: {not_utf8(exc)}; save it as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise FeedError(f"{where}: invalid YAML{at}: {problem}") from None
    except OSError as exc:
        raise FeedError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    if not isinstance(document, dict):
        raise FeedError(f"{where}: expected a mapping with a 'series' key")
    unknown = sorted(set(document) - _MANIFEST_KEYS)
    if unknown:
        raise FeedError(f"{where}: unknown key(s) {', '.join(map(str, unknown))} "
                        f"(allowed: {', '.join(sorted(_MANIFEST_KEYS))})")
    root = manifest_path.parent
    if document.get("root") is not None:
        root = root / Path(str(document["root"])).expanduser()
    root = Path(os.path.normpath(root))
    default_gap = document.get("max_gap_hours")
    if default_gap is not None:
        default_gap = _positive_number(default_gap, f"{where}: max_gap_hours")
    entries = document.get("series")
    if not isinstance(entries, dict) or not entries:
        raise FeedError(f"{where}: 'series' must map series names to file descriptions")
    specs = [_series_spec(where, root, str(name), entry, default_gap) for name, entry in entries.items()]
    _check_pairs(where, {spec.name for spec in specs})
    rewards = document.get("seasonal_rewards")
    if rewards is not None:
        rewards = reward_table_spec(where, root, rewards, TIME_FORMATS)
    return Manifest(specs, rewards)


def _series_spec(where: str, root: Path, name: str, entry: Any, default_gap: float | None) -> SeriesSpec:
    if name not in _SERIES_NAMES:
        hint = _closest_hint(name)
        raise FeedError(f"{where}: unknown series {name!r}{hint}; names look like spot.BTC, "
                        f"perp_mark.binance.ETH, funding.okx.BTC, lending_apr.USDT, lst_rate.weETH, gas_price_gwei")
    if not isinstance(entry, dict):
        raise FeedError(f"{where}: series {name} must be a mapping with file, time_column, value_column")
    unknown = sorted(set(entry) - _SERIES_KEYS)
    if unknown:
        raise FeedError(f"{where}: series {name}: unknown key(s) {', '.join(map(str, unknown))} "
                        f"(allowed: {', '.join(sorted(_SERIES_KEYS))})")
    missing = [key for key in _SERIES_REQUIRED_KEYS if not entry.get(key)]
    if missing:
        raise FeedError(f"{where}: series {name}: missing {', '.join(missing)}")
    time_format = str(entry.get("time_format", "iso"))
    if time_format not in TIME_FORMATS:
        raise FeedError(f"{where}: series {name}: time_format {time_format!r} is not one of {', '.join(TIME_FORMATS)}")
    on_gap = str(entry.get("on_gap", "error"))
    if on_gap not in GAP_POLICIES:
        raise FeedError(f"{where}: series {name}: on_gap {on_gap!r} is not one of {', '.join(GAP_POLICIES)}")
    if on_gap == "default" and (name in REQUIRED_SERIES or _kind(name) not in _GAP_DEFAULT_KINDS):
        raise FeedError(f"{where}: series {name}: on_gap: default is only for optional perp marks, funding, "
                        f"APRs and gas (an index or rate falling back to a default mid-run would fake a loss)")
    duplicates = str(entry.get("duplicates", "error"))
    if duplicates not in DUPLICATE_POLICIES:
        raise FeedError(f"{where}: series {name}: duplicates {duplicates!r} is not one of "
                        f"{', '.join(DUPLICATE_POLICIES)}")
    if entry.get("max_gap_hours") is not None:
        max_gap = _positive_number(entry["max_gap_hours"], f"{where}: series {name}: max_gap_hours")
    elif default_gap is not None:
        max_gap = default_gap
    else:
        max_gap = PRICE_MAX_GAP_HOURS if _kind(name) in ("spot", "perp_mark") else DEFAULT_MAX_GAP_HOURS
    scale = _number(entry.get("scale", 1.0), f"{where}: series {name}: scale")
    return SeriesSpec(
        name=name,
        file=Path(os.path.normpath(root / str(entry["file"]))),
        time_column=str(entry["time_column"]),
        value_column=str(entry["value_column"]),
        time_format=time_format,
        scale=scale,
        max_gap_hours=max_gap,
        on_gap=on_gap,
        duplicates=duplicates,
    )


def _check_pairs(where: str, names: set[str]) -> None:
    """An index without its APR (or the reverse) would be half real, half default: refuse it."""
    for side in ("lending", "borrow"):
        for asset in LENDING_ASSETS:
            index, apr = f"{side}_index.{asset}", f"{side}_apr.{asset}"
            if (index in names) != (apr in names):
                present, absent = (index, apr) if index in names else (apr, index)
                raise FeedError(f"{where}: series {present} needs {absent} too (give both or neither)")


def _closest_hint(name: str) -> str:
    lowered = name.lower()
    for candidate in sorted(_SERIES_NAMES):
        if candidate.lower() == lowered:
            return f" (did you mean {candidate}?)"
    return ""


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FeedError(f"{what} must be a number, got {value!r}")
    return float(value)


def _positive_number(value: Any, what: str) -> float:
    number = _number(value, what)
    if number <= 0:
        raise FeedError(f"{what} must be > 0, got {value!r}")
    return number


# --- files ---------------------------------------------------------------------------------------------


def load_series(specs: list[SeriesSpec]) -> dict[str, LoadedSeries]:
    """Read every spec's file (each file once) and return the validated series by name."""
    tables: dict[Path, _Table] = {}
    loaded: dict[str, LoadedSeries] = {}
    for spec in specs:
        table = tables.get(spec.file)
        if table is None:
            table = tables[spec.file] = _Table.read(spec)
        loaded[spec.name] = table.series(spec)
    return loaded


@dataclass(slots=True)
class _Table:
    """A CSV file's rows (comment lines dropped), with parsed time columns cached by format."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    line_numbers: list[int]
    _times: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    @classmethod
    def read(cls, spec: SeriesSpec) -> _Table:
        header, rows, line_numbers = read_commented_csv(spec.file, f"series {spec.name}")
        return cls(spec.file, header, rows, line_numbers)

    def column(self, spec: SeriesSpec, column: str) -> int:
        try:
            return self.header.index(column)
        except ValueError:
            raise FeedError(f"series {spec.name}: column {column!r} not in {self.path} "
                            f"(columns: {', '.join(self.header)})") from None

    def series(self, spec: SeriesSpec) -> LoadedSeries:
        if not self.rows:
            raise FeedError(f"series {spec.name}: {self.path} has a header but no data rows")
        times = self._parsed_times(spec)
        if spec.is_funding:
            # The engine settles funding on the 00/08/16 UTC grid (FUNDING_HOURS_UTC); a rate stamped
            # elsewhere would be settled at the wrong time or never.
            off_grid = next((t for t in times if t % _FUNDING_PERIOD_S), None)
            if off_grid is not None:
                raise FeedError(f"series {spec.name}: settlement {_fmt_time(off_grid)} in {self.path} is not at "
                                f"00:00, 08:00 or 16:00 UTC")
        value_index = self.column(spec, spec.value_column)
        values = []
        for row, line in zip(self.rows, self.line_numbers):
            text = row[value_index].strip() if value_index < len(row) else ""
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise FeedError(f"series {spec.name}: unparsable {spec.value_column} {text!r} "
                                f"at {self.path}:{line}")
            values.append(value * spec.scale)
        times, values = _sorted_unique(spec, self.path, times, values)
        return LoadedSeries(spec, times, values)

    def _parsed_times(self, spec: SeriesSpec) -> list[float]:
        key = (spec.time_column, spec.time_format)
        cached = self._times.get(key)
        if cached is not None:
            return cached
        index = self.column(spec, spec.time_column)
        parse = _TIME_PARSERS[spec.time_format]
        times = []
        for row, line in zip(self.rows, self.line_numbers):
            text = row[index].strip() if index < len(row) else ""
            try:
                times.append(parse(text))
            except TimeOutOfRange as exc:
                raise FeedError(f"series {spec.name}: {spec.time_column} {text!r} ({spec.time_format}) at "
                                f"{self.path}:{line} {exc}") from None
            except (ValueError, OverflowError):
                raise FeedError(f"series {spec.name}: unparsable {spec.time_column} {text!r} "
                                f"({spec.time_format}) at {self.path}:{line}") from None
        self._times[key] = times
        return times


#: The instants a data file may hold (unix seconds, UTC): 2000-01-01 .. 2100-01-01. Anything else is
#: a unit mistake (epoch_ms read as epoch_s, or the reverse) or a corrupt cell, and outside what
#: datetime and the engine's clock can represent at the extremes.
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp()
LATEST_TIME = datetime(2100, 1, 1, tzinfo=timezone.utc).timestamp()


def _in_range(t: float) -> float:
    if not EARLIEST_TIME <= t <= LATEST_TIME:  # also nan
        raise TimeOutOfRange("is outside the supported range 2000-01-01 .. 2100-01-01 UTC"
                             if math.isfinite(t) else "is not a finite time")
    return t


def _parse_iso(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        if not text.endswith("Z"):
            raise
        moment = datetime.fromisoformat(text[:-1])  # e.g. "...+00:00Z" as some exports write it
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return _in_range(moment.timestamp())


_TIME_PARSERS: dict[str, Callable[[str], float]] = {
    "iso": _parse_iso,
    "epoch_s": lambda text: _in_range(float(text)),
    "epoch_ms": lambda text: _in_range(float(text) / 1000.0),
}


def _sorted_unique(spec: SeriesSpec, path: Path, times: list[float], values: list[float]
                   ) -> tuple[list[float], list[float]]:
    if any(b < a for a, b in zip(times, times[1:])):
        order = sorted(range(len(times)), key=times.__getitem__)
        times, values = [times[i] for i in order], [values[i] for i in order]
    if all(b != a for a, b in zip(times, times[1:])):
        return times, values
    out_times: list[float] = []
    out_values: list[float] = []
    i, n = 0, len(times)
    while i < n:
        j = i + 1
        while j < n and times[j] == times[i]:
            j += 1
        group = values[i:j]
        if j - i > 1 and any(v != group[0] for v in group):
            group_value = _resolve_duplicates(spec, path, times[i], group)
        else:
            group_value = group[0]
        out_times.append(times[i])
        out_values.append(group_value)
        i = j
    return out_times, out_values


def _resolve_duplicates(spec: SeriesSpec, path: Path, t: float, group: list[float]) -> float:
    policy = spec.duplicates
    if policy == "error":
        raise FeedError(f"series {spec.name}: {len(group)} different values at {_fmt_time(t)} in {path} "
                        f"({', '.join(f'{v:g}' for v in group)}); set duplicates: first|last|min|max|mean")
    if policy == "first":
        return group[0]
    if policy == "last":
        return group[-1]
    if policy == "min":
        return min(group)
    if policy == "max":
        return max(group)
    return sum(group) / len(group)


# --- range and gaps ----------------------------------------------------------------------------------


def _common_range(series: dict[str, LoadedSeries]) -> tuple[float, float]:
    """The intersection of the ranges of every series that bounds the feed (on_gap: error)."""
    bounding = [s for s in series.values() if s.spec.on_gap == "error"]
    latest_start = max(bounding, key=lambda s: s.first)
    earliest_end = min(bounding, key=lambda s: s.last)
    if latest_start.first > earliest_end.last:
        raise FeedError(f"no common time range: {earliest_end.describe()} ends before "
                        f"{latest_start.describe()} starts")
    return latest_start.first, earliest_end.last


def _check_gaps(series: dict[str, LoadedSeries], start: float, end: float) -> None:
    for s in series.values():
        if s.spec.on_gap != "error":
            continue
        gap = s.largest_gap(start, end)
        if gap is not None:
            hours = (gap[1] - gap[0]) / 3600
            raise FeedError(f"series {s.describe()}: {hours:g} h without data from {_fmt_time(gap[0])} to "
                            f"{_fmt_time(gap[1])} exceeds max_gap_hours {s.spec.max_gap_hours:g} "
                            f"(raise max_gap_hours, or on_gap: default where allowed)")

