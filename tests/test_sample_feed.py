"""SampleFeed: determinism, calibration against the 2024-25 reference data, scenarios, speed.

Calibration bands are derived from statistics of shared/reference-data (see the module docstring of
basis_live.feeds.sample): e.g. BTC hourly log-return std 0.0047 (2025) .. 0.0053 (2024-25), so the
synthetic year must land in 0.0035 .. 0.0065.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from datetime import datetime, timedelta, timezone

import pytest

from basis_live.feeds.base import LENDING_ASSETS, LST_ASSETS, PERP_VENUES, FeedError, MarketSnapshot
from basis_live.feeds.sample import SCENARIOS, SampleFeed

START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def hours_after_start(feed: SampleFeed, hours: float) -> MarketSnapshot:
    return feed.snapshot(feed.start + timedelta(hours=hours))


@pytest.fixture(scope="module")
def default_feed() -> SampleFeed:
    return SampleFeed()


@pytest.fixture(scope="module")
def hourly_year(default_feed: SampleFeed) -> list[MarketSnapshot]:
    """Every hourly snapshot of the default feed's 365 days."""
    return [hours_after_start(default_feed, h) for h in range(365 * 24 + 1)]


@pytest.fixture(scope="module")
def settlements(hourly_year: list[MarketSnapshot]) -> list[MarketSnapshot]:
    """One snapshot per funding period (at each settlement after the start)."""
    return hourly_year[8::8]


def log_returns(snapshots: list[MarketSnapshot], asset: str) -> list[float]:
    prices = [s.spot[asset] for s in snapshots]
    return [math.log(b / a) for a, b in zip(prices, prices[1:])]


def longest_negative_run(rates: list[float]) -> int:
    longest = current = 0
    for rate in rates:
        current = current + 1 if rate < 0 else 0
        longest = max(longest, current)
    return longest


# --- identity and determinism -----------------------------------------------------------------------


def test_default_feed_covers_365_days_from_2025_with_sample_label(default_feed: SampleFeed) -> None:
    assert default_feed.start == START
    assert default_feed.end == START + timedelta(days=365)
    assert default_feed.label == "SAMPLE DATA (synthetic, seed 7)"
    assert default_feed.is_sample is True


def test_scenario_appears_in_label_and_on_every_snapshot() -> None:
    feed = SampleFeed(scenario="crash", days=3)
    assert feed.label == "SAMPLE DATA (synthetic, seed 7, scenario crash)"
    snapshot = hours_after_start(feed, 10)
    assert (snapshot.source, snapshot.scenario) == ("sample", "crash")
    plain = hours_after_start(SampleFeed(days=3), 10)
    assert (plain.source, plain.scenario) == ("sample", None)


def test_same_seed_gives_identical_snapshots_and_other_seed_differs() -> None:
    at = [START + timedelta(hours=h, minutes=17) for h in (0, 5, 100, 2000, 8000)]
    first = [SampleFeed(seed=7).snapshot(ts) for ts in at]
    again = [SampleFeed(seed=7).snapshot(ts) for ts in at]
    other = [SampleFeed(seed=8).snapshot(ts) for ts in at]
    assert first == again
    assert [s.spot["BTC"] for s in first[1:]] != [s.spot["BTC"] for s in other[1:]]
    assert [s.funding_rate["binance"]["BTC"] for s in first] != [s.funding_rate["binance"]["BTC"] for s in other]


def test_snapshot_at_is_awaitable_and_matches_snapshot(default_feed: SampleFeed) -> None:
    ts = START + timedelta(hours=42, minutes=5)
    assert asyncio.run(default_feed.snapshot_at(ts)) == default_feed.snapshot(ts)


def test_snapshot_contains_every_asset_venue_and_reserve(default_feed: SampleFeed) -> None:
    snapshot = hours_after_start(default_feed, 3)
    assert set(snapshot.spot) == {"USDT", "BTC", "ETH", "weETH", "wstETH"}  # no reward drop yet
    assert snapshot.spot["USDT"] == 1.0
    for venue in PERP_VENUES:
        assert set(snapshot.perp_mark[venue]) == {"BTC", "ETH"}
        assert set(snapshot.funding_rate[venue]) == {"BTC", "ETH"}
    for table in (snapshot.lending_index, snapshot.lending_apr, snapshot.borrow_index, snapshot.borrow_apr):
        assert set(table) == set(LENDING_ASSETS)
    for lst in LST_ASSETS:
        assert snapshot.spot[lst] == pytest.approx(snapshot.lst_rate[lst] * snapshot.spot["ETH"])


