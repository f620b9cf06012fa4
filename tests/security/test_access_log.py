"""serve's access log never keeps a live listenKey, on any path a client writes it into (issue 13).

The paths are sent raw (aiohttp's client would normalise `//`), to `userstream serve`'s app on 127.0.0.1,
whose access log is captured as JSON lines; a live key must appear in none of them, cut to its 6-character
prefix where it does appear.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from userstream.logs import MAX_SHOWN_SEGMENT, JsonFormatter, safe_path
from userstream.protocol import bitmusa
from userstream.server import running_server

Setup = Any  # conftest.Setup
LogCatcher = Any  # conftest.LogCatcher


async def _raw_get(host: str, port: int, path: str) -> int:
    """GET `path` exactly as written (no client normalises it); the HTTP status."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    return int(status_line.split()[1])


async def test_a_live_listen_key_is_cut_in_the_access_log_on_every_path(sec: Setup, logs: LogCatcher) -> None:
    alice = sec.alice
    headers = {"Authorization": f"Bearer {alice.bitmusa_auth_key}", "x-api-key": str(alice.bitmusa_api_key)}
    async with running_server(sec.config()) as server, aiohttp.ClientSession() as http:
        async with http.post(server.base_url + bitmusa.LISTEN_KEY_PATH, headers=headers) as reply:
            key = (await reply.json())["data"]["listenKey"]
        paths = {
            f"//ws/spot/{key}": 404,
            f"/WS/spot/{key}": 404,
            f"/ws/SPOT/{key}": 404,
            f"/spot/userDataStream/{key}": 404,
            f"/{key}": 404,
            f"/ws/spot/x{key}x": 400,  # contains it (the route: no upgrade asked)
            f"/spot/wallet/{key}.json": 404,
            f"/ws/spot/{key}": 400,  # the route itself, without an upgrade
        }
        port = int(server.base_url.rsplit(":", 1)[1])
        statuses = {path: await _raw_get("127.0.0.1", port, path) for path in paths}
    assert statuses == paths
    lines = [json.loads(JsonFormatter().format(r)) for r in logs.records if r.getMessage() == "request"]
    logged = {line["path"] for line in lines if line["method"] == "GET"}
    assert logged == {
        f"//ws/spot/{key[:6]}...",
        f"/WS/spot/{key[:6]}...",
        f"/ws/SPOT/{key[:6]}...",
        f"/spot/userDataStream/{key[:6]}...",
        f"/{key[:6]}...",
        f"/ws/spot/x{key[:5]}...",
        f"/spot/wallet/{key[:6]}...",
        f"/ws/spot/{key[:6]}...",
    }
    text = "\n".join(JsonFormatter().format(record) for record in logs.records)
    assert key not in text
    assert key[:MAX_SHOWN_SEGMENT] not in text


async def test_every_route_of_serve_is_logged_as_it_is(sec: Setup) -> None:
    async with running_server(sec.config()) as server:
        routes = {resource.canonical for resource in server.app.router.resources()}
    fixed = sorted(route for route in routes if "{" not in route)
    assert fixed  # the emulator's REST, WebSocket, admin and health paths
    assert [safe_path(route) for route in fixed] == fixed


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/ws/spot/abc", "/ws/spot/abc..."),  # the WebSocket path's key is always cut, even a short one
        ("/a/" + "k" * (MAX_SHOWN_SEGMENT + 1), "/a/kkkkkk..."),
        ("/a/" + "k" * MAX_SHOWN_SEGMENT, "/a/" + "k" * MAX_SHOWN_SEGMENT),
        ("/spot/order/history", "/spot/order/history"),
    ],
)
def test_safe_path(path: str, shown: str) -> None:
    assert safe_path(path) == shown
