"""Bybit v5 REST for a unified trading account (UTA 2.0), the subset ccxt's async ``bybit`` class
calls for load_markets, balances, positions, tickers (mark price and funding ride on the linear
ticker), orders, leverage, margin mode and the execution list (trades and funding settlements).

Shapes follow Bybit's v5 docs (bybit-exchange.github.io/docs/v5: market/instrument,
market/tickers, account/wallet-balance, position, order/create-order, order/open-order,
order/cancel-order, order/cancel-all, order/execution, position/leverage, account/set-margin-mode,
user/apikey-info, account/account-info, error codes) and what ccxt 4.5's ``bybit.fetch_spot_markets /
fetch_future_markets / parse_balance / parse_position / parse_order / is_unified_enabled /
parse_income / handle_errors`` read. Every answer is the ``{"retCode", "retMsg", "result", "retExtInfo", "time"}``
envelope; numbers and times are strings; business errors come with HTTP 200 and a non-zero retCode.

One unified wallet settles spot and linear perps.

A funding settlement is an execution with execType "Funding" (ccxt's ``fetch_funding_history``
reads them from ``/v5/execution/list``): side is the position's side, execQty its size, execPrice
and markPrice the mark, feeRate the funding rate from the position's side (negated for Sell, as
the transaction log documents it) and execFee = execValue x feeRate, a fee: positive when the
account paid, negative when it received.
"""

from __future__ import annotations

import hmac
import itertools
import re
import uuid
from decimal import Decimal
from typing import Any

from .ledger import FundingPayment, Instrument, Ledger, Order, Reject, floor_to, fmt, now_ms
from .venue_common import ApiRequest, Credentials, Response, VenueApi, VenueError, decimal_param, truthy

D = Decimal
UNIFIED = "unified"
DAY_MS = 24 * 3600 * 1000
LINK_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")

INSTRUMENTS = [
    Instrument("BTCUSDT", "BTC/USDT", "BTC", "USDT", False, D("0.1"), D("0.000001"), D("0.000048"),
               D("71.73956243"), D("1"), D("0.001"), D("0.001"), UNIFIED),
    Instrument("ETHUSDT", "ETH/USDT", "ETH", "USDT", False, D("0.01"), D("0.00001"), D("0.00062"),
               D("1229.2336343"), D("1"), D("0.001"), D("0.001"), UNIFIED),
    Instrument("BTCUSDT", "BTC/USDT:USDT", "BTC", "USDT", True, D("0.10"), D("0.001"), D("0.001"),
               D("1190"), D("5"), D("0.0002"), D("0.00055"), UNIFIED),
    Instrument("ETHUSDT", "ETH/USDT:USDT", "ETH", "USDT", True, D("0.01"), D("0.01"), D("0.01"),
               D("7240"), D("5"), D("0.0002"), D("0.00055"), UNIFIED),
]
WALLETS = {UNIFIED: {"USDT": D("100000"), "BTC": D("1"), "ETH": D("10")}}

STATUS = {"new": "New", "partially_filled": "PartiallyFilled", "filled": "Filled",
          "canceled": "Cancelled"}
SPOT_REJECTS = {
    "insufficient_balance": (170131, "Insufficient balance."),
    "lot_size": (170137, "Order quantity has too many decimals."),
    "price_filter": (170134, "Order price has too many decimals."),
    "min_notional": (170140, "Order value exceeded lower limit."),
}
LINEAR_REJECTS = {
    "insufficient_margin": (110007, "ab not enough for new order"),
    "lot_size": (10001, "Qty invalid"),
    "price_filter": (10001, "Price invalid"),
    "min_notional": (110094, "Order does not meet minimum order value 5USDT"),
    "reduce_only": (110017, "current position is zero, cannot fix reduce-only order qty"),
}


