"""ConfigManager and the pydantic models of a strategy and of a run.

A strategy is a YAML file named for it (``strategies/<name>.yaml``). Files are looked up, first hit
wins, in: the ``--strategies-dir`` directory, the user directory
(``$XDG_CONFIG_HOME/basis-live/strategies``, default ``~/.config/basis-live/strategies``), and the
strategies shipped inside the package. ``--set dotted.key=value`` and ``--risk name=value`` are
merged into the file's data before validation, so every override passes the same checks as the file.

Every model forbids unknown keys. One ``RunConfig`` is built per run and shared by every component.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from basis_live.errors import ConfigError, RequestValidationError
from basis_live.modes.catalog import MODES
from basis_live.textfiles import not_utf8, read_utf8

ShareClass = Literal["USDT", "ETH", "BTC"]
Policy = Literal["warn", "reduce", "emergency_stop"]
VenueName = Literal["binance", "bybit", "okx", "aave_v3", "lido", "etherfi", "wallet", "uniswap"]
PERP_VENUES = ("binance", "bybit", "okx")
Environment = Literal["dev", "staging", "prod"]
ExecutionMode = Literal["backtest", "paper", "live"]

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


class StrictModel(BaseModel):
    """Unknown keys are errors; values are validated on assignment too; NaN and infinity are never a
    valid number (a NaN limit would silently switch its check off)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class RiskLimit(StrictModel):
    """One risk limit. ``limit: null`` disables the check. ``policy`` is what the watchdog does on a
    breach: ``warn`` (record and report), ``reduce`` (state REDUCING: only exposure-reducing orders,
    the mode cuts the position), ``emergency_stop`` (state HALTED, open orders cancelled)."""

    limit: float | None = None
    policy: Policy = "warn"


class RiskLimits(StrictModel):
    """The five limits of the live-trading spec, with their defaults:

    - max_drawdown: 0.10, emergency_stop (fraction, peak-to-trough of equity)
    - max_position_size: off, reduce (share-class units per position)
    - max_daily_loss: off, emergency_stop (share-class units lost since 00:00 UTC)
    - health_factor_threshold: 1.2, reduce (AAVE health factor floor)
    - margin_ratio_threshold: 0.2, reduce (worst CEX margin ratio floor)
    """

    max_drawdown: RiskLimit = RiskLimit(limit=0.10, policy="emergency_stop")
    max_position_size: RiskLimit = RiskLimit(limit=None, policy="reduce")
    max_daily_loss: RiskLimit = RiskLimit(limit=None, policy="emergency_stop")
    health_factor_threshold: RiskLimit = RiskLimit(limit=1.2, policy="reduce")
    margin_ratio_threshold: RiskLimit = RiskLimit(limit=0.2, policy="reduce")

    @model_validator(mode="after")
    def _check_ranges(self) -> "RiskLimits":
        dd = self.max_drawdown.limit
        if dd is not None and not 0 < dd < 1:
            raise ValueError(f"risk.max_drawdown.limit must be a fraction between 0 and 1, got {dd}")
        for name in ("max_position_size", "max_daily_loss"):
            value = getattr(self, name).limit
            if value is not None and value <= 0:
                raise ValueError(f"risk.{name}.limit must be > 0, got {value}")
        hf = self.health_factor_threshold.limit
        if hf is not None and hf <= 1:
            raise ValueError(f"risk.health_factor_threshold.limit must be > 1 (1 is liquidation), got {hf}")
        mr = self.margin_ratio_threshold.limit
        if mr is not None and not 0 < mr < 1:
            raise ValueError(f"risk.margin_ratio_threshold.limit must be between 0 and 1, got {mr}")
        return self


class VenueConfig(StrictModel):
    """A venue the strategy uses. Fees are fractions of notional (0.001 = 10 bps); ``api_url``
    overrides the venue's base URL (live venues only)."""

    enabled: bool = True
    maker_fee: float = Field(0.0, ge=0, lt=0.01)
    taker_fee: float = Field(0.0, ge=0, lt=0.01)
    api_url: str | None = None


