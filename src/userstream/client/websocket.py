"""The client's WebSockets on picows: opening one, receiving its frames in order, sending, closing.

This module owns the WebSocket half of the client's I/O boundary (the REST half is `client/rest.py`; the
stream's `Transport`, `client/transport.py`, holds the TLS policy and the secrets both use). `open_websocket`
turns a URL plus headers into a `WebSocket` with picows, whose frame callback costs a third of aiohttp's CPU
per frame (docs/architecture.md, docs/performance.md). `WebSocket` receives frames (text, binary, or a bare
sign of life for protocol-level ping/pong), sends text and pings, and closes either gracefully (a close
frame, then keep reading until the peer answers, so nothing the peer sent before our close is lost) or at
once.

picows hands each frame to a callback as it parses the socket; `_Inbox` queues them for the one task that
`receive()`s, and keeps backpressure: past `INBOX_HIGH_WATER` waiting frames it pauses reading the socket
(the server's side then buffers, as TCP intends) and resumes at `INBOX_LOW_WATER`. A whole text or binary
frame that arrives while nothing waits in the inbox is first offered to the `express` handler, if the
receiver set one (`WebSocket.set_express`): the receiver's usual work done in the callback itself, with no
queueing and no task switch per frame (docs/performance.md). Order is kept: a frame queued ahead of it means
the handler is not asked.

Every picows, ssl, OS and timeout exception of a connect is converted here (`_converted_ws`) into our error
tree, so nothing third-party leaks past this file. A refused upgrade is a `HandshakeRejectedError` with its
status and, for a 429 or 418 that says how long to wait, the server's `Retry-After` (`retry_after`, honoured
by the one retry policy in `client/backoff.py`). Messages are built from what is safe to show: the caller's
`label` for a URL (a Bitmusa WebSocket URL contains the listenKey, so callers pass a masked label) and the
exception's class, never the libraries' own text, which can quote the full URL. picows' wire dumps (level 9,
below DEBUG, with the handshake's headers) are never let through (`_QuietPicowsLog`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import picows

from userstream.client.dialer import Dialer
from userstream.client.rest import retry_after_header
from userstream.client.scrub import Scrubber
from userstream.client.tls import TlsPolicy, uses_tls
from userstream.errors import (
    ConfigurationError,
    ConnectionLostError,
    FrameDecodeError,
    RemoteProtocolError,
    TransportError,
    UserStreamError,
)

__all__ = [
    "INBOX_HIGH_WATER",
    "INBOX_HIGH_WATER_BYTES",
    "INBOX_LOW_WATER",
    "INBOX_LOW_WATER_BYTES",
    "SIGN_OF_LIFE",
    "Express",
    "HandshakeRejectedError",
    "PeerClosedError",
    "SignOfLife",
    "WebSocket",
    "open_websocket",
]


_SLOW_DOWN: Final = frozenset({429, 418})  # the statuses whose Retry-After asks us to wait
_ABORT_WAIT = 1.0  # seconds an abort waits for a peer that may be stalled
_READ_BUFFER_INITIAL = 4096  # bytes: a user-stream frame is well under 1 KiB


class HandshakeRejectedError(TransportError):
    """The server answered the WebSocket upgrade with an HTTP status instead of switching protocols.

    Exchange modules decide what a status means (Bitmusa: the listenKey is not valid; Coinlocally: the
    credential header was refused). `retry_after` is the server's `Retry-After` in seconds when it refused
    with 429 or 418 (slow down) and said how long: the retry policy waits at least that long.
    """

    def __init__(self, message: str, *, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class PeerClosedError(ConnectionLostError):
    """The WebSocket was closed. `code` and `reason` are the peer's close frame, when it sent one;
    `code` is None when the connection simply broke. `label` is the connection's (a URL safe to show)."""

    def __init__(self, message: str, *, code: int | None, reason: str = "", label: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.label = label


class SignOfLife:
    """A protocol-level ping or pong arrived: the peer is alive, and there is no payload to parse."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SIGN_OF_LIFE"


SIGN_OF_LIFE: Final = SignOfLife()


#: Frames waiting for the reader above which the socket stops being read, and at or below which reading
#: resumes. A reader waiting for room in a full event queue stops draining the inbox; pausing the socket
#: then makes the server's side buffer (TCP flow control), so a slow consumer never grows our memory. The
#: frames of the read in progress still arrive after the pause: at most one read buffer more.
INBOX_HIGH_WATER: Final = 256
INBOX_LOW_WATER: Final = 64
#: The same marks in bytes (characters for text), so that 256 frames of `max_frame` each (a peer sending
#: incompressible megabyte frames to a stalled reader) cannot make 256 MiB wait: reading pauses at either
#: mark and resumes once both are met (docs/reliability.md, "Memory").
INBOX_HIGH_WATER_BYTES: Final = 4 << 20
INBOX_LOW_WATER_BYTES: Final = 1 << 20

if TYPE_CHECKING:
    _LoggerAdapter = logging.LoggerAdapter[logging.Logger]
else:
    _LoggerAdapter = logging.LoggerAdapter


class _QuietPicowsLog(_LoggerAdapter):
    """picows' logger, tamed. At level 9 (below DEBUG) picows logs the upgrade request with its headers (a
    Coinlocally token, a Bitmusa listenKey in the path) and raw received bytes: none of it may reach a log,
    whatever the application's logging configuration, so nothing below DEBUG passes. Its INFO lines ("WS
    connection established", "Disconnected", one pair per connection) become DEBUG: the stream's own
    status events say the same, with reasons. Warnings and errors pass unchanged."""

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        return level >= logging.DEBUG and self.logger.isEnabledFor(_DEMOTED.get(level, level))

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if level >= logging.DEBUG:
            super().log(_DEMOTED.get(level, level), msg, *args, **kwargs)


_DEMOTED: Final = {logging.INFO: logging.DEBUG}
_PICOWS_LOG: Final = _QuietPicowsLog(logging.getLogger("picows.client"), {})


@contextmanager
def _converted_ws(label: str) -> Iterator[None]:
    """picows', ssl's and the OS's exceptions while opening a WebSocket, in our tree. The messages show no
    secret: picows' own texts can quote the URL, which holds a Bitmusa listenKey."""
    try:
        yield
    except picows.WSHandshakeError as exc:
        response = exc.response
        if response is None or int(response.status) == 101:
            # No status line at all, or a 101 with broken upgrade headers: not a refusal, a broken peer.
            raise ConnectionLostError(
                f"{label}: invalid WebSocket handshake reply ({type(exc).__name__})"
            ) from None
        status = int(response.status)
        hint = retry_after_header(response.headers) if status in _SLOW_DOWN else None
        # The wait it asks for shows as the status event's delay, not in these words (they stay the same
        # whether or not the server says how long to wait).
        raise HandshakeRejectedError(
            f"{label}: WebSocket handshake refused with HTTP {status}", status=status, retry_after=hint
        ) from None
    except picows.WSInvalidURL:
        raise ConfigurationError(f"{label}: invalid URL") from None
    except ssl.SSLCertVerificationError as exc:
        # Fatal, not retried: a certificate does not fix itself, and a wrong one may be an attack.
        why = exc.verify_message or type(exc).__name__
        raise ConfigurationError(
            f"{label}: the server's TLS certificate failed verification ({why}); to trust a private CA, "
            "pass its certificate as ca_file (--ca-file)"
        ) from None
    except ssl.SSLError as exc:
        raise ConnectionLostError(f"{label}: TLS handshake failed ({type(exc).__name__})") from None
    except TimeoutError:
        raise ConnectionLostError(f"{label}: timed out") from None
    except OSError as exc:
        raise ConnectionLostError(f"{label}: cannot connect ({exc.strerror or type(exc).__name__})") from None
    except picows.WSError as exc:
        raise ConnectionLostError(f"{label}: WebSocket error ({type(exc).__name__})") from None


