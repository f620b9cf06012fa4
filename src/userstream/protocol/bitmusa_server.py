"""Bitmusa's user stream, the exchange's side of the conversation: one sans-I/O session per accepted socket.

The client role of the same conversation is its sibling, protocol/bitmusa_client.py, on the same actions and
transition-table helper (protocol/session.py); the wire is protocol/bitmusa.py. Bitmusa's stream is the simple
one: the listenKey in the path was checked before the upgrade (an HTTP refusal otherwise, server/app.py), so
the stream is live from its first moment; the document defines no client frames (they are read and dropped);
it ends when its listenKey lapses (4001, or a variant's code) or is deleted (4002), at the maximum age (4000),
or when the server closes it. No close carries a notice frame. server/connection.py drives it.

States and moves (`TABLE`; any move not listed raises LocalProtocolError):

    NEW      --open-->                       LIVE     go live
    LIVE     --frame-->                      LIVE     nothing (no client frame is defined)
    LIVE     --key expired-->                CLOSING  close with the style's expired code, "listenKey expired"
    LIVE     --key deleted-->                CLOSING  close 4002, "listenKey deleted"
    LIVE     --max age-->                    CLOSING  close 4000
    LIVE     --close, buffer full-->         CLOSING  close with the code given / 4005
    CLOSING  --anything-->                   CLOSING  nothing: the close is under way

Its one deadline is the maximum age, counted from the open. The upgrade names its account by the listenKey
in the path (`handshake_credential`); an upgrade refused before the stream exists (`refuse_handshake`) is
answered with Bitmusa's error body; an unknown listenKey is a 404.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType
from typing import Final

from userstream.events import Exchange
from userstream.protocol import bitmusa, bitmusa_render
from userstream.protocol.close import CloseCode
from userstream.protocol.server_session import (
    MAX_AGE_REASON,
    HandshakeCredential,
    HandshakeProblem,
    HttpRefusal,
    ServerSessionBase,
    ServerStyle,
    ServerTerms,
    VariantInfo,
    slow_consumer_close,
)
from userstream.protocol.session import Close, GoLive, ServerAction, Transitions

__all__ = [
    "ERR_UNAVAILABLE",
    "TABLE",
    "VARIANTS",
    "BitmusaServerSession",
    "Input",
    "State",
    "handshake_credential",
    "refuse_handshake",
    "variant_style",
]

#: Ours for "the server cannot serve this now" (HTTP 503), in Bitmusa's numbering (status * 1000 + n).
ERR_UNAVAILABLE: Final = 503001

_P = HandshakeProblem
#: How each refused upgrade is answered: HTTP status, error code, message (None: the detail given).
_HANDSHAKE_REFUSALS: Final[dict[HandshakeProblem, tuple[int, int, str | None]]] = {
    _P.NOT_AN_UPGRADE: (400, bitmusa.ERR_BAD_REQUEST, "expected a WebSocket upgrade"),
    _P.SHUTTING_DOWN: (503, bitmusa.ERR_BAD_REQUEST, "the server is shutting down"),
    _P.TOO_MANY_CONNECTIONS: (429, bitmusa.ERR_RATE_LIMITED, None),
    _P.UNAVAILABLE: (503, ERR_UNAVAILABLE, "service unavailable: {detail}"),
    _P.NO_CREDENTIALS: (404, bitmusa.ERR_LISTEN_KEY_NOT_FOUND, "listenKey does not exist or has expired"),
    _P.UNKNOWN_CREDENTIALS: (
        404,
        bitmusa.ERR_LISTEN_KEY_NOT_FOUND,
        "listenKey does not exist or has expired",
    ),
    _P.REFUSED_FOR_NOW: (503, ERR_UNAVAILABLE, None),
}


def handshake_credential(segment: str | None, headers: Mapping[str, str]) -> HandshakeCredential | None:
    """The listenKey an upgrade names as the last segment of its path (`segment`; headers play no part)."""
    if not segment:
        return None
    return HandshakeCredential("listen_key", segment, "listenKey")


def refuse_handshake(
    problem: HandshakeProblem, detail: str = "", retry_after: int | None = None
) -> HttpRefusal:
    """Bitmusa's answer to an upgrade refused for `problem` ({"code": ..., "message": ...})."""
    status, code, message = _HANDSHAKE_REFUSALS[problem]
    text = detail if message is None else message.format(detail=detail)
    return HttpRefusal(status, bitmusa_render.render_error(code, text), retry_after)


class State(Enum):
    NEW = "new"
    LIVE = "live"
    CLOSING = "closing"


