"""The built-in synthetic market: offline, deterministic for a ``seed`` and a ``scenario``.

``SampleFeed(seed=7, scenario=None, days=365, start=2025-01-01T00:00Z)`` generates, at construction,
one year of market state from ``random.Random(seed)`` (stdlib only, ~40 ms) and answers
``snapshot_at(ts)`` with O(1) arithmetic on regular grids. The same seed and scenario always give
the same numbers; nothing here is real data.

Calibration
-----------
Measured by us from the real 2024-01 .. 2025-09 reference set (``shared/reference-data``; none of it
is copied here), next to what this feed produces over its 365 days with seed 7 and no scenario
(29 of seeds 1..30 land inside the bands the tests use for seed 7):

==========================  ==========================================  ===============================
quantity                    reference                                   sample, seed 7
==========================  ==========================================  ===============================
BTC hourly log-return std   0.00526 (2024-25), 0.00473 (2025 only)      0.0044
BTC kurtosis, acf(|r|) 1 h  12.9, 0.27                                  12, 0.18
ETH hourly log-return std   0.00732 (0.00791 in 2025), kurtosis 21.8    0.0080, kurtosis 32
BTC/ETH hourly correlation  0.79                                        0.75
prices on 2025-01-01        BTC 94.4k, ETH 3.36k                        start 94,000 / 3,350 (seed 7's
                                                                        year is a bear market: it ends
                                                                        at 46k / 1.1k)
funding, annualised mean    binance 9.1% / 9.7%, bybit 9.3% / 9.6%,     binance 9.0% / 9.0%, bybit
(BTC / ETH)                 okx 2.7% / 3.0% (5% without its duplicate   8.1% / 9.2%, okx 2.3% / 3.9%
                            rows); 2025 alone ~5%
binance funding per 8 h     33% exactly 0.0001, 57% below it, 10%       55% exactly 0.0001, 8%
                            negative, std 0.0001, acf 0.82, longest     negative, std 0.00006, acf 0.79,
                            negative run 18 settlements, max 0.00088    longest negative run 9, max
                                                                        0.00042
okx funding per 8 h         20% negative, std 0.00013                   23-36% negative, std 0.00005
perp - spot basis           mean -0.02%, std 0.045%, hourly acf 0.96,   mean -0.01%, std 0.04%, acf
(binance BTC)               corr with funding 0.76                      0.99, corr with funding 0.45
AAVE USDT supply APR        mean 5.44%, std 3.3%, max 35%; borrow       5.8%, std 3.5%, max 42%;
                            7.3%; utilisation 0.81                      borrow 7.7%
AAVE WETH supply / borrow   1.93% / 2.67%, utilisation 0.85             1.94% / 2.70%
AAVE weETH / wstETH supply  0.07% / 0.06% (borrow 1.56% / 0.44%)        0.04% / 0.05% (1.57% / 0.42%)
indices on 2025-01-01       USDT 1.1057 / 1.1415 (supply / borrow),     start 1.10 / 1.14, 1.0375 /
                            WETH 1.0375 / 1.0603, weETH 1.0010 /        1.06, 1.001 / 1.015, 1.0007 /
                            1.0147, wstETH 1.0007 / 1.0079              1.008; never decrease
LST oracle rate             weETH 1.0566, wstETH 1.1893 on 2025-01-01;  start 1.056 / 1.19; +2.9% /
                            +2.7% / +2.95% a year, never down           +3.0% a year, never down
gas price (gwei)            median 5.3 (1.2 in 2025), p95 44, max 844,  median 5.1, p95 48, max 317
                            log std 1.1-1.5, hourly acf 0.96
EtherFi seasonal rewards    weekly EIGEN 0.166 .. 0.211 per eETH ($3.5  52 EIGEN drops, mean 0.187 (0.144
(per eETH held)             in the file); ETHFI: 7 top-ups of 0.013 ..  .. 0.213); 8 ETHFI drops, 3 of
                            0.25 in 2024 Q4, seasonal airdrops of 2 ..  them seasons (3.2 .. 4.9);
                            10.5 every 76 .. 138 days ($2.8); 2.8 % of  2.1 % of eETH in ETH a year
                            eETH in ETH over 2024-06 .. 2025-06         (1.8 .. 2.4 % over seeds 1..30)
==========================  ==========================================  ===============================

Model
-----
- **Prices**: hourly log returns from a GARCH(1,1) (alpha 0.10, beta 0.88: calm and stormy weeks
  cluster) driven by bivariate Student-t(5) shocks with correlation 0.82 (fat tails, joint crashes).
  Funding regimes add a small drift (bull spells trend up, negative spells trend down).
- **Perp premium and funding**: a Markov chain of funding regimes (neutral, bull, negative; each
  spell draws its own intensity) on the 8 h periods sets the mean of an hourly premium (perp over
  spot), AR(1) around it. Each venue's premium index for a period is that mean, plus the venue's own
  offset and a persistent noise. Binance and Bybit funding = index + clamp(0.01% - index, +-0.05%),
  their published formula: this is why the rate sits at exactly 0.0001 half of the time and why the
  basis averages slightly below zero while funding averages +9%/yr. OKX's data shows no such clamp:
  a damped index plus a small interest term, hence ~3%/yr and more negative settlements. Perp mark =
  spot x (1 + premium + a constant venue offset of at most 0.2 bp).
- **AAVE**: daily utilisation per reserve (mean-reverting; USDT and WETH get occasional borrow rushes
  above the kink), the AAVE V3 two-slope borrow curve, supply = borrow x utilisation x (1 - reserve
  factor). APRs are linear between daily knots; indices accrue exactly from them, so they never go
  down.
- **LSTs**: a daily staking APR (weETH ~2.8%, wstETH ~3.0%) accrued into the oracle rate.
- **Gas**: log-normal AR(1) per hour.
- **Seasonal rewards** (``reward_drops``, ``rewards_between``, each snapshot's ``rewards_paid``): an
  EIGEN drop every Saturday 00:00 UTC, a 10 % chance of an ETHFI top-up every Thursday, and an ETHFI
  season every 80 .. 140 days (the first 30 .. 140 days in). Token prices start at the reference
  file's $3.5 / $2.8 and move with ETH (plus 10 % noise per drop). The drops come from their own
  random stream: the market is the same with or without them.

Time grid: prices, premium and gas are hourly points from ``start`` to ``end = start + days``,
interpolated linearly; AAVE rates and LST rates are daily knots (the reference data's own cadence)
with exact accrual in between. Funding is constant within each 8 h period: ``funding_rate`` at ``ts``
is the rate that settles at ``next_funding_settlement(ts)``, the first 00/08/16 UTC settlement
strictly after ``ts`` (so at a settlement instant it already quotes the next period: the paper venues
settle each period with the rate quoted just before it). The replay feed follows the same rule.

Scenarios (``SCENARIOS``)
-------------------------
Times are hours after ``start``. Inside a scenario's scripted window prices follow the script
exactly (no noise), so tests can rely on the numbers; before and after it the market is random.

- ``crash`` (like 2024-08-05): from +1 h to +4 h BTC falls to 75% and ETH to 70% of their +1 h
  prices (cumulative 1/4, 7/10 and all of the log drop at +2, +3, +4 h); then both recover linearly
  (in log) to 85% (BTC) and 82% (ETH) of the +1 h price at +24 h, after which random dynamics resume.
  Perp marks on every venue gain a premium over spot on top of the normal basis: +1% at +2 h,
  +2% at +3 h, +3% at +4 h (the bottom), +2% at +5 h, +1% at +6 h, +0.3% at +8 h, 0 from +12 h.
  Funding on every venue and asset is -0.075%, -0.10% and -0.05% at the first three settlements
  after +1 h (with the default start: 08:00, 16:00 and 00:00 next day). Gas spikes x8 (+3 h to +5 h).
- ``squeeze``: from +1 h to +7 h BTC and ETH rise to 135% of their +1 h prices (10/25/45/70/90/100%
  of the log rise at +2..+7 h), then ease linearly to 125% at +24 h. Perp premium +0.5% at +4 h,
  +1% at +7 h (the top), +0.3% at +10 h, 0 from +14 h. Funding +0.15%, +0.25%, +0.12% at the first
  three settlements after +1 h. Gas x4 (+4 h to +7 h).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import accumulate

from basis_live.feeds.base import (
    BASE_ASSETS,
    LENDING_ASSETS,
    LST_ASSETS,
    PERP_VENUES,
    FeedError,
    MarketFeed,
    MarketSnapshot,
    RewardDrop,
    last_funding_settlement,
    utc,
)
from basis_live.feeds.rewards import RewardCalendar

#: Named stress scenarios: name -> one-line description (the CLI lists and validates these).
SCENARIOS: dict[str, str] = {
    "crash": (
        "liquidation cascade: from start+1h to +4h BTC -25%, ETH -30%; perp premium up to +3% at +4h; "
        "funding -0.075%/-0.10%/-0.05% at the 3 settlements after +1h; 85%/82% of the +1h price by +24h"
    ),
    "squeeze": (
        "short squeeze: from start+1h to +7h BTC and ETH +35%; perp premium up to +1% at +7h; "
        "funding +0.15%/+0.25%/+0.12% at the 3 settlements after +1h; +25% over the +1h price by +24h"
    ),
}

DEFAULT_SEED = 7
DEFAULT_DAYS = 365
DEFAULT_START = datetime(2025, 1, 1, tzinfo=timezone.utc)

_HOUR_US = 3_600_000_000
_DAY_US = 24 * _HOUR_US
_FUNDING_PERIOD_US = 8 * _HOUR_US
_ONE_US = timedelta(microseconds=1)
_SECONDS_PER_YEAR = 365 * 86_400  # AAVE's convention

# --- prices -------------------------------------------------------------------------------------
_START_PRICE = {"BTC": 94_000.0, "ETH": 3_350.0}
_HOURLY_VOL = {"BTC": 0.0050, "ETH": 0.0074}  # unconditional GARCH std, see the calibration table
_GARCH_ALPHA = 0.10
_GARCH_BETA = 0.88
_STUDENT_DF = 5.0
_BTC_ETH_CORRELATION = 0.82
_MAX_HOURLY_MOVE = 0.15  # a guard against a freak t draw, far beyond anything in the reference data

# --- funding regimes (per 8 h period) and premium -------------------------------------------------
#: regime -> (range of the perp premium mean drawn for each spell, hourly price drift, mean length
#: in 8 h periods)
_REGIMES = {
    "neutral": ((-0.00024, -0.00020), 0.0, 30.0),
    "bull": ((0.0006, 0.0013), 0.00010, 9.0),
    "negative": ((-0.00050, -0.00030), -0.00020, 6.0),
}
_REGIME_EXITS = {  # where a regime goes when it ends: (first choice, its probability, second choice)
    "neutral": ("bull", 0.55, "negative"),
    "bull": ("neutral", 0.85, "negative"),
    "negative": ("neutral", 0.85, "bull"),
}
_PREMIUM_PHI = 0.96  # hourly persistence of the premium around its regime mean (reference acf 0.96)
_PREMIUM_NOISE = 0.00022  # stationary std of that AR(1)
_PREMIUM_MEAN_LAG = 0.15  # hourly speed at which the premium mean follows a regime switch
_FUNDING_INTEREST = 0.0001  # binance / bybit interest component per 8 h
_FUNDING_CLAMP = 0.0005
_FUNDING_CAP = 0.003  # venues cap a single settlement; reference max 0.00113
#: venue -> (clamped formula?, weight of the premium mean's departure from neutral in the venue's
#: premium index, the index in a neutral market, per-period noise std of the index)
_VENUE_FUNDING = {
    "binance": (True, 1.0, -0.00040, 0.000065),
    "bybit": (True, 1.0, -0.00039, 0.00008),
    "okx": (False, 0.08, 0.000018, 0.00004),
}
_NEUTRAL_PREMIUM = -0.00022
_FUNDING_NOISE_PHI = 0.75  # a venue's premium index drifts: settlement-to-settlement persistence
_ETH_FUNDING_TILT = 0.00001  # ETH funding runs a little richer than BTC in the reference data
#: venue -> constant offset of its perp mark over the common premium (venues disagree by ~1 bp)
_VENUE_MARK_OFFSET = {"binance": 0.0, "bybit": 0.00002, "okx": -0.00002}


# --- AAVE V3 reserves --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ReserveModel:
    """Daily utilisation process and the AAVE V3 two-slope rate curve of one reserve."""

    utilisation_mean: float
    reversion: float  # daily pull back to the mean
    noise: float  # daily utilisation noise std
    spike_probability: float  # daily chance of a borrow rush that pushes utilisation up
    spike_size: float
    optimal_utilisation: float
    base_rate: float
    slope1: float
    slope2: float
    reserve_factor: float
    start_liquidity_index: float
    start_borrow_index: float

    def borrow_apr(self, utilisation: float) -> float:
        if utilisation <= self.optimal_utilisation:
            return self.base_rate + self.slope1 * utilisation / self.optimal_utilisation
        excess = (utilisation - self.optimal_utilisation) / (1.0 - self.optimal_utilisation)
        return self.base_rate + self.slope1 + self.slope2 * excess


_RESERVES = {
    "USDT": _ReserveModel(0.80, 0.35, 0.04, 0.04, 0.09, 0.92, 0.0, 0.08, 0.45, 0.10, 1.10, 1.14),
    "WETH": _ReserveModel(0.845, 0.5, 0.02, 0.01, 0.04, 0.90, 0.0, 0.028, 0.80, 0.15, 1.0375, 1.06),
    "weETH": _ReserveModel(0.04, 0.05, 0.004, 0.0, 0.0, 0.35, 0.01, 0.05, 0.85, 0.45, 1.001, 1.015),
    "wstETH": _ReserveModel(0.145, 0.03, 0.006, 0.0, 0.0, 0.45, 0.001, 0.011, 0.85, 0.10, 1.0007, 1.008),
}
_UTILISATION_BOUNDS = (0.005, 0.99)

# --- liquid staking tokens ------------------------------------------------------------------------
#: LST -> (start oracle rate in ETH, mean staking APR)
_LST_MODEL = {"weETH": (1.056, 0.028), "wstETH": (1.19, 0.030)}
_STAKING_APR_PHI = 0.9
_STAKING_APR_NOISE = 0.003
_STAKING_APR_FLOOR = 0.005

# --- gas ------------------------------------------------------------------------------------------------
_GAS_MEDIAN_GWEI = 5.0
_GAS_LOG_STD = 1.25
_GAS_PHI = 0.95

# --- EtherFi seasonal rewards (per eETH held at the drop) ------------------------------------------------
#: Weekly EIGEN drop, Saturdays 00:00 UTC: mean and std (the reference's weekly rows: 0.166 .. 0.211).
_EIGEN_PER_EETH = (0.188, 0.011)
#: ETHFI ad-hoc top-ups, Thursdays 00:00 UTC: a week's chance, amount range (reference: 7 top-ups
#: over 2024 Q4, 0.013 .. 0.248).
_ETHFI_TOPUP = (0.10, 0.01, 0.25)
#: ETHFI seasonal airdrops: days between seasons and amount range (reference seasons: 76 .. 138 days;
#: 2 .. 10.5 ETHFI, mostly 2 .. 5.5).
_ETHFI_SEASON_DAYS = (80.0, 140.0)
_ETHFI_SEASON_PER_EETH = (2.0, 6.0)
#: Token prices in USD at the start (the reference file's EIGEN 3.5, ETHFI 2.8); each drop's price
#: moves with ETH (both trade as ETH-beta tokens), with this log noise.
_REWARD_PRICE_USD = {"EIGEN": 3.5, "ETHFI": 2.8}
_REWARD_PRICE_NOISE = 0.10
_SATURDAY, _THURSDAY = 5, 3


@dataclass(frozen=True, slots=True)
class _Scenario:
    """A scripted market event. Hours count from the feed's start; knots are (hour, value)."""

    #: asset -> knots of the log price relative to the first knot's hour; the script replaces the
    #: random walk from the first to the last knot.
    log_price: dict[str, tuple[tuple[int, float], ...]]
    #: premium added to every venue's perp mark (linear between knots, 0 outside).
    premium: tuple[tuple[int, float], ...]
    #: funding rates for the first settlements after the onset (the first knot hour).
    funding: tuple[float, ...]
    #: gas price multiplier (linear between knots, 1 outside).
    gas_multiplier: tuple[tuple[int, float], ...]


