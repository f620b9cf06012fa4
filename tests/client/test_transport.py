"""client/transport.py: every third-party failure becomes one of our errors, with a message that names the
target by its label and shows nothing else; and the WebSocket half (picows) hands over every frame in order,
answers pings, reassembles fragments within bounds, keeps backpressure, and closes as RFC 6455 asks.

The express handler (frames taken in picows' callback) is tested here too, with the connection that uses it.
The WebSocket tests run against a scripted server (asyncio streams and hand-made frames), so every byte
the client sees, and every byte it sends back, is the test's to choose and check."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging
import os
import re
import socket
import struct
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import msgspec
import pytest
from aiohttp import web

from support.examples import BITMUSA_WALLET_EVENT
from userstream.client.connection import Connection, ConnectionCounters
from userstream.client.rest import HttpReply, check_url
from userstream.client.scrub import Scrubber
from userstream.client.transport import Transport
from userstream.client.websocket import (
    INBOX_HIGH_WATER,
    INBOX_HIGH_WATER_BYTES,
    SIGN_OF_LIFE,
    HandshakeRejectedError,
    PeerClosedError,
)
from userstream.errors import ConfigurationError, ConnectionLostError, FrameDecodeError, TransportError
from userstream.events import Event
from userstream.protocol import bitmusa, bitmusa_listen_key, bitmusa_render
from userstream.protocol.bitmusa_client import BitmusaClientSession


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


REQUEST = bitmusa_listen_key.create_listen_key_request(
    bitmusa_listen_key.Credentials(api_key="k-SECRET", auth_key="a-SECRET")
)


async def test_a_refused_connection_is_a_connection_lost_error_named_by_its_label() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with Transport() as transport:
        with pytest.raises(ConnectionLostError) as raised:
            await transport.request(url, REQUEST, label="POST somewhere")
    assert str(raised.value).startswith("POST somewhere: cannot connect (")
    assert "SECRET" not in str(raised.value)


async def test_replies_of_any_status_are_replies_and_bodies_are_bounded() -> None:
    async def ok(request: web.Request) -> web.Response:
        assert request.headers["x-api-key"] == "k-SECRET"
        return web.Response(status=418, body=b'{"code":1}')

    async def huge(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 5000)

    app = web.Application()
    app.router.add_post("/spot/userDataStream", ok)
    app.router.add_get("/huge", huge)
    runner, url = await serve(app)
    try:
        async with Transport(max_frame=4096) as transport:
            assert await transport.request(url, REQUEST, label="POST") == HttpReply(418, b'{"code":1}')
            oversized = bitmusa_listen_key.HttpRequest("GET", "/huge", {})
            with pytest.raises(FrameDecodeError, match="GET /huge: reply larger than 4096 bytes"):
                await transport.request(url, oversized, label="GET /huge")
    finally:
        await runner.cleanup()


async def test_a_refused_websocket_handshake_carries_its_status_not_the_url() -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/ws/spot/{key}", refuse)
    runner, url = await serve(app)
    try:
        async with Transport() as transport:
            with pytest.raises(HandshakeRejectedError) as raised:
                await transport.websocket(
                    url.replace("http", "ws") + "/ws/spot/FULLKEY-SECRET",
                    {},
                    label="ws://x/ws/spot/FULLKE...",
                )
    finally:
        await runner.cleanup()
    assert raised.value.status == 404
    assert str(raised.value) == "ws://x/ws/spot/FULLKE...: WebSocket handshake refused with HTTP 404"


async def test_a_closed_transport_refuses_to_work() -> None:
    transport = Transport()
    with pytest.raises(TransportError, match="not open"):
        await transport.request("http://127.0.0.1:1", REQUEST, label="POST")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "ftp://example.com",
            "the REST URL must be an absolute https:// or http:// URL, not 'ftp://example.com'",
        ),
        ("/relative", "the REST URL must be an absolute https:// or http:// URL, not '/relative'"),
    ],
)
def test_check_url(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        check_url(url, ("https", "http"), "the REST URL")
    assert str(raised.value) == message
    assert check_url("http://127.0.0.1:8765", ("https", "http"), "x").port == 8765


# --- the WebSocket half, against a scripted server ---------------------------------------------------------

WAIT = 10.0
TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(opcode: int, payload: bytes | str, *, fin: bool = True) -> bytes:
    """One unmasked server frame (RFC 6455 section 5.2)."""
    data = payload.encode() if isinstance(payload, str) else payload
    first = (0x80 if fin else 0) | opcode
    size = len(data)
    if size < 126:
        return bytes((first, size)) + data
    if size < 1 << 16:
        return bytes((first, 126)) + size.to_bytes(2, "big") + data
    return bytes((first, 127)) + size.to_bytes(8, "big") + data


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(CLOSE, struct.pack("!H", code) + reason.encode())


class Peer:
    """The server's end of one accepted WebSocket: the upgrade request it got, and the client's frames."""

    def __init__(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.head = head
        self.reader = reader
        self.writer = writer

    async def client_frame(self) -> tuple[int, bytes]:
        """The client's next frame (opcode, unmasked payload)."""
        async with asyncio.timeout(WAIT):
            first, second = await self.reader.readexactly(2)
            size = second & 0x7F
            if size == 126:
                size = int.from_bytes(await self.reader.readexactly(2), "big")
            elif size == 127:
                size = int.from_bytes(await self.reader.readexactly(8), "big")
            assert second & 0x80, "client frames are masked"
            mask = await self.reader.readexactly(4)
            masked = await self.reader.readexactly(size)
        return first & 0x0F, bytes(byte ^ mask[index % 4] for index, byte in enumerate(masked))

    async def closed_by_client(self) -> None:
        """Until the client has closed the TCP connection (what it sent before is skipped)."""
        async with asyncio.timeout(WAIT):
            while await self.reader.read(1 << 16):
                pass


