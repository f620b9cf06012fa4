"""The source documents' example payloads and the exact normalized events they must become.

This module owns the project's shared test vectors: every example payload the exchange documents print
(Bitmusa's spot user data stream document, Coinlocally's spot user data WebSocket document), verbatim, byte
for byte as the documents lay them out, and the events our parsers must turn them into (for the account
"default"). Tests import them from here (`from support.examples import ...`) instead of writing them out
again, so a vector is stated once and every test checks against the same truth. They are test data, not
product: nothing under src/ imports them. It holds data only: no parsing, no
rendering, no I/O. The events are written out literally, never computed by our own code, so a test that
compares a parser's output with them is not comparing the code with itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from userstream.events import (
    BalanceUpdate,
    Exchange,
    Fill,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
)

__all__ = [
    "BITMUSA_ACK_REPLY",
    "BITMUSA_CREATE_REPLY",
    "BITMUSA_LISTEN_KEY",
    "BITMUSA_ORDER",
    "BITMUSA_ORDER_EVENT",
    "BITMUSA_WALLET",
    "BITMUSA_WALLET_EVENT",
    "COINLOCALLY_ACCOUNT_POSITION",
    "COINLOCALLY_BALANCE_EVENT",
    "COINLOCALLY_BALANCE_JSON",
    "COINLOCALLY_EXECUTION_FILL",
    "COINLOCALLY_EXECUTION_REPORT",
    "COINLOCALLY_ORDER_EVENT",
    "COINLOCALLY_ORDER_JSON",
    "COINLOCALLY_PING",
    "COINLOCALLY_PONG",
    "COINLOCALLY_SYSTEM_CLOSE",
]

# --- Bitmusa: REST replies ---------------------------------------------------------------------------

#: The listenKey of the document's "Spot Create ListenKey" reply.
BITMUSA_LISTEN_KEY: Final = "cAUzPhRQYWX1a2cE528PeAgtErBE96QWP5HpwFMSEzUC"

#: POST /spot/userDataStream's reply.
BITMUSA_CREATE_REPLY: Final = b"""{
  "data": {
    "listenKey": "cAUzPhRQYWX1a2cE528PeAgtErBE96QWP5HpwFMSEzUC"
  },
  "code": 0,
  "message": "success"
}"""

#: The reply the document prints for both PUT (keep-alive) and DELETE (close).
BITMUSA_ACK_REPLY: Final = b"""{
  "code": 0,
  "message": "success"
}"""

# --- Bitmusa: stream payloads (text frames) ----------------------------------------------------------

BITMUSA_WALLET: Final = """{
  "data": {
    "asset": "USDT",
    "free": "1132800.449",
    "locked": "80669.91"
  },
  "stream": "spot_wallet",
  "eventTime": 1700703548846
}"""

BITMUSA_ORDER: Final = """{
  "data": {
    "orderId": "C171558199502193",
    "symbol": "XRP/USDT",
    "direction": "BUY",
    "type": "LIMIT_PRICE",
    "price": 0.5155,
    "amount": 2,
    "tradedAmount": 0,
    "value": 0,
    "status": "TRADING",
    "createdTime": 1715581995021,
    "canceledTime": null,
    "completedTime": null
  },
  "stream": "spot_order",
  "eventTime": 1700703548846
}"""

BITMUSA_WALLET_EVENT: Final = BalanceUpdate(
    exchange=Exchange.BITMUSA,
    account="default",
    timestamp=1700703548846,
    asset="USDT",
    free=Decimal("1132800.449"),
    locked=Decimal("80669.91"),
)

BITMUSA_ORDER_EVENT: Final = OrderUpdate(
    exchange=Exchange.BITMUSA,
    account="default",
    timestamp=1700703548846,
    id="C171558199502193",
    symbol="XRP/USDT",
    raw_symbol="XRP/USDT",
    side=Side.BUY,
    type=OrderType.LIMIT,
    raw_type="LIMIT_PRICE",
    status=OrderStatus.OPEN,
    raw_status="TRADING",
    price=Decimal("0.5155"),
    amount=Decimal("2"),
    filled=Decimal("0"),
    remaining=Decimal("2"),
    cost=Decimal("0"),
    last_fill_amount=None,
    last_fill_price=None,
    fee=None,
    created_at=1715581995021,
)

# --- Coinlocally: stream payloads (gzip-compressed on the wire; these are the decompressed texts) -------

COINLOCALLY_ACCOUNT_POSITION: Final = """{
"e": "outboundAccountPosition",
"E": 1564034571105,
"u": 1564034571073,
"B": [
{
"a": "ETH",
"f": "10000.000000",
"l": "0.000000"
}
]
}"""

COINLOCALLY_EXECUTION_REPORT: Final = """{
"e": "executionReport",
"E": 1745389508472,
"T": 1745389508418,
"S": "SELL",
"s": "BTCUSDT",
"X": "PART_FILLED",
"x": "STATUS",
"i": "2690536306533246156",
"l": "0.1000000000000000",
"z": "0.17861112",
"L": "13000.0000000000000000",
"Z": "2321.94456",
"n": "7.8000000000000000",
"o": "LIMIT",
"q": "1",
"p": "13000",
"Q": "0.17861112",
"O": 1745389507000,
"P": "0"
}"""

#: The "System Close Notification".
COINLOCALLY_SYSTEM_CLOSE: Final = """{
"uid": 24005174,
"channel": "SYSTEM",
"et": "close"
}"""

#: The heartbeat: the client's ping and the server's pong, spaced as the document prints them.
COINLOCALLY_PING: Final = '{ "ping": 1713338308232 }'
COINLOCALLY_PONG: Final = '{ "pong": 1713338308233 }'

COINLOCALLY_BALANCE_EVENT: Final = BalanceUpdate(
    exchange=Exchange.COINLOCALLY,
    account="default",
    timestamp=1564034571105,
    asset="ETH",
    free=Decimal("10000.000000"),
    locked=Decimal("0.000000"),
)

COINLOCALLY_ORDER_EVENT: Final = OrderUpdate(
    exchange=Exchange.COINLOCALLY,
    account="default",
    timestamp=1745389508472,
    id="2690536306533246156",
    symbol="BTC/USDT",
    raw_symbol="BTCUSDT",
    side=Side.SELL,
    type=OrderType.LIMIT,
    raw_type="LIMIT",
    status=OrderStatus.OPEN,
    raw_status="PART_FILLED",
    price=Decimal("13000"),
    amount=Decimal("1"),
    filled=Decimal("0.17861112"),
    remaining=Decimal("0.82138888"),
    cost=Decimal("2321.94456"),
    last_fill_amount=Decimal("0.1000000000000000"),
    last_fill_price=Decimal("13000.0000000000000000"),
    fee=Decimal("7.8000000000000000"),
    created_at=1745389507000,
)

#: The execution the report carries (l, L, n), as `userstream.fills` reports it: cost is exactly l * L.
COINLOCALLY_EXECUTION_FILL: Final = Fill(
    exchange=Exchange.COINLOCALLY,
    account="default",
    timestamp=1745389508472,
    order_id="2690536306533246156",
    symbol="BTC/USDT",
    side=Side.SELL,
    amount=Decimal("0.1000000000000000"),
    price=Decimal("13000.0000000000000000"),
    cost=Decimal("1300.00000000000000000000000000000000"),
    fee=Decimal("7.8000000000000000"),
    fee_asset="USDT",  # a sell pays its fee in the quote asset (fills.py)
    order_filled=Decimal("0.17861112"),
)

# --- Coinlocally's two events in the JSON form of docs/events.md ---------------------------------------
# Decimals as text: comparing with these also proves every value kept the wire's exact digits. Read-only,
# so no test can change what the next one compares with.

COINLOCALLY_BALANCE_JSON: Final[Mapping[str, object]] = MappingProxyType(
    {
        "kind": "balance",
        "exchange": "coinlocally",
        "account": "default",
        "timestamp": 1564034571105,
        "source": "stream",
        "asset": "ETH",
        "free": "10000.000000",
        "locked": "0.000000",
        "total": "10000.000000",
    }
)

COINLOCALLY_ORDER_JSON: Final[Mapping[str, object]] = MappingProxyType(
    {
        "kind": "order",
        "exchange": "coinlocally",
        "account": "default",
        "timestamp": 1745389508472,
        "source": "stream",
        "id": "2690536306533246156",
        "symbol": "BTC/USDT",
        "raw_symbol": "BTCUSDT",
        "side": "sell",
        "type": "limit",
        "raw_type": "LIMIT",
        "status": "open",
        "raw_status": "PART_FILLED",
        "price": "13000",
        "amount": "1",
        "filled": "0.17861112",
        "remaining": "0.82138888",
        "cost": "2321.94456",
        "last_fill_amount": "0.1000000000000000",
        "last_fill_price": "13000.0000000000000000",
        "fee": "7.8000000000000000",
        "created_at": 1745389507000,
    }
)
