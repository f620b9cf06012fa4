"""The doctor's checks on an open WebSocket, driven by the exchange's own client session.

This module owns `StreamChecks`: the sub handshake, the first frame (or first binary frame, gzip), and the
ping's round trip. Every frame goes through the same sans-I/O client session a stream drives
(`protocol.client_session.ClientSession`), so what counts as "sub success", a refusal, a pong or a ping
to answer is decided in one place for both; this module only times it and says it in words. The
session's timings here: no heartbeat ping and no idle death (a diagnosis is short), the sub answered
within `timeout` (the session's sub timeout, as a stream's).
"""

from __future__ import annotations

import contextlib
import math

from userstream.client.websocket import PeerClosedError, SignOfLife, WebSocket
from userstream.errors import AuthenticationError, UserStreamError
from userstream.ops.doctor.checks import (
    SHOWN_REPLY_CHARS,
    Verdict,
    describe,
    judge_binary_frame,
    ms,
)
from userstream.ops.doctor.steps import Doctor, Inbox
from userstream.protocol.client_session import ClientSession, State, Timings
from userstream.protocol.client_wire import Parse
from userstream.protocol.messages import ErrorReply, Pong, Unknown
from userstream.protocol.session import ClientAction, End, GoLive, Send, SendPing

__all__ = ["StreamChecks"]


