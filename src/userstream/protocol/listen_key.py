"""One account's listenKey and its keepalive schedule, sans-I/O: what a listenKey exchange's runtime sleeps
until, and which key a connection uses.

This module owns `ListenKeySchedule`: the key held (POST returns the account's active key, so every
connection of the stream shares it); when it is next due for a keepalive (PUT): `keepalive_interval` after
it was created or last extended, or at the retry time the runtime's backoff chose after a failed keepalive
(`next_deadline()`); a key reported invalid is forgotten, and the next one created is reported as renewed
with the reason; a close with a 4000-4999 code that is not ours gets one reconnect with a fresh key (it may
be the exchange's own word for an expired key), and the same close on that key again is a plain failure.
Times are the runtime's monotonic seconds, passed in. `client.listen_key` performs the REST calls.
"""

from __future__ import annotations

import math
from typing import TypeVar

from userstream.errors import ListenKeyInvalidError, UserStreamError
from userstream.protocol.client_session import ClosedByPeer

__all__ = ["ListenKeySchedule"]

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
