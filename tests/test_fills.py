"""fills.py: one fill per execution, derived from cumulative growth otherwise, never twice."""

from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.examples import (
    BITMUSA_ORDER,
    COINLOCALLY_EXECUTION_FILL,
    COINLOCALLY_EXECUTION_REPORT,
)
from userstream.eventjson import to_json
from userstream.events import (
    NOT_IN_SNAPSHOT,
    BalanceUpdate,
    Exchange,
    Fill,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    Source,
)
from userstream.fills import FillTracker
from userstream.money import exact_add, exact_mul
from userstream.protocol import bitmusa, coinlocally
from userstream.protocol.messages import DataEvents

# --- Bitmusa: cumulative tradedAmount / value only -------------------------------------------------------


def bitmusa_order(
    traded: str, value: str | None, status: str = "TRADING", event_time: int = 0
) -> OrderUpdate:
    """The document's order frame with its cumulative fields changed, parsed by the real parser."""
    frame = (
        BITMUSA_ORDER.replace('"tradedAmount": 0', f'"tradedAmount": {traded}')
        .replace('"value": 0', f'"value": {"null" if value is None else value}')
        .replace('"status": "TRADING"', f'"status": "{status}"')
        .replace('"eventTime": 1700703548846', f'"eventTime": {1700703548846 + event_time}')
    )
    incoming = bitmusa.Parser()(frame)
    assert isinstance(incoming, DataEvents)
    (order,) = incoming.events
    assert isinstance(order, OrderUpdate)
    return order


def xrp_fill(amount: str, price: str | None, cost: str | None, order_filled: str, event_time: int) -> Fill:
    return Fill(
        exchange=Exchange.BITMUSA,
        account="default",
        timestamp=1700703548846 + event_time,
        order_id="C171558199502193",
        symbol="XRP/USDT",
        side=Side.BUY,
        amount=Decimal(amount),
        price=None if price is None else Decimal(price),
        cost=None if cost is None else Decimal(cost),
        fee=None,
        order_filled=Decimal(order_filled),
        derived=True,
    )


def test_bitmusa_document_order_has_nothing_filled_so_no_fill() -> None:
    assert FillTracker().feed(bitmusa_order("0", "0")) == []


def test_bitmusa_fills_are_derived_from_growth_across_several_updates() -> None:
    tracker = FillTracker()
    steps = [
        (bitmusa_order("0", "0"), []),
        (bitmusa_order("0.5", "0.25775", event_time=100), [xrp_fill("0.5", "0.5155", "0.25775", "0.5", 100)]),
        (bitmusa_order("0.5", "0.25775", event_time=100), []),  # a duplicate
        (bitmusa_order("0.8", "0.40925", event_time=200), [xrp_fill("0.3", "0.505", "0.15150", "0.8", 200)]),
        (bitmusa_order("0.5", "0.25775", event_time=100), []),  # an older update arriving late
        (
            bitmusa_order("2", "1.031", "COMPLETED", event_time=300),
            [xrp_fill("1.2", "0.518125", "0.62175", "2", 300)],
        ),
        (bitmusa_order("0.8", "0.40925", event_time=200), []),  # late, after the order ended
        (bitmusa_order("2", "1.031", "COMPLETED", event_time=300), []),  # the final update again
    ]
    for update, expected in steps:
        assert tracker.feed(update) == expected
    assert tracker.tracked_orders == 0


def test_bitmusa_fills_add_up_to_the_order() -> None:
    tracker = FillTracker()
    fills = [
        fill
        for update in [
            bitmusa_order("0.5", "0.25775", event_time=1),
            bitmusa_order("0.8", "0.40925", event_time=2),
            bitmusa_order("2", "1.031", "COMPLETED", event_time=3),
        ]
        for fill in tracker.feed(update)
    ]
    assert sum((fill.amount for fill in fills), Decimal(0)) == Decimal(2)
    assert sum((fill.cost or Decimal(0) for fill in fills), Decimal(0)) == Decimal("1.031")


def test_bitmusa_first_update_already_partly_filled_yields_one_fill_for_what_is_known() -> None:
    tracker = FillTracker()
    assert tracker.feed(bitmusa_order("1.2", "0.6186", event_time=5)) == [
        xrp_fill("1.2", "0.5155", "0.6186", "1.2", 5)
    ]
    assert tracker.feed(bitmusa_order("1.2", "0.6186", event_time=5)) == []  # its duplicate


