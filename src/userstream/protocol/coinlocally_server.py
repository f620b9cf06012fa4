"""Coinlocally's user stream, the exchange's side of the conversation: a sans-I/O session per accepted socket.

The client role of the same conversation is its sibling, protocol/coinlocally_client.py, on the same actions
and transition-table helper (protocol/session.py); the wire is protocol/coinlocally.py (parse),
coinlocally_control.py (control frames) and coinlocally_render.py (events as frames). This module holds what
the exchange *decides*: "connect success" first, then a sub whose token must repeat the handshake credential
("sub success" and events, or the refusal and a close), pongs to pings, the heartbeat (a stream that has not
pinged for `heartbeat_timeout` is closed), the maximum age, the server's own pings when a variant asks for
them, and the SYSTEM notice before every close the server starts, except a refused sub (the notice would
invite a reconnect that cannot succeed).
server/connection.py drives it and decides nothing.

States and moves (`TABLE`; any move not listed raises LocalProtocolError):

    NEW          --open-->              AWAITING_SUB  send "connect success"
    NEW          --open unverified-->   UNVERIFIED    send "connect success" (the credential matched nobody)
    AWAITING_SUB --sub-->               LIVE          send "sub success", go live
    LIVE         --sub-->               LIVE          send "sub success" again (already live)
    AWAITING_SUB, LIVE --sub mismatch-->  CLOSING     send the refusal's reply, close (no notice)
    AWAITING_SUB, LIVE --ping-->        same          send {"pong": now}; the heartbeat deadline moves
    AWAITING_SUB, LIVE --pong-->        same          (server pings only) the heartbeat deadline moves
    AWAITING_SUB, LIVE --other-->       same          ignore (logged)
    AWAITING_SUB, LIVE --server ping due--> same      send {"ping": now}
    AWAITING_SUB, LIVE --heartbeat lapsed--> CLOSING  SYSTEM notice, close 4003
    AWAITING_SUB, LIVE --max age-->     CLOSING       SYSTEM notice, close 4000
    UNVERIFIED   --sub-->               CLOSING       send the refusal's reply, close (any token)
    UNVERIFIED   --sub wait lapsed-->   CLOSING       the same refusal, for silence
    UNVERIFIED   --ping-->              UNVERIFIED    send {"pong": <the client's number>}
    UNVERIFIED   --pong, other-->       UNVERIFIED    ignore
    any but NEW  --close, buffer full--> CLOSING      SYSTEM notice, close with the code given / 4005
    CLOSING      --anything-->          CLOSING       nothing: the close is under way

Deadlines: max age from the open, heartbeat from the last ping (or the open), the server ping every
`server_ping_interval`; an UNVERIFIED stream has only its sub wait (`heartbeat_timeout` from the open).
The upgrade names its account by a `token` or `api-key` header (`handshake_credential`); an upgrade refused
before the stream exists (`refuse_handshake`) is answered with our error body.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType
from typing import Any, Final

import msgspec

from userstream.events import Exchange
from userstream.protocol import coinlocally, coinlocally_control, coinlocally_render
from userstream.protocol.close import CloseCode
from userstream.protocol.codec import decode_frame, gzip_bytes
from userstream.protocol.server_session import (
    MAX_AGE_REASON,
    HandshakeCredential,
    HandshakeProblem,
    HttpRefusal,
    ServerSessionBase,
    ServerStyle,
    ServerTerms,
    SubRefusal,
    VariantInfo,
    slow_consumer_close,
)
from userstream.protocol.session import Close, GoLive, Ignore, Send, ServerAction, Transitions

__all__ = [
    "ERR_BAD_REQUEST",
    "ERR_SUB_REJECTED",
    "ERR_TOO_MANY_CONNECTIONS",
    "ERR_UNAUTHORIZED",
    "ERR_UNAVAILABLE",
    "TABLE",
    "VARIANTS",
    "CoinlocallyServerSession",
    "Input",
    "State",
    "handshake_credential",
    "is_client_pong",
    "our_sub_refusal",
    "refuse_handshake",
    "variant_style",
]

# Coinlocally documents no error codes; ours follow Bitmusa's numbering (HTTP status * 1000 + n).
ERR_BAD_REQUEST: Final = 400001
ERR_UNAUTHORIZED: Final = 401001
ERR_SUB_REJECTED: Final = 401002
ERR_TOO_MANY_CONNECTIONS: Final = 429002
ERR_UNAVAILABLE: Final = 503001
_SUB_REJECTED_MESSAGE: Final = "sub rejected: the token does not match this connection's credential"


class State(Enum):
    NEW = "new"
    AWAITING_SUB = "awaiting sub"
    UNVERIFIED = "unverified"
    LIVE = "live"
    CLOSING = "closing"


class Input(Enum):
    OPEN = "open"
    OPEN_UNVERIFIED = "open unverified"
    SUB = "sub"
    SUB_MISMATCH = "sub mismatch"
    PING = "ping"
    PONG = "pong"
    OTHER = "other"
    SERVER_PING_DUE = "server ping due"
    HEARTBEAT_LAPSED = "heartbeat lapsed"
    MAX_AGE = "max age"
    SUB_WAIT_LAPSED = "sub wait lapsed"
    CLOSE = "close"
    BUFFER_FULL = "buffer full"


_S, _I = State, Input
_VERIFIED_STAYS = (_I.PING, _I.PONG, _I.OTHER, _I.SERVER_PING_DUE)
_VERIFIED_ENDS = (_I.SUB_MISMATCH, _I.HEARTBEAT_LAPSED, _I.MAX_AGE, _I.CLOSE, _I.BUFFER_FULL)

#: Every move the session may make: (state, input) -> next state.
TABLE: Final[Mapping[tuple[State, Input], State]] = MappingProxyType(
    {
        (_S.NEW, _I.OPEN): _S.AWAITING_SUB,
        (_S.NEW, _I.OPEN_UNVERIFIED): _S.UNVERIFIED,
        (_S.AWAITING_SUB, _I.SUB): _S.LIVE,
        (_S.LIVE, _I.SUB): _S.LIVE,
        **{(state, event): state for state in (_S.AWAITING_SUB, _S.LIVE) for event in _VERIFIED_STAYS},
        **{(state, event): _S.CLOSING for state in (_S.AWAITING_SUB, _S.LIVE) for event in _VERIFIED_ENDS},
        (_S.UNVERIFIED, _I.PING): _S.UNVERIFIED,
        (_S.UNVERIFIED, _I.PONG): _S.UNVERIFIED,
        (_S.UNVERIFIED, _I.OTHER): _S.UNVERIFIED,
        **{
            (_S.UNVERIFIED, event): _S.CLOSING
            for event in (_I.SUB, _I.SUB_WAIT_LAPSED, _I.CLOSE, _I.BUFFER_FULL)
        },
        **{(_S.CLOSING, event): _S.CLOSING for event in Input if event not in (_I.OPEN, _I.OPEN_UNVERIFIED)},
    }
)
_MOVE: Final = Transitions(TABLE)


def our_sub_refusal() -> SubRefusal:
    """Our answer to a sub whose token does not match: an error frame, then close 4004."""
    return SubRefusal(
        coinlocally_render.render_error(ERR_SUB_REJECTED, _SUB_REJECTED_MESSAGE),
        CloseCode.SUB_REJECTED,
        "sub rejected",
    )


class CoinlocallyServerSession(ServerSessionBase[State]):
    """The exchange's side of one Coinlocally stream (see the module docstring for the states and moves)."""

    __slots__ = ("_heartbeat_at", "_max_age_at", "_ping_at", "_secret", "_sub_wait_at")
    _LIVE = State.LIVE
    _CLOSING = State.CLOSING

    def __init__(self, terms: ServerTerms) -> None:
        super().__init__(terms, State.NEW)
        self._secret = None if terms.secret is None else terms.secret.encode()
        self._max_age_at: float | None = None
        self._heartbeat_at: float | None = None
        self._ping_at: float | None = None
        self._sub_wait_at: float | None = None

    def _move(self, event: Input) -> State:
        self._state = _MOVE(self._state, event)
        return self._state

    # --- inputs ---------------------------------------------------------------------------------------------

    def open(self, now: float, wall_ms: int) -> list[ServerAction]:
        terms = self._terms
        if self._secret is None:
            self._move(Input.OPEN_UNVERIFIED)
            self._sub_wait_at = now + terms.heartbeat_timeout
        else:
            self._move(Input.OPEN)
            self._max_age_at = now + terms.max_age
            self._heartbeat_at = now + terms.heartbeat_timeout
            interval = terms.style.server_ping_interval
            self._ping_at = None if interval is None else now + interval
        return [Send(terms.style.control(coinlocally.CONNECT_SUCCESS))]

    def receive(self, frame: str | bytes, now: float, wall_ms: int) -> list[ServerAction]:
        if self._state is State.CLOSING:
            return []
        style = self._terms.style
        request = coinlocally_control.parse_client_frame(frame)
        if isinstance(request, coinlocally_control.PingRequest):
            if self._move(Input.PING) is State.UNVERIFIED:
                return [Send(style.pong(request.timestamp))]  # the refusing stream echoes the client's number
            self._heard_from_client(now)
            return [Send(style.pong(wall_ms))]
        if isinstance(request, coinlocally_control.SubRequest):
            if self._state is State.UNVERIFIED:
                self._move(Input.SUB)
                return self._refuse(SubRefusal(None, CloseCode.SUB_REJECTED, "sub rejected"))
            if self._secret is not None and hmac.compare_digest(request.token.encode(), self._secret):
                was = self._state
                self._move(Input.SUB)
                reply: list[ServerAction] = [Send(style.control(coinlocally.SUB_SUCCESS))]
                return reply if was is State.LIVE else [*reply, GoLive()]  # events queue behind it
            self._move(Input.SUB_MISMATCH)
            return self._refuse(our_sub_refusal())
        if style.server_ping_interval is not None and is_client_pong(frame):
            if self._move(Input.PONG) is not State.UNVERIFIED:
                self._heard_from_client(now)  # the answer to the server's own ping is a heartbeat too
            return []
        self._move(Input.OTHER)
        return [Ignore(request.reason)]

    def next_deadline(self) -> float | None:
        if self._state is State.UNVERIFIED:
            return self._sub_wait_at
        if self._state is State.AWAITING_SUB or self._state is State.LIVE:
            deadlines = [self._max_age_at, self._heartbeat_at, self._ping_at]
            return min(deadline for deadline in deadlines if deadline is not None)
        return None

    def on_deadline(self, now: float, wall_ms: int) -> list[ServerAction]:
        state = self._state
        if state is State.UNVERIFIED:
            if self._sub_wait_at is not None and now >= self._sub_wait_at:
                self._move(Input.SUB_WAIT_LAPSED)
                return self._refuse(SubRefusal(None, CloseCode.SUB_REJECTED, "sub rejected"))
            return []
        if state is not State.AWAITING_SUB and state is not State.LIVE:
            return []
        actions: list[ServerAction] = []
        interval = self._terms.style.server_ping_interval
        if self._ping_at is not None and interval is not None and now >= self._ping_at:
            self._move(Input.SERVER_PING_DUE)
            self._ping_at = now + interval
            actions.append(Send(self._terms.style.ping(wall_ms)))
        if self._heartbeat_at is not None and now >= self._heartbeat_at:
            self._move(Input.HEARTBEAT_LAPSED)
            timeout = self._terms.heartbeat_timeout
            actions.append(self._close(CloseCode.HEARTBEAT_TIMEOUT, f"no ping within {timeout:g} s"))
        elif self._max_age_at is not None and now >= self._max_age_at:
            self._move(Input.MAX_AGE)
            actions.append(self._close(CloseCode.MAX_AGE, MAX_AGE_REASON))
        return actions

    def close(self, code: int, reason: str) -> list[ServerAction]:
        if self._state is State.CLOSING:
            return []
        self._move(Input.CLOSE)
        return [self._close(code, reason)]

    def send_buffer_full(self) -> list[ServerAction]:
        if self._state is State.CLOSING:
            return []
        self._move(Input.BUFFER_FULL)
        return [slow_consumer_close(self._notice())]

    def listen_key_ended(self, *, expired: bool) -> list[ServerAction]:
        return []  # Coinlocally has no listenKey

    # --- outputs --------------------------------------------------------------------------------------------

    def _heard_from_client(self, now: float) -> None:
        self._heartbeat_at = now + self._terms.heartbeat_timeout

    def _refuse(self, ours: SubRefusal) -> list[ServerAction]:
        refusal = self._terms.style.sub_refusal(ours)
        close = Close(refusal.code, refusal.reason)  # no SYSTEM notice: a reconnect cannot succeed
        return [close] if refusal.reply is None else [Send(refusal.reply), close]

    def _close(self, code: int, reason: str) -> Close:
        return Close(code, reason, self._notice())

    def _notice(self) -> bytes:
        return coinlocally_render.render_system_close(self._terms.uid)


