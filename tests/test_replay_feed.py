"""ReplayFeed: manifest parsing, interpolation, funding lookup, defaults, load errors, real data.

Most tests write a tiny data set to tmp_path so every expected value can be worked out by hand. The
last group loads examples/reference-data.yaml against the real ../shared/reference-data.
"""

from __future__ import annotations

import asyncio
import csv
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from basis_live.feeds.base import FeedError
from basis_live.feeds.factory import open_feed
from basis_live.feeds.replay import DEFAULT_BORROW_APR, DEFAULT_GAS_PRICE_GWEI, ReplayFeed, series_names
from basis_live.feeds.sample import SampleFeed

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DATA = Path(__file__).resolve().parents[2] / "shared" / "reference-data"
DAY0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def at(hours: float) -> datetime:
    return DAY0 + timedelta(hours=hours)


# BTC: ISO with Z and '#' comment lines, points at 0, 4, 8, 16 h.
BTC_CSV = """# Source: test fixture
# Records: 4
timestamp,open,close
2024-01-01T00:00:00Z,100,101
2024-01-01T04:00:00Z,120,119
2024-01-01T08:00:00Z,100,99
2024-01-01T16:00:00Z,140,141
"""
# ETH: unix epoch seconds, points at 0, 8, 16 h.
ETH_CSV = """ts,price
1704067200,10
1704096000,20
1704124800,40
"""
# AAVE USDT: daily, space-separated ISO with +00:00, APR in percent (scale 0.01).
USDT_CSV = """date,liquidityIndex,supply_pct
2024-01-01 00:00:00+00:00,1.00,5
2024-01-02 00:00:00+00:00,1.01,7
"""
# Funding: settlements at 00, 08, 16 UTC.
FUNDING_CSV = """funding_timestamp,funding_rate,symbol
2024-01-01T00:00:00Z,0.0001,BTCUSDT
2024-01-01T08:00:00Z,0.0002,BTCUSDT
2024-01-01T16:00:00Z,-0.0003,BTCUSDT
"""

BASE_MANIFEST = """root: data
series:
  spot.BTC: {file: btc.csv, time_column: timestamp, value_column: open}
  spot.ETH: {file: eth.csv, time_column: ts, value_column: price, time_format: epoch_s}
  lending_index.USDT: {file: usdt.csv, time_column: date, value_column: liquidityIndex}
  lending_apr.USDT: {file: usdt.csv, time_column: date, value_column: supply_pct, scale: 0.01}
"""
FUNDING_ENTRY = (
    "  funding.binance.BTC: {file: funding.csv, time_column: funding_timestamp, value_column: funding_rate}\n"
)