class ScriptedServer:
    """Accepts WebSocket upgrades and answers each with 101 followed by `script` (raw frames). With `hold`
    set, the answer waits until the event is set."""

    def __init__(self, script: bytes = b"", hold: asyncio.Event | None = None) -> None:
        self.script = script
        self.hold = hold
        self.peers: asyncio.Queue[Peer] = asyncio.Queue()
        self.writers: list[asyncio.StreamWriter] = []
        self.requests: asyncio.Queue[bytes] = asyncio.Queue()
        self.url = ""

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.put_nowait(head)
        if self.hold is not None:
            await self.hold.wait()
        found = re.search(rb"(?i)sec-websocket-key: *(\S+)", head)
        assert found is not None
        accept = base64.b64encode(hashlib.sha1(found.group(1) + _ACCEPT_GUID).digest())  # noqa: S324 - RFC 6455
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + self.script
        )
        self.peers.put_nowait(Peer(head, reader, writer))

    async def peer(self) -> Peer:
        async with asyncio.timeout(WAIT):
            return await self.peers.get()


@asynccontextmanager
async def scripted(script: bytes = b"", hold: asyncio.Event | None = None) -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer(script, hold)
    listener = await asyncio.start_server(server._accept, "127.0.0.1", 0)
    server.url = f"ws://127.0.0.1:{listener.sockets[0].getsockname()[1]}/ws/spot/KEY-SECRET"
    try:
        yield server
    finally:
        listener.close()
        for writer in server.writers:
            writer.close()
        await listener.wait_closed()


async def test_frames_arrive_in_order_pings_are_answered_and_a_close_frame_ends_with_its_code() -> None:
    script = (
        frame(TEXT, "a")
        + frame(BINARY, b"\x01\x02")
        + frame(PING, b"p")
        + frame(TEXT, "he", fin=False)
        + frame(PING, b"q")  # control frames may come between the fragments of a message
        + frame(CONTINUATION, "llo")
        + frame(PONG, b"")
        + close_frame(4001, "listenKey expired")
    )
    async with scripted(script) as server, Transport() as transport:
        ws = await transport.websocket(server.url, {"token": "t-SECRET"}, label="L")
        received = [await ws.receive() for _ in range(6)]
        with pytest.raises(PeerClosedError) as closed:
            await ws.receive()
        with pytest.raises(PeerClosedError) as again:  # and so on, for every later call
            await ws.receive()
        peer = await server.peer()
        answers = [await peer.client_frame() for _ in range(3)]
        await peer.closed_by_client()
    assert received == ["a", b"\x01\x02", SIGN_OF_LIFE, SIGN_OF_LIFE, "hello", SIGN_OF_LIFE]
    assert (closed.value.code, closed.value.reason) == (4001, "listenKey expired")
    assert str(closed.value) == "L: closed by the server with code 4001 'listenKey expired'"
    assert again.value is closed.value
    assert answers == [(PONG, b"p"), (PONG, b"q"), (CLOSE, struct.pack("!H", 4001))]  # the code echoed
    assert b"\r\ntoken: t-SECRET\r\n" in peer.head
    assert ws.closed