class LeverageConfig(StrictModel):
    """AAVE leverage: eMode ETH-correlated on Ethereum by default (0.93 / 0.95).
    Target LTV = max_ltv x (1 - max_stake_spread_move)."""

    emode: bool = True
    max_ltv: float = Field(0.93, gt=0, lt=1)
    liquidation_threshold: float = Field(0.95, gt=0, lt=1)
    max_stake_spread_move: float = Field(0.0225, ge=0, lt=1)

    @property
    def target_ltv(self) -> float:
        return self.max_ltv * (1 - self.max_stake_spread_move)

    @model_validator(mode="after")
    def _check_ltv(self) -> "LeverageConfig":
        if self.max_ltv > self.liquidation_threshold:
            raise ValueError(
                f"leverage.max_ltv {self.max_ltv} must not exceed the liquidation_threshold {self.liquidation_threshold}"
            )
        if self.target_ltv >= self.liquidation_threshold:
            raise ValueError(
                f"target LTV {self.target_ltv:.4f} must be below the liquidation threshold {self.liquidation_threshold}"
            )
        return self


class SlippageBucket(StrictModel):
    """Slippage applied to fills up to ``max_notional`` (share-class units), in basis points."""

    max_notional: float = Field(gt=0)
    bps: float = Field(ge=0, lt=1000)


class ExecutionConfig(StrictModel):
    """How orders are sent.

    - order_type: market (default) or limit; limit orders rest ``limit_offset_bps`` away from the
      mark on the passive side and are cancelled after ``order_timeout_seconds`` (simulated time).
    - perp_leverage: notional / margin for perp legs (3.0): spot gets equity x L/(L+1).
    - venue_timeout_seconds: wall-clock limit on one venue call (10); a timed-out submit is
      reconciled by client order id, never blindly resent.
    - account_refresh_seconds: live only: the risk watchdog re-reads venue accounts at most this
      often (5 s) and revalues the last read at every fresh price in between (positions are marked
      to the snapshot's mark prices); strategy ticks and trades always read fresh accounts.
    - funding_poll_seconds: live only: how often each exchange is asked for new funding payments
      and commissions (60 s; settlements come every 8 hours).
    - capital_tolerance: live only: how far (0.01 = 1%) the equity found on the venues at start may
      differ from ``--capital`` (the engine sizes from the accounts' equity, so the accounts must be
      dedicated to the run).
    - slippage: paper fill slippage by notional bucket (5/7/13 bps up to 10k/100k/1m).
    - gas_units: gas per on-chain operation (supply 250k, withdraw 200k, borrow 300k, repay 250k,
      stake 150k).
    """

    order_type: Literal["market", "limit"] = "market"
    limit_offset_bps: float = Field(0.0, ge=0, le=5000)
    order_timeout_seconds: float = Field(300.0, gt=0)
    perp_leverage: float = Field(3.0, ge=1, le=20)
    venue_timeout_seconds: float = Field(10.0, gt=0, le=300)
    account_refresh_seconds: float = Field(5.0, ge=0, le=300)
    capital_tolerance: float = Field(0.01, ge=0, le=1)
    funding_poll_seconds: float = Field(60.0, ge=0, le=3600)
    slippage: list[SlippageBucket] = Field(
        min_length=1,
        default_factory=lambda: [
            SlippageBucket(max_notional=10_000, bps=5),
            SlippageBucket(max_notional=100_000, bps=7),
            SlippageBucket(max_notional=1_000_000, bps=13),
        ]
    )
    gas_units: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: {"supply": 250_000, "withdraw": 200_000, "borrow": 300_000,
                                 "repay": 250_000, "stake": 150_000, "unstake": 200_000,
                                 "leverage": 1_250_000, "swap": 180_000}
    )


class EmergencyConfig(StrictModel):
    """What an emergency stop does after halting: ``unwind`` closes every position back to the
    share class in a safe order (default false: halt and cancel only; ``--unwind`` forces it)."""

    unwind: bool = False


class MLConfig(StrictModel):
    """ML directional modes: signals from a CSV / JSONL file or an http(s) endpoint
    (``signal_source``); confidence below ``signal_threshold`` (0.6) means no trade; a position lives
    at most one candle of ``candle_seconds`` (300); its notional is equity x ``position_leverage`` (1)."""

    signal_source: str | None = None
    signal_threshold: float = Field(0.6, ge=0, le=1)
    candle_seconds: int = Field(300, gt=0)
    position_leverage: float = Field(1.0, gt=0, le=10)


