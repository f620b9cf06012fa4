"""The contract between the supervisor (`supervisor.py`) and an account's runtime (`listen_key.py` etc.).

This module owns two small interfaces, and what `connect()` hands the one that opens a session
(`OpenArguments`), nothing else. A `Session` is one account's runtime on one
exchange: it knows how to open one WebSocket (Bitmusa: get a listenKey first; Coinlocally: the credential
header), makes the sans-I/O client session each connection drives (`protocol.session.ClientSession`: what
every frame and close means), and runs what must run beside the connections for as long as the stream
lives (Bitmusa's keepalive loop). `SessionHooks` is what a session may ask of the supervisor in return:
report a status, drop every connection because the listenKey is gone, or stop the stream for good.
`client.runtimes.open_session` makes the `Session` of a registered exchange.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from userstream.client.status import State
from userstream.client.websocket import WebSocket
from userstream.errors import UserStreamError
from userstream.events import Exchange
from userstream.protocol.client_session import ClientSession, Timings

if TYPE_CHECKING:
    from userstream.client.options import StreamOptions
    from userstream.client.transport import Transport

__all__ = ["OpenArguments", "Session", "SessionHooks"]


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
    def live_on_connect(self) -> bool:
        """True when a connection carries events as soon as its handshake is done (no subscription)."""
        ...

    def new_client_session(
        self, *, timings: Timings, label: str, scrub: Callable[[str], str]
    ) -> ClientSession:
        """The client session of one new connection (`client.connection.NewSession`)."""
        ...

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

    def forget_listen_key(self, reason: str) -> None:
        """The listenKey was reported invalid: the next `open_websocket` must get a new one."""
        ...

    async def maintain(self, hooks: SessionHooks) -> None:
        """What runs beside the connections for the stream's lifetime; may return at once."""
        ...

    async def close(self) -> None:
        """The stream is shutting down (Bitmusa: DELETE the listenKey if asked to)."""
        ...


@dataclass(frozen=True, slots=True)
class OpenArguments:
    """What `connect()` was given for one account's session, passed whole to the runtime's `open` (each
    runtime refuses what its exchange does not take). The credentials stay out of the repr."""

    transport: Transport
    options: StreamOptions
    api_key: str | None = field(repr=False)
    auth_key: str | None = field(repr=False)
    token: str | None = field(repr=False)
    rest_url: str | None
    ws_url: str | None