def test_bitmusa_derived_json_is_the_documented_one() -> None:
    tracker = FillTracker()
    tracker.feed(bitmusa_order("0.5", "0.25775", event_time=1))
    (fill,) = tracker.feed(bitmusa_order("2", "1.031", "COMPLETED", event_time=154))
    assert to_json(fill) == (
        b'{"kind":"fill","exchange":"bitmusa","account":"default","timestamp":1700703549000,'
        b'"source":"stream","order_id":"C171558199502193","symbol":"XRP/USDT","side":"buy",'
        b'"amount":"1.5","price":"0.5155","cost":"0.77325","fee":null,"fee_asset":null,"order_filled":"2","derived":true}'
    )


def test_a_derived_average_that_does_not_terminate_is_rounded_to_34_digits() -> None:
    # 0.3 of the order's 2 filled (3 would be refused: more than the limit order's amount)
    (fill,) = FillTracker().feed(bitmusa_order("0.3", "0.1"))
    assert str(fill.price) == "0.3333333333333333333333333333333333"
    assert fill.cost == Decimal("0.1")


def test_unknown_value_gives_a_fill_with_unknown_price_and_cost() -> None:
    tracker = FillTracker()
    assert tracker.feed(bitmusa_order("0.5", None, event_time=1)) == [xrp_fill("0.5", None, None, "0.5", 1)]
    # the growth from an unknown cost is unknown too; amounts stay exact
    assert tracker.feed(bitmusa_order("0.7", "0.3609", event_time=2)) == [
        xrp_fill("0.2", None, None, "0.7", 2)
    ]
    assert tracker.feed(bitmusa_order("1", "0.5155", event_time=3)) == [
        xrp_fill("0.3", "0.5153333333333333333333333333333333", "0.1546", "1", 3)
    ]


def test_a_shrinking_value_is_inconsistent_so_cost_is_unknown_not_negative() -> None:
    tracker = FillTracker()
    tracker.feed(bitmusa_order("1", "0.5155", event_time=1))
    assert tracker.feed(bitmusa_order("2", "0.5", event_time=2)) == [xrp_fill("1", None, None, "2", 2)]


def test_an_order_seen_only_as_it_ends_fills_what_it_shows_and_is_not_kept() -> None:
    tracker = FillTracker()
    assert tracker.feed(bitmusa_order("2", "1.031", "COMPLETED")) == [
        xrp_fill("2", "0.5155", "1.031", "2", 0)
    ]
    assert tracker.tracked_orders == 0
    assert tracker.feed(bitmusa_order("1", "0.5155", event_time=-1)) == []


def test_canceled_partly_filled_order_is_forgotten_after_its_fill() -> None:
    tracker = FillTracker()
    tracker.feed(bitmusa_order("0", "0"))
    assert tracker.tracked_orders == 1
    assert tracker.feed(bitmusa_order("0.5", "0.25775", "CANCELED", event_time=9)) == [
        xrp_fill("0.5", "0.5155", "0.25775", "0.5", 9)
    ]
    assert tracker.tracked_orders == 0


def test_unknown_status_keeps_tracking() -> None:
    tracker = FillTracker()
    assert tracker.feed(bitmusa_order("0.5", "0.25775", "HALTED", event_time=1)) == [
        xrp_fill("0.5", "0.5155", "0.25775", "0.5", 1)
    ]
    assert tracker.tracked_orders == 1


def test_snapshot_update_growth_is_a_snapshot_fill() -> None:
    tracker = FillTracker()
    tracker.feed(bitmusa_order("0.5", "0.25775", event_time=1))
    correction = msgspec.structs.replace(bitmusa_order("2", "1.031", event_time=2), source=Source.SNAPSHOT)
    assert tracker.feed(correction) == [
        msgspec.structs.replace(xrp_fill("1.5", "0.5155", "0.77325", "2", 2), source=Source.SNAPSHOT)
    ]


def test_an_order_gone_from_the_snapshot_gives_no_fill_but_is_still_tracked() -> None:
    tracker = FillTracker()
    held = bitmusa_order("0.5", "0.25775", event_time=1)
    tracker.feed(held)
    gone = msgspec.structs.replace(
        held, status=None, raw_status=NOT_IN_SNAPSHOT, source=Source.SNAPSHOT, timestamp=held.timestamp + 1
    )
    assert tracker.feed(gone) == []
    assert tracker.tracked_orders == 1
    # the snapshot had missed it: the stream goes on, and only the growth is filled, not the whole again
    assert tracker.feed(bitmusa_order("0.8", "0.40925", event_time=3)) == [
        xrp_fill("0.3", "0.505", "0.15150", "0.8", 3)
    ]