class StrategyConfig(StrictModel):
    """One strategy file. See the shipped ``strategies/*.yaml`` for commented examples.

    Defaults: position_deviation_threshold 0.02, delta_tolerance 0.005, monitoring_interval 60 s
    (simulated seconds between strategy ticks), heartbeat_timeout 300 s (a run silent for longer is
    unhealthy)."""

    name: str
    mode: str
    description: str = ""
    enabled: bool = True
    share_class: ShareClass
    asset: str
    market_neutral: bool = False
    venues: dict[VenueName, VenueConfig]
    hedge_allocation: dict[VenueName, float] = Field(default_factory=dict)
    lst_type: Literal["weETH", "wstETH"] | None = None
    leverage: LeverageConfig | None = None
    stake_allocation_eth: float | None = Field(None, gt=0, lt=1)
    position_deviation_threshold: float = Field(0.02, gt=0, lt=1)
    delta_tolerance: float = Field(0.005, gt=0, lt=1)
    monitoring_interval: float = Field(60.0, gt=0, le=86_400)
    heartbeat_timeout: float = Field(300.0, gt=0)
    risk: RiskLimits = Field(default_factory=RiskLimits)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    emergency: EmergencyConfig = Field(default_factory=EmergencyConfig)
    ml: MLConfig | None = None

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, mode: str) -> str:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
        return mode

    @model_validator(mode="after")
    def _check_mode_rules(self) -> "StrategyConfig":
        spec = MODES[self.mode]
        if self.share_class not in spec.share_classes:
            raise ValueError(
                f"share_class {self.share_class} is not allowed for {self.mode} (allowed: {', '.join(spec.share_classes)})"
            )
        if self.asset != spec.asset:
            raise ValueError(f"asset must be {spec.asset} for {self.mode}, got {self.asset}")
        enabled = {name for name, venue in self.venues.items() if venue.enabled}
        if spec.uses_perps:
            if not self.hedge_allocation:
                raise ValueError(f"{self.mode} needs hedge_allocation across its perp venues")
            for venue, weight in self.hedge_allocation.items():
                if venue not in PERP_VENUES:
                    raise ValueError(f"hedge_allocation.{venue}: not a perp venue ({', '.join(PERP_VENUES)})")
                if venue not in enabled and weight > 0:
                    raise ValueError(f"hedge_allocation.{venue} is {weight} but venue {venue} is not enabled")
                if weight < 0:
                    raise ValueError(f"hedge_allocation.{venue} must be >= 0, got {weight}")
            total = sum(self.hedge_allocation.values())
            if abs(total - 1.0) > 1e-9:
                raise ValueError(f"hedge_allocation must sum to 1, got {total:g}")
        elif self.hedge_allocation:
            raise ValueError(f"{self.mode} has no perp legs; remove hedge_allocation")
        if spec.uses_lending and "aave_v3" not in enabled:
            raise ValueError(f"{self.mode} needs venue aave_v3 enabled")
        if spec.uses_staking and self.lst_type is None:
            raise ValueError(f"{self.mode} needs lst_type (weETH or wstETH)")
        if spec.uses_borrowing and self.leverage is None:
            raise ValueError(f"{self.mode} needs a leverage section (max_ltv, liquidation_threshold)")
        if self.mode.startswith("ml_") and self.ml is None:
            raise ValueError(f"{self.mode} needs an ml section (signal_source, signal_threshold)")
        return self


class FeedConfig(StrictModel):
    """Where market data come from: ``sample`` (built in, synthetic, offline) or ``replay`` (a data
    directory with a manifest). ``speed`` is simulated seconds per wall second (1 = real time)."""

    kind: Literal["sample", "replay", "live"] = "sample"
    data: Path | None = None
    scenario: str | None = None
    seed: int = Field(7, ge=0, lt=2**63)
    speed: float = Field(1.0, gt=0, le=10_000_000)

    @model_validator(mode="after")
    def _check_kind(self) -> "FeedConfig":
        if self.kind == "replay" and self.data is None:
            raise ValueError("--feed replay needs --data DIR (a data directory with manifest.yaml)")
        if self.kind == "sample" and self.data is not None:
            raise ValueError("--data is only used with --feed replay")
        if self.kind == "replay" and self.scenario is not None:
            raise ValueError("--scenario is only used with --feed sample")
        if self.kind == "live" and (self.data is not None or self.scenario is not None or self.speed != 1):
            raise ValueError("--feed live runs in real time on the exchanges' data: no --data, --scenario or --speed")
        return self


