"""Bad input is one line with its error code, exit 2, nothing written and no traceback: non-UTF-8 files,
out-of-range epochs in replay data, a broken BASIS_NETWORKS_FILE, a malformed API URL in env, and
secrets in URLs kept out of everything stored or printed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from basis_live.config import redact_secrets
from basis_live.errors import EXIT_USAGE, ConfigError, RequestValidationError
from basis_live.feeds.base import FeedError
from basis_live.feeds.replay import ReplayFeed
from basis_live.modes.signals import load_signals
from basis_live.networks import load_networks, network_for
from basis_live.venues.cex_clients import api_url_override
from conftest import Cli
from test_replay_feed import APY_ONLY_ENTRY, BASE_MANIFEST, FUNDING_ENTRY, REWARDS_CSV, REWARDS_ENTRY, write_dataset

PRIVATE_KEY = "0x" + "1" * 64


def assert_one_line(result, code: str, *fragments: str, db: Path | None = None, exit_status: int = 2) -> str:  # type: ignore[no-untyped-def]
    assert result.returncode == exit_status, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # no traceback, no warning
    assert lines[0].startswith(f"error {code}: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    if db is not None and db.exists():
        assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    return lines[0]


# --- 1. non-UTF-8 files --------------------------------------------------------------------------------


def test_non_utf8_replay_manifest_is_one_line_naming_the_file_not_a_traceback(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "BAD.yaml"
    bad.write_bytes(b"series:\n  # caf\xff\n")
    result = cli.run("backtest", "pure_lending", "--capital", "1000", "--data", str(bad))
    assert_one_line(result, "LT-003", f"manifest {bad}: not UTF-8 text (byte 0xff at line 2)", db=cli.db)


def test_non_utf8_replay_csv_is_one_line_naming_the_file_and_line(cli: Cli, tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path)
    eth = tmp_path / "data" / "eth.csv"
    eth.write_bytes(eth.read_bytes().replace(b"1704096000,20", b"1704096000,2\xff"))
    with pytest.raises(FeedError, match=r"series spot.ETH: .*eth.csv is not UTF-8 text \(byte 0xff at line 3\)"):
        ReplayFeed.from_path(manifest)
    result = cli.run("backtest", "pure_lending", "--capital", "1000", "--data", str(manifest))
    assert_one_line(result, "LT-003", f"{eth} is not UTF-8 text", db=cli.db)


def test_a_utf8_byte_order_mark_in_a_replay_csv_is_still_accepted(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path)
    eth = tmp_path / "data" / "eth.csv"
    eth.write_bytes(b"\xef\xbb\xbf" + eth.read_bytes())
    assert ReplayFeed.from_path(manifest).series("spot.ETH").values == [10, 20, 40]


def test_non_utf8_signals_file_is_one_line_naming_the_file(cli: Cli, tmp_path: Path) -> None:
    signals = tmp_path / "signals.csv"
    signals.write_bytes(b"timestamp,signal,confidence\n2024-01-01T00:00:00Z,long,0.9\n# caf\xff\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xff at line 3\)"):
        load_signals(str(signals))
    result = cli.run("backtest", "ml_usdt_directional", "--capital", "1000", "--set", f"ml.signal_source={signals}")
    assert_one_line(result, "LT-002", f"signals file {signals}: not UTF-8 text", db=cli.db)


def test_a_signals_url_with_a_token_is_not_echoed_in_its_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_signals("http://127.0.0.1:9/signals?access_token=Zq8Wx2Lp5Nv7Rt1Ys4Km")  # nothing listens on 9
    assert "Zq8Wx2Lp5Nv7Rt1Ys4Km" not in caught.value.message
    assert "access_token=***" in caught.value.message


# --- 2. out-of-range epochs in replay data ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("-1e15", "is outside the supported range 2000-01-01 .. 2100-01-01 UTC"),
        ("1e20", "is outside the supported range 2000-01-01 .. 2100-01-01 UTC"),
        ("4102444800.5", "is outside the supported range 2000-01-01 .. 2100-01-01 UTC"),  # just past 2100
        ("0", "is outside the supported range 2000-01-01 .. 2100-01-01 UTC"),  # 1970: epoch_ms read as s?
        ("nan", "is not a finite time"),
        ("inf", "is not a finite time"),
    ],
)
def test_out_of_range_or_nan_epochs_are_refused_at_load_naming_file_row_and_value(
        tmp_path: Path, value: str, problem: str) -> None:
    manifest = write_dataset(tmp_path)
    eth = tmp_path / "data" / "eth.csv"
    eth.write_text(eth.read_text().replace("1704096000,20", f"{value},20"))
    with pytest.raises(FeedError) as caught:
        ReplayFeed.from_path(manifest)
    assert caught.value.args[0] == f"series spot.ETH: ts {value!r} (epoch_s) at {eth}:3 {problem}"


def test_out_of_range_iso_times_are_refused_too(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path)
    btc = tmp_path / "data" / "btc.csv"
    btc.write_text(btc.read_text().replace("2024-01-01T04:00:00Z", "1999-12-31T23:00:00Z"))
    with pytest.raises(FeedError, match=r"timestamp '1999-12-31T23:00:00Z' \(iso\) at .*btc.csv:5 is outside"):
        ReplayFeed.from_path(manifest)


def test_out_of_range_reward_drop_times_are_refused_at_load(tmp_path: Path) -> None:
    manifest = BASE_MANIFEST + FUNDING_ENTRY + REWARDS_ENTRY + APY_ONLY_ENTRY % "convert"
    far = REWARDS_CSV.replace("2024-01-01T04:00:00Z", "2999-01-01T00:00:00Z")
    assert far != REWARDS_CSV
    with pytest.raises(FeedError, match=r"seasonal_rewards \(.*rewards.csv\): payout '2999-01-01T00:00:00Z' at "
                                        r"line \d+ is outside the supported range"):
        ReplayFeed.from_path(write_dataset(tmp_path, manifest, rewards_csv=far))


def test_an_epoch_past_2100_is_one_line_at_load_not_an_overflow_mid_backtest(cli: Cli, tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path)
    eth = tmp_path / "data" / "eth.csv"
    eth.write_text(eth.read_text().replace("1704096000,20", "1e20,20"))
    result = cli.run("backtest", "pure_lending", "--capital", "1000", "--data", str(manifest))
    assert_one_line(result, "LT-003", f"ts '1e20' (epoch_s) at {eth}:3 is outside the supported range", db=cli.db)


# --- 3. BASIS_NETWORKS_FILE --------------------------------------------------------------------------------


def _networks_env(path: Path) -> dict[str, str]:
    return {"BASIS_NETWORKS_FILE": str(path)}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        ("DIR", "is a directory"),
        (b"networks:\n  x:\n    chain_id: 1 # caf\xff\n", "not UTF-8 text (byte 0xff at line 3)"),
        (b"networks: [\n", "invalid YAML at line 2"),
        (b"- a\n- b\n", "expected a mapping with 'environments' and 'networks', got list"),
        (b"networks:\n  sepolia:\n    chain_id: abc\n", "networks.sepolia.chain_id: Input should be a valid integer"),
        (b"networks:\n  sepolia:\n    chain_id: 11155111\n    tokens: {USDT: 12}\n", "networks.sepolia.tokens.USDT"),
        (b"environments:\n  dev: nowhere\n", "environments.dev: 'nowhere' is not a defined network"),
    ],
)
def test_a_bad_networks_file_is_a_config_error_exit_2_naming_the_variable(
        tmp_path: Path, content: bytes | str | None, problem: str) -> None:
    path = tmp_path / "networks.yaml"
    if content == "DIR":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as caught:
        load_networks(_networks_env(path))
    assert caught.value.exit_code == EXIT_USAGE
    assert caught.value.message.startswith(f"BASIS_NETWORKS_FILE={path}: ")
    assert problem in caught.value.message
    with pytest.raises(ConfigError):
        network_for("dev", _networks_env(path))


def test_a_valid_networks_file_still_replaces_shipped_networks_by_name(tmp_path: Path) -> None:
    path = tmp_path / "networks.yaml"
    path.write_text("environments:\n  dev: mytest\nnetworks:\n  mytest:\n    chain_id: 31337\n")
    name, network = network_for("dev", _networks_env(path))
    assert (name, network.chain_id) == ("mytest", 31337)
    assert network_for("prod", _networks_env(path))[0] == "mainnet"


def _chain_env(networks: Path) -> dict[str, str]:
    return {"BASIS_NETWORKS_FILE": str(networks), "BASIS_DEV__CHAIN__PRIVATE_KEY": PRIVATE_KEY,
            "BASIS_DEV__CHAIN__RPC_URL": "http://127.0.0.1:9/v2/Zq8Wx2Lp5Nv7Rt1Ys4Km"}


def test_a_non_utf8_networks_file_at_start_is_one_line_not_a_traceback(cli: Cli, tmp_path: Path) -> None:
    networks = tmp_path / "networks.yaml"
    networks.write_bytes(b"networks:\n  x:\n    chain_id: 1 # caf\xff\n")
    result = cli.run("start", "pure_lending", "--capital", "1000", "--env", "dev", env=_chain_env(networks))
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"BASIS_NETWORKS_FILE={networks}: not UTF-8 text" in lines[0], result.stderr
    assert "Zq8Wx2Lp5Nv7Rt1Ys4Km" not in result.stdout + result.stderr


def test_a_bad_networks_file_at_start_is_lt_002_exit_2(cli: Cli, tmp_path: Path) -> None:
    networks = tmp_path / "missing.yaml"
    result = cli.run("start", "pure_lending", "--capital", "1000", "--env", "dev", env=_chain_env(networks))
    assert_one_line(result, "LT-002", f"BASIS_NETWORKS_FILE={networks}: no such file", db=cli.db)


# --- 4. a malformed API URL in env --------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://[x", "https://user:Zq8Wx2Lp5Nv7Rt1Ys4Km@host:99999/", "ftp://host/",
                                 "https://:443/", "not a url"])
def test_a_malformed_api_url_variable_is_lt_001_naming_the_variable_not_its_value(url: str) -> None:
    env = {"BASIS_DEV__CEX__OKX_API_URL": url}
    for venue in ("binance", "okx"):  # every venue's check refuses it: nothing is half-built
        with pytest.raises(RequestValidationError) as caught:
            api_url_override("dev", venue, None, env)
        assert caught.value.exit_code == EXIT_USAGE
        assert caught.value.message.startswith("BASIS_DEV__CEX__OKX_API_URL is not a valid http(s) URL")
        assert url not in caught.value.message and "Zq8W" not in caught.value.message


def test_a_malformed_configured_api_url_is_lt_002_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^venues.okx.api_url is not a valid http\(s\) URL"):
        api_url_override("dev", "okx", "http://[x", {})


def test_well_formed_api_urls_pass_through() -> None:
    env = {"BASIS_DEV__CEX__OKX_API_URL": "http://127.0.0.1:8443", "BASIS_DEV__CEX__BYBIT_API_URL": ""}
    assert api_url_override("dev", "okx", None, env) == "http://127.0.0.1:8443"
    assert api_url_override("dev", "bybit", None, env) is None
    assert api_url_override("dev", "okx", "https://u:p@[::1]:9/x", env) == "https://u:p@[::1]:9/x"


def test_a_malformed_api_url_in_env_at_start_is_one_line_exit_2(cli: Cli) -> None:
    env = {f"BASIS_DEV__CEX__{v}_{k}": "x" for v in ("BINANCE", "BYBIT", "OKX")
           for k in ("API_KEY", "SECRET", "PASSPHRASE")}
    env["BASIS_DEV__CEX__OKX_API_URL"] = "http://user:Zq8Wx2Lp5Nv7Rt1Ys4Km@[x"
    result = cli.run("start", "btc_basis", "--capital", "1000", "--env", "dev", env=env)
    assert_one_line(result, "LT-001", "BASIS_DEV__CEX__OKX_API_URL is not a valid http(s) URL", db=cli.db)
    assert "Zq8Wx2Lp5Nv7Rt1Ys4Km" not in result.stdout + result.stderr
    result = cli.run("validate", "btc_basis", "--env", "dev", env=env)
    assert_one_line(result, "LT-001", "BASIS_DEV__CEX__OKX_API_URL")


# --- 5. secrets in URLs ---------------------------------------------------------------------------------------

RPC_URLS = {
    # provider shape: (url, the secret part)
    "alchemy": ("https://eth-mainnet.g.alchemy.com/v2/Xy7Kq2Lm9Np4Rs8Tv1Wz3Bc6Df0Gh5Jk", "Xy7Kq2Lm9Np4Rs8Tv1Wz3Bc6Df0Gh5Jk"),
    "infura": ("https://mainnet.infura.io/v3/9aa3d95b3bc440fa88ea12eaa4456161", "9aa3d95b3bc440fa88ea12eaa4456161"),
    "infura_ws": ("wss://sepolia.infura.io/ws/v3/9aa3d95b3bc440fa88ea12eaa4456161", "9aa3d95b3bc440fa88ea12eaa4456161"),
    "quicknode": ("https://little-cool-pond.ethereum-sepolia.quiknode.pro/4f7e3b2a9c1d8e6f5a4b3c2d1e0f9a8b7c6d5e4f/",
                  "4f7e3b2a9c1d8e6f5a4b3c2d1e0f9a8b7c6d5e4f"),
    "ankr": ("https://rpc.ankr.com/eth/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
    "chainstack": ("https://nd-123-456-789.p2pify.com/0a1b2c3d4e5f60718293a4b5c6d7e8f9", "0a1b2c3d4e5f60718293a4b5c6d7e8f9"),
    "blast": ("https://eth-mainnet.blastapi.io/8f14e45f-ceea-467f-a0e1-3c2b1a0f9e8d", "8f14e45f-ceea-467f-a0e1-3c2b1a0f9e8d"),
    "query_token": ("https://rpc.example.net/eth?access_token=Tk-0123abcd", "Tk-0123abcd"),
    "binance_signature": ("https://testnet.binancefuture.com/fapi/v1/order?symbol=BTCUSDT&timestamp=1704067200000"
                          "&signature=3f9a2c1d0e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f",
                          "3f9a2c1d0e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f"),
    "oauth_fragment": ("https://app.example/cb#access_token=ya29.a0AfH6SM&state=1", "ya29.a0AfH6SM"),
}


def test_redaction_removes_query_tokens_and_credentials_the_audit_found() -> None:
    url = "https://user:PW@proxy.invalid/SECRETPATH?access_token=TOK&key=K"
    assert redact_secrets(url) == "https://***@proxy.invalid/SECRETPATH?access_token=***&key=***"
    for name in ("token", "apikey", "api_key", "secret", "signature", "password", "auth", "X-Amz-Signature"):
        assert redact_secrets(f"https://h.example/p?{name}=S3cr3t&limit=5") == f"https://h.example/p?{name}=***&limit=5"


@pytest.mark.parametrize("provider", sorted(RPC_URLS))
def test_redaction_removes_the_key_of_every_rpc_provider_url_shape(provider: str) -> None:
    url, secret = RPC_URLS[provider]
    # As stored in a request / config (a value, nested), and inside an error message.
    data = {"feed": {"endpoint": url}, "notes": [f"ConnectError: cannot reach {url} (timed out)."]}
    redacted = redact_secrets(data)
    assert secret not in str(redacted)
    assert "***" in redacted["feed"]["endpoint"]
    host = url.split("://", 1)[1].split("/", 1)[0]
    assert host in redacted["feed"]["endpoint"]  # the host stays: the operator can tell which node it was


def test_redaction_keeps_ordinary_values_and_ordinary_urls() -> None:
    ordinary = {
        "wallet": "0x7f39C581F595B53c5cb19bD0b3f8dA6c935E2Ca0",  # not a URL: left as it is
        "note": "run 3f9a2c1d0e8b7a6f5e4d3c2b1a0f9e8d on binance_BTCUSDT_1h_2024-01-01",
        "data": "examples/reference-data.yaml",
        "api": "https://api.bybit.com/v5/market/tickers?category=linear&symbol=BTCUSDT",
        "file": "https://data.example/spot/binance_BTCUSDT_1h_2024-01-01_2025-09-27.csv",
        "local": "http://127.0.0.1:8545/", "v6": "http://[::1]:8545/",
        "speed": 3600, "flag": True,
    }
    assert redact_secrets(ordinary) == ordinary
    mixed = "wallet 0x7f39C581F595B53c5cb19bD0b3f8dA6c935E2Ca0 via https://mainnet.infura.io/v3/9aa3d95b3bc440fa88ea12eaa4456161"
    assert redact_secrets(mixed) == "wallet 0x7f39C581F595B53c5cb19bD0b3f8dA6c935E2Ca0 via https://mainnet.infura.io/v3/***"


def test_a_password_holding_an_at_sign_is_redacted_whole() -> None:
    assert redact_secrets("https://user:p@ss@proxy.example:8080/x") == "https://***@proxy.example:8080/x"


def test_a_non_utf8_strategy_file_is_one_line_lt_002_naming_it(cli: Cli, tmp_path: Path) -> None:
    directory = tmp_path / "mine"
    directory.mkdir()
    (directory / "latin.yaml").write_bytes(b"name: latin\nmode: pure_lending\ndescription: \"caf\xe9\"\n")
    result = cli.run("start", "latin", "--capital", "1000", "--strategies-dir", str(directory))
    assert_one_line(result, "LT-002", "latin.yaml: not UTF-8 text", db=cli.db)
