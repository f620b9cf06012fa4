"""A server that echoes every secret it is sent shows none of them to anyone (issue 13, section 2).

The hostile peer is a small real HTTP and WebSocket server (aiohttp's) that plays Bitmusa and Coinlocally
and echoes what it was sent through every path a server's words take into the project: REST error
messages (exact, JSON-escaped, percent-encoded; the listenKey calls and a resync's snapshot), WebSocket
close reasons, Coinlocally's error reply, and unknown frames. The library, `userstream watch`,
`userstream gateway` and `userstream doctor` (the CLI as subprocesses, at DEBUG) run against it until it
has refused them for good; then every output is searched for every form of every secret: the exception's
text, repr and args, every status event (describe(), JSON, repr), the stream's stats, the log records, the
subprocesses' stdout and stderr, and the gateway's /healthz, /accounts, /accounts/<name> and /metrics.
Positive checks prove each path was taken (its `<hidden>`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from support.peers import served
from support.processes import finish, gateway, userstream
from userstream.client import State, StatusEvent, connect
from userstream.client.scrub import HIDDEN
from userstream.errors import AuthenticationError
from userstream.protocol import bitmusa, bitmusa_render, bitmusa_rest

# Secrets with the characters that encodings change ('/', '+', '"', '\\'), each long enough to be unique.
API_KEY = "Api/Key+0123456789abcdef-SECRET"
AUTH_KEY = 'Auth"Key\\0123456789abcdef-SECRET'
TOKEN = 'Tok"en/0123456789\\abcdef-SECRET'
LISTEN_KEY = "Lk0123456789abcdefghijklmnopqrstuvSECRET"
SECRETS = (API_KEY, AUTH_KEY, TOKEN, LISTEN_KEY)
COINLOCALLY_PATH = "/spotws_user/userData/ws"
WAIT = 20.0  # the bound on every wait; never reached when all is well


def forms(secret: str) -> list[str]:
    """Every way an output could carry `secret` (what a leak would look like)."""
    return [
        secret,
        quote(secret, safe=""),
        quote(secret),
        json.dumps(secret)[1:-1],
        repr(secret)[1:-1],
        secret[:16],  # a clipped echo
        secret[-16:],
    ]


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        for form in forms(secret):
            assert form.lower() not in text.lower(), f"{secret[:6]}... leaked as {form[:6]}...: {text[:3000]}"


class Echoer:
    """The hostile exchange. Bitmusa: the first listenKey request succeeds; the keepalive (PUT) fails
    echoing the key; the first WebSocket sends frames naming the key and the api key, then closes with a
    reason echoing both; the second closes as lapsed; listenKey requests then fail, echoing the auth key
    (JSON-escaped) and then the api key (percent-encoded), for good. Coinlocally: the first WebSocket sends
    an unknown event naming the token and closes echoing it; later ones refuse the sub, echoing it."""

    def __init__(self, put_wait: float = 2.0) -> None:
        self.put_wait = put_wait
        self.posts = 0
        self.bitmusa_sockets = 0
        self.coinlocally_sockets = 0
        self.put_seen = asyncio.Event()
        self.wallet_seen = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(bitmusa.LISTEN_KEY_PATH, self.post)
        app.router.add_put(bitmusa.LISTEN_KEY_PATH, self.put)
        app.router.add_delete(bitmusa.LISTEN_KEY_PATH, self.put)
        app.router.add_get(bitmusa.WS_PATH_PREFIX + "{key}", self.bitmusa_ws)
        app.router.add_get(bitmusa_rest.WALLET_PATH, self.wallet)
        app.router.add_get(COINLOCALLY_PATH, self.coinlocally_ws)
        return app

    async def post(self, request: web.Request) -> web.Response:
        self.posts += 1
        if self.posts == 1:
            body = bitmusa_render.render_listen_key(LISTEN_KEY)
        elif self.posts == 2:  # an error the client retries, quoting the auth key as JSON would
            body = bitmusa_render.render_error(500001, f"busy {json.dumps(AUTH_KEY)}")
        else:  # a refusal (fatal), quoting the api key as a URL would
            body = bitmusa_render.render_error(
                bitmusa.ERR_UNAUTHORIZED, f"bad key {quote(API_KEY, safe='')} {LISTEN_KEY}"
            )
        return web.Response(body=body, content_type="application/json")

    async def put(self, request: web.Request) -> web.Response:
        self.put_seen.set()
        body = bitmusa_render.render_error(500001, f"no such key {LISTEN_KEY} for {API_KEY}")
        return web.Response(body=body, content_type="application/json")

    async def wallet(self, request: web.Request) -> web.Response:
        self.wallet_seen.set()
        body = bitmusa_render.render_error(500001, f"no wallet for {LISTEN_KEY}")
        return web.Response(body=body, content_type="application/json")

    async def bitmusa_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.bitmusa_sockets += 1
        if self.bitmusa_sockets == 1:
            try:  # a client with a short keepalive_interval gets its PUT refused first
                async with asyncio.timeout(self.put_wait):
                    await self.put_seen.wait()
            except TimeoutError:
                pass
            await ws.send_str(json.dumps({"stream": LISTEN_KEY, "data": {}}))
            await ws.send_str(json.dumps({"stream": API_KEY, "data": {}}))
            await ws.close(code=1011, message=f"{LISTEN_KEY} {quote(API_KEY, safe='')}".encode())
        else:
            try:  # a client that resyncs after the reconnect gets its snapshot refused first
                async with asyncio.timeout(self.put_wait):
                    await self.wallet_seen.wait()
            except TimeoutError:
                pass
            await ws.close(code=4001, message=f"lapsed: {LISTEN_KEY}".encode())
        return ws

    async def coinlocally_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.coinlocally_sockets += 1
        await ws.receive()  # the sub frame
        if self.coinlocally_sockets == 1:
            await ws.send_str(json.dumps({"e": TOKEN}))
            await ws.close(code=1011, message=f"bye {TOKEN}".encode())
        else:
            error = {"event": "error", "code": 10002, "message": f"token {quote(TOKEN, safe='')} refused"}
            await ws.send_str(json.dumps(error))
            await ws.close(code=4004, message=f"{TOKEN}"[:100].encode())
        return ws


@asynccontextmanager
async def echoer(peer: Echoer | None = None) -> AsyncIterator[tuple[Echoer, str]]:
    peer = Echoer() if peer is None else peer
    async with served(peer.app(), access_log=None) as address:
        yield peer, f"http://{address}"


FAST: dict[str, Any] = {
    "ping_interval": 1.0,
    "idle_timeout": 5.0,
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
    "sub_timeout": 5.0,
    "close_timeout": 1.0,
    "request_timeout": 5.0,
    "rotate_after": None,
    "resync": False,
    "auth_attempts": 2,
}


def shown(statuses: list[StatusEvent], error: BaseException, *things: object) -> str:
    parts = [status.describe() for status in statuses]
    parts += [status.to_json().decode() for status in statuses] + [repr(status) for status in statuses]
    parts += [str(error), repr(error), repr(error.args), *(repr(thing) for thing in things)]
    parts += [f"{name}={value!r}" for name, value in vars(error).items()]
    return "\n".join(parts)


async def test_the_library_shows_no_echoed_bitmusa_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    statuses: list[StatusEvent] = []
    async with echoer() as (peer, url):
        stream = connect(
            "bitmusa",
            api_key=API_KEY,
            auth_key=AUTH_KEY,
            rest_url=url,
            ws_url=url.replace("http", "ws", 1),
            keepalive_interval=0.05,
            on_status=statuses.append,
            **{**FAST, "resync": True},
        )
        async with stream:
            with pytest.raises(AuthenticationError) as raised:
                async with asyncio.timeout(WAIT):
                    await anext(stream)
        stats = stream.stats
    assert (peer.posts, peer.bitmusa_sockets) == (4, 2)  # two refusals: auth_attempts=2
    error = raised.value
    # The message is clipped (80 characters) in the middle of the listenKey: the clipped run is hidden too.
    # issue 12: the method and URL come first
    assert str(error) == (
        f"POST {url}/spot/userDataStream: "
        f"Bitmusa refused the request (HTTP 200, code 401001): bad key {HIDDEN} {HIDDEN}..."
    )
    reasons = {status.state: status.reason or "" for status in statuses}
    assert f"no such key {HIDDEN} for {HIDDEN}" in reasons[State.KEEPALIVE_FAILED]  # the PUT's refusal
    disconnects = [status.reason or "" for status in statuses if status.state is State.DISCONNECTED]
    assert f"closed by the server with code 1011 '{HIDDEN} {HIDDEN}'" in disconnects[0]  # the close reason
    assert any(f'busy "{HIDDEN}"' in (status.reason or "") for status in statuses)  # the retried error
    assert f"no wallet for {HIDDEN}" in reasons[State.RESYNC_FAILED]  # the snapshot's refusal
    assert f"unknown frame ignored: unknown stream: Invalid value '{HIDDEN}'" in caplog.text  # the frames
    assert_no_secret(shown(statuses, error, stream, stats) + caplog.text)


async def test_the_library_shows_no_echoed_coinlocally_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    statuses: list[StatusEvent] = []
    async with echoer() as (peer, url):
        stream = connect(
            "coinlocally",
            token=TOKEN,
            ws_url=url.replace("http", "ws", 1) + COINLOCALLY_PATH,
            on_status=statuses.append,
            **FAST,
        )
        async with stream:
            with pytest.raises(AuthenticationError) as raised:
                async with asyncio.timeout(WAIT):
                    await anext(stream)
    assert peer.coinlocally_sockets == 3
    error = raised.value
    expected = (  # issue 12: the URL comes first
        f"{url.replace('http', 'ws', 1)}{COINLOCALLY_PATH}: "
        f"Coinlocally refused the sub frame's token (error code 10002): token {HIDDEN} refused"
    )
    assert str(error) == expected  # the error reply
    retries = [status.reason or "" for status in statuses if status.state is State.RECONNECTING]
    assert f"closed by the server with code 1011 'bye {HIDDEN}'" in retries[0]  # the close reason
    assert f"unknown frame ignored: unknown event type '{HIDDEN}'" in caplog.text  # the unknown frame
    assert_no_secret(shown(statuses, error, stream, stream.stats) + caplog.text)


async def _run_cli(*arguments: str, environ: dict[str, str]) -> tuple[int, str]:
    process = await userstream(*arguments, environ=environ)
    out, err = await finish(process, 60)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace") + err.decode(errors="replace")


WATCH_FAST = (
    "--ping-interval",
    "1",
    "--idle-timeout",
    "5",
    "--backoff-base",
    "0.01",
    "--backoff-cap",
    "0.05",
)


async def test_watch_shows_no_echoed_secret() -> None:
    environ = {
        "USERSTREAM_BITMUSA_API_KEY": API_KEY,
        "USERSTREAM_BITMUSA_AUTH_KEY": AUTH_KEY,
        "USERSTREAM_COINLOCALLY_TOKEN": TOKEN,
    }
    common = ("--log-level", "DEBUG", "--format", "jsonl", *WATCH_FAST)
    async with echoer() as (_, url):
        ws = url.replace("http", "ws", 1)
        bitmusa_code, bitmusa_text = await _run_cli(
            "watch", "bitmusa", "--rest-url", url, "--ws-url", ws, "--keepalive-interval", "0.05", *common,
            environ=environ,
        )  # fmt: skip
    async with echoer() as (_, url):
        ws = url.replace("http", "ws", 1)
        coinlocally_code, coinlocally_text = await _run_cli(
            "watch", "coinlocally", "--ws-url", ws + COINLOCALLY_PATH, *common, environ=environ
        )
    assert (bitmusa_code, coinlocally_code) == (2, 2)  # refused for good: exit 2, with the reason
    assert f"bad key {HIDDEN} {HIDDEN}" in bitmusa_text
    assert f"no such key {HIDDEN} for {HIDDEN}" in bitmusa_text
    assert f"'{HIDDEN} {HIDDEN}'" in bitmusa_text
    assert f"token {HIDDEN} refused" in coinlocally_text
    assert f"'bye {HIDDEN}'" in coinlocally_text
    assert_no_secret(bitmusa_text + coinlocally_text)


async def test_the_gateway_shows_no_echoed_secret(tmp_path: Path) -> None:
    async with echoer() as (_, url):
        ws = url.replace("http", "ws", 1)
        config = tmp_path / "gateway.toml"
        config.write_text(
            f"""
