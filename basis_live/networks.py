"""Chain networks: contract addresses per network and the network each environment trades on.

Addresses live in configuration, never in code: the shipped ``networks.yaml`` (mainnet and the
Sepolia testnet), overridden by the file named in ``BASIS_NETWORKS_FILE`` or by
``$XDG_CONFIG_HOME/basis-live/networks.yaml`` (same layout; a network or environment defined there
replaces the shipped one of the same name). Loading is cheap (PyYAML + pydantic, no web3).

Credentials per environment come from the environment: ``BASIS_<ENV>__CHAIN__PRIVATE_KEY`` (the
strategy wallet's key) and ``BASIS_<ENV>__CHAIN__RPC_URL`` (often carries a provider token). Both are
handed to web3 and nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from basis_live.errors import ConfigError, RequestValidationError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _address(value: str) -> str:
    text = str(value)
    if not (text.startswith("0x") and len(text) == 42 and all(c in "0123456789abcdefABCDEF" for c in text[2:])):
        raise ValueError(f"{text!r} is not a 0x-prefixed 20-byte address")
    return text


Address = Annotated[str, AfterValidator(_address)]


class AaveAddresses(_Strict):
    """Aave V3: the Pool proxy, the protocol data provider, and the ETH-correlated eMode category id."""

    pool: Address
    data_provider: Address
    emode_eth_category: int = Field(1, ge=1, le=255)


class LidoAddresses(_Strict):
    steth: Address
    wsteth: Address


class EtherFiAddresses(_Strict):
    liquidity_pool: Address
    eeth: Address
    weeth: Address


class SwapAddresses(_Strict):
    """The swap route (ETH <-> USDT, LST -> ETH): basis-live's stand-in router interface."""

    router: Address
    max_slippage_bps: float = Field(50, ge=0, le=1000)


class ChainNetwork(_Strict):
    """One network. Defaults: max_fee_gwei 100 (EIP-1559 fee cap), min_gas_eth 0.02 (validation
    fails below), receipt_timeout_seconds 60 (then a fee bump, at most 3), receipt_poll_seconds 2
    (between receipt checks), market_refresh_seconds 12 (one block: how often prices, rates and
    indices are read), wallet_allowlist empty (the wallet sends to nobody)."""

    chain_id: int = Field(gt=0)
    max_fee_gwei: float = Field(100, gt=0)
    min_gas_eth: float = Field(0.02, ge=0)
    receipt_timeout_seconds: float = Field(60, gt=0)
    receipt_poll_seconds: float = Field(2.0, gt=0, le=60)
    market_refresh_seconds: float = Field(12.0, gt=0, le=3600)
    tokens: dict[str, Address] = Field(default_factory=dict)
    aave_v3: AaveAddresses | None = None
    lido: LidoAddresses | None = None
    etherfi: EtherFiAddresses | None = None
    swap: SwapAddresses | None = None
    wallet_allowlist: list[Address] = Field(default_factory=list)


class NetworksFile(_Strict):
    environments: dict[str, str] = Field(default_factory=dict)
    networks: dict[str, ChainNetwork] = Field(default_factory=dict)


@dataclass(frozen=True)
class ChainCredentials:
    private_key: str
    rpc_url: str

    def __repr__(self) -> str:  # never show a key or a provider token, even in a traceback
        return "ChainCredentials(***)"


def _read(path: Path | None, text: str | None = None, source: str | None = None) -> NetworksFile:
    """Parse and validate a networks file; every problem is one ConfigError line naming ``source``."""
    import yaml

    from basis_live.textfiles import not_utf8, read_utf8

    source = source or (str(path) if path is not None else "shipped networks.yaml")
    try:
        if text is None:
            assert path is not None
            if path.is_dir():
                raise ConfigError(f"{source}: is a directory, not a networks YAML file")
            text = read_utf8(path)
        data = yaml.safe_load(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: {not_utf8(exc)}; save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{source}: unreadable: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: invalid YAML{at}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with 'environments' and 'networks', "
                          f"got {type(data).__name__}")
    try:
        return NetworksFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "top level"
        raise ConfigError(f"{source}: {where}: {error['msg']}") from None


