"""The client on Coinlocally: against the real emulator (delivery, heartbeat, SYSTEM close, dead and rejected
connections), and against a scripted peer for what the emulator never does (pinging the client, refusing a
sub, answering control replies in gzip)."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from userstream.client import State, connect
from userstream.errors import AuthenticationError, ConfigurationError

Env = Any  # conftest.Env
Lab = Callable[..., AbstractAsyncContextManager[Any]]
Recorder = Any  # conftest.Recorder

COINLOCALLY = "coinlocally"
WS_PATH = "/spotws_user/userData/ws"


@pytest.mark.parametrize("credential", ["token", "api_key"])
async def test_events_are_delivered_exactly_and_in_order(
    lab: Lab, recorder: Recorder, credential: str
) -> None:
    async with lab() as env:
        options = env.options(COINLOCALLY)
        if credential == "api_key":
            options.update(token=None, api_key=env.alice.coinlocally_api_key)
        async with connect(COINLOCALLY, **options, on_status=recorder) as stream:
            await env.until_streaming()
            await env.ingest([env.order(1), env.balance(2), env.balance(3, asset="BTC"), env.order(4)])
            events = await env.take(stream, 4)
    assert events == [
        env.expected_order(1, COINLOCALLY),
        env.expected_balance(2, COINLOCALLY),
        env.expected_balance(3, COINLOCALLY, asset="BTC"),
        env.expected_order(4, COINLOCALLY),
    ]
    assert recorder.states() == ["connecting", "connected", "subscribed"]


async def test_pings_keep_the_connection_past_the_servers_heartbeat_timeout(
    lab: Lab, recorder: Recorder
) -> None:
    async with (
        lab(heartbeat_timeout=0.3) as env,
        connect(COINLOCALLY, **env.options(COINLOCALLY, ping_interval=0.1), on_status=recorder) as stream,
    ):
        await env.until_streaming()
        # Twelve pings span more than a second: the server would have closed a silent client 3 times over.
        await env.until(lambda: stream.stats.pings_sent >= 12)
        await env.ingest([env.balance(1)])
        events = await env.take(stream, 1)
    assert events == [env.expected_balance(1, COINLOCALLY)]
    assert recorder.states() == ["connecting", "connected", "subscribed"]
    assert stream.stats.connections == 1


async def test_the_system_close_notice_leads_to_a_reconnect(lab: Lab, recorder: Recorder) -> None:
    async with lab() as env, connect(COINLOCALLY, **env.options(COINLOCALLY), on_status=recorder) as stream:
        await env.until_streaming()
        await env.ingest([env.balance(1)])
        assert await env.take(stream, 1) == [env.expected_balance(1, COINLOCALLY)]
        assert await env.server.system_close("alice") == 1
        await recorder.wait_for(State.SUBSCRIBED, 2)
        await env.until_streaming()
        await env.ingest([env.balance(2), env.order(3)])
        events = await env.take(stream, 2)
    assert events == [env.expected_balance(2, COINLOCALLY), env.expected_order(3, COINLOCALLY)]
    disconnected = recorder.of(State.DISCONNECTED)
    assert [(status.connection, status.reason) for status in disconnected] == [
        (1, f"{env.coinlocally_url}: the server announced a close (SYSTEM notice)")
    ]
    assert recorder.states() == [
        "connecting",
        "connected",
        "subscribed",
        "disconnected",
        "reconnecting",
        "connecting",
        "connected",
        "subscribed",
    ]


async def test_a_silent_server_is_declared_dead_and_replaced(lab: Lab, recorder: Recorder) -> None:
    options = {"ping_interval": 0.1, "idle_timeout": 0.5}
    async with (
        lab() as env,
        connect(COINLOCALLY, **env.options(COINLOCALLY, **options), on_status=recorder) as stream,
    ):
        await env.until_streaming()
        assert await env.server.stall("alice") == 1
        disconnected = await recorder.wait_for(State.DISCONNECTED)
        await recorder.wait_for(State.SUBSCRIBED, 2)
        await env.until_streaming()
        await env.ingest([env.balance(5)])
        events = await env.take(stream, 1)
    assert disconnected.reason == f"{env.coinlocally_url}: no frame for 0.5s; connection presumed dead"
    assert events == [env.expected_balance(5, COINLOCALLY)]


@pytest.mark.parametrize(
    ("credential", "rejected"), [("token", "token header"), ("api_key", "api-key header")]
)
async def test_a_rejected_credential_stops_after_three_attempts(
    lab: Lab, recorder: Recorder, credential: str, rejected: str
) -> None:
    async with lab() as env:
        options = {**env.options(COINLOCALLY), "token": None, credential: "wrong-SECRET"}
        async with connect(COINLOCALLY, **options, on_status=recorder) as stream:
            with pytest.raises(AuthenticationError) as raised:
                async with asyncio.timeout(10):
                    await anext(stream)
            assert stream.running is False
            handshakes = env.access.count("GET", WS_PATH)
            refused = env.access.count("GET", WS_PATH, 401)
    assert (handshakes, refused) == (3, 3)
    header = rejected.removesuffix(" header")
    # issue 12: the reason names the URL tried (host and path) besides the HTTP status
    assert str(raised.value) == f"{env.coinlocally_url}: Coinlocally refused the {header!r} header (HTTP 401)"
    assert raised.value.rejected == rejected
    assert recorder.states()[-1] == "fatal"
    assert len(recorder.of(State.CONNECTING)) == 3


async def test_bad_arguments_are_refused(lab: Lab) -> None:
    async with lab() as env:
        with pytest.raises(ConfigurationError, match="exactly one credential"):
            connect(COINLOCALLY, **env.options(COINLOCALLY, api_key="both"))
        with pytest.raises(ConfigurationError, match="not an auth_key"):
            connect(COINLOCALLY, **env.options(COINLOCALLY, auth_key="x"))
        with pytest.raises(ConfigurationError, match="no REST endpoint"):
            connect(COINLOCALLY, **env.options(COINLOCALLY, rest_url="http://127.0.0.1"))
        with pytest.raises(ConfigurationError, match="unknown exchange 'binance'"):
            connect("binance", token="x")


# --- a scripted peer, for behaviour the emulator never shows ----------------------------------------------


class ScriptedPeer:
    """A Coinlocally-like WebSocket server whose every connection runs `script(ws, frames)`.

    `frames` is an asyncio.Queue of what the client sent (text), so the script can wait for the sub or a
    pong. When the script returns without closing, the connection stays open until the client leaves.
    This is a fake *exchange*, not a stand-in for any of our own code.
    """

    def __init__(self, script: Callable[[web.WebSocketResponse, asyncio.Queue[str]], Any]) -> None:
        self.script = script
        self.connections = 0
        self.received: list[str] = []

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        self.connections += 1
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        frames: asyncio.Queue[str] = asyncio.Queue()

        async def read() -> None:
            async for message in ws:
                if isinstance(message.data, str):
                    self.received.append(message.data)
                    frames.put_nowait(message.data)

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(read())  # ends when the client leaves (or the script closes)
            await self.script(ws, frames)
        return ws


@asynccontextmanager
async def scripted(script: Callable[..., Any]) -> AsyncIterator[tuple[ScriptedPeer, str]]:
    peer = ScriptedPeer(script)
    app = web.Application()
    app.router.add_get(WS_PATH, peer.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield peer, f"ws://127.0.0.1:{port}{WS_PATH}"
    finally:
        await runner.cleanup()


def gz(text: str) -> bytes:
    return gzip.compress(text.encode())


async def test_server_pings_are_answered_and_gzip_control_replies_accepted(recorder: Recorder) -> None:
    pongs: list[str] = []

    async def script(ws: web.WebSocketResponse, frames: asyncio.Queue[str]) -> None:
        await ws.send_bytes(gz('"connect success"'))
        assert json.loads(await frames.get()) == {"event": "sub", "token": "tok-SECRET"}
        await ws.send_bytes(gz("sub success"))
        await ws.send_str('{"ping": 1713338308232}')
        await ws.send_bytes(gz('{"ping": 1713338308233}'))
        while len(pongs) < 2:
            frame = await frames.get()
            if "pong" in frame:
                pongs.append(frame)
        await ws.send_bytes(gz('{"e":"outboundAccountPosition","E":1564034571105,"u":1,"B":[]}'))
        await ws.send_bytes(
            gz('{"e":"outboundAccountPosition","E":1564034571105,"u":1,"B":[{"a":"ETH","f":"1","l":"0"}]}')
        )

    async with (
        scripted(script) as (_peer, url),
        connect(COINLOCALLY, token="tok-SECRET", ws_url=url, on_status=recorder) as stream,
    ):
        async with asyncio.timeout(10):
            event = await anext(stream)
    assert pongs == ['{"pong":1713338308232}', '{"pong":1713338308233}']
    assert (event.asset, event.timestamp) == ("ETH", 1564034571105)  # type: ignore[union-attr]
    assert stream.stats.pings_answered == 2
    assert recorder.states() == ["connecting", "connected", "subscribed"]


async def test_a_refused_sub_is_fatal_after_three_attempts_and_the_secret_is_scrubbed(
    recorder: Recorder,
) -> None:
    async def script(ws: web.WebSocketResponse, frames: asyncio.Queue[str]) -> None:
        await ws.send_str("connect success")
        await frames.get()
        # A careless exchange echoes the refused token; the client must not repeat it.
        await ws.send_bytes(gz('{"event":"error","code":401002,"message":"bad token tok-SECRET"}'))
        await ws.close(code=4004, message=b"sub rejected")

    async with scripted(script) as (peer, url):
        options = {"backoff_base": 0.01, "backoff_cap": 0.02}
        async with connect(
            COINLOCALLY, token="tok-SECRET", ws_url=url, on_status=recorder, **options
        ) as stream:
            with pytest.raises(AuthenticationError) as raised:
                async with asyncio.timeout(10):
                    await anext(stream)
    assert peer.connections == 3
    assert raised.value.rejected == "sub token"
    assert str(raised.value) == (
        f"{url}: Coinlocally refused the sub frame's token (error code 401002): bad token <hidden>"
    )
    assert all("tok-SECRET" not in (status.reason or "") for status in recorder.statuses)


async def test_no_sub_success_within_the_timeout_is_a_retry(recorder: Recorder) -> None:
    async def script(ws: web.WebSocketResponse, frames: asyncio.Queue[str]) -> None:
        await ws.send_str("connect success")  # and never answers the sub

    async with scripted(script) as (_peer, url):
        options = {"backoff_base": 0.01, "backoff_cap": 0.02, "sub_timeout": 0.2}
        async with connect(COINLOCALLY, token="t", ws_url=url, on_status=recorder, **options):
            second = await recorder.wait_for(State.CONNECTING, 2)
    failed = recorder.of(State.RECONNECTING)[0]
    assert failed.reason == f"{url}: no 'sub success' within 0.2s"
    assert second.attempt == 2
    assert State.SUBSCRIBED not in [status.state for status in recorder.statuses]