[gateway]
http_host = "127.0.0.1"
http_port = 0
health_grace = 0.5

[defaults]
ping_interval = 1.0
idle_timeout = 5.0
backoff_base = 0.01
backoff_cap = 0.05
request_timeout = 5.0
rotate_after = 0
resync = false

[[accounts]]
name = "echoed-bitmusa"
exchange = "bitmusa"
api_key_env = "ECHO_API_KEY"
auth_key_env = "ECHO_AUTH_KEY"
keepalive_interval = 0.05
rest_url = "{url}"
ws_url = "{ws}"

[[accounts]]
name = "echoed-coinlocally"
exchange = "coinlocally"
token_env = "ECHO_TOKEN"
ws_url = "{ws}{COINLOCALLY_PATH}"

[[sinks]]
type = "jsonl"
path = "{tmp_path / "events.jsonl"}"
"""
        )
        environ = {"ECHO_API_KEY": API_KEY, "ECHO_AUTH_KEY": AUTH_KEY, "ECHO_TOKEN": TOKEN}
        process = await gateway(config, "--log-level", "DEBUG", environ=environ, http_port=None)
        assert process.stdout is not None
        assert process.stderr is not None
        stderr = asyncio.ensure_future(process.stderr.read())
        stdout = b""
        try:
            async with asyncio.timeout(WAIT):
                while b"HTTP API on " not in stdout:
                    stdout += await process.stdout.readline()
            api = stdout.decode().split("HTTP API on ", 1)[1].split()[0]
            bodies: dict[str, str] = {}
            async with aiohttp.ClientSession() as http:

                async def get(path: str) -> str:
                    async with http.get(api + path) as reply:
                        return await reply.text()

                async with asyncio.timeout(WAIT):  # until both accounts were refused for good
                    while True:
                        health = json.loads(await get("/healthz"))
                        states = {name: account["state"] for name, account in health["accounts"].items()}
                        if set(states.values()) == {"failed"}:
                            break
                        await asyncio.sleep(0.05)
                for path in ("/healthz", "/accounts", "/metrics"):
                    bodies[path] = await get(path)
                for name in ("echoed-bitmusa", "echoed-coinlocally"):
                    bodies[name] = await get(f"/accounts/{name}")
        finally:
            process.terminate()
            async with asyncio.timeout(30):
                await process.wait()
            stdout += await process.stdout.read()
        logs = (await stderr).decode(errors="replace")
    everything = "\n".join([stdout.decode(errors="replace"), logs, *bodies.values()])
    assert f"bad key {HIDDEN} {HIDDEN}" in bodies["/healthz"]  # the reasons are there, scrubbed
    assert f"token {HIDDEN} refused" in bodies["/accounts"]
    assert f"no such key {HIDDEN} for {HIDDEN}" in logs
    assert_no_secret(everything)


async def test_doctor_shows_no_echoed_secret() -> None:
    environ = {
        "USERSTREAM_BITMUSA_API_KEY": API_KEY,
        "USERSTREAM_BITMUSA_AUTH_KEY": AUTH_KEY,
        "USERSTREAM_COINLOCALLY_TOKEN": TOKEN,
    }
    checks = ("--timeout", "5", "--frame-wait", "2")
    outputs: list[str] = []
    async with echoer(Echoer(put_wait=0)) as (_, url):
        ws = url.replace("http", "ws", 1)
        _, text = await _run_cli(
            "doctor", "bitmusa", "--rest-url", url, "--ws-url", ws, *checks, environ=environ
        )
        outputs.append(text)
        # the first frame's reason quotes the listenKey doctor got: hidden
        assert f"not understood: unknown stream: Invalid value '{HIDDEN}'" in text
    async with echoer() as (peer, url):
        ws = url.replace("http", "ws", 1) + COINLOCALLY_PATH
        _, text = await _run_cli("doctor", "coinlocally", "--ws-url", ws, *checks, environ=environ)
        outputs.append(text)
        assert f"closed by the server with code 1011 'bye {HIDDEN}'" in text  # the close reason
        _, text = await _run_cli("doctor", "coinlocally", "--ws-url", ws, *checks, environ=environ)
        outputs.append(text)
        assert f"the sub was refused: error 10002: token {HIDDEN} refused" in text  # the error reply
        assert peer.coinlocally_sockets == 2
    assert_no_secret("\n".join(outputs))
