"""Ingest validation: a batch of events for one account, checked whole before any of it is published.

Both doors into the stream (the admin route `POST /admin/events` and `ServerHandle.ingest`) come through
`parse_batch` / `coerce_events`, so they accept and refuse exactly the same things. Events arrive in the JSON
form of docs/events.md (or as Event objects); each is stamped with the target account's name. A refusal is an
`IngestError` carrying the HTTP status and what was wrong: the account, or the event's index and field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

import msgspec

from userstream.errors import LocalProtocolError, MessageShapeError
from userstream.eventjson import from_dict
from userstream.events import BalanceUpdate, Event, OrderUpdate
from userstream.validation import failure

__all__ = ["IngestError", "coerce_events", "parse_batch"]

#: The most events one ingest request may carry: a bound on the work one request can ask for.
MAX_BATCH = 100_000

_BODY_DECODER = msgspec.json.Decoder(dict[str, Any])
#: The event types the exchanges' streams carry, and so the only ones ingest accepts.
_STREAMED: tuple[type, ...] = (BalanceUpdate, OrderUpdate)


class IngestError(LocalProtocolError):
    """An ingest request refused whole. `status` is its HTTP status; `account`, `index`, `field` say what."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        account: str | None = None,
        index: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.account = account
        self.index = index
        self.field = field

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": str(self)}
        if self.account is not None:
            body["account"] = self.account
        if self.index is not None:
            body["index"] = self.index
        if self.field is not None:
            body["field"] = self.field
        return body


def parse_batch(body: bytes) -> tuple[str, list[Any]]:
    """The admin route's body {"account": NAME, "events": [...]} -> (name, raw events); IngestError if not."""
    try:
        obj = _BODY_DECODER.decode(body)
    except msgspec.DecodeError:
        raise IngestError("the body must be a JSON object", status=400) from None
    except RecursionError:  # msgspec's answer to absurd nesting (found by tests/fuzz): not a 500
        raise IngestError("the body is nested too deeply", status=400) from None
    unknown = sorted(set(obj) - {"account", "events"})
    if unknown:
        raise IngestError(f"unknown key {unknown[0]!r} in the body", status=400, field=f"$.{unknown[0]}")
    account = obj.get("account")
    if not isinstance(account, str):
        raise IngestError("'account' must be an account name (a string)", status=400, field="$.account")
    events = obj.get("events")
    if not isinstance(events, list):
        raise IngestError("'events' must be a list of events", status=400, field="$.events")
    return account, events


def coerce_events(items: Iterable[Event | Mapping[str, Any]], *, account: str, now_ms: int) -> list[Event]:
    """Every item as an Event of `account` (an absent timestamp becomes `now_ms`).

    IngestError at the first bad item, naming its index and field.
    """
    events: list[Event] = []
    for index, item in enumerate(items):
        if index >= MAX_BATCH:
            raise IngestError(f"a batch holds at most {MAX_BATCH} events", status=413, index=index)
        events.append(_one_event(item, index, account=account, now_ms=now_ms))
    return events


def _one_event(item: object, index: int, *, account: str, now_ms: int) -> Event:
    parsed: object = item
    if isinstance(item, Mapping):
        try:
            parsed = from_dict(dict(item), account=account, timestamp=now_ms)
        except MessageShapeError as exc:
            raise IngestError(
                f"event {index}: {exc}",
                status=422,
                account=account,
                index=index,
                field=exc.field or _field_named_in(str(exc)),
            ) from None
    # Only what the exchanges stream can be rendered on their wires (a fill travels inside an order update).
    if type(parsed) not in _STREAMED:
        raise IngestError(
            f"event {index}: expected a balance or order event, not {type(parsed).__name__}",
            status=422,
            account=account,
            index=index,
            field="$.kind" if isinstance(item, Mapping) else None,
        )
    event = cast(Event, parsed)
    return msgspec.structs.replace(event, account=account)


def _field_named_in(message: str) -> str | None:
    # msgspec names a missing or unknown top-level field in its message only ("missing required field `x`")
    found = failure(message)
    named = found.missing if found.missing is not None else found.unknown
    return None if named is None else f"$.{named}"
