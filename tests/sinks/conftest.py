"""Shared fixtures of the sink tests: event builders. (The real redis-server, `redis_server`, is shared by
every test directory: tests/conftest.py.)

Test modules cannot import each other (pytest's importlib mode), so helpers come as fixtures.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from userstream.events import BalanceUpdate, Exchange, OrderStatus, OrderType, OrderUpdate, Side
from userstream.money import exact_sub

BASE_TIME = 1_700_703_548_000

BalanceFactory = Callable[..., BalanceUpdate]
OrderFactory = Callable[..., OrderUpdate]


@pytest.fixture
def balance() -> BalanceFactory:
    def make(
        asset: str = "USDT",
        free: str = "100.5",
        locked: str = "0",
        *,
        timestamp: int = BASE_TIME,
        account: str = "alice",
        exchange: Exchange = Exchange.BITMUSA,
    ) -> BalanceUpdate:
        return BalanceUpdate(
            exchange=exchange,
            account=account,
            timestamp=timestamp,
            asset=asset,
            free=Decimal(free),
            locked=Decimal(locked),
        )

    return make


@pytest.fixture
def order() -> OrderFactory:
    def make(
        order_id: str = "1001",
        status: OrderStatus | None = OrderStatus.OPEN,
        filled: str = "0",
        *,
        amount: str = "2",
        price: str = "0.5",
        timestamp: int = BASE_TIME,
        account: str = "alice",
        raw_status: str | None = None,
    ) -> OrderUpdate:
        return OrderUpdate(
            exchange=Exchange.COINLOCALLY,
            account=account,
            timestamp=timestamp,
            id=order_id,
            symbol="XRP/USDT",
            raw_symbol="XRPUSDT",
            side=Side.BUY,
            type=OrderType.LIMIT,
            raw_type="LIMIT",
            status=status,
            raw_status=raw_status if raw_status is not None else (status.value.upper() if status else "?"),
            price=Decimal(price),
            amount=Decimal(amount),
            filled=Decimal(filled),
            remaining=exact_sub(Decimal(amount), Decimal(filled)),
            cost=None,
            created_at=BASE_TIME - 1000,
        )

    return make
