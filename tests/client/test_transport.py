"""client/transport.py: every third-party failure becomes one of our errors, with a message that names the
target by its label and shows nothing else."""

from __future__ import annotations

import socket

import pytest
from aiohttp import web

from userstream.client.transport import HandshakeRejectedError, HttpReply, Transport, check_url
from userstream.errors import ConfigurationError, ConnectionLostError, FrameDecodeError, TransportError
from userstream.protocol import bitmusa


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


REQUEST = bitmusa.create_listen_key_request(bitmusa.Credentials(api_key="k-SECRET", auth_key="a-SECRET"))


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
            oversized = bitmusa.HttpRequest("GET", "/huge", {})
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