def write_dataset(folder: Path, manifest: str = BASE_MANIFEST + FUNDING_ENTRY, **files: str) -> Path:
    """Write the tiny data set (files overridable by name) and the manifest; return the manifest path."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    contents = {"btc.csv": BTC_CSV, "eth.csv": ETH_CSV, "usdt.csv": USDT_CSV, "funding.csv": FUNDING_CSV}
    contents.update({name.replace("_", "."): text for name, text in files.items()})
    for name, text in contents.items():
        (data / name).write_text(text)
    manifest_path = folder / "manifest.yaml"
    manifest_path.write_text(manifest)
    return manifest_path


@pytest.fixture()
def feed(tmp_path: Path) -> ReplayFeed:
    return ReplayFeed.from_path(write_dataset(tmp_path))


# --- range, identity, interpolation ------------------------------------------------------------------


def test_range_is_the_intersection_of_the_series_and_label_names_the_manifest(feed: ReplayFeed, tmp_path: Path) -> None:
    assert (feed.start, feed.end) == (at(0), at(16))  # usdt runs to day 2, the rest end at 16:00
    assert feed.label == f"REPLAY DATA ({tmp_path / 'manifest.yaml'}, 2024-01-01T00:00Z .. 2024-01-01T16:00Z)"
    assert feed.is_sample is False
    snapshot = feed.snapshot(at(1))
    assert (snapshot.source, snapshot.scenario) == ("replay", None)


def test_prices_interpolate_linearly_between_points_with_comments_and_epoch_times(feed: ReplayFeed) -> None:
    assert feed.snapshot(at(0)).spot["BTC"] == 100
    assert feed.snapshot(at(1)).spot["BTC"] == pytest.approx(105)  # 100 -> 120 over 4 h
    assert feed.snapshot(at(12)).spot["BTC"] == pytest.approx(120)  # 100 -> 140 over 8 h
    assert feed.snapshot(at(4)).spot["ETH"] == pytest.approx(15)  # epoch file: 10 -> 20 over 8 h
    assert feed.snapshot(at(16)).spot["ETH"] == 40


def test_daily_index_and_scaled_apr_interpolate_within_the_day(feed: ReplayFeed) -> None:
    noon = feed.snapshot(at(12))
    assert noon.lending_index["USDT"] == pytest.approx(1.005)
    assert noon.lending_apr["USDT"] == pytest.approx(0.06)  # 5% -> 7%, percent scaled by 0.01


def test_funding_is_the_rate_recorded_for_the_next_settlement_strictly_after_ts(feed: ReplayFeed) -> None:
    def rate(ts: datetime) -> float:
        return feed.snapshot(ts).funding_rate["binance"]["BTC"]

    assert rate(at(0)) == 0.0002  # at a settlement: the 00:00 rate is paid, 08:00's is next
    assert rate(at(8) - timedelta(seconds=1)) == 0.0002
    assert rate(at(8)) == -0.0003
    assert rate(at(10)) == -0.0003
    assert rate(at(16)) == -0.0003  # the file's last settlement: its successor is not recorded


def test_snapshot_at_is_awaitable(feed: ReplayFeed) -> None:
    assert asyncio.run(feed.snapshot_at(at(3))) == feed.snapshot(at(3))


def test_ts_outside_the_range_raises_feed_error_with_the_range(feed: ReplayFeed) -> None:
    with pytest.raises(FeedError, match=r"outside the replay data range 2024-01-01T00:00Z \.\. 2024-01-01T16:00Z"):
        feed.snapshot(at(16) + timedelta(seconds=1))
    with pytest.raises(FeedError, match="outside"):
        feed.snapshot(at(-1))


def test_manifest_directory_is_accepted_in_place_of_the_file(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    assert ReplayFeed.from_path(tmp_path).snapshot(at(1)).spot["BTC"] == pytest.approx(105)


def test_naive_iso_timestamps_are_utc(tmp_path: Path) -> None:
    naive = BTC_CSV.replace("Z,", ",")
    feed = ReplayFeed.from_path(write_dataset(tmp_path, btc_csv=naive))
    assert feed.start == at(0)
    assert feed.snapshot(at(1)).spot["BTC"] == pytest.approx(105)


# --- defaults --------------------------------------------------------------------------------------------


def test_missing_optional_series_get_conservative_defaults(feed: ReplayFeed) -> None:
    snapshot = feed.snapshot(at(4))
    assert snapshot.perp_mark["okx"]["BTC"] == snapshot.spot["BTC"]  # no basis
    assert snapshot.funding_rate["okx"]["ETH"] == 0.0  # no funding income
    assert (snapshot.lending_index["WETH"], snapshot.lending_apr["WETH"]) == (1.0, 0.0)  # supply earns nothing
    assert snapshot.lst_rate == {"weETH": 1.0, "wstETH": 1.0}  # no staking yield
    assert snapshot.spot["weETH"] == snapshot.spot["ETH"]
    assert snapshot.gas_price_gwei == DEFAULT_GAS_PRICE_GWEI
    assert snapshot.borrow_apr["USDT"] == DEFAULT_BORROW_APR
    assert feed.snapshot(at(0)).borrow_index["USDT"] == 1.0
    assert snapshot.borrow_index["USDT"] > 1.0  # debt accrues at the default rate from the start


def test_on_gap_default_uses_spot_inside_a_perp_gap_and_does_not_narrow_the_range(tmp_path: Path) -> None:
    perp = "timestamp,open\n2024-01-01T02:00:00Z,200\n2024-01-01T03:00:00Z,210\n2024-01-02T12:00:00Z,300\n"
    manifest = BASE_MANIFEST + (
        "  perp_mark.okx.BTC: {file: perp.csv, time_column: timestamp, value_column: open, on_gap: default}\n"
    )
    feed = ReplayFeed.from_path(write_dataset(tmp_path, manifest, perp_csv=perp))
    assert (feed.start, feed.end) == (at(0), at(16))
    assert feed.snapshot(at(1)).perp_mark["okx"]["BTC"] == feed.snapshot(at(1)).spot["BTC"]  # before its data
    assert feed.snapshot(at(2.5)).perp_mark["okx"]["BTC"] == pytest.approx(205)
    assert feed.snapshot(at(10)).perp_mark["okx"]["BTC"] == feed.snapshot(at(10)).spot["BTC"]  # 33 h hole


def test_duplicate_timestamps_with_different_values_follow_the_duplicates_policy(tmp_path: Path) -> None:
    doubled = FUNDING_CSV + "2024-01-01T08:00:00Z,-0.0001,BTCUSDT\n"
    with pytest.raises(FeedError, match=r"funding\.binance\.BTC: 2 different values at 2024-01-01T08:00Z"):
        ReplayFeed.from_path(write_dataset(tmp_path, funding_csv=doubled))
    manifest = BASE_MANIFEST + FUNDING_ENTRY.replace("}", ", duplicates: min}")
    feed = ReplayFeed.from_path(write_dataset(tmp_path, manifest, funding_csv=doubled))
    assert feed.snapshot(at(7)).funding_rate["binance"]["BTC"] == -0.0001  # min(0.0002, -0.0001) settles at 08:00


def test_identical_duplicates_collapse_and_unsorted_rows_are_sorted(tmp_path: Path) -> None:
    lines = BTC_CSV.splitlines()
    shuffled = "\n".join(lines[:3] + [lines[5], lines[3], lines[4], lines[4], lines[6]]) + "\n"
    feed = ReplayFeed.from_path(write_dataset(tmp_path, btc_csv=shuffled))
    assert feed.series("spot.BTC").values == [100, 120, 100, 140]


# --- load errors name the series, the file and the range ---------------------------------------------


def test_missing_column_names_the_series_the_file_and_the_columns(tmp_path: Path) -> None:
    manifest = BASE_MANIFEST.replace("value_column: open", "value_column: last")
    with pytest.raises(FeedError) as excinfo:
        ReplayFeed.from_path(write_dataset(tmp_path, manifest))
    message = str(excinfo.value)
    assert "spot.BTC" in message and "'last'" in message and "btc.csv" in message and "open" in message


def test_missing_file_names_the_series_and_the_path(tmp_path: Path) -> None:
    manifest = BASE_MANIFEST.replace("file: eth.csv", "file: nowhere/eth.csv")
    with pytest.raises(FeedError, match=r"series spot\.ETH: file not found: .*nowhere/eth\.csv"):
        ReplayFeed.from_path(write_dataset(tmp_path, manifest))


def test_no_overlap_names_both_series_with_their_ranges(tmp_path: Path) -> None:
    late_usdt = USDT_CSV.replace("2024-01-01 ", "2024-03-01 ").replace("2024-01-02 ", "2024-03-02 ")
    with pytest.raises(FeedError) as excinfo:
        ReplayFeed.from_path(write_dataset(tmp_path, usdt_csv=late_usdt))
    message = str(excinfo.value)
    assert message.startswith("no common time range")
    assert "lending_index.USDT" in message and "2024-03-01T00:00Z .. 2024-03-02T00:00Z" in message
    assert "usdt.csv" in message
    assert "\n" not in message


def test_gap_longer_than_max_gap_hours_names_series_file_and_hole(tmp_path: Path) -> None:
    manifest = BASE_MANIFEST.replace("value_column: open}", "value_column: open, max_gap_hours: 6}")
    with pytest.raises(FeedError) as excinfo:
        ReplayFeed.from_path(write_dataset(tmp_path, manifest))
    message = str(excinfo.value)
    assert "spot.BTC" in message and "btc.csv" in message
    assert "8 h without data from 2024-01-01T08:00Z to 2024-01-01T16:00Z exceeds max_gap_hours 6" in message


def test_unparsable_value_names_the_series_and_the_line(tmp_path: Path) -> None:
    broken = ETH_CSV.replace("1704096000,20", "1704096000,n/a")
    with pytest.raises(FeedError, match=r"series spot\.ETH: unparsable price 'n/a' at .*eth\.csv:3"):
        ReplayFeed.from_path(write_dataset(tmp_path, eth_csv=broken))


def test_unparsable_timestamp_names_the_series_and_the_line(tmp_path: Path) -> None:
    broken = BTC_CSV.replace("2024-01-01T04:00:00Z", "yesterday")
    with pytest.raises(FeedError, match=r"series spot\.BTC: unparsable timestamp 'yesterday' \(iso\) at .*btc\.csv:5"):
        ReplayFeed.from_path(write_dataset(tmp_path, btc_csv=broken))


def test_missing_required_series_is_named(tmp_path: Path) -> None:
    manifest = "\n".join(line for line in BASE_MANIFEST.splitlines() if "spot.ETH" not in line) + "\n"
    with pytest.raises(FeedError, match=r"required series missing: spot\.ETH"):
        ReplayFeed.from_path(write_dataset(tmp_path, manifest))


def test_unknown_series_name_is_rejected_with_a_hint(tmp_path: Path) -> None:
    manifest = BASE_MANIFEST + "  spot.btc: {file: btc.csv, time_column: timestamp, value_column: open}\n"
    with pytest.raises(FeedError, match=r"unknown series 'spot\.btc' \(did you mean spot\.BTC\?\)"):
        ReplayFeed.from_path(write_dataset(tmp_path, manifest))


def test_index_without_its_apr_is_rejected(tmp_path: Path) -> None:
    manifest = BASE_MANIFEST + (
        "  borrow_index.USDT: {file: usdt.csv, time_column: date, value_column: liquidityIndex}\n"
    )
    with pytest.raises(FeedError, match=r"borrow_index\.USDT needs borrow_apr\.USDT"):
        ReplayFeed.from_path(write_dataset(tmp_path, manifest))


def test_on_gap_default_is_refused_for_indices_and_required_series(tmp_path: Path) -> None:
    manifest = BASE_MANIFEST.replace("value_column: liquidityIndex}", "value_column: liquidityIndex, on_gap: default}")
    with pytest.raises(FeedError, match=r"lending_index\.USDT: on_gap: default is only for"):
        ReplayFeed.from_path(write_dataset(tmp_path, manifest))


def test_funding_settlement_off_the_00_08_16_grid_is_rejected(tmp_path: Path) -> None:
    shifted = FUNDING_CSV.replace("T08:00:00Z", "T09:00:00Z")
    expected = r"funding\.binance\.BTC: settlement 2024-01-01T09:00Z .* not at 00:00, 08:00 or 16:00"
    with pytest.raises(FeedError, match=expected):
        ReplayFeed.from_path(write_dataset(tmp_path, funding_csv=shifted))


def test_missing_manifest_and_invalid_yaml_are_one_line_feed_errors(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match="replay manifest not found"):
        ReplayFeed.from_path(tmp_path / "absent.yaml")
    manifest = write_dataset(tmp_path, "series: [unclosed\n")
    with pytest.raises(FeedError, match=r"invalid YAML at line \d+") as excinfo:
        ReplayFeed.from_path(manifest)
    assert "\n" not in str(excinfo.value)


# --- factory --------------------------------------------------------------------------------------------


def test_open_feed_builds_sample_and_replay_feeds(tmp_path: Path) -> None:
    sample = open_feed("sample", scenario="crash", seed=3)
    assert isinstance(sample, SampleFeed) and (sample.seed, sample.scenario) == (3, "crash")
    replay = open_feed("replay", data=write_dataset(tmp_path))
    assert isinstance(replay, ReplayFeed)


@pytest.mark.parametrize(
    ("kind", "data", "scenario", "message"),
    [
        ("websocket", None, None, r"unknown feed kind 'websocket'; known kinds: sample, replay, live"),
        ("live", None, "crash", r"the live feed takes neither a data path nor a scenario"),
        ("replay", None, None, "needs a data path"),
        ("replay", Path("x.yaml"), "crash", "applies only to the sample feed"),
        ("sample", Path("x.yaml"), None, "only for the replay feed"),
        ("sample", None, "meltdown", "unknown sample scenario 'meltdown'"),
    ],
)
def test_open_feed_rejects_unknown_kinds_and_bad_combinations(kind: str, data: Path | None, scenario: str | None,
                                                              message: str) -> None:
    with pytest.raises(FeedError, match=message):
        open_feed(kind, data=data, scenario=scenario)


# --- the real reference data ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_feed() -> tuple[ReplayFeed, float]:
    if not REFERENCE_DATA.is_dir():
        pytest.skip(f"reference data not found at {REFERENCE_DATA} (CI clones it as shared/ beside the repo)")
    began = time.perf_counter()
    feed = ReplayFeed.from_path(REPO / "examples" / "reference-data.yaml")
    return feed, time.perf_counter() - began


def test_reference_manifest_loads_in_under_3_seconds_with_the_expected_range(
    reference_feed: tuple[ReplayFeed, float],
) -> None:
    feed, seconds = reference_feed
    assert seconds < 3.0  # measured ~0.6 s
    # weETH / wstETH oracles start 2024-05-12 01:00; the ETH funding files end 2025-09-25 16:00.
    assert feed.start == datetime(2024, 5, 12, 1, tzinfo=timezone.utc)
    assert feed.end == datetime(2025, 9, 25, 16, tzinfo=timezone.utc)
    assert set(series_names()) - set(feed.series_names) == {"perp_mark.okx.BTC"}  # no such file


def test_reference_funding_and_aave_means_match_the_published_facts(reference_feed: tuple[ReplayFeed, float]) -> None:
    feed, _ = reference_feed
    assert statistics.fmean(feed.series("funding.binance.BTC").values) * 1095 == pytest.approx(0.091, abs=0.004)
    assert statistics.fmean(feed.series("funding.binance.ETH").values) * 1095 == pytest.approx(0.097, abs=0.004)
    assert statistics.fmean(feed.series("lending_apr.USDT").values) == pytest.approx(0.054, abs=0.003)
    assert statistics.fmean(feed.series("lending_apr.WETH").values) == pytest.approx(0.019, abs=0.002)


def test_reference_lst_oracle_rates_rise_over_the_range(reference_feed: tuple[ReplayFeed, float]) -> None:
    feed, _ = reference_feed
    first, last = feed.snapshot(feed.start), feed.snapshot(feed.end)
    assert first.lst_rate["weETH"] == pytest.approx(1.0382, abs=0.0005)
    assert last.lst_rate["weETH"] == pytest.approx(1.0776, abs=0.0010)
    assert first.lst_rate["wstETH"] == pytest.approx(1.1663, abs=0.0005)
    assert last.lst_rate["wstETH"] == pytest.approx(1.2146, abs=0.0010)


def test_reference_2024_08_05_crash_and_okx_holes_replay_as_documented(
    reference_feed: tuple[ReplayFeed, float],
) -> None:
    feed, _ = reference_feed
    day = [feed.snapshot(datetime(2024, 8, 5, h, tzinfo=timezone.utc)) for h in range(24)]
    before = feed.snapshot(datetime(2024, 8, 2, tzinfo=timezone.utc))
    assert min(s.spot["ETH"] for s in day) < 0.75 * before.spot["ETH"]
    for s in day:
        assert abs(s.perp_mark["binance"]["BTC"] / s.spot["BTC"] - 1) < 0.005
        assert s.perp_mark["okx"]["BTC"] == s.spot["BTC"]  # no okx BTC perp file: spot
        assert s.funding_rate["okx"]["BTC"] == 0.0  # August 2024 is missing from the okx files
    in_september_hole = feed.snapshot(datetime(2024, 9, 15, tzinfo=timezone.utc))
    assert in_september_hole.perp_mark["okx"]["ETH"] == in_september_hole.spot["ETH"]
    covered = feed.snapshot(datetime(2024, 11, 15, 5, tzinfo=timezone.utc))
    assert covered.perp_mark["okx"]["ETH"] != covered.spot["ETH"]
    assert covered.funding_rate["okx"]["ETH"] != 0.0


# --- seasonal rewards ----------------------------------------------------------------------------------

# EIGEN and ETHFI drops (one row may drop both), one before the feed starts, and one APY-only row:
# 3.65 %/yr over 365 days is 0.0365 ETH per eETH, at ETH 20 (08:00) and EIGEN's last price 3.5.
REWARDS_CSV = """# Source: test fixture
payout,eigen_per_eeth,eigen_usd,ethfi_per_eeth,ethfi_usd,apy,days,quality
2023-12-31T00:00:00Z,0.1,3.0,,,,,exact
2024-01-01T04:00:00Z,0.2,3.5,,,,,exact
2024-01-01T06:00:00Z,,,2.0,2.8,,,estimated
2024-01-01T08:00:00Z,,,,,0.0365,365,
2024-01-01T12:00:00Z,0.25,4.0,0.5,3.0,,,exact
"""
REWARDS_ENTRY = """seasonal_rewards:
  file: rewards.csv
  time_column: payout
  tokens:
    EIGEN: {amount_column: eigen_per_eeth, price_column: eigen_usd}
    ETHFI: {amount_column: ethfi_per_eeth, price_column: ethfi_usd}
  origin_column: quality