_P = HandshakeProblem
#: How each refused upgrade is answered: HTTP status, error code, message (None: the detail given).
_HANDSHAKE_REFUSALS: Final[dict[HandshakeProblem, tuple[int, int, str | None]]] = {
    _P.NOT_AN_UPGRADE: (400, ERR_BAD_REQUEST, "expected a WebSocket upgrade"),
    _P.SHUTTING_DOWN: (503, ERR_BAD_REQUEST, "the server is shutting down"),
    _P.TOO_MANY_CONNECTIONS: (429, ERR_TOO_MANY_CONNECTIONS, None),
    _P.UNAVAILABLE: (503, ERR_UNAVAILABLE, "service unavailable: {detail}"),
    _P.NO_CREDENTIALS: (
        401,
        ERR_UNAUTHORIZED,
        "missing credentials: send exactly one of the 'token' or 'api-key' headers",
    ),
    _P.UNKNOWN_CREDENTIALS: (401, ERR_UNAUTHORIZED, "invalid {detail}"),
    _P.REFUSED_FOR_NOW: (503, ERR_UNAVAILABLE, None),
}


def handshake_credential(segment: str | None, headers: Mapping[str, str]) -> HandshakeCredential | None:
    """The credential of an upgrade's `token` or `api-key` header (names case-insensitive); None unless
    exactly one is present and usable. The path (`segment`) names nothing."""
    creds = coinlocally_control.credentials_from_headers(headers)
    if creds is None:
        return None
    return HandshakeCredential(
        "token" if creds.token is not None else "api_key", creds.secret, creds.header_name
    )


