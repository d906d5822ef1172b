"""OKX v5 REST for a single-currency-margin trading account, the subset ccxt's async ``okx`` class
calls for load_markets, balance, positions, ticker, mark price, funding rate, orders, leverage and
the account bills (funding fees and swap trades).

Shapes follow OKX's v5 docs (okx.com/docs-v5/en: "Get instruments", "Get ticker", "Get mark
price", "Get funding rate", "Get balance", "Get positions", "Place order", "Place multiple orders",
"Get order details", "Get order list", "Cancel order", "Cancel multiple orders", "Set leverage",
"Get account configuration", "Get bills details (last 7 days / last 3 months)", "REST
authentication", "Error codes") and what ccxt 4.5's ``okx.parse_market / parse_trading_balance /
parse_position / parse_order / parse_funding_rate / fetch_funding_history / sign / handle_errors``
read. Every answer is ``{"code": "0", "msg": "", "data": [...]}``; numbers
and times are strings; order endpoints report per-order ``sCode``/``sMsg`` with a top-level code
"1" (all failed) or "2" (some failed); auth errors come with HTTP 401.

Swaps trade in contracts (``ctVal`` base units each): BTC-USDT-SWAP 0.01 BTC, ETH-USDT-SWAP 0.1 ETH.

Bills: a funding settlement is a type 8 bill (subType 173 expense / 174 income; balChg and pnl the
signed amount, sz the position in contracts, px the mark); a swap fill is a type 2 bill (subType 3
open long, 4 open short, 5 close long, 6 close short; balChg = pnl + fee). Spot trades and
transfers book no bills here. Bill ids grow with time, as OKX's do (``after`` / ``before`` page by
them).
Demo-trading keys: private calls must carry ``x-simulated-trading: 1`` (ccxt's sandbox mode sets
it), as OKX rejects a demo key without it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from .ledger import Fill, FundingPayment, Instrument, Ledger, Order, Reject, fmt, now_ms
from .venue_common import ApiRequest, Credentials, Response, VenueApi, VenueError, decimal_param, truthy

D = Decimal
TRADING = "trading"
DAY_MS = 24 * 3600 * 1000
CLIENT_ID = re.compile(r"[A-Za-z0-9]{1,32}")

INSTRUMENTS = [
    Instrument("BTC-USDT", "BTC/USDT", "BTC", "USDT", False, D("0.1"), D("0.00000001"), D("0.00001"),
               D("9999999999"), D(0), D("0.0008"), D("0.001"), TRADING),
    Instrument("ETH-USDT", "ETH/USDT", "ETH", "USDT", False, D("0.01"), D("0.000001"), D("0.0001"),
               D("9999999999"), D(0), D("0.0008"), D("0.001"), TRADING),
    Instrument("BTC-USDT-SWAP", "BTC/USDT:USDT", "BTC", "USDT", True, D("0.1"), D("0.01"), D("0.01"),
               D("100000000"), D(0), D("0.0002"), D("0.0005"), TRADING, contract_size=D("0.01")),
    Instrument("ETH-USDT-SWAP", "ETH/USDT:USDT", "ETH", "USDT", True, D("0.01"), D("0.01"), D("0.01"),
               D("100000000"), D(0), D("0.0002"), D("0.0005"), TRADING, contract_size=D("0.1")),
]
WALLETS = {TRADING: {"USDT": D("100000"), "BTC": D("1"), "ETH": D("10")}}

STATE = {"new": "live", "partially_filled": "partially_filled", "filled": "filled",
         "canceled": "canceled", "expired": "canceled"}


def ok(data: list) -> dict:
    return {"code": "0", "msg": "", "data": data}


def error(code: str, msg: str, status: int = 200) -> VenueError:
    return VenueError(status, {"code": code, "msg": msg, "data": []})


def batch(rows: list[dict]) -> dict:
    """Order endpoints: code "0" if every row succeeded, "1" if none did, "2" otherwise."""
    failed = sum(row["sCode"] != "0" for row in rows)
    if not failed:
        return {"code": "0", "msg": "", "data": rows, "inTime": str(now_ms() * 1000),
                "outTime": str(now_ms() * 1000)}
    if failed == len(rows):
        msg = "All operations failed" if len(rows) > 1 else "Operation failed."
        return {"code": "1", "msg": msg, "data": rows}
    return {"code": "2", "msg": "Bulk operation partially succeeded.", "data": rows}


class OkxApi(VenueApi):
    name = "okx"

    def __init__(self, credentials: Credentials) -> None:
        mids = {"BTC/USDT": D("60000"), "ETH/USDT": D("3000"),
                "BTC/USDT:USDT": D("60000"), "ETH/USDT:USDT": D("3000")}
        order_ids = (str(n) for n in itertools.count(1987654321000000001))
        super().__init__(Ledger(INSTRUMENTS, WALLETS, mids, order_ids), credentials)
        self.add("GET", "/api/v5/public/time", "server_time", lambda r: ok([{"ts": str(now_ms())}]))
        self.add("GET", "/api/v5/public/instruments", "instruments", self._instruments)
        self.add("GET", "/api/v5/market/ticker", "ticker", self._ticker)
        self.add("GET", "/api/v5/public/mark-price", "mark_price", self._mark_price)
        self.add("GET", "/api/v5/public/funding-rate", "funding_rate", self._funding_rate)
        self.add("GET", "/api/v5/account/config", "account_config", self._config, True)
        self.add("GET", "/api/v5/account/balance", "balance", self._balance, True)
        self.add("GET", "/api/v5/account/positions", "positions", self._positions, True)
        self.add("GET", "/api/v5/account/bills", "bills", self._bills(7 * DAY_MS), True)
        self.add("GET", "/api/v5/account/bills-archive", "bills_archive", self._bills(92 * DAY_MS), True)
        self.add("POST", "/api/v5/account/set-leverage", "set_leverage", self._set_leverage, True)
        self.add("POST", "/api/v5/trade/order", "create_order", self._create_order, True)
        self.add("POST", "/api/v5/trade/batch-orders", "create_order", self._batch_orders, True)
        self.add("GET", "/api/v5/trade/order", "order", self._order, True)
        self.add("GET", "/api/v5/trade/orders-pending", "orders_pending", self._orders_pending, True)
        self.add("POST", "/api/v5/trade/cancel-order", "cancel_order", self._cancel_order, True)
        self.add("POST", "/api/v5/trade/cancel-batch-orders", "cancel_orders", self._cancel_batch, True)

    # ---- protocol ----------------------------------------------------------------------------

    def authenticate(self, request: ApiRequest) -> None:
        """"REST authentication": Base64 HMAC-SHA256 of timestamp + METHOD + requestPath (with
        ?query for GET) + body, in the OK-ACCESS-* headers; demo keys also need
        x-simulated-trading: 1."""
        headers, creds = request.headers, self.credentials
        if not headers.get("OK-ACCESS-KEY"):
            raise error("50103", "Request header OK-ACCESS-KEY can not be empty.", 401)
        if headers["OK-ACCESS-KEY"] != creds.api_key:
            raise error("50111", "Invalid OK-ACCESS-KEY", 401)
        if headers.get("OK-ACCESS-PASSPHRASE") != creds.passphrase:
            raise error("50105", "OK-ACCESS-PASSPHRASE incorrect.", 401)
        if headers.get("x-simulated-trading") != "1":
            raise error("50101", "APIKey does not match current environment.", 401)
        timestamp = headers.get("OK-ACCESS-TIMESTAMP", "")
        try:
            sent_ms = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000
        except ValueError:
            raise error("50112", "Invalid OK-ACCESS-TIMESTAMP", 401) from None
        if abs(now_ms() - sent_ms) > 30_000:
            raise error("50102", "Timestamp request expired", 401)
        path = request.path + (f"?{request.query_string}" if request.query_string else "")
        digest = hmac.new(creds.secret.encode(), f"{timestamp}{request.method}{path}{request.body}".encode(),
                          hashlib.sha256).digest()
        if not hmac.compare_digest(base64.b64encode(digest).decode(), headers.get("OK-ACCESS-SIGN", "")):
            raise error("50113", "Invalid Sign", 401)

    def rate_limited(self, retry_after: int) -> Response:
        return Response(429, {"msg": "Too Many Requests", "code": "50011"}, {"Retry-After": str(retry_after)})

    def not_found(self, request: ApiRequest) -> Response:
        return Response(404, "<html><body><h1>404 Not Found</h1></body></html>")

    # ---- lookups -----------------------------------------------------------------------------

    def _inst(self, inst_id: Any, required: bool = True) -> Instrument | None:
        if not inst_id:
            if required:
                raise error("51000", "Parameter instId error")
            return None
        for inst in self.ledger.instruments.values():
            if inst.venue_id == inst_id:
                return inst
        raise error("51001", "Instrument ID does not exist")

    def _of_type(self, inst_type: Any) -> list[Instrument]:
        return [i for i in self.ledger.instruments.values() if inst_type in (None, self._inst_type(i))]

    @staticmethod
    def _inst_type(inst: Instrument) -> str:
        return "SWAP" if inst.perp else "SPOT"

    # ---- market data -------------------------------------------------------------------------

    def _instruments(self, request: ApiRequest) -> dict:
        inst_type = request.params.get("instType")
        if inst_type not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            raise error("51000", "Parameter instType error")
        return ok([self._instrument_info(i) for i in self._of_type(inst_type)])

    @staticmethod
    def _instrument_info(inst: Instrument) -> dict:
        info = {"alias": "", "auctionEndTime": "", "baseCcy": "", "category": "1", "ctMult": "",
                "ctType": "", "ctVal": "", "ctValCcy": "", "expTime": "", "futureSettlement": False,
                "instFamily": "", "instId": inst.venue_id, "instType": OkxApi._inst_type(inst),
                "lever": str(inst.max_leverage if inst.perp else 10), "listTime": "1606468572000",
                "lotSz": fmt(inst.step), "maxIcebergSz": fmt(inst.max_qty), "maxLmtAmt": "20000000",
                "maxLmtSz": fmt(inst.max_qty), "maxMktAmt": "1000000", "maxMktSz": "1000000",
                "maxStopSz": "1000000", "maxTriggerSz": fmt(inst.max_qty), "maxTwapSz": fmt(inst.max_qty),
                "minSz": fmt(inst.min_qty), "optType": "", "quoteCcy": "", "ruleType": "normal",
                "settleCcy": "", "state": "live", "stk": "", "tickSz": fmt(inst.tick), "uly": ""}
        if inst.perp:
            family = f"{inst.base}-{inst.quote}"
            info.update(ctMult="1", ctType="linear", ctVal=fmt(inst.contract_size), ctValCcy=inst.base,
                        instFamily=family, settleCcy=inst.quote, uly=family, maxMktSz="12000")
        else:
            info.update(baseCcy=inst.base, quoteCcy=inst.quote)
        return info

    def _ticker(self, request: ApiRequest) -> dict:
        inst = self._inst(request.params.get("instId"))
        ledger = self.ledger
        mid = fmt(ledger.mid[inst.symbol])
        volume = D(1000) / inst.contract_size
        return ok([{"instType": self._inst_type(inst), "instId": inst.venue_id, "last": mid, "lastSz": "1",
                    "askPx": fmt(ledger.ask(inst)), "askSz": "500", "bidPx": fmt(ledger.bid(inst)),
                    "bidSz": "500", "open24h": mid, "high24h": mid, "low24h": mid,
                    "volCcy24h": "1000" if inst.perp else fmt(ledger.mid[inst.symbol] * 1000),
                    "vol24h": fmt(volume), "ts": str(now_ms()), "sodUtc0": mid, "sodUtc8": mid}])

    def _mark_price(self, request: ApiRequest) -> dict:
        """"Get mark price". The docs mark instType required, but ccxt sends only instId and the
        venue answers it; the type is then the instrument's."""
        wanted = self._inst(request.params.get("instId"), required=False)
        inst_type = request.params.get("instType") or (wanted and self._inst_type(wanted))
        if inst_type not in ("MARGIN", "SWAP", "FUTURES", "OPTION"):
            raise error("51000", "Parameter instType error")
        return ok([{"instType": inst_type, "instId": i.venue_id, "markPx": fmt(self.ledger.mid[i.symbol]),
                    "ts": str(now_ms())}
                   for i in self._of_type(inst_type) if wanted is None or i is wanted])

    def _funding_rate(self, request: ApiRequest) -> dict:
        """"Get funding rate": fundingTime is the coming settlement, nextFundingTime the one after."""
        inst_id = request.params.get("instId")
        swaps = self._of_type("SWAP") if inst_id == "ANY" else [self._inst(inst_id)]
        rows = []
        for inst in swaps:
            if not inst.perp:
                raise error("51000", "Parameter instId error")
            rate = fmt(self.ledger.funding_rate[inst.symbol])
            settle = self.ledger.next_funding_ms()
            rows.append({"formulaType": "withRate", "fundingRate": rate, "fundingTime": str(settle),
                         "impactValue": "", "instId": inst.venue_id, "instType": "SWAP",
                         "interestRate": "0.0001", "maxFundingRate": "0.00375", "method": "current_period",
                         "minFundingRate": "-0.00375", "nextFundingRate": "",
                         "nextFundingTime": str(settle + 8 * 3600 * 1000), "premium": "0.0001",
                         "settFundingRate": rate, "settState": "settled", "ts": str(now_ms())})
        return ok(rows)

    # ---- account -----------------------------------------------------------------------------

    def _config(self, request: ApiRequest) -> dict:
        return ok([{"acctLv": "2", "posMode": "net_mode", "autoLoan": False, "greeksType": "PA",
                    "level": "Lv1", "levelTmp": "", "mgnIsoMode": "automatic", "ctIsoMode": "automatic",
                    "uid": "44705892343619584", "mainUid": "44705892343619584", "label": "basis-live peer",
                    "roleType": "0", "traderInsts": [], "spotRoleType": "0", "spotTraderInsts": [],
                    "opAuth": "0", "kycLv": "3", "ip": "", "perm": "read_only,trade",
                    "liquidationGear": "-1", "enableSpotBorrow": False, "spotBorrowAutoRepay": False,
                    "type": "0"}])

    def _balance(self, request: ApiRequest) -> dict:
        """"Get balance" in single-currency margin mode: availEq is "" there, so ccxt reads
        total = eq, free = availBal, used = frozenBal."""
        ledger = self.ledger
        wanted = request.params.get("ccy")
        details, total_eq, total_imr, total_upl, total_frozen = [], D(0), D(0), D(0), D(0)
        for ccy, cash in ledger.balances[TRADING].items():
            if wanted and ccy not in str(wanted).split(","):
                continue
            price = D(1) if ccy == "USDT" else ledger.mid[f"{ccy}/USDT"]
            eq = ledger.equity(TRADING, ccy)
            available = ledger.available(TRADING, ccy)
            position_im, order_im = ledger.initial_margin(TRADING, ccy)
            details.append({"availBal": fmt(available), "availEq": "", "borrowFroz": "", "cashBal": fmt(cash),
                            "ccy": ccy, "crossLiab": "", "disEq": fmt(eq * price), "eq": fmt(eq),
                            "eqUsd": fmt(eq * price), "fixedBal": "0", "frozenBal": fmt(eq - available),
                            "imr": fmt(position_im), "interest": "", "isoEq": "0", "isoLiab": "",
                            "isoUpl": "0", "liab": "", "maxLoan": "", "mgnRatio": "",
                            "mmr": fmt(position_im / 25), "notionalLever": "",
                            "ordFrozen": fmt(order_im + ledger.locked(TRADING, ccy)), "rewardBal": "0",
                            "spotInUseAmt": "", "spotIsoBal": "0", "stgyEq": "0", "twap": "0",
                            "uTime": str(now_ms()), "upl": fmt(eq - cash), "uplLiab": ""})
            total_eq += eq * price
            total_imr += position_im
            total_upl += (eq - cash) * price
            total_frozen += order_im
        return ok([{"adjEq": "", "availEq": "", "borrowFroz": "", "details": details, "imr": fmt(total_imr),
                    "isoEq": "0", "mgnRatio": "", "mmr": fmt(total_imr / 25), "notionalUsd": "",
                    "ordFroz": fmt(total_frozen), "totalEq": fmt(total_eq), "uTime": str(now_ms()),
                    "upl": fmt(total_upl)}])

    def _positions(self, request: ApiRequest) -> dict:
        """"Get positions": open positions only; instId may be a comma-separated list."""
        ids = [i for i in str(request.params.get("instId") or "").split(",") if i]
        rows = []
        for index, inst in enumerate(self._of_type(request.params.get("instType", "SWAP"))):
            pos = self.ledger.positions.get(inst.symbol)
            if pos is not None and pos.qty and (not ids or inst.venue_id in ids):
                rows.append(self._position(inst, str(307173036051017730 + index)))
        return ok(rows)

    def _position(self, inst: Instrument, pos_id: str) -> dict:
        ledger = self.ledger
        pos = ledger.positions[inst.symbol]
        mark = fmt(ledger.mid[inst.symbol])
        notional = abs(pos.qty) * inst.contract_size * ledger.mid[inst.symbol]
        im = ledger.position_margin(inst)
        upl = ledger.unrealized(inst)
        upl_ratio = fmt(upl / im) if im else "0"
        greeks = dict.fromkeys(("deltaBS", "deltaPA", "gammaBS", "gammaPA", "thetaBS", "thetaPA",
                                "vegaBS", "vegaPA"), "")
        return {**greeks, "adl": "1", "availPos": "", "avgPx": fmt(pos.entry), "bePx": fmt(pos.entry),
                "cTime": str(pos.updated_ms), "ccy": inst.quote, "idxPx": mark, "imr": fmt(im),
                "instId": inst.venue_id, "instType": "SWAP", "interest": "", "last": mark,
                "lever": str(ledger.leverage[inst.symbol]), "liab": "", "liabCcy": "", "liqPx": "",
                "margin": "", "markPx": mark, "mgnMode": ledger.margin_mode[inst.symbol], "mgnRatio": "",
                "mmr": fmt(im / 25), "notionalUsd": fmt(notional), "optVal": "", "pTime": str(now_ms()),
                "pos": fmt(pos.qty), "posCcy": "", "posId": pos_id, "posSide": "net",
                "realizedPnl": fmt(pos.realized), "pnl": fmt(pos.realized), "fee": "0", "fundingFee": "0",
                "tradeId": "", "uTime": str(pos.updated_ms), "upl": fmt(upl), "uplLastPx": fmt(upl),
                "uplRatio": upl_ratio, "uplRatioLastPx": upl_ratio, "usdPx": "", "closeOrderAlgo": []}

    # ---- bills -------------------------------------------------------------------------------

    BILL_FIELDS = ("bal", "balChg", "billId", "ccy", "clOrdId", "earnAmt", "earnApr", "execType", "fee",
                   "fillFwdPx", "fillIdxPx", "fillMarkPx", "fillMarkVol", "fillPxUsd", "fillPxVol", "fillTime",
                   "from", "instId", "instType", "interest", "mgnMode", "notes", "ordId", "pnl", "posBal",
                   "posBalChg", "px", "subType", "sz", "tag", "to", "tradeId", "ts", "type")

    @staticmethod
    def _bill_id(ts: int, kind: int, n: int) -> str:
        """18-19 digits that sort as the bills happened."""
        return str(ts * 1_000_000 + kind * 100_000 + n % 100_000)

    def _funding_bill(self, pay: FundingPayment) -> dict:
        inst = pay.inst
        return {**dict.fromkeys(self.BILL_FIELDS, ""), "bal": fmt(pay.balance), "balChg": fmt(pay.amount),
                "billId": self._bill_id(pay.ts, 2, pay.seq), "ccy": inst.quote, "fee": "0",
                "instId": inst.venue_id, "instType": "SWAP", "interest": "0",
                "mgnMode": self.ledger.margin_mode[inst.symbol], "pnl": fmt(pay.amount), "posBal": "0",
                "posBalChg": "0", "px": fmt(pay.mark), "subType": "174" if pay.amount >= 0 else "173",
                "sz": fmt(abs(pay.position)), "ts": str(pay.ts), "type": "8"}

    def _trade_bill(self, order: Order, fill: Fill) -> dict:
        inst = order.inst
        if fill.closed:
            sub_type = "6" if order.side == "buy" else "5"  # close short / close long
        else:
            sub_type = "3" if order.side == "buy" else "4"  # open long / open short
        return {**dict.fromkeys(self.BILL_FIELDS, ""), "bal": fmt(fill.balance),
                "balChg": fmt(fill.realized - fill.fee), "billId": self._bill_id(fill.ts, 1, fill.trade_id),
                "ccy": inst.quote, "clOrdId": order.client_id, "execType": "M" if fill.maker else "T",
                "fee": fmt(-fill.fee), "fillIdxPx": fmt(fill.price), "fillMarkPx": fmt(fill.price),
                "fillTime": str(fill.ts), "instId": inst.venue_id, "instType": "SWAP", "interest": "0",
                "mgnMode": order.extra["tdMode"], "ordId": order.order_id, "pnl": fmt(fill.realized),
                "posBal": "0", "posBalChg": "0", "px": fmt(fill.price), "subType": sub_type,
                "sz": fmt(fill.qty), "tag": "", "tradeId": str(fill.trade_id), "ts": str(fill.ts), "type": "2"}

    def _bills(self, keep_ms: int):
        """"Get bills details": newest first, at most ``limit`` (default and max 100); filters
        instType, instId, ccy, mgnMode, ctType, type, subType; ``begin`` / ``end`` bound ts
        (inclusive); ``after`` / ``before`` page by bill id (older / newer than it). ``keep_ms``:
        how far back the endpoint reaches (7 days; 3 months for bills-archive)."""
        def handler(request: ApiRequest) -> dict:
            params = request.params
            inst_type = params.get("instType")
            if inst_type not in (None, "SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
                raise error("51000", "Parameter instType error")
            wanted = self._inst(params.get("instId"), required=False)
            limit = decimal_param(params.get("limit")) or D(100)
            if not 1 <= limit <= 100 or limit != limit.to_integral_value():
                raise error("51000", "Parameter limit error")
            begin, end = decimal_param(params.get("begin")), decimal_param(params.get("end"))
            after, before = decimal_param(params.get("after")), decimal_param(params.get("before"))
            oldest = now_ms() - keep_ms
            bills = [self._funding_bill(pay) for pay in self.ledger.fundings]
            bills += [self._trade_bill(order, fill) for order in self.ledger.orders if order.inst.perp
                      for fill in order.fills]
            matches = {"instType": inst_type, "instId": wanted.venue_id if wanted else None,
                       "ccy": params.get("ccy"), "mgnMode": params.get("mgnMode"), "type": params.get("type"),
                       "subType": params.get("subType")}
            listed = []
            for bill in bills:
                ts, bill_id = int(bill["ts"]), int(bill["billId"])
                if any(value not in (None, bill[key]) for key, value in matches.items()):
                    continue
                if params.get("ctType") not in (None, "linear"):  # every swap here is linear
                    continue
                if ts < oldest or (begin is not None and ts < begin) or (end is not None and ts > end):
                    continue
                if (after is not None and bill_id >= after) or (before is not None and bill_id <= before):
                    continue
                listed.append(bill)
            listed.sort(key=lambda bill: int(bill["billId"]), reverse=True)
            return ok(listed[:int(limit)])
        return handler

    def _set_leverage(self, request: ApiRequest) -> dict:
        params = request.params
        inst = self._inst(params.get("instId"))
        lever, mode = decimal_param(params.get("lever")), params.get("mgnMode")
        if mode not in ("cross", "isolated"):
            raise error("51000", "Parameter mgnMode error")
        if not inst.perp or lever is None or not 1 <= lever <= inst.max_leverage:
            raise error("51000", "Parameter lever error")
        self.ledger.leverage[inst.symbol] = int(lever)
        self.ledger.margin_mode[inst.symbol] = mode
        return ok([{"lever": fmt(lever), "mgnMode": mode, "instId": inst.venue_id, "posSide": "net"}])

    # ---- orders ------------------------------------------------------------------------------

    def _order_json(self, order: Order) -> dict:
        inst = order.inst
        last = order.fills[-1] if order.fills else None
        return {"instType": self._inst_type(inst), "instId": inst.venue_id,
                "tgtCcy": order.extra.get("tgtCcy", ""), "ccy": "", "ordId": order.order_id,
                "clOrdId": order.client_id, "tag": "", "px": fmt(order.price) if order.price else "",
                "pxUsd": "", "pxVol": "", "pxType": "", "sz": order.extra["sz"], "pnl": "0",
                "ordType": order.extra["ordType"], "side": order.side, "posSide": "net",
                "tdMode": order.extra["tdMode"], "accFillSz": fmt(order.filled),
                "fillPx": fmt(last.price) if last else "", "tradeId": str(last.trade_id) if last else "",
                "fillSz": fmt(last.qty) if last else "0", "fillTime": str(last.ts) if last else "",
                "avgPx": fmt(order.avg_price) if order.filled else "", "state": STATE[order.status],
                "stpId": "", "stpMode": "cancel_maker",
                "lever": str(self.ledger.leverage[inst.symbol]) if inst.perp else "",
                "attachAlgoClOrdId": "", "tpTriggerPx": "", "tpTriggerPxType": "", "tpOrdPx": "",
                "slTriggerPx": "", "slTriggerPxType": "", "slOrdPx": "", "attachAlgoOrds": [],
                "linkedAlgoOrd": {"algoId": ""}, "feeCcy": order.fee_asset or inst.quote,
                "fee": fmt(-order.fee), "rebateCcy": inst.quote, "rebate": "0", "source": "",
                "category": "normal", "reduceOnly": "true" if order.reduce_only else "false",
                "isTpLimit": "false", "cancelSource": "", "cancelSourceReason": "", "quickMgnType": "",
                "algoClOrdId": "", "algoId": "", "uTime": str(order.updated_ms),
                "cTime": str(order.created_ms)}

    def _place(self, params: dict[str, Any]) -> dict:
        """One "Place order" request; the row it contributes to ``data``."""
        client_id = str(params.get("clOrdId") or "")

        def row(code: str, msg: str, order_id: str = "") -> dict:
            return {"clOrdId": client_id, "ordId": order_id, "tag": str(params.get("tag") or ""),
                    "ts": str(now_ms()), "sCode": code, "sMsg": msg}

        try:
            inst = self._inst(params.get("instId"))
        except VenueError as bad:
            return row(bad.payload["code"], bad.payload["msg"])
        side, ord_type, td_mode = params.get("side"), params.get("ordType"), params.get("tdMode")
        if side not in ("buy", "sell") or ord_type not in ("market", "limit"):
            return row("51000", "Parameter side or ordType error")
        if td_mode not in (("cross", "isolated") if inst.perp else ("cash",)):
            return row("51000", "Parameter tdMode error")
        if client_id and not CLIENT_ID.fullmatch(client_id):
            return row("51000", "Parameter clOrdId error")
        if client_id and any(o.client_id == client_id for o in self.ledger.open_orders()):
            return row("51016", "Duplicated clOrdId")
        size, price = decimal_param(params.get("sz")), decimal_param(params.get("px"))
        if size is None or (ord_type == "limit" and price is None):
            return row("51000", "Parameter sz or px error")
        extra = {"sz": fmt(size), "ordType": ord_type, "tdMode": td_mode}
        quote_qty = None
        if not inst.perp and ord_type == "market":
            # tgtCcy applies to spot market orders: quote for a buy, base for a sell by default.
            extra["tgtCcy"] = params.get("tgtCcy") or ("quote_ccy" if side == "buy" else "base_ccy")
            if extra["tgtCcy"] == "quote_ccy" and side == "buy":
                quote_qty, size = size, D(0)
        order = Order(self.ledger.new_order_id(), client_id, inst, side, ord_type, size,
                      price if ord_type == "limit" else None, truthy(params.get("reduceOnly")), now_ms(),
                      quote_qty=quote_qty, extra=extra)
        try:
            self.ledger.place(order)
        except Reject as reject:
            return row(*self._reject(reject, order))
        return row("0", "Order placed", order.order_id)

    @staticmethod
    def _reject(reject: Reject, order: Order) -> tuple[str, str]:
        inst = order.inst
        if reject.reason == "insufficient_margin":
            return "51008", f"Order failed. Insufficient {inst.quote} margin in account"
        if reject.reason == "insufficient_balance":
            ccy = inst.quote if order.side == "buy" else inst.base
            return "51008", f"Order failed. Insufficient {ccy} balance in account"
        if reject.reason == "reduce_only":
            return "51205", "Reduce Only is not available."
        if reject.reason == "lot_size" and order.qty < inst.min_qty:
            return "51020", "Your order should meet or exceed the minimum order amount."
        if reject.reason == "lot_size":
            return "51121", "Order quantity must be a multiple of the lot size."
        return "51000", "Parameter px error"

    def _create_order(self, request: ApiRequest) -> dict:
        return batch([self._place(request.params)])

    def _batch_orders(self, request: ApiRequest) -> dict:
        if not isinstance(request.json, list) or not 1 <= len(request.json) <= 20:
            raise error("51000", "Parameter orders error")
        return batch([self._place(params) for params in request.json])

    def _find(self, params: dict[str, Any]) -> Order | None:
        inst = self._inst(params.get("instId"))
        return self.ledger.find(inst, order_id=params.get("ordId"), client_id=params.get("clOrdId"))

    def _order(self, request: ApiRequest) -> dict:
        order = self._find(request.params)
        if order is None:
            raise error("51603", "Order does not exist")
        return ok([self._order_json(order)])

    def _orders_pending(self, request: ApiRequest) -> dict:
        params = request.params
        inst = self._inst(params.get("instId"), required=False)
        orders = [o for o in reversed(self.ledger.open_orders(inst))
                  if params.get("instType") in (None, self._inst_type(o.inst))]
        return ok([self._order_json(o) for o in orders])

    def _cancel(self, params: dict[str, Any]) -> dict:
        try:
            order = self._find(params)
        except VenueError:
            order = None
        row = {"clOrdId": str(params.get("clOrdId") or (order.client_id if order else "")),
               "ordId": str(params.get("ordId") or (order.order_id if order else "")), "ts": str(now_ms())}
        if order is None or not order.is_open:
            return {**row, "sCode": "51400", "sMsg": "Order cancellation failed as the order has been "
                                                      "filled, canceled or does not exist"}
        self.ledger.cancel(order)
        return {**row, "sCode": "0", "sMsg": ""}

    def _cancel_order(self, request: ApiRequest) -> dict:
        return batch([self._cancel(request.params)])

    def _cancel_batch(self, request: ApiRequest) -> dict:
        if not isinstance(request.json, list) or not 1 <= len(request.json) <= 20:
            raise error("51000", "Parameter orders error")
        return batch([self._cancel(params) for params in request.json])