"""
APY_ONLY_ENTRY = "  apy_only: {apy_column: apy, days_column: days, token: EIGEN, policy: %s}\n"


def rewards_feed(tmp_path: Path, policy: str = "convert", csv_text: str = REWARDS_CSV) -> ReplayFeed:
    manifest = BASE_MANIFEST + FUNDING_ENTRY + REWARDS_ENTRY + APY_ONLY_ENTRY % policy
    return ReplayFeed.from_path(write_dataset(tmp_path, manifest, rewards_csv=csv_text))


def test_seasonal_rewards_are_drops_per_eeth_and_price_each_token_at_its_last_drop(tmp_path: Path) -> None:
    feed = rewards_feed(tmp_path)
    drops = [(d.timestamp, d.token, d.per_eeth, d.price_usd, d.origin) for d in feed.reward_drops]
    assert drops == [
        (at(-24), "EIGEN", 0.1, 3.0, "exact"),
        (at(4), "EIGEN", 0.2, 3.5, "exact"),
        (at(6), "ETHFI", 2.0, 2.8, "estimated"),
        (at(8), "EIGEN", pytest.approx(0.0365 * 20 / 3.5), 3.5, "apy_converted"),
        (at(12), "EIGEN", 0.25, 4.0, "exact"),
        (at(12), "ETHFI", 0.5, 3.0, "exact"),
    ]
    first = feed.snapshot(at(0))
    assert first.rewards_paid == feed.reward_drops[:1]  # paid before the feed starts: history
    assert first.spot["EIGEN"] == 3.0 and "ETHFI" not in first.spot  # no ETHFI drop yet
    assert feed.snapshot(at(5)).spot["EIGEN"] == 3.5
    at_drop = feed.snapshot(at(6))  # a drop at the instant itself is paid
    assert at_drop.rewards_paid == feed.reward_drops[:3] and at_drop.spot["ETHFI"] == 2.8
    last = feed.snapshot(at(16))
    assert (last.spot["EIGEN"], last.spot["ETHFI"], len(last.rewards_paid)) == (4.0, 3.0, 6)
    assert feed.rewards_between(at(4), at(12)) == list(feed.reward_drops[2:])
    (note,) = feed.notes
    assert note.startswith("seasonal rewards: 1 row of rewards.csv carries only an APY approximation (apy, "
                           "2024-01-01 .. 2024-01-01): converted to EIGEN drops")


def test_apy_only_rows_can_be_skipped_and_the_feed_says_so(tmp_path: Path) -> None:
    feed = rewards_feed(tmp_path, policy="skip")
    assert [d.timestamp for d in feed.reward_drops] == [at(-24), at(4), at(6), at(12), at(12)]
    (note,) = feed.notes
    assert "1 row of rewards.csv carries only an APY approximation" in note
    assert note.endswith("skipped (apy_only.policy skip), no drops booked for them")


def test_seasonal_rewards_load_errors_name_the_file_and_the_line(tmp_path: Path) -> None:
    manifest = BASE_MANIFEST + FUNDING_ENTRY + REWARDS_ENTRY  # no apy_only for the APY-only row
    with pytest.raises(FeedError, match=r"rewards.csv\): line 6 has no reward amount .*describe APY-only rows"):
        ReplayFeed.from_path(write_dataset(tmp_path / "a", manifest, rewards_csv=REWARDS_CSV))
    no_price = REWARDS_CSV.replace("0.2,3.5,", "0.2,,")
    with pytest.raises(FeedError, match="EIGEN drop at line 4 has no eigen_usd"):
        rewards_feed(tmp_path / "b", csv_text=no_price)
    with pytest.raises(FeedError, match="apy_only.policy 'guess' is not one of convert, skip"):
        rewards_feed(tmp_path / "c", policy="guess")
    percent = REWARDS_CSV.replace("0.0365,365", "3.65,365")
    with pytest.raises(FeedError, match="must be a fraction a year"):
        rewards_feed(tmp_path / "d", csv_text=percent)
    typo = BASE_MANIFEST + REWARDS_ENTRY.replace("origin_column", "origin_col")
    with pytest.raises(FeedError, match=r"seasonal_rewards: unknown key\(s\) origin_col"):
        ReplayFeed.from_path(write_dataset(tmp_path / "e", typo, rewards_csv=REWARDS_CSV))


def test_reference_seasonal_rewards_book_every_row_and_convert_the_apy_rows_at_their_daily_yield(
    reference_feed: tuple[ReplayFeed, float],
) -> None:
    feed, _ = reference_feed
    drops = feed.reward_drops
    assert sum(d.token == "EIGEN" and d.origin == "exact" for d in drops) == 44  # weekly, 2024-10 .. 2025-08
    assert sum(d.token == "ETHFI" for d in drops) == 12  # 7 top-ups, 5 estimated seasonal airdrops
    converted = [d for d in drops if d.origin == "apy_converted"]
    # 58 DeFiLlama rows (2025-08-03 .. 09-29); the last 4 lie beyond the ETH price data.
    assert len(converted) == 54 and converted[0].timestamp == datetime(2025, 8, 3, tzinfo=timezone.utc)
    (note,) = feed.notes
    assert "58 rows" in note and "4 outside the ETH price data" in note
    # The file derives its own daily yield from the APY the same way: (1 + apy)^(1/365) - 1.
    path = REFERENCE_DATA / "protocol_data/staking/restaking_final/etherfi_seasonal_rewards_2024-01-01_2025-09-18.csv"
    with path.open(newline="") as handle:
        daily = {row["payout_date"]: float(row["daily_yield_pct"]) for row in csv.DictReader(handle)
                 if row["defillama_reward_apy"]}
    eth = feed.series("spot.ETH")
    for drop in converted:
        assert drop.price_usd == 3.5
        in_eth = drop.per_eeth * drop.price_usd / eth.value_at(drop.timestamp.timestamp())
        assert in_eth == pytest.approx(daily[drop.timestamp.date().isoformat()], rel=1e-9)
    year = feed.snapshot(datetime(2025, 6, 1, tzinfo=timezone.utc))
    assert (year.spot["EIGEN"], year.spot["ETHFI"]) == (3.5, 2.8)