def user_networks_file(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("BASIS_NETWORKS_FILE"):
        return Path(env["BASIS_NETWORKS_FILE"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "basis-live" / "networks.yaml"


def load_networks(env: Mapping[str, str] | None = None) -> NetworksFile:
    """The shipped networks, replaced by name by the user's file. A problem with the user's file
    (missing when named, a directory, not UTF-8, malformed YAML, wrong types, an environment naming an
    undefined network) is a one-line ConfigError (LT-002, exit 2) naming the file."""
    shipped = _read(None, resources.files("basis_live").joinpath("networks.yaml").read_text(encoding="utf-8"))
    path = user_networks_file(env)
    named = bool((os.environ if env is None else env).get("BASIS_NETWORKS_FILE"))
    source = f"BASIS_NETWORKS_FILE={path}" if named else str(path)
    if not path.exists():
        if named:
            raise ConfigError(f"{source}: no such file")
        return shipped
    user = _read(path, source=source)
    merged = NetworksFile(environments={**shipped.environments, **user.environments},
                          networks={**shipped.networks, **user.networks})
    undefined = sorted(f"environments.{environment}: {name!r}" for environment, name in user.environments.items()
                       if name not in merged.networks)
    if undefined:
        raise ConfigError(f"{source}: {', '.join(undefined)} is not a defined network "
                          f"(networks: {', '.join(sorted(merged.networks))})")
    return merged


def network_for(environment: str, env: Mapping[str, str] | None = None) -> tuple[str, ChainNetwork]:
    """The network ``environment`` trades on (ConfigError when none is configured)."""
    networks = load_networks(env)
    name = networks.environments.get(environment)
    if name is None or name not in networks.networks:
        raise ConfigError(f"no chain network configured for environment {environment!r} "
                          f"(environments: {networks.environments}); see {user_networks_file(env)}")
    return name, networks.networks[name]


#: Private keys are the integers 1 .. n-1 of the secp256k1 group order n.
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def chain_credentials(environment: str, env: Mapping[str, str] | None = None) -> ChainCredentials:
    """The strategy wallet's key and the RPC URL of ``environment`` (LT-001 naming what is missing)."""
    env = os.environ if env is None else env
    prefix = f"BASIS_{environment.upper()}__CHAIN__"
    missing = [prefix + name for name in ("PRIVATE_KEY", "RPC_URL") if not env.get(prefix + name)]
    if missing:
        raise RequestValidationError(f"chain credentials missing for {environment}: set {', '.join(missing)}")
    key = env[prefix + "PRIVATE_KEY"].strip()
    body = key[2:] if key.startswith("0x") else key
    if len(body) != 64 or any(c not in "0123456789abcdefABCDEF" for c in body):
        raise RequestValidationError(f"{prefix}PRIVATE_KEY is not a 32-byte hex private key")
    if not 0 < int(body, 16) < SECP256K1_ORDER:
        raise RequestValidationError(f"{prefix}PRIVATE_KEY is not a valid private key (outside the secp256k1 range)")
    return ChainCredentials("0x" + body, env[prefix + "RPC_URL"].strip())


def required_contracts(strategy: Any, network: ChainNetwork) -> tuple[dict[str, str], list[str]]:
    """The contracts a strategy needs on ``network``: (role -> address, roles that are missing)."""
    enabled = {name for name, venue in strategy.venues.items() if venue.enabled}
    needed: dict[str, str | None] = {}
    tokens: set[str] = set()
    lst = getattr(strategy, "lst_type", None)
    if "aave_v3" in enabled:
        aave = network.aave_v3
        needed["aave_v3.pool"] = aave.pool if aave else None
        needed["aave_v3.data_provider"] = aave.data_provider if aave else None
        tokens |= {"USDT"} if strategy.mode == "pure_lending" else set()
        if getattr(strategy, "leverage", None) is not None:
            tokens |= {"WETH"}
    if lst is not None and ({"etherfi", "lido"} & enabled):
        tokens.add(lst)
        if lst == "weETH":
            fi = network.etherfi
            needed.update({"etherfi.liquidity_pool": fi.liquidity_pool if fi else None,
                           "etherfi.eeth": fi.eeth if fi else None, "etherfi.weeth": fi.weeth if fi else None})
        else:
            lido = network.lido
            needed.update({"lido.steth": lido.steth if lido else None, "lido.wsteth": lido.wsteth if lido else None})
        # Redeeming the LST (deleverage, unwind) goes through the swap route.
        needed["swap.router"] = network.swap.router if network.swap else None
    if "uniswap" in enabled:
        tokens.add("USDT")
        needed["swap.router"] = network.swap.router if network.swap else None
    for symbol in sorted(tokens):
        needed[f"tokens.{symbol}"] = network.tokens.get(symbol)
    present = {role: address for role, address in needed.items() if address}
    return present, sorted(role for role, address in needed.items() if not address)
