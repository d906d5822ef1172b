"""ccxt clients for the exchanges: environment routing, credentials, endpoint overrides, and the
client validation that `validate --env` and a live `start` run before trading.

- ``BASIS_ENVIRONMENT`` dev and staging use each exchange's testnet / demo endpoints (ccxt's sandbox
  mode), prod the production ones.
- Credentials come from ``BASIS_<ENV>__CEX__<VENUE>_API_KEY``, ``..._SECRET`` and, for okx,
  ``..._PASSPHRASE`` (e.g. ``BASIS_DEV__CEX__BINANCE_API_KEY``). A missing one is LT-001 naming the
  variable. Keys are handed to ccxt and nowhere else: never logged, stored or printed.
- An endpoint override (a proxy, a regional host, the test suite's loopback peer) comes from the
  strategy's ``venues.<venue>.api_url`` or ``BASIS_<ENV>__CEX__<VENUE>_API_URL``: the scheme and host
  of every ccxt API URL are replaced, paths kept. It is applied after the sandbox switch.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from basis_live.errors import BasisLiveError, ConfigError, RequestValidationError

CEX_VENUES = ("binance", "bybit", "okx")
#: Market types each venue loads: spot and USDT-margined linear perps.
MARKET_TYPES = {"binance": ["spot", "linear"], "bybit": ["spot", "linear"], "okx": ["spot", "swap"]}
#: Hosts that are production trading endpoints (a dev or staging run must never use one).
PRODUCTION_HOSTS = {
    "binance": ("api.binance.com", "fapi.binance.com", "dapi.binance.com", "api1.binance.com", "api2.binance.com",
                "api3.binance.com", "api4.binance.com", "sapi.binance.com"),
    "bybit": ("api.bybit.com", "api.bytick.com", "api.bybit.nl", "api.byhkbit.com"),
    "okx": ("www.okx.com", "okx.com", "aws.okx.com", "eea.okx.com", "us.okx.com"),
}
#: Hosts of the testnet / demo endpoints (a prod run must never use one).
TEST_HOSTS = {
    "binance": ("testnet.binance.vision", "testnet.binancefuture.com", "demo-api.binance.com", "demo-fapi.binance.com"),
    "bybit": ("api-testnet.bybit.com", "api-demo.bybit.com"),
    "okx": (),  # okx's demo trading uses the production host plus the x-simulated-trading header
}


@dataclass(frozen=True)
class CexCredentials:
    api_key: str
    secret: str
    passphrase: str | None = None

    def __repr__(self) -> str:  # never show a key, even in a traceback
        return "CexCredentials(***)"


def _prefix(environment: str, venue: str) -> str:
    return f"BASIS_{environment.upper()}__CEX__{venue.upper()}"


def credentials_from_env(environment: str, venue: str, env: Mapping[str, str] | None = None) -> CexCredentials:
    env = os.environ if env is None else env
    prefix = _prefix(environment, venue)
    names = [f"{prefix}_API_KEY", f"{prefix}_SECRET"] + ([f"{prefix}_PASSPHRASE"] if venue == "okx" else [])
    missing = [name for name in names if not env.get(name)]
    if missing:
        raise RequestValidationError(f"{venue} credentials missing for {environment}: set {', '.join(missing)}")
    return CexCredentials(env[names[0]], env[names[1]], env.get(f"{prefix}_PASSPHRASE"))


def api_url_override(environment: str, venue: str, configured: str | None,
                     env: Mapping[str, str] | None = None) -> str | None:
    """The endpoint override for ``venue``: the strategy's ``venues.<venue>.api_url``, else
    ``BASIS_<ENV>__CEX__<VENUE>_API_URL``, else None. A malformed one is refused here, naming where
    it came from but not its value (a URL may carry credentials): ConfigError for the strategy key,
    RequestValidationError for the variable.

    The variables of every exchange of ``environment`` are checked on each call, not only
    ``venue``'s: callers build one validation coroutine per venue in a row, and a refusal at the
    second or third would leave the earlier ones never awaited (a RuntimeWarning on stderr)."""
    env = os.environ if env is None else env
    for other in CEX_VENUES:
        name = f"{_prefix(environment, other)}_API_URL"
        if env.get(name):
            _check_api_url(env[name], name, RequestValidationError)
    if configured:
        _check_api_url(configured, f"venues.{venue}.api_url", ConfigError)
        return configured
    return env.get(f"{_prefix(environment, venue)}_API_URL") or None


def _check_api_url(url: str, where: str, error: type[BasisLiveError]) -> None:
    """An http(s) URL with a host and, if any, a numeric port below 65536; ``error`` naming ``where``."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise error(f"{where} is not a valid http(s) URL with a host (e.g. https://proxy.example:8443); "
                    "value not shown, it may carry credentials")


def _point_at(url: str, base: str) -> str:
    target, parts = urlsplit(base), urlsplit(url)
    return urlunsplit((target.scheme, target.netloc, parts.path, parts.query, parts.fragment))


