"""The server role's session types: what an exchange-side session is given, and what it asks its runtime for.

A server session (protocol/bitmusa_server.py, protocol/coinlocally_server.py, each beside its exchange's
client role) holds one accepted stream's whole conversation as an explicit state machine, sans-I/O: frames
and the time go in (`receive(frame, now, wall_ms)`, `on_deadline(now, wall_ms)`, and the operator's
requests `close` and `listen_key_ended`), and an ordered list of actions comes out (`ServerAction`, of the
vocabulary both roles share in protocol/session.py: `Send` a frame, `GoLive`, `Close` with a code and a
reason after an optional last frame, or `Ignore` a client frame, with why, for the log); each session's
table of moves is a `protocol.session.Transitions`; what both hold and read out alike (terms, state, `live`,
`closing`) is their base, `ServerSessionBase`. `next_deadline()` says when the session must next be
woken; None: never.

Before a session exists, the upgrade request names its account the exchange's way (`AccountNamedBy`: a
listenKey as the path's last segment, or a header holding one of the account's credentials), which the
exchange's `handshake_credential` reads out of the request as a `HandshakeCredential`; the runtime looks it
up. The request may be refused: the runtime names the `HandshakeProblem` and the exchange's
`refuse_handshake` says how it answers it (an `HttpRefusal`: status, body, Retry-After).

Times: `now` is monotonic seconds (deadlines), `wall_ms` wall-clock integer milliseconds (what pongs and
server pings carry). The session reads no clock, holds no socket and imports no asyncio: server/connection.py
drives it. What a run writes differently reaches the session as a `ServerStyle` of plain
values and pure renderers, so no variant name is tested here: each exchange's server module lists its own
variants (`VARIANTS`, of `VariantInfo`) and lays the chosen ones over a style (`variant_style`);
server/variants.py parses them. The data events themselves do not pass
through the session: the runtime fans them out while the session is live (the hot path stays one queue).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar, Final, Generic, Protocol, TypeVar

from userstream.events import Exchange
from userstream.protocol import coinlocally_control, coinlocally_render
from userstream.protocol.close import CloseCode
from userstream.protocol.session import Close, ServerAction

__all__ = [
    "MAX_AGE_REASON",
    "AccountNamedBy",
    "HandshakeCredential",
    "HandshakeProblem",
    "HttpRefusal",
    "ServerSession",
    "ServerSessionBase",
    "ServerStyle",
    "ServerTerms",
    "SubRefusal",
    "VariantInfo",
    "VariantStyle",
    "slow_consumer_close",
]

#: The reason of the close at --max-connection-age (both exchanges).
MAX_AGE_REASON: Final = "connection reached its maximum age"
_SLOW_CONSUMER_REASON: Final = "send buffer full: the client is not reading"


class HandshakeProblem(Enum):
    """Why an upgrade request is refused before any WebSocket exists (the runtime finds it out)."""

    NOT_AN_UPGRADE = "not an upgrade"
    SHUTTING_DOWN = "shutting down"
    TOO_MANY_CONNECTIONS = "too many connections"  # detail: the limit, in words
    UNAVAILABLE = "unavailable"  # detail: what is down
    NO_CREDENTIALS = "no credentials"
    UNKNOWN_CREDENTIALS = "unknown credentials"  # detail: which credential (Coinlocally's header name)
    REFUSED_FOR_NOW = "refused for now"  # detail: the whole message (a fault)


class AccountNamedBy(Enum):
    """How an exchange's upgrade request names the account its stream is for (the runtime looks it up)."""

    #: The path's last segment is a listenKey the exchange's REST API issued (Bitmusa): looked up among the
    #: active keys; an unknown one is UNKNOWN_CREDENTIALS.
    LISTEN_KEY_IN_PATH = "listenKey in the path"
    #: A header holds one of the account's own credentials (Coinlocally's token or api-key): matched against
    #: the accounts; none is NO_CREDENTIALS, an unknown one UNKNOWN_CREDENTIALS (detail: its `label`).
    CREDENTIAL_HEADER = "credential header"


@dataclass(frozen=True, slots=True, repr=False)
class HandshakeCredential:
    """What an upgrade request shows to name its account: `kind` is the credential ("listen_key", "token",
    "api_key": the registry's `account_keys` says which account key holds each), `value` the secret itself,
    `label` how the request named it (what a refusal may say: "api-key"). The repr never shows `value`."""

    kind: str
    value: str
    label: str

    def __repr__(self) -> str:
        return f"HandshakeCredential(kind={self.kind!r}, value=<hidden>)"


@dataclass(frozen=True, slots=True)
class HttpRefusal:
    """The HTTP answer to a refused upgrade: `body` is JSON, text (str) or bytes as the exchange sends it."""

    status: int
    body: str | bytes
    retry_after: int | None = None


@dataclass(frozen=True, slots=True)
class SubRefusal:
    """How a Coinlocally sub is refused: the reply frame (None: none), then the close code and reason."""

    reply: str | bytes | None
    code: int
    reason: str


