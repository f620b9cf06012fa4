"""What every sans-I/O session says, in both roles: the actions it asks its runtime for, and its moves.

A session holds one WebSocket's whole conversation as an explicit state machine: frames and the time go in,
and an ordered list of actions comes out, which the runtime performs in order, as python-websockets'
`protocol.py` asks of `asyncio/connection.py` and h11's `_state.py` of its caller. Each exchange has two
roles, side by side in protocol/: the client's (`protocol.client_session.ClientSession`, subclassed in
`bitmusa_client.py` and `coinlocally_client.py`; driven by `client.connection` and `ops.doctor`) and the
exchange's (`protocol.server_session.ServerSession`, in `bitmusa_server.py` and `coinlocally_server.py`;
driven by `server.connection`). This module owns the vocabulary both roles share:

- the actions: `Send` a frame (`Sent` says what it is where the runtime treats it apart: a ping, a pong,
  the opening frame), `GoLive` (events flow from here on), `Close` with a code and a reason (after an
  optional last frame: Coinlocally's SYSTEM notice), then the client's own `SendPing` (a WebSocket-protocol
  ping) and `End` (abort now, with the ending), and the server's own `Ignore` (a client frame of no use, for
  the log). `ClientAction` and `ServerAction` are what each role may ask for;
- `Transitions`, the one transition-table helper: every move a session makes is looked up in its table,
  so the table printed in the session's module is the whole truth, and a move it does not list is a bug
  (`LocalProtocolError`) rather than a silent change of state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Generic, TypeVar

from userstream.errors import LocalProtocolError, UserStreamError

__all__ = [
    "ClientAction",
    "Close",
    "End",
    "GoLive",
    "Ignore",
    "Send",
    "SendPing",
    "Sent",
    "ServerAction",
    "Transitions",
]


class Sent(Enum):
    """What a sent frame is, where its runtime treats it apart (the client counts its pings and pongs, and
    a ping that fails to go out is no ending); FRAME for any other frame of the conversation."""

    FRAME = "frame"
    OPENING = "opening"  # the frame that opens the conversation (Coinlocally's sub)
    PING = "ping"
    PONG = "pong"


@dataclass(frozen=True, slots=True)
class Send:
    """Send this frame (text or binary) after what was asked before."""

    frame: str | bytes
    why: Sent = Sent.FRAME


@dataclass(frozen=True, slots=True)
class GoLive:
    """The stream is live: events flow from now on (behind what was sent before; the client hands on no
    later frame's events before it)."""


@dataclass(frozen=True, slots=True)
class Close:
    """Send our close frame with `code` and `reason`, after everything asked before and then `last_frame`
    (None: none), and keep reading until the peer answers. Nothing else is sent once a close is asked."""

    code: int = 1000  # a CloseCode, a variant's own code, or 1000
    reason: str = ""
    last_frame: str | bytes | None = None


@dataclass(frozen=True, slots=True)
class SendPing:
    """(Client) send a WebSocket-protocol ping: an exchange with no ping of its own words."""


@dataclass(frozen=True, slots=True)
class End:
    """(Client) abort the connection now. `error` is its ending: a refusal, a dead peer, no answer to our
    close."""

    error: UserStreamError


@dataclass(frozen=True, slots=True)
class Ignore:
    """(Server) a client frame the conversation has no use for (the runtime logs `reason` at DEBUG)."""

    reason: str


#: What a client session asks of `client.connection` (or doctor).
ClientAction = Send | SendPing | GoLive | Close | End
#: What a server session asks of `server.connection`.
ServerAction = Send | GoLive | Close | Ignore


_State = TypeVar("_State", bound=Enum)
_Input = TypeVar("_Input", bound=Enum)


class Transitions(Generic[_State, _Input]):
    """A transition table, `(state, input) -> next state`, that refuses what it does not list.

    h11's `_state.py` in miniature. A session whose inputs each lead to one place (the client's: "go live",
    "close", "end") names its moves by their destination instead: `Transitions.between({state: targets})`,
    where moving is `moves(state, target)`. `targets` is the table read as "where each state may go".
    """

    __slots__ = ("_by_target", "_table", "_what", "targets")

    def __init__(self, table: Mapping[tuple[_State, _Input], _State]) -> None:
        self._table = table
        self._by_target = False
        self._what = ""
        moves: dict[_State, set[_State]] = {}
        for (state, _), target in table.items():
            moves.setdefault(state, set()).add(target)
        states = list(type(next(iter(moves)))) if moves else []
        #: Where each state may go (a state with no move maps to an empty set).
        self.targets: Mapping[_State, frozenset[_State]] = MappingProxyType(
            {state: frozenset(moves.get(state, ())) for state in states}
        )

    @classmethod
    def between(
        cls, targets: Mapping[_State, frozenset[_State]], *, what: str = "a session"
    ) -> Transitions[_State, _State]:
        """The table of a session that moves by destination: each state's allowed next states. `what`
        names the session in a refusal ("a client session cannot go from ENDED to SUBSCRIBING")."""
        moves: Transitions[_State, _State] = Transitions(
            {(state, target): target for state, allowed in targets.items() for target in allowed}
        )
        moves._by_target = True
        moves._what = what
        moves.targets = targets
        return moves

    def __call__(self, state: _State, event: _Input) -> _State:
        try:
            return self._table[(state, event)]
        except KeyError:
            if self._by_target:
                raise LocalProtocolError(
                    f"{self._what} cannot go from {state.name} to {event.name}"
                ) from None
            raise LocalProtocolError(f"no transition from {state.name} on {event.name}") from None
