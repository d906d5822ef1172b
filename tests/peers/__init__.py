"""Local test peers: in-process servers that speak real venues' wire protocols on 127.0.0.1.

``exchange_server.ExchangePeer`` serves the REST subset of binance (spot + USDⓈ-M futures), bybit
(v5, unified account) and okx (v5) that ccxt's async classes use for trading a basis strategy;
``ccxt_wiring`` points the real ccxt classes at it.
"""