async def test_a_close_reason_that_echoes_a_secret_is_scrubbed_where_it_is_read() -> None:
    secret = "t-SECRET-0123456789"
    script = close_frame(4004, f"bad token {secret}")
    async with scripted(script) as server, Transport(scrubber=Scrubber((secret,))) as transport:
        ws = await transport.websocket(server.url, {"token": secret}, label="L")
        with pytest.raises(PeerClosedError) as closed:
            await ws.receive()
        assert ws.scrub(f"an error reply quoting {secret}") == "an error reply quoting <hidden>"
    assert (closed.value.code, closed.value.reason) == (4004, "bad token <hidden>")
    assert str(closed.value) == "L: closed by the server with code 4004 'bad token <hidden>'"


async def test_a_close_that_comes_with_the_upgrade_is_reported_by_receive_not_as_a_failed_handshake() -> None:
    script = frame(TEXT, "first") + close_frame(4002, "listenKey deleted")
    async with scripted(script) as server, Transport() as transport:
        ws = await transport.websocket(server.url, {}, label="L")
        assert await ws.receive() == "first"
        with pytest.raises(PeerClosedError) as closed:
            await ws.receive()
    assert closed.value.code == 4002


async def test_a_dropped_tcp_connection_is_a_peer_closed_error_without_a_code() -> None:
    async with scripted(frame(TEXT, "a")) as server, Transport() as transport:
        ws = await transport.websocket(server.url, {}, label="L")
        peer = await server.peer()
        assert await ws.receive() == "a"
        peer.writer.transport.abort()
        with pytest.raises(PeerClosedError) as lost:
            await ws.receive()
    assert lost.value.code is None
    assert str(lost.value) == "L: connection lost"


@pytest.mark.parametrize(
    ("script", "max_frame", "message", "close_code"),
    [
        (frame(TEXT, b"\xff\xfe"), 1 << 20, "L: a text frame is not UTF-8", 1007),
        (frame(BINARY, b"x" * 100), 64, "L: a frame exceeds the 64-byte limit", 1009),
        (
            frame(BINARY, b"x" * 40, fin=False) + frame(CONTINUATION, b"x" * 40),
            64,
            "L: a message exceeds the 64-byte limit",
            1009,
        ),
        (
            frame(TEXT, b"\xe2\x82", fin=False) + frame(CONTINUATION, b"!"),
            1 << 20,
            "L: a text message is not UTF-8",
            1007,
        ),
    ],
    ids=["invalid-utf8", "frame-too-large", "message-too-large", "fragmented-invalid-utf8"],
)
async def test_what_the_client_refuses_ends_the_connection_with_a_frame_decode_error_and_its_close_code(
    script: bytes, max_frame: int, message: str, close_code: int
) -> None:
    async with scripted(frame(TEXT, "ok") + script) as server, Transport(max_frame=max_frame) as transport:
        ws = await transport.websocket(server.url, {}, label="L")
        assert await ws.receive() == "ok"
        with pytest.raises(FrameDecodeError) as refused:
            await ws.receive()
        peer = await server.peer()
        opcode, payload = await peer.client_frame()
    assert str(refused.value) == message
    assert (opcode, payload[:2]) == (CLOSE, struct.pack("!H", close_code))


