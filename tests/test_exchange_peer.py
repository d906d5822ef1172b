"""The real ccxt async classes for binance, bybit and okx against the local exchange peer
(tests/peers): markets, balances, tickers, funding, orders by our client order id, and each fault
the live venue code must survive. Nothing here leaves 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any, Awaitable, Callable

import ccxt
import pytest

from peers.ccxt_wiring import connected, make_exchange
from peers.exchange_server import ExchangePeer
from peers.venue_common import Credentials

VENUES = ["binance", "bybit", "okx"]
PERP, SPOT = "BTC/USDT:USDT", "BTC/USDT"
#: The request field each venue takes our client order id in.
CLIENT_ID_PARAM = {"binance": "newClientOrderId", "bybit": "orderLinkId", "okx": "clOrdId"}
#: 0.01 BTC of the BTC perp in the venue's order unit (okx trades 0.01 BTC contracts).
PERP_UNITS = {"binance": 0.01, "bybit": 0.01, "okx": 1.0}
#: Where ccxt's fetch_balance finds the perp collateral (binance keeps futures in their own wallet).
PERP_BALANCE_PARAMS = {"binance": {"type": "swap"}, "bybit": {}, "okx": {}}
PUBLIC_OPS = {"exchange_info", "instruments_info", "instruments"}
TICKER_OPS = ("ticker_24hr", "tickers", "ticker")


@pytest.fixture
def peer() -> Any:
    with ExchangePeer() as server:
        yield server


def run(peer: ExchangePeer, venue: str, scenario: Callable[[Any], Awaitable[Any]], **kwargs: Any) -> Any:
    """Run ``scenario(exchange)`` with a loaded ccxt exchange for ``venue`` on the peer."""
    async def main() -> Any:
        async with connected(peer, venue, **kwargs) as exchange:
            await exchange.load_markets()
            return await scenario(exchange)
    return asyncio.run(main())


def cid(tag: str) -> str:
    """A client order id every venue accepts (okx: 1-32 alphanumerics)."""
    return f"bl{tag}{time.time_ns() % 10**12}"


async def create(exchange: Any, venue: str, symbol: str, kind: str, side: str, amount: float,
                 client_id: str, price: float | None = None, **params: Any) -> dict:
    return await exchange.create_order(symbol, kind, side, amount, price,
                                       {CLIENT_ID_PARAM[venue]: client_id, **params})


async def fetch_by_client_id(exchange: Any, venue: str, symbol: str, client_id: str) -> dict:
    """fetch_order by our client id. bybit: ccxt always sends ``orderId`` (``None`` would go out
    as the string "None" and win over orderLinkId), so pass an empty id; its UTA path also wants
    ``acknowledged``."""
    if venue == "binance":
        return await exchange.fetch_order(None, symbol, {"origClientOrderId": client_id})
    if venue == "bybit":
        return await exchange.fetch_order("", symbol, {"orderLinkId": client_id, "acknowledged": True})
    return await exchange.fetch_order(None, symbol, {"clOrdId": client_id})


async def perp_position(exchange: Any) -> float:
    """Signed position in the BTC perp, in contracts as ccxt reports them."""
    for position in await exchange.fetch_positions([PERP]):
        if position["symbol"] == PERP and position["contracts"]:
            return position["contracts"] * (1 if position["side"] == "long" else -1)
    return 0.0


# ---- markets and market data ----------------------------------------------------------------


@pytest.mark.parametrize("venue", VENUES)
def test_load_markets_precision_and_contract_sizes(peer: ExchangePeer, venue: str) -> None:
    async def loaded(ex: Any) -> dict:
        return ex.markets
    markets = run(peer, venue, loaded)
    assert set(markets) == {"BTC/USDT", "ETH/USDT", "BTC/USDT:USDT", "ETH/USDT:USDT"}
    spot, perp = markets[SPOT], markets[PERP]
    assert spot["spot"] and not spot["contract"]
    assert perp["swap"] and perp["linear"] and perp["settle"] == "USDT"
    expected = {  # (spot amount step, spot tick, perp amount step, perp tick, contract size)
        "binance": (0.00001, 0.01, 0.001, 0.1, 1.0),
        "bybit": (0.000001, 0.1, 0.001, 0.1, 1.0),
        "okx": (0.00000001, 0.1, 0.01, 0.1, 0.01),
    }[venue]
    assert (spot["precision"]["amount"], spot["precision"]["price"], perp["precision"]["amount"],
            perp["precision"]["price"], perp["contractSize"]) == expected
    assert perp["limits"]["amount"]["min"] > 0 and spot["limits"]["amount"]["min"] > 0
    assert markets["ETH/USDT:USDT"]["contractSize"] == (0.1 if venue == "okx" else 1.0)


@pytest.mark.parametrize("venue", VENUES)
def test_balance_ticker_mark_price_and_funding(peer: ExchangePeer, venue: str) -> None:
    peer.set_price(venue, PERP, 61000)
    peer.set_funding_rate(venue, PERP, "0.00025")

    async def scenario(ex: Any) -> None:
        balance = await ex.fetch_balance()
        assert balance["USDT"]["total"] == 100000 and balance["BTC"]["free"] == 1
        ticker = await ex.fetch_ticker(SPOT)
        assert ticker["bid"] < ticker["last"] == 60000 < ticker["ask"]
        if venue == "bybit":  # no fetchMarkPrice: the linear ticker carries it
            mark = (await ex.fetch_ticker(PERP))["markPrice"]
        else:
            mark = (await ex.fetch_mark_price(PERP))["markPrice"]
        assert mark == 61000
        funding = await ex.fetch_funding_rate(PERP)
        assert funding["fundingRate"] == 0.00025
        now = time.time() * 1000
        assert now < funding["fundingTimestamp"] <= now + 8 * 3600 * 1000
    run(peer, venue, scenario)


# ---- orders ---------------------------------------------------------------------------------


@pytest.mark.parametrize("venue", VENUES)
def test_market_order_with_our_client_id_fills_into_position_and_balance(
        peer: ExchangePeer, venue: str) -> None:
    client_id = cid("mkt")

    async def scenario(ex: Any) -> None:
        before = (await ex.fetch_balance(PERP_BALANCE_PARAMS[venue]))["USDT"]["total"]
        order = await create(ex, venue, PERP, "market", "buy", PERP_UNITS[venue], client_id)
        if venue == "binance":  # bybit and okx answer a new order with its ids only
            assert order["status"] == "closed" and order["filled"] == PERP_UNITS[venue]
        assert order["clientOrderId"] == client_id
        fetched = await fetch_by_client_id(ex, venue, PERP, client_id)
        assert (fetched["id"], fetched["clientOrderId"]) == (order["id"], client_id)
        assert fetched["status"] == "closed" and fetched["filled"] == PERP_UNITS[venue]
        assert fetched["average"] == 60000.1  # the ask
        assert await perp_position(ex) == PERP_UNITS[venue]
        after = (await ex.fetch_balance(PERP_BALANCE_PARAMS[venue]))["USDT"]["total"]
        taker = {"binance": 0.0005, "bybit": 0.00055, "okx": 0.0005}[venue]
        fee = 0.01 * 60000.1 * taker
        upnl = 0.01 * (60000 - 60000.1) if venue != "bybit" else 0  # bybit's total is the wallet balance
        assert after == pytest.approx(before - fee + upnl, abs=1e-6)

        spot_id = cid("spot")
        usdt_before = (await ex.fetch_balance())["USDT"]["total"]
        bid = (await ex.fetch_ticker(SPOT))["bid"]
        await create(ex, venue, SPOT, "market", "sell", 0.1, spot_id)
        spot = await fetch_by_client_id(ex, venue, SPOT, spot_id)
        assert spot["status"] == "closed" and spot["filled"] == 0.1 and spot["average"] == bid
        balance = await ex.fetch_balance()
        assert balance["BTC"]["total"] == pytest.approx(0.9)
        # the spot taker fee is 0.1% on all three, taken in USDT from a sell and in BTC from a buy
        assert balance["USDT"]["total"] - usdt_before == pytest.approx(0.1 * bid * 0.999)
        await create(ex, venue, SPOT, "market", "buy", 0.05, cid("buy"))
        assert (await ex.fetch_balance())["BTC"]["total"] == pytest.approx(0.9 + 0.05 * 0.999)
    run(peer, venue, scenario)
    assert peer.position(venue, PERP) == Decimal(str(PERP_UNITS[venue]))
    assert len(peer.requests(venue, "create_order")) == 3


@pytest.mark.parametrize("venue", VENUES)
def test_limit_order_rests_shows_open_cancels_and_fills_when_crossed(peer: ExchangePeer, venue: str) -> None:
    resting, filling = cid("rest"), cid("fill")

    async def scenario(ex: Any) -> None:
        await create(ex, venue, PERP, "limit", "buy", PERP_UNITS[venue], resting, 59000)
        open_orders = await ex.fetch_open_orders(PERP)
        assert [o["clientOrderId"] for o in open_orders] == [resting]
        assert open_orders[0]["status"] == "open" and open_orders[0]["price"] == 59000
        cancelled = await ex.cancel_order(open_orders[0]["id"], PERP)
        assert cancelled["id"] == open_orders[0]["id"]
        assert (await fetch_by_client_id(ex, venue, PERP, resting))["status"] == "canceled"
        assert await ex.fetch_open_orders(PERP) == []

        await create(ex, venue, PERP, "limit", "sell", PERP_UNITS[venue], filling, 61000)
        peer.set_price(venue, PERP, 61000.5)  # the bid (61000.4) crosses the resting sell
        order = await fetch_by_client_id(ex, venue, PERP, filling)
        assert order["status"] == "closed" and order["average"] == 61000
        assert await perp_position(ex) == -PERP_UNITS[venue]
    run(peer, venue, scenario)


@pytest.mark.parametrize("venue", VENUES)
def test_cancel_all_orders(peer: ExchangePeer, venue: str) -> None:
    async def scenario(ex: Any) -> None:
        for price in (58000, 58500):
            await create(ex, venue, PERP, "limit", "buy", PERP_UNITS[venue], cid("all"), price)
        await create(ex, venue, SPOT, "limit", "buy", 0.01, cid("spot"), 50000)
        open_ids = [o["id"] for o in await ex.fetch_open_orders(PERP)]
        assert len(open_ids) == 2
        if venue == "okx":  # ccxt's okx has no cancelAllOrders: cancel the batch by ids
            with pytest.raises(ccxt.NotSupported):
                await ex.cancel_all_orders(PERP)
            await ex.cancel_orders(open_ids, PERP)
        else:
            await ex.cancel_all_orders(PERP)
        assert await ex.fetch_open_orders(PERP) == []
        assert len(await ex.fetch_open_orders(SPOT)) == 1  # other markets untouched
    run(peer, venue, scenario)


@pytest.mark.parametrize("venue", VENUES)
def test_reduce_only(peer: ExchangePeer, venue: str) -> None:
    rejected = {"binance": ccxt.ExchangeError, "bybit": ccxt.InvalidOrder, "okx": ccxt.InvalidOrder}[venue]

    async def scenario(ex: Any) -> None:
        with pytest.raises(rejected) as info:  # nothing to reduce
            await create(ex, venue, PERP, "market", "sell", PERP_UNITS[venue], cid("ro"), reduceOnly=True)
        assert {"binance": "-2022", "bybit": "110017", "okx": "51205"}[venue] in str(info.value)
        await create(ex, venue, PERP, "market", "buy", PERP_UNITS[venue], cid("open"))
        closing = cid("close")
        await create(ex, venue, PERP, "market", "sell", 2 * PERP_UNITS[venue], closing, reduceOnly=True)
        order = await fetch_by_client_id(ex, venue, PERP, closing)
        assert order["filled"] == PERP_UNITS[venue] and order["reduceOnly"] is True
        assert await perp_position(ex) == 0
    run(peer, venue, scenario)


@pytest.mark.parametrize("venue", VENUES)
def test_duplicate_client_order_id(peer: ExchangePeer, venue: str) -> None:
    """binance and okx refuse a client id only while an open order holds it; bybit refuses any
    client id it has seen, so a resent filled market order executes twice on binance/okx only."""
    resting, filled = cid("dup"), cid("twice")
    duplicate_error = ccxt.ExchangeError if venue == "binance" else ccxt.InvalidOrder  # see GOTCHAS
    code = {"binance": "-4116", "bybit": "110072", "okx": "51016"}[venue]

    async def scenario(ex: Any) -> None:
        await create(ex, venue, PERP, "limit", "buy", PERP_UNITS[venue], resting, 58000)
        with pytest.raises(duplicate_error) as info:
            await create(ex, venue, PERP, "limit", "buy", PERP_UNITS[venue], resting, 58000)
        assert code in str(info.value)
        await create(ex, venue, PERP, "market", "buy", PERP_UNITS[venue], filled)
        if venue == "bybit":
            with pytest.raises(ccxt.InvalidOrder):
                await create(ex, venue, PERP, "market", "buy", PERP_UNITS[venue], filled)
        else:
            await create(ex, venue, PERP, "market", "buy", PERP_UNITS[venue], filled)
    run(peer, venue, scenario)
    assert len(peer.orders(venue, resting)) == 1
    assert len(peer.orders(venue, filled)) == (1 if venue == "bybit" else 2)


@pytest.mark.parametrize("venue", VENUES)
def test_client_order_id_formats(peer: ExchangePeer, venue: str) -> None:
    """okx takes 1-32 letters and digits, bybit 36 of letters, digits, - and _, binance 36 of
    those plus . : /; the same id must pass all three."""
    async def scenario(ex: Any) -> None:
        dashed = "bl-" + cid("fmt")
        if venue == "okx":
            with pytest.raises(ccxt.BadRequest, match="51000"):
                await create(ex, venue, PERP, "limit", "buy", PERP_UNITS[venue], dashed, 58000)
        else:
            await create(ex, venue, PERP, "limit", "buy", PERP_UNITS[venue], dashed, 58000)
        with pytest.raises(ccxt.BadRequest):
            await create(ex, venue, PERP, "limit", "buy", PERP_UNITS[venue], "x" * 37, 58000)
    run(peer, venue, scenario)


@pytest.mark.parametrize("venue", VENUES)
def test_set_leverage_and_margin_mode(peer: ExchangePeer, venue: str) -> None:
    async def scenario(ex: Any) -> None:
        await ex.set_leverage(5, PERP)
        if venue == "okx":
            await ex.set_margin_mode("isolated", PERP, {"lever": 5})
        else:
            await ex.set_margin_mode("isolated", PERP)
        if venue == "bybit":  # an unchanged leverage is an error there (110043)
            with pytest.raises(ccxt.BadRequest):
                await ex.set_leverage(5, PERP)
        if venue == "binance":  # ccxt's binance options default throwMarginModeAlreadySet to True
            with pytest.raises(ccxt.MarginModeAlreadySet):
                await ex.set_margin_mode("isolated", PERP)
    run(peer, venue, scenario)
    assert peer.leverage(venue, PERP) == 5
    assert peer.apis[venue].ledger.margin_mode[PERP] == "isolated"


@pytest.mark.parametrize("venue", VENUES)
def test_control_api_balances_and_funding_payments(peer: ExchangePeer, venue: str) -> None:
    wallet = "futures" if venue == "binance" else None
    peer.set_balance(venue, "USDT", 1000, wallet)

    async def scenario(ex: Any) -> None:
        assert (await ex.fetch_balance(PERP_BALANCE_PARAMS[venue]))["USDT"]["total"] == 1000
        await create(ex, venue, PERP, "market", "buy", PERP_UNITS[venue], cid("fund"))
    run(peer, venue, scenario)
    before = peer.balance(venue, "USDT", wallet)
    paid = peer.settle_funding(venue, PERP)  # the long pays 0.01 BTC * 60000 * 0.0001
    assert paid == Decimal("-0.06")
    assert peer.balance(venue, "USDT", wallet) == before + paid


@pytest.mark.parametrize("venue", VENUES)
def test_wrong_key_and_wrong_secret_are_authentication_errors(peer: ExchangePeer, venue: str) -> None:
    async def attempt(credentials: Credentials) -> None:
        async with connected(peer, venue, credentials=credentials) as ex:
            await ex.load_markets()
            with pytest.raises(ccxt.AuthenticationError):
                await ex.fetch_balance()
    asyncio.run(attempt(Credentials(api_key="not-the-key")))
    asyncio.run(attempt(Credentials(secret="not-the-secret")))
    private = [e for e in peer.requests(venue) if e.op not in PUBLIC_OPS]
    assert private and {e.status for e in private} <= {400, 401}


# ---- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "stall"])
@pytest.mark.parametrize("venue", VENUES)
def test_accepted_order_whose_response_is_lost_is_found_once_by_client_id(
        peer: ExchangePeer, venue: str, how: str) -> None:
    client_id = cid("lost")
    peer.drop_response(venue, op="create_order", how=how, stall=1.0)

    async def scenario(ex: Any) -> None:
        expected = ccxt.ExchangeNotAvailable if how == "close" else ccxt.RequestTimeout
        with pytest.raises(expected):
            await create(ex, venue, PERP, "market", "buy", PERP_UNITS[venue], client_id)
        order = await fetch_by_client_id(ex, venue, PERP, client_id)
        assert order["status"] == "closed" and order["clientOrderId"] == client_id
    run(peer, venue, scenario, timeout_ms=300)
    assert len(peer.orders(venue, client_id)) == 1
    assert [e.fault for e in peer.requests(venue, "create_order")] == ["drop"]


@pytest.mark.parametrize("venue", VENUES)
def test_429_with_retry_after_is_a_rate_limit_error(peer: ExchangePeer, venue: str) -> None:
    peer.rate_limit(venue, op=TICKER_OPS, retry_after=2)

    async def scenario(ex: Any) -> None:
        # ccxt binance turns any 429 into DDoSProtection, the others map the body's code to
        # RateLimitExceeded: sibling NetworkError subclasses, so catch both.
        expected = ccxt.DDoSProtection if venue == "binance" else ccxt.RateLimitExceeded
        with pytest.raises(expected):
            await ex.fetch_ticker(SPOT)
        assert ex.last_response_headers["Retry-After"] == "2"
        assert (await ex.fetch_ticker(SPOT))["last"] == 60000
    run(peer, venue, scenario)
    assert [e.status for e in peer.requests(venue) if e.op in TICKER_OPS] == [429, 200]


@pytest.mark.parametrize("venue", VENUES)
def test_burst_of_5xx_is_exchange_not_available_then_recovers(peer: ExchangePeer, venue: str) -> None:
    async def scenario(ex: Any) -> None:
        peer.server_errors(venue, times=3, status=503)  # markets are loaded: the burst hits what follows
        for _ in range(3):
            with pytest.raises(ccxt.ExchangeNotAvailable):
                await ex.fetch_ticker(SPOT)
        assert (await ex.fetch_ticker(SPOT))["last"] == 60000
    run(peer, venue, scenario)
    assert [e.status for e in peer.requests(venue) if e.op in TICKER_OPS] == [503, 503, 503, 200]


@pytest.mark.parametrize("venue", VENUES)
def test_5xx_after_execution_leaves_an_order_to_find(peer: ExchangePeer, venue: str) -> None:
    client_id = cid("5xx")
    peer.server_errors(venue, op="create_order", times=1, status=502, executed=True)

    async def scenario(ex: Any) -> None:
        with pytest.raises(ccxt.NetworkError):
            await create(ex, venue, PERP, "market", "buy", PERP_UNITS[venue], client_id)
        assert (await fetch_by_client_id(ex, venue, PERP, client_id))["filled"] == PERP_UNITS[venue]
    run(peer, venue, scenario)


@pytest.mark.parametrize("venue", VENUES)
def test_partial_fill_is_visible_in_fetch_order(peer: ExchangePeer, venue: str) -> None:
    market_id, limit_id = cid("pm"), cid("pl")
    units = 2 * PERP_UNITS[venue]
    peer.partial_fill(venue, "0.5", times=2)

    async def scenario(ex: Any) -> None:
        await create(ex, venue, PERP, "market", "buy", units, market_id)
        market = await fetch_by_client_id(ex, venue, PERP, market_id)
        assert market["filled"] == units / 2 and market["amount"] == units
        assert market["status"] == {"binance": "expired", "bybit": "canceled", "okx": "canceled"}[venue]
        await create(ex, venue, PERP, "limit", "buy", units, limit_id, 60100)  # crosses the ask
        limit = await fetch_by_client_id(ex, venue, PERP, limit_id)
        assert limit["status"] == "open" and limit["filled"] == units / 2
        assert [o["clientOrderId"] for o in await ex.fetch_open_orders(PERP)] == [limit_id]
        assert await perp_position(ex) == units
    run(peer, venue, scenario)


@pytest.mark.parametrize("venue", VENUES)
def test_insufficient_margin_and_balance(peer: ExchangePeer, venue: str) -> None:
    """bybit and okx map to InsufficientFunds by code. ccxt binance picks its futures error table
    by the production hostname, so on the peer -2019 arrives as a plain ExchangeError."""
    peer.reject_for_funds(venue)
    perp_error = ccxt.ExchangeError if venue == "binance" else ccxt.InsufficientFunds
    code = {"binance": "-2019", "bybit": "110007", "okx": "51008"}[venue]

    async def scenario(ex: Any) -> None:
        with pytest.raises(perp_error) as forced:
            await create(ex, venue, PERP, "market", "buy", PERP_UNITS[venue], cid("im"))
        assert code in str(forced.value)
        with pytest.raises(perp_error):  # 100 BTC at 10x needs 600k USDT of margin
            await create(ex, venue, PERP, "market", "buy", 10000 * PERP_UNITS[venue], cid("big"))
        with pytest.raises(ccxt.InsufficientFunds):  # the spot wallet holds 1 BTC
            await create(ex, venue, SPOT, "market", "sell", 2, cid("spot"))
    run(peer, venue, scenario)
    assert peer.position(venue, PERP) == 0


@pytest.mark.parametrize("mode", ["refuse", "503"])
@pytest.mark.parametrize("venue", VENUES)
def test_venue_down_is_a_network_error_until_it_comes_back(peer: ExchangePeer, venue: str, mode: str) -> None:
    async def scenario(ex: Any) -> None:
        peer.venue_down(venue, mode)
        for _ in range(2):  # the kept-alive connection, then a fresh one
            with pytest.raises(ccxt.NetworkError):
                await ex.fetch_ticker(SPOT)
        peer.venue_up(venue)
        assert (await ex.fetch_ticker(SPOT))["last"] == 60000
    run(peer, venue, scenario)


def test_wiring_never_leaves_loopback(peer: ExchangePeer) -> None:
    for venue in VENUES:
        exchange = make_exchange(peer, venue)
        try:
            assert all(url.startswith(peer.url(venue)) for url in exchange.urls["api"].values())
        finally:
            asyncio.run(exchange.close())