def test_starting_values_sit_near_the_real_2025_01_01_market(default_feed: SampleFeed) -> None:
    snapshot = default_feed.snapshot(START)
    assert 90_000 <= snapshot.spot["BTC"] <= 100_000
    assert 3_200 <= snapshot.spot["ETH"] <= 3_500
    assert snapshot.lending_index["USDT"] == pytest.approx(1.10, abs=0.01)
    assert snapshot.borrow_index["USDT"] == pytest.approx(1.14, abs=0.01)
    assert snapshot.lst_rate["weETH"] == pytest.approx(1.06, abs=0.01)
    assert snapshot.lst_rate["wstETH"] == pytest.approx(1.20, abs=0.015)


def test_ts_outside_the_feed_range_raises_feed_error(default_feed: SampleFeed) -> None:
    with pytest.raises(FeedError, match="outside the sample feed's range"):
        default_feed.snapshot(START - timedelta(seconds=1))
    with pytest.raises(FeedError, match="outside"):
        default_feed.snapshot(default_feed.end + timedelta(hours=1))
    assert default_feed.snapshot(default_feed.end).timestamp == default_feed.end


def test_naive_timestamps_are_taken_as_utc(default_feed: SampleFeed) -> None:
    aware = START + timedelta(hours=7, minutes=30)
    assert default_feed.snapshot(aware.replace(tzinfo=None)) == default_feed.snapshot(aware)


# --- interpolation and funding periods --------------------------------------------------------------


def test_prices_and_gas_interpolate_linearly_between_hourly_points(default_feed: SampleFeed) -> None:
    h10, h11 = hours_after_start(default_feed, 10), hours_after_start(default_feed, 11)
    quarter = hours_after_start(default_feed, 10.25)
    assert quarter.spot["BTC"] == pytest.approx(h10.spot["BTC"] + 0.25 * (h11.spot["BTC"] - h10.spot["BTC"]))
    gas_10, gas_11 = h10.gas_price_gwei, h11.gas_price_gwei
    assert quarter.gas_price_gwei == pytest.approx(gas_10 + 0.25 * (gas_11 - gas_10))


def test_funding_rate_is_the_rate_settling_at_the_next_settlement_strictly_after_ts(default_feed: SampleFeed) -> None:
    settlement = START + timedelta(days=20, hours=8)
    previous = settlement - timedelta(hours=8)
    due = default_feed.snapshot(previous).funding_rate  # quoted from the previous settlement on
    for ts in (previous + timedelta(hours=3), settlement - timedelta(microseconds=1)):
        assert default_feed.snapshot(ts).funding_rate == due
    following = default_feed.snapshot(settlement).funding_rate  # at the instant: the next period's
    assert following == default_feed.snapshot(settlement + timedelta(hours=8) - timedelta(microseconds=1)).funding_rate
    assert following != due


# --- calibration over the full year --------------------------------------------------------------------


def test_btc_and_eth_hourly_volatility_match_the_reference_band(hourly_year: list[MarketSnapshot]) -> None:
    btc, eth = log_returns(hourly_year, "BTC"), log_returns(hourly_year, "ETH")
    assert 0.0035 <= statistics.pstdev(btc) <= 0.0065  # reference 0.0047 .. 0.0053
    assert 0.0050 <= statistics.pstdev(eth) <= 0.0095  # reference 0.0073 .. 0.0079
    assert 0.6 <= statistics.correlation(btc, eth) <= 0.9  # reference 0.79


def test_returns_have_fat_tails_and_volatility_clustering(hourly_year: list[MarketSnapshot]) -> None:
    returns = log_returns(hourly_year, "BTC")
    mean = statistics.fmean(returns)
    variance = statistics.fmean([(r - mean) ** 2 for r in returns])
    kurtosis = statistics.fmean([(r - mean) ** 4 for r in returns]) / variance**2
    assert kurtosis > 5  # reference 12.9; a Gaussian gives 3
    magnitudes = [abs(r) for r in returns]
    assert statistics.correlation(magnitudes[:-1], magnitudes[1:]) > 0.05  # reference 0.27


