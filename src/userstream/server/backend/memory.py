"""`MemoryBackend`: the embedded default, one process: listenKeys in a `ListenKeyStore`, fan-out at once.

Keys live in a `ListenKeyStore` (keys.py, monotonic time) swept by one task for the whole server, and a
publish is delivered to this node's streams here and now (`Node.deliver`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from userstream.events import Event
from userstream.protocol.close import CloseCode
from userstream.server.backend.interface import Node
from userstream.server.keys import ListenKeyStore
from userstream.server.render import RenderedBatch

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """One process: listenKeys in a `ListenKeyStore` (monotonic time), fan-out = deliver at once."""

    kind = "memory"

    def __init__(self, ttl: float, node: Node) -> None:
        self.keys = ListenKeyStore(ttl)
        self._node = node
        self._keys_changed = asyncio.Event()

    async def create_listen_key(self, account: str) -> tuple[str, bool]:
        key, created = self.keys.create_or_get(account, time.monotonic())
        if created:
            self._keys_changed.set()
        return key, created

    async def extend_listen_key(self, account: str) -> str | None:
        key = self.keys.extend(account, time.monotonic())
        if key is not None:
            self._keys_changed.set()
        return key

    async def delete_listen_key(self, account: str) -> str | None:
        key = self.keys.delete(account, time.monotonic())
        if key is not None:
            self._keys_changed.set()
            self._node.listen_key_closed(account, key, CloseCode.LISTEN_KEY_DELETED)
        return key

    async def expire_listen_key(self, account: str) -> str | None:
        return self.expire_now(account)

    def expire_now(self, account: str) -> str | None:
        """`expire_listen_key` without awaiting: in memory it is immediate."""
        key = self.keys.expire_now(account)
        if key is not None:
            self._keys_changed.set()
            self._node.listen_key_closed(account, key, CloseCode.LISTEN_KEY_EXPIRED)
        return key

    async def lookup_listen_key(self, key: str) -> str | None:
        return self.keys.lookup(key, time.monotonic())

    async def active_listen_key(self, account: str) -> str | None:
        return self.keys.active_key(account, time.monotonic())

    def listen_key_count(self) -> int:
        return len(self.keys)

    async def publish(self, account: str, events: Sequence[Event], batch: RenderedBatch) -> int:
        return self._node.deliver(account, events, batch)

    def publish_nowait(self, account: str, events: Sequence[Event], batch: RenderedBatch) -> int:
        return self._node.deliver(account, events, batch)

    def problem(self) -> None:
        return None

    def describe(self) -> None:
        return None

    async def run(self) -> None:
        """Close the streams of every key as it lapses: one task for the whole server."""
        while True:
            self._keys_changed.clear()
            now = time.monotonic()
            for account, key in self.keys.expire_due(now):
                self._node.listen_key_closed(account, key, CloseCode.LISTEN_KEY_EXPIRED)
            next_expiry = self.keys.next_expiry()
            delay = None if next_expiry is None else max(0.0, next_expiry - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._keys_changed.wait()
