"""Bitmusa's client conversation, sans-I/O: the listenKey's schedule, what a refused handshake or a close
means, and the WebSocket's (short) conversation.

This module owns two sessions. The wire (request shapes, reply judgement, the parser) belongs to
`protocol.bitmusa`, the close codes to `protocol.close`; the runtime that performs the requests and drives
the sessions is `client.bitmusa` (a stream) and `ops.doctor` (a diagnosis).

- `ListenKeySchedule`, one per account: the key held (POST returns the account's active key, so every
  connection of the stream shares it), when it is next due for a keepalive (PUT), every
  `keepalive_interval` after it was created or last extended, or at the retry time the runtime's backoff
  chose after a failed keepalive; `next_deadline()` says when. A key reported invalid (by a reply, a
  handshake refused with a 4xx other than 429, a close with LISTEN_KEY_EXPIRED/DELETED) is forgotten, and
  the next one created is reported as renewed with the reason. A close with a 4000-4999 code that is not
  ours gets one reconnect with a fresh key (it may be the exchange's own word for an expired key); the same
  close on that key again is a plain failure.
- `BitmusaClientSession`, one per WebSocket: live as soon as the handshake is done, data only, no
  application ping (the heartbeat uses WebSocket-protocol pings, whose pongs count as frames).
- `handshake_refused(status)`: a 404 is an unknown key or a wrong URL (`EndpointNotFoundError` and
  `ListenKeyInvalidError` both); another 4xx but 429 is a refused key; anything else stays what it was.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar, Final, TypeVar

from userstream.errors import (
    EndpointNotFoundError,
    ListenKeyInvalidError,
    RemoteProtocolError,
    UserStreamError,
)
from userstream.protocol import bitmusa
from userstream.protocol.close import CloseCode, needs_new_listen_key
from userstream.protocol.messages import ErrorReply, Incoming
from userstream.protocol.session import ClientSession, ClosedByPeer, Timings

__all__ = ["BitmusaClientSession", "KeyOrEndpointNotFoundError", "ListenKeySchedule", "handshake_refused"]

#: Our own 4xxx closes that a reconnect with the same key answers (docs/server.md).
_PLAIN_CLOSES: Final = frozenset({CloseCode.MAX_AGE, CloseCode.SLOW_CONSUMER})

_Closed = TypeVar("_Closed", bound=ClosedByPeer)


class ListenKeySchedule:
    """One account's listenKey and its keepalive schedule. Times are the runtime's monotonic seconds."""

    def __init__(self, *, keepalive_interval: float) -> None:
        self.keepalive_interval = keepalive_interval
        self.key: str | None = None
        self.keepalives = 0  # successful keepalives so far
        self._extended_at = 0.0
        self._retry_at: float | None = None
        self._forgotten_because: str | None = None
        self._renewing_for_close = False  # the next key is fetched because of an unknown 4xxx close
        self._key_renewed_for_close: str | None = None  # ... and this is that key

    def created(self, key: str, now: float) -> str | None:
        """POST returned `key`: hold it; its keepalives are due from now. Returns why the key it replaces
        was forgotten (report it as renewed), or None for the first key."""
        self.key = key
        self._key_renewed_for_close = key if self._renewing_for_close else None
        self._renewing_for_close = False
        self._extended_at = now
        self._retry_at = None  # a new key starts a new schedule from its creation
        renewed_because, self._forgotten_because = self._forgotten_because, None
        return renewed_because

    def forget(self, reason: str) -> bool:
        """The key was reported invalid: the next connection needs a new one. False if none was held."""
        if self.key is None:
            return False
        self.key = None
        self._forgotten_because = reason
        self._retry_at = None
        return True

    def closed(self) -> None:
        """The key was DELETEd on exit: none is held, and none will be reported renewed."""
        self.key = None
        self._retry_at = None

    def next_deadline(self) -> float:
        """When the next keepalive is due (`math.inf` while no key is held)."""
        if self.key is None:
            return math.inf
        if self._retry_at is not None:
            return self._retry_at
        return self._extended_at + self.keepalive_interval

    def extended(self, now: float) -> None:
        """A keepalive succeeded: the key is good for another interval from now."""
        self._extended_at = now
        self._retry_at = None
        self.keepalives += 1

    def retry_at(self, when: float) -> None:
        """A keepalive failed and is retried at `when` (the runtime's backoff chose it)."""
        self._retry_at = when

    def unknown_close(self, closed: _Closed) -> UserStreamError | _Closed:
        """A 4xxx close code that is not ours: one reconnect with a fresh key, then a plain failure."""
        if self.key is not None and self.key == self._key_renewed_for_close:
            return closed
        self._renewing_for_close = True
        return ListenKeyInvalidError(f"{closed} (an unknown close code: trying once with a fresh listenKey)")


class BitmusaClientSession(ClientSession):
    """Frames on a Bitmusa stream: data only, live as soon as the handshake is done. `schedule` is the
    account's listenKey (None: a close with an unknown code is a plain failure)."""

    live_on_connect: ClassVar[bool] = True

    def __init__(
        self,
        parse: Callable[[str | bytes], Incoming],
        *,
        timings: Timings,
        label: str = "",
        scrub: Callable[[str], str] | None = None,
        schedule: ListenKeySchedule | None = None,
    ) -> None:
        super().__init__(parse, timings=timings, label=label, scrub=scrub)
        self._schedule = schedule

    def _error_for_reply(self, reply: ErrorReply) -> UserStreamError:
        return RemoteProtocolError(f"Bitmusa sent an unexpected error reply (code {reply.code})")

    def _error_for_close(self, closed: _Closed) -> UserStreamError | _Closed:
        if needs_new_listen_key(closed.code):
            what = "expired" if closed.code == CloseCode.LISTEN_KEY_EXPIRED else "was deleted"
            where = f"{closed.label}: " if closed.label else ""
            return ListenKeyInvalidError(f"{where}the listenKey {what} (close code {closed.code})")
        code = closed.code
        unknown = code is not None and 4000 <= code <= 4999 and code not in _PLAIN_CLOSES
        if unknown and self._schedule is not None:
            return self._schedule.unknown_close(closed)
        return closed


class KeyOrEndpointNotFoundError(ListenKeyInvalidError, EndpointNotFoundError):
    """A handshake refused with 404: the listenKey is unknown there (get a new one), or, if it never
    worked, the URL is wrong (the supervisor counts it as an EndpointNotFoundError)."""


def handshake_refused(status: int, *, label: str, ws_shown: str) -> UserStreamError | None:
    """What a WebSocket handshake refused with HTTP `status` means (None: transient, 5xx or 429, retried as
    the runtime's transport error). `label` names the connection, `ws_shown` its base as it may be shown."""
    if status == 404:
        return KeyOrEndpointNotFoundError(
            f"{label}: WebSocket handshake refused with HTTP 404 (an unknown listenKey, or no "
            "Bitmusa stream at this URL)",
            url=f"{ws_shown}<listenKey>",
            expected=f"{bitmusa.WS_PATH_PREFIX}<listenKey>",
        )
    if 400 <= status < 500 and status != 429:
        return ListenKeyInvalidError(f"{label}: the server refused the listenKey (HTTP {status})")
    return None