def refuse_handshake(
    problem: HandshakeProblem, detail: str = "", retry_after: int | None = None
) -> HttpRefusal:
    """Our answer to a Coinlocally upgrade refused for `problem` ({"event": "error", "code", "message"}, as
    text)."""
    status, code, message = _HANDSHAKE_REFUSALS[problem]
    text = detail if message is None else message.format(detail=detail)
    return HttpRefusal(status, coinlocally_render.render_error(code, text), retry_after)


_PONG_DECODER: Final = msgspec.json.Decoder(dict[str, Any])


def is_client_pong(frame: str | bytes) -> bool:
    """Whether a client frame is {"pong": n} (plain or gzip): the answer to a server ping."""
    try:
        parsed = _PONG_DECODER.decode(decode_frame(frame, coinlocally.MAX_CLIENT_FRAME))
    except Exception:  # anything else is simply not a pong
        return False
    pong = parsed.get("pong")
    return isinstance(pong, int) and not isinstance(pong, bool)


# --- variants: what the document leaves open, answered another plausible way for one run -------------------

#: Coinlocally's variants (docs/server.md, "Variants", says why each is plausible).
VARIANTS: Final[tuple[VariantInfo, ...]] = (
    VariantInfo(
        "coinlocally-refusal-code-msg",
        "coinlocally-refusal",
        Exchange.COINLOCALLY,
        'an unknown credential is upgraded; its sub gets {"code":"10002","msg":"token invalid"}, '
        "then a close with CODE (default 4401); a mismatched sub token too",
        value_name="CODE",
        default=4401,
    ),
    VariantInfo(
        "coinlocally-refusal-text",
        "coinlocally-refusal",
        Exchange.COINLOCALLY,
        "an unknown credential is upgraded; its sub gets the plain text frame 'token invalid', then a "
        "1000 close; a mismatched sub token too",
    ),
    VariantInfo(
        "coinlocally-refusal-close",
        "coinlocally-refusal",
        Exchange.COINLOCALLY,
        "an unknown credential is upgraded; its sub gets no reply, only a close with CODE "
        "(default 1008) and no reason; a mismatched sub token too",
        value_name="CODE",
        default=1008,
    ),
    VariantInfo(
        "coinlocally-control-quoted",
        "coinlocally-control",
        Exchange.COINLOCALLY,
        "'connect success' and 'sub success' are JSON strings (\"connect success\"), as the document "
        "prints them",
    ),
    VariantInfo(
        "coinlocally-control-gzip",
        "coinlocally-control",
        Exchange.COINLOCALLY,
        "'connect success', 'sub success' and refusal replies are gzip binary frames, like the data",
    ),
    VariantInfo(
        "coinlocally-pong-gzip",
        "coinlocally-pong",
        Exchange.COINLOCALLY,
        '{"pong":m} (and the server\'s own pings) are gzip binary frames, like the data',
    ),
    VariantInfo(
        "coinlocally-server-ping",
        "coinlocally-server-ping",
        Exchange.COINLOCALLY,
        'the server sends {"ping":now_ms} every SECONDS (default 5); the client\'s {"pong":n} counts '
        "as a heartbeat as well as its own pings",
        value_name="SECONDS",
        default=5.0,
    ),
)


