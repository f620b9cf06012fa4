"""The seam between one `serve` node and what several nodes must share: the listenKey store and the fan-out.

A `Backend` owns the two things an exchange keeps beyond one process: which listenKey each account holds
and until when, and the fan-out of published events (every event reaches every live stream of its account,
on every node, once, in publish order). `MemoryBackend` is the embedded default, the single process as it
always was: keys in a `ListenKeyStore` swept by one task, and a publish delivered here and now.
`userstream.server.redis_backend.RedisBackend` keeps both in Redis, so N nodes behind a load balancer behave
as one (docs/scaling.md). A backend calls back into its node through `Node` (deliver a batch to the local
streams, close the local streams of a key, close every local stream) and never touches a connection itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from userstream.errors import ConfigurationError, TransportError
from userstream.events import Event
from userstream.protocol.close import CloseCode
from userstream.server.keys import ListenKeyStore

if TYPE_CHECKING:
    from userstream.server.config import ServerConfig
    from userstream.server.hub import RenderedBatch

__all__ = ["Backend", "BackendUnavailableError", "MemoryBackend", "Node", "make_backend"]


class BackendUnavailableError(TransportError):
    """The shared store cannot be reached now: the node refuses what needs it (HTTP 503) until it can."""


class Node(Protocol):
    """What a backend may ask of the server it serves (`ExchangeServer`)."""

    def deliver(self, account: str, events: Sequence[Event], batch: RenderedBatch) -> int:
        """Fold a published batch into this node's truth and queue it on the account's live local streams."""
        ...

    def listen_key_closed(self, account: str, key: str, code: CloseCode) -> int:
        """`key` was deleted (4002) or lapsed (4001): close this node's streams that use it."""
        ...

    def close_all_streams(self, reason: str) -> int:
        """Close every local stream (1001, SYSTEM notice first): this node may have missed events."""
        ...

    def listen_keys_in_use(self) -> set[str]:
        """The listenKeys of this node's open Bitmusa streams."""
        ...


class Backend(Protocol):
    """The listenKey store and the fan-out of one node. Every method may raise `BackendUnavailableError`."""

    kind: str

    async def create_listen_key(self, account: str) -> tuple[str, bool]:
        """The account's active key, or a new one valid for the TTL: (key, created)."""
        ...

    async def extend_listen_key(self, account: str) -> str | None:
        """Make the account's active key valid for the TTL from now; None when it has none."""
        ...

    async def delete_listen_key(self, account: str) -> str | None:
        """Invalidate the account's active key and close its streams (4002) on every node."""
        ...

    async def expire_listen_key(self, account: str) -> str | None:
        """A fault: the account's key lapses now and its streams close (4001) on every node."""
        ...

    async def lookup_listen_key(self, key: str) -> str | None:
        """The account owning `key` while it is active, else None."""
        ...

    async def active_listen_key(self, account: str) -> str | None: ...

    def listen_key_count(self) -> int | None:
        """Active keys (of every node), for /healthz; None when not known yet."""
        ...

    async def publish(self, account: str, events: Sequence[Event], batch: RenderedBatch) -> int:
        """Publish a validated batch; returns once it is certain to reach every live stream of `account`."""
        ...

    def publish_nowait(self, account: str, events: Sequence[Event], batch: RenderedBatch) -> int:
        """Publish without waiting (the simulator), in order with every other publish of this node."""
        ...

    def problem(self) -> str | None:
        """Why this node cannot serve new streams now (None: it can)."""
        ...

    def describe(self) -> dict[str, Any] | None:
        """The backend's part of /healthz (None: nothing to add)."""
        ...

    async def run(self) -> None:
        """The backend's background work, for as long as the server runs (cancelled at shutdown)."""
        ...


def make_backend(config: ServerConfig, node: Node) -> Backend:
    """The backend `config` asks for: Redis when `redis_url` is set, else the in-memory default."""
    if config.redis_url is None:
        return MemoryBackend(config.listen_key_ttl, node)
    # Imported only when asked for: redis-py is an optional dependency (`userstream[redis]`).
    try:
        from userstream.server.redis_backend import RedisBackend  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if exc.name != "redis":
            raise
        raise ConfigurationError("--redis needs redis-py: pip install 'userstream[redis]'") from None
    return RedisBackend(config, node)


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
