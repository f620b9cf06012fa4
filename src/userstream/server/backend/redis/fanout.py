"""This node's reader of the Redis fan-out stream: every entry once, in stream order, from where it stopped.

Every node reads the stream from where it stopped (XREAD from the last entry id it processed), folds each
batch into its truth and queues it on its own live streams (`Node.deliver`); a close entry closes the
key's streams here (`Node.listen_key_closed`). Why a stream and not pub/sub: pub/sub drops whatever is sent
while a subscriber's connection is down, silently; a stream is read from a position, so a node that
reconnects misses nothing, gets nothing twice, and in the order Redis accepted the publishes. `seq` makes
the one thing a position cannot show visible: entries trimmed (MAXLEN) before this node read them, or a
Redis that came back empty. Then this node closes every stream it serves (1001): clients reconnect and
resync rather than silently missing events. At start, the entries already in the stream are replayed into
the truth (the REST snapshots) while no stream is accepted (`ready` is False until then).

A batch this node published itself is taken back rendered from the publisher (publisher.py); any other is
decoded and rendered here, once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Final

import redis.asyncio

from userstream import eventjson
from userstream.errors import UserStreamError
from userstream.events import Event
from userstream.logs import log_event
from userstream.protocol.close import CloseCode
from userstream.server.backend.interface import Node
from userstream.server.backend.redis.client import FAILURES, describe
from userstream.server.backend.redis.layout import Layout, text
from userstream.server.render import RenderedBatch, RenderError, render_batch

__all__ = ["FanoutReader"]

_log = logging.getLogger("userstream.server.redis")

#: The most entries one XREAD takes, and how long it blocks (ms; below the socket timeout).
_READ_COUNT: Final = 512
_READ_BLOCK_MS: Final = 2000

#: What XREAD answers (RESP2): [(stream, [(entry id, {field: value})])], or None when the block timed out.
_XReadReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None
#: The publisher's own rendered batch for an entry tag, if it keeps it (Publisher.take_own).
OwnBatch = Callable[[str], tuple[Sequence[Event], RenderedBatch] | None]


class FanoutReader:
    """Where this node is in the fan-out stream, and the task (`read`) that follows it."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        layout: Layout,
        node: Node,
        *,
        node_id: str,
        check_interval: float,
        own_batch: OwnBatch,
        forget_key: Callable[[str], None],
    ) -> None:
        self._client = client
        self._stream = layout.stream
        self._node = node
        self._node_id = node_id
        self._node_id_bytes = node_id.encode()
        self._check_interval = check_interval
        self._own_batch = own_batch
        self._forget_key = forget_key
        self.last_id = "0-0"
        self.last_seq: int | None = None
        self.ready_at: str | None = None  # the stream's last id at start: replayed (truth only) until reached
        self.ready = False
        self.entries = 0
        self.gaps = 0
        self.problem: str | None = None

    def restart(self) -> None:
        """Redis came back without the stream (it lost its data): read the new one from its start."""
        self.last_id, self.last_seq = "0-0", None
        self.gaps += 1

    async def read(self) -> None:
        await self._find_start()
        while True:
            if not self.ready and (self.ready_at is None or _id_at_least(self.last_id, self.ready_at)):
                self.ready = True
                log_event(_log, logging.INFO, "fan-out caught up", node=self._node_id, seq=self.last_seq)
            try:
                if self.problem is not None:
                    await self._client.ping()
                    self.problem = None
                reply: _XReadReply = await self._client.xread(  # type: ignore[assignment]
                    {self._stream: self.last_id}, count=_READ_COUNT, block=_READ_BLOCK_MS
                )
            except FAILURES as exc:
                self.problem = f"Redis unreachable: {describe(exc)}"
                await asyncio.sleep(self._check_interval)
                continue
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    self._on_entry(text(entry_id), fields)

    async def _find_start(self) -> None:
        """The stream's last entry now: until it is processed, entries are replayed into the truth (the
        REST snapshots) while no stream is accepted, so a node that joins late answers snapshots as the
        others do (for as much history as the stream keeps)."""
        while True:
            try:
                tail: list[tuple[bytes, dict[bytes, bytes]]] = await self._client.xrevrange(  # type: ignore[assignment]
                    self._stream, count=1
                )
            except FAILURES as exc:
                self.problem = f"Redis unreachable: {describe(exc)}"
                await asyncio.sleep(self._check_interval)
                continue
            self.problem = None
            self.ready_at = text(tail[0][0]) if tail else None
            return

    def _on_entry(self, entry_id: str, fields: dict[bytes, bytes]) -> None:
        self.last_id = entry_id
        self.entries += 1
        try:
            seq = int(fields[b"seq"])
            kind = fields[b"type"]
            account = text(fields[b"account"])
        except (KeyError, ValueError):
            log_event(_log, logging.ERROR, "fan-out entry ignored: not ours", entry=entry_id)
            return
        if self.last_seq is not None and seq != self.last_seq + 1 and self.ready:
            self.gaps += 1
            missed = "the fan-out restarted" if seq <= self.last_seq else "fan-out entries were trimmed"
            log_event(
                _log, logging.WARNING, "fan-out gap", node=self._node_id, expected=self.last_seq + 1, seq=seq
            )
            self._node.close_all_streams(f"{missed} before this node read them: reconnect")
        self.last_seq = seq
        if kind == b"events":
            self._deliver(entry_id, account, fields)
        elif kind == b"close":
            try:
                code = CloseCode(int(fields[b"code"]))
                key = text(fields[b"key"])
            except (KeyError, ValueError):
                log_event(_log, logging.ERROR, "fan-out close ignored: malformed", entry=entry_id)
                return
            self._forget_key(key)
            self._node.listen_key_closed(account, key, code)

    def _deliver(self, entry_id: str, account: str, fields: dict[bytes, bytes]) -> None:
        tag = fields.get(b"batch")
        own = None
        if tag is not None and fields.get(b"node") == self._node_id_bytes:
            own = self._own_batch(text(tag))
        if own is not None:
            events, batch = own
        else:
            try:
                events = [
                    eventjson.from_json(line) for line in fields.get(b"events", b"").split(b"\n") if line
                ]
                batch = render_batch(events)
            except (UserStreamError, RenderError) as exc:
                # validated by the node that published it: a node of another version, or foreign data
                log_event(_log, logging.ERROR, "fan-out batch ignored", entry=entry_id, error=str(exc))
                return
        self._node.deliver(account, events, batch)


def _id_at_least(entry_id: str, target: str) -> bool:
    """Stream ids compare as (milliseconds, sequence) pairs."""
    ms, _, seq = entry_id.partition("-")
    target_ms, _, target_seq = target.partition("-")
    return (int(ms), int(seq or 0)) >= (int(target_ms), int(target_seq or 0))
