"""The contract between the supervisor (`supervisor.py`) and each exchange's runtime (`bitmusa.py` etc.).

This module owns two small interfaces and nothing else. A `Session` knows how to open one WebSocket for its
exchange and account (Bitmusa: get a listenKey first; Coinlocally: the credential header), what a frame on
it means (its `Dialect`), and what must run beside the connections for as long as the stream lives
(Bitmusa's keepalive loop). `SessionHooks` is what a session may ask of the supervisor in return: report a
status, drop every connection because the listenKey is gone, or stop the stream for good.
"""

from __future__ import annotations

from typing import Protocol

from userstream.client.connection import Dialect
from userstream.client.status import State
from userstream.client.websocket import WebSocket
from userstream.errors import UserStreamError
from userstream.events import Exchange

__all__ = ["Session", "SessionHooks"]


class SessionHooks(Protocol):
    def emit(
        self,
        state: State,
        *,
        reason: str | None = None,
        attempt: int | None = None,
        delay: float | None = None,
        listen_key: str | None = None,
    ) -> None:
        """Report a status event (the supervisor fills in exchange and account)."""
        ...

    async def listen_key_lost(self, error: UserStreamError) -> None:
        """The listenKey is gone: end every open connection with `error`, so they reconnect with a new one."""
        ...

    def fatal(self, error: UserStreamError) -> None:
        """Stop the stream: `error` is raised from the user's iterator."""
        ...


class Session(Protocol):
    @property
    def exchange(self) -> Exchange: ...

    @property
    def dialect(self) -> Dialect: ...

    @property
    def listen_key_hint(self) -> str | None:
        """The masked listenKey in use, for status events (None where there is no listenKey)."""
        ...

    @property
    def keepalives(self) -> int:
        """Successful keepalives so far (0 where there is no keepalive)."""
        ...

    async def open_websocket(self) -> WebSocket:
        """Open one WebSocket (not yet live). Raises errors of ours only."""
        ...

    def ended_before_live(self, ending: UserStreamError) -> UserStreamError:
        """What a connection that ended before it went live means (Coinlocally: a close with a 4xxx code
        refused the sub); the supervisor asks before it classifies the ending."""
        ...

    def forget_listen_key(self, reason: str) -> None:
        """The listenKey was reported invalid: the next `open_websocket` must get a new one."""
        ...

    async def maintain(self, hooks: SessionHooks) -> None:
        """What runs beside the connections for the stream's lifetime; may return at once."""
        ...

    async def close(self) -> None:
        """The stream is shutting down (Bitmusa: DELETE the listenKey if asked to)."""
        ...
