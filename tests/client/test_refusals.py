"""Refusals in any shape, URLs written either way, and a misconfiguration that says so (issue 12, sections 2
and 3): the client against scripted exchanges that answer in shapes our emulator does not produce, and against
the real `userstream serve` for URL forms and wrong URLs; `watch` as a subprocess for the exit-2 paths."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from support.peers import served
from support.processes import finish, userstream
from userstream.client import State, connect
from userstream.errors import AuthenticationError, ConfigurationError
from userstream.events import BalanceUpdate

Lab = Callable[..., AbstractAsyncContextManager[Any]]
Recorder = Any  # conftest.Recorder

WS_PATH = "/spotws_user/userData/ws"
LISTEN_KEY_PATH = "/spot/userDataStream"
TOKEN = "tok-SECRET"
API_KEY = "api-SECRET"
AUTH_KEY = "auth-SECRET"
FAST: dict[str, Any] = {"backoff_base": 0.01, "backoff_cap": 0.02, "sub_timeout": 2.0, "resync": False}
ACCOUNT_UPDATE = '{"e":"outboundAccountPosition","E":1564034571105,"u":1,"B":[{"a":"ETH","f":"1","l":"0"}]}'
WAIT = 10.0


# --- a scripted Coinlocally exchange ------------------------------------------------------------------------

Script = Callable[[int, web.Request], Awaitable[web.StreamResponse]]


class Exchange:
    """A tiny exchange whose every request to a routed path runs `script(n, request)` (n counts from 1 per
    route; a path ending in "{key}" matches any last segment); anything else is a plain 404. Helpers below
    build the usual WebSocket scripts. A fake *exchange*, not a stand-in for any code of ours."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.routes: dict[tuple[str, str], Script] = {}
        self.counts: dict[str, int] = {}
        self.base = ""

    def route(self, method: str, path: str, script: Script) -> None:
        self.routes[method, path] = script

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        for (method, path), script in self.routes.items():
            prefix = path.removesuffix("{key}")
            matched = request.path == path or (prefix != path and request.path.startswith(prefix))
            if method == request.method and matched:
                self.counts[path] = self.counts.get(path, 0) + 1
                return await script(self.counts[path], request)
        raise web.HTTPNotFound()


@asynccontextmanager
async def running(exchange: Exchange) -> AsyncIterator[Exchange]:
    async with served(exchange.app, shutdown_timeout=1.0) as address:
        exchange.base = address
        yield exchange