def create_exchange(venue: str, environment: str, credentials: CexCredentials | None, api_url: str | None = None,
                    timeout_ms: int = 10_000, enable_rate_limit: bool = True) -> Any:
    """A ccxt async exchange routed for ``environment`` (public only without credentials); the
    caller must ``await close()``."""
    import ccxt.async_support as ccxt_async

    options: dict[str, Any] = {"fetchMarkets": {"types": MARKET_TYPES[venue]}}
    if venue == "okx":
        options["createOrder"] = "privatePostTradeOrder"  # ccxt's default is the batch endpoint
    config: dict[str, Any] = {
        "enableRateLimit": enable_rate_limit,
        "timeout": timeout_ms,
        # With keys, load_markets would call private currency endpoints on all three venues.
        "has": {"fetchCurrencies": False},
        "options": options,
    }
    if credentials is not None:
        config.update(apiKey=credentials.api_key, secret=credentials.secret)
        if venue == "okx":
            config["password"] = credentials.passphrase
    exchange = getattr(ccxt_async, venue)(config)
    if environment in ("dev", "staging"):
        exchange.set_sandbox_mode(True)  # before any URL rewrite: it replaces urls['api']
    if api_url:
        exchange.urls["api"] = {name: _point_at(url, api_url) for name, url in exchange.urls["api"].items()}
    return exchange


def api_hosts(exchange: Any) -> set[str]:
    hosts = set()
    for url in exchange.urls["api"].values():
        host = urlsplit(str(url).replace("{hostname}", exchange.hostname or "")).hostname
        if host:
            hosts.add(host)
    return hosts


def environment_mismatch(venue: str, environment: str, hosts: set[str]) -> str | None:
    """Why these API hosts must not be used in ``environment``, or None."""
    if environment in ("dev", "staging"):
        bad = sorted(h for h in hosts if h in PRODUCTION_HOSTS[venue])
        if bad:
            return f"production endpoint {', '.join(bad)} in {environment}"
    else:
        bad = sorted(h for h in hosts if h in TEST_HOSTS[venue])
        if bad:
            return f"testnet endpoint {', '.join(bad)} in prod"
    return None


@dataclass
class ClientCheck:
    """One check of one client: name, ok, and a one-line detail (scrubbed of anything key-like)."""

    client: str
    check: str
    ok: bool
    detail: str

    def __post_init__(self) -> None:
        from basis_live.config import redact_secrets

        self.detail = " ".join(str(redact_secrets(self.detail)).split())


def _rate_limit_headroom(venue: str, headers: Mapping[str, str]) -> tuple[bool, str]:
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    if venue == "binance" and "x-mbx-used-weight-1m" in lowered:
        used = int(lowered["x-mbx-used-weight-1m"])
        return used < 4800, f"request weight used {used} of 6000 per minute"
    if venue == "bybit" and "x-bapi-limit-status" in lowered and "x-bapi-limit" in lowered:
        left, limit = int(lowered["x-bapi-limit-status"]), int(lowered["x-bapi-limit"])
        return left > limit * 0.2, f"{left} of {limit} requests left in the window"
    return True, "venue reports no usage headers; ccxt's rate limiter is on"


#: Tries per validation read: a single 5xx or 429 must not fail a start; a venue that is down still
#: fails within about VALIDATION_RETRY_WAIT x (tries - 1) seconds.
VALIDATION_TRIES = 3
VALIDATION_RETRY_WAIT = 0.5


async def _with_retries(call: Any) -> Any:
    """``await call()``, again after transient ccxt errors (network, 5xx, 429), up to VALIDATION_TRIES."""
    import asyncio

    import ccxt

    for attempt in range(1, VALIDATION_TRIES + 1):
        try:
            return await call()
        except ccxt.NetworkError:
            if attempt == VALIDATION_TRIES:
                raise
            await asyncio.sleep(VALIDATION_RETRY_WAIT * attempt)


async def validate_cex_client(venue: str, environment: str, api_url: str | None, env: Mapping[str, str] | None = None,
                              timeout_ms: int = 10_000) -> list[ClientCheck]:
    """Endpoint matches the environment, reachable, credentials authenticate, rate-limit headroom."""
    try:
        credentials = credentials_from_env(environment, venue, env)
    except RequestValidationError as exc:
        return [ClientCheck(venue, "credentials", False, exc.message)]
    exchange = create_exchange(venue, environment, credentials, api_url, timeout_ms)
    exchange.timeout_on_exit = 0
    checks = []
    try:
        mismatch = environment_mismatch(venue, environment, api_hosts(exchange))
        checks.append(ClientCheck(venue, "endpoint", mismatch is None,
                                  mismatch or f"{environment} endpoint {', '.join(sorted(api_hosts(exchange)))}"))
        if mismatch:
            return checks  # never send anything (keys included) to the wrong environment
        started = time.monotonic()
        try:
            await _with_retries(exchange.load_markets)
        except Exception as exc:  # noqa: BLE001 - every failure is reported as this check's result
            checks.append(ClientCheck(venue, "reachable", False, f"{type(exc).__name__}: {str(exc)[:160]}"))
            return checks
        checks.append(ClientCheck(venue, "reachable", True, f"markets loaded in {(time.monotonic() - started) * 1000:.0f} ms"))
        try:
            await _with_retries(exchange.fetch_balance)
        except Exception as exc:  # noqa: BLE001
            checks.append(ClientCheck(venue, "credentials", False, f"private read refused: {type(exc).__name__}: "
                                                                  f"{str(exc)[:160]}"))
            return checks
        checks.append(ClientCheck(venue, "credentials", True, "private read (balance) authenticated"))
        ok, detail = _rate_limit_headroom(venue, exchange.last_response_headers or {})
        checks.append(ClientCheck(venue, "rate limit", ok, detail))
        return checks
    finally:
        await exchange.close()
