"""A tiny trading bot, the subject of docs/testing.md (its test is there, and runs in the project's suite).

It follows one account's user stream, keeps the balances and open orders the stream reports, and the moment
the stream is interrupted it stops trading and cancels its open orders: while it cannot see the account, it
must not leave orders working. It trades again once the stream is live again. Cancelling goes through
`cancel`, the bot's own order API (not userstream's, which only reads): a callable taking an order id.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import userstream
from userstream.client import State, StatusEvent


class Bot:
    def __init__(self, exchange: str, settings: dict[str, Any], cancel: Callable[[str], object]) -> None:
        self.exchange = exchange
        self.settings = settings  # the connect() keywords: credentials and URLs
        self.cancel = cancel
        self.balances: dict[str, Decimal] = {}
        self.open_orders: dict[str, userstream.OrderUpdate] = {}
        self.trading = False

    def on_status(self, status: StatusEvent) -> None:
        live = State.SUBSCRIBED if self.exchange == "coinlocally" else State.CONNECTED
        if status.state is State.DISCONNECTED and self.trading:
            self.trading = False
            for order_id in self.open_orders:
                self.cancel(order_id)
        elif status.state is live:
            self.trading = True

    def apply(self, event: userstream.Event) -> None:
        if isinstance(event, userstream.BalanceUpdate):
            self.balances[event.asset] = event.free
        elif isinstance(event, userstream.OrderUpdate):
            if event.is_final:
                self.open_orders.pop(event.id, None)
            else:
                self.open_orders[event.id] = event

    async def run(self) -> None:
        async with userstream.connect(self.exchange, on_status=self.on_status, **self.settings) as stream:
            async for event in stream:
                self.apply(event)