# --- Coinlocally: each execution reported (l, L, n) -------------------------------------------------------


def coinlocally_report(
    *, last: str, filled: str, last_price: str, value: str, fee: str, status: str = "PART_FILLED", at: int = 0
) -> OrderUpdate:
    frame = (
        COINLOCALLY_EXECUTION_REPORT.replace('"l": "0.1000000000000000"', f'"l": "{last}"')
        .replace('"z": "0.17861112"', f'"z": "{filled}"')
        .replace('"L": "13000.0000000000000000"', f'"L": "{last_price}"')
        .replace('"Z": "2321.94456"', f'"Z": "{value}"')
        .replace('"n": "7.8000000000000000"', f'"n": "{fee}"')
        .replace('"X": "PART_FILLED"', f'"X": "{status}"')
        .replace('"E": 1745389508472', f'"E": {1745389508472 + at}')
    )
    incoming = coinlocally.Parser()(frame)
    assert isinstance(incoming, DataEvents)
    (order,) = incoming.events
    assert isinstance(order, OrderUpdate)
    return order


def doc_report() -> OrderUpdate:
    incoming = coinlocally.Parser()(COINLOCALLY_EXECUTION_REPORT)
    assert isinstance(incoming, DataEvents)
    (order,) = incoming.events
    assert isinstance(order, OrderUpdate)
    return order


def btc_fill(
    amount: str,
    price: str | None,
    cost: str | None,
    fee: str | None,
    order_filled: str,
    *,
    at: int,
    derived: bool,
) -> Fill:
    """The document report's execution fill with its amounts, time and kind changed."""
    return msgspec.structs.replace(
        COINLOCALLY_EXECUTION_FILL,
        timestamp=1745389508472 + at,
        amount=Decimal(amount),
        price=None if price is None else Decimal(price),
        cost=None if cost is None else Decimal(cost),
        fee=None if fee is None else Decimal(fee),
        fee_asset=None if fee is None else "USDT",  # a sell pays in the quote asset
        order_filled=Decimal(order_filled),
        derived=derived,
    )


def test_coinlocally_document_report_first_seen_gives_the_unexplained_part_then_the_execution() -> None:
    fills = FillTracker().feed(doc_report())
    assert fills == [
        btc_fill("0.07861112", "13000", "1021.94456", None, "0.07861112", at=0, derived=True),
        COINLOCALLY_EXECUTION_FILL,
    ]
    assert [to_json(fill) for fill in fills] == [
        b'{"kind":"fill","exchange":"coinlocally","account":"default","timestamp":1745389508472,'
        b'"source":"stream","order_id":"2690536306533246156","symbol":"BTC/USDT","side":"sell",'
        b'"amount":"0.0786111200000000","price":"13000.0000000000000000",'
        b'"cost":"1021.94456000000000000000000000000000","fee":null,"fee_asset":null,'
        b'"order_filled":"0.0786111200000000",'
        b'"derived":true}',
        b'{"kind":"fill","exchange":"coinlocally","account":"default","timestamp":1745389508472,'
        b'"source":"stream","order_id":"2690536306533246156","symbol":"BTC/USDT","side":"sell",'
        b'"amount":"0.1000000000000000","price":"13000.0000000000000000",'
        b'"cost":"1300.00000000000000000000000000000000","fee":"7.8000000000000000","fee_asset":"USDT",'
        b'"order_filled":"0.17861112","derived":false}',
    ]
    assert sum((fill.amount for fill in fills), Decimal(0)) == Decimal("0.17861112")
    assert sum((fill.cost or Decimal(0) for fill in fills), Decimal(0)) == Decimal("2321.94456")


def test_coinlocally_one_exact_fill_per_execution_report() -> None:
    tracker = FillTracker()
    new = coinlocally_report(last="0", filled="0", last_price="0", value="0", fee="0", status="NEW")
    first = coinlocally_report(last="0.1", filled="0.1", last_price="13000", value="1300", fee="7.8", at=1)
    second = coinlocally_report(
        last="0.25", filled="0.35", last_price="13001.5", value="4550.375", fee="19.5", at=2
    )
    last = coinlocally_report(
        last="0.65", filled="1", last_price="13000", value="12000.375", fee="50.7", status="FILLED", at=3
    )
    assert tracker.feed(new) == []
    assert tracker.feed(first) == [btc_fill("0.1", "13000", "1300.0", "7.8", "0.1", at=1, derived=False)]
    assert tracker.feed(second) == [
        btc_fill("0.25", "13001.5", "3250.375", "19.5", "0.35", at=2, derived=False)
    ]
    assert tracker.feed(first) == []  # a duplicate of an earlier report
    assert tracker.feed(last) == [btc_fill("0.65", "13000", "8450", "50.7", "1", at=3, derived=False)]
    assert tracker.feed(second) == []  # late, after the order ended
    assert tracker.tracked_orders == 0