async def coinlocally_ws(
    request: web.Request, replies: list[str | bytes], close: int | None, reason: bytes = b""
) -> web.WebSocketResponse:
    """Upgrade, say "connect success", wait for the sub, send `replies`, then close with `close` (None:
    drop the TCP connection without a close frame; 0: stay open until the client leaves)."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str("connect success")
    message = await ws.receive()
    assert json.loads(message.data) == {"event": "sub", "token": TOKEN}
    for reply in replies:
        if isinstance(reply, bytes):
            await ws.send_bytes(reply)
        else:
            await ws.send_str(reply)
    if close is None:
        assert request.transport is not None
        request.transport.abort()
    elif close == 0:
        async for _ in ws:
            pass
    else:
        await ws.close(code=close, message=reason)
    return ws


def refusing(replies: list[str | bytes], close: int | None, reason: bytes = b"") -> Script:
    async def script(n: int, request: web.Request) -> web.StreamResponse:
        return await coinlocally_ws(request, replies, close, reason)

    return script


async def refused_sub(script: Script, recorder: Recorder) -> tuple[AuthenticationError, Exchange]:
    """Run a Coinlocally stream against `script`; the AuthenticationError it stops with."""
    async with running(Exchange()) as exchange:
        exchange.route("GET", WS_PATH, script)
        url = f"ws://{exchange.base}{WS_PATH}"
        async with connect("coinlocally", token=TOKEN, ws_url=url, on_status=recorder, **FAST) as stream:
            with pytest.raises(AuthenticationError) as raised:
                async with asyncio.timeout(WAIT):
                    await anext(stream)
    assert all(TOKEN not in (status.reason or "") for status in recorder.statuses)
    return raised.value, exchange


# --- Coinlocally: a refused sub in any shape ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("replies", "close", "reason", "shown"),
    [
        # the example: a JSON reply of the exchange's own shape, then a 4xxx close of its choosing
        (
            ['{"code":"10002","msg":"token invalid"}'],
            4321,
            b"",
            "Coinlocally refused the sub frame's token (error code 10002): token invalid",
        ),
        # the same, gzip-compressed, the text under `message`, the token echoed back
        (
            [gzip.compress(b'{"status":401,"message":"bad token tok-SECRET"}')],
            4999,
            b"",
            "Coinlocally refused the sub frame's token (error code 401): bad token <hidden>",
        ),
        # a plain-text reply, then a normal close right after it
        (["token invalid"], 1000, b"", "Coinlocally refused the sub frame's token: token invalid"),
        # a plain-text reply, then the connection dropped
        (
            ["Authentication failed"],
            None,
            b"",
            "Coinlocally refused the sub frame's token: Authentication failed",
        ),
        # no reply at all, a close with a 4xxx code of the exchange's own
        ([], 4010, b"", "Coinlocally refused the sub frame's token (close code 4010)"),
        # no reply, a policy-violation close whose reason echoes the token
        (
            [],
            1008,
            b"invalid token tok-SECRET",
            "Coinlocally refused the sub frame's token (close code 1008): invalid token <hidden>",
        ),
        # our emulator's own shape keeps working
        (
            ['{"event":"error","code":4004,"message":"sub token does not match the handshake"}'],
            4004,
            b"sub rejected",
            "Coinlocally refused the sub frame's token (error code 4004): "
            "sub token does not match the handshake",
        ),
    ],
)
async def test_a_refused_sub_in_any_shape_stops_after_auth_attempts(
    recorder: Recorder, replies: list[str | bytes], close: int | None, reason: bytes, shown: str
) -> None:
    error, exchange = await refused_sub(refusing(replies, close, reason), recorder)
    url = f"ws://{exchange.base}{WS_PATH}"
    assert str(error) == f"{url}: {shown}"
    assert error.rejected == "sub token"
    assert exchange.counts[WS_PATH] == 3  # auth_attempts (3) consecutive refusals, no more
    assert [status.state for status in recorder.statuses][-1] is State.FATAL
    assert [status.reason for status in recorder.of(State.RECONNECTING)] == [f"{url}: {shown}"] * 2


@pytest.mark.parametrize(
    ("replies", "close", "reason"),
    [
        ([], 1011, "closed by the server with code 1011"),  # internal error
        ([], 1013, "closed by the server with code 1013"),  # try again later
        ([], None, "connection lost"),  # a close with no reply at all
        (
            ['{"code":429,"msg":"too many requests"}'],
            4029,
            "Coinlocally answered the sub with a transient refusal (error code 429): too many requests",
        ),
        (
            ["service unavailable, try again"],
            1000,
            "Coinlocally answered the sub with a transient refusal: service unavailable, try again",
        ),
    ],
)
async def test_a_transient_refusal_is_retried_with_backoff(
    recorder: Recorder, replies: list[str], close: int | None, reason: str
) -> None:
    async with running(Exchange()) as exchange:
        exchange.route("GET", WS_PATH, refusing(list(replies), close))
        url = f"ws://{exchange.base}{WS_PATH}"
        async with connect("coinlocally", token=TOKEN, ws_url=url, on_status=recorder, **FAST) as stream:
            await recorder.wait_for(State.CONNECTING, 6)  # twice auth_attempts, and still going
            assert stream.running
    retries = recorder.of(State.RECONNECTING)[:5]
    assert [status.reason for status in retries] == [f"{url}: {reason}"] * 5
    assert [status.attempt for status in retries] == [1, 2, 3, 4, 5]  # the backoff grows
    assert State.FATAL not in [status.state for status in recorder.statuses]


async def test_refusals_separated_by_a_live_connection_do_not_add_up(recorder: Recorder) -> None:
    # refused, refused, live (one event, then closed), refused, refused, live: never three in a row
    async def script(n: int, request: web.Request) -> web.StreamResponse:
        if n in (3, 6):
            return await coinlocally_ws(request, ["sub success", ACCOUNT_UPDATE], 0 if n == 6 else 1000)
        return await coinlocally_ws(request, ['{"code":"10002","msg":"token invalid"}'], 4321)

    async with running(Exchange()) as exchange:
        exchange.route("GET", WS_PATH, script)
        url = f"ws://{exchange.base}{WS_PATH}"
        async with connect("coinlocally", token=TOKEN, ws_url=url, on_status=recorder, **FAST) as stream:
            async with asyncio.timeout(WAIT):
                events = [await anext(stream), await anext(stream)]
            assert stream.running
    # Without the reset at each live connection, the 4th connection would have been the 3rd refusal in a
    # row: fatal before the second event.
    assert [type(event) for event in events] == [BalanceUpdate, BalanceUpdate]
    assert exchange.counts[WS_PATH] == 6
    assert len(recorder.of(State.SUBSCRIBED)) == 2


async def test_a_sub_success_wrapped_in_json_makes_the_connection_live(recorder: Recorder) -> None:
    async with running(Exchange()) as exchange:
        exchange.route("GET", WS_PATH, refusing(['{"code":"0","msg":"sub success"}', ACCOUNT_UPDATE], 0))
        url = f"ws://{exchange.base}{WS_PATH}"
        async with connect("coinlocally", token=TOKEN, ws_url=url, on_status=recorder, **FAST) as stream:
            async with asyncio.timeout(WAIT):
                event = await anext(stream)
    assert isinstance(event, BalanceUpdate)
    assert recorder.states() == ["connecting", "connected", "subscribed"]


# --- Coinlocally: the handshake -----------------------------------------------------------------------------


def answering(status: int, body: str, content_type: str = "text/html") -> Script:
    async def script(n: int, request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=body, content_type=content_type)

    return script


@pytest.mark.parametrize(
    ("status", "body"),
    [(401, "<html><h1>401 Authorization Required</h1></html>"), (403, ""), (403, '{"code":"-1","msg":"x"}')],
)
async def test_a_handshake_refused_with_401_or_403_and_any_body_is_a_refused_credential(
    recorder: Recorder, status: int, body: str
) -> None:
    error, exchange = await refused_sub(answering(status, body), recorder)
    assert (
        str(error) == f"ws://{exchange.base}{WS_PATH}: Coinlocally refused the 'token' header (HTTP {status})"
    )
    assert (error.rejected, error.status) == ("token header", status)
    assert exchange.counts[WS_PATH] == 3


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_other_handshake_statuses_keep_their_meaning(recorder: Recorder, status: int) -> None:
    async with running(Exchange()) as exchange:
        exchange.route("GET", WS_PATH, answering(status, "<html>busy</html>"))
        url = f"ws://{exchange.base}{WS_PATH}"
        async with connect("coinlocally", token=TOKEN, ws_url=url, on_status=recorder, **FAST) as stream:
            await recorder.wait_for(State.CONNECTING, 6)
            assert stream.running
    reasons = {status.reason for status in recorder.of(State.RECONNECTING)}
    assert reasons == {f"{url}: WebSocket handshake refused with HTTP {status}"}


async def test_a_404_on_a_stream_never_live_is_a_configuration_error(recorder: Recorder) -> None:
    async with running(Exchange()) as exchange:
        url = f"ws://{exchange.base}/wrong/path"
        async with connect("coinlocally", token=TOKEN, ws_url=url, on_status=recorder, **FAST) as stream:
            with pytest.raises(ConfigurationError) as raised:
                async with asyncio.timeout(WAIT):
                    await anext(stream)
    assert str(raised.value) == (
        f"{url} answered HTTP 404 3 times in a row and the stream has never been live: check the URL "
        "(the path expected there is /spotws_user/userData/ws)"
    )
    assert [status.reason for status in recorder.of(State.RECONNECTING)] == [
        f"{url}: WebSocket handshake refused with HTTP 404 (no Coinlocally stream here)"
    ] * 2


async def test_a_404_after_the_stream_was_live_stays_retryable(recorder: Recorder) -> None:
    async def script(n: int, request: web.Request) -> web.StreamResponse:
        if n == 1:  # live, one event, then the exchange "redeploys" and answers 404 for a while
            return await coinlocally_ws(request, ["sub success", ACCOUNT_UPDATE], 1001)
        if n < 8:
            return web.Response(status=404, text="404: Not Found")
        return await coinlocally_ws(request, ["sub success", ACCOUNT_UPDATE], 0)

    async with running(Exchange()) as exchange:
        exchange.route("GET", WS_PATH, script)
        url = f"ws://{exchange.base}{WS_PATH}?lang=en"  # the query string is never shown
        async with connect("coinlocally", token=TOKEN, ws_url=url, on_status=recorder, **FAST) as stream:
            async with asyncio.timeout(WAIT):
                events = [await anext(stream), await anext(stream)]
    assert len(events) == 2
    assert exchange.counts[WS_PATH] == 8
    shown = f"ws://{exchange.base}{WS_PATH}"
    assert [status.reason for status in recorder.of(State.RECONNECTING)][1:] == [
        f"{shown}: WebSocket handshake refused with HTTP 404 (no Coinlocally stream here)"
    ] * 6


# --- Bitmusa: REST refusals ---------------------------------------------------------------------------------

KEY = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"


def rest(status: int, body: bytes, content_type: str = "application/json") -> Script:
    async def script(n: int, request: web.Request) -> web.StreamResponse:
        assert request.headers["x-api-key"] == API_KEY
        return web.Response(status=status, body=body, content_type=content_type)

    return script


def listen_key_reply() -> bytes:
    return json.dumps({"data": {"listenKey": KEY}, "code": 0, "message": "success"}).encode()


def bitmusa_options(exchange: Exchange, **overrides: Any) -> dict[str, Any]:
    return {
        "api_key": API_KEY,
        "auth_key": AUTH_KEY,
        "rest_url": f"http://{exchange.base}",
        "ws_url": f"ws://{exchange.base}",
        **FAST,
        **overrides,
    }


@pytest.mark.parametrize(
    ("status", "body", "content_type", "shown"),
    [
        (401, b"<html><body>401 Unauthorized</body></html>", "text/html", "Bitmusa answered HTTP 401"),
        (401, b"", "text/plain", "Bitmusa answered HTTP 401"),
        (401, b'{"success":false}', "application/json", "Bitmusa answered HTTP 401"),
        (
            401,
            b'{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}',
            "application/json",
            "Bitmusa answered HTTP 401: Invalid API-key, IP, or permissions for action.",
        ),
        (
            403,
            b'{"error":"key api-SECRET blocked"}',
            "application/json",
            "Bitmusa answered HTTP 403: key <hidden> blocked",
        ),
    ],
)
async def test_a_refused_listen_key_request_in_any_shape_stops_after_auth_attempts(
    recorder: Recorder, status: int, body: bytes, content_type: str, shown: str
) -> None:
    async with running(Exchange()) as exchange:
        exchange.route("POST", LISTEN_KEY_PATH, rest(status, body, content_type))
        async with connect("bitmusa", **bitmusa_options(exchange), on_status=recorder) as stream:
            with pytest.raises(AuthenticationError) as raised:
                async with asyncio.timeout(WAIT):
                    await anext(stream)
    assert str(raised.value) == f"POST http://{exchange.base}{LISTEN_KEY_PATH}: {shown}"
    assert (raised.value.rejected, raised.value.status) == ("listenKey request", status)
    assert exchange.counts[LISTEN_KEY_PATH] == 3
    assert all("SECRET" not in (status.reason or "") for status in recorder.statuses)


@pytest.mark.parametrize(
    ("status", "body", "content_type", "shown"),
    [
        (
            200,
            b'{"code":10001,"msg":"account frozen"}',
            "application/json",
            "Bitmusa refused the request (HTTP 200, code 10001): account frozen",
        ),
        (
            200,
            b'{"code":"-1","message":"auth-SECRET unknown"}',
            "application/json",
            "Bitmusa refused the request (HTTP 200, code -1): <hidden> unknown",
        ),
        (
            502,
            b"<html><body>502 Bad Gateway</body></html>",
            "text/html",
            "Bitmusa answered HTTP 502 without a JSON body (an HTML page)",
        ),
        (200, b"OK", "text/plain", "Bitmusa reply (HTTP 200) is not JSON (a 2-byte body that is not JSON)"),
    ],
)
async def test_other_rest_replies_are_retried_and_say_status_method_url_and_message(
    recorder: Recorder, status: int, body: bytes, content_type: str, shown: str
) -> None:
    async with running(Exchange()) as exchange:
        exchange.route("POST", LISTEN_KEY_PATH, rest(status, body, content_type))
        async with connect("bitmusa", **bitmusa_options(exchange), on_status=recorder) as stream:
            await recorder.wait_for(State.CONNECTING, 6)
            assert stream.running
    reasons = [status.reason for status in recorder.of(State.RECONNECTING)][:5]
    assert reasons == [f"POST http://{exchange.base}{LISTEN_KEY_PATH}: {shown}"] * 5


async def test_a_rest_404_on_a_stream_never_live_is_a_configuration_error(recorder: Recorder) -> None:
    async with running(Exchange()) as exchange:
        options = bitmusa_options(exchange, rest_url=f"http://{exchange.base}/api/")
        async with connect("bitmusa", **options, on_status=recorder) as stream:
            with pytest.raises(ConfigurationError) as raised:
                async with asyncio.timeout(WAIT):
                    await anext(stream)
    url = f"http://{exchange.base}/api{LISTEN_KEY_PATH}"
    assert str(raised.value) == (
        f"{url} answered HTTP 404 3 times in a row and the stream has never been live: check the URL "
        "(the path expected there is /spot/userDataStream)"
    )
    assert [status.reason for status in recorder.of(State.RECONNECTING)] == [
        f"POST {url}: HTTP 404 with a 14-byte body that is not JSON: no Bitmusa endpoint at this URL"
    ] * 2


# --- Bitmusa: the WebSocket ---------------------------------------------------------------------------------


async def bitmusa_ws(request: web.Request, frames: list[str], close: int) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    for frame in frames:
        await ws.send_str(frame)
    if close:
        await ws.close(code=close, message=b"bye")
    else:
        async for _ in ws:
            pass
    return ws


WALLET = json.dumps(
    {
        "stream": "spot_wallet",
        "eventTime": 1713338308232,
        "data": {"asset": "USDT", "free": "1.5", "locked": "0"},
    }
)


async def test_an_unknown_4xxx_close_gets_one_fresh_key_then_counts_as_a_plain_failure(
    recorder: Recorder,
) -> None:
    async def ws(n: int, request: web.Request) -> web.StreamResponse:
        assert request.path == f"/ws/spot/{KEY}"
        return await bitmusa_ws(request, [WALLET], 4100)

    async with running(Exchange()) as exchange:
        exchange.route("POST", LISTEN_KEY_PATH, rest(200, listen_key_reply()))
        exchange.route("PUT", LISTEN_KEY_PATH, rest(200, b'{"code":0,"message":"success"}'))
        exchange.route("GET", "/ws/spot/{key}", ws)
        async with connect("bitmusa", **bitmusa_options(exchange), on_status=recorder) as stream:
            await recorder.wait_for(State.CONNECTING, 5)
            assert stream.running
    # the first 4100 renewed the key (POST again, `key_renewed`); the later ones reconnect with it
    assert exchange.counts[LISTEN_KEY_PATH] == 2
    label = f"ws://{exchange.base}/ws/spot/pqia91..."
    reasons = [status.reason for status in recorder.of(State.RECONNECTING)][:3]
    assert reasons == [
        f"{label}: closed by the server with code 4100 'bye' (an unknown close code: trying once with a "
        "fresh listenKey)",
        f"{label}: closed by the server with code 4100 'bye'",
        f"{label}: closed by the server with code 4100 'bye'",
    ]
    assert len(recorder.of(State.KEY_RENEWED)) == 1
    assert all(KEY not in (status.reason or "") for status in recorder.statuses)


async def test_a_ws_handshake_404_on_a_stream_never_live_is_a_configuration_error(recorder: Recorder) -> None:
    async with running(Exchange()) as exchange:
        exchange.route("POST", LISTEN_KEY_PATH, rest(200, listen_key_reply()))
        options = bitmusa_options(exchange, ws_url=f"ws://{exchange.base}/stream")  # nothing there
        async with connect("bitmusa", **options, on_status=recorder) as stream:
            with pytest.raises(ConfigurationError) as raised:
                async with asyncio.timeout(WAIT):
                    await anext(stream)
    assert str(raised.value) == (
        f"ws://{exchange.base}/stream/ws/spot/<listenKey> answered HTTP 404 3 times in a row and the stream "
        "has never been live: check the URL (the path expected there is /ws/spot/<listenKey>)"
    )
    # every 404 also asked for a fresh listenKey first, as a bad key would need
    assert exchange.counts[LISTEN_KEY_PATH] == 3
    assert [status.reason for status in recorder.of(State.RECONNECTING)] == [
        f"ws://{exchange.base}/stream/ws/spot/pqia91...: WebSocket handshake refused with HTTP 404 "
        "(an unknown listenKey, or no Bitmusa stream at this URL)"
    ] * 2


async def test_a_bitmusa_handshake_404_after_the_stream_was_live_stays_retryable(recorder: Recorder) -> None:
    async def ws(n: int, request: web.Request) -> web.StreamResponse:
        if n == 1:  # live, one event, then the exchange goes away and answers 404 for a while
            return await bitmusa_ws(request, [WALLET], 1001)
        if n < 8:
            raise web.HTTPNotFound()
        return await bitmusa_ws(request, [WALLET], 0)

    async with running(Exchange()) as exchange:
        exchange.route("POST", LISTEN_KEY_PATH, rest(200, listen_key_reply()))
        exchange.route("GET", "/ws/spot/{key}", ws)
        async with connect("bitmusa", **bitmusa_options(exchange), on_status=recorder) as stream:
            async with asyncio.timeout(WAIT):
                events = [await anext(stream), await anext(stream)]
    assert [type(event) for event in events] == [BalanceUpdate, BalanceUpdate]
    assert exchange.counts["/ws/spot/{key}"] == 8
    assert exchange.counts[LISTEN_KEY_PATH] == 7  # each 404 also asked for a fresh key
    assert [status.reason for status in recorder.of(State.RECONNECTING)][1:] == [
        f"ws://{exchange.base}/ws/spot/pqia91...: WebSocket handshake refused with HTTP 404 "
        "(an unknown listenKey, or no Bitmusa stream at this URL)"
    ] * 6


# --- URLs written either way, against the real emulator -----------------------------------------------------


@pytest.mark.parametrize("ws_form", ["", "/", "/ws/spot", "/ws/spot/", "/spotws_user/userData/ws"])
@pytest.mark.parametrize("rest_form", ["", "/", "/spot/userDataStream", "/spot/userDataStream/"])
async def test_bitmusa_accepts_a_base_or_a_full_url(lab: Lab, ws_form: str, rest_form: str) -> None:
    async with lab() as env:
        options = env.options(
            "bitmusa", rest_url=env.server.base_url + rest_form, ws_url=env.server.ws_url + ws_form
        )
        async with connect("bitmusa", **options) as stream:
            await env.until_streaming()
            await env.ingest([env.balance(1)])
            events = await env.take(stream, 1)
        paths = [path for _method, path, _status in env.access.requests]
    assert events == [env.expected_balance(1, "bitmusa")]
    assert [path for path in paths if "userDataStream" in path] == ["/spot/userDataStream"]
    assert len([path for path in paths if path.startswith("/ws/spot/")]) == 1
    assert not [path for path in paths if "//" in path or path.count("/ws/spot") > 1]


@pytest.mark.parametrize("form", ["", "/", WS_PATH, WS_PATH + "/", "/ws/spot", "/ws/spot/"])
async def test_coinlocally_accepts_a_base_or_a_full_url(lab: Lab, form: str) -> None:
    async with (
        lab() as env,
        connect("coinlocally", **env.options("coinlocally", ws_url=env.server.ws_url + form)) as stream,
    ):
        await env.until_streaming()
        await env.ingest([env.balance(1)])
        events = await env.take(stream, 1)
    assert events == [env.expected_balance(1, "coinlocally")]
    assert env.access.count("GET", WS_PATH) == 1
    assert [path for _method, path, _status in env.access.requests if path.startswith("/")] == [WS_PATH]


async def test_a_wrong_bitmusa_rest_url_against_serve_is_a_configuration_error(lab: Lab) -> None:
    async with lab() as env:
        options = env.options("bitmusa", rest_url=env.server.base_url + "/v1")
        async with connect("bitmusa", **options) as stream:
            with pytest.raises(ConfigurationError) as raised:
                await env.take(stream, 1)
        refused = env.access.count("POST", "/v1/spot/userDataStream", 404)
    assert refused == 3
    assert str(raised.value) == (
        f"{env.server.base_url}/v1/spot/userDataStream answered HTTP 404 3 times in a row and the stream has "
        "never been live: check the URL (the path expected there is /spot/userDataStream)"
    )


# --- `watch` as a user meets it: exit 2 with the message ----------------------------------------------------


async def watch(*args: str, **credentials: str) -> tuple[int, bytes, bytes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("USERSTREAM_")}
    env.update(credentials)
    fast = ("--backoff-base", "0.01", "--backoff-cap", "0.02")
    process = await userstream("watch", *args, *fast, env=env, stdin=asyncio.subprocess.DEVNULL)
    stdout, stderr = await finish(process, 20)
    assert process.returncode is not None
    return process.returncode, stdout, stderr


async def test_watch_exits_2_quoting_a_refused_sub_in_the_exchanges_own_shape() -> None:
    async with running(Exchange()) as exchange:
        exchange.route("GET", WS_PATH, refusing(['{"code":"10002","msg":"token tok-SECRET invalid"}'], 4321))
        url = f"ws://{exchange.base}"
        code, stdout, stderr = await watch("coinlocally", "--ws-url", url, USERSTREAM_COINLOCALLY_TOKEN=TOKEN)
        connections = exchange.counts[WS_PATH]
    assert (code, stdout, connections) == (2, b"", 3)
    assert stderr.decode().splitlines()[-1] == (
        f"userstream watch: authentication failed (sub token rejected): ws://{exchange.base}{WS_PATH}: "
        "Coinlocally refused the sub frame's token (error code 10002): token <hidden> invalid"
    )
    assert b"SECRET" not in stderr


async def test_watch_exits_2_naming_a_wrong_url_and_the_path_expected(lab: Lab) -> None:
    async with lab() as env:
        code, stdout, stderr = await watch(
            "bitmusa",
            "--rest-url",
            env.server.base_url,
            "--ws-url",
            env.server.ws_url + "/stream/",
            USERSTREAM_BITMUSA_API_KEY=env.alice.bitmusa_api_key,
            USERSTREAM_BITMUSA_AUTH_KEY=env.alice.bitmusa_auth_key,
        )
    assert (code, stdout) == (2, b"")
    assert stderr.decode().splitlines()[-1] == (
        f"userstream watch: {env.server.ws_url}/stream/ws/spot/<listenKey> answered HTTP 404 3 times in a "
        "row and the stream has never been live: check the URL (the path expected there is "
        "/ws/spot/<listenKey>)"
    )
    for secret in env.secrets:
        assert secret.encode() not in stderr


# --- a peer that says how long to wait: Retry-After on the connection path ---------------------------------

#: Delays of exact values: the backoff's draw is always half its ceiling (0.005 s, then 0.01 s).
HALVED: dict[str, Any] = {**FAST, "rng": lambda: 0.5}


def slowing_down(first: web.Response) -> Script:
    """The first request is answered `first`; every later one 503 without a Retry-After."""

    async def script(n: int, request: web.Request) -> web.StreamResponse:
        return (
            first if n == 1 else web.Response(status=503, text="<html>busy</html>", content_type="text/html")
        )

    return script


async def test_a_handshake_429_with_retry_after_waits_at_least_that_long(recorder: Recorder) -> None:
    async with running(Exchange()) as exchange:
        too_many = web.Response(status=429, text="slow down", headers={"Retry-After": "2"})
        exchange.route("GET", WS_PATH, slowing_down(too_many))
        url = f"ws://{exchange.base}{WS_PATH}"
        async with connect("coinlocally", token=TOKEN, ws_url=url, on_status=recorder, **HALVED) as stream:
            await recorder.wait_for(State.RECONNECTING, 2)
            assert stream.running
    waits = [(status.reason, status.attempt, status.delay) for status in recorder.of(State.RECONNECTING)][:2]
    assert waits == [
        (f"{url}: WebSocket handshake refused with HTTP 429", 1, 2.0),
        (f"{url}: WebSocket handshake refused with HTTP 503", 2, 0.01),
    ]


async def test_a_bitmusa_handshake_429_with_retry_after_waits_at_least_that_long(recorder: Recorder) -> None:
    async with running(Exchange()) as exchange:
        exchange.route("POST", LISTEN_KEY_PATH, rest(200, listen_key_reply()))
        too_many = web.Response(status=429, text="slow down", headers={"Retry-After": "2"})
        exchange.route("GET", "/ws/spot/{key}", slowing_down(too_many))
        async with connect("bitmusa", **bitmusa_options(exchange, **HALVED), on_status=recorder) as stream:
            await recorder.wait_for(State.RECONNECTING, 2)
            assert stream.running
    waits = [(status.attempt, status.delay) for status in recorder.of(State.RECONNECTING)][:2]
    assert waits == [(1, 2.0), (2, 0.01)]
    assert recorder.of(State.RECONNECTING)[0].reason.endswith("WebSocket handshake refused with HTTP 429")


async def test_a_listen_key_request_answered_429_with_retry_after_waits_at_least_that_long(
    recorder: Recorder,
) -> None:
    refused = json.dumps({"code": 429001, "message": "too many requests"}).encode()
    async with running(Exchange()) as exchange:
        too_many = web.Response(
            status=429, body=refused, content_type="application/json", headers={"Retry-After": "2"}
        )
        exchange.route("POST", LISTEN_KEY_PATH, slowing_down(too_many))
        async with connect("bitmusa", **bitmusa_options(exchange, **HALVED), on_status=recorder) as stream:
            await recorder.wait_for(State.RECONNECTING, 2)
            assert stream.running
    waits = [(status.reason, status.attempt, status.delay) for status in recorder.of(State.RECONNECTING)][:2]
    assert waits == [
        (
            f"POST http://{exchange.base}{LISTEN_KEY_PATH}: Bitmusa answered HTTP 429: too many requests",
            1,
            2.0,
        ),
        (
            f"POST http://{exchange.base}{LISTEN_KEY_PATH}: "
            "Bitmusa answered HTTP 503 without a JSON body (an HTML page)",
            2,
            0.01,
        ),
    ]
