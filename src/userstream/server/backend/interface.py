"""What a backend is: the `Backend` protocol the server calls, the `Node` protocol a backend calls back.

A `Backend` owns a node's listenKey store and its fan-out of published events (memory.py: one process;
redis/: shared by every node). It calls back into its node through `Node` (deliver a batch to the local
streams, close the local streams of a key, close every local stream) and never touches a connection itself.
Every backend method may raise `BackendUnavailableError` (HTTP 503 at the routes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from userstream.errors import TransportError
from userstream.events import Event
from userstream.protocol.close import CloseCode
from userstream.server.render import RenderedBatch

__all__ = ["Backend", "BackendUnavailableError", "Node"]


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
