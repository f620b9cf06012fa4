"""This node's publishes into the Redis fan-out: in the order they were made, pipelined, rendered once.

A publish (an ingested batch, a simulated step) becomes one fan-out entry `seq, type=events, account,
events, node, batch` (`events`: the batch's contract JSON, one line per event; `batch`: this node's tag of
it). Awaited publishes (ingest) return once Redis has stored the entry; simulated ones (`publish_nowait`)
are queued, at most `MAX_PENDING` of them while Redis is behind (beyond: dropped and counted), so the
simulator never grows memory while Redis is away.

Rendered once: the node that publishes has already rendered the batch (to validate it), so it keeps the
events and their frames under the entry's tag until its own fan-out reader reaches the entry (`take_own`),
instead of decoding and rendering them again. Other nodes render what they read, once each.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import redis.asyncio

from userstream import eventjson
from userstream.events import Event
from userstream.logs import log_event
from userstream.server.backend.interface import BackendUnavailableError
from userstream.server.backend.redis.client import FAILURES, describe
from userstream.server.backend.redis.layout import PUBLISH, Layout
from userstream.server.render import RenderedBatch

__all__ = ["MAX_PENDING", "Publisher"]

_log = logging.getLogger("userstream.server.redis")

#: Simulated publishes waiting for Redis beyond this are dropped (and counted). Awaited publishes (ingest)
#: are refused while Redis is down instead.
MAX_PENDING: Final = 10_000
_PIPELINE_MAX: Final = 256


@dataclass(slots=True)
class _Publish:
    account: str
    number: int  # this node's running count of publishes: the entry's tag is `{incarnation}:{number}`
    body: bytes  # the batch's contract JSON, one line per event
    done: asyncio.Future[int] | None  # None: nobody waits (the simulator)


class Publisher:
    """The queue of this node's publishes and the task that sends them to Redis in order."""

    def __init__(self, client: redis.asyncio.Redis, layout: Layout, *, node_id: str, maxlen: int) -> None:
        self._client = client
        self._layout = layout
        self._node_id = node_id
        self._maxlen = maxlen
        self._script = client.register_script(PUBLISH)
        self._pending: collections.deque[_Publish] = collections.deque()
        self._changed = asyncio.Event()
        # Unique to this process: a node restarted under the same id never takes an old entry for its own.
        self._incarnation = secrets.token_hex(8)
        self._published = 0
        # number -> (events, frames) of a publish whose entry this node's reader has not reached yet
        self._rendered: dict[int, tuple[Sequence[Event], RenderedBatch]] = {}
        self.dropped = 0

    async def publish(self, account: str, events: Sequence[Event], batch: RenderedBatch) -> None:
        """Queue the publish and return once Redis has stored it (BackendUnavailableError if it failed)."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue(account, events, batch, done)
        await done

    def publish_nowait(self, account: str, events: Sequence[Event], batch: RenderedBatch) -> None:
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            log_event(
                _log, logging.WARNING, "publish dropped: Redis is behind", account=account, events=len(events)
            )
            return
        self._queue(account, events, batch, None)

    def _queue(
        self, account: str, events: Sequence[Event], batch: RenderedBatch, done: asyncio.Future[int] | None
    ) -> None:
        self._published += 1
        number = self._published
        if len(self._rendered) >= 2 * MAX_PENDING:  # a reader far behind: it renders the oldest itself
            del self._rendered[next(iter(self._rendered))]
        self._rendered[number] = (events, batch)
        body = b"\n".join(eventjson.to_json(event) for event in events)
        self._pending.append(_Publish(account, number, body, done))
        self._changed.set()

    def take_own(self, tag: str) -> tuple[Sequence[Event], RenderedBatch] | None:
        """The events and frames of this node's publish tagged `tag`, once (None: not ours, or not kept)."""
        incarnation, _, number_text = tag.partition(":")
        if incarnation != self._incarnation or not number_text.isdigit():
            return None
        number = int(number_text)
        rendered = self._rendered
        while rendered and next(iter(rendered)) < number:  # entries are read in publish order:
            del rendered[next(iter(rendered))]  # an older one still kept never reached the stream
        return rendered.pop(number, None)

    def fail_pending(self, error: BackendUnavailableError) -> None:
        """The node stops: whoever still waits for a publish hears `error`."""
        for item in self._pending:
            if item.done is not None and not item.done.done():
                item.done.set_exception(error)
        self._pending.clear()

    async def drain(self) -> None:
        """Send publishes to Redis in the order they were made, pipelined (one round trip per burst)."""
        pending = self._pending
        layout = self._layout
        while True:
            while not pending:
                self._changed.clear()
                await self._changed.wait()
            burst = [pending.popleft() for _ in range(min(len(pending), _PIPELINE_MAX))]
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for item in burst:
                        fields: list[str | bytes | int] = [self._maxlen, "type", "events", "account"]
                        fields += [item.account, "events", item.body, "node", self._node_id]
                        fields += ["batch", f"{self._incarnation}:{item.number}"]
                        await self._script(keys=[layout.stream, layout.seq], args=fields, client=pipe)
                    replies = await pipe.execute()
            except FAILURES as exc:
                error = BackendUnavailableError(f"Redis unreachable: {describe(exc)}")
                lost = 0
                for item in burst:
                    self._rendered.pop(item.number, None)  # if it landed after all, readers render it
                    if item.done is None:
                        lost += 1
                    elif not item.done.done():
                        item.done.set_exception(error)
                if lost:
                    self.dropped += lost
                    log_event(_log, logging.WARNING, "publishes dropped", count=lost, error=str(error))
                continue
            for item, seq in zip(burst, replies, strict=True):
                if item.done is not None and not item.done.done():
                    item.done.set_result(int(seq))
