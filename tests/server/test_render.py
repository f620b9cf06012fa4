"""One render per dialect per batch: Coinlocally groups a moment's balances; a bad event names its index."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal

import pytest

from userstream.events import BalanceUpdate, Event, Exchange, OrderStatus, OrderType, OrderUpdate, Side
from userstream.server.render import RenderError, render_batch


def balance(asset: str, timestamp: int) -> BalanceUpdate:
    return BalanceUpdate(
        exchange=Exchange.BITMUSA,
        account="a",
        timestamp=timestamp,
        asset=asset,
        free=Decimal(1),
        locked=Decimal(0),
    )


def order(
    order_id: str, *, status: OrderStatus | None = OrderStatus.OPEN, raw_status: str = "OPEN"
) -> OrderUpdate:
    return OrderUpdate(
        exchange=Exchange.BITMUSA,
        account="a",
        timestamp=1,
        id=order_id,
        symbol="BTC/USDT",
        raw_symbol="BTC/USDT",
        side=Side.BUY,
        type=OrderType.LIMIT,
        raw_type="LIMIT",
        status=status,
        raw_status=raw_status,
        price=Decimal(1),
        amount=Decimal(1),
        filled=Decimal(0),
        remaining=Decimal(1),
        cost=Decimal(0),
    )


def assets_per_coinlocally_frame(events: list[Event]) -> list[list[str] | str]:
    frames = render_batch(events).frames[Exchange.COINLOCALLY]
    shapes: list[list[str] | str] = []
    for frame in frames:
        assert isinstance(frame, bytes)
        message = json.loads(gzip.decompress(frame))
        shapes.append([entry["a"] for entry in message["B"]] if "B" in message else message["i"])
    return shapes


def test_bitmusa_gets_one_text_frame_per_event() -> None:
    batch = render_batch([balance("BTC", 1), balance("USDT", 1), order("7")])
    assert batch.events == 3
    frames = batch.frames[Exchange.BITMUSA]
    assert [json.loads(frame)["stream"] for frame in frames] == ["spot_wallet", "spot_wallet", "spot_order"]


def test_coinlocally_groups_consecutive_balances_of_one_moment_only() -> None:
    events: list[Event] = [
        balance("BTC", 1),
        balance("USDT", 1),
        order("7"),
        balance("ETH", 1),
        balance("ETH", 1),  # the same asset again is a newer update: its own frame
        balance("XRP", 2),  # another moment: its own frame
    ]
    assert assets_per_coinlocally_frame(events) == [["BTC", "USDT"], "7", ["ETH"], ["ETH"], ["XRP"]]


def test_an_unrenderable_event_names_its_index() -> None:
    # no status, yet a raw status Coinlocally knows: contradictory, refused rather than guessed
    bad = order("8", status=None, raw_status="FILLED")
    with pytest.raises(RenderError) as caught:
        render_batch([order("7"), bad])
    assert caught.value.index == 1