class StreamChecks(Doctor):
    """The checks a flow runs once its WebSocket is open."""

    def _timings(self) -> Timings:
        timeout = self._options.timeout
        return Timings(ping_interval=None, idle_timeout=math.inf, close_timeout=timeout, sub_timeout=timeout)

    def _wall_clock_ms(self) -> int:
        return int(self._options.wall_clock() * 1000)

    async def _perform(self, ws: WebSocket, session: ClientSession) -> list[ClientAction]:
        """Send what the session asks to send (the sub, a pong, a ping); return every action it asked for.
        Raises the first send that fails."""
        actions = session.data_to_send()
        for action in actions:
            if type(action) is Send:
                await ws.send(action.frame)
            elif type(action) is SendPing:
                await ws.ping()
        return actions

    def _end_of(self, session: ClientSession, item: UserStreamError) -> UserStreamError | None:
        """The ending the session reads in the end of the socket."""
        if isinstance(item, PeerClosedError):
            return session.peer_closed(item)
        return session.connection_lost(item)

    async def _subscribe(
        self, ws: WebSocket, inbox: Inbox, session: ClientSession, *, connect_success: str, sub_success: str
    ) -> tuple[bool | None, bytes | None]:
        """Start the session (its sub) and wait until it is live: (True accepted / False refused / None
        unknown, the first binary frame if one came meanwhile)."""
        name = "sub handshake"
        started = self._loop.time()
        session.start(started)
        try:
            await self._perform(ws, session)
        except UserStreamError as exc:
            self._add(name, Verdict.FAIL, f"the sub frame could not be sent: {exc}")
            return None, None
        early_binary: bytes | None = None
        while True:
            item = await inbox.next(session.next_deadline())
            if item is None:
                session.wake(self._loop.time(), self._wall_clock_ms())
                if session.state is State.ENDED:  # the sub timeout
                    timeout = self._options.timeout
                    self._add(name, Verdict.FAIL, f"no {sub_success!r} within {timeout:g} s")
                    return None, early_binary
                continue
            if isinstance(item, UserStreamError):
                if isinstance(self._end_of(session, item), AuthenticationError):
                    code = item.code if isinstance(item, PeerClosedError) else None
                    self._add(name, Verdict.FAIL, f"the sub was refused (close code {code})")
                    return False, early_binary
                self._add(name, Verdict.FAIL, f"the connection ended before {sub_success!r}: {item}")
                return None, early_binary
            if isinstance(item, SignOfLife):
                session.sign_of_life(self._loop.time())
                continue
            if isinstance(item, bytes) and early_binary is None:
                early_binary = item
            incoming = session.receive(item, self._loop.time())
            try:
                actions = await self._perform(ws, session)
            except UserStreamError:
                actions = []  # a pong not sent: the socket's end tells the rest
            if any(type(action) is End for action in actions) and isinstance(incoming, ErrorReply):
                message = self._scrubber(incoming.message)[:SHOWN_REPLY_CHARS]
                self._add(name, Verdict.FAIL, f"the sub was refused: error {incoming.code}: {message}")
                refused = isinstance(session.ending, AuthenticationError)
                return (False if refused else None), early_binary
            if any(type(action) is GoLive for action in actions):
                elapsed = ms(self._loop.time() - started)
                if session.greeted:  # the session knows its greeting; `connect_success` is its words
                    self._add(name, Verdict.OK, f"{connect_success!r} then {sub_success!r} in {elapsed}")
                else:
                    self._add(
                        name,
                        Verdict.WARN,
                        f"{sub_success!r} in {elapsed}, without {connect_success!r} before it (the document "
                        "shows one)",
                    )
                return True, early_binary

    async def _first_frame(self, ws: WebSocket, inbox: Inbox, session: ClientSession) -> None:
        """The `frame decoding` check: the first frame within `frame_wait` parses."""
        wait = self._options.frame_wait
        item = await self._await_frame(
            inbox,
            session,
            self._loop.time() + wait,
            check="frame decoding",
            quiet=f"no frame within {wait:g} s: the account was quiet (run it while the account trades)",
            ended="the connection ended before any frame",
        )
        if item is None:
            return
        kind = "text" if isinstance(item, str) else "binary"
        size = f"{len(item)} {'characters' if isinstance(item, str) else 'bytes'}, {kind}"
        incoming = session.receive(item, self._loop.time())
        if isinstance(incoming, Unknown):
            self._add(
                "frame decoding",
                Verdict.WARN,
                f"first frame ({size}) not understood: {incoming.reason} "
                "(record it with `userstream record` and report it)",
            )
        else:
            self._add("frame decoding", Verdict.OK, f"first frame ({size}): {describe(incoming)}")

    async def _await_frame(
        self, inbox: Inbox, session: ClientSession, deadline: float, *, check: str, quiet: str, ended: str
    ) -> str | bytes | None:
        """The next frame before `deadline` (signs of life go to the session); None once `check` is added
        as SKIP, with `quiet` at the deadline or `ended` and why if the connection ended first."""
        while True:
            item = await inbox.next(deadline)
            if item is None:
                self._add(check, Verdict.SKIP, quiet)
                return None
            if isinstance(item, UserStreamError):
                self._end_of(session, item)
                self._add(check, Verdict.SKIP, f"{ended}: {item}")
                return None
            if isinstance(item, SignOfLife):
                session.sign_of_life(self._loop.time())
                continue
            return item

    async def _first_binary_frame(
        self, ws: WebSocket, inbox: Inbox, session: ClientSession, parse: Parse, early_binary: bytes | None
    ) -> None:
        """The `gzip decoding` check: the first binary frame within `frame_wait` gunzips and parses."""
        if early_binary is not None:
            self._add_check(judge_binary_frame(early_binary, parse))
            return
        wait = self._options.frame_wait
        deadline = self._loop.time() + wait
        while True:
            item = await self._await_frame(
                inbox,
                session,
                deadline,
                check="gzip decoding",
                quiet=f"no binary frame within {wait:g} s: the account was quiet "
                "(run it while the account trades)",
                ended="the connection ended before a binary frame",
            )
            if item is None:
                return
            if isinstance(item, bytes):
                self._add_check(judge_binary_frame(item, parse))
                return
            session.receive(item, self._loop.time())  # a text frame: the session's (a ping to answer)
            with contextlib.suppress(UserStreamError):  # a pong not sent: the socket's end tells the rest
                await self._perform(ws, session)

    async def _ping(self, ws: WebSocket, inbox: Inbox, session: ClientSession) -> None:
        """The `ping` check: the session's own ping (an application frame or a protocol ping) and the time
        until its answer."""
        started = self._loop.time()
        session.ping_now(started, self._wall_clock_ms())
        try:
            actions = await self._perform(ws, session)
        except UserStreamError as exc:
            self._add("ping", Verdict.FAIL, f"the ping could not be sent: {exc}")
            return
        in_words = any(type(action) is Send for action in actions)  # else a WebSocket-protocol ping
        deadline = started + self._options.timeout
        while True:
            item = await inbox.next(deadline)
            if item is None:
                self._add("ping", Verdict.FAIL, f"no pong within {self._options.timeout:g} s")
                return
            if isinstance(item, UserStreamError):
                self._end_of(session, item)
                self._add("ping", Verdict.FAIL, f"the connection ended: {item}")
                return
            if isinstance(item, SignOfLife):
                session.sign_of_life(self._loop.time())
                if not in_words:
                    self._round_trip(self._loop.time() - started, "WebSocket-protocol pong")
                    return
                continue
            if isinstance(session.receive(item, self._loop.time()), Pong) and in_words:
                self._round_trip(self._loop.time() - started, '{"pong": ...}')
                return