_TEXT: Final = picows.WSMsgType.TEXT
_BINARY: Final = picows.WSMsgType.BINARY
_CONTINUATION: Final = picows.WSMsgType.CONTINUATION
_PING: Final = picows.WSMsgType.PING
_PONG: Final = picows.WSMsgType.PONG
_CLOSE: Final = picows.WSMsgType.CLOSE
# RFC 6455 close codes this side sends
_PROTOCOL_ERROR: Final = 1002
_INVALID_TEXT: Final = 1007
_MESSAGE_TOO_BIG: Final = 1009
_MAX_REASON_BYTES: Final = 123  # a close frame's payload is at most 125 bytes, 2 of them the code


#: Offered a whole text (str) or binary (bytes) frame from picows' callback when nothing is queued ahead of
#: it; returns True when it took the frame, False to leave it to `receive()`. It must not raise.
Express = Callable[[str | bytes], bool]

_log = logging.getLogger("userstream.client")


class _End:
    """The inbox's last item: the connection is over, and `error` says how."""

    __slots__ = ("error",)

    def __init__(self, error: UserStreamError) -> None:
        self.error = error


class _Inbox(picows.WSListener):
    """picows' callbacks for one connection: every frame, in order, into a deque that `receive()` drains.

    picows calls it synchronously from the event loop, for each frame it parses from the socket (often
    several per read). Text frames become str, binary frames bytes (a fragmented message is reassembled,
    bounded by `max_frame`), pings and pongs a SIGN_OF_LIFE (a ping is answered at once), and the end of
    the connection an `_End` carrying the error `receive()` raises. It never raises into picows.
    """

    def __init__(self, label: str, max_frame: int, scrubber: Scrubber) -> None:
        self.label = label
        self.max_frame = max_frame
        self.scrubber = scrubber
        self.items: deque[str | bytes | SignOfLife | _End] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.express: Express | None = None
        self.transport: picows.WSTransport | None = None
        self.paused = False
        self.bytes = 0  # the length of the waiting frames (characters for text)
        self.ended = False
        self.closing = False  # our close frame is sent (or being sent): no more pongs or texts
        self._abandoned = False
        self._fragments: list[bytes] | None = None
        self._fragments_are_text = False
        self._fragments_size = 0

    def abandon(self) -> None:
        """The connect was cancelled or failed: close this connection now or as soon as it is made."""
        self._abandoned = True
        if self.transport is not None:
            self.transport.disconnect(graceful=False)

    # -- picows' callbacks

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport
        if self._abandoned:
            transport.disconnect(graceful=False)

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        if frame.fin and self._fragments is None and (kind is _TEXT or kind is _BINARY):
            # the usual case: one whole message in one frame
            message: str | bytes
            if kind is _TEXT:
                try:
                    message = frame.get_payload_as_utf8_text()
                except UnicodeDecodeError:
                    self._fail(_INVALID_TEXT, FrameDecodeError(f"{self.label}: a text frame is not UTF-8"))
                    return
            else:
                message = frame.get_payload_as_bytes()
            express = self.express
            if express is not None and not self.items:
                try:
                    if express(message):
                        return
                except Exception:
                    # A bug: switched off, loudly, and the frame goes to the inbox as if there had been none.
                    _log.exception(
                        "%s: the express frame handler raised; frames go through receive() now", self.label
                    )
                    self.express = None
            self.put(message, len(message))
            return
        if kind is _PING:
            if not self.closing:
                transport.send_pong(frame.get_payload_as_bytes())
            self.put(SIGN_OF_LIFE)
        elif kind is _PONG:
            self.put(SIGN_OF_LIFE)
        elif kind is _CLOSE:
            self._closed_by_peer(transport, frame)
        else:
            self._fragment(kind, frame)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        handshake: picows.picows.WSCloseHandshake | None = transport.close_handshake
        sent = None if handshake is None else handshake.sent
        if handshake is not None and sent is not None and handshake.recv is None and not self.closing:
            # picows closed the connection itself: the peer broke the protocol (a frame over max_frame,
            # a reserved opcode, a masked server frame...).
            code = sent.code.value
            if code == _MESSAGE_TOO_BIG:
                error: UserStreamError = FrameDecodeError(
                    f"{self.label}: a frame exceeds the {self.max_frame}-byte limit"
                )
            else:
                error = RemoteProtocolError(f"{self.label}: the server broke the WebSocket protocol ({code})")
            self.end(error)
        else:
            self.end(PeerClosedError(f"{self.label}: connection lost", code=None))

    # -- the inbox

    def put(self, item: str | bytes | SignOfLife, size: int = 0) -> None:
        items = self.items
        items.append(item)
        self.bytes += size
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if (
            (len(items) >= INBOX_HIGH_WATER or self.bytes >= INBOX_HIGH_WATER_BYTES)
            and not self.paused
            and self.transport is not None
        ):
            self.paused = True
            self.transport.underlying_transport.pause_reading()

    def taken(self, item: str | bytes | SignOfLife) -> None:
        """`item` left the inbox: uncount it, and resume reading if the inbox is drained enough."""
        if type(item) is not SignOfLife:
            self.bytes -= len(item)  # type: ignore[arg-type]  # str or bytes
        if self.paused:
            self.resume_if_drained()

    def resume_if_drained(self) -> None:
        if len(self.items) <= INBOX_LOW_WATER and self.bytes <= INBOX_LOW_WATER_BYTES:
            self.paused = False
            transport = self.transport
            if transport is not None and not transport.is_disconnected:
                transport.underlying_transport.resume_reading()

    def end(self, error: UserStreamError) -> None:
        """The connection is over; `receive()` raises `error` once the frames before it are read."""
        if self.ended:
            return
        self.ended = True
        self.items.append(_End(error))
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, code: int, error: UserStreamError) -> None:
        """The peer sent something we refuse: close with `code`, and end with `error`."""
        self.closing = True
        transport = self.transport
        if transport is not None:
            transport.send_close(picows.WSCloseCode(code))
            transport.disconnect()
        self.end(error)

    def _closed_by_peer(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        code = frame.get_close_code().value if frame.payload_size >= 2 else None
        try:
            reason = frame.get_close_reason() or ""
        except UnicodeDecodeError:  # picows refuses such a frame first; kept as a guard
            reason = ""
        reason = self.scrubber(reason)  # the server's words: they may echo a secret
        if not transport.is_close_frame_sent:
            # Echo the code, as RFC 6455 asks (an empty close is answered with 1000).
            transport.send_close(frame.get_close_code() if code is not None else picows.WSCloseCode.OK)
        transport.disconnect()
        shown = f" {reason!r}" if reason else ""
        self.end(
            PeerClosedError(
                f"{self.label}: closed by the server with code {code}{shown}",
                code=code,
                reason=reason,
                label=self.label,
            )
        )

    def _fragment(self, kind: picows.WSMsgType, frame: picows.WSFrame) -> None:
        """One frame of a message split over several (RFC 6455 section 5.4): collected, bounded."""
        if kind is _CONTINUATION:
            if self._fragments is None:
                self._fail(_PROTOCOL_ERROR, RemoteProtocolError(f"{self.label}: a continuation of nothing"))
                return
        elif kind is _TEXT or kind is _BINARY:
            if self._fragments is not None:
                self._fail(
                    _PROTOCOL_ERROR,
                    RemoteProtocolError(f"{self.label}: a new message inside a fragmented one"),
                )
                return
            self._fragments, self._fragments_are_text, self._fragments_size = [], kind is _TEXT, 0
        else:
            return  # picows delivers no other opcode
        chunk = frame.get_payload_as_bytes()
        self._fragments_size += len(chunk)
        if self._fragments_size > self.max_frame:
            self._fail(
                _MESSAGE_TOO_BIG,
                FrameDecodeError(f"{self.label}: a message exceeds the {self.max_frame}-byte limit"),
            )
            return
        self._fragments.append(chunk)
        if not frame.fin:
            return
        message = b"".join(self._fragments)
        self._fragments = None
        if not self._fragments_are_text:
            self.put(message, len(message))
            return
        try:
            text = message.decode()
            self.put(text, len(text))
        except UnicodeDecodeError:
            self._fail(_INVALID_TEXT, FrameDecodeError(f"{self.label}: a text message is not UTF-8"))


class WebSocket:
    """One open WebSocket. One task receives; any task may send or close."""

    __slots__ = ("_inbox", "_label", "_settled", "_transport")

    def __init__(self, transport: picows.WSTransport, inbox: _Inbox, *, label: str) -> None:
        self._transport = transport
        self._inbox = inbox
        self._label = label
        self._settled = False

    @property
    def label(self) -> str:
        return self._label

    @property
    def closed(self) -> bool:
        return self._inbox.ended or self._transport.is_disconnected

    def scrub(self, text: str) -> str:
        """`text` (the server's words: an error reply, an unknown frame) with every secret of the stream
        that opened this WebSocket hidden (see `client.scrub`)."""
        return self._inbox.scrubber(text)

    @property
    def pending(self) -> int:
        """Frames received and not yet handed out by `receive()`."""
        return sum(1 for item in self._inbox.items if type(item) is not _End)

    @property
    def reading_paused(self) -> bool:
        """True while the socket is not read because `pending` reached `INBOX_HIGH_WATER` (backpressure)."""
        return self._inbox.paused

    def set_express(self, handler: Express | None) -> None:
        """From now on, offer each whole text or binary frame that finds nothing queued ahead of it to
        `handler`, in picows' callback, before queueing it for `receive()` (None: stop). For a receiver
        whose usual work per frame needs no await: it saves a queue round trip and a task switch."""
        self._inbox.express = handler

    def receive_nowait(self) -> str | bytes | SignOfLife | None:
        """The next frame if one is waiting, else None (also at the end: `receive()` reports that). A
        reader drains what one read of the socket brought with no await per frame."""
        items = self._inbox.items
        if not items or type(items[0]) is _End:
            return None
        item = items.popleft()
        self._inbox.taken(item)  # type: ignore[arg-type]  # not an _End: checked above
        return item  # type: ignore[return-value]  # not an _End: checked above

    async def receive(self) -> str | bytes | SignOfLife:
        """The next frame. Raises `PeerClosedError` when the connection is closed or broken, or a
        `RemoteProtocolError` when the server broke the protocol; and the same again on every later call."""
        inbox = self._inbox
        items = inbox.items
        while not items:
            waiter = asyncio.get_running_loop().create_future()
            inbox.waiter = waiter
            try:
                await waiter
            finally:
                inbox.waiter = None
        item = items[0]
        if type(item) is _End:
            if not self._settled and self._transport.is_disconnected:
                await self._settle()
            raise item.error
        items.popleft()
        inbox.taken(item)  # type: ignore[arg-type]  # not an _End: checked above
        return item  # type: ignore[return-value]  # not an _End: checked above

    async def send_text(self, text: str) -> None:
        self._check_open()
        self._transport.send(_TEXT, text.encode())

    async def send(self, frame: str | bytes) -> None:
        """Send a session's frame: text if it is a str, binary if bytes."""
        self._check_open()
        if isinstance(frame, str):
            self._transport.send(_TEXT, frame.encode())
        else:
            self._transport.send(_BINARY, frame)

    async def ping(self, payload: bytes = b"") -> None:
        self._check_open()
        self._transport.send_ping(payload)

    def _check_open(self) -> None:
        transport = self._transport
        if self._inbox.closing or transport.is_close_frame_sent or transport.is_disconnected:
            raise ConnectionLostError(f"{self._label}: connection is closing")

    async def begin_close(self, code: int = 1000, reason: str = "") -> None:
        """Send our close frame and return; the receiver keeps reading until the peer's close frame, so
        every frame the peer sent before it saw ours is still delivered."""
        transport = self._transport
        if self._inbox.closing or transport.is_close_frame_sent or transport.is_disconnected:
            return
        self._inbox.closing = True
        transport.send_close(picows.WSCloseCode(code), reason.encode()[:_MAX_REASON_BYTES])

    async def abort(self) -> None:
        """Close at once, without waiting for the peer's answer. Safe to call repeatedly and from any task."""
        transport = self._transport
        inbox = self._inbox
        if not transport.is_disconnected:
            inbox.closing = True
            if not transport.is_close_frame_sent:
                transport.send_close(picows.WSCloseCode.OK)  # a courtesy: the peer learns it was on purpose
            transport.disconnect()  # flushes what is buffered (that close frame), then closes the socket
        await self._settle()
        inbox.end(PeerClosedError(f"{self._label}: connection lost", code=None))

    async def _settle(self) -> None:
        """Wait (briefly) until the socket is closed. picows re-raises here a failure it detected itself (a
        protocol violation, already reported as our error by `receive()`); awaiting it keeps asyncio from
        logging it as never retrieved."""
        self._settled = True
        try:
            async with asyncio.timeout(_ABORT_WAIT):
                await self._transport.wait_disconnected()
        except TimeoutError:
            self._transport.disconnect(graceful=False)  # the peer is not reading: drop what is buffered
        except Exception:  # noqa: S110 - what picows re-raises is already in our error, see above
            pass


async def open_websocket(
    url: str,
    headers: Mapping[str, str],
    *,
    label: str,
    tls: TlsPolicy,
    handshake_timeout: float,
    max_frame: int,
    scrubber: Scrubber,
) -> WebSocket:
    """Open a WebSocket (`handshake_timeout` bounds the TCP connect, TLS and the upgrade together).
    Protocol-level pings and close frames are handled by `WebSocket`, so that every frame counts as
    a sign of life and a graceful close can drain. `scrubber` hides the stream's secrets in what the
    server says (a close reason)."""
    tls.before_connect(url, label)
    inbox = _Inbox(label, max_frame, scrubber)
    dialer = Dialer()
    try:
        with _converted_ws(label):
            async with asyncio.timeout(handshake_timeout):
                transport, _ = await picows.ws_connect(
                    lambda: inbox,
                    url,
                    socket_factory=dialer.connect,
                    ssl_context=tls.context() if uses_tls(url) else None,
                    websocket_handshake_timeout=handshake_timeout,
                    enable_auto_pong=False,  # `_Inbox` answers pings, so each counts as a sign of life
                    max_frame_size=max_frame,
                    # picows' 16 KiB default is held by every idle stream; the buffer doubles itself
                    # whenever a read fills it, so a flood still gets large reads.
                    read_buffer_init_size=_READ_BUFFER_INITIAL,
                    extra_headers=dict(headers) or None,
                    max_redirects=0,  # a redirect is a refusal with its status, as with aiohttp
                    logger_name=_PICOWS_LOG,
                )
    except BaseException:
        # Cancelled or failed: a handshake that completes after this must not leave an orphan socket,
        # and one that never completes (the server does not answer the upgrade) must not keep it open
        # either: picows does not close its socket when the wait for the upgrade's answer is cancelled.
        inbox.abandon()
        dialer.drop()
        raise
    if inbox.transport is None:  # the socket closed before the upgrade was answered
        raise ConnectionLostError(f"{label}: closed during the WebSocket handshake")
    # Frames that came with the upgrade's answer (even a close, say a lapsed listenKey's 4001) are
    # already in the inbox: `receive()` hands them over in order.
    return WebSocket(transport, inbox, label=label)
