"""The health of a `serve` node's Redis: a check every `redis_check_interval` seconds, and what follows it.

A failed check (or any failed command) marks the node unavailable (`down` says why): new streams, listenKey
requests and ingest are refused with 503 and /healthz says why, until Redis answers again; then the node
re-checks its keys and carries on by itself. Open streams stay open meanwhile. The check also counts the
active keys (for /healthz) and compares the fan-out's `seq` with what this node read: lower means Redis
came back without its data, and every local stream is closed (what it missed cannot be known).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis.asyncio

from userstream.logs import log_event
from userstream.server.backend.redis.client import FAILURES, SOCKET_TIMEOUT, describe
from userstream.server.backend.redis.layout import CHECK, Layout, wall_ms

__all__ = ["HealthCheck"]

_log = logging.getLogger("userstream.server.redis")


class HealthCheck:
    """`down` (None: Redis answers) and `key_count`, refreshed by `run()`."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        layout: Layout,
        *,
        node_id: str,
        interval: float,
        last_seq: Callable[[], int | None],
        on_recovery: Callable[[], None],
        on_data_lost: Callable[[], None],
    ) -> None:
        self._script = client.register_script(CHECK)
        self._keys = [layout.index, layout.seq]
        self._node_id = node_id
        self._interval = interval
        self._last_seq = last_seq
        self._on_recovery = on_recovery
        self._on_data_lost = on_data_lost
        self.down: str | None = None  # the check's verdict
        self.key_count: int | None = None

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(SOCKET_TIMEOUT):
                    count, seq = await self._script(keys=self._keys, args=[wall_ms()])
            except (*FAILURES, TimeoutError) as exc:
                reason = f"Redis unreachable: {describe(exc)}"
                if self.down is None:
                    log_event(_log, logging.WARNING, "redis unavailable", node=self._node_id, reason=reason)
                self.down = reason
            else:
                self.key_count = int(count)
                if self.down is not None:
                    log_event(_log, logging.INFO, "redis available again", node=self._node_id)
                    self.down = None
                    self._on_recovery()
                last_seq = self._last_seq()
                if last_seq is not None and int(seq) < last_seq:
                    self._on_data_lost()
            await asyncio.sleep(self._interval)
