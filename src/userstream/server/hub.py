"""Who hears what: every open connection by account, and the fan-out of rendered events to them.

A batch arrives rendered once per dialect (render.py). `Hub.deliver` queues its frames on every *live*
connection of that account, in batch order, in the connection's own dialect, and never on another
account's. The hub never sends itself: each connection's writer does (see connection.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from userstream.events import Exchange
from userstream.server.connection import Connection
from userstream.server.render import RenderedBatch

__all__ = ["Hub"]


class Hub:
    """account name -> its open connections (in order of arrival); a signal for whoever awaits a change."""

    def __init__(self) -> None:
        self._by_account: dict[str, dict[Connection, None]] = {}
        self._changed = asyncio.Event()

    def add(self, connection: Connection) -> None:
        self._by_account.setdefault(connection.account.name, {})[connection] = None
        self.notify()

    def remove(self, connection: Connection) -> None:
        connections = self._by_account.get(connection.account.name)
        if connections is not None:
            connections.pop(connection, None)
            if not connections:
                del self._by_account[connection.account.name]
        self.notify()

    def notify(self) -> None:
        """Wake everyone waiting in `wait_until` (a connection was added, removed or went live)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Return once `condition()` holds, re-checked at every change (bound it with asyncio.timeout)."""
        while not condition():
            await self._changed.wait()

    def connections(self, account: str | None = None, exchange: Exchange | None = None) -> list[Connection]:
        if account is None:
            pool = [c for connections in self._by_account.values() for c in connections]
        else:
            pool = list(self._by_account.get(account, ()))
        return [c for c in pool if exchange is None or c.exchange is exchange]

    def deliver(self, account: str, batch: RenderedBatch, first_seq: int | None = None) -> int:
        """Queue the batch on every live connection of `account`; return how many connections got it.
        `first_seq` is the ledger's sequence number of the batch's first event (None: not tracked)."""
        reached = 0
        for connection in list(self._by_account.get(account, ())):
            if not connection.live:
                continue
            frames = batch.frames[connection.exchange]
            spans = batch.spans.get(connection.exchange)
            for index, frame in enumerate(frames):
                seqs = None
                if first_seq is not None and spans is not None:
                    start, stop = spans[index]
                    seqs = range(first_seq + start, first_seq + stop)
                if not connection.send(frame, seqs):
                    break
            else:
                reached += 1
        return reached

    def counts(self) -> dict[str, dict[str, int]]:
        """account -> {"bitmusa": open, "coinlocally": open, "live": receiving events}."""
        result: dict[str, dict[str, int]] = {}
        for account, connections in self._by_account.items():
            tally = dict.fromkeys([exchange.value for exchange in Exchange], 0) | {"live": 0}
            for connection in connections:
                tally[connection.exchange.value] += 1
                tally["live"] += connection.live
            result[account] = tally
        return result
