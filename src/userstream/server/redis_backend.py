"""`serve --redis URL`: the listenKey store and the fan-out of one node kept in Redis, shared by every node.

This module owns the Redis layout of a multi-node `serve` (keys under `{prefix}`, default
`userstream:serve`), its Lua scripts, the node's background work (the fan-out reader, the listenKey watcher,
the health check, the ordered publisher) and the conversion of redis-py's errors into
`BackendUnavailableError`. docs/scaling.md explains the design; in short:

- listenKeys: `{prefix}:account:{account}` -> the account's active key and `{prefix}:key:{key}` -> its
  account, both with the key's TTL as a Redis expiry (PX), so a key created on one node is found, extended
  (PUT) and deleted on any other. Each operation is one Lua script, so two nodes answering POST at once
  return the same key. `{prefix}:keys` (a sorted set: account -> expiry, ms) only counts active keys.
- fan-out: one Redis Stream, `{prefix}:fanout`. A publish (an ingested batch, a simulated step) is one entry
  `seq, type=events, account, events` (the batch's contract JSON, one line per event); DELETE of a key (and
  the expire fault) appends `type=close, account, key, code` in the same script that removes the key. `seq`
  comes from `{prefix}:fanout:seq`, incremented in the script that appends, so entries are numbered
  without gaps in stream order. Every node reads the stream from where it stopped (XREAD from the last
  entry id it processed), folds each batch into its truth and queues it on its own live streams. Why a
  stream and not pub/sub: pub/sub drops whatever is sent while a subscriber's connection is down, silently;
  a stream is read from a position, so a node that reconnects misses nothing, gets nothing twice, and in
  the stream's order, which is the order Redis accepted the publishes (per account: ingest order). `seq`
  makes the one thing a position cannot show visible: entries trimmed (MAXLEN) before this node read them,
  or a Redis that came back empty. Then this node closes every stream it serves (1001): clients reconnect
  and resync rather than silently missing events.
- expiry: a node re-checks (PTTL) the keys its own Bitmusa streams use when they are due to lapse, and closes
  the streams of a key that is gone (4001). An extension made on another node is found at that check.
- health: a check every `redis_check_interval` seconds (and any failed command) marks the node unavailable:
  new streams, listenKey requests and ingest are refused with 503 and /healthz says why, until Redis answers
  again; then the node re-checks its keys and carries on by itself. Open streams stay open meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from userstream import eventjson
from userstream.errors import ConfigurationError, UserStreamError
from userstream.events import Event
from userstream.logs import log_event
from userstream.protocol.close import CloseCode
from userstream.server.backend import BackendUnavailableError, Node
from userstream.server.config import ServerConfig
from userstream.server.hub import RenderedBatch, RenderError, render_batch
from userstream.sinks.base import redacted_url

__all__ = ["RedisBackend", "default_node_id"]

_log = logging.getLogger("userstream.server.redis")

#: The most entries one XREAD takes, and how long it blocks (ms; below the socket timeout).
_READ_COUNT = 512
_READ_BLOCK_MS = 2000
_SOCKET_TIMEOUT = 5.0
#: Simulated publishes waiting for Redis beyond this are dropped (and counted): the simulator must not
#: grow memory while Redis is away. Awaited publishes (ingest) are refused while Redis is down instead.
_MAX_PENDING = 10_000
_PIPELINE_MAX = 256

# KEYS[1] account -> key, KEYS[2] the count index; ARGV[1] a fresh key, ARGV[2] TTL ms, ARGV[3] the prefix of
# key -> account, ARGV[4] the account, ARGV[5] now (ms). Returns {key, 1 if created else 0}.
_CREATE = """
local current = redis.call('GET', KEYS[1])
if current and redis.call('EXISTS', ARGV[3] .. current) == 1 then
    return {current, 0}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', ARGV[3] .. ARGV[1], ARGV[4], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], tonumber(ARGV[5]) + tonumber(ARGV[2]), ARGV[4])