async def test_a_reader_that_stops_reading_pauses_the_socket_and_then_gets_every_frame_in_order() -> None:
    frames = [f"{index:06d}:" + "x" * 1000 for index in range(10_000)]  # ~10 MB: more than the kernel holds
    async with scripted(b"".join(frame(TEXT, text) for text in frames)) as server, Transport() as transport:
        ws = await transport.websocket(server.url, {}, label="L")
        peer = await server.peer()
        async with asyncio.timeout(WAIT):  # the server's kernel buffers fill: the client stopped reading
            while not peer.writer.transport.get_write_buffer_size():  # noqa: ASYNC110 - no signal for it
                await asyncio.sleep(0.01)
        assert ws.reading_paused
        held = ws.pending
        assert INBOX_HIGH_WATER <= held < 1000  # the high-water mark plus at most one read's frames
        received = [await ws.receive() for _ in frames]
        assert not ws.reading_paused
    assert received == frames


async def test_large_frames_pause_the_socket_at_the_byte_mark_long_before_the_frame_mark() -> None:
    # 100,000-character frames: 256 of them waiting would be 25 MB; the byte mark stops reading at 4 MiB.
    frames = [f"{index:06d}:" + "x" * 100_000 for index in range(300)]  # ~30 MB: more than the kernel holds
    async with scripted(b"".join(frame(TEXT, text) for text in frames)) as server, Transport() as transport:
        ws = await transport.websocket(server.url, {}, label="L")
        async with asyncio.timeout(WAIT):  # the client reads until the mark, then stops
            while not ws.reading_paused:  # noqa: ASYNC110 - no signal for it
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # nothing more arrives once paused
        held = ws.pending * len(frames[0])
        # + what the read in progress still carries: picows' read buffer grows with the data waiting, so on
        # a loaded machine one read can carry a few MiB; the frame mark alone would hold 256 frames (25 MB)
        assert INBOX_HIGH_WATER_BYTES <= held < INBOX_HIGH_WATER * len(frames[0]) // 2
        received = [await ws.receive() for _ in frames]
        assert not ws.reading_paused
    assert received == frames


async def test_a_graceful_close_still_delivers_what_the_server_sent_before_its_answer() -> None:
    async with scripted(frame(TEXT, "a")) as server, Transport() as transport:
        ws = await transport.websocket(server.url, {}, label="L")
        peer = await server.peer()
        await ws.begin_close(4000, "rotated")
        with pytest.raises(ConnectionLostError, match="L: connection is closing"):
            await ws.send_text("too late")
        assert await peer.client_frame() == (CLOSE, struct.pack("!H", 4000) + b"rotated")
        peer.writer.write(frame(TEXT, "sent before the close was seen") + close_frame(4000))
        received = [await ws.receive(), await ws.receive()]
        with pytest.raises(PeerClosedError) as closed:
            await ws.receive()
    assert received == ["a", "sent before the close was seen"]
    assert closed.value.code == 4000


async def test_abort_closes_at_once_with_a_close_frame_and_ends_the_reader() -> None:
    async with scripted() as server, Transport() as transport:
        ws = await transport.websocket(server.url, {}, label="L")
        peer = await server.peer()
        await ws.send_text('{"event":"sub"}')
        await ws.ping(b"beat")
        await ws.abort()
        await ws.abort()  # idempotent
        with pytest.raises(PeerClosedError, match="L: connection lost"):
            await ws.receive()
        sent = [await peer.client_frame() for _ in range(3)]
        await peer.closed_by_client()
    assert sent == [(TEXT, b'{"event":"sub"}'), (PING, b"beat"), (CLOSE, struct.pack("!H", 1000))]
    assert ws.closed


async def test_a_cancelled_connect_leaves_no_socket_open_even_if_the_upgrade_is_answered_later() -> None:
    hold = asyncio.Event()
    async with scripted(frame(TEXT, "nobody will read this"), hold=hold) as server, Transport() as transport:
        connecting = asyncio.create_task(transport.websocket(server.url, {}, label="L"))
        async with asyncio.timeout(WAIT):
            await server.requests.get()  # the upgrade request is at the server
        connecting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await connecting
        hold.set()  # now the server says yes
        peer = await server.peer()
        await peer.closed_by_client()  # and the client, which gave up, closes the socket