def test_coinlocally_status_report_repeating_the_last_execution_is_not_a_second_fill() -> None:
    # Coinlocally's own example carries l on an x=STATUS report: the same z means nothing new was filled.
    tracker = FillTracker()
    fill = coinlocally_report(last="0.1", filled="0.1", last_price="13000", value="1300", fee="7.8", at=1)
    cancel = coinlocally_report(
        last="0.1", filled="0.1", last_price="13000", value="1300", fee="7.8", status="CANCELED", at=2
    )
    assert tracker.feed(fill) == [btc_fill("0.1", "13000", "1300.0", "7.8", "0.1", at=1, derived=False)]
    assert tracker.feed(cancel) == []


def test_coinlocally_report_arriving_late_is_already_inside_a_derived_fill() -> None:
    tracker = FillTracker()
    first = coinlocally_report(last="0.1", filled="0.1", last_price="13000", value="1300", fee="7.8", at=1)
    second = coinlocally_report(last="0.2", filled="0.3", last_price="13100", value="3920", fee="15.6", at=2)
    third = coinlocally_report(last="0.1", filled="0.4", last_price="13200", value="5240", fee="7.9", at=3)
    assert tracker.feed(first) == [btc_fill("0.1", "13000", "1300.0", "7.8", "0.1", at=1, derived=False)]
    # `second` is delayed: `third` explains 0.1 of the 0.3 growth, the rest is derived from z and Z
    assert tracker.feed(third) == [
        btc_fill("0.2", "13100", "2620.0", None, "0.3", at=3, derived=True),
        btc_fill("0.1", "13200", "1320.0", "7.9", "0.4", at=3, derived=False),
    ]
    assert tracker.feed(second) == []  # counted once, in the derived fill


def test_coinlocally_report_without_an_execution_but_growth_is_derived() -> None:
    tracker = FillTracker()
    tracker.feed(
        coinlocally_report(last="0.1", filled="0.1", last_price="13000", value="1300", fee="7.8", at=1)
    )
    grew = coinlocally_report(last="0", filled="0.3", last_price="0", value="3920", fee="0", at=2)
    assert tracker.feed(grew) == [btc_fill("0.2", "13100", "2620", None, "0.3", at=2, derived=True)]


def test_coinlocally_execution_larger_than_the_growth_is_derived_not_counted_twice() -> None:
    tracker = FillTracker()
    tracker.feed(
        coinlocally_report(last="0.1", filled="0.2", last_price="13000", value="2600", fee="7.8", at=1)
    )
    overlapping = coinlocally_report(
        last="0.3", filled="0.4", last_price="13000", value="5200", fee="23.4", at=2
    )
    assert tracker.feed(overlapping) == [btc_fill("0.2", "13000", "2600", None, "0.4", at=2, derived=True)]


# --- bounds and identity ---------------------------------------------------------------------------------


def test_orders_are_told_apart_by_exchange_account_and_id() -> None:
    tracker = FillTracker()
    mine = bitmusa_order("0.5", "0.25775")
    theirs = msgspec.structs.replace(mine, account="other")
    assert len(tracker.feed(mine)) == 1
    assert len(tracker.feed(theirs)) == 1
    assert tracker.tracked_orders == 2


def test_non_order_events_give_nothing() -> None:
    balance = BalanceUpdate(
        exchange=Exchange.BITMUSA, account="a", timestamp=1, asset="USDT", free=Decimal(1), locked=Decimal(0)
    )
    assert FillTracker().feed(balance) == []


def order(order_id: str, filled: str, status: OrderStatus = OrderStatus.OPEN) -> OrderUpdate:
    return OrderUpdate(
        exchange=Exchange.BITMUSA,
        account="a",
        timestamp=1,
        id=order_id,
        symbol="XRP/USDT",
        raw_symbol="XRP/USDT",
        side=Side.BUY,
        type=OrderType.LIMIT,
        raw_type="LIMIT_PRICE",
        status=status,
        raw_status=status.value.upper(),
        price=Decimal(1),
        amount=Decimal(10),
        filled=Decimal(filled),
        remaining=Decimal(10) - Decimal(filled),
        cost=Decimal(filled),
    )


