"""A published batch of events as the frames each exchange sends: rendered once, before any delivery.

`render_batch(events)` renders every event in every dialect of the registry (protocol/registry.py:
`render_event`, and `render_balances` for an exchange that groups balance updates of one moment into one
frame, as Coinlocally's outboundAccountPosition does), so a batch that cannot be rendered is refused whole
(`RenderError` names the first event at fault). The result, a `RenderedBatch`, is what the hub queues on
live connections and what the backends carry to every node's streams. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from userstream.errors import LocalProtocolError, UserStreamError
from userstream.events import BalanceUpdate, Event, Exchange
from userstream.protocol.registry import REGISTRY, spec

__all__ = ["RenderError", "RenderedBatch", "render_batch"]


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
    """Render every event in every dialect; RenderError naming the first event that cannot be rendered."""
    frames: dict[Exchange, tuple[str | bytes, ...]] = {}
    spans: dict[Exchange, tuple[tuple[int, int], ...]] = {}
    for exchange in REGISTRY:
        frames[exchange], spans[exchange] = _render_dialect(exchange, events)
    return RenderedBatch(events=len(events), frames=frames, spans=spans)


def _render_dialect(
    exchange: Exchange, events: Sequence[Event]
) -> tuple[tuple[str | bytes, ...], tuple[tuple[int, int], ...]]:
    # Looked up at every call (not bound at import): the registry is the one place a dialect is defined.
    entry = spec(exchange)
    render_event, render_balances = entry.render_event, entry.render_balances
    frames: list[str | bytes] = []
    spans: list[tuple[int, int]] = []
    if render_balances is None:
        for index, event in enumerate(events):
            frames.append(_render_one(render_event, event, index, exchange))
            spans.append((index, index + 1))
        return tuple(frames), tuple(spans)
    for start, group in _balance_groups(events):
        spans.append((start, start + len(group)))
        if len(group) == 1:
            frames.append(_render_one(render_event, group[0], start, exchange))
            continue
        balances = [event for event in group if isinstance(event, BalanceUpdate)]
        try:
            frames.append(render_balances(balances))
        except (UserStreamError, ValueError, ArithmeticError) as exc:
            for offset, event in enumerate(group):  # find the culprit for the message
                _render_one(render_event, event, start + offset, exchange)
            raise RenderError(str(exc), index=start, exchange=exchange) from None
    return tuple(frames), tuple(spans)


def _render_one(
    render: Callable[[Event], str | bytes], event: Event, index: int, exchange: Exchange
) -> str | bytes:
    try:
        return render(event)
    except (UserStreamError, ValueError, ArithmeticError) as exc:
        raise RenderError(
            f"cannot render for {exchange.value}: {exc}", index=index, exchange=exchange
        ) from None


def _balance_groups(events: Sequence[Event]) -> Iterator[tuple[int, list[Event]]]:
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