def _move_knots(hours: tuple[int, ...], shares: tuple[float, ...], move: float, end_hour: int,
                end_level: float) -> tuple[tuple[int, float], ...]:
    """Log-price knots: 0 at hours[0], ``shares`` of log(move) at hours[1:], log(end_level) at end_hour."""
    log_move = math.log(move)
    knots = [(hours[0], 0.0)] + [(h, s * log_move) for h, s in zip(hours[1:], shares)]
    return tuple(knots + [(end_hour, math.log(end_level))])


_SCENARIO_SCRIPTS: dict[str, _Scenario] = {
    "crash": _Scenario(
        log_price={
            "BTC": _move_knots((1, 2, 3, 4), (0.25, 0.70, 1.0), 0.75, 24, 0.85),
            "ETH": _move_knots((1, 2, 3, 4), (0.25, 0.70, 1.0), 0.70, 24, 0.82),
        },
        premium=((1, 0.0), (2, 0.01), (3, 0.02), (4, 0.03), (5, 0.02), (6, 0.01), (8, 0.003), (12, 0.0)),
        funding=(-0.00075, -0.0010, -0.0005),
        gas_multiplier=((1, 1.0), (3, 8.0), (5, 8.0), (10, 1.0)),
    ),
    "squeeze": _Scenario(
        log_price={
            asset: _move_knots((1, 2, 3, 4, 5, 6, 7), (0.10, 0.25, 0.45, 0.70, 0.90, 1.0), 1.35, 24, 1.25)
            for asset in BASE_ASSETS
        },
        premium=((1, 0.0), (4, 0.005), (7, 0.01), (10, 0.003), (14, 0.0)),
        funding=(0.0015, 0.0025, 0.0012),
        gas_multiplier=((1, 1.0), (4, 4.0), (7, 4.0), (10, 1.0)),
    ),
}
assert set(_SCENARIO_SCRIPTS) == set(SCENARIOS)