def variant_style(chosen: Mapping[str, float | None], style: ServerStyle) -> ServerStyle:
    """`style` with the chosen Coinlocally variants laid over it: how control replies, pongs and the server's
    pings travel, how a refused sub is answered, and whether the server pings."""
    control_gzip = "coinlocally-control-gzip" in chosen
    heartbeat_gzip = "coinlocally-pong-gzip" in chosen

    def reply(text: str) -> str | bytes:
        return gzip_bytes(text.encode()) if control_gzip else text

    def control(text: str) -> str | bytes:
        if "coinlocally-control-quoted" in chosen:
            return msgspec.json.encode(text).decode()
        return reply(text)

    def heartbeat(frame: str) -> str | bytes:
        return gzip_bytes(frame.encode()) if heartbeat_gzip else frame

    def sub_refusal(ours: SubRefusal) -> SubRefusal:
        if "coinlocally-refusal-code-msg" in chosen:
            code = int(chosen["coinlocally-refusal-code-msg"] or 4401)
            text = msgspec.json.encode({"code": "10002", "msg": "token invalid"}).decode()
            return SubRefusal(reply(text), code, "token invalid")
        if "coinlocally-refusal-text" in chosen:
            return SubRefusal(reply("token invalid"), 1000, "")
        if "coinlocally-refusal-close" in chosen:
            return SubRefusal(None, int(chosen["coinlocally-refusal-close"] or 1008), "")
        return SubRefusal(
            reply(ours.reply) if isinstance(ours.reply, str) else ours.reply, ours.code, ours.reason
        )

    return dataclasses.replace(
        style,
        control=control,
        pong=lambda timestamp: heartbeat(coinlocally_render.render_pong(timestamp)),
        ping=lambda timestamp: heartbeat(coinlocally_control.ping_frame(timestamp)),
        sub_refusal=sub_refusal,
        server_ping_interval=chosen.get("coinlocally-server-ping"),
    )