def envelope(result: Any, code: int = 0, msg: str = "OK") -> dict:
    return {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": now_ms()}


def error(code: int, msg: str, status: int = 200) -> VenueError:
    return VenueError(status, envelope({}, code, msg))


class BybitApi(VenueApi):
    name = "bybit"

    def __init__(self, credentials: Credentials) -> None:
        mids = {"BTC/USDT": D("60000"), "ETH/USDT": D("3000"),
                "BTC/USDT:USDT": D("60000"), "ETH/USDT:USDT": D("3000")}
        order_ids = (str(uuid.UUID(int=n)) for n in itertools.count(0x5EE5_0000_0000_0000_0001))
        super().__init__(Ledger(INSTRUMENTS, WALLETS, mids, order_ids), credentials)
        self.margin_mode = "REGULAR_MARGIN"
        self.add("GET", "/v5/market/time", "server_time", self._time)
        self.add("GET", "/v5/market/instruments-info", "instruments_info", self._instruments)
        self.add("GET", "/v5/market/tickers", "tickers", self._tickers)
        self.add("GET", "/v5/user/query-api", "query_api", self._query_api, True)
        self.add("GET", "/v5/account/info", "account_info", self._account_info, True)
        self.add("GET", "/v5/account/wallet-balance", "wallet_balance", self._wallet_balance, True)
        self.add("GET", "/v5/position/list", "position_list", self._position_list, True)
        self.add("POST", "/v5/order/create", "create_order", self._create_order, True)
        self.add("GET", "/v5/order/realtime", "order_realtime", self._orders(history=False), True)
        self.add("GET", "/v5/order/history", "order_history", self._orders(history=True), True)
        self.add("POST", "/v5/order/cancel", "cancel_order", self._cancel_order, True)
        self.add("POST", "/v5/order/cancel-all", "cancel_all", self._cancel_all, True)
        self.add("GET", "/v5/execution/list", "execution_list", self._execution_list, True)
        self.add("POST", "/v5/position/set-leverage", "set_leverage", self._set_leverage, True)
        self.add("POST", "/v5/account/set-margin-mode", "set_margin_mode", self._set_margin_mode, True)

    # ---- protocol ----------------------------------------------------------------------------

    def authenticate(self, request: ApiRequest) -> None:
        """v5 "Integration Guidance": HMAC-SHA256 (hex) of timestamp + api key + recv window +
        (query string for GET | raw JSON body for POST), in the X-BAPI-* headers."""
        headers = request.headers
        if headers.get("X-BAPI-API-KEY") != self.credentials.api_key:
            raise error(10003, "API key is invalid.", 401)
        timestamp, window = headers.get("X-BAPI-TIMESTAMP", ""), headers.get("X-BAPI-RECV-WINDOW", "5000")
        signed = request.query_string if request.method == "GET" else request.body
        origin = f"{timestamp}{self.credentials.api_key}{window}{signed}"
        if not hmac.compare_digest(self.sign_hex(origin), headers.get("X-BAPI-SIGN", "")):
            raise error(10004, f"error sign! origin_string[{origin}]", 401)
        if not timestamp.isdigit() or abs(now_ms() - int(timestamp)) > int(window):
            raise error(10002, f"invalid request, please check your server timestamp or recv_window "
                               f"param. req_timestamp[{timestamp}],server_timestamp[{now_ms()}],"
                               f"recv_window[{window}]")

    def rate_limited(self, retry_after: int) -> Response:
        return Response(429, envelope({}, 10006, "Too many visits!"),
                        {"Retry-After": str(retry_after), "X-Bapi-Limit-Status": "0",
                         "X-Bapi-Limit": "10",
                         "X-Bapi-Limit-Reset-Timestamp": str(now_ms() + retry_after * 1000)})

    def not_found(self, request: ApiRequest) -> Response:
        return Response(404, "<html><body><h1>404 Not Found</h1></body></html>")

    # ---- lookups -----------------------------------------------------------------------------

    def _inst(self, params: dict[str, Any], required: bool = True) -> Instrument | None:
        category = params.get("category")
        if category not in ("spot", "linear"):
            raise error(10001, "params error: Category is invalid")
        symbol = params.get("symbol")
        if symbol is None:
            if required:
                raise error(10001, "params error: symbol invalid")
            return None
        for inst in self.ledger.instruments.values():
            if inst.venue_id == symbol and inst.perp == (category == "linear"):
                return inst
        raise error(10001, "params error: symbol invalid")

    def _in_category(self, params: dict[str, Any]) -> list[Instrument]:
        inst = self._inst(params, required=False)
        linear = params.get("category") == "linear"
        return [i for i in self.ledger.instruments.values()
                if i.perp == linear and (inst is None or i is inst)]

    # ---- market data -------------------------------------------------------------------------

    def _time(self, request: ApiRequest) -> dict:
        now = now_ms()
        return envelope({"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}, msg="OK")

    def _instruments(self, request: ApiRequest) -> dict:
        params = request.params
        listed = [] if params.get("status") == "PreLaunch" else self._in_category(params)
        return envelope({"category": params["category"], "list": [self._instrument_info(i) for i in listed],
                         "nextPageCursor": ""})

    @staticmethod
    def _instrument_info(inst: Instrument) -> dict:
        if not inst.perp:
            return {"symbol": inst.venue_id, "baseCoin": inst.base, "quoteCoin": inst.quote,
                    "innovation": "0", "status": "Trading", "marginTrading": "utaOnly", "stTag": "0",
                    "lotSizeFilter": {"basePrecision": fmt(inst.step), "quotePrecision": "0.00000001",
                                      "minOrderQty": fmt(inst.min_qty), "maxOrderQty": fmt(inst.max_qty),
                                      "minOrderAmt": fmt(inst.min_notional), "maxOrderAmt": "2000000"},
                    "priceFilter": {"tickSize": fmt(inst.tick)},
                    "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"}}
        return {"symbol": inst.venue_id, "contractType": "LinearPerpetual", "status": "Trading",
                "baseCoin": inst.base, "quoteCoin": inst.quote, "launchTime": "1585526400000",
                "deliveryTime": "0", "deliveryFeeRate": "",
                "priceScale": str(-inst.tick.normalize().as_tuple().exponent),
                "leverageFilter": {"minLeverage": "1", "maxLeverage": f"{inst.max_leverage}.00",
                                   "leverageStep": "0.01"},
                "priceFilter": {"minPrice": fmt(inst.tick), "maxPrice": "1999999.80",
                                "tickSize": fmt(inst.tick)},
                "lotSizeFilter": {"maxOrderQty": fmt(inst.max_qty), "minOrderQty": fmt(inst.min_qty),
                                  "qtyStep": fmt(inst.step), "postOnlyMaxOrderQty": fmt(inst.max_qty),
                                  "maxMktOrderQty": fmt(inst.max_qty / 2),
                                  "minNotionalValue": fmt(inst.min_notional)},
                "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin": inst.quote,
                "copyTrading": "both", "upperFundingRate": "0.00375", "lowerFundingRate": "-0.00375",
                "isPreListing": False, "preListingInfo": None}

    def _tickers(self, request: ApiRequest) -> dict:
        """market/tickers: the linear ticker carries markPrice, fundingRate and nextFundingTime."""
        ledger = self.ledger
        rows = []
        for inst in self._in_category(request.params):
            mid = fmt(ledger.mid[inst.symbol])
            row = {"symbol": inst.venue_id, "lastPrice": mid, "bid1Price": fmt(ledger.bid(inst)),
                   "bid1Size": "5", "ask1Price": fmt(ledger.ask(inst)), "ask1Size": "5",
                   "prevPrice24h": mid, "price24hPcnt": "0", "highPrice24h": mid, "lowPrice24h": mid,
                   "turnover24h": fmt(ledger.mid[inst.symbol] * 1000), "volume24h": "1000"}
            if inst.perp:
                row.update(indexPrice=mid, markPrice=mid, prevPrice1h=mid, openInterest="50000",
                           openInterestValue=fmt(ledger.mid[inst.symbol] * 50000),
                           fundingRate=fmt(ledger.funding_rate[inst.symbol]),
                           nextFundingTime=str(ledger.next_funding_ms()), predictedDeliveryPrice="",
                           basisRate="", deliveryFeeRate="", deliveryTime="0", basis="")
            else:
                row["usdIndexPrice"] = mid
            rows.append(row)
        return envelope({"category": request.params["category"], "list": rows})

    # ---- account -----------------------------------------------------------------------------

    def _query_api(self, request: ApiRequest) -> dict:
        """user/apikey-info: ccxt reads ``unified``/``uta`` to pick the unified-account code paths."""
        return envelope({"id": "13770661", "note": "basis-live test peer", "apiKey": self.credentials.api_key,
                         "readOnly": 0, "secret": "", "ips": ["*"], "type": 1, "deadlineDay": -1,
                         "expiredAt": "", "createdAt": "2025-01-01T00:00:00Z", "unified": 0, "uta": 1,
                         "userID": 24600000, "inviterID": 0, "vipLevel": "No VIP", "mktMakerLevel": "0",
                         "affiliateID": 0, "rsaPublicKey": "", "isMaster": True, "parentUid": "0",
                         "permissions": {"ContractTrade": ["Order", "Position"], "Spot": ["SpotTrade"],
                                         "Wallet": ["AccountTransfer"], "Options": [],
                                         "Derivatives": [], "Exchange": [], "NFT": []}})

    def _account_info(self, request: ApiRequest) -> dict:
        return envelope({"marginMode": self.margin_mode, "updatedTime": str(now_ms()),
                         "unifiedMarginStatus": 6, "dcpStatus": "OFF", "timeWindow": 10,
                         "smpGroup": 0, "isMasterTrader": False, "spotHedgingStatus": "OFF"})

    def _wallet_balance(self, request: ApiRequest) -> dict:
        """account/wallet-balance for UNIFIED. availableToWithdraw is "" (deprecated for UTA), so
        ccxt derives ``used`` from locked + totalPositionIM + totalOrderIM."""
        if request.params.get("accountType") != "UNIFIED":
            raise error(10001, "accountType only support UNIFIED.")
        ledger = self.ledger
        coins, total_equity, total_wallet, total_upl, total_im = [], D(0), D(0), D(0), D(0)
        for coin, balance in ledger.balances[UNIFIED].items():
            price = D(1) if coin == "USDT" else ledger.mid[f"{coin}/USDT"]
            equity = ledger.equity(UNIFIED, coin)
            position_im, order_im = ledger.initial_margin(UNIFIED, coin)
            perps = ledger.perps_in(UNIFIED, coin)
            realized = sum((ledger.positions[i.symbol].realized for i in perps), D(0))
            coins.append({"coin": coin, "equity": fmt(equity), "usdValue": fmt(equity * price),
                          "walletBalance": fmt(balance), "locked": fmt(ledger.locked(UNIFIED, coin)),
                          "spotHedgingQty": "0", "borrowAmount": "0", "accruedInterest": "0",
                          "totalOrderIM": fmt(order_im), "totalPositionIM": fmt(position_im),
                          "totalPositionMM": fmt(position_im / 25), "unrealisedPnl": fmt(equity - balance),
                          "cumRealisedPnl": fmt(realized), "bonus": "0", "marginCollateral": True,
                          "collateralSwitch": True, "availableToWithdraw": "", "availableToBorrow": ""})
            total_equity += equity * price
            total_wallet += balance * price
            total_upl += equity - balance
            total_im += position_im + order_im
        account = {"accountType": "UNIFIED", "totalEquity": fmt(total_equity),
                   "totalWalletBalance": fmt(total_wallet), "totalMarginBalance": fmt(total_equity),
                   "totalAvailableBalance": fmt(ledger.available(UNIFIED, "USDT")),
                   "totalPerpUPL": fmt(total_upl), "totalInitialMargin": fmt(total_im),
                   "totalMaintenanceMargin": fmt(total_im / 25), "accountIMRate": "0",
                   "accountMMRate": "0", "accountLTV": "0", "coin": coins}
        return envelope({"list": [account]})

    def _position_list(self, request: ApiRequest) -> dict:
        """position/list: by symbol the row is there even when flat (side ""); by settleCoin only
        open positions are listed."""
        params = request.params
        if params.get("category") != "linear":
            raise error(10001, "params error: Category is invalid")
        if params.get("symbol") is None and params.get("settleCoin") is None:
            raise error(10001, "params error: symbol or settleCoin is required")
        rows = []
        for inst in self._in_category(params):
            pos = self.ledger.positions[inst.symbol]
            if params.get("symbol") is None and not pos.qty:
                continue
            rows.append(self._position(inst))
        return envelope({"category": "linear", "list": rows, "nextPageCursor": ""})

    def _position(self, inst: Instrument) -> dict:
        ledger = self.ledger
        pos = ledger.positions[inst.symbol]
        side = "Buy" if pos.qty > 0 else "Sell" if pos.qty < 0 else ""
        im = ledger.position_margin(inst)
        return {"positionIdx": 0, "riskId": 1, "riskLimitValue": "2000000", "symbol": inst.venue_id,
                "side": side, "size": fmt(abs(pos.qty)), "avgPrice": fmt(pos.entry),
                "positionValue": fmt(abs(pos.qty) * pos.entry), "tradeMode": 0,
                "positionStatus": "Normal", "autoAddMargin": 0, "adlRankIndicator": 2 if pos.qty else 0,
                "leverage": str(ledger.leverage[inst.symbol]), "positionBalance": "",
                "markPrice": fmt(ledger.mid[inst.symbol]), "liqPrice": "", "bustPrice": "",
                "positionMM": fmt(im / 25), "positionIM": fmt(im), "tpslMode": "Full",
                "takeProfit": "", "stopLoss": "", "trailingStop": "0",
                "unrealisedPnl": fmt(ledger.unrealized(inst)), "curRealisedPnl": fmt(pos.realized),
                "cumRealisedPnl": fmt(pos.realized), "seq": 1, "isReduceOnly": False,
                "mmrSysUpdatedTime": "", "leverageSysUpdatedTime": "", "sessionAvgPrice": "",
                "createdTime": str(pos.updated_ms), "updatedTime": str(pos.updated_ms)}

    def _set_leverage(self, request: ApiRequest) -> dict:
        inst = self._inst(request.params)
        buy, sell = request.params.get("buyLeverage"), request.params.get("sellLeverage")
        leverage = decimal_param(buy)
        if leverage is None or buy != sell or not 1 <= leverage <= inst.max_leverage:
            raise error(10001, "params error: buyLeverage or sellLeverage invalid")
        if leverage == self.ledger.leverage[inst.symbol]:
            raise error(110043, "Set leverage not modified")
        self.ledger.leverage[inst.symbol] = int(leverage)
        return envelope({})

    def _set_margin_mode(self, request: ApiRequest) -> dict:
        """account/set-margin-mode: account-wide for a unified account."""
        mode = request.params.get("setMarginMode")
        modes = {"REGULAR_MARGIN": "cross", "ISOLATED_MARGIN": "isolated", "PORTFOLIO_MARGIN": "portfolio"}
        if mode not in modes:
            raise error(10001, "params error: setMarginMode invalid")
        self.margin_mode = mode
        for symbol in self.ledger.margin_mode:
            self.ledger.margin_mode[symbol] = modes[mode]
        return envelope({"reasons": []}, msg="Request accepted")

    # ---- orders ------------------------------------------------------------------------------

    def _order_json(self, order: Order) -> dict:
        inst = order.inst
        status = STATUS.get(order.status)
        if order.status == "expired":  # a market order's unfilled rest, killed by the venue
            status = "PartiallyFilledCanceled" if order.filled and not inst.perp else "Cancelled"
        qty = order.extra.get("qty", fmt(order.qty))
        body = {"orderId": order.order_id, "orderLinkId": order.client_id, "blockTradeId": "",
                "symbol": inst.venue_id, "price": fmt(order.price or D(0)), "qty": qty,
                "side": order.side.capitalize(), "isLeverage": "" if inst.perp else "0",
                "positionIdx": 0, "orderStatus": status, "createType": "CreateByUser",
                "cancelType": "CancelByUser" if order.status == "canceled" else "UNKNOWN",
                "rejectReason": "EC_NoError",
                "avgPrice": fmt(order.avg_price) if order.filled else ("0" if inst.perp else ""),
                "leavesQty": fmt(order.remaining),
                "leavesValue": fmt(order.remaining * (order.price or D(0))),
                "cumExecQty": fmt(order.filled), "cumExecValue": fmt(order.cum_quote),
                "cumExecFee": fmt(order.fee),
                "cumFeeDetail": {order.fee_asset: fmt(order.fee)} if order.filled else {},
                "timeInForce": order.extra.get("timeInForce", "IOC" if order.type == "market" else "GTC"),
                "orderType": order.type.capitalize(), "stopOrderType": "", "orderIv": "",
                "triggerPrice": "", "takeProfit": "", "stopLoss": "", "tpTriggerBy": "",
                "slTriggerBy": "", "triggerDirection": 0, "triggerBy": "",
                "lastPriceOnCreated": order.extra["lastPriceOnCreated"], "reduceOnly": order.reduce_only,
                "closeOnTrigger": False, "placeType": "", "smpType": "None", "smpGroup": 0,
                "smpOrderId": "", "tpLimitPrice": "", "slLimitPrice": "",
                "createdTime": str(order.created_ms), "updatedTime": str(order.updated_ms)}
        if inst.perp:
            body["tpslMode"] = ""
        else:
            body["marketUnit"] = order.extra.get("marketUnit", "")
        return body

    def _create_order(self, request: ApiRequest) -> dict:
        """order/create answers with the two ids only; everything else is read back later."""
        params = request.params
        inst = self._inst(params)
        side, kind = str(params.get("side", "")), str(params.get("orderType", ""))
        if side not in ("Buy", "Sell") or kind not in ("Market", "Limit"):
            raise error(10001, "params error: side or orderType invalid")
        link_id = params.get("orderLinkId") or ""
        if link_id and not LINK_ID.fullmatch(link_id):
            raise error(10001, "params error: orderLinkId invalid")
        if link_id and self.ledger.find(inst, client_id=link_id):  # unique among all orders
            raise (error(110072, "OrderLinkedID is duplicate") if inst.perp
                   else error(170141, "Duplicate clientOrderId."))
        qty, price = decimal_param(params.get("qty")), decimal_param(params.get("price"))
        if qty is None or (kind == "Limit" and price is None):
            raise error(10001, "params error: qty or price invalid")
        extra = {"lastPriceOnCreated": fmt(self.ledger.mid[inst.symbol]), "qty": fmt(qty)}
        if "timeInForce" in params:
            extra["timeInForce"] = params["timeInForce"]
        quote_qty = None
        if not inst.perp and kind == "Market":
            # Spot market orders: qty is quote for a buy and base for a sell unless marketUnit says.
            unit = params.get("marketUnit") or ("quoteCoin" if side == "Buy" else "baseCoin")
            extra["marketUnit"] = unit
            if unit == "quoteCoin" and side == "Buy":
                quote_qty, qty = qty, D(0)
            elif unit == "quoteCoin":
                qty = floor_to(qty / self.ledger.bid(inst), inst.step)
        order = Order(self.ledger.new_order_id(), link_id, inst, side.lower(), kind.lower(), qty,
                      price if kind == "Limit" else None, truthy(params.get("reduceOnly")), now_ms(),
                      quote_qty=quote_qty, extra=extra)
        try:
            self.ledger.place(order)
        except Reject as reject:
            code, msg = (LINEAR_REJECTS if inst.perp else SPOT_REJECTS).get(
                reject.reason, (10001, f"params error: {reject.reason}"))
            raise error(code, msg)
        return envelope({"orderId": order.order_id, "orderLinkId": order.client_id})

    def _orders(self, history: bool):
        """order/realtime (open orders, or any of the last 500 when orderId / orderLinkId is
        given; openOnly=1 lists recent closed ones) and order/history (closed orders)."""
        def handler(request: ApiRequest) -> dict:
            params = request.params
            instruments = self._in_category(params)
            order_id, link_id = params.get("orderId"), params.get("orderLinkId")
            rows = []
            for order in reversed(self.ledger.orders[-500:]):
                if order.inst not in instruments:
                    continue
                if order_id or link_id:
                    if (order_id and order.order_id != order_id) or (
                            not order_id and order.client_id != link_id):
                        continue
                elif order.is_open == (history or str(params.get("openOnly", "0")) == "1"):
                    continue
                rows.append(self._order_json(order))
            return envelope({"category": params["category"], "list": rows, "nextPageCursor": ""})
        return handler

    def _cancel_order(self, request: ApiRequest) -> dict:
        params = request.params
        inst = self._inst(params)
        order = self.ledger.find(inst, order_id=params.get("orderId"), client_id=params.get("orderLinkId"))
        if order is None or not order.is_open:
            raise (error(110001, "order not exists or too late to cancel") if inst.perp
                   else error(170213, "Order does not exist."))
        self.ledger.cancel(order)
        return envelope({"orderId": order.order_id, "orderLinkId": order.client_id})

    # ---- executions --------------------------------------------------------------------------

    @staticmethod
    def _exec_id(kind: int, n: int) -> str:
        return str(uuid.UUID(int=(0xE0CB_E81D_0F18_5866 + kind) << 64 | n))

    def _trade_executions(self, order: Order) -> list[dict]:
        inst = order.inst
        rows, filled = [], D(0)
        for fill in order.fills:
            filled += fill.qty
            row = {"symbol": inst.venue_id, "orderType": order.type.capitalize(), "underlyingPrice": "",
                   "orderLinkId": order.client_id, "side": order.side.capitalize(), "indexPrice": "",
                   "orderId": order.order_id, "stopOrderType": "UNKNOWN" if inst.perp else "",
                   "leavesQty": fmt(max(order.qty - filled, D(0))) if order.is_open else "0",
                   "execTime": str(fill.ts), "feeCurrency": "" if inst.perp else fill.fee_asset,
                   "isMaker": fill.maker, "execFee": fmt(fill.fee),
                   "feeRate": fmt(inst.maker_fee if fill.maker else inst.taker_fee),
                   "execId": self._exec_id(0, fill.trade_id), "tradeIv": "", "blockTradeId": "",
                   "markPrice": fmt(fill.price), "execPrice": fmt(fill.price), "markIv": "",
                   "orderQty": order.extra.get("qty", fmt(order.qty)), "orderPrice": fmt(order.price or D(0)),
                   "execValue": fmt(fill.qty * fill.price), "execType": "Trade", "execQty": fmt(fill.qty),
                   "closedSize": fmt(fill.closed) if inst.perp else "", "extraFees": "",
                   "seq": 4688000000 + fill.trade_id}
            if inst.perp:
                row["createType"] = "CreateByUser"
            rows.append(row)
        return rows

    def _funding_execution(self, pay: FundingPayment) -> dict:
        inst = pay.inst
        side = "Buy" if pay.position > 0 else "Sell"
        size = abs(pay.position)
        fee_rate = pay.rate if side == "Buy" else -pay.rate
        return {"symbol": inst.venue_id, "orderType": "UNKNOWN", "underlyingPrice": "", "orderLinkId": "",
                "side": side, "indexPrice": "",
                "orderId": f"{pay.ts // 1000}-{inst.venue_id}-{24600000 + pay.seq}-{side}",
                "stopOrderType": "UNKNOWN", "leavesQty": "0", "execTime": str(pay.ts), "feeCurrency": "",
                "createType": "", "isMaker": False, "execFee": fmt(-pay.amount), "feeRate": fmt(fee_rate),
                "execId": self._exec_id(1, pay.seq), "tradeIv": "", "blockTradeId": "",
                "markPrice": fmt(pay.mark), "execPrice": fmt(pay.mark), "markIv": "", "orderQty": "0",
                "orderPrice": "0", "execValue": fmt(size * pay.mark), "execType": "Funding",
                "execQty": fmt(size), "closedSize": "0", "extraFees": "", "seq": 4687000000 + pay.seq}

    def _execution_list(self, request: ApiRequest) -> dict:
        """order/execution ("Get Trade History"): newest first. orderId > orderLinkId > symbol >
        baseCoin decide what is listed; startTime / endTime span at most 7 days (only one given:
        the 7 days after / before it; neither: the last 7 days); ``limit`` 1-100, default 50;
        ``cursor`` pages on. ccxt's ``size`` is not a v5 parameter and is ignored, as by Bybit."""
        params = request.params
        instruments = self._in_category(params)
        order_id, link_id, base = params.get("orderId"), params.get("orderLinkId"), params.get("baseCoin")
        exec_type = params.get("execType")
        start, end = decimal_param(params.get("startTime")), decimal_param(params.get("endTime"))
        if start is not None and end is not None and not 0 <= end - start <= 7 * DAY_MS:
            raise error(10001, "params error: The time range between startTime and endTime cannot exceed 7 days")
        if start is None and end is None:
            end = D(now_ms())
        if start is None:
            start = end - 7 * DAY_MS
        if end is None:
            end = start + 7 * DAY_MS
        limit = decimal_param(params.get("limit")) or D(50)
        if not 1 <= limit <= 100 or limit != limit.to_integral_value():
            raise error(10001, "params error: limit invalid")
        rows: list[tuple[int, dict]] = []
        for order in self.ledger.orders:
            if order.inst not in instruments or (base and order.inst.base != base):
                continue
            if (order_id and order.order_id != order_id) or (not order_id and link_id and order.client_id != link_id):
                continue
            rows += [(int(row["execTime"]), row) for row in self._trade_executions(order)]
        if not order_id and not link_id:
            rows += [(pay.ts, self._funding_execution(pay)) for pay in self.ledger.fundings
                     if pay.inst in instruments and (not base or pay.inst.base == base)]
        listed = [row for ts, row in sorted(rows, key=lambda item: (item[0], item[1]["seq"]), reverse=True)
                  if exec_type in (None, row["execType"]) and start <= ts <= end]
        offset = int(params.get("cursor") or 0) if str(params.get("cursor") or "0").isdigit() else 0
        page = listed[offset:offset + int(limit)]
        more = offset + int(limit) < len(listed)
        return envelope({"category": params["category"], "list": page,
                         "nextPageCursor": str(offset + int(limit)) if more else ""})

    def _cancel_all(self, request: ApiRequest) -> dict:
        cancelled = []
        for inst in self._in_category(request.params):
            for order in self.ledger.open_orders(inst):
                self.ledger.cancel(order)
                cancelled.append({"orderId": order.order_id, "orderLinkId": order.client_id})
        return envelope({"list": cancelled, "success": "1"})
