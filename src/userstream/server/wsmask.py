"""RFC 6455 section 5.1 on serve's WebSockets: a client frame that is not masked closes the connection, 1002.

aiohttp's reader accepts unmasked client frames. This module owns `MaskScanner`, a sans-I/O walk over the
frame headers of a client's byte stream (it reads each header's mask bit and length and skips the payload;
it decodes nothing), and `MaskedOnlyWebSocketResponse`, aiohttp's server WebSocket with the scanner in
front of its reader: the bytes before the first unmasked frame are read as usual, and that frame ends the
stream with WebSocketError(1002), which aiohttp answers with a close frame of code 1002 (protocol error)
as it does 1009 for an oversized frame. Nothing of an unmasked frame reaches the application.

The response hooks aiohttp's `_post_start` and its request handler's payload parser: internal names of
aiohttp 3.x, checked by tests/security/test_serve_limits.py with a raw socket sending an unmasked frame.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, web
from aiohttp.http_websocket import WebSocketError

__all__ = ["MaskScanner", "MaskedOnlyWebSocketResponse"]

_UNMASKED = "client frames must be masked (RFC 6455 section 5.1)"


class MaskScanner:
    """Follows frame boundaries in a client's byte stream; `feed` says where the first unmasked frame
    starts. Frames are read one after another, whatever their opcode or size."""

    __slots__ = ("_fed", "_header", "_skip", "violated", "violation_at")

    def __init__(self) -> None:
        self._header = bytearray()  # the bytes of an unfinished frame header
        self._skip = 0  # payload bytes (and mask key) of the current frame still to pass
        self._fed = 0  # bytes taken before the current `feed`
        self.violated = False
        self.violation_at: int | None = None  # where the unmasked frame starts, from the stream's start

    def feed(self, data: bytes) -> int | None:
        """Take the next bytes; return the offset in `data` where an unmasked frame starts (0 when it
        started in earlier bytes), or None."""
        if self.violated:
            return 0
        fed, self._fed = self._fed, self._fed + len(data)
        position, size = 0, len(data)
        while position < size:
            if self._skip:
                step = min(self._skip, size - position)
                self._skip -= step
                position += step
                continue
            start = position - len(self._header)
            self._header += data[position : position + 14 - len(self._header)]
            consumed = self._parse_header()
            if consumed is None:  # the header goes on in the next bytes
                return None
            if consumed < 0:
                self.violated = True
                self.violation_at = fed + start
                return max(0, start)
            position = start + consumed
        return None

    def _parse_header(self) -> int | None:
        """The header's length with what follows it skipped, -1 if unmasked, None if incomplete."""
        header = self._header
        if len(header) < 2:
            return None
        masked = header[1] & 0x80
        length = header[1] & 0x7F
        needed = 2 + (2 if length == 126 else 8 if length == 127 else 0)
        if len(header) < needed:
            return None
        if not masked:
            return -1
        if length == 126:
            length = int.from_bytes(header[2:4], "big")
        elif length == 127:
            length = int.from_bytes(header[2:10], "big")
        self._header = bytearray()
        self._skip = 4 + length  # the mask key, then the payload
        return needed


class _MaskCheckingParser:
    """Stands in for aiohttp's WebSocket reader on the request handler: scans, then hands bytes on."""

    __slots__ = ("_queue", "_reader", "_scanner")

    def __init__(self, reader: Any, queue: Any) -> None:
        self._reader = reader
        self._queue = queue
        self._scanner = MaskScanner()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._scanner.violated:
            return True, b""
        offset = self._scanner.feed(bytes(data))
        if offset is None:
            result: tuple[bool, bytes] = self._reader.feed_data(data)
            return result
        if offset:
            eof, tail = self._reader.feed_data(data[:offset])
            if eof:
                return eof, tail
        self._queue.set_exception(WebSocketError(WSCloseCode.PROTOCOL_ERROR, _UNMASKED))
        return True, b""

    def feed_eof(self) -> None:
        self._reader.feed_eof()


_log = logging.getLogger("userstream.server")
_unchecked_warned = False


def _warn_unchecked() -> None:
    """Once per process: this aiohttp lacks the internals the check hooks, so unmasked frames pass."""
    global _unchecked_warned  # noqa: PLW0603 - one warning per process, not per connection
    if not _unchecked_warned:
        _unchecked_warned = True
        _log.warning(
            "unmasked client frames cannot be refused with this aiohttp (%s): RFC 6455's 1002 is not sent",
            aiohttp.__version__,
        )


class MaskedOnlyWebSocketResponse(web.WebSocketResponse):
    """A server WebSocket that closes with 1002 on the first unmasked client frame."""

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        handler: Any = request.protocol
        early = getattr(handler, "_message_tail", b"")  # bytes that came with the handshake
        if early:
            handler._message_tail = b""
        super()._post_start(request, protocol, writer)
        reader = getattr(handler, "_payload_parser", None)
        queue = getattr(self, "_reader", None)
        if reader is None or queue is None:  # another aiohttp: leave its reader as it is, and say so
            _warn_unchecked()
            if early:
                handler.data_received(early)
            return
        parser = _MaskCheckingParser(reader, queue)
        handler._payload_parser = parser
        if early:
            eof, _ = parser.feed_data(early)
            if eof:
                handler.close()