async def test_a_connect_cancelled_while_the_upgrade_goes_unanswered_closes_its_socket_at_once() -> None:
    """picows keeps the socket of a handshake whose wait is cancelled until its handshake timeout (here a
    minute), or for good if the event loop ends first: a stream closed mid-connect (or a bot reconnecting
    forever against a server that accepts and never answers) would leave a descriptor behind each time."""
    requests: asyncio.Queue[bytes] = asyncio.Queue()
    ends: asyncio.Queue[bytes] = asyncio.Queue()
    writers: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        requests.put_nowait(await reader.readuntil(b"\r\n\r\n"))
        ends.put_nowait(await reader.read(1 << 16))  # b"": the client closed its side

    listener = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{listener.sockets[0].getsockname()[1]}/ws/spot/KEY-SECRET"
    descriptors = len(os.listdir("/proc/self/fd"))
    try:
        async with Transport(request_timeout=60.0) as transport:
            for _ in range(3):
                connecting = asyncio.create_task(transport.websocket(url, {}, label="L"))
                async with asyncio.timeout(WAIT):
                    head = await requests.get()  # the upgrade request is at the server, unanswered
                assert head.startswith(b"GET /ws/spot/KEY-SECRET HTTP/1.1\r\n")
                connecting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await connecting
                async with asyncio.timeout(WAIT):  # long before picows' own handshake timeout
                    assert await ends.get() == b""
            for writer in writers:  # the server's ends of the three connections
                writer.close()
                await writer.wait_closed()
            await asyncio.sleep(0.05)  # the transports' own close callbacks
            assert len(os.listdir("/proc/self/fd")) == descriptors
    finally:
        listener.close()
        await listener.wait_closed()


@pytest.mark.parametrize("status", [401, 403, 429, 503])
async def test_a_refused_handshake_keeps_its_status_so_a_rejected_credential_is_told_from_trouble(
    status: int,
) -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=status, text='{"code":401001}')

    app = web.Application()
    app.router.add_get("/spotws_user/userData/ws", refuse)
    runner, url = await serve(app)
    try:
        async with Transport() as transport:
            with pytest.raises(HandshakeRejectedError) as raised:
                await transport.websocket(
                    url.replace("http", "ws") + "/spotws_user/userData/ws", {}, label="L"
                )
    finally:
        await runner.cleanup()
    assert raised.value.status == status
    assert str(raised.value) == f"L: WebSocket handshake refused with HTTP {status}"


async def test_nothing_a_handshake_carries_reaches_a_log_even_at_the_lowest_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(1)  # everything, including picows' level-9 wire dumps if they were let through
    async with scripted(frame(TEXT, "a")) as server, Transport() as transport:
        ws = await transport.websocket(server.url, {"token": "t-SECRET"}, label="L")
        await ws.send_text('{"event":"sub","token":"t-SECRET"}')
        assert await ws.receive() == "a"
        await ws.abort()
    assert caplog.records  # picows did log (its connection lines, at DEBUG)
    assert all(record.levelno >= logging.DEBUG for record in caplog.records)
    assert "SECRET" not in caplog.text


async def test_a_refused_websocket_connection_is_a_connection_lost_error() -> None:
    async with Transport() as transport:
        with pytest.raises(ConnectionLostError) as raised:
            await transport.websocket(f"ws://127.0.0.1:{free_port()}/ws/spot/KEY-SECRET", {}, label="L")
    assert str(raised.value).startswith("L: cannot connect (")
    assert "SECRET" not in str(raised.value)


async def test_a_closed_transport_opens_no_websocket() -> None:
    with pytest.raises(TransportError, match="not open"):
        await Transport().websocket("ws://127.0.0.1:1/", {}, label="L")


# --- the express handler: frames taken in picows' callback, the rest left to receive(), in order ---------


async def test_express_is_offered_a_frame_only_when_nothing_is_queued_ahead_of_it() -> None:
    offered: list[str | bytes] = []

    def express(message: str | bytes) -> bool:
        offered.append(message)
        return message != "refused"  # takes everything but this one

    first = (
        frame(TEXT, "a") + frame(BINARY, b"b") + frame(TEXT, "refused") + frame(TEXT, "c") + frame(PING, b"")
    )
    async with scripted() as server, Transport() as transport:
        ws = await transport.websocket(server.url, {}, label="L")
        ws.set_express(express)
        peer = await server.peer()
        peer.writer.write(first)
        # "refused" is queued, so "c" (and the ping's sign of life) queue behind it, not offered
        received = [await ws.receive() for _ in range(3)]
        peer.writer.write(frame(TEXT, "d") + frame(TEXT, "e"))  # nothing queued now: offered again
        async with asyncio.timeout(WAIT):
            while len(offered) < 5:  # noqa: ASYNC110 - the handler is the only signal
                await asyncio.sleep(0.001)
        ws.set_express(None)
        peer.writer.write(frame(TEXT, "f"))
        last = await ws.receive()
    assert offered == ["a", b"b", "refused", "d", "e"]
    assert received == ["refused", "c", SIGN_OF_LIFE]
    assert last == "f"
    assert ws.pending == 0


