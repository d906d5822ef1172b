"""ConfigManager: lookup order, overrides, and the validation rules of a strategy."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from basis_live.config import (
    ConfigManager,
    build_run_config,
    environment_from_env,
    parse_capital,
    redact_secrets,
    shipped_strategies_dir,
)
from basis_live.errors import ConfigError, RequestValidationError
from basis_live.modes.catalog import MODES

ALL_MODES = sorted(MODES)


def test_every_mode_has_a_shipped_strategy_file_that_validates() -> None:
    manager = ConfigManager()
    names = sorted(f.name for f in manager.list_strategies())
    assert names == ALL_MODES
    for name in names:
        config = manager.load(name)
        assert config.mode == name
        assert config.monitoring_interval in (60.0, 300.0)
        assert config.heartbeat_timeout >= 300
        assert config.share_class in MODES[name].share_classes


def test_shipped_strategies_are_the_repository_files() -> None:
    repo_dir = Path(__file__).resolve().parents[1] / "strategies"
    assert {p.name for p in shipped_strategies_dir().glob("*.yaml")} == {p.name for p in repo_dir.glob("*.yaml")}


def test_leveraged_target_ltv_is_max_ltv_times_one_minus_spread_move() -> None:
    config = ConfigManager().load("eth_leveraged")
    assert config.leverage is not None
    assert config.leverage.target_ltv == pytest.approx(0.93 * (1 - 0.0225))


def test_user_directory_overrides_a_shipped_strategy(isolated_dirs: Path) -> None:
    user_dir = isolated_dirs / "config" / "basis-live" / "strategies"
    user_dir.mkdir(parents=True)
    text = (shipped_strategies_dir() / "pure_lending.yaml").read_text().replace("limit: 0.02", "limit: 0.03")
    (user_dir / "pure_lending.yaml").write_text(text)
    manager = ConfigManager()
    found = manager.find("pure_lending")
    assert found.origin == "user"
    assert manager.load("pure_lending").risk.max_drawdown.limit == 0.03
    listed = {f.name: f for f in manager.list_strategies()}
    assert listed["pure_lending"].shadows_shipped


def test_strategies_dir_is_searched_before_the_user_directory(tmp_path: Path) -> None:
    text = (shipped_strategies_dir() / "btc_basis.yaml").read_text()
    (tmp_path / "my_basis.yaml").write_text(text.replace("mode: btc_basis", "mode: btc_basis\nname: my_basis"))
    config = ConfigManager(strategies_dir=tmp_path).load("my_basis")
    assert config.name == "my_basis" and config.mode == "btc_basis"


def test_set_overrides_merge_dotted_keys_with_yaml_typed_values() -> None:
    config = ConfigManager().load(
        "btc_basis",
        overrides=["execution.perp_leverage=2", "execution.order_type=limit", "venues.okx.taker_fee=0.0009"],
        risk=["margin_ratio_threshold=0.25", "max_drawdown.policy=warn"],
    )
    assert config.execution.perp_leverage == 2.0
    assert config.execution.order_type == "limit"
    assert config.venues["okx"].taker_fee == 0.0009
    assert config.risk.margin_ratio_threshold.limit == 0.25
    assert config.risk.max_drawdown.policy == "warn"


@pytest.mark.parametrize(
    ("overrides", "risk", "message"),
    [
        (["execution.no_such=1"], [], "unknown key 'execution.no_such'"),
        (["no_such_section=1"], [], "unknown key 'no_such_section'"),
        (["hedge_allocation.okx=0.6"], [], "hedge_allocation must sum to 1"),
        (["venues.okx.enabled=false"], [], "venue okx is not enabled"),
        (["venues.kraken.enabled=true"], [], "venues.kraken"),
        (["execution.perp_leverage=0.5"], [], "perp_leverage"),
        (["position_deviation_threshold=0"], [], "position_deviation_threshold"),
        (["mode=pure_lending"], [], "cannot be overridden"),
        (["execution"], [], "must look like key=value"),
        ([], ["max_drawdown=0"], "between 0 and 1"),
        ([], ["health_factor_threshold=0.9"], "must be > 1"),
        ([], ["max_drawdown.policy=panic"], "policy"),
        ([], ["max_leverage=3"], "is not a risk limit"),
    ],
)
def test_invalid_overrides_are_refused_with_lt_002(overrides: list[str], risk: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        ConfigManager().load("btc_basis", overrides=overrides, risk=risk)
    assert raised.value.code == "LT-002"
    assert message in raised.value.message
    assert "\n" not in raised.value.message


def test_target_ltv_must_stay_below_the_liquidation_threshold() -> None:
    with pytest.raises(ConfigError, match="must not exceed the liquidation_threshold"):
        ConfigManager().load("eth_leveraged", overrides=["leverage.max_ltv=0.96"])
    with pytest.raises(ConfigError, match="target LTV"):
        ConfigManager().load("eth_leveraged", overrides=["leverage.max_ltv=0.95", "leverage.max_stake_spread_move=0"])


def test_share_class_must_be_allowed_for_the_mode() -> None:
    with pytest.raises(RequestValidationError, match="not allowed for pure_lending"):
        ConfigManager().load("pure_lending", share_class="BTC")
    assert ConfigManager().load("eth_staking_only", share_class="ETH").share_class == "ETH"


def test_unknown_and_malformed_strategy_files(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("mode: [unclosed\n")
    (tmp_path / "listy.yaml").write_text("- a\n- b\n")
    manager = ConfigManager(strategies_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown strategy 'nope'; known strategies: .*btc_basis"):
        manager.load("nope")
    with pytest.raises(ConfigError, match=r"broken.yaml: line 2 column 1 malformed YAML: expected"):
        manager.load("broken")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        manager.load("listy")
    with pytest.raises(ConfigError, match="not valid"):
        manager.load("../etc/passwd")


def test_capital_must_be_a_positive_finite_number() -> None:
    assert parse_capital("100000.5") == Decimal("100000.5")
    for bad in ("0", "-1", "nan", "inf", "abc", "1e13"):
        with pytest.raises(RequestValidationError):
            parse_capital(bad)


def test_environment_variables_choose_environment_and_execution_mode() -> None:
    assert environment_from_env({}) == ("dev", "paper")
    assert environment_from_env({"BASIS_ENVIRONMENT": "prod", "BASIS_EXECUTION_MODE": "backtest"}) == ("prod", "backtest")
    with pytest.raises(RequestValidationError, match="BASIS_ENVIRONMENT"):
        environment_from_env({"BASIS_ENVIRONMENT": "production"})
    with pytest.raises(RequestValidationError, match="BASIS_EXECUTION_MODE"):
        environment_from_env({"BASIS_EXECUTION_MODE": "yolo"})


def test_run_config_chooses_live_from_env_flag_or_variable_and_refuses_conflicts() -> None:
    strategy = ConfigManager().load("btc_basis")
    run = build_run_config(strategy, Decimal(1000), {"kind": "sample", "speed": 10}, env={})
    assert run.execution_mode == "paper" and run.feed.speed == 10
    assert build_run_config(strategy, Decimal(1000), {}, env={"BASIS_EXECUTION_MODE": "live"}, backtest=True).execution_mode == "backtest"
    by_variable = build_run_config(strategy, Decimal(1000), {"kind": "sample"},
                                   env={"BASIS_EXECUTION_MODE": "live", "BASIS_ENVIRONMENT": "staging"})
    assert (by_variable.execution_mode, by_variable.environment, by_variable.feed.kind) == ("live", "staging", "live")
    by_flag = build_run_config(strategy, Decimal(1000), {"kind": "sample"}, env={}, live_environment="prod")
    assert (by_flag.execution_mode, by_flag.environment) == ("live", "prod")
    with pytest.raises(RequestValidationError, match="BASIS_EXECUTION_MODE=paper says otherwise"):
        build_run_config(strategy, Decimal(1000), {}, env={"BASIS_EXECUTION_MODE": "paper"}, live_environment="dev")
    with pytest.raises(RequestValidationError, match="--env 'qa' is not one of"):
        build_run_config(strategy, Decimal(1000), {}, env={}, live_environment="qa")
    with pytest.raises(RequestValidationError, match="reads market data from its own venues"):
        build_run_config(strategy, Decimal(1000), {"kind": "replay", "data": "x"}, env={}, live_environment="dev")


def test_run_config_refuses_disabled_strategies_and_replay_without_data() -> None:
    strategy = ConfigManager().load("pure_lending")
    disabled = ConfigManager().load("pure_lending", overrides=["enabled=false"])
    with pytest.raises(ConfigError, match="disabled"):
        build_run_config(disabled, Decimal(1000), {}, env={})
    with pytest.raises(RequestValidationError, match="needs --data"):
        build_run_config(strategy, Decimal(1000), {"kind": "replay"}, env={})


def test_redaction_masks_secret_keys_and_url_credentials() -> None:
    data = {
        "api_key": "AKIA123", "nested": {"private_key": "0xdeadbeef", "passphrase": "hunter2", "speed": 3},
        "rpc_url": "https://eth-mainnet.g.alchemy.com/v2/abcdefghijklmnopqrstuvwxyz123456",
        "proxy": "https://user:pass@proxy.example:8080/path", "other": "https://api.binance.com/api?apikey=XYZ",
        "keys": [{"secret": "s"}],
    }
    redacted = str(redact_secrets(data))
    for secret in ("AKIA123", "0xdeadbeef", "hunter2", "abcdefghijklmnopqrstuvwxyz123456", "user:pass", "XYZ"):
        assert secret not in redacted
    assert redact_secrets(data)["nested"]["speed"] == 3
