"""Coinlocally vectors that more than one test module reads: the document's words and a multi-asset frame.

tests/protocol/test_coinlocally.py parses them and test_coinlocally_render.py renders and parses them back.
"""

from __future__ import annotations

from userstream.events import OrderStatus, OrderType

__all__ = ["MULTI_ASSET", "STATUS_TABLE", "TYPE_TABLE"]

STATUS_TABLE = {
    "NEW": OrderStatus.OPEN,
    "PART_FILLED": OrderStatus.OPEN,
    "PENDING_CANCEL": OrderStatus.OPEN,
    "FILLED": OrderStatus.CLOSED,
    "CANCELED": OrderStatus.CANCELED,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
}
TYPE_TABLE = {"LIMIT": OrderType.LIMIT, "MARKET": OrderType.MARKET}

MULTI_ASSET = (
    '{"e":"outboundAccountPosition","E":1700000000123,"u":1700000000100,"B":['
    '{"a":"ETH","f":"10000.000000","l":"0.000000"},'
    '{"a":"BTC","f":0.5155,"l":2.0E-5},'
    '{"a":"USDT","f":2,"l":"1234.5678"}]}'
)
