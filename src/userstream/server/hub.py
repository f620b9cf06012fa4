"""Who hears what: every open connection by account, and the fan-out of rendered events to them.

An event batch is rendered once per dialect (`render_batch`), before anything is delivered, so a batch that
cannot be rendered is refused whole. `Hub.deliver` then queues the frames on every *live* connection of that
account, in batch order, in the connection's own dialect, and never on another account's. Coinlocally frames
group consecutive balance events of the same moment into one outboundAccountPosition frame, as the exchange
does. The hub never sends itself: each connection's writer does (see connection.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from userstream.errors import LocalProtocolError, UserStreamError
from userstream.events import BalanceUpdate, Event, Exchange
from userstream.protocol import bitmusa, coinlocally
from userstream.server.connection import Connection

__all__ = ["Hub", "RenderError", "RenderedBatch", "render_batch"]


class RenderError(LocalProtocolError):
    """An event of a batch cannot be rendered in some dialect. `index` is its position in the batch."""

    def __init__(self, message: str, *, index: int, exchange: Exchange) -> None:
        super().__init__(message)
        self.index = index
        self.exchange = exchange


@dataclass(frozen=True, slots=True)
class RenderedBatch:
    """A batch of events as frames, per dialect: Bitmusa text frames, Coinlocally gzip binary frames.
    `spans` gives, per dialect and frame, the [start, stop) positions in the batch of the events it carries
    (for the ledger; a batch made without them is delivered untracked)."""

    events: int
    frames: dict[Exchange, tuple[str | bytes, ...]]
    spans: dict[Exchange, tuple[tuple[int, int], ...]] = field(default_factory=dict)


def render_batch(events: Sequence[Event]) -> RenderedBatch:
    """Render every event in both dialects; RenderError naming the first event that cannot be rendered."""
    bitmusa_frames: list[str | bytes] = []
    for index, event in enumerate(events):
        bitmusa_frames.append(_render_one(bitmusa.render_event, event, index, Exchange.BITMUSA))
    coinlocally_frames: list[str | bytes] = []
    coinlocally_spans: list[tuple[int, int]] = []
    for start, group in _coinlocally_groups(events):
        coinlocally_spans.append((start, start + len(group)))
        if len(group) == 1:
            frame: str | bytes = _render_one(coinlocally.render_event, group[0], start, Exchange.COINLOCALLY)
        else:
            balances = [event for event in group if isinstance(event, BalanceUpdate)]
            try:
                frame = coinlocally.render_balances(balances)
            except (UserStreamError, ValueError, ArithmeticError) as exc:
                for offset, event in enumerate(group):  # find the culprit for the message
                    _render_one(coinlocally.render_event, event, start + offset, Exchange.COINLOCALLY)
                raise RenderError(str(exc), index=start, exchange=Exchange.COINLOCALLY) from None
        coinlocally_frames.append(frame)
    return RenderedBatch(
        events=len(events),
        frames={
            Exchange.BITMUSA: tuple(bitmusa_frames),
            Exchange.COINLOCALLY: tuple(coinlocally_frames),
        },
        spans={
            Exchange.BITMUSA: tuple((index, index + 1) for index in range(len(events))),
            Exchange.COINLOCALLY: tuple(coinlocally_spans),
        },
    )


def _render_one(
    render: Callable[[Event], str | bytes], event: Event, index: int, exchange: Exchange
) -> str | bytes:
    try:
        return render(event)
    except (UserStreamError, ValueError, ArithmeticError) as exc:
        raise RenderError(
            f"cannot render for {exchange.value}: {exc}", index=index, exchange=exchange
        ) from None


def _coinlocally_groups(events: Sequence[Event]) -> Iterator[tuple[int, list[Event]]]:
    """Runs of balance events with one timestamp (one account update), and every other event alone."""
    index = 0
    while index < len(events):
        event = events[index]
        if not isinstance(event, BalanceUpdate):
            yield index, [event]
            index += 1
            continue
        group: list[Event] = [event]
        assets = {event.asset}
        following = index + 1
        while following < len(events):
            candidate = events[following]
            if (
                not isinstance(candidate, BalanceUpdate)
                or candidate.timestamp != event.timestamp
                or candidate.asset in assets  # one frame holds an asset once; a repeat is a new update
            ):
                break
            group.append(candidate)
            assets.add(candidate.asset)
            following += 1
        yield index, group
        index = following


class Hub:
    """account name -> its open connections (in order of arrival); a signal for whoever awaits a change."""

    def __init__(self) -> None:
        self._by_account: dict[str, dict[Connection, None]] = {}
        self._changed = asyncio.Event()

    def add(self, connection: Connection) -> None:
        self._by_account.setdefault(connection.account.name, {})[connection] = None
        self.notify()

    def remove(self, connection: Connection) -> None:
        connections = self._by_account.get(connection.account.name)
        if connections is not None:
            connections.pop(connection, None)
            if not connections:
                del self._by_account[connection.account.name]
        self.notify()

    def notify(self) -> None:
        """Wake everyone waiting in `wait_until` (a connection was added, removed or went live)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Return once `condition()` holds, re-checked at every change (bound it with asyncio.timeout)."""
        while not condition():
            await self._changed.wait()

    def connections(self, account: str | None = None, exchange: Exchange | None = None) -> list[Connection]:
        if account is None:
            pool = [c for connections in self._by_account.values() for c in connections]
        else:
            pool = list(self._by_account.get(account, ()))
        return [c for c in pool if exchange is None or c.exchange is exchange]

    def deliver(self, account: str, batch: RenderedBatch, first_seq: int | None = None) -> int:
        """Queue the batch on every live connection of `account`; return how many connections got it.
        `first_seq` is the ledger's sequence number of the batch's first event (None: not tracked)."""
        reached = 0
        for connection in list(self._by_account.get(account, ())):
            if not connection.live:
                continue
            frames = batch.frames[connection.exchange]
            spans = batch.spans.get(connection.exchange)
            for index, frame in enumerate(frames):
                seqs = None
                if first_seq is not None and spans is not None:
                    start, stop = spans[index]
                    seqs = range(first_seq + start, first_seq + stop)
                if not connection.send(frame, seqs):
                    break
            else:
                reached += 1
        return reached

    def counts(self) -> dict[str, dict[str, int]]:
        """account -> {"bitmusa": open, "coinlocally": open, "live": receiving events}."""
        result: dict[str, dict[str, int]] = {}
        for account, connections in self._by_account.items():
            tally = {Exchange.BITMUSA.value: 0, Exchange.COINLOCALLY.value: 0, "live": 0}
            for connection in connections:
                tally[connection.exchange.value] += 1
                tally["live"] += connection.live
            result[account] = tally
        return result