class RunConfig(StrictModel):
    """Everything one run needs; built once and shared by every component of the run."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    strategy: StrategyConfig
    initial_capital: Decimal
    environment: Environment
    execution_mode: ExecutionMode
    feed: FeedConfig

    @property
    def share_class(self) -> str:
        return self.strategy.share_class


# --------------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True)
class StrategyFile:
    name: str
    path: Path | None  # None for a shipped file inside a zip (never the case for our wheels)
    origin: Literal["dir", "user", "shipped"]
    shadows_shipped: bool = False


def user_strategies_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "basis-live" / "strategies"


def shipped_strategies_dir() -> Path:
    return Path(str(resources.files("basis_live.strategies")))


def environment_from_env(env: dict[str, str] | None = None) -> tuple[str, str]:
    """``BASIS_ENVIRONMENT`` (dev | staging | prod, default dev) and ``BASIS_EXECUTION_MODE``
    (backtest | paper | live, default paper). Bad values are LT-001."""
    env = os.environ if env is None else env
    environment = env.get("BASIS_ENVIRONMENT", "dev").strip() or "dev"
    mode = env.get("BASIS_EXECUTION_MODE", "paper").strip() or "paper"
    if environment not in ("dev", "staging", "prod"):
        raise RequestValidationError(
            f"BASIS_ENVIRONMENT={environment!r} is not one of dev, staging, prod"
        )
    if mode not in ("backtest", "paper", "live"):
        raise RequestValidationError(
            f"BASIS_EXECUTION_MODE={mode!r} is not one of backtest, paper, live"
        )
    return environment, mode


#: The largest capital, deposit or withdrawal accepted (share-class units): beyond it an amount is a
#: typo, and past the Decimal context's 28 digits it would not even round to venue precision.
MAX_AMOUNT = Decimal("1e12")


def parse_capital(value: str | float | Decimal) -> Decimal:
    """Capital as a positive, finite Decimal (LT-001 otherwise)."""
    try:
        capital = Decimal(str(value))
    except InvalidOperation:
        raise RequestValidationError(f"--capital must be a number, got {value!r}") from None
    if not capital.is_finite() or capital <= 0:
        raise RequestValidationError(f"--capital must be > 0, got {value}")
    if capital > MAX_AMOUNT:
        raise RequestValidationError(f"--capital {value} is beyond any sane size (max 1e12)")
    return capital


def _parse_assignment(text: str, flag: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"{flag} {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", key):
        raise ConfigError(f"{flag} {text!r}: bad key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def _set_dotted(data: dict[str, Any], key: str, value: Any, flag: str) -> None:
    parts = key.split(".")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part) if isinstance(node, dict) else None
        if child is None:
            child = {}
            node[part] = child
        elif not isinstance(child, dict):
            raise ConfigError(f"{flag} {key}: {'.'.join(parts[: depth + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def _format_validation_error(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown key {loc!r}"
    msg = err["msg"].removeprefix("Value error, ")
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{source}: {loc + ': ' if loc else ''}{msg}{more}"


class ConfigManager:
    """Finds, loads, merges and validates strategy files."""

    def __init__(self, strategies_dir: Path | None = None, user_dir: Path | None = None) -> None:
        if strategies_dir is not None and not strategies_dir.is_dir():
            raise RequestValidationError(f"--strategies-dir {strategies_dir} is not a directory")
        self.strategies_dir = strategies_dir
        self.user_dir = user_dir if user_dir is not None else user_strategies_dir()

    def _search_path(self) -> list[tuple[Literal["dir", "user", "shipped"], Path]]:
        dirs: list[tuple[Literal["dir", "user", "shipped"], Path]] = []
        if self.strategies_dir is not None:
            dirs.append(("dir", self.strategies_dir))
        if self.user_dir.is_dir():
            dirs.append(("user", self.user_dir))
        dirs.append(("shipped", shipped_strategies_dir()))
        return dirs

    def list_strategies(self) -> list[StrategyFile]:
        shipped = {p.stem for p in shipped_strategies_dir().glob("*.yaml")}
        seen: dict[str, StrategyFile] = {}
        for origin, directory in self._search_path():
            for path in sorted(directory.glob("*.yaml")):
                if path.stem in seen or not _NAME_RE.match(path.stem):
                    continue
                seen[path.stem] = StrategyFile(
                    path.stem, path, origin, shadows_shipped=origin != "shipped" and path.stem in shipped
                )
        return sorted(seen.values(), key=lambda f: f.name)

    def find(self, name: str) -> StrategyFile:
        if not _NAME_RE.match(name):
            raise ConfigError(f"strategy name {name!r} is not valid (lowercase letters, digits, _ and -)")
        for origin, directory in self._search_path():
            path = directory / f"{name}.yaml"
            if path.is_file():
                return StrategyFile(name, path, origin)
        known = ", ".join(f.name for f in self.list_strategies())
        raise ConfigError(f"unknown strategy {name!r}; known strategies: {known}")

    def read(self, name: str) -> tuple[StrategyFile, dict[str, Any]]:
        found = self.find(name)
        assert found.path is not None
        try:
            data = yaml.safe_load(read_utf8(found.path))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{found.path}: {not_utf8(exc)}; save it as UTF-8") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise ConfigError(f"{found.path}:{where} malformed YAML: {problem}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {found.path}: {exc.strerror}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{found.path}: must be a YAML mapping of strategy settings")
        data.setdefault("name", name)
        if data["name"] != name:
            raise ConfigError(f"{found.path}: name {data['name']!r} does not match the file name {name!r}")
        return found, data

    def load(
        self,
        name: str,
        overrides: list[str] | None = None,
        risk: list[str] | None = None,
        share_class: str | None = None,
    ) -> StrategyConfig:
        """The validated strategy ``name`` with ``--set`` / ``--risk`` / ``--share-class`` applied."""
        found, data = self.read(name)
        source = str(found.path)
        for text in overrides or []:
            key, value = _parse_assignment(text, "--set")
            if key.split(".")[0] in ("name", "mode"):
                raise ConfigError(f"--set {key}: the strategy's {key} cannot be overridden")
            _set_dotted(data, key, value, "--set")
            source = f"{found.path} with --set/--risk"
        for text in risk or []:
            key, value = _parse_assignment(text, "--risk")
            limit, _, attr = key.partition(".")
            if limit not in RiskLimits.model_fields:
                raise ConfigError(
                    f"--risk {limit!r} is not a risk limit; limits: {', '.join(RiskLimits.model_fields)}"
                )
            _set_dotted(data, f"risk.{limit}.{attr or 'limit'}", value, "--risk")
            source = f"{found.path} with --set/--risk"
        if share_class is not None:
            spec = MODES.get(str(data.get("mode")))
            if spec is not None and share_class not in spec.share_classes:
                raise RequestValidationError(
                    f"--share-class {share_class} is not allowed for {spec.name} (allowed: {', '.join(spec.share_classes)})"
                )
            data["share_class"] = share_class
        try:
            return StrategyConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_format_validation_error(exc, source)) from None


def build_run_config(
    strategy: StrategyConfig,
    capital: Decimal,
    feed: dict[str, Any],
    env: dict[str, str] | None = None,
    backtest: bool = False,
    live_environment: str | None = None,
) -> RunConfig:
    """The run's one config. ``backtest=True`` for `basis-live backtest`, whatever
    BASIS_EXECUTION_MODE says (a backtest never trades). ``live_environment`` (``start --env``)
    means live trading on that environment; ``BASIS_EXECUTION_MODE=live`` means the same on
    ``BASIS_ENVIRONMENT``. Live runs read their market data from the venues (feed kind ``live``)."""
    environment, execution_mode = environment_from_env(env)
    explicit_mode = (os.environ if env is None else env).get("BASIS_EXECUTION_MODE", "").strip()
    if live_environment is not None:
        if live_environment not in ("dev", "staging", "prod"):
            raise RequestValidationError(f"--env {live_environment!r} is not one of dev, staging, prod")
        if backtest or explicit_mode in ("paper", "backtest"):
            raise RequestValidationError(
                f"--env {live_environment} trades live, but BASIS_EXECUTION_MODE={explicit_mode or 'backtest'} "
                "says otherwise: unset one of them")
        environment, execution_mode = live_environment, "live"
    if backtest:
        execution_mode = "backtest"
    elif execution_mode == "live":
        feed = dict(feed)
        if feed.get("kind") not in ("sample", "live") or feed.get("data") is not None or feed.get("scenario"):
            raise RequestValidationError(
                "live trading reads market data from its own venues: --feed, --data and --scenario do not apply")
        feed["kind"] = "live"
    elif execution_mode == "backtest":
        raise RequestValidationError(
            "BASIS_EXECUTION_MODE=backtest: `start` paper-trades; use `basis-live backtest` for history"
        )
    if not strategy.enabled:
        raise ConfigError(f"strategy {strategy.name} is disabled (enabled: false in its file)")
    try:
        feed_config = FeedConfig.model_validate(feed)
    except ValidationError as exc:
        raise RequestValidationError(_format_validation_error(exc, "feed options")) from None
    return RunConfig(
        strategy=strategy,
        initial_capital=capital,
        environment=environment,  # type: ignore[arg-type]
        execution_mode=execution_mode,  # type: ignore[arg-type]
        feed=feed_config,
    )


_SECRET_KEY = re.compile(r"(key|secret|password|passphrase|private|token|mnemonic)", re.I)
#: A URL inside a string: from its scheme to the next whitespace, quote or angle bracket.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
#: user:password@ before the host (up to the last @ of the authority: a password may hold an @).
_URL_CREDENTIALS = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s]*@")
#: A path segment of token characters; a "." ends it only before a non-alphanumeric or the end
#: (``data_2024.csv`` is a file name, ``…/<key>.`` ends a sentence).
_URL_SEGMENT = re.compile(r"(?<=/)[A-Za-z0-9_\-]+(?=$|[^A-Za-z0-9_\-.]|\.(?![A-Za-z0-9]))")
#: name=value in a query or fragment.
_URL_PARAM = re.compile(r"(?P<lead>[?&;#](?P<name>[^=&;#\s]+)=)(?P<value>[^&;#\s]*)")
#: Parameter names whose values are credentials: access_token, apikey, api_key, X-Amz-Signature, ...
_SECRET_PARAM = re.compile(r"token|key|secret|sig|passw|passphrase|pwd|auth|credential|session|jwt", re.I)


def _secret_segment(match: re.Match[str]) -> str:
    """``***`` for a path segment shaped like a provider key: 20+ characters mixing letters and
    digits (Alchemy, QuickNode, Chainstack, UUIDs), 32+ hex digits (Infura, Ankr), or 16+ characters
    after a version segment (``/v2/<key>``)."""
    segment = match.group(0)
    before = match.string[:match.start()].rstrip("/")
    previous = before[before.rfind("/") + 1:]
    mixed = any(c.isalpha() for c in segment) and any(c.isdigit() for c in segment)
    if ((len(segment) >= 20 and mixed) or re.fullmatch(r"[0-9a-fA-F]{32,}", segment)
            or (len(segment) >= 16 and re.fullmatch(r"v\d+", previous))):
        return "***"
    return segment


def _redact_url(match: re.Match[str]) -> str:
    url = _URL_CREDENTIALS.sub(r"\g<scheme>***@", match.group(0), count=1)
    start = url.index("://") + 3
    rest = url[start:]
    cut = re.search(r"[/?#]", rest)
    if cut is None:
        return url
    authority, tail = rest[:cut.start()], rest[cut.start():]
    cut = re.search(r"[?#]", tail)
    path, query = (tail[:cut.start()], tail[cut.start():]) if cut else (tail, "")
    path = _URL_SEGMENT.sub(_secret_segment, path)
    query = _URL_PARAM.sub(lambda m: m.group("lead") + "***" if _SECRET_PARAM.search(m.group("name"))
                           and m.group("value") else m.group(0), query)
    return url[:start] + authority + path + query


def redact_secrets(value: Any) -> Any:
    """A copy of ``value`` safe to store, log or print: secret-looking keys masked, credentials in
    URLs and token-like URL paths removed. The one place secrets are scrubbed."""
    if isinstance(value, dict):
        return {
            k: ("***" if _SECRET_KEY.search(str(k)) and v not in (None, "") else redact_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_secrets(v) for v in value]
    if isinstance(value, str) and "://" in value:
        # Only inside URLs: credentials before the host, key-shaped path segments (RPC providers put
        # the token there: …/v2/<key>, …/<key>/) and secret-named query or fragment values.
        value = _URL.sub(_redact_url, value)
    return value