def test_annualised_funding_is_near_the_reference_means(settlements: list[MarketSnapshot]) -> None:
    def annualised(venue: str, asset: str) -> float:
        return statistics.fmean(s.funding_rate[venue][asset] for s in settlements) * 3 * 365

    for asset in ("BTC", "ETH"):
        assert 0.05 <= annualised("binance", asset) <= 0.14  # reference 9.1% / 9.7%
        assert 0.05 <= annualised("bybit", asset) <= 0.14  # reference 9.3% / 9.6%
        assert 0.01 <= annualised("okx", asset) <= 0.06  # reference ~3%


def test_funding_has_negative_spells_and_bull_spells(settlements: list[MarketSnapshot]) -> None:
    rates = [s.funding_rate["binance"]["BTC"] for s in settlements]
    negative_share = sum(r < 0 for r in rates) / len(rates)
    assert 0.03 <= negative_share <= 0.25  # reference 10%
    assert longest_negative_run(rates) >= 3  # at least a day of paying funding
    assert max(rates) >= 0.0003  # bull spells: reference 95th percentile 0.00026


def test_perp_marks_trade_near_spot_with_a_basis_that_follows_funding(hourly_year: list[MarketSnapshot]) -> None:
    basis = [s.perp_mark["binance"]["BTC"] / s.spot["BTC"] - 1 for s in hourly_year]
    funding = [s.funding_rate["binance"]["BTC"] for s in hourly_year]
    assert max(abs(b) for b in basis) < 0.005
    assert abs(statistics.fmean(basis)) < 0.0005  # reference mean -0.02%
    assert statistics.correlation(basis, funding) > 0.3  # reference 0.76


def test_aave_rates_are_calibrated_and_borrow_exceeds_supply(hourly_year: list[MarketSnapshot]) -> None:
    daily = hourly_year[::24]

    def mean_apr(table: str, asset: str) -> float:
        return statistics.fmean(getattr(s, table)[asset] for s in daily)

    assert 0.03 <= mean_apr("lending_apr", "USDT") <= 0.08  # reference 5.4%
    assert 0.01 <= mean_apr("lending_apr", "WETH") <= 0.03  # reference 1.9%
    assert mean_apr("lending_apr", "weETH") < 0.003  # reference 0.07%
    assert mean_apr("lending_apr", "wstETH") < 0.003  # reference 0.06%
    for s in daily:
        for asset in LENDING_ASSETS:
            assert 0 < s.lending_apr[asset] < s.borrow_apr[asset]


def test_lending_and_borrow_indices_never_decrease_and_accrue_their_aprs(hourly_year: list[MarketSnapshot]) -> None:
    for asset in LENDING_ASSETS:
        for table in ("lending_index", "borrow_index"):
            index = [getattr(s, table)[asset] for s in hourly_year]
            assert all(b >= a for a, b in zip(index, index[1:])), (table, asset)
    daily = hourly_year[::24]
    mean_supply = statistics.fmean(s.lending_apr["USDT"] for s in daily)
    growth = math.log(hourly_year[-1].lending_index["USDT"] / hourly_year[0].lending_index["USDT"])
    assert growth == pytest.approx(mean_supply, rel=0.05)


def test_lst_rates_drift_up_at_a_staking_yield(hourly_year: list[MarketSnapshot]) -> None:
    for lst in LST_ASSETS:
        rates = [s.lst_rate[lst] for s in hourly_year]
        assert all(b >= a for a, b in zip(rates, rates[1:]))
        assert 0.02 <= math.log(rates[-1] / rates[0]) <= 0.04  # reference 2.7% / 2.95% a year