return {ARGV[1], 1}
"""

# KEYS[1] account -> key, KEYS[2] the count index; ARGV[1] TTL ms, ARGV[2] key prefix, ARGV[3] the account,
# ARGV[4] now (ms). Returns the extended key, or nil when the account has no active key.
_EXTEND = """
local current = redis.call('GET', KEYS[1])
if not current then
    return false
end
if redis.call('PEXPIRE', ARGV[2] .. current, ARGV[1]) == 0 then
    return false
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], tonumber(ARGV[4]) + tonumber(ARGV[1]), ARGV[3])
return current
"""

# KEYS[1] account -> key, KEYS[2] the count index, KEYS[3] the fan-out stream, KEYS[4] its seq counter;
# ARGV[1] key prefix, ARGV[2] the account, ARGV[3] the close code, ARGV[4] maxlen, ARGV[5] this node.
# Removes the account's active key and appends the close to the fan-out, atomically: every node closes the
# key's streams after the events published before it. Returns the key, or nil when there was none.
_CLOSE = """
local current = redis.call('GET', KEYS[1])
if not current then
    return false
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
if redis.call('DEL', ARGV[1] .. current) == 0 then
    return false
end
local seq = redis.call('INCR', KEYS[4])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'seq', seq, 'type', 'close',
           'account', ARGV[2], 'key', current, 'code', ARGV[3], 'node', ARGV[5])
return current
"""

# KEYS[1] the fan-out stream, KEYS[2] its seq counter; ARGV[1] maxlen, then the entry's fields and values.
_PUBLISH = """
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'seq', seq, unpack(ARGV, 2))
return seq
"""

# KEYS[1] the count index, KEYS[2] the seq counter; ARGV[1] now (ms). The health check: active keys, and
# the fan-out's seq (lower than what this node read: Redis came back without its data).
_CHECK = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return {redis.call('ZCARD', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0')}
"""

#: What XREAD answers (RESP2): [(stream, [(entry id, {field: value})])], or None when the block timed out.
_XReadReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None

_NODE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def default_node_id() -> str:
    """`<host>-<pid>`: unique among the nodes of one machine and readable in logs."""
    host = _NODE_ID_CHARS.sub("-", socket.gethostname())[:40].strip("-._") or "node"
    return f"{host}-{os.getpid()}"


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class _Publish:
    account: str
    body: bytes  # the batch's contract JSON, one line per event
    done: asyncio.Future[int] | None  # None: nobody waits (the simulator)


@dataclass(slots=True)
class _Watched:
    account: str
    recheck_at: float  # monotonic time the key is due to lapse, as last seen


@dataclass(slots=True)
class _Reader:
    """Where this node is in the fan-out stream."""

    last_id: str = "0-0"
    last_seq: int | None = None
    ready_at: str | None = None  # the stream's last id at start: replayed (truth only) until reached
    ready: bool = False
    entries: int = 0
    gaps: int = 0
    problem: str | None = None


