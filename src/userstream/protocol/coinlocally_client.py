"""Coinlocally's client conversation, sans-I/O: the sub, "sub success", ping/pong, refusals in any shape.

This module owns `CoinlocallyClientSession` (one WebSocket's conversation, on the client role's states,
`protocol.client_session`; its server role is `protocol.coinlocally_server`) and what a refused handshake
means. The wire (headers, sub and ping frames, the parser, refusal texts:
`protocol.refusal`) belongs to `protocol.coinlocally`; the runtime that drives the session is
`client.connection` for a stream and `ops.doctor` for a diagnosis (docs/client.md, "Refusals"):

- the credential travels in the handshake header (`token` or `api-key`); a handshake refused with HTTP 401
  or 403, whatever the body, is a rejected credential (`AuthenticationError`); a 404 is an
  `EndpointNotFoundError`; other statuses stay what they were (retried);
- the sub frame is sent right after the handshake, and the connection is live only once "sub success"
  arrives (`sub_timeout`, when the runtime asks for one); "connect success" is accepted and changes nothing;
- a reply that refuses (any shape: a non-zero code, an error text, a plain-text refusal) is a refused sub:
  an `AuthenticationError` quoting the server's text, scrubbed; a transient one (rate limit, busy server)
  is a `ConnectionLostError` instead, retried;
- a close before the connection went live with a 4000-4999 code or 1008 (or a refusal word in its reason)
  is a refused sub too; a close with no code or a transient one (1011, 1013...) is retried; after live,
  only our emulator's SUB_REJECTED close is a refusal;
- {"ping": now_ms} is sent every `ping_interval`; a server's own {"ping": n} is answered {"pong": n};
- the SYSTEM close notice ends the connection gracefully (after reading what the server still sends).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final, TypeVar

from userstream.errors import AuthenticationError, ConnectionLostError, EndpointNotFoundError, UserStreamError
from userstream.protocol import coinlocally, coinlocally_control, endpoints
from userstream.protocol.client_session import ClientSession, ClosedByPeer, State, Timings
from userstream.protocol.client_wire import HeaderWire, Parse, ParserFactory
from userstream.protocol.close import is_fatal
from userstream.protocol.messages import ControlReply, ErrorReply, Incoming
from userstream.protocol.refusal import clip, read_text_refusal
from userstream.protocol.session import ClientAction, Send, Sent

__all__ = ["WIRE", "CoinlocallyClientSession", "handshake_refused"]

#: RFC 6455 close codes that say "later", not "no": going away, abnormal, internal error, restart, try again.
_TRANSIENT_CLOSES: Final = frozenset({None, 1001, 1006, 1011, 1012, 1013, 1014})
_POLICY_VIOLATION: Final = 1008

_Closed = TypeVar("_Closed", bound=ClosedByPeer)


class CoinlocallyClientSession(ClientSession):
    """Frames on a Coinlocally stream: sub first, live on "sub success", JSON ping/pong both ways."""

    live_on_connect: ClassVar[bool] = False

    def __init__(
        self,
        parse: Callable[[str | bytes], Incoming],
        credentials: coinlocally_control.Credentials,
        *,
        timings: Timings,
        label: str = "",
        scrub: Callable[[str], str] | None = None,
    ) -> None:
        super().__init__(parse, timings=timings, label=label, scrub=scrub)
        self._credentials = credentials
        self._prefix = f"{label}: " if label else ""

    def _opening_frames(self) -> tuple[str, ...]:
        return (coinlocally_control.sub_frame(self._credentials),)

    def _is_live_reply(self, reply: ControlReply) -> bool:
        return reply.text == coinlocally.SUB_SUCCESS

    def _is_greeting(self, reply: ControlReply) -> bool:
        return reply.text == coinlocally.CONNECT_SUCCESS

    def _ping(self, wall_clock_ms: int) -> ClientAction:
        return Send(coinlocally_control.ping_frame(wall_clock_ms), Sent.PING)

    def _pong(self, timestamp: int) -> str | None:
        return coinlocally_control.pong_frame(timestamp)

    def _error_for_reply(self, reply: ErrorReply) -> UserStreamError:
        message = clip(reply.message)
        detail = f": {message}" if message else ""
        code = "" if reply.code is None else f" (error code {clip(str(reply.code))})"
        if reply.transient:
            return ConnectionLostError(
                f"{self._prefix}Coinlocally answered the sub with a transient refusal{code}{detail}"
            )
        return AuthenticationError(
            f"{self._prefix}Coinlocally refused the sub frame's token{code}{detail}", rejected="sub token"
        )

    def _error_for_close(self, closed: _Closed) -> UserStreamError | _Closed:
        if is_fatal(closed.code):
            return self._refused_by_close(closed)
        if self.state is State.SUBSCRIBING and _refuses_sub(closed):
            return self._refused_by_close(closed)
        return closed

    def _refused_by_close(self, closed: ClosedByPeer) -> AuthenticationError:
        reason = clip(closed.reason)
        detail = f": {reason}" if reason else ""
        return AuthenticationError(
            f"{self._prefix}Coinlocally refused the sub frame's token (close code {closed.code}){detail}",
            rejected="sub token",
        )


def _refuses_sub(closed: ClosedByPeer) -> bool:
    """A close before "sub success": a 4000-4999 code, 1008, or a refusal in its reason refused the sub;
    no close code, 1011, 1013... stay what they were."""
    code = closed.code
    if code in _TRANSIENT_CLOSES:
        return False
    refused_reason = read_text_refusal(closed.reason)
    return (code is not None and (4000 <= code <= 4999 or code == _POLICY_VIOLATION)) or (
        refused_reason is not None and not refused_reason.transient
    )


def handshake_refused(status: int, *, label: str, header: str) -> UserStreamError | None:
    """What a WebSocket handshake refused with HTTP `status` means (None: a transient refusal, retried as
    the runtime's transport error). `header` names the credential header sent."""
    if status in (401, 403):
        return AuthenticationError(
            f"{label}: Coinlocally refused the {header!r} header (HTTP {status})",
            rejected=f"{header} header",
            status=status,
        )
    if status == 404:
        return EndpointNotFoundError(
            f"{label}: WebSocket handshake refused with HTTP 404 (no Coinlocally stream here)",
            url=label,
            expected=coinlocally.WS_PATH,
        )
    return None


def _parser(account: str, quotes: Sequence[str] | None, max_frame: int | None) -> Parse:
    """Coinlocally's parser: `quotes` split its concatenated symbols (the default list if None)."""
    options: dict[str, Any] = {}
    if quotes is not None:
        options["quotes"] = quotes
    if max_frame is not None:
        options["max_frame"] = max_frame
    return coinlocally.Parser(account=account, **options)


def _credentials(token: str | None, api_key: str | None) -> coinlocally_control.Credentials:
    return coinlocally_control.Credentials(token=token, api_key=api_key)


def _header_name(credentials: coinlocally_control.Credentials) -> str:
    return credentials.header_name


#: How a Coinlocally stream is opened: the credential in the handshake's header (registry: `client`).
WIRE: Final = HeaderWire(
    ws_url=coinlocally.WS_URL,
    ws_path=coinlocally.WS_PATH,
    ws_url_of=endpoints.coinlocally_ws_url,
    credentials=_credentials,
    header_name=_header_name,
    handshake_headers=coinlocally_control.handshake_headers,
    parser=ParserFactory(_parser),
    client_session=CoinlocallyClientSession,
    live_on_connect=CoinlocallyClientSession.live_on_connect,
    handshake_refused=handshake_refused,
    connect_success=coinlocally.CONNECT_SUCCESS,
    sub_success=coinlocally.SUB_SUCCESS,
    gzip_frames=True,
)
