"""Binance spot (``/api/v3``) and USDⓈ-M futures (``/fapi``) REST, the subset ccxt's async
``binance`` class calls for load_markets, balances, positions, tickers, mark price, funding, orders
and leverage.

Shapes follow Binance's API docs (developers.binance.com: spot "General endpoints", "Trading
endpoints", "Account endpoints"; USDⓈ-M "Exchange Information", "New Order", "Query Order",
"Account Information V3", "Position Information V3", "Mark Price", "Notional and Leverage Brackets",
"Get Income History") and what ccxt 4.5's ``binance.parse_market / parse_order / parse_balance_custom /
parse_position_risk / parse_funding_rate / parse_income / handle_errors`` read. Prices and quantities are strings,
ids and times are JSON numbers; errors are ``{"code": -NNNN, "msg": ...}`` with HTTP 4xx.

Two wallets, as on Binance: the spot account (per-asset free/locked) and the USDⓈ-M futures
account (USDT wallet, cross-margined one-way positions). The futures account's income history
(``/fapi/v1/income``) lists a FUNDING_FEE row per funding settlement and a COMMISSION row (plus a
REALIZED_PNL row when it closed something) per perp fill; transfers are not modelled.
"""

from __future__ import annotations

import hmac
import itertools
import re
from decimal import Decimal
from typing import Any

from .ledger import Instrument, Ledger, Order, Reject, fmt, now_ms
from .venue_common import (ApiRequest, Credentials, Response, VenueApi, VenueError,
                           decimal_param, truthy)

D = Decimal
SPOT, FUTURES = "spot", "futures"
CLIENT_ID = re.compile(r"[.A-Z:/a-z0-9_-]{1,36}")

INSTRUMENTS = [
    Instrument("BTCUSDT", "BTC/USDT", "BTC", "USDT", False, D("0.01"), D("0.00001"), D("0.00001"),
               D("9000"), D("5"), D("0.001"), D("0.001"), SPOT),
    Instrument("ETHUSDT", "ETH/USDT", "ETH", "USDT", False, D("0.01"), D("0.0001"), D("0.0001"),
               D("9000"), D("5"), D("0.001"), D("0.001"), SPOT),
    Instrument("BTCUSDT", "BTC/USDT:USDT", "BTC", "USDT", True, D("0.10"), D("0.001"), D("0.001"),
               D("1000"), D("100"), D("0.0002"), D("0.0005"), FUTURES, max_leverage=125),
    Instrument("ETHUSDT", "ETH/USDT:USDT", "ETH", "USDT", True, D("0.01"), D("0.001"), D("0.001"),
               D("10000"), D("20"), D("0.0002"), D("0.0005"), FUTURES, max_leverage=100),
]
WALLETS = {SPOT: {"USDT": D("100000"), "BTC": D("1"), "ETH": D("10")}, FUTURES: {"USDT": D("100000")}}

STATUS = {"new": "NEW", "partially_filled": "PARTIALLY_FILLED", "filled": "FILLED",
          "canceled": "CANCELED", "expired": "EXPIRED"}
SPOT_REJECTS = {
    "insufficient_balance": (-2010, "Account has insufficient balance for requested action."),
    "lot_size": (-1013, "Filter failure: LOT_SIZE"),
    "price_filter": (-1013, "Filter failure: PRICE_FILTER"),
    "min_notional": (-1013, "Filter failure: NOTIONAL"),
}
FUTURES_REJECTS = {
    "insufficient_margin": (-2019, "Margin is insufficient."),
    "lot_size": (-1111, "Precision is over the maximum defined for this asset."),
    "price_filter": (-4014, "Price not increased by tick size."),
    "reduce_only": (-2022, "ReduceOnly Order is rejected."),
}
DAY_MS = 24 * 3600 * 1000
#: tranId bases: funding rows count from the first, a fill's rows from the second (x10 + kind).
FUNDING_TRAN_IDS, FILL_TRAN_IDS = 3300000000000, 3100000000000
RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
]


def f8(value: Decimal | None) -> str:
    """Binance spot pads amounts to 8 decimals ("0.00100000")."""
    return format((value or D(0)).quantize(D("0.00000001")), "f")