class Input(Enum):
    OPEN = "open"
    FRAME = "frame"
    KEY_EXPIRED = "key expired"
    KEY_DELETED = "key deleted"
    MAX_AGE = "max age"
    CLOSE = "close"
    BUFFER_FULL = "buffer full"


_ENDS: Final = (Input.KEY_EXPIRED, Input.KEY_DELETED, Input.MAX_AGE, Input.CLOSE, Input.BUFFER_FULL)

#: Every move the session may make: (state, input) -> next state.
TABLE: Final[Mapping[tuple[State, Input], State]] = MappingProxyType(
    {
        (State.NEW, Input.OPEN): State.LIVE,
        (State.LIVE, Input.FRAME): State.LIVE,
        **{(State.LIVE, event): State.CLOSING for event in _ENDS},
        **{(State.CLOSING, event): State.CLOSING for event in Input if event is not Input.OPEN},
    }
)
_MOVE: Final = Transitions(TABLE)


class BitmusaServerSession(ServerSessionBase[State]):
    """The exchange's side of one Bitmusa stream (see the module docstring for the states and moves)."""

    __slots__ = ("_max_age_at",)
    _LIVE = State.LIVE
    _CLOSING = State.CLOSING

    def __init__(self, terms: ServerTerms) -> None:
        super().__init__(terms, State.NEW)
        self._max_age_at: float | None = None

    def _end(self, event: Input, close: Close) -> list[ServerAction]:
        if self._state is State.CLOSING:
            return []
        self._state = _MOVE(self._state, event)
        return [close]

    def open(self, now: float, wall_ms: int) -> list[ServerAction]:
        self._state = _MOVE(self._state, Input.OPEN)
        self._max_age_at = now + self._terms.max_age
        return [GoLive()]  # a listenKey stream pushes from the first moment

    def receive(self, frame: str | bytes, now: float, wall_ms: int) -> list[ServerAction]:
        self._state = _MOVE(self._state, Input.FRAME)
        return []  # the document defines no client frames: read (the socket stays drained) and dropped

    def next_deadline(self) -> float | None:
        return self._max_age_at if self._state is State.LIVE else None

    def on_deadline(self, now: float, wall_ms: int) -> list[ServerAction]:
        if self._state is not State.LIVE or self._max_age_at is None or now < self._max_age_at:
            return []
        return self._end(Input.MAX_AGE, Close(CloseCode.MAX_AGE, MAX_AGE_REASON))

    def close(self, code: int, reason: str) -> list[ServerAction]:
        return self._end(Input.CLOSE, Close(code, reason))

    def send_buffer_full(self) -> list[ServerAction]:
        return self._end(Input.BUFFER_FULL, slow_consumer_close(None))

    def listen_key_ended(self, *, expired: bool) -> list[ServerAction]:
        if expired:
            return self._end(
                Input.KEY_EXPIRED, Close(self._terms.style.expired_close_code, "listenKey expired")
            )
        return self._end(Input.KEY_DELETED, Close(CloseCode.LISTEN_KEY_DELETED, "listenKey deleted"))


# --- variants: what the document leaves open, answered another plausible way for one run -------------------

#: Bitmusa's variants (docs/server.md, "Variants", says why each is plausible). The error bodies and POST's
#: keep-alive are serve's HTTP side (server/variants.py, server/exchange.py); the stream's is below.
VARIANTS: Final[tuple[VariantInfo, ...]] = (
    VariantInfo(
        "bitmusa-errors-code-msg",
        "bitmusa-errors",
        Exchange.BITMUSA,
        'error bodies are {"code":<int>,"msg":<text>} (Binance\'s keys) instead of code/message',
    ),
    VariantInfo(
        "bitmusa-errors-html",
        "bitmusa-errors",
        Exchange.BITMUSA,
        "error bodies are an HTML page saying only the HTTP status, as a proxy in front would send",
    ),
    VariantInfo(
        "bitmusa-post-extends",
        "bitmusa-post",
        Exchange.BITMUSA,
        "POST on an account with an active listenKey returns it and extends it (as Binance does)",
    ),
    VariantInfo(
        "bitmusa-expired-close",
        "bitmusa-expired-close",
        Exchange.BITMUSA,
        "a stream whose listenKey lapsed is closed with CODE (default 4401) and reason "
        "'listenKey expired' instead of our 4001",
        value_name="CODE",
        default=4401,
    ),
)


def variant_style(chosen: Mapping[str, float | None], style: ServerStyle) -> ServerStyle:
    """`style` with the chosen Bitmusa variants laid over it: the close code of a lapsed listenKey."""
    code = chosen.get("bitmusa-expired-close")
    return style if code is None else dataclasses.replace(style, expired_close_code=int(code))
