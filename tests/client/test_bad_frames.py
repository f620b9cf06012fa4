"""Frames the client cannot use are not silent: against the real emulator (which sends the impossible values
it is given to ingest) and a scripted Coinlocally peer (which sends garbage the emulator never does), the
stream goes on, the stats count them exactly, and the log says so: at WARNING once per kind per connection,
then a count per interval, and every frame's detail at DEBUG."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import re
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web

from support.peers import served
from support.processes import finish, userstream
from userstream.client import connect
from userstream.errors import ConfigurationError
from userstream.events import BalanceUpdate, Exchange

Env = Any  # conftest.Env
Lab = Callable[..., AbstractAsyncContextManager[Any]]

WAIT = 10.0
WS_PATH = "/spotws_user/userData/ws"
FIRST = "(more {kind} frames on this connection: a count at most every {interval}s, each at DEBUG)"


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "userstream.client"
    ]


def details(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.DEBUG
        and re.search(r"connection=\d+: \w+ frame (refused|ignored): ", r.getMessage())
    ]


def negative_balance(n: int) -> dict[str, Any]:
    return {
        "kind": "balance",
        "asset": "USDT",
        "free": f"-{n}.5",
        "locked": "0",
        "timestamp": 1_700_703_548_000 + n,
    }


def overfilled_order(env: Env, n: int) -> dict[str, Any]:
    return {**env.order(n), "filled": "1.5"}  # a limit order for 1


@pytest.mark.parametrize(
    ("exchange", "negative_field", "overfilled_field"),
    [("bitmusa", "$.data.free", "$.data.tradedAmount"), ("coinlocally", "$.B[0].f", "$.z")],
)
async def test_impossible_values_are_refused_counted_warned_once_and_the_stream_goes_on(
    lab: Lab, caplog: pytest.LogCaptureFixture, exchange: str, negative_field: str, overfilled_field: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="userstream.client")
    async with lab() as env:
        stream = connect(exchange, **env.options(exchange, warning_interval=3600.0))
        async with stream:
            await env.until_streaming()
            await env.ingest(
                [
                    env.balance(1),
                    negative_balance(2),
                    negative_balance(3),
                    overfilled_order(env, 4),
                    negative_balance(5),
                    env.order(6),
                ]
            )
            events = await env.take(stream, 2)
            during = warnings(caplog)
            stats = stream.stats
        after = warnings(caplog)
    # the stream went on: the valid events before and after the four impossible ones, exactly
    assert events == [env.expected_balance(1, exchange), env.expected_order(6, exchange)]
    assert (stats.connections, stats.unknown_frames, stats.malformed_frames, stats.events_received) == (
        1,
        4,
        4,
        2,
    )
    name = f"{exchange}/alice connection=1"
    first = f"{negative_field}: a balance cannot be negative, got -2.5"
    assert during == [
        f"{name}: malformed frame refused: {first} " + FIRST.format(kind="malformed", interval=3600)
    ]
    # the rest of the count is reported when the connection ends (its interval never came)
    assert len(after) == 2
    assert re.fullmatch(
        rf"{re.escape(name)}: 3 more malformed frames refused in the last [0-9.]+s before the connection "
        rf"ended \(latest: {re.escape(negative_field)}: a balance cannot be negative, got -5\.5\)",
        after[1],
    )
    overfilled = f"{overfilled_field}: the filled quantity 1.5 exceeds the limit order's amount 1"
    assert details(caplog) == [
        f"{name}: malformed frame refused: {first}",
        f"{name}: malformed frame refused: {negative_field}: a balance cannot be negative, got -3.5",
        f"{name}: malformed frame refused: {overfilled}",
        f"{name}: malformed frame refused: {negative_field}: a balance cannot be negative, got -5.5",
    ]


@pytest.mark.parametrize("exchange", ["bitmusa", "coinlocally"])
async def test_the_count_of_impossible_values_is_reported_once_the_interval_passed(
    lab: Lab, caplog: pytest.LogCaptureFixture, exchange: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="userstream.client")
    # Pings every 30 s: the heartbeat task would sleep past WAIT unless the count's deadline wakes it.
    settings = {"warning_interval": 0.3, "ping_interval": 30.0, "idle_timeout": 60.0}
    async with lab() as env, connect(exchange, **env.options(exchange, **settings)) as stream:
        await env.until_streaming()
        await env.ingest([negative_balance(n) for n in range(1, 7)] + [env.balance(7)])
        (event,) = await env.take(stream, 1)
        async with asyncio.timeout(WAIT):
            # no frame comes after the last one: the connection's heartbeat wakes to report the count
            while counted(warnings(caplog), "malformed") < 6:  # noqa: ASYNC110 - no signal to await
                await asyncio.sleep(0.05)
        lines = warnings(caplog)
        stats = stream.stats
    assert event == env.expected_balance(7, exchange)
    assert (stats.connections, stats.unknown_frames, stats.malformed_frames) == (1, 6, 6)
    name = f"{exchange}/alice connection=1"
    assert lines[0].startswith(f"{name}: malformed frame refused: ")
    assert len(lines) >= 2
    for line in lines[1:]:
        assert re.fullmatch(
            rf"{re.escape(name)}: \d+ more malformed frames? refused in the last [0-9.]+s \(latest: .+\)",
            line,
        ), line
    assert counted(lines, "malformed") == 6
    assert lines[-1].endswith("a balance cannot be negative, got -6.5)")
    assert len(details(caplog)) == 6


# --- a scripted Coinlocally peer, for the garbage the emulator never sends ------------------------------


@asynccontextmanager
async def coinlocally_peer(frames: list[str | bytes]) -> AsyncIterator[str]:
    """A Coinlocally-like server: "sub success" after the sub, then `frames`, then it keeps the connection
    open, answering pings (so that no reconnect can happen however slow the machine), until the client leaves.
    A fake *exchange*, not a stand-in for our code."""

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        async for message in ws:
            if isinstance(message.data, str) and '"ping"' in message.data:
                await ws.send_str(message.data.replace("ping", "pong"))
            elif isinstance(message.data, str) and '"sub"' in message.data:
                await ws.send_str("sub success")
                for frame in frames:
                    if isinstance(frame, bytes):
                        await ws.send_bytes(frame)
                    else:
                        await ws.send_str(frame)
        return ws

    app = web.Application()
    app.router.add_get(WS_PATH, handle)
    async with served(app, shutdown_timeout=1.0) as address:
        yield f"ws://{address}{WS_PATH}"


def balance_frame(free: str, event_time: int = 1_564_034_571_105) -> bytes:
    text = (
        f'{{"e":"outboundAccountPosition","E":{event_time},"u":1,"B":[{{"a":"ETH","f":"{free}","l":"0"}}]}}'
    )
    return gzip.compress(text.encode())


# undecodable: corrupt gzip, not JSON, not UTF-8, truncated JSON, gzip of not JSON
GARBAGE: list[str | bytes] = [
    b"\x1f\x8b\x08\x00broken gzip",
    "{not json",
    b"\xff\xfe",
    '{"e":',
    gzip.compress(b"{oops"),
]
# well-formed but not understood: an event type, a text reply, plain text this version does not know
NEWS: list[str | bytes] = ['{"e":"listStatus","E":1}', "hello", "garbage{"]
NEGATIVE = [balance_frame("-1"), balance_frame("-2")]
OPTIONS: dict[str, Any] = {"token": "tok-SECRET", "ping_interval": 1.0, "idle_timeout": 5.0, "resync": False}


def counted(lines: list[str], kind: str) -> int:
    """How many frames of `kind` the WARNING lines account for: 1 for the first, then each reported count."""
    total = 0
    for line in lines:
        if re.search(rf": {kind} frame (refused|ignored): ", line):
            total += 1
        found = re.search(rf": (\d+) more {kind} frames? ", line)
        if found:
            total += int(found.group(1))
    return total


async def test_garbage_is_warned_once_per_kind_then_counted_per_interval_and_the_stream_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="userstream.client")
    # mixed, so that each kind's frames interleave with the others'
    frames: list[str | bytes] = [*GARBAGE[:2], NEWS[0], NEGATIVE[0], *GARBAGE[2:], *NEWS[1:], NEGATIVE[1]]
    async with (
        coinlocally_peer([*frames, balance_frame("7")]) as url,
        connect("coinlocally", ws_url=url, warning_interval=0.3, **OPTIONS) as stream,
    ):
        async with asyncio.timeout(WAIT):
            event = await anext(stream)
            # the counts are reported once their interval passed, with no new frame to trigger it
            while not all(  # noqa: ASYNC110 - a log record has no change signal to await
                counted(warnings(caplog), kind) == count
                for kind, count in (("undecodable", 5), ("unknown", 3), ("malformed", 2))
            ):
                await asyncio.sleep(0.05)
        stats = stream.stats
        lines = warnings(caplog)
    assert isinstance(event, BalanceUpdate)
    assert (event.exchange, event.free) == (Exchange.COINLOCALLY, Decimal("7"))
    assert (stats.connections, stats.unknown_frames, stats.malformed_frames, stats.events_received) == (
        1,
        10,
        7,
        1,
    )
    name = "coinlocally/default connection=1"
    firsts = [line for line in lines if re.search(r" frame (refused|ignored): ", line)]
    assert firsts == [
        f"{name}: undecodable frame refused: corrupt gzip frame (15 bytes): Error -3 while decompressing "
        "data: invalid stored block lengths " + FIRST.format(kind="undecodable", interval="0.3"),
        f"{name}: unknown frame ignored: unknown event type 'listStatus' "
        + FIRST.format(kind="unknown", interval="0.3"),
        f"{name}: malformed frame refused: $.B[0].f: a balance cannot be negative, got -1 "
        + FIRST.format(kind="malformed", interval="0.3"),
    ]
    summaries = [line for line in lines if line not in firsts]
    assert summaries  # the counts came as summaries, after the first of each kind
    assert all(
        re.fullmatch(
            rf"{re.escape(name)}: \d+ more \w+ frames? (refused|ignored) in the last [0-9.]+s \(latest: .+\)",
            line,
        )
        for line in summaries
    )
    # and every frame's detail is still at DEBUG, in order
    assert len(details(caplog)) == 10


# --- `userstream watch`, as a user meets it ------------------------------------------------------------

FAST = ["--backoff-base", "0.01", "--backoff-cap", "0.05", "--ping-interval", "1", "--idle-timeout", "5"]


def environment(**credentials: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("USERSTREAM_")}
    env.update(credentials)
    return env


async def watch_until_one_line(
    *args: str, env: dict[str, str], until: Callable[[], Any]
) -> tuple[bytes, str]:
    """Run `userstream watch` at its default log level, do `until()`, read one line of stdout, stop it with
    SIGTERM; (the line, stderr). The exit status must be 0."""
    process = await userstream("watch", *args, env=env, stdin=asyncio.subprocess.DEVNULL)
    try:
        await until()
        assert process.stdout is not None
        async with asyncio.timeout(2 * WAIT):
            line = (await process.stdout.readline()).rstrip(b"\n")
    finally:
        process.send_signal(signal.SIGTERM)
    _, stderr = await finish(process, 2 * WAIT)
    assert process.returncode == 0
    return line, stderr.decode()


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("userstream watch: WARNING: ")]


async def test_watch_reports_a_garbage_frame_on_stderr_at_the_default_level() -> None:
    async def nothing() -> None:
        pass

    async with coinlocally_peer(["{not json", balance_frame("7")]) as url:
        line, stderr = await watch_until_one_line(
            "coinlocally",
            "--ws-url",
            url,
            *FAST,
            env=environment(USERSTREAM_COINLOCALLY_TOKEN="tok-SECRET"),
            until=nothing,
        )
    assert json.loads(line)["free"] == "7"  # the stream went on past the garbage
    assert warning_lines(stderr) == [
        "userstream watch: WARNING: coinlocally/default connection=1: undecodable frame refused: frame is "
        "not JSON: JSON is malformed: object keys must be strings (byte 1) "
        + FIRST.format(kind="undecodable", interval=60)
    ]
    assert "tok-SECRET" not in stderr


async def test_watch_reports_an_impossible_value_from_the_emulator_on_stderr(lab: Lab) -> None:
    async with lab() as env:

        async def ingest() -> None:
            await env.until_streaming()
            await env.ingest([negative_balance(2), env.balance(3)])

        credentials = environment(
            USERSTREAM_BITMUSA_API_KEY=env.alice.bitmusa_api_key,
            USERSTREAM_BITMUSA_AUTH_KEY=env.alice.bitmusa_auth_key,
        )
        urls = ["--rest-url", env.server.base_url, "--ws-url", env.server.ws_url]
        line, stderr = await watch_until_one_line(
            "bitmusa", *urls, "--account", "alice", *FAST, env=credentials, until=ingest
        )
    assert json.loads(line)["free"] == "3.5"
    assert warning_lines(stderr) == [
        "userstream watch: WARNING: bitmusa/alice connection=1: malformed frame refused: $.data.free: a "
        "balance cannot be negative, got -2.5 " + FIRST.format(kind="malformed", interval=60)
    ]


@pytest.mark.parametrize("interval", [0, -1.0, "60"])
async def test_the_warning_interval_must_be_a_positive_number(interval: Any) -> None:
    with pytest.raises(ConfigurationError) as raised:
        connect("coinlocally", token="t", warning_interval=interval)
    assert str(raised.value) == (f"warning_interval must be a positive number of seconds, not {interval!r}")