def _knot_value(knots: tuple[tuple[int, float], ...], hour: float, outside: float) -> float:
    """Piecewise-linear value of ``knots`` at ``hour``; ``outside`` before the first / after the last."""
    if hour < knots[0][0] or hour > knots[-1][0]:
        return outside
    for (h0, v0), (h1, v1) in zip(knots, knots[1:]):
        if h0 <= hour <= h1:
            return v0 + (v1 - v0) * (hour - h0) / (h1 - h0)
    return outside  # pragma: no cover - the loop always matches inside the knots


class SampleFeed(MarketFeed):
    """Synthetic hourly market for ``days`` days from ``start``; see the module docstring."""

    is_sample = True

    def __init__(self, seed: int = DEFAULT_SEED, scenario: str | None = None, days: int = DEFAULT_DAYS,
                 start: datetime = DEFAULT_START) -> None:
        if scenario is not None and scenario not in SCENARIOS:
            known = ", ".join(sorted(SCENARIOS))
            raise FeedError(f"unknown sample scenario {scenario!r}; known scenarios: {known}")
        if not isinstance(days, int) or days < 1:
            raise FeedError(f"sample feed days must be a whole number >= 1, got {days!r}")
        start = utc(start)
        if (start.minute, start.second, start.microsecond) != (0, 0, 0):
            raise FeedError(f"sample feed start must be on a whole UTC hour, got {start.isoformat()}")
        self.seed = seed
        self.scenario = scenario
        self.days = days
        self.start = start
        self.end = start + timedelta(days=days)
        self.label = f"SAMPLE DATA (synthetic, seed {seed}" + (f", scenario {scenario})" if scenario else ")")
        self._hours = days * 24
        self._script = _SCENARIO_SCRIPTS[scenario] if scenario else None
        # Funding periods are counted from the settlement at or before start, on the UTC grid.
        self._settlement_offset_us = (start - last_funding_settlement(start)) // _ONE_US
        self._generate(random.Random(seed))

    # --- generation -----------------------------------------------------------------------------

    def _generate(self, rng: random.Random) -> None:
        n_periods = (self._settlement_offset_us + self._hours * _HOUR_US) // _FUNDING_PERIOD_US + 2
        target_of_period, drift_of_period = self._regime_path(rng, n_periods)
        period_of_hour = [self._period_of_hour(h) for h in range(self._hours + 1)]
        self._spot = self._price_paths(rng, [drift_of_period[k] for k in period_of_hour])
        # The premium mean follows regime switches with a lag, so the basis never jumps.
        lag = _PREMIUM_MEAN_LAG
        target = [target_of_period[k] for k in period_of_hour]
        level = list(accumulate(target[1:], lambda m, t: m + lag * (t - m), initial=target[0]))
        self._premium = {asset: self._premium_path(rng, level) for asset in BASE_ASSETS}
        self._funding = self._funding_rates(rng, n_periods, period_of_hour, level)
        self._lending = {asset: self._reserve_path(rng, model) for asset, model in _RESERVES.items()}
        self._lst = {lst: self._lst_path(rng, rate0, apr) for lst, (rate0, apr) in _LST_MODEL.items()}
        self._gas = self._gas_path(rng)
        # Their own stream: adding the drops changed none of the numbers above.
        self._rewards = RewardCalendar(self._reward_drops(random.Random(f"seasonal-rewards-{self.seed}")))
        self.reward_drops = self._rewards.drops

    def _period_of_hour(self, hour: int) -> int:
        """Index of the funding period hour ``hour`` belongs to: that of the settlement strictly after it."""
        return (self._settlement_offset_us + hour * _HOUR_US) // _FUNDING_PERIOD_US + 1

    @staticmethod
    def _regime_path(rng: random.Random, n_periods: int) -> tuple[list[float], list[float]]:
        """Per 8 h period: the premium mean of the current funding regime spell, and its price drift."""
        regime = "neutral"
        (low, high), drift, _ = _REGIMES[regime]
        mean = rng.uniform(low, high)
        means, drifts = [], []
        for _ in range(n_periods):
            means.append(mean)
            drifts.append(drift)
            if rng.random() < 1.0 / _REGIMES[regime][2]:
                first, probability, second = _REGIME_EXITS[regime]
                regime = first if rng.random() < probability else second
                (low, high), drift, _ = _REGIMES[regime]
                mean = rng.uniform(low, high)
        return means, drifts

    def _scripted_log_returns(self, asset: str) -> dict[int, float]:
        """hour -> scripted log return from hour-1 to hour, inside the scenario window."""
        if self._script is None:
            return {}
        knots = self._script.log_price[asset]
        first, last = knots[0][0], min(knots[-1][0], self._hours)
        levels = {h: _knot_value(knots, h, 0.0) for h in range(first, last + 1)}
        return {h: levels[h] - levels[h - 1] for h in range(first + 1, last + 1)}

    def _price_paths(self, rng: random.Random, drift_of_hour: list[float]) -> dict[str, list[float]]:
        gauss, gamma, sqrt = rng.gauss, rng.gammavariate, math.sqrt
        var_b, var_e = _HOURLY_VOL["BTC"] ** 2, _HOURLY_VOL["ETH"] ** 2
        omega_b = var_b * (1.0 - _GARCH_ALPHA - _GARCH_BETA)
        omega_e = var_e * (1.0 - _GARCH_ALPHA - _GARCH_BETA)
        alpha, beta = _GARCH_ALPHA, _GARCH_BETA
        half_df, t_scale = _STUDENT_DF / 2.0, _STUDENT_DF - 2.0  # unit-variance Student-t mixing
        rho, rho_c = _BTC_ETH_CORRELATION, math.sqrt(1.0 - _BTC_ETH_CORRELATION**2)
        cap = _MAX_HOURLY_MOVE
        scripted_b, scripted_e = self._scripted_log_returns("BTC"), self._scripted_log_returns("ETH")
        log_b, log_e = math.log(_START_PRICE["BTC"]), math.log(_START_PRICE["ETH"])
        path_b, path_e = [log_b], [log_e]
        for hour in range(1, self._hours + 1):
            # Draw even inside a scripted window: a scenario then changes nothing but its script.
            mix = sqrt(t_scale / gamma(half_df, 2.0))
            z_b = gauss(0.0, 1.0)
            z_e = rho * z_b + rho_c * gauss(0.0, 1.0)
            if hour in scripted_b:
                r_b, r_e = scripted_b[hour], scripted_e[hour]
            else:
                mu = drift_of_hour[hour]
                r_b = max(-cap, min(cap, mu + mix * z_b * sqrt(var_b)))
                r_e = max(-cap, min(cap, mu + mix * z_e * sqrt(var_e)))
            # Scripted moves feed the variance too, so a crash leaves a stormy market behind it.
            var_b = omega_b + alpha * r_b * r_b + beta * var_b
            var_e = omega_e + alpha * r_e * r_e + beta * var_e
            log_b += r_b
            log_e += r_e
            path_b.append(log_b)
            path_e.append(log_e)
        exp = math.exp
        return {"BTC": [exp(x) for x in path_b], "ETH": [exp(x) for x in path_e]}

    def _premium_path(self, rng: random.Random, level: list[float]) -> list[float]:
        """Hourly perp premium over spot: the regime mean plus AR(1) noise, plus the script."""
        phi = _PREMIUM_PHI
        shocks = _uniform_shocks(rng, self._hours, _PREMIUM_NOISE * math.sqrt(1.0 - phi * phi))
        noise = accumulate(shocks, lambda x, z: phi * x + z, initial=rng.gauss(0.0, _PREMIUM_NOISE))
        premium = [m + x for m, x in zip(level, noise)]
        if self._script is not None:
            knots = self._script.premium
            for hour in range(knots[0][0], min(knots[-1][0], self._hours) + 1):
                premium[hour] += _knot_value(knots, hour, 0.0)
        return premium

    def _funding_rates(self, rng: random.Random, n_periods: int, period_of_hour: list[int],
                       level: list[float]) -> dict[str, dict[str, list[float]]]:
        """venue -> asset -> the rate settling at the end of each 8 h period."""
        # A venue's premium index is the period's average premium mean seen through the venue's own
        # weight, offset and noise; the hourly mark noise does not reach funding (it averages out).
        sums = [0.0] * n_periods
        counts = [0] * n_periods
        for hour, k in enumerate(period_of_hour):
            sums[k] += level[hour]
            counts[k] += 1
        averages, last = [], level[0]
        for total, count in zip(sums, counts):
            if count:
                last = total / count
            averages.append(last)
        gauss = rng.gauss
        interest, clamp, cap, phi = _FUNDING_INTEREST, _FUNDING_CLAMP, _FUNDING_CAP, _FUNDING_NOISE_PHI
        funding: dict[str, dict[str, list[float]]] = {venue: {} for venue in PERP_VENUES}
        for venue, (clamped, weight, offset, noise_std) in _VENUE_FUNDING.items():
            step_std = noise_std * math.sqrt(1.0 - phi * phi)
            for asset in BASE_ASSETS:
                tilt = _ETH_FUNDING_TILT if asset == "ETH" else 0.0
                noise = gauss(0.0, noise_std)
                rates = []
                for average in averages:
                    index = weight * (average - _NEUTRAL_PREMIUM) + offset + tilt + noise
                    rate = index + max(-clamp, min(clamp, interest - index)) if clamped else index
                    rates.append(max(-cap, min(cap, rate)))
                    noise = phi * noise + gauss(0.0, step_std)
                funding[venue][asset] = rates
        if self._script is not None:
            onset = self._script.log_price["BTC"][0][0]
            first = self._period_of_hour(onset)  # the first settlement strictly after the onset
            for i, rate in enumerate(self._script.funding):
                if first + i < n_periods:
                    for venue in PERP_VENUES:
                        for asset in BASE_ASSETS:
                            funding[venue][asset][first + i] = rate
        return funding

    def _reserve_path(self, rng: random.Random, model: _ReserveModel
                      ) -> tuple[list[float], list[float], list[float], list[float]]:
        """Daily knots: supply APR, supply index, borrow APR, borrow index."""
        low, high = _UTILISATION_BOUNDS
        utilisation = model.utilisation_mean
        supply_apr, borrow_apr = [], []
        for _ in range(self.days + 1):
            borrow = model.borrow_apr(utilisation)
            borrow_apr.append(borrow)
            supply_apr.append(borrow * utilisation * (1.0 - model.reserve_factor))
            utilisation += model.reversion * (model.utilisation_mean - utilisation) + rng.gauss(0.0, model.noise)
            if model.spike_probability and rng.random() < model.spike_probability:
                utilisation += model.spike_size
            utilisation = max(low, min(high, utilisation))
        return (supply_apr, _accrue_daily(model.start_liquidity_index, supply_apr),
                borrow_apr, _accrue_daily(model.start_borrow_index, borrow_apr))

    def _lst_path(self, rng: random.Random, rate0: float, mean_apr: float) -> tuple[list[float], list[float]]:
        """Daily knots: staking APR and the oracle rate accrued from it."""
        apr, x = [], 0.0
        step_std = _STAKING_APR_NOISE * math.sqrt(1.0 - _STAKING_APR_PHI**2)
        for _ in range(self.days + 1):
            apr.append(max(_STAKING_APR_FLOOR, mean_apr + x))
            x = _STAKING_APR_PHI * x + rng.gauss(0.0, step_std)
        return apr, _accrue_daily(rate0, apr)

    def _gas_path(self, rng: random.Random) -> list[float]:
        phi = _GAS_PHI
        shocks = _uniform_shocks(rng, self._hours, _GAS_LOG_STD * math.sqrt(1.0 - phi * phi))
        logs = accumulate(shocks, lambda y, z: phi * y + z, initial=rng.gauss(0.0, _GAS_LOG_STD))
        median, exp = _GAS_MEDIAN_GWEI, math.exp
        gas = [median * exp(y) for y in logs]
        if self._script is not None:
            knots = self._script.gas_multiplier
            for hour in range(knots[0][0], min(knots[-1][0], self._hours) + 1):
                gas[hour] *= _knot_value(knots, hour, 1.0)
        return gas

    def _reward_drops(self, rng: random.Random) -> list[RewardDrop]:
        """Weekly EIGEN, occasional ETHFI top-ups and seasonal ETHFI airdrops in (start, end]."""
        eth = self._spot["ETH"]

        def drop(when: datetime, token: str, per_eeth: float) -> RewardDrop:
            hour = min(int((when - self.start) / timedelta(hours=1)), self._hours)
            price = _REWARD_PRICE_USD[token] * eth[hour] / eth[0] * math.exp(rng.gauss(0.0, _REWARD_PRICE_NOISE))
            return RewardDrop(when, token, max(per_eeth, 0.0), price, "synthetic")

        def weekdays(weekday: int) -> list[datetime]:
            midnight = self.start.replace(hour=0)
            first = midnight + timedelta(days=(weekday - midnight.weekday()) % 7)
            if first <= self.start:
                first += timedelta(days=7)
            days = []
            while first <= self.end:
                days.append(first)
                first += timedelta(weeks=1)
            return days

        drops = [drop(when, "EIGEN", rng.gauss(*_EIGEN_PER_EETH)) for when in weekdays(_SATURDAY)]
        chance, low, high = _ETHFI_TOPUP
        drops += [drop(when, "ETHFI", rng.uniform(low, high)) for when in weekdays(_THURSDAY) if rng.random() < chance]
        season = self.start.replace(hour=0) + timedelta(days=round(rng.uniform(30.0, _ETHFI_SEASON_DAYS[1])))
        while season <= self.end:
            drops.append(drop(season, "ETHFI", rng.uniform(*_ETHFI_SEASON_PER_EETH)))
            season += timedelta(days=round(rng.uniform(*_ETHFI_SEASON_DAYS)))
        return drops

    # --- queries --------------------------------------------------------------------------------

    async def snapshot_at(self, ts: datetime) -> MarketSnapshot:
        """The market at ``ts`` (start <= ts <= end); see ``snapshot``."""
        return self.snapshot(ts)

    def snapshot(self, ts: datetime) -> MarketSnapshot:
        """Synchronous ``snapshot_at`` for backtests and analytics: O(1), no I/O."""
        ts = utc(ts)
        if ts < self.start or ts > self.end:
            raise FeedError(
                f"{ts.isoformat()} is outside the sample feed's range "
                f"{self.start.isoformat()} .. {self.end.isoformat()}"
            )
        us = (ts - self.start) // _ONE_US
        hour, within = divmod(us, _HOUR_US)
        if hour == self._hours:  # ts == end: the last point itself
            hour, within = hour - 1, _HOUR_US
        frac = within / _HOUR_US

        def hourly(points: list[float]) -> float:
            a = points[hour]
            return a + (points[hour + 1] - a) * frac

        period = (self._settlement_offset_us + us) // _FUNDING_PERIOD_US + 1
        day, day_us = divmod(us, _DAY_US)
        if day == self.days:
            day, day_us = day - 1, _DAY_US
        day_seconds = day_us / 1_000_000

        spot = {"USDT": 1.0, "BTC": hourly(self._spot["BTC"]), "ETH": hourly(self._spot["ETH"])}
        premium = {asset: hourly(self._premium[asset]) for asset in BASE_ASSETS}
        perp_mark = {
            venue: {asset: spot[asset] * (1.0 + premium[asset] + offset) for asset in BASE_ASSETS}
            for venue, offset in _VENUE_MARK_OFFSET.items()
        }
        funding_rate = {venue: {asset: self._funding[venue][asset][period] for asset in BASE_ASSETS}
                        for venue in PERP_VENUES}
        lending_index, lending_apr, borrow_index, borrow_apr = {}, {}, {}, {}
        for asset in LENDING_ASSETS:
            s_apr, s_idx, b_apr, b_idx = self._lending[asset]
            lending_apr[asset], lending_index[asset] = _daily_accrual(s_apr, s_idx, day, day_seconds)
            borrow_apr[asset], borrow_index[asset] = _daily_accrual(b_apr, b_idx, day, day_seconds)
        lst_rate = {}
        for lst in LST_ASSETS:
            apr, rates = self._lst[lst]
            lst_rate[lst] = _daily_accrual(apr, rates, day, day_seconds)[1]
            spot[lst] = lst_rate[lst] * spot["ETH"]
        paid, prices = self._rewards.at(ts.timestamp())
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
            gas_price_gwei=hourly(self._gas),
            source="sample",
            scenario=self.scenario,
            rewards_paid=paid,
        )


