"""Bitmusa's client conversation, sans-I/O: what a refused handshake or a close means, and the WebSocket's
(short) conversation.

This module owns `BitmusaClientSession` (on the client role's states, `protocol.client_session`; the server
role is its sibling, `protocol.bitmusa_server`) and `WIRE`, the registry's description of how a Bitmusa stream
is opened (`protocol.client_wire.ListenKeyWire`). The wire (request shapes, reply judgement, the parser)
belongs to `protocol.bitmusa`, the close codes to `protocol.close`, the listenKey's schedule (keepalive
deadlines, the one fresh key after an unknown close) to `protocol.listen_key`; the runtime that performs the
requests and drives the sessions is `client.listen_key` (a stream) and `ops.doctor` (a diagnosis).

- `BitmusaClientSession`, one per WebSocket: live as soon as the handshake is done, data only, no
  application ping (the heartbeat uses WebSocket-protocol pings, whose pongs count as frames). A close with
  LISTEN_KEY_EXPIRED/DELETED needs a new key; a 4000-4999 close that is not ours is the schedule's to judge
  (one reconnect with a fresh key, then a plain failure); our MAX_AGE and SLOW_CONSUMER stay plain closes.
- `handshake_refused(status)`: a 404 is an unknown key or a wrong URL (`EndpointNotFoundError` and
  `ListenKeyInvalidError` both); another 4xx but 429 is a refused key; anything else stays what it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar, Final, TypeVar

from userstream.errors import (
    EndpointNotFoundError,
    ListenKeyInvalidError,
    RemoteProtocolError,
    UserStreamError,
)
from userstream.protocol import bitmusa, bitmusa_listen_key, endpoints
from userstream.protocol.client_session import ClientSession, ClosedByPeer, Timings
from userstream.protocol.client_wire import ListenKeyWire, Parse, ParserFactory
from userstream.protocol.close import CloseCode, needs_new_listen_key
from userstream.protocol.listen_key import ListenKeySchedule
from userstream.protocol.messages import ErrorReply, Incoming

__all__ = ["WIRE", "BitmusaClientSession", "KeyOrEndpointNotFoundError", "handshake_refused"]

#: Our own 4xxx closes that a reconnect with the same key answers (docs/server.md).
_PLAIN_CLOSES: Final = frozenset({CloseCode.MAX_AGE, CloseCode.SLOW_CONSUMER})

_Closed = TypeVar("_Closed", bound=ClosedByPeer)


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


def _parser(account: str, quotes: Sequence[str] | None, max_frame: int | None) -> Parse:
    """Bitmusa's parser (its symbols need no quote list)."""
    if max_frame is None:
        return bitmusa.Parser(account=account)
    return bitmusa.Parser(account=account, max_frame=max_frame)


#: How a Bitmusa stream is opened: a listenKey from REST (registry: `client`).
WIRE: Final = ListenKeyWire(
    rest_base=bitmusa.REST_BASE,
    ws_base=bitmusa.WS_BASE,
    listen_key_path=bitmusa.LISTEN_KEY_PATH,
    ws_path_prefix=bitmusa.WS_PATH_PREFIX,
    listen_key_validity_ms=bitmusa.LISTEN_KEY_VALIDITY_MS,
    rest_base_of=endpoints.bitmusa_rest_base,
    ws_base_of=endpoints.bitmusa_ws_base,
    ws_path=bitmusa.ws_path,
    credentials=lambda api_key, auth_key: bitmusa_listen_key.Credentials(api_key=api_key, auth_key=auth_key),
    create_request=bitmusa_listen_key.create_listen_key_request,
    keepalive_request=bitmusa_listen_key.keepalive_request,
    close_request=bitmusa_listen_key.close_listen_key_request,
    parse_listen_key=bitmusa_listen_key.parse_listen_key_response,
    parse_ack=bitmusa_listen_key.parse_ack_response,
    parser=ParserFactory(_parser),
    client_session=BitmusaClientSession,
    live_on_connect=BitmusaClientSession.live_on_connect,
    handshake_refused=handshake_refused,
    gzip_frames=False,
)