async def test_an_express_handler_that_raises_is_switched_off_loudly_and_loses_no_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str | bytes] = []

    def broken(message: str | bytes) -> bool:
        calls.append(message)
        raise RuntimeError("a bug")

    async with scripted() as server, Transport() as transport:
        ws = await transport.websocket(server.url, {}, label="L")
        ws.set_express(broken)
        peer = await server.peer()
        peer.writer.write(frame(TEXT, "a") + frame(TEXT, "b"))
        received = [await ws.receive() for _ in range(2)]
        peer.writer.write(frame(TEXT, "c"))  # nothing queued: it would be offered, but the handler is off
        received.append(await ws.receive())
    assert calls == ["a"]
    assert received == ["a", "b", "c"]
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert [record.getMessage() for record in errors] == [
        "L: the express frame handler raised; frames go through receive() now"
    ]
    assert errors[0].exc_info is not None
    assert errors[0].exc_info[0] is RuntimeError


def _wallet_frame(event_time: int) -> bytes:
    """The document's wallet frame, stamped `event_time` (what the sink below tells frames apart by)."""
    return frame(
        TEXT, bitmusa_render.render_event(msgspec.structs.replace(BITMUSA_WALLET_EVENT, timestamp=event_time))
    )


async def test_a_connection_takes_no_frame_by_the_express_path_while_an_earlier_one_is_still_handled() -> (
    None
):
    """client/connection.py's use of the express handler: frame 1 waits for the sink (say, for room in the
    queue); frames 2 and 3, arriving meanwhile, must reach the sink after it, even when the sink's no-wait
    door would take them at once."""
    log: list[tuple[str, int]] = []
    gate = asyncio.Event()

    def sink_now(connection: Connection, events: Sequence[Event]) -> bool:
        log.append(("now", events[0].timestamp))
        return events[0].timestamp != 1

    async def sink(connection: Connection, events: Sequence[Event]) -> None:
        log.append(("wait", events[0].timestamp))
        await gate.wait()
        log.append(("done", events[0].timestamp))

    async with scripted() as server, Transport() as transport:
        ws = await transport.websocket(server.url, {}, label="L")
        connection = Connection(
            serial=1,
            ws=ws,
            new_session=functools.partial(BitmusaClientSession, bitmusa.Parser("a")),
            sink=sink,
            sink_now=sink_now,
            ping_interval=60.0,
            idle_timeout=60.0,
            close_timeout=1.0,
            counters=ConnectionCounters(),
        )
        reader = asyncio.create_task(connection.run())
        peer = await server.peer()
        peer.writer.write(_wallet_frame(1))
        async with asyncio.timeout(WAIT):
            while ("wait", 1) not in log:  # noqa: ASYNC110 - the sink is the only signal
                await asyncio.sleep(0.001)
            peer.writer.write(_wallet_frame(2) + _wallet_frame(3))
            while ws.pending < 2:  # noqa: ASYNC110 - queued for the reader, not taken by express
                await asyncio.sleep(0.001)
        gate.set()
        async with asyncio.timeout(WAIT):
            while ("now", 3) not in log:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            peer.writer.write(_wallet_frame(4))  # nothing is handled or queued now: the express path
            while ("now", 4) not in log:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
        peer.writer.write(close_frame(1000))
        async with asyncio.timeout(WAIT):
            ending = await reader
    # frame 1: refused by the express path, then by the reader's no-wait door, then the reader waits
    assert log == [("now", 1), ("now", 1), ("wait", 1), ("done", 1), ("now", 2), ("now", 3), ("now", 4)]
    assert isinstance(ending, PeerClosedError)
    assert ending.code == 1000