class RedisBackend:
    """listenKeys and fan-out in Redis: N nodes with the same accounts behave as one server."""

    kind = "redis"

    def __init__(self, config: ServerConfig, node: Node) -> None:
        if config.redis_url is None:
            raise ValueError("RedisBackend needs config.redis_url")
        self.node_id = config.node_id or default_node_id()
        self._node = node
        self._url = config.redis_url
        self._ttl_ms = max(1, round(config.listen_key_ttl * 1000))
        self._maxlen = config.fanout_maxlen
        self._check_interval = config.redis_check_interval
        prefix = config.redis_prefix
        self._prefix = prefix
        self._key_prefix = f"{prefix}:key:"
        self._index = f"{prefix}:keys"
        self._stream = f"{prefix}:fanout"
        self._seq = f"{prefix}:fanout:seq"
        try:
            self._client = redis.asyncio.Redis.from_url(
                self._url,
                socket_timeout=_SOCKET_TIMEOUT,
                socket_connect_timeout=min(_SOCKET_TIMEOUT, max(0.5, 2 * self._check_interval)),
                # One immediate retry replaces a pooled connection that died (a Redis restart); an outage
                # is the health check's to notice and report, so redis-py must not sleep on its own.
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as exc:
            raise ConfigurationError(f"invalid Redis URL {redacted_url(self._url)}: {exc}") from None
        self._create = self._client.register_script(_CREATE)
        self._extend = self._client.register_script(_EXTEND)
        self._close = self._client.register_script(_CLOSE)
        self._publish = self._client.register_script(_PUBLISH)
        self._check = self._client.register_script(_CHECK)
        self._down: str | None = None  # the health check's verdict
        self._reader = _Reader()
        self._key_count: int | None = None
        self._watched: dict[str, _Watched] = {}
        self._watch_changed = asyncio.Event()
        self._pending: collections.deque[_Publish] = collections.deque()
        self._pending_changed = asyncio.Event()
        self._dropped_publishes = 0

    def __repr__(self) -> str:
        return f"RedisBackend(node={self.node_id!r}, redis={redacted_url(self._url)!r})"

    # --- listenKeys --------------------------------------------------------------------------------------

    def _account_key(self, account: str) -> str:
        return f"{self._prefix}:account:{account}"

    async def create_listen_key(self, account: str) -> tuple[str, bool]:
        fresh = secrets.token_urlsafe(32)
        args: list[str | int] = [fresh, self._ttl_ms, self._key_prefix, account, _wall_ms()]
        reply = await self._call(self._create(keys=[self._account_key(account), self._index], args=args))
        key, created = reply
        return _text(key), bool(created)

    async def extend_listen_key(self, account: str) -> str | None:
        args: list[str | int] = [self._ttl_ms, self._key_prefix, account, _wall_ms()]
        reply = await self._call(self._extend(keys=[self._account_key(account), self._index], args=args))
        return None if reply is None else _text(reply)

    async def delete_listen_key(self, account: str) -> str | None:
        return await self._close_key(account, CloseCode.LISTEN_KEY_DELETED)

    async def expire_listen_key(self, account: str) -> str | None:
        return await self._close_key(account, CloseCode.LISTEN_KEY_EXPIRED)

    async def _close_key(self, account: str, code: CloseCode) -> str | None:
        keys = [self._account_key(account), self._index, self._stream, self._seq]
        args: list[str | int] = [self._key_prefix, account, int(code), self._maxlen, self.node_id]
        reply = await self._call(self._close(keys=keys, args=args))
        return None if reply is None else _text(reply)

    async def lookup_listen_key(self, key: str) -> str | None:
        async def lookup() -> list[Any]:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.get(self._key_prefix + key)
                pipe.pttl(self._key_prefix + key)
                replies: list[Any] = await pipe.execute()
                return replies

        account, pttl = await self._call(lookup())
        if account is None or pttl is None or int(pttl) < 0:
            return None
        name = _text(account)
        # the node's streams of this key close when it lapses: watch it from now on
        self._watched[key] = _Watched(name, time.monotonic() + int(pttl) / 1000)
        self._watch_changed.set()
        return name

    async def active_listen_key(self, account: str) -> str | None:
        reply = await self._call(self._client.get(self._account_key(account)))
        return None if reply is None else _text(reply)

    def listen_key_count(self) -> int | None:
        return self._key_count

    # --- fan-out -----------------------------------------------------------------------------------------

    async def publish(self, account: str, events: Sequence[Event], batch: RenderedBatch) -> int:
        if self._down is not None:
            raise BackendUnavailableError(self._down)
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append(_Publish(account, _encode(events), done))
        self._pending_changed.set()
        await done
        return 0

    def publish_nowait(self, account: str, events: Sequence[Event], batch: RenderedBatch) -> int:
        if len(self._pending) >= _MAX_PENDING:
            self._dropped_publishes += 1
            log_event(
                _log, logging.WARNING, "publish dropped: Redis is behind", account=account, events=len(events)
            )
            return 0
        self._pending.append(_Publish(account, _encode(events), None))
        self._pending_changed.set()
        return 0

    # --- health ------------------------------------------------------------------------------------------

    def problem(self) -> str | None:
        if self._down is not None:
            return self._down
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
            "publishes_dropped": self._dropped_publishes,
        }

    # --- background work ---------------------------------------------------------------------------------

    async def run(self) -> None:
        log_event(
            _log, logging.INFO, "redis backend started", node=self.node_id, redis=redacted_url(self._url)
        )
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._check_health(), name="userstream-redis-health")
                group.create_task(self._read_fanout(), name="userstream-redis-fanout")
                group.create_task(self._watch_keys(), name="userstream-redis-keys")
                group.create_task(self._drain_publishes(), name="userstream-redis-publisher")
        finally:
            for item in self._pending:
                if item.done is not None and not item.done.done():
                    item.done.set_exception(BackendUnavailableError("the server is shutting down"))
            self._pending.clear()
            await self._client.aclose()

    async def _check_health(self) -> None:
        while True:
            try:
                async with asyncio.timeout(_SOCKET_TIMEOUT):
                    count, seq = await self._check(keys=[self._index, self._seq], args=[_wall_ms()])
            except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
                reason = f"Redis unreachable: {_describe(exc)}"
                if self._down is None:
                    log_event(_log, logging.WARNING, "redis unavailable", node=self.node_id, reason=reason)
                self._down = reason
            else:
                self._key_count = int(count)
                if self._down is not None:
                    log_event(_log, logging.INFO, "redis available again", node=self.node_id)
                    self._down = None
                    self._recheck_all_keys()
                last_seq = self._reader.last_seq
                if last_seq is not None and int(seq) < last_seq:
                    self._fanout_reset()
            await asyncio.sleep(self._check_interval)

    def _fanout_reset(self) -> None:
        """Redis came back without the fan-out stream (it lost its data): what this node may have missed
        cannot be known, so every local stream is closed, and reading starts over on the new stream."""
        reader = self._reader
        reader.last_id, reader.last_seq = "0-0", None
        reader.gaps += 1
        self._node.close_all_streams("the event fan-out restarted: reconnect")
        self._recheck_all_keys()

    async def _read_fanout(self) -> None:
        reader = self._reader
        await self._find_start()
        while True:
            if not reader.ready and (
                reader.ready_at is None or _id_at_least(reader.last_id, reader.ready_at)
            ):
                reader.ready = True
                log_event(_log, logging.INFO, "fan-out caught up", node=self.node_id, seq=reader.last_seq)
            try:
                if reader.problem is not None:
                    await self._client.ping()
                    reader.problem = None
                reply: _XReadReply = await self._client.xread(  # type: ignore[assignment]
                    {self._stream: reader.last_id}, count=_READ_COUNT, block=_READ_BLOCK_MS
                )
            except (redis.exceptions.RedisError, OSError) as exc:
                reader.problem = f"Redis unreachable: {_describe(exc)}"
                await asyncio.sleep(self._check_interval)
                continue
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    self._on_entry(_text(entry_id), fields)

    async def _find_start(self) -> None:
        """The stream's last entry now: until it is processed, entries are replayed into the truth (the
        REST snapshots) while no stream is accepted, so a node that joins late answers snapshots as the
        others do (for as much history as the stream keeps)."""
        reader = self._reader
        while True:
            try:
                tail: list[tuple[bytes, dict[bytes, bytes]]] = await self._client.xrevrange(  # type: ignore[assignment]
                    self._stream, count=1
                )
            except (redis.exceptions.RedisError, OSError) as exc:
                reader.problem = f"Redis unreachable: {_describe(exc)}"
                await asyncio.sleep(self._check_interval)
                continue
            reader.problem = None
            reader.ready_at = _text(tail[0][0]) if tail else None
            return

    def _on_entry(self, entry_id: str, fields: dict[bytes, bytes]) -> None:
        reader = self._reader
        reader.last_id = entry_id
        reader.entries += 1
        try:
            seq = int(fields[b"seq"])
            kind = fields[b"type"]
            account = _text(fields[b"account"])
        except (KeyError, ValueError):
            log_event(_log, logging.ERROR, "fan-out entry ignored: not ours", entry=entry_id)
            return
        if reader.last_seq is not None and seq != reader.last_seq + 1 and reader.ready:
            reader.gaps += 1
            missed = "the fan-out restarted" if seq <= reader.last_seq else "fan-out entries were trimmed"
            log_event(
                _log, logging.WARNING, "fan-out gap", node=self.node_id, expected=reader.last_seq + 1, seq=seq
            )
            self._node.close_all_streams(f"{missed} before this node read them: reconnect")
        reader.last_seq = seq
        if kind == b"events":
            self._deliver(entry_id, account, fields.get(b"events", b""))
        elif kind == b"close":
            try:
                code = CloseCode(int(fields[b"code"]))
                key = _text(fields[b"key"])
            except (KeyError, ValueError):
                log_event(_log, logging.ERROR, "fan-out close ignored: malformed", entry=entry_id)
                return
            self._watched.pop(key, None)
            self._node.listen_key_closed(account, key, code)

    def _deliver(self, entry_id: str, account: str, body: bytes) -> None:
        try:
            events = [eventjson.from_json(line) for line in body.split(b"\n") if line]
            batch = render_batch(events)
        except (UserStreamError, RenderError) as exc:
            # validated by the node that published it: a node of another version, or foreign data
            log_event(_log, logging.ERROR, "fan-out batch ignored", entry=entry_id, error=str(exc))
            return
        self._node.deliver(account, events, batch)

    async def _watch_keys(self) -> None:
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
                except (redis.exceptions.RedisError, OSError):
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
                pipe.pttl(self._key_prefix + key)
            replies = await pipe.execute()
        return [int(reply) for reply in replies]

    def _recheck_all_keys(self) -> None:
        now = time.monotonic()
        for watched in self._watched.values():
            watched.recheck_at = now
        self._watch_changed.set()

    async def _drain_publishes(self) -> None:
        """Send publishes to Redis in the order they were made, pipelined (one round trip per burst)."""
        pending = self._pending
        while True:
            while not pending:
                self._pending_changed.clear()
                await self._pending_changed.wait()
            burst = [pending.popleft() for _ in range(min(len(pending), _PIPELINE_MAX))]
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for item in burst:
                        fields: list[str | bytes | int] = [self._maxlen, "type", "events", "account"]
                        fields += [item.account, "events", item.body, "node", self.node_id]
                        await self._publish(keys=[self._stream, self._seq], args=fields, client=pipe)
                    replies = await pipe.execute()
            except (redis.exceptions.RedisError, OSError) as exc:
                error = BackendUnavailableError(f"Redis unreachable: {_describe(exc)}")
                lost = 0
                for item in burst:
                    if item.done is None:
                        lost += 1
                    elif not item.done.done():
                        item.done.set_exception(error)
                if lost:
                    self._dropped_publishes += lost
                    log_event(_log, logging.WARNING, "publishes dropped", count=lost, error=str(error))
                continue
            for item, seq in zip(burst, replies, strict=True):
                if item.done is not None and not item.done.done():
                    item.done.set_result(int(seq))

    async def _call(self, operation: Awaitable[Any]) -> Any:
        """Await one Redis operation; a failure is `BackendUnavailableError` (HTTP 503), never redis-py's."""
        try:
            return await operation
        except (redis.exceptions.RedisError, OSError) as exc:
            raise BackendUnavailableError(f"Redis unreachable: {_describe(exc)}") from None


def _encode(events: Sequence[Event]) -> bytes:
    return b"\n".join(eventjson.to_json(event) for event in events)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _id_at_least(entry_id: str, target: str) -> bool:
    """Stream ids compare as (milliseconds, sequence) pairs."""
    ms, _, seq = entry_id.partition("-")
    target_ms, _, target_seq = target.partition("-")
    return (int(ms), int(seq or 0)) >= (int(target_ms), int(target_seq or 0))


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