def _keep(ours: SubRefusal) -> SubRefusal:
    return ours


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStyle:
    """The rendering choices a run makes where the documents are silent (server/variants.py builds one):
    Coinlocally's control replies, pongs and server pings as frames, how a refused sub is answered (given
    ours), whether the server pings (seconds between pings; None: never), and the close code of a lapsed
    Bitmusa listenKey. The default is our own answer everywhere."""

    control: Callable[[str], str | bytes] = str
    pong: Callable[[int], str | bytes] = coinlocally_render.render_pong
    ping: Callable[[int], str | bytes] = coinlocally_control.ping_frame
    sub_refusal: Callable[[SubRefusal], SubRefusal] = field(default=_keep)
    server_ping_interval: float | None = None
    expired_close_code: int = CloseCode.LISTEN_KEY_EXPIRED


@dataclass(frozen=True, slots=True)
class VariantInfo:
    """One variant (`serve --variant NAME`): its `group` (at most one variant per group per run), the exchange
    it concerns (None: both), the value it takes (`value_name`, `default`, None: none) and what it does. Each
    exchange's server module lists its own (`VARIANTS`); server/variants.py parses and validates them."""

    name: str
    group: str
    exchange: Exchange | None
    summary: str
    value_name: str | None = None
    default: float | None = None


#: (the run's chosen variants, name -> value; a style) -> that style with one exchange's variants applied.
VariantStyle = Callable[[Mapping[str, float | None], ServerStyle], ServerStyle]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerTerms:
    """What one accepted stream is held to, given when its session is made.

    `uid` is the account's (Coinlocally's SYSTEM notice names it). `secret` is the handshake credential a
    Coinlocally sub must repeat; None: the handshake's credential matched no account (a refusal variant let
    it through), so every sub is refused, and so is silence for `heartbeat_timeout`. `max_age` and
    `heartbeat_timeout` are seconds (Bitmusa has no heartbeat: it ignores the latter).
    """

    uid: int = 0
    secret: str | None = None
    max_age: float
    heartbeat_timeout: float
    style: ServerStyle = field(default_factory=ServerStyle)

    def __repr__(self) -> str:
        return (
            f"ServerTerms(uid={self.uid}, max_age={self.max_age}, heartbeat_timeout={self.heartbeat_timeout})"
        )


_StateT = TypeVar("_StateT", bound=Enum)


class ServerSessionBase(Generic[_StateT]):
    """What every exchange's server session holds and reads out the same way: its terms, its state (of its
    exchange's `State`), whether it is live or closing, and its repr. The moves stay the exchange's."""

    __slots__ = ("_state", "_terms")

    #: The exchange's state in which events may be pushed, and the one after a close was asked.
    _LIVE: ClassVar[Enum]
    _CLOSING: ClassVar[Enum]

    def __init__(self, terms: ServerTerms, new: _StateT) -> None:
        self._terms = terms
        self._state = new

    def __repr__(self) -> str:
        return f"{type(self).__name__}(state={self._state.name})"

    @property
    def state(self) -> _StateT:
        return self._state

    @property
    def live(self) -> bool:
        return self._state is self._LIVE

    @property
    def closing(self) -> bool:
        return self._state is self._CLOSING


class ServerSession(Protocol):
    """One exchange's server-role conversation on one accepted WebSocket (see the module docstring)."""

    @property
    def live(self) -> bool:
        """Whether events may be pushed now."""
        ...

    @property
    def closing(self) -> bool:
        """Whether a close has been asked (nothing but the close is sent from here on)."""
        ...

    def open(self, now: float, wall_ms: int) -> list[ServerAction]:
        """The stream was accepted at `now`: what to send or do first."""
        ...

    def receive(self, frame: str | bytes, now: float, wall_ms: int) -> list[ServerAction]:
        """A text or binary frame from the client."""
        ...

    def next_deadline(self) -> float | None:
        """When `on_deadline` must be called next (monotonic seconds); None: no deadline."""
        ...

    def on_deadline(self, now: float, wall_ms: int) -> list[ServerAction]:
        """What is due at `now` (nothing if woken early)."""
        ...

    def close(self, code: int, reason: str) -> list[ServerAction]:
        """The server closes the stream (shutdown, a fault, an operator): the close in this exchange's way."""
        ...

    def send_buffer_full(self) -> list[ServerAction]:
        """The runtime's bounded outbox overflowed: the client is not reading."""
        ...

    def listen_key_ended(self, *, expired: bool) -> list[ServerAction]:
        """The stream's listenKey lapsed (`expired`) or was deleted (Bitmusa; nothing elsewhere)."""
        ...


def slow_consumer_close(last_frame: str | bytes | None) -> Close:
    """The close of a stream whose client does not read (both exchanges)."""
    return Close(CloseCode.SLOW_CONSUMER, _SLOW_CONSUMER_REASON, last_frame)
