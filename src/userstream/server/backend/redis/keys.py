"""The listenKeys of a multi-node `serve` in Redis, and the watch that closes this node's streams of a key.

Every operation is one script of layout.py (a key created on one node is found, extended and deleted on any
other; a deletion or the expire fault appends the close to the fan-out, which every node obeys). A node
re-checks (PTTL) the keys its own Bitmusa streams use when they are due to lapse, and closes the streams of
a key that is gone (4001); an extension made on another node is found at that check.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from userstream.protocol.close import CloseCode
from userstream.server.backend.interface import Node
from userstream.server.backend.redis.client import FAILURES, call
from userstream.server.backend.redis.layout import CLOSE, CREATE, EXTEND, Layout, text, wall_ms

__all__ = ["RedisListenKeys"]


@dataclass(slots=True)
class _Watched:
    account: str
    recheck_at: float  # monotonic time the key is due to lapse, as last seen


class RedisListenKeys:
    """create / extend / close / look up listenKeys in Redis; `watch()` closes the lapsed ones' streams."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        layout: Layout,
        node: Node,
        *,
        node_id: str,
        ttl_ms: int,
        maxlen: int,
        check_interval: float,
    ) -> None:
        self._client = client
        self._layout = layout
        self._node = node
        self._node_id = node_id
        self._ttl_ms = ttl_ms
        self._maxlen = maxlen
        self._check_interval = check_interval
        self._create = client.register_script(CREATE)
        self._extend = client.register_script(EXTEND)
        self._close = client.register_script(CLOSE)
        self._watched: dict[str, _Watched] = {}
        self._watch_changed = asyncio.Event()

    async def create(self, account: str) -> tuple[str, bool]:
        layout = self._layout
        fresh = secrets.token_urlsafe(32)
        args: list[str | int] = [fresh, self._ttl_ms, layout.key_prefix, account, wall_ms()]
        reply = await call(self._create(keys=[layout.account_key(account), layout.index], args=args))
        key, created = reply
        return text(key), bool(created)

    async def extend(self, account: str) -> str | None:
        layout = self._layout
        args: list[str | int] = [self._ttl_ms, layout.key_prefix, account, wall_ms()]
        reply = await call(self._extend(keys=[layout.account_key(account), layout.index], args=args))
        return None if reply is None else text(reply)

    async def close(self, account: str, code: CloseCode) -> str | None:
        """Remove the account's key and append its close (`code`) to the fan-out; None if it had none."""
        layout = self._layout
        keys = [layout.account_key(account), layout.index, layout.stream, layout.seq]
        args: list[str | int] = [layout.key_prefix, account, int(code), self._maxlen, self._node_id]
        reply = await call(self._close(keys=keys, args=args))
        return None if reply is None else text(reply)

    async def lookup(self, key: str) -> str | None:
        """The account owning `key` while it is active; from now on this node watches it."""
        stored = self._layout.key_prefix + key

        async def lookup() -> list[Any]:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.get(stored)
                pipe.pttl(stored)
                replies: list[Any] = await pipe.execute()
                return replies

        account, pttl = await call(lookup())
        if account is None or pttl is None or int(pttl) < 0:
            return None
        name = text(account)
        # the node's streams of this key close when it lapses: watch it from now on
        self._watched[key] = _Watched(name, time.monotonic() + int(pttl) / 1000)
        self._watch_changed.set()
        return name

    async def active(self, account: str) -> str | None:
        reply = await call(self._client.get(self._layout.account_key(account)))
        return None if reply is None else text(reply)

    def forget(self, key: str) -> None:
        """`key` was closed through the fan-out: no need to watch it any more."""
        self._watched.pop(key, None)

    def recheck_all(self) -> None:
        """Check every watched key now (Redis is back, or came back empty)."""
        now = time.monotonic()
        for watched in self._watched.values():
            watched.recheck_at = now
        self._watch_changed.set()

    async def watch(self) -> None:
        """Close this node's streams of a key once it lapses; a key extended elsewhere is re-scheduled."""
        while True:
            self._watch_changed.clear()
            now = time.monotonic()
            due = {key: item for key, item in self._watched.items() if item.recheck_at <= now}
            if due:
                in_use = self._node.listen_keys_in_use()
                for key in [key for key in due if key not in in_use]:
                    del self._watched[key]  # no stream of ours uses it any more
                checked = [key for key in due if key in in_use]
                try:
                    remaining = await self._pttl(checked)
                except FAILURES:
                    await asyncio.sleep(self._check_interval)  # the health check reports the outage
                    continue
                now = time.monotonic()
                for key, pttl in zip(checked, remaining, strict=True):
                    watched = self._watched.get(key)
                    if watched is None:
                        continue  # closed meanwhile
                    if pttl < 0:  # gone: it lapsed (a deletion arrives through the fan-out)
                        del self._watched[key]
                        self._node.listen_key_closed(watched.account, key, CloseCode.LISTEN_KEY_EXPIRED)
                    else:
                        watched.recheck_at = now + pttl / 1000
                continue
            next_at = min((item.recheck_at for item in self._watched.values()), default=None)
            delay = None if next_at is None else max(0.0, next_at - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._watch_changed.wait()

    async def _pttl(self, keys: list[str]) -> list[int]:
        if not keys:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.pttl(self._layout.key_prefix + key)
            replies = await pipe.execute()
        return [int(reply) for reply in replies]
