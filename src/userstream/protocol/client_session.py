"""The client role's conversation on one WebSocket, sans-I/O: states, a transition table, what to do next.

This module owns the client role's states (`State`, `TRANSITIONS`), the seconds it counts with (`Timings`),
and `ClientSession`, the part of the conversation that is the same on every exchange; the actions it asks
for and the transition-table helper are the ones both roles share (`protocol.session`). An exchange's
session (`protocol.bitmusa_client`, `protocol.coinlocally_client`, each beside its server role) subclasses
it and fills in its words: the opening frames, which reply makes the connection live, its ping and pong,
and what an error reply or a close by the server means.

A session takes frames and the time in and gives decisions out, as python-websockets' `protocol.py` and
h11's `_state.py` do; it never reads a clock, sleeps, or touches a socket. The runtime that drives it
(`client.connection` for a stream, `ops.doctor` for a diagnosis):

- calls `start(now)` once the handshake is done, then `receive(frame, now)` for every text or binary frame
  (each frame is parsed once, here) and `sign_of_life(now)` for a protocol-level ping or pong;
- hands the data events `receive` returns (and the Unknowns, to count and report) on itself;
- performs `data_to_send()` after each call: frames to send (`Send`, `SendPing`), `GoLive`, `Close` (send
  our close frame and keep reading), `End` (abort now; the ending is the session's `ending`);
- sleeps until `next_deadline()` and then calls `wake(now, wall_clock_ms)`: the heartbeat's ping and idle
  rules (`protocol.heartbeat`), the sub timeout (the stream's only one: `Timings.sub_timeout`), the close
  timeout;
- reports the end of the socket: `peer_closed(closed)` (the server's close frame, or a broken
  connection) and `connection_lost(error)`, which return why the connection ended (None: we closed it and
  the server agreed).

States and their transitions (`TRANSITIONS`; any other move is a `LocalProtocolError`)::

    CONNECTING  --start, nothing to wait for------------------------> LIVE         (GoLive)
    CONNECTING  --start, a sub to be answered-----------------------> SUBSCRIBING  (Send sub)
    SUBSCRIBING --the live reply ("sub success")--------------------> LIVE         (GoLive)
    SUBSCRIBING, LIVE --close() or a SYSTEM notice------------------> CLOSING      (Close 1000)
    SUBSCRIBING, LIVE --dead (idle), sub timeout--------------------> ENDED        (End)
    SUBSCRIBING, LIVE, CLOSING --error reply, end()-----------------> ENDED        (End)
    CLOSING     --close timeout---------------------------------------> ENDED        (End)
    any         --peer_closed / connection_lost---------------------> ENDED

A server's ping is answered in any state but ENDED; in CLOSING, "sub success" no longer makes a connection
live; once ENDED, control frames change nothing (data frames still read are still handed on).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import ClassVar, Final, Protocol, TypeVar

from userstream.errors import ConnectionLostError, LocalProtocolError, UserStreamError
from userstream.protocol.heartbeat import Due, Heartbeat
from userstream.protocol.messages import (
    ControlReply,
    DataEvents,
    ErrorReply,
    Incoming,
    Ping,
    SystemClose,
    Unknown,
)
from userstream.protocol.session import ClientAction, Close, End, GoLive, Send, SendPing, Sent, Transitions

__all__ = ["TRANSITIONS", "ClientSession", "ClosedByPeer", "State", "Timings"]


class State(Enum):
    """Where one client connection's conversation stands."""

    CONNECTING = "connecting"  # the handshake is done; `start` has not run yet
    SUBSCRIBING = "subscribing"  # the sub is sent; waiting for the reply that makes the connection live
    LIVE = "live"  # events flow
    CLOSING = "closing"  # our close frame is sent; reading what the server still sends, until its close
    ENDED = "ended"  # nothing more will be read; `ending` says why


TRANSITIONS: Final[Mapping[State, frozenset[State]]] = MappingProxyType(
    {
        State.CONNECTING: frozenset({State.SUBSCRIBING, State.LIVE, State.ENDED}),
        State.SUBSCRIBING: frozenset({State.LIVE, State.CLOSING, State.ENDED}),
        State.LIVE: frozenset({State.CLOSING, State.ENDED}),
        State.CLOSING: frozenset({State.ENDED}),
        State.ENDED: frozenset(),
    }
)
_MOVE: Final = Transitions.between(TRANSITIONS, what="a client session")


@dataclass(frozen=True, slots=True, kw_only=True)
class Timings:
    """The seconds one connection's session counts with. `sub_timeout=None`: the runtime enforces none
    (the stream's supervisor waits for live itself); `ping_interval=None`: this side never pings."""

    ping_interval: float | None
    idle_timeout: float
    close_timeout: float
    sub_timeout: float | None = None


class ClosedByPeer(Protocol):
    """How the runtime reports the end of the socket (`client.transport.PeerClosedError`): the server's
    close code (None when the connection simply broke), its reason, and the connection's label."""

    @property
    def code(self) -> int | None: ...

    @property
    def reason(self) -> str: ...

    @property
    def label(self) -> str: ...