def _uniform_shocks(rng: random.Random, n: int, std: float) -> list[float]:
    """``n`` zero-mean uniform shocks with standard deviation ``std``.

    For AR(1) paths with persistence >= 0.95 (premium, gas): the level sums dozens of shocks, so it is
    Gaussian to the eye, and ``random()`` costs a fifth of ``gauss()`` (construction stays < 100 ms).
    """
    width = std * math.sqrt(12.0)
    uniform = rng.random
    return [(uniform() - 0.5) * width for _ in range(n)]


def _accrue_daily(start: float, apr: list[float]) -> list[float]:
    """Index at each daily knot, accruing the APR (linear between knots) with simple interest per day."""
    day_fraction = 86_400 / _SECONDS_PER_YEAR
    growth = [1.0 + (a0 + a1) * 0.5 * day_fraction for a0, a1 in zip(apr, apr[1:])]
    return list(accumulate(growth, lambda index, g: index * g, initial=start))


def _daily_accrual(apr: list[float], index: list[float], day: int, seconds: float) -> tuple[float, float]:
    """(APR, index) ``seconds`` into ``day``: APR linear between knots, index its exact integral."""
    a0, a1 = apr[day], apr[day + 1]
    slope = (a1 - a0) / 86_400
    accrued = (a0 * seconds + 0.5 * slope * seconds * seconds) / _SECONDS_PER_YEAR
    return a0 + slope * seconds, index[day] * (1.0 + accrued)