def test_tracked_orders_are_capped_and_an_evicted_order_never_fills_twice() -> None:
    tracker = FillTracker(max_orders=2)
    assert len(tracker.feed(order("1", "1"))) == 1
    assert len(tracker.feed(order("2", "1"))) == 1
    assert len(tracker.feed(order("1", "2"))) == 1  # "1" is now the most recently updated
    assert len(tracker.feed(order("3", "1"))) == 1  # evicts "2"
    assert (tracker.tracked_orders, tracker.evicted) == (2, 1)
    assert tracker.feed(order("2", "1")) == []  # would have been its whole fill again
    assert tracker.feed(order("2", "5")) == []  # its growth is lost rather than risk a double count
    assert len(tracker.feed(order("1", "3"))) == 1


def test_finished_orders_are_remembered_within_a_bound() -> None:
    tracker = FillTracker(max_finished=2)
    for order_id in ("1", "2", "3"):
        tracker.feed(order(order_id, "10", OrderStatus.CLOSED))
    assert tracker.feed(order("3", "10", OrderStatus.CLOSED)) == []
    assert tracker.feed(order("2", "10", OrderStatus.CLOSED)) == []
    # "1" fell out of the bounded memory: a very late duplicate of it fills again; the bound is the trade-off
    assert len(tracker.feed(order("1", "10", OrderStatus.CLOSED))) == 1


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        FillTracker(max_orders=0)


# --- hypothesis: whatever the arrival order, the fills add up to the order ---------------------------------


@given(
    st.lists(st.tuples(st.integers(1, 50), st.integers(1, 9999)), min_size=1, max_size=6),
    st.booleans(),
    st.booleans(),
    st.data(),
)
def test_fills_add_up_to_the_order_whatever_the_arrival_order(
    executions: list[tuple[int, int]], per_execution: bool, ends: bool, data: st.DataObject
) -> None:
    updates: list[OrderUpdate] = []
    filled, value = Decimal(0), Decimal(0)
    for index, (lots, ticks) in enumerate(executions):
        amount, price = Decimal(lots) / 100, Decimal(ticks) / 10
        filled, value = exact_add(filled, amount), exact_add(value, exact_mul(amount, price))
        final = ends and index == len(executions) - 1
        updates.append(
            msgspec.structs.replace(
                order("o", "0", OrderStatus.CLOSED if final else OrderStatus.OPEN),
                timestamp=index,
                filled=filled,
                remaining=Decimal(10) - filled,
                cost=value,
                last_fill_amount=amount if per_execution else None,
                last_fill_price=price if per_execution else None,
            )
        )
    arrival = data.draw(st.permutations(updates))
    tracker = FillTracker()
    fills = [fill for update in [*arrival, *arrival] for fill in tracker.feed(update)]
    assert sum((fill.amount for fill in fills), Decimal(0)) == filled
    assert sum((fill.cost or Decimal(0) for fill in fills), Decimal(0)) == value
    assert all(fill.cost is not None for fill in fills)
    assert [fill.order_filled for fill in fills] == sorted({fill.order_filled for fill in fills}, key=Decimal)
    if per_execution and arrival == updates:  # in order: every execution reported exactly, none derived
        assert [(fill.amount, fill.derived) for fill in fills] == [
            (u.last_fill_amount, False) for u in updates
        ]


def test_the_fee_asset_is_the_base_for_a_buy_the_quote_for_a_sell_and_none_without_a_pair() -> None:
    sell = coinlocally_report(last="0.1", filled="0.1", last_price="13000", value="1300", fee="7.8")
    buy = msgspec.structs.replace(sell, id="2", side=Side.BUY, fee=Decimal("0.0001"))
    unsplit = msgspec.structs.replace(sell, id="3", symbol="BTCXYZ")
    tracker = FillTracker()
    assert [(fill.fee, fill.fee_asset) for fill in tracker.feed(sell)] == [(Decimal("7.8"), "USDT")]
    assert [(fill.fee, fill.fee_asset) for fill in tracker.feed(buy)] == [(Decimal("0.0001"), "BTC")]
    assert [(fill.fee, fill.fee_asset) for fill in tracker.feed(unsplit)] == [(Decimal("7.8"), None)]