def test_gas_is_log_normal_around_the_reference_median(hourly_year: list[MarketSnapshot]) -> None:
    gas = sorted(s.gas_price_gwei for s in hourly_year)
    assert gas[0] > 0
    assert 2 <= gas[len(gas) // 2] <= 12  # reference median 5.3 gwei
    assert gas[int(0.95 * len(gas))] > 3 * gas[len(gas) // 2]  # a long right tail (reference p95 44)


# --- scenarios ----------------------------------------------------------------------------------------


def test_unknown_scenario_raises_feed_error_naming_it_and_the_known_ones() -> None:
    with pytest.raises(FeedError) as excinfo:
        SampleFeed(scenario="meltdown")
    message = str(excinfo.value)
    assert "'meltdown'" in message and "crash" in message and "squeeze" in message


def test_scenarios_are_listed_with_one_line_descriptions() -> None:
    assert set(SCENARIOS) == {"crash", "squeeze"}
    assert all(text and "\n" not in text for text in SCENARIOS.values())


def test_crash_drops_btc_25_and_eth_30_percent_between_hour_1_and_hour_4() -> None:
    feed = SampleFeed(scenario="crash")
    onset, bottom = hours_after_start(feed, 1), hours_after_start(feed, 4)
    assert bottom.spot["BTC"] / onset.spot["BTC"] == pytest.approx(0.75)
    assert bottom.spot["ETH"] / onset.spot["ETH"] == pytest.approx(0.70)
    recovered = hours_after_start(feed, 24)
    assert recovered.spot["BTC"] / onset.spot["BTC"] == pytest.approx(0.85)
    assert recovered.spot["ETH"] / onset.spot["ETH"] == pytest.approx(0.82)


def test_crash_changes_only_its_script_the_rest_is_the_same_seeded_market() -> None:
    crash, normal = SampleFeed(scenario="crash", days=5), SampleFeed(days=5)
    for minutes in (0, 30, 60):
        ts = START + timedelta(minutes=minutes)
        assert crash.snapshot(ts).spot == normal.snapshot(ts).spot
    later_crash, later_normal = hours_after_start(crash, 72), hours_after_start(normal, 72)
    assert later_crash.lst_rate == later_normal.lst_rate
    assert later_crash.lending_index == later_normal.lending_index
    assert later_crash.funding_rate == later_normal.funding_rate


def test_crash_perp_premium_costs_a_long_spot_short_perp_2_to_3_percent_at_the_bottom() -> None:
    feed = SampleFeed(scenario="crash")
    onset, bottom = hours_after_start(feed, 1), hours_after_start(feed, 4)
    for venue in PERP_VENUES:
        for asset in ("BTC", "ETH"):
            premium = bottom.perp_mark[venue][asset] / bottom.spot[asset] - 1
            assert 0.025 <= premium <= 0.035
            # One unit long spot, one unit short perp, opened at the onset.
            spot_pnl = bottom.spot[asset] - onset.spot[asset]
            perp_pnl = onset.perp_mark[venue][asset] - bottom.perp_mark[venue][asset]
            pnl = spot_pnl + perp_pnl
            assert -0.03 <= pnl / onset.spot[asset] <= -0.02
    later = hours_after_start(feed, 12)
    assert abs(later.perp_mark["binance"]["BTC"] / later.spot["BTC"] - 1) < 0.005


def test_crash_funding_turns_negative_for_the_three_settlements_after_onset() -> None:
    feed = SampleFeed(scenario="crash")
    # Quoted during the period before each settlement (what will settle at +8 h, +16 h, +24 h).
    expected = {8: -0.00075, 16: -0.0010, 24: -0.0005}
    for settlement_hour, rate in expected.items():
        snapshot = hours_after_start(feed, settlement_hour - 0.5)
        assert {snapshot.funding_rate[v][a] for v in PERP_VENUES for a in ("BTC", "ETH")} == {rate}
    assert hours_after_start(feed, 1).funding_rate["okx"]["ETH"] == -0.00075  # from the onset on
    assert hours_after_start(feed, 31).funding_rate["binance"]["BTC"] > -0.0005


def test_squeeze_lifts_prices_35_percent_over_six_hours_with_strongly_positive_funding() -> None:
    feed = SampleFeed(scenario="squeeze")
    onset, top = hours_after_start(feed, 1), hours_after_start(feed, 7)
    for asset in ("BTC", "ETH"):
        assert top.spot[asset] / onset.spot[asset] == pytest.approx(1.35)
        assert top.perp_mark["binance"][asset] / onset.perp_mark["binance"][asset] > 1.35  # marks lead
        assert hours_after_start(feed, 24).spot[asset] / onset.spot[asset] == pytest.approx(1.25)
    for settlement_hour in (8, 16, 24):
        rates = hours_after_start(feed, settlement_hour - 0.5).funding_rate
        assert min(rates[v][a] for v in PERP_VENUES for a in ("BTC", "ETH")) >= 0.001


# --- speed ------------------------------------------------------------------------------------------------


def test_building_a_year_takes_under_100_ms() -> None:
    best = math.inf
    for _ in range(3):
        began = time.perf_counter()
        SampleFeed()
        best = min(best, time.perf_counter() - began)
    assert best < 0.1  # measured ~35 ms


def test_snapshot_costs_well_under_a_millisecond(default_feed: SampleFeed) -> None:
    ts = START + timedelta(days=100, minutes=7)
    began = time.perf_counter()
    for _ in range(1000):
        default_feed.snapshot(ts)
    assert (time.perf_counter() - began) / 1000 < 0.0005  # measured ~10 us


# --- seasonal rewards ----------------------------------------------------------------------------------


def test_weekly_eigen_and_occasional_ethfi_drops_are_calibrated_on_the_reference_file(default_feed: SampleFeed) -> None:
    drops = default_feed.reward_drops
    eigen = [d for d in drops if d.token == "EIGEN"]
    ethfi = [d for d in drops if d.token == "ETHFI"]
    # Reference: weekly EIGEN of 0.166 .. 0.211 per eETH, paid on Saturdays at 00:00 UTC.
    assert len(eigen) == 52
    assert all((d.timestamp.weekday(), d.timestamp.hour) == (5, 0) for d in eigen)
    assert 0.17 < statistics.fmean(d.per_eeth for d in eigen) < 0.21
    assert all(0.13 < d.per_eeth < 0.25 for d in eigen)
    # ETHFI: small top-ups and a few seasonal airdrops of 2+ per eETH (reference: 2 .. 10.5).
    assert 1 <= sum(d.per_eeth >= 2 for d in ethfi) <= 5 and len(ethfi) < 20
    # In ETH, the reference file drops 2.8 % of the eETH held over 2024-06 .. 2025-06.
    eth_yield = sum(d.per_eeth * d.price_usd / default_feed.snapshot(d.timestamp).spot["ETH"] for d in drops)
    assert 0.015 < eth_yield < 0.035
    assert all(d.timestamp > default_feed.start and d.timestamp <= default_feed.end for d in drops)


def test_snapshots_carry_the_drops_paid_so_far_and_price_each_token_at_its_last_drop(default_feed: SampleFeed) -> None:
    first_eigen = next(d for d in default_feed.reward_drops if d.token == "EIGEN")
    before = default_feed.snapshot(first_eigen.timestamp - timedelta(seconds=1))
    at_drop = default_feed.snapshot(first_eigen.timestamp)
    assert before.rewards_paid == () and "EIGEN" not in before.spot
    assert at_drop.rewards_paid == (first_eigen,) and at_drop.spot["EIGEN"] == first_eigen.price_usd
    year = default_feed.snapshot(default_feed.end)
    assert year.rewards_paid == default_feed.reward_drops
    last_ethfi = [d for d in default_feed.reward_drops if d.token == "ETHFI"][-1]
    assert year.spot["ETHFI"] == last_ethfi.price_usd
    assert default_feed.rewards_between(START, START + timedelta(days=14)) == [
        d for d in default_feed.reward_drops if d.timestamp <= START + timedelta(days=14)]


def test_reward_drops_are_seeded_and_a_scenario_changes_only_their_prices() -> None:
    amounts = [(d.timestamp, d.token, d.per_eeth) for d in SampleFeed(days=60).reward_drops]
    assert amounts == [(d.timestamp, d.token, d.per_eeth) for d in SampleFeed(days=60).reward_drops]
    assert amounts != [(d.timestamp, d.token, d.per_eeth) for d in SampleFeed(seed=8, days=60).reward_drops]
    crash = SampleFeed(days=60, scenario="crash").reward_drops
    assert [(d.timestamp, d.token, d.per_eeth) for d in crash] == amounts
    # Token prices move with ETH, which the crash leaves 18 % lower at +24 h.
    assert crash[0].price_usd < SampleFeed(days=60).reward_drops[0].price_usd
