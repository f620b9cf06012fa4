"""The parsers' cheap guard for impossible values never lets one through.

Each parser tests an order's values with a cheap guard (`protocol.messages.suspect_order`, and for
Coinlocally's execution values a chain of its own) and calls `protocol.messages.impossible_order` only when
it trips.
Here every combination of small values, signs, zeros and absent fields goes through the parser, and the
verdict must be exactly the rule's: refused with the rule's message when it names a field, accepted
otherwise (a -0 trips the guard and is then accepted).
"""

from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from support.examples import BITMUSA_ORDER, COINLOCALLY_EXECUTION_REPORT
from userstream.events import OrderUpdate
from userstream.protocol import bitmusa, coinlocally
from userstream.protocol.messages import DataEvents, Unknown, UnknownKind, impossible_order

VALUES = st.sampled_from(["-1", "-0", "0", "-0.5", "0.5", "1", "2", "1.0"])
MAYBE = st.none() | VALUES


@given(
    order_type=st.sampled_from(["LIMIT", "MARKET"]),
    q=VALUES,
    z=VALUES,
    p=MAYBE,
    cost=MAYBE,
    last=MAYBE,
    last_price=MAYBE,
)
def test_the_coinlocally_guard_agrees_with_the_rule(
    *,
    order_type: str,
    q: str,
    z: str,
    p: str | None,
    cost: str | None,
    last: str | None,
    last_price: str | None,
) -> None:
    message = json.loads(COINLOCALLY_EXECUTION_REPORT)
    message.update(o=order_type, q=q, z=z)
    for key, value in (("p", p), ("Z", cost), ("l", last), ("L", last_price)):
        if value is None:
            message.pop(key, None)
        else:
            message[key] = value
    frame = json.dumps(message)
    expected = impossible_order(
        limit=order_type == "LIMIT",
        amount=("$.q", Decimal(q)),
        filled=("$.z", Decimal(z)),
        price=("$.p", None if p is None else Decimal(p)),
        cost=("$.Z", None if cost is None else Decimal(cost)),
        last_fill_amount=("$.l", None if last is None else Decimal(last)),
        last_fill_price=("$.L", None if last_price is None else Decimal(last_price)),
    )
    incoming = coinlocally.Parser()(frame)
    if expected is None:
        assert isinstance(incoming, DataEvents)
        (order,) = incoming.events
        assert isinstance(order, OrderUpdate)
        assert (order.amount, order.filled) == (Decimal(q), Decimal(z))
    else:
        assert incoming == Unknown(frame, str(expected), UnknownKind.MALFORMED)


@given(
    order_type=st.sampled_from(["LIMIT_PRICE", "MARKET_PRICE"]),
    amount=VALUES,
    traded=VALUES,
    price=MAYBE,
    value=MAYBE,
)
def test_the_bitmusa_guard_agrees_with_the_rule(
    *, order_type: str, amount: str, traded: str, price: str | None, value: str | None
) -> None:
    message = json.loads(BITMUSA_ORDER)
    message["data"].update(
        type=order_type,
        amount=Decimal(amount),
        tradedAmount=Decimal(traded),
        price=None if price is None else Decimal(price),
        value=None if value is None else Decimal(value),
    )
    frame = json.dumps(message, default=str)  # Decimals as JSON strings: Bitmusa's decoder takes both
    expected = impossible_order(
        limit=order_type == "LIMIT_PRICE",
        amount=("$.data.amount", Decimal(amount)),
        filled=("$.data.tradedAmount", Decimal(traded)),
        price=("$.data.price", None if price is None else Decimal(price)),
        cost=("$.data.value", None if value is None else Decimal(value)),
    )
    incoming = bitmusa.Parser()(frame)
    if expected is None:
        assert isinstance(incoming, DataEvents)
        (order,) = incoming.events
        assert isinstance(order, OrderUpdate)
        assert (order.amount, order.filled) == (Decimal(amount), Decimal(traded))
    else:
        assert isinstance(incoming, Unknown)
        assert (incoming.reason, incoming.kind) == (str(expected), UnknownKind.MALFORMED)
