"""The Redis sink: one Redis Stream per account, for consumers on other machines (and consumer groups).

This module owns the stream layout and the Redis client (redis-py's asyncio API): keys, the Lua script that
makes a write idempotent, trimming, and the conversion of redis-py's exceptions into ours (in `_translate`,
the one place they are caught). It knows nothing of buffering or retries (the runner's).

Each event becomes one entry of `{prefix}:{account}:events` with the fields `key` (the event key) and
`event` (its contract JSON). Plain XADD is not idempotent, and the runner re-sends a batch whose write
failed half way (so will a second gateway instance that takes over an account, issue 8). So each account's
part of a batch goes through one Lua script, atomically: skip every key found in the account's dedupe set
`{prefix}:{account}:keys` (a sorted set of the last `dedupe_window` keys written, scored by entry time),
XADD the rest with `MAXLEN ~ maxlen`, record their keys, trim the set. A consumer group reading the stream
therefore sees each event key once, as long as a replay comes within the last `dedupe_window` events of
that account. `dedupe_window=0` switches this off (plain pipelined XADD: at least once). The scripts of one
batch go in one pipeline: one round trip per batch.

Trimming is approximate (`~`): Redis removes whole internal nodes, so a stream holds at least `maxlen`
entries and a little more, which keeps XADD O(1). `maxlen=None` never trims.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn
from urllib.parse import unquote, urlsplit

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from userstream import eventjson
from userstream.errors import ConfigurationError, LocalProtocolError, RemoteProtocolError, TransportError
from userstream.events import Event
from userstream.logs import redacted_url
from userstream.sinks.base import key_of_json

__all__ = ["DEFAULT_PREFIX", "RedisSink"]

DEFAULT_PREFIX = "userstream"

# KEYS[1] the stream, KEYS[2] its dedupe set; ARGV[1] maxlen ("" = no trimming), ARGV[2] the dedupe
# window, then (key, event JSON) pairs. Returns how many entries were added (the rest were replays).
_IDEMPOTENT_XADD = """
local maxlen = ARGV[1]
local window = tonumber(ARGV[2])
local added = 0
for i = 3, #ARGV, 2 do
    local key = ARGV[i]
    if not redis.call('ZSCORE', KEYS[2], key) then
        local id
        if maxlen == '' then
            id = redis.call('XADD', KEYS[1], '*', 'key', key, 'event', ARGV[i + 1])
        else
            id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'key', key, 'event', ARGV[i + 1])
        end
        redis.call('ZADD', KEYS[2], tonumber(string.match(id, '^(%d+)')), key)
        added = added + 1
    end