_Closed = TypeVar("_Closed", bound=ClosedByPeer)


def _no_scrub(text: str) -> str:
    return text


class ClientSession:
    """One client connection's conversation, the same on every exchange; subclasses supply the words.

    `label` names the connection in errors (a URL safe to show); `scrub` hides the stream's secrets in the
    server's words before they reach an error (client/scrub.py; the identity where nothing is secret).
    """

    #: True when the connection carries events as soon as the handshake is done (no subscription).
    live_on_connect: ClassVar[bool]

    def __init__(
        self,
        parse: Callable[[str | bytes], Incoming],
        *,
        timings: Timings,
        label: str = "",
        scrub: Callable[[str], str] | None = None,
    ) -> None:
        #: The exchange's parser itself, not a method around it: it runs once per frame.
        self._parse = parse
        self.timings = timings
        self.label = label
        self._scrub = scrub if scrub is not None else _no_scrub
        self.state = State.CONNECTING
        #: When the connection went live (the `now` of the call that made it live; None: not yet, or never).
        self.live_at: float | None = None
        #: Whether the server's greeting came before the sub was answered (where the exchange has one).
        self.greeted = False
        #: Why the connection ended, once that is decided (None: not decided, or a clean close).
        self.ending: UserStreamError | None = None
        self._send_failed: UserStreamError | None = None
        self._pending: list[ClientAction] = []
        self._heartbeat = Heartbeat(
            ping_interval=timings.ping_interval, idle_timeout=timings.idle_timeout, now=0.0
        )
        self._sub_deadline = math.inf
        self._close_deadline = math.inf

    # --- what the exchange's subclass supplies -----------------------------------------------------------

    def _opening_frames(self) -> tuple[str, ...]:
        """Frames to send right after the handshake (Coinlocally's sub)."""
        return ()

    def _is_live_reply(self, reply: ControlReply) -> bool:
        """Whether this control reply makes the connection live ("sub success")."""
        return False

    def _is_greeting(self, reply: ControlReply) -> bool:
        """Whether this control reply is the server's greeting before the sub is answered ("connect
        success"): accepted, changes nothing, but remembered (`greeted`: doctor reports it)."""
        return False

    def _ping(self, wall_clock_ms: int) -> ClientAction:
        """The heartbeat's ping: an application frame, or a WebSocket-protocol ping."""
        return SendPing()

    def _pong(self, timestamp: int) -> str | None:
        """The answer to the server's own {"ping": n} (None: nothing to answer)."""
        return None

    def _error_for_reply(self, reply: ErrorReply) -> UserStreamError:
        """What an error reply from the server means (its words already scrubbed)."""
        raise NotImplementedError

    def _error_for_close(self, closed: _Closed) -> UserStreamError | _Closed:
        """What a close by the server means (a lapsed listenKey, a refused sub, a plain disconnect)."""
        return closed

    # --- the runtime's calls --------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The handshake is done: send the opening frames; live at once, or once the sub is answered."""
        self._heartbeat = Heartbeat(
            ping_interval=self.timings.ping_interval, idle_timeout=self.timings.idle_timeout, now=now
        )
        for frame in self._opening_frames():
            self._pending.append(Send(frame, Sent.OPENING))
        if self.live_on_connect:
            self._go_live(now)
        else:
            self._to(State.SUBSCRIBING)
            if self.timings.sub_timeout is not None:
                self._sub_deadline = now + self.timings.sub_timeout

    def receive(self, frame: str | bytes, now: float) -> Incoming:
        """Parse one frame (the only parse it gets) and act on it. Returns what it was: the runtime hands
        `DataEvents` on and counts an `Unknown`; anything else was the session's, and may have queued
        actions (`data_to_send`)."""
        incoming = self._parse(frame)
        self._heartbeat.frame_received(now)
        if type(incoming) is DataEvents or type(incoming) is Unknown or self.state is State.ENDED:
            return incoming
        if isinstance(incoming, Ping):
            pong = self._pong(incoming.timestamp)
            if pong is not None:
                self._pending.append(Send(pong, Sent.PONG))
        elif isinstance(incoming, ControlReply):
            if self.state is State.SUBSCRIBING:
                if self._is_live_reply(incoming):
                    self._go_live(now)
                elif self._is_greeting(incoming):
                    self.greeted = True
        elif isinstance(incoming, ErrorReply):
            # The server's words reach the error scrubbed (it may echo the token it refused).
            code = self._scrub(incoming.code) if isinstance(incoming.code, str) else incoming.code
            scrubbed = ErrorReply(code, self._scrub(incoming.message), incoming.transient)
            self._end(self._error_for_reply(scrubbed))
        elif isinstance(incoming, SystemClose):
            if self.ending is None:
                self.ending = ConnectionLostError(
                    f"{self.label}: the server announced a close (SYSTEM notice)"
                )
            # Keep reading until the server closes, so nothing it sends before its close is lost.
            self.close(now)
        return incoming  # a Pong: its arrival already counted as a sign of life

    def sign_of_life(self, now: float) -> None:
        """A protocol-level ping or pong arrived: the peer is alive."""
        self._heartbeat.frame_received(now)

    def data_to_send(self) -> list[ClientAction]:
        """What the runtime must do now, in order; each action is handed out once."""
        pending, self._pending = self._pending, []
        return pending

    @property
    def has_actions(self) -> bool:
        return bool(self._pending)

    def next_deadline(self) -> float:
        """When `wake` next has something to do (`math.inf`: never, until a frame or a call changes it)."""
        state = self.state
        if state is State.CLOSING:
            return self._close_deadline
        if state is State.LIVE:
            return self._heartbeat.next_deadline
        if state is State.SUBSCRIBING:
            return min(self._heartbeat.next_deadline, self._sub_deadline)
        return math.inf

    def wake(self, now: float, wall_clock_ms: int) -> None:
        """Time passed: end a connection that missed a deadline, or queue the heartbeat's ping.
        `wall_clock_ms` (epoch milliseconds) is what an application ping carries."""
        state = self.state
        if state is State.CLOSING:
            if now >= self._close_deadline:
                # Not a clean end: whatever the server still had for us on this connection is lost.
                self._end(
                    ConnectionLostError(
                        f"{self.label}: no answer to our close within {self.timings.close_timeout:g}s"
                    )
                )
            return
        if state is not State.LIVE and state is not State.SUBSCRIBING:
            return
        due = self._heartbeat.poll(now)
        # Both clocks run before live; the first to end names the ending (the sub timeout on a tie).
        if now >= self._sub_deadline and self._sub_deadline <= self._heartbeat.idle_deadline:
            self._end(
                ConnectionLostError(f"{self.label}: no 'sub success' within {self.timings.sub_timeout:g}s")
            )
            return
        if due is Due.DEAD:
            self._end(
                ConnectionLostError(
                    f"{self.label}: no frame for {self.timings.idle_timeout:g}s; connection presumed dead"
                )
            )
            return
        if due is Due.PING:
            self.ping_now(now, wall_clock_ms)

    def ping_now(self, now: float, wall_clock_ms: int) -> None:
        """Queue the exchange's ping now (the heartbeat's, every `ping_interval`; doctor's, to time one)."""
        self._pending.append(self._ping(wall_clock_ms))
        self._heartbeat.ping_sent(now)

    def pause_idle(self) -> None:
        """The runtime stops reading for a while (its consumer is behind): that is not the peer's silence."""
        self._heartbeat.suspend()

    def resume_idle(self, now: float) -> None:
        """Reading again: silence counts from now."""
        self._heartbeat.resume(now)

    @property
    def idle_paused(self) -> bool:
        """Whether the runtime has stopped reading for its consumer (`pause_idle` without `resume_idle`)."""
        return self._heartbeat.suspended

    def close(self, now: float) -> None:
        """Close gracefully: send our close frame, keep reading until the server answers, for at most
        `close_timeout`. Nothing to do once closing or ended."""
        if self.state is State.CLOSING or self.state is State.ENDED:
            return
        self._to(State.CLOSING)
        self._close_deadline = now + self.timings.close_timeout
        self._pending.append(Close())

    def end(self, error: UserStreamError) -> None:
        """End the connection now with `error` as its ending (unless it already has one)."""
        self._end(error)

    def send_failed(self, error: UserStreamError, why: Sent = Sent.FRAME) -> None:
        """A frame could not be sent (`why`: the sub, a pong, a ping): the connection is going away. Keep
        reading: the server may have sent frames and its close first, and its close says what the ending
        means. A ping that did not go out is no ending of its own (what ends the connection says more)."""
        if self._send_failed is None and why is not Sent.PING:
            self._send_failed = error

    def peer_closed(self, closed: _Closed) -> UserStreamError | None:
        """The socket ended with the server's close (or broke: `closed.code` None); `closed` is an error of
        ours (`client.transport.PeerClosedError`). Returns the ending."""
        ending = self.ending
        if ending is None and self.state is not State.CLOSING:  # after our own close: its answer, a clean end
            judged = self._error_for_close(closed)
            if not isinstance(judged, UserStreamError):
                raise LocalProtocolError(f"a close must be reported as an error of ours, not {judged!r}")
            ending = judged
        self._finish(ending)
        return ending

    def connection_lost(self, error: UserStreamError) -> UserStreamError:
        """The socket failed otherwise (a frame too large, a broken protocol). Returns the ending."""
        ending = self.ending or self._send_failed or error
        self._finish(ending)
        return ending

    # --- inside -------------------------------------------------------------------------------------------

    def _go_live(self, now: float) -> None:
        self._to(State.LIVE)
        self.live_at = now
        self._sub_deadline = math.inf
        self._pending.append(GoLive())

    def _end(self, error: UserStreamError) -> None:
        if self.ending is None:
            self.ending = error
        if self.state is not State.ENDED:
            self._to(State.ENDED)
            self._pending.append(End(self.ending))

    def _finish(self, ending: UserStreamError | None) -> None:
        self.ending = ending
        if self.state is not State.ENDED:
            self._to(State.ENDED)

    def _to(self, state: State) -> None:
        self.state = _MOVE(self.state, state)
