"""`RedisBackend`: the `Backend` of `serve --redis URL`, composed of the pieces of this package.

It owns the redis-py client and the node's identity, answers the `Backend` protocol by delegating to its
parts, and runs their background tasks in one TaskGroup for as long as the server runs:

    layout.py     key names under `{prefix}` (default `userstream:serve`) and the Lua scripts
    client.py     the client, and redis-py's failures as `BackendUnavailableError`
    keys.py       listenKeys (create, extend, close, look up) and the watch of this node's keys
    publisher.py  this node's publishes, in order, pipelined, each batch rendered once
    fanout.py     the reader of the fan-out stream (every entry once, in order; gaps close streams)
    health.py     the periodic check: unavailable while Redis is down, recovery, a Redis that lost its data

docs/scaling.md explains the design.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
from collections.abc import Sequence
from typing import Any

from userstream.events import Event
from userstream.logs import log_event, redacted_url
from userstream.protocol.close import CloseCode
from userstream.server.backend.interface import BackendUnavailableError, Node
from userstream.server.backend.redis.client import open_client
from userstream.server.backend.redis.fanout import FanoutReader
from userstream.server.backend.redis.health import HealthCheck
from userstream.server.backend.redis.keys import RedisListenKeys
from userstream.server.backend.redis.layout import Layout
from userstream.server.backend.redis.publisher import Publisher
from userstream.server.config import ServerConfig
from userstream.server.render import RenderedBatch

__all__ = ["RedisBackend", "default_node_id"]

_log = logging.getLogger("userstream.server.redis")
_NODE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def default_node_id() -> str:
    """`<host>-<pid>`: unique among the nodes of one machine and readable in logs."""
    host = _NODE_ID_CHARS.sub("-", socket.gethostname())[:40].strip("-._") or "node"
    return f"{host}-{os.getpid()}"


class RedisBackend:
    """listenKeys and fan-out in Redis: N nodes with the same accounts behave as one server."""

    kind = "redis"

    def __init__(self, config: ServerConfig, node: Node) -> None:
        if config.redis_url is None:
            raise ValueError("RedisBackend needs config.redis_url")
        self.node_id = config.node_id or default_node_id()
        self._node = node
        self._url = config.redis_url
        check_interval = config.redis_check_interval
        self._client = open_client(self._url, check_interval)
        layout = Layout(config.redis_prefix)
        self._keys = RedisListenKeys(
            self._client,
            layout,
            node,
            node_id=self.node_id,
            ttl_ms=max(1, round(config.listen_key_ttl * 1000)),
            maxlen=config.fanout_maxlen,
            check_interval=check_interval,
        )
        self._publisher = Publisher(self._client, layout, node_id=self.node_id, maxlen=config.fanout_maxlen)
        self._reader = FanoutReader(
            self._client,
            layout,
            node,
            node_id=self.node_id,
            check_interval=check_interval,
            own_batch=self._publisher.take_own,
            forget_key=self._keys.forget,
        )
        self._health = HealthCheck(
            self._client,
            layout,
            node_id=self.node_id,
            interval=check_interval,
            last_seq=lambda: self._reader.last_seq,
            on_recovery=self._keys.recheck_all,
            on_data_lost=self._fanout_reset,
        )

    def __repr__(self) -> str:
        return f"RedisBackend(node={self.node_id!r}, redis={redacted_url(self._url)!r})"

    # --- listenKeys --------------------------------------------------------------------------------------

    async def create_listen_key(self, account: str) -> tuple[str, bool]:
        return await self._keys.create(account)

    async def extend_listen_key(self, account: str) -> str | None:
        return await self._keys.extend(account)

    async def delete_listen_key(self, account: str) -> str | None:
        return await self._keys.close(account, CloseCode.LISTEN_KEY_DELETED)

    async def expire_listen_key(self, account: str) -> str | None:
        return await self._keys.close(account, CloseCode.LISTEN_KEY_EXPIRED)

    async def lookup_listen_key(self, key: str) -> str | None:
        return await self._keys.lookup(key)

    async def active_listen_key(self, account: str) -> str | None:
        return await self._keys.active(account)

    def listen_key_count(self) -> int | None:
        return self._health.key_count

    # --- fan-out -----------------------------------------------------------------------------------------

    async def publish(self, account: str, events: Sequence[Event], batch: RenderedBatch) -> int:
        if self._health.down is not None:
            raise BackendUnavailableError(self._health.down)
        await self._publisher.publish(account, events, batch)
        return 0

    def publish_nowait(self, account: str, events: Sequence[Event], batch: RenderedBatch) -> int:
        self._publisher.publish_nowait(account, events, batch)
        return 0

    # --- health ------------------------------------------------------------------------------------------

    def problem(self) -> str | None:
        if self._health.down is not None:
            return self._health.down
        if self._reader.problem is not None:
            return self._reader.problem
        if not self._reader.ready:
            return "catching up with the fan-out stream"
        return None

    def describe(self) -> dict[str, Any]:
        reader = self._reader
        return {
            "kind": self.kind,
            "node": self.node_id,
            "redis": redacted_url(self._url),
            "fanout_seq": reader.last_seq,
            "fanout_entries": reader.entries,
            "fanout_gaps": reader.gaps,
            "publishes_dropped": self._publisher.dropped,
        }

    # --- background work ---------------------------------------------------------------------------------

    async def run(self) -> None:
        log_event(
            _log, logging.INFO, "redis backend started", node=self.node_id, redis=redacted_url(self._url)
        )
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._health.run(), name="userstream-redis-health")
                group.create_task(self._reader.read(), name="userstream-redis-fanout")
                group.create_task(self._keys.watch(), name="userstream-redis-keys")
                group.create_task(self._publisher.drain(), name="userstream-redis-publisher")
        finally:
            self._publisher.fail_pending(BackendUnavailableError("the server is shutting down"))
            await self._client.aclose()

    def _fanout_reset(self) -> None:
        """Redis came back without the fan-out stream (it lost its data): what this node may have missed
        cannot be known, so every local stream is closed, and reading starts over on the new stream."""
        self._reader.restart()
        self._node.close_all_streams("the event fan-out restarted: reconnect")
        self._keys.recheck_all()