end
if added > 0 then
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(window + 1))
end
return added
"""

# Replies that mean "not now" rather than "never", for the ones redis-py has no exception class for (BUSY:
# another script is running too long).
_TRANSIENT_REPLIES = ("LOADING", "READONLY", "OOM", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")


class RedisSink:
    """Events appended to one Redis Stream per account, each event key at most once per dedupe window."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = DEFAULT_PREFIX,
        maxlen: int | None = 100_000,
        dedupe_window: int | None = None,
        socket_timeout: float = 5.0,
        chunk_size: int = 500,
    ) -> None:
        """`dedupe_window` defaults to `maxlen` (the dedupe set remembers what the stream holds), or to
        100 000 when the stream is never trimmed. `chunk_size` bounds the events one script call carries,
        so a huge batch never blocks Redis for long."""
        if maxlen is not None and not (isinstance(maxlen, int) and maxlen > 0):
            raise ConfigurationError(f"maxlen must be a positive integer or None, not {maxlen!r}")
        if dedupe_window is None:
            dedupe_window = maxlen if maxlen is not None else 100_000
        if not (isinstance(dedupe_window, int) and dedupe_window >= 0):
            raise ConfigurationError(f"dedupe_window must be a non-negative integer, not {dedupe_window!r}")
        if not (isinstance(chunk_size, int) and chunk_size > 0):
            raise ConfigurationError(f"chunk_size must be a positive integer, not {chunk_size!r}")
        if not prefix:
            raise ConfigurationError("the redis key prefix must not be empty")
        self._url = url
        self._secrets = _secrets_of(url)
        self._prefix = prefix
        self._maxlen = maxlen
        self._dedupe_window = dedupe_window
        self._socket_timeout = socket_timeout
        self._chunk_size = chunk_size
        self._client: redis.asyncio.Redis | None = None
        self._script: redis.commands.core.AsyncScript | None = None
        self._added = 0
        self._replays = 0

    @property
    def name(self) -> str:
        return f"redis:{redacted_url(self._url)}"

    @property
    def added(self) -> int:
        """Entries this sink appended."""
        return self._added

    @property
    def replays(self) -> int:
        """Events skipped because their key was already in the account's stream (dedupe window)."""
        return self._replays

    def stream_key(self, account: str) -> str:
        return f"{self._prefix}:{account}:events"

    def dedupe_key(self, account: str) -> str:
        return f"{self._prefix}:{account}:keys"

    async def open(self) -> None:
        """Create the client. No I/O: a Redis that is down is found (and retried) by `write`."""
        if self._client is not None:
            raise LocalProtocolError(f"{self.name} is already open")
        try:
            client = redis.asyncio.Redis.from_url(
                self._url,
                socket_timeout=self._socket_timeout,
                socket_connect_timeout=self._socket_timeout,
                # One immediate retry replaces a pooled connection that died (a Redis restart); longer
                # outages are the runner's to back off from, so redis-py must not sleep on its own.
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as exc:
            raise ConfigurationError(f"invalid redis URL {redacted_url(self._url)}: {exc}") from None
        self._client = client
        self._script = client.register_script(_IDEMPOTENT_XADD)

    async def write(self, batch: Sequence[Event]) -> None:
        client = self._client
        if client is None:
            raise LocalProtocolError(f"{self.name} is not open")
        by_account: dict[str, list[tuple[str, bytes]]] = {}
        for event in batch:
            body = eventjson.to_json(event)
            by_account.setdefault(event.account, []).append((key_of_json(body), body))
        try:
            async with client.pipeline(transaction=False) as pipe:
                for account, entries in by_account.items():
                    for start in range(0, len(entries), self._chunk_size):
                        await self._queue(pipe, account, entries[start : start + self._chunk_size])
                replies = await pipe.execute()
        except redis.exceptions.RedisError as exc:
            _translate(exc, self.name, self._secrets)
        # The script answers how many it added; a plain XADD always adds.
        added = sum(int(reply) for reply in replies) if self._dedupe_window else len(replies)
        self._added += added
        self._replays += len(batch) - added

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _queue(
        self, pipe: redis.asyncio.client.Pipeline, account: str, entries: list[tuple[str, bytes]]
    ) -> None:
        stream = self.stream_key(account)
        if not self._dedupe_window:
            for key, body in entries:
                pipe.xadd(stream, {"key": key, "event": body}, maxlen=self._maxlen, approximate=True)
            return
        if self._script is None:
            raise LocalProtocolError(f"{self.name} is not open")
        args: list[str | bytes | int] = ["" if self._maxlen is None else self._maxlen, self._dedupe_window]
        for key, body in entries:
            args += (key, body)
        await self._script(keys=[stream, self.dedupe_key(account)], args=args, client=pipe)


def _translate(exc: redis.exceptions.RedisError, sink: str, secrets: Sequence[str] = ()) -> NoReturn:
    """redis-py's exceptions become ours here, and nowhere else, without the URL's user and password
    (redis-py's messages do not quote them today; a message that did would still not reach a log or
    /healthz: they become `***`)."""
    reply = _reply_of(exc)
    for secret in secrets:
        reply = reply.replace(secret, "***")
    if isinstance(exc, _REFUSED_CREDENTIALS):
        raise ConfigurationError(f"{sink}: Redis refused our credentials: {reply}") from None
    if isinstance(exc, _TRANSIENT) or reply.startswith(_TRANSIENT_REPLIES):
        raise TransportError(f"{sink}: {reply}") from None
    raise RemoteProtocolError(f"{sink}: Redis refused the batch: {reply}") from None


_REFUSED_CREDENTIALS = (
    redis.exceptions.AuthenticationError,
    redis.exceptions.AuthorizationError,
    redis.exceptions.NoPermissionError,
)
_TRANSIENT = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError (a server loading its data)
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica promoted mid-write
    redis.exceptions.OutOfMemoryError,  # eviction or a consumer's XDEL/XTRIM may relieve it
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)


def _secrets_of(url: str) -> tuple[str, ...]:
    """The URL's user and password, as written and decoded, longest first (so a part of one that is the
    other is replaced whole)."""
    try:
        parts = urlsplit(url)
        found = {parts.username, parts.password}
    except ValueError:
        return ()
    found |= {unquote(value) for value in found if value}
    return tuple(sorted((value for value in found if value), key=len, reverse=True))


def _reply_of(exc: redis.exceptions.RedisError) -> str:
    """The server's reply without redis-py's pipeline annotation (which quotes the command's arguments)."""
    text = str(exc)
    marker = " of pipeline caused error: "
    if marker in text:
        text = text.split(marker, 1)[1].strip("(),'\" ")
    return text