def error(code: int, msg: str, status: int = 400) -> VenueError:
    return VenueError(status, {"code": code, "msg": msg})


class BinanceApi(VenueApi):
    name = "binance"

    def __init__(self, credentials: Credentials) -> None:
        mids = {"BTC/USDT": D("60000"), "ETH/USDT": D("3000"),
                "BTC/USDT:USDT": D("60000"), "ETH/USDT:USDT": D("3000")}
        order_ids = (str(n) for n in itertools.count(8389765600000001))
        super().__init__(Ledger(INSTRUMENTS, WALLETS, mids, order_ids), credentials)
        for market, prefix in ((SPOT, "/api/v3"), (FUTURES, "/fapi/v1")):
            self.add("GET", f"{prefix}/exchangeInfo", "exchange_info", self._exchange_info(market))
            self.add("GET", f"{prefix}/time", "server_time", lambda r: {"serverTime": now_ms()})
            self.add("GET", f"{prefix}/ticker/24hr", "ticker_24hr", self._ticker(market))
            self.add("POST", f"{prefix}/order", "create_order", self._create_order(market), True)
            self.add("GET", f"{prefix}/order", "query_order", self._query_order(market), True)
            self.add("DELETE", f"{prefix}/order", "cancel_order", self._cancel_order(market), True)
            self.add("GET", f"{prefix}/openOrders", "open_orders", self._open_orders(market), True)
        self.add("DELETE", "/api/v3/openOrders", "cancel_all", self._spot_cancel_all, True)
        self.add("DELETE", "/fapi/v1/allOpenOrders", "cancel_all", self._futures_cancel_all, True)
        self.add("GET", "/api/v3/account", "account", self._spot_account, True)
        self.add("GET", "/fapi/v3/account", "account", self._futures_account, True)
        self.add("GET", "/fapi/v3/positionRisk", "position_risk", self._position_risk, True)
        self.add("GET", "/fapi/v1/premiumIndex", "premium_index", self._premium_index)
        self.add("GET", "/fapi/v1/income", "income", self._income, True)
        self.add("GET", "/fapi/v1/leverageBracket", "leverage_bracket", self._leverage_bracket, True)
        self.add("POST", "/fapi/v1/leverage", "set_leverage", self._set_leverage, True)
        self.add("POST", "/fapi/v1/marginType", "set_margin_type", self._set_margin_type, True)

    # ---- protocol ----------------------------------------------------------------------------

    def authenticate(self, request: ApiRequest) -> None:
        """HMAC-SHA256 (hex) of the query string followed by the body, ``signature`` removed,
        as "SIGNED (TRADE, USER_DATA) Endpoint security" describes; X-MBX-APIKEY header."""
        if request.headers.get("X-MBX-APIKEY") != self.credentials.api_key:
            raise error(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        payload = _without_signature(request.query_string) + _without_signature(request.body)
        signature = request.params.get("signature", "")
        if not hmac.compare_digest(self.sign_hex(payload), str(signature).lower()):
            raise error(-1022, "Signature for this request is not valid.")
        timestamp = decimal_param(request.params.get("timestamp"))
        if timestamp is None:
            raise error(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
        recv_window = decimal_param(request.params.get("recvWindow")) or D(5000)
        if timestamp > now_ms() + 1000 or now_ms() - timestamp > recv_window:
            raise error(-1021, "Timestamp for this request is outside of the recvWindow.")

    def rate_limited(self, retry_after: int) -> Response:
        return Response(429, {"code": -1003, "msg": "Too many requests; current limit of IP(127.0.0.1) is "
                              "6000 requests per minute. Please use WebSocket Streams for live "
                              "updates to avoid polling the API."},
                        {"Retry-After": str(retry_after)})

    def not_found(self, request: ApiRequest) -> Response:
        return Response(404, {"code": -5000,
                              "msg": f"Path {request.path}, Method {request.method} is invalid"})

    # ---- lookups -----------------------------------------------------------------------------

    def _inst(self, market: str, venue_id: Any, required: bool = True) -> Instrument | None:
        if venue_id is None:
            if required:
                raise error(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
            return None
        for inst in self.ledger.instruments.values():
            if inst.venue_id == venue_id and inst.perp == (market == FUTURES):
                return inst
        raise error(-1121, "Invalid symbol.")

    def _find(self, market: str, params: dict[str, Any]) -> Order:
        inst = self._inst(market, params.get("symbol"))
        if not params.get("orderId") and not params.get("origClientOrderId"):
            raise error(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, "
                               "but both were empty/null!")
        order = self.ledger.find(inst, order_id=params.get("orderId"),
                                 client_id=params.get("origClientOrderId"))
        if order is None:
            raise error(-2013, "Order does not exist.")
        return order

    # ---- market data -------------------------------------------------------------------------

    def _exchange_info(self, market: str):
        def handler(request: ApiRequest) -> dict:
            symbols = [self._symbol_info(i) for i in self.ledger.instruments.values()
                       if i.perp == (market == FUTURES)]
            info = {"timezone": "UTC", "serverTime": now_ms(), "rateLimits": RATE_LIMITS,
                    "exchangeFilters": [], "symbols": symbols}
            if market == FUTURES:
                info["assets"] = [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}]
            return info
        return handler

    @staticmethod
    def _symbol_info(inst: Instrument) -> dict:
        if not inst.perp:
            return {
                "symbol": inst.venue_id, "status": "TRADING", "baseAsset": inst.base,
                "baseAssetPrecision": 8, "quoteAsset": inst.quote, "quotePrecision": 8,
                "quoteAssetPrecision": 8, "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT",
                               "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"],
                "icebergAllowed": True, "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True,
                "allowTrailingStop": True, "cancelReplaceAllowed": True,
                "isSpotTradingAllowed": True, "isMarginTradingAllowed": True,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": f8(inst.tick),
                     "maxPrice": "1000000.00000000", "tickSize": f8(inst.tick)},
                    {"filterType": "LOT_SIZE", "minQty": f8(inst.min_qty), "maxQty": f8(inst.max_qty),
                     "stepSize": f8(inst.step)},
                    {"filterType": "NOTIONAL", "minNotional": f8(inst.min_notional),
                     "applyMinToMarket": True, "maxNotional": "9000000.00000000",
                     "applyMaxToMarket": False, "avgPriceMins": 5},
                ],
                "permissions": [], "permissionSets": [["SPOT", "MARGIN"]],
                "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
            }
        return {
            "symbol": inst.venue_id, "pair": inst.venue_id, "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING",
            "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
            "baseAsset": inst.base, "quoteAsset": inst.quote, "marginAsset": inst.quote,
            "pricePrecision": -inst.tick.normalize().as_tuple().exponent,
            "quantityPrecision": -inst.step.normalize().as_tuple().exponent,
            "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
            "settlePlan": 0, "triggerProtect": "0.0500", "liquidationFee": "0.012500",
            "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": fmt(inst.tick), "maxPrice": "4529764",
                 "tickSize": fmt(inst.tick)},
                {"filterType": "LOT_SIZE", "minQty": fmt(inst.min_qty), "maxQty": fmt(inst.max_qty),
                 "stepSize": fmt(inst.step)},
                {"filterType": "MARKET_LOT_SIZE", "minQty": fmt(inst.min_qty),
                 "maxQty": fmt(inst.max_qty / 8), "stepSize": fmt(inst.step)},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MIN_NOTIONAL", "notional": fmt(inst.min_notional)},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                 "multiplierDecimal": "4"},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                           "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        }

    def _ticker(self, market: str):
        def one(inst: Instrument) -> dict:
            mid = self.ledger.mid[inst.symbol]
            last = fmt(mid) if inst.perp else f8(mid)
            ticker = {"symbol": inst.venue_id, "priceChange": "0", "priceChangePercent": "0",
                      "weightedAvgPrice": last, "lastPrice": last, "lastQty": "0.1",
                      "openPrice": last, "highPrice": last, "lowPrice": last, "volume": "1000",
                      "quoteVolume": fmt(mid * 1000), "openTime": now_ms() - 86400000,
                      "closeTime": now_ms(), "firstId": 1, "lastId": 1000, "count": 1000}
            if not inst.perp:  # the spot ticker also carries the touch
                ticker.update(prevClosePrice=last, bidPrice=f8(self.ledger.bid(inst)), bidQty="5.00000000",
                              askPrice=f8(self.ledger.ask(inst)), askQty="5.00000000")
            return ticker

        def handler(request: ApiRequest) -> Any:
            inst = self._inst(market, request.params.get("symbol"), required=False)
            if inst is not None:
                return one(inst)
            return [one(i) for i in self.ledger.instruments.values() if i.perp == (market == FUTURES)]
        return handler

    def _premium_index(self, request: ApiRequest) -> Any:
        """USDⓈ-M "Mark Price": mark, index, last funding rate and next funding time (ms numbers)."""
        def one(inst: Instrument) -> dict:
            mid = fmt(self.ledger.mid[inst.symbol])
            return {"symbol": inst.venue_id, "markPrice": mid, "indexPrice": mid,
                    "estimatedSettlePrice": mid,
                    "lastFundingRate": fmt(self.ledger.funding_rate[inst.symbol]),
                    "interestRate": "0.00010000", "nextFundingTime": self.ledger.next_funding_ms(),
                    "time": now_ms()}
        inst = self._inst(FUTURES, request.params.get("symbol"), required=False)
        if inst is not None:
            return one(inst)
        return [one(i) for i in self.ledger.instruments.values() if i.perp]

    # ---- accounts ----------------------------------------------------------------------------

    def _spot_account(self, request: ApiRequest) -> dict:
        ledger = self.ledger
        balances = [{"asset": asset, "free": f8(ledger.available(SPOT, asset)),
                     "locked": f8(ledger.locked(SPOT, asset))} for asset in ledger.balances[SPOT]]
        return {"makerCommission": 10, "takerCommission": 10, "buyerCommission": 0,
                "sellerCommission": 0,
                "commissionRates": {"maker": "0.00100000", "taker": "0.00100000",
                                    "buyer": "0.00000000", "seller": "0.00000000"},
                "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
                "requireSelfTradePrevention": False, "preventSor": False, "updateTime": now_ms(),
                "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"], "uid": 354937868}

    def _futures_account(self, request: ApiRequest) -> dict:
        """USDⓈ-M "Account Information V3" (ccxt fetch_balance with type swap)."""
        ledger = self.ledger
        wallet = ledger.balances[FUTURES]["USDT"]
        upnl = ledger.equity(FUTURES, "USDT") - wallet
        position_im, order_im = ledger.initial_margin(FUTURES, "USDT")
        available = fmt(ledger.available(FUTURES, "USDT"))
        asset = {"asset": "USDT", "walletBalance": fmt(wallet), "unrealizedProfit": fmt(upnl),
                 "marginBalance": fmt(wallet + upnl), "maintMargin": fmt(position_im / 25),
                 "initialMargin": fmt(position_im + order_im), "positionInitialMargin": fmt(position_im),
                 "openOrderInitialMargin": fmt(order_im), "crossWalletBalance": fmt(wallet),
                 "crossUnPnl": fmt(upnl), "availableBalance": available,
                 "maxWithdrawAmount": available, "updateTime": now_ms()}
        return {"totalInitialMargin": fmt(position_im + order_im), "totalMaintMargin": fmt(position_im / 25),
                "totalWalletBalance": fmt(wallet), "totalUnrealizedProfit": fmt(upnl),
                "totalMarginBalance": fmt(wallet + upnl), "totalPositionInitialMargin": fmt(position_im),
                "totalOpenOrderInitialMargin": fmt(order_im), "totalCrossWalletBalance": fmt(wallet),
                "totalCrossUnPnl": fmt(upnl), "availableBalance": available,
                "maxWithdrawAmount": available, "assets": [asset],
                "positions": [self._position(i) for i in self._active_perps()]}

    def _income_rows(self) -> list[dict]:
        """The futures account's income history, oldest first."""
        rows = []
        for pay in self.ledger.fundings:
            rows.append({"symbol": pay.inst.venue_id, "incomeType": "FUNDING_FEE", "income": f8(pay.amount),
                         "asset": pay.inst.quote, "info": "FUNDING_FEE", "time": pay.ts,
                         "tranId": FUNDING_TRAN_IDS + pay.seq, "tradeId": ""})
        for order in self.ledger.orders:
            inst = order.inst
            if not inst.perp:
                continue
            for fill in order.fills:
                common = {"symbol": inst.venue_id, "asset": inst.quote, "time": fill.ts,
                          "tradeId": str(fill.trade_id)}
                if fill.realized:
                    rows.append({**common, "incomeType": "REALIZED_PNL", "income": f8(fill.realized),
                                 "info": "REALIZED_PNL", "tranId": FILL_TRAN_IDS + fill.trade_id * 10 + 1})
                rows.append({**common, "incomeType": "COMMISSION", "income": f8(-fill.fee),
                             "info": "COMMISSION", "tranId": FILL_TRAN_IDS + fill.trade_id * 10 + 2})
        rows.sort(key=lambda row: (row["time"], row["tranId"]))
        return rows

    def _income(self, request: ApiRequest) -> list:
        """"Get Income History": startTime / endTime inclusive; neither sent = the last 7 days;
        oldest first, the first ``limit`` (default 100, max 1000) of the range."""
        params = request.params
        inst = self._inst(FUTURES, params.get("symbol"), required=False)
        income_type = params.get("incomeType")
        start, end = decimal_param(params.get("startTime")), decimal_param(params.get("endTime"))
        limit = decimal_param(params.get("limit")) or D(100)
        if not 1 <= limit <= 1000 or limit != limit.to_integral_value():
            raise error(-1130, "Data sent for parameter 'limit' is not valid.")
        if start is None and end is None:
            start = D(now_ms() - 7 * DAY_MS)
        rows = [row for row in self._income_rows()
                if (inst is None or row["symbol"] == inst.venue_id)
                and income_type in (None, row["incomeType"])
                and (start is None or row["time"] >= start) and (end is None or row["time"] <= end)]
        return rows[:int(limit)]

    def _active_perps(self) -> list[Instrument]:
        """V3 lists only symbols with a position or open orders."""
        return [i for i in self.ledger.instruments.values()
                if i.perp and (self.ledger.positions[i.symbol].qty or self.ledger.open_orders(i))]

    def _position(self, inst: Instrument) -> dict:
        """USDⓈ-M "Position Information V3" entry (one-way mode: positionSide BOTH)."""
        ledger = self.ledger
        pos = ledger.positions[inst.symbol]
        mark = ledger.mid[inst.symbol]
        im = ledger.position_margin(inst)
        return {"symbol": inst.venue_id, "positionSide": "BOTH", "positionAmt": fmt(pos.qty),
                "entryPrice": fmt(pos.entry), "breakEvenPrice": fmt(pos.entry), "markPrice": fmt(mark),
                "unRealizedProfit": fmt(ledger.unrealized(inst)), "liquidationPrice": "0",
                "isolatedMargin": "0", "notional": fmt(pos.qty * mark), "marginAsset": inst.quote,
                "isolatedWallet": "0", "initialMargin": fmt(im + ledger.order_margin(inst)),
                "maintMargin": fmt(im / 25), "positionInitialMargin": fmt(im),
                "openOrderInitialMargin": fmt(ledger.order_margin(inst)), "adl": 0,
                "bidNotional": "0", "askNotional": "0", "updateTime": pos.updated_ms}

    def _position_risk(self, request: ApiRequest) -> list:
        inst = self._inst(FUTURES, request.params.get("symbol"), required=False)
        return [self._position(i) for i in self._active_perps() if inst is None or i is inst]

    def _leverage_bracket(self, request: ApiRequest) -> list:
        brackets = [(125, 50000, 0, "0.004"), (100, 600000, 50000, "0.005"), (75, 3000000, 600000, "0.0065")]
        return [{"symbol": inst.venue_id, "notionalCoef": 1.0, "brackets": [
            {"bracket": n + 1, "initialLeverage": min(lev, inst.max_leverage), "notionalCap": cap,
             "notionalFloor": floor, "maintMarginRatio": float(ratio), "cum": 0.0}
            for n, (lev, cap, floor, ratio) in enumerate(brackets)]}
            for inst in self.ledger.instruments.values() if inst.perp]

    def _set_leverage(self, request: ApiRequest) -> dict:
        inst = self._inst(FUTURES, request.params.get("symbol"))
        leverage = int(request.params.get("leverage", 0))
        if not 1 <= leverage <= inst.max_leverage:
            raise error(-4028, f"Leverage {leverage} is not valid")
        self.ledger.leverage[inst.symbol] = leverage
        return {"leverage": leverage, "maxNotionalValue": "80000000", "symbol": inst.venue_id}

    def _set_margin_type(self, request: ApiRequest) -> dict:
        inst = self._inst(FUTURES, request.params.get("symbol"))
        mode = {"CROSSED": "cross", "ISOLATED": "isolated"}.get(str(request.params.get("marginType")))
        if mode is None:
            raise error(-1102, "Mandatory parameter 'marginType' was not sent, was empty/null, or malformed.")
        if self.ledger.margin_mode[inst.symbol] == mode:
            raise error(-4046, "No need to change margin type.")
        if self.ledger.positions[inst.symbol].qty or self.ledger.open_orders(inst):
            raise error(-4048, "Margin type cannot be changed if there exists position.")
        self.ledger.margin_mode[inst.symbol] = mode
        return {"code": 200, "msg": "success"}

    # ---- orders ------------------------------------------------------------------------------

    def _order_json(self, order: Order) -> dict:
        """The order as "Query Order" returns it (spot and USDⓈ-M differ)."""
        inst = order.inst
        common = {"symbol": inst.venue_id, "orderId": int(order.order_id),
                  "clientOrderId": order.client_id, "status": STATUS[order.status],
                  "timeInForce": order.extra.get("timeInForce", "GTC"), "type": order.type.upper(),
                  "side": order.side.upper(), "time": order.created_ms, "updateTime": order.updated_ms}
        if inst.perp:
            return {**common, "price": fmt(order.price or D(0)), "avgPrice": fmt(order.avg_price),
                    "origQty": fmt(order.qty), "executedQty": fmt(order.filled),
                    "cumQty": fmt(order.filled), "cumQuote": fmt(order.cum_quote),
                    "reduceOnly": order.reduce_only, "closePosition": False, "positionSide": "BOTH",
                    "stopPrice": "0", "workingType": "CONTRACT_PRICE", "priceProtect": False,
                    "origType": order.type.upper(), "priceMatch": "NONE",
                    "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0}
        return {**common, "orderListId": -1, "price": f8(order.price), "origQty": f8(order.qty),
                "executedQty": f8(order.filled), "cummulativeQuoteQty": f8(order.cum_quote),
                "stopPrice": f8(None), "icebergQty": f8(None), "isWorking": True,
                "workingTime": order.created_ms, "origQuoteOrderQty": f8(order.quote_qty),
                "selfTradePreventionMode": "EXPIRE_MAKER"}

    def _create_order(self, market: str):
        def handler(request: ApiRequest) -> dict:
            params = request.params
            inst = self._inst(market, params.get("symbol"))
            side, kind = str(params.get("side", "")).lower(), str(params.get("type", "")).lower()
            if side not in ("buy", "sell"):
                raise error(-1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.")
            if kind not in ("market", "limit"):
                raise error(-1116, "Invalid orderType.")
            if market == SPOT and "reduceOnly" in params:
                raise error(-1104, "Not all sent parameters were read; "
                                   "read '9' parameter(s) but was sent '10'.")
            client_id = params.get("newClientOrderId") or f"x-peer{self.ledger.new_order_id()}"
            if not CLIENT_ID.fullmatch(client_id):
                raise error(-1100, "Illegal characters found in parameter 'newClientOrderId'; legal "
                                   "range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
            if any(o.client_id == client_id for o in self.ledger.open_orders(inst)):
                raise (error(-4116, "ClientOrderId is duplicated.") if inst.perp
                       else error(-2010, "Duplicate order sent."))
            price = decimal_param(params.get("price"))
            if kind == "limit" and (price is None or "timeInForce" not in params):
                raise error(-1102, "Mandatory parameter 'price' or 'timeInForce' was not sent, "
                                   "was empty/null, or malformed.")
            quote_qty = None
            if not inst.perp and kind == "market":  # ccxt sends quoteOrderQty for a priced market buy
                quote_qty = decimal_param(params.get("quoteOrderQty"))
            order = Order(self.ledger.new_order_id(), client_id, inst, side, kind,
                          decimal_param(params.get("quantity")) or D(0), price if kind == "limit" else None,
                          truthy(params.get("reduceOnly")), now_ms(), quote_qty=quote_qty,
                          extra={"timeInForce": params.get("timeInForce", "GTC")})
            try:
                self.ledger.place(order)
            except Reject as reject:
                code, msg = (FUTURES_REJECTS if inst.perp else SPOT_REJECTS).get(
                    reject.reason, (-1013, f"Filter failure: {reject.reason}"))
                if reject.reason == "min_notional" and inst.perp:
                    code, msg = -4164, (f"Order's notional must be no smaller than "
                                        f"{fmt(inst.min_notional)} (unless you choose reduce only).")
                raise error(code, msg)
            return self._new_order_response(order, str(params.get("newOrderRespType", "")))
        return handler

    def _new_order_response(self, order: Order, resp_type: str) -> dict:
        body = self._order_json(order)
        if order.inst.perp:  # USDⓈ-M answers like Query Order, without "time"
            body.pop("time")
            return body
        ack = {"symbol": body["symbol"], "orderId": body["orderId"], "orderListId": -1,
               "clientOrderId": order.client_id, "transactTime": order.created_ms}
        if resp_type == "ACK":
            return ack
        result = {**ack, **{k: body[k] for k in (
            "price", "origQty", "executedQty", "origQuoteOrderQty", "cummulativeQuoteQty", "status",
            "timeInForce", "type", "side", "workingTime", "selfTradePreventionMode")}}
        if resp_type == "RESULT":
            return result
        result["fills"] = [{"price": f8(f.price), "qty": f8(f.qty), "commission": f8(f.fee),
                            "commissionAsset": f.fee_asset, "tradeId": f.trade_id} for f in order.fills]
        return result

    def _query_order(self, market: str):
        def handler(request: ApiRequest) -> dict:
            return self._order_json(self._find(market, request.params))
        return handler

    def _open_orders(self, market: str):
        def handler(request: ApiRequest) -> list:
            inst = self._inst(market, request.params.get("symbol"), required=False)
            return [self._order_json(o) for o in self.ledger.open_orders(inst)
                    if o.inst.perp == (market == FUTURES)]
        return handler

    def _cancel_order(self, market: str):
        def handler(request: ApiRequest) -> dict:
            try:
                order = self._find(market, request.params)
            except VenueError:
                order = None
            if order is None or not order.is_open:
                raise error(-2011, "Unknown order sent.")
            self.ledger.cancel(order)
            return self._cancel_json(order, request.params.get("newClientOrderId"))
        return handler

    def _cancel_json(self, order: Order, cancel_client_id: Any = None) -> dict:
        body = self._order_json(order)
        if order.inst.perp:
            return body
        # Spot answers with the cancel request's own client id; the order's is origClientOrderId.
        keys = ("symbol", "orderId", "orderListId", "price", "origQty", "executedQty",
                "cummulativeQuoteQty", "status", "timeInForce", "type", "side", "selfTradePreventionMode")
        return {**{k: body[k] for k in keys}, "origClientOrderId": order.client_id,
                "clientOrderId": cancel_client_id or f"peer-cancel-{order.order_id}",
                "transactTime": now_ms()}

    def _spot_cancel_all(self, request: ApiRequest) -> list:
        inst = self._inst(SPOT, request.params.get("symbol"))
        orders = self.ledger.open_orders(inst)
        if not orders:
            raise error(-2011, "Unknown order sent.")
        for order in orders:
            self.ledger.cancel(order)
        return [self._cancel_json(o) for o in orders]

    def _futures_cancel_all(self, request: ApiRequest) -> dict:
        inst = self._inst(FUTURES, request.params.get("symbol"))
        for order in self.ledger.open_orders(inst):
            self.ledger.cancel(order)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}


def _without_signature(text: str) -> str:
    return "&".join(part for part in text.split("&") if part and not part.startswith("signature="))
