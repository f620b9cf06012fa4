"""The client's connection logic against adversarial exchanges, scripted by hypothesis: Coinlocally (below)
and Bitmusa (at the end: a listenKey REST API answering 401, 429, 500, garbage, a wrong shape or "not found"
to any POST, and a stream of data, garbage, protocol pings and every ending, with the key rules of its own).

Each example is a list of connections, each a script the fake exchange plays on one WebSocket: control
replies in any order, missing, doubled or in any wire form ("connect success" twice, "sub success" gzip,
JSON-quoted, late or never), unsolicited pongs, server pings, data frames before the sub, garbage text and
binary, unknown events, then one ending: silence (the client must find the connection dead), a close with
any code, a TCP abort, the SYSTEM notice, an error reply, or a pause past every timeout followed by a
late "sub success". A connection may also be refused at the handshake with any status. Timings are short
(sub 0.3 s, idle 0.3 s, backoff 10-20 ms), so every example ends in a few seconds at most.

What must hold, whatever the script:

- the client never crashes or hangs: within a bounded time it has either reconnected after the last
  script, or raised a typed error (`AuthenticationError`, after `auth_attempts` consecutive rejections
  counted exactly as the client's documented rule says: a handshake refused with 401/403, an error reply
  in any shape (ours, an exchange's own JSON, plain text), a 4004 close, or before the connection went live
  any 4000-4999 close (docs/client.md, "Refusals in any shape"); a connection that went live resets the
  count);
- it delivers exactly the data the server sent, in order, once: every event sent before a clean ending,
  and a prefix of what was sent before a TCP abort or after the late pause (the network may lose those);
- a server ping on a connection left open is answered with its pong;
- no status or error shows the token, nothing is logged at ERROR, and no task ends with an unhandled
  exception.

This is a fake *exchange*, not a stand-in for any of our own code.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from userstream.client import State, StatusEvent, UserStream, connect
from userstream.errors import AuthenticationError, ConfigurationError, UserStreamError
from userstream.events import BalanceUpdate
from userstream.protocol.coinlocally import WS_PATH

FUZZ = settings(settings.get_profile("userstream-fuzz-io"))
ServerLog = Any  # conftest.ServerLog

TOKEN = "adversary-token-SECRET"
BASE_TIME = 1_700_703_548_000
AUTH_ATTEMPTS = 2
CLIENT_OPTIONS: dict[str, Any] = {
    "sub_timeout": 0.3,
    "ping_interval": 0.1,
    "idle_timeout": 0.3,
    "backoff_base": 0.01,
    "backoff_cap": 0.02,
    "close_timeout": 0.3,
    "request_timeout": 2.0,
    "auth_attempts": AUTH_ATTEMPTS,
    "rotate_after": None,
    "resync": False,
}
LATE = 0.6  # past both the sub timeout and the idle timeout, with room for a slow machine
SCENARIO_LIMIT = 20.0  # the bound on one example; reaching it is a hang, and fails the test

SUB_SUCCESS = ("sub", "sub_gz", "sub_quoted")
FRAMES: dict[str, str | bytes] = {
    "connect": "connect success",
    "connect_gz": gzip.compress(b"connect success"),
    "connect_quoted": '"connect success"',
    "sub": "sub success",
    "sub_gz": gzip.compress(b"sub success"),
    "sub_quoted": '"sub success"',
    "pong": '{"pong": 1713338308233}',
    "unknown_event": gzip.compress(b'{"e":"listStatus","E":1564034571105}'),
    "not_json": "{this is not json",
    "empty": "",
    "order_shaped_wrong": gzip.compress(b'{"e":"executionReport","E":1,"s":5}'),
}
CLOSE_CODES = (1000, 1001, 1011, 3000, 4000, 4001, 4002, 4003, 4004, 4005, 4321)
#: Refusals in shapes other than ours (issue 12), played as an ending like "error".
OTHER_REFUSALS: dict[str, str] = {
    "error_text_code": '{"event":"error","code":"x"}',
    "error_exchange_shape": '{"code":"10002","msg":"token invalid"}',
    "error_plain_text": "token invalid",
}

# --- scripts ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    """What the fake exchange does on one connection: refuse it, or play `actions` then `ending`."""

    refuse: int | None = None
    actions: tuple[Any, ...] = ()
    ending: Any = "silence"


actions = st.one_of(
    st.sampled_from(sorted(FRAMES)),
    st.just("data"),
    st.just("data_text"),
    st.integers(min_value=0, max_value=2**53).map(lambda n: ("ping", n)),
    st.binary(min_size=1, max_size=60).map(lambda b: ("garbage", b)),
    st.text(min_size=1, max_size=60).map(lambda t: ("garbage", t)),
)
endings = st.one_of(
    st.sampled_from(["silence", "abort", "system", "error", "late", *OTHER_REFUSALS]),
    st.sampled_from(CLOSE_CODES).map(lambda code: ("close", code)),
)
scripts = st.lists(
    st.one_of(
        st.builds(lambda a, e: Script(actions=tuple(a), ending=e), st.lists(actions, max_size=8), endings),
        st.sampled_from([401, 403, 404, 429, 500, 503]).map(lambda status: Script(refuse=status)),
    ),
    min_size=1,
    max_size=4,
)


def fatal(plan: list[Script]) -> tuple[int, type[UserStreamError]] | None:
    """The connection at which the client must give up, by its documented rule, and the error it raises;
    or None. Rejections: see the module docstring. A wrong URL: on a stream never live, a handshake refused
    with 404 `AUTH_ATTEMPTS` times in a row (any other ending in between starts the count again)."""
    rejections = not_found = 0
    ever_live = False
    for index, script in enumerate(plan):
        if script.refuse == 404 and not ever_live:
            not_found += 1
            if not_found >= AUTH_ATTEMPTS:
                return index, ConfigurationError
            continue
        not_found = 0
        if script.refuse is not None:
            rejections += script.refuse in (401, 403)
        else:
            live = any(action in SUB_SUCCESS for action in script.actions)
            if live:
                rejections = 0  # the connection went live
                ever_live = True
            ending = script.ending
            refused_by_close = isinstance(ending, tuple) and (
                ending[1] == 4004 or (not live and 4000 <= ending[1] <= 4999)
            )
            rejections += ending == "error" or ending in OTHER_REFUSALS or refused_by_close
        if rejections >= AUTH_ATTEMPTS:
            return index, AuthenticationError
    return None


def fatal_at(plan: list[Script]) -> int | None:
    """The connection at which the client must give up, or None."""
    found = fatal(plan)
    return None if found is None else found[0]


# --- the fake exchange -----------------------------------------------------------------------------------


@dataclass
class Played:
    """What the exchange did on one connection: data sent for sure, data that may be lost, pings."""

    certain: list[int] = field(default_factory=list)
    uncertain: list[int] = field(default_factory=list)
    pings: list[int] = field(default_factory=list)
    pongs: list[int] = field(default_factory=list)
    left_open: bool = False  # the ending was silence: the client must have read everything, pings too


class Adversary:
    def __init__(self, plan: list[Script]) -> None:
        self.plan = plan
        self.handshakes = 0
        self.played: list[Played] = []
        self.changed = asyncio.Event()
        self._next_data = 1

    def _data(self, n: int, text: bool) -> str | bytes:
        message = json.dumps(
            {
                "e": "outboundAccountPosition",
                "E": BASE_TIME + n,
                "u": 1,
                "B": [{"a": "USDT", "f": str(n), "l": "0"}],
            }
        )
        return message if text else gzip.compress(message.encode())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        index = self.handshakes
        self.handshakes += 1
        self.changed.set()
        if index >= len(self.plan):
            return web.Response(status=503, text="the scripts are over")
        script = self.plan[index]
        if script.refuse is not None:
            return web.Response(status=script.refuse, text='{"event":"error","code":1,"message":"refused"}')
        played = Played()
        self.played.append(played)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)

        async def read() -> None:
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    try:
                        decoded = json.loads(message.data)
                    except ValueError:
                        continue
                    if isinstance(decoded, dict) and "pong" in decoded:
                        played.pongs.append(decoded["pong"])

        reader = asyncio.create_task(read())
        try:
            await self._play(ws, request, script, played)
            await reader  # until the client leaves (or the test ends and cancels us)
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            pass  # the client left in the middle: what was sent is recorded
        finally:
            reader.cancel()
        return ws

    async def _send(self, ws: web.WebSocketResponse, frame: str | bytes) -> None:
        if isinstance(frame, str):
            await ws.send_str(frame)
        else:
            await ws.send_bytes(frame)

    async def _play(
        self, ws: web.WebSocketResponse, request: web.Request, script: Script, played: Played
    ) -> None:
        certain = script.ending != "abort"  # an abort may discard what is still in the send buffer
        for action in script.actions:
            await self._act(ws, action, played, certain)
        ending = script.ending
        if ending == "silence":
            played.left_open = True
        elif ending == "abort":
            assert request.transport is not None
            request.transport.abort()
        elif ending == "system":
            await ws.send_bytes(gzip.compress(b'{"uid":24005174,"channel":"SYSTEM","et":"close"}'))
        elif ending == "error":
            await ws.send_str('{"event":"error","code":401002,"message":"sub rejected"}')
        elif ending in OTHER_REFUSALS:
            await ws.send_str(OTHER_REFUSALS[ending])
        elif ending == "late":
            await asyncio.sleep(LATE)
            await ws.send_str("sub success")
            await self._act(ws, "data", played, certain=False)
        else:
            _, code = ending
            await ws.close(code=code, message=b"scripted close")

    async def _act(self, ws: web.WebSocketResponse, action: Any, played: Played, certain: bool) -> None:
        if action in ("data", "data_text"):
            n = self._next_data
            self._next_data += 1
            await self._send(ws, self._data(n, text=action == "data_text"))
            (played.certain if certain else played.uncertain).append(n)
        elif isinstance(action, tuple) and action[0] == "ping":
            await ws.send_str(json.dumps({"ping": action[1]}))
            played.pings.append(action[1])
        elif isinstance(action, tuple):
            await self._send(ws, action[1])
        else:
            await self._send(ws, FRAMES[action])


@asynccontextmanager
async def serving(adversary: Adversary) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get(WS_PATH, adversary.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"ws://127.0.0.1:{port}{WS_PATH}"
    finally:
        await runner.cleanup()


# --- one example -----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    delivered: list[int]
    error: BaseException | None
    statuses: list[StatusEvent]
    handshakes: int
    played: list[Played]
    loop_errors: list[str]


async def play(plan: list[Script]) -> Outcome:
    loop_errors: list[str] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: loop_errors.append(str(context)))
    adversary = Adversary(plan)
    statuses: list[StatusEvent] = []
    async with serving(adversary) as url:
        stream = connect("coinlocally", token=TOKEN, ws_url=url, on_status=statuses.append, **CLIENT_OPTIONS)
        delivered, error = await consume_until_played(stream, adversary, len(plan))
    return Outcome(delivered, error, statuses, adversary.handshakes, adversary.played, loop_errors)


async def consume_until_played(
    stream: UserStream, adversary: Adversary, scripts: int
) -> tuple[list[int], BaseException | None]:
    """Consume `stream` until the adversary has played its `scripts` and the client reconnected once more
    (or the consumer ended), then take what the connections parsed. Returns the delivered event numbers
    and the consumer's error, if it ended with one."""
    delivered: list[int] = []
    async with stream:

        async def consume() -> None:
            async for event in stream:
                assert isinstance(event, BalanceUpdate)
                delivered.append(event.timestamp - BASE_TIME)

        consumer = asyncio.create_task(consume())
        async with asyncio.timeout(SCENARIO_LIMIT):
            while not consumer.done() and adversary.handshakes <= scripts:
                adversary.changed.clear()
                changed = asyncio.create_task(adversary.changed.wait())
                await asyncio.wait({consumer, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
            # Everything the connections parsed is in the queue: let the consumer take it all.
            while not consumer.done() and len(delivered) < stream.stats.events_received:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
        if consumer.done():
            return delivered, consumer.exception()
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
    return delivered, None


def check_delivery(outcome: Outcome) -> None:
    delivered = outcome.delivered
    assert delivered == sorted(set(delivered)), delivered  # in order, each once
    sent = {n for played in outcome.played for n in (*played.certain, *played.uncertain)}
    assert set(delivered) <= sent  # nothing invented
    for played in outcome.played:
        assert set(played.certain) <= set(delivered), (played, delivered)
        lost = [n for n in played.uncertain if n not in delivered]
        kept = [n for n in played.uncertain if n in delivered]
        assert kept == played.uncertain[: len(kept)], played  # what may be lost is lost from the end only
        assert not lost or lost == played.uncertain[len(kept) :]


@FUZZ
@given(plan=scripts)
def test_the_client_survives_any_coinlocally_server_script(server_log: ServerLog, plan: list[Script]) -> None:
    outcome = asyncio.run(play(plan))
    assert outcome.loop_errors == []
    assert [r.getMessage() for r in server_log.records if r.levelno >= logging.ERROR] == []
    expected = fatal(plan)
    expected_fatal = None if expected is None else expected[0]
    if expected is None:
        assert outcome.error is None, outcome.error
        assert outcome.handshakes == len(plan) + 1  # it reconnected after the last script
    else:
        assert isinstance(outcome.error, expected[1]), outcome.error
        assert outcome.handshakes == expected_fatal + 1  # and never tried again
        assert outcome.statuses[-1].state is State.FATAL
    if outcome.error is not None:
        assert isinstance(outcome.error, UserStreamError)
        assert TOKEN not in str(outcome.error)
    check_delivery(outcome)
    for played in outcome.played:
        if played.left_open:
            assert played.pongs == played.pings  # answered, in order, before the client left
    for status in outcome.statuses:
        assert TOKEN not in status.describe()
    assert [s.state for s in outcome.statuses].count(State.FATAL) == (expected_fatal is not None)


def test_the_oracle_counts_rejections_as_the_client_documents() -> None:
    live_then_error = Script(actions=("sub",), ending="error")
    error_before_live = Script(actions=("connect",), ending="error")
    assert fatal_at([Script(refuse=401), Script(refuse=403)]) == 1
    assert fatal_at([Script(refuse=401), Script(refuse=500), Script(refuse=401)]) == 2
    assert fatal_at([error_before_live, live_then_error]) is None  # going live reset the count
    assert fatal_at([error_before_live, Script(ending=("close", 4004))]) == 1
    assert fatal_at([Script(refuse=401), Script(actions=("sub",)), Script(refuse=401)]) is None
    # issue 12: a 4xxx close before live is a refusal, after live only 4004 is; other shapes count too
    assert fatal_at([Script(refuse=401), Script(ending=("close", 4000))]) == 1
    assert fatal_at([Script(refuse=401), Script(actions=("sub",), ending=("close", 4000))]) is None
    assert fatal_at([Script(ending="error_plain_text"), Script(ending="error_exchange_shape")]) == 1
    # issue 12: the same 404 twice in a row on a stream never live is a wrong URL
    assert fatal([Script(refuse=404), Script(refuse=404)]) == (1, ConfigurationError)
    assert fatal([Script(refuse=404), Script(refuse=500), Script(refuse=404)]) is None
    assert fatal([Script(actions=("sub",)), Script(refuse=404), Script(refuse=404)]) is None


async def test_scripted_examples_that_once_mattered(server_log: ServerLog) -> None:
    """A few hand-picked scripts, so the important cases run on every run whatever hypothesis draws."""
    plans = [
        [Script(actions=("connect", "connect", "data", "sub", "sub_gz", "data"), ending=("close", 1001))],
        [Script(actions=("data", "pong", ("ping", 7), "data"), ending="late")],
        [Script(actions=("sub_quoted", ("garbage", b"\x1f\x8b\x00"), "data"), ending="system")],
        [Script(actions=("sub", "data", "data"), ending="abort"), Script(refuse=503)],
        [Script(actions=("sub", ("ping", 9)), ending="silence")],
        [Script(actions=("data",), ending="error"), Script(ending=("close", 4004))],
    ]
    for plan in plans:
        outcome = await play(plan)
        check_delivery(outcome)
        assert outcome.loop_errors == []
        assert (outcome.error is not None) == (fatal_at(plan) is not None)
    assert [r for r in server_log.records if r.levelno >= logging.ERROR] == []


# --- Bitmusa: an adversarial listenKey REST API and stream -----------------------------------------------

BITMUSA_CREDENTIALS = {"api_key": "adversary-api-SECRET", "auth_key": "adversary-auth-SECRET"}
BITMUSA_OPTIONS: dict[str, Any] = {**CLIENT_OPTIONS, "ping_interval": 0.1, "keepalive_interval": 1800.0}
del BITMUSA_OPTIONS["sub_timeout"]
#: What a listenKey POST may be answered with; "ok" is a fresh key.
REST_REPLIES = ("ok", 401, 429, 500, "garbage", "wrong_shape", "not_found")
BITMUSA_ENDINGS = st.one_of(
    st.sampled_from(["silence", "abort", "late"]),
    st.sampled_from((1000, 1001, 1011, 4000, 4001, 4002, 4005, 4321)).map(lambda code: ("close", code)),
)
BITMUSA_FRAMES: dict[str, str | bytes] = {
    "unknown_stream": '{"stream":"spot_margin","eventTime":1700703548846,"data":{}}',
    "wrong_shape": '{"stream":"spot_wallet","eventTime":-1,"data":{"asset":5}}',
    "control_word": "connect success",
    "gzip_text": gzip.compress(b'{"stream":"spot_wallet"}'),
    "not_json": "{oops",
}
bitmusa_actions = st.one_of(
    st.sampled_from(sorted(BITMUSA_FRAMES)),
    st.just("data"),
    st.just("protocol_ping"),
    st.binary(min_size=1, max_size=60).map(lambda b: ("garbage", b)),
    st.text(min_size=1, max_size=60).map(lambda t: ("garbage", t)),
)
bitmusa_plans = st.tuples(
    st.lists(st.sampled_from(REST_REPLIES), max_size=4),
    st.lists(
        st.one_of(
            st.builds(
                lambda a, e: Script(actions=tuple(a), ending=e),
                st.lists(bitmusa_actions, max_size=6),
                BITMUSA_ENDINGS,
            ),
            st.sampled_from([400, 401, 403, 404, 429, 500, 503]).map(lambda status: Script(refuse=status)),
        ),
        min_size=1,
        max_size=4,
    ),
)


def bitmusa_fatal_at(rest: list[Any], plan: list[Script]) -> int | None:
    """The number of WebSocket handshakes made when the client must give up (rejected credentials, by its
    documented rule), or None. A key is created (POST) only when none is held; it is forgotten when a
    handshake is refused with a 4xx other than 429 or a close says it lapsed (4001) or was deleted (4002);
    a 401 to the POST is a rejection; a connection that goes live (Bitmusa: at the handshake) resets the
    count."""
    found = bitmusa_fatal(rest, plan)
    return None if found is None else found[0]


def bitmusa_fatal(rest: list[Any], plan: list[Script]) -> tuple[int, type[UserStreamError]] | None:
    """`bitmusa_fatal_at` and the error raised. Besides rejections (issue 12): on a stream never live, a
    handshake refused with 404 `AUTH_ATTEMPTS` times in a row is a wrong URL (`ConfigurationError`; any other
    failure in between, a POST's too, starts the count again); a close with a 4xxx code that is not ours
    gets one fresh key (a POST), and the same close on that key again keeps it."""
    key, replies, handshakes, rejections = False, iter(rest), 0, 0
    not_found, ever_live, renewing_for_close, key_renewed_for_close = 0, False, False, False
    while True:
        if not key:
            reply = next(replies, "ok")
            if reply != "ok":
                not_found = 0
            if reply == 401:
                rejections += 1
                if rejections >= AUTH_ATTEMPTS:
                    return handshakes, AuthenticationError
                continue
            if reply != "ok":
                continue
            key = True
            key_renewed_for_close, renewing_for_close = renewing_for_close, False
        if handshakes >= len(plan):
            return None  # the scripts are over: the test ends at this handshake
        script = plan[handshakes]
        handshakes += 1
        if script.refuse is not None:
            key = key and not (400 <= script.refuse < 500 and script.refuse != 429)
            if script.refuse == 404 and not ever_live:
                not_found += 1
                if not_found >= AUTH_ATTEMPTS:
                    return handshakes, ConfigurationError
            else:
                not_found = 0
            continue
        rejections = not_found = 0
        ever_live = True
        ending = script.ending
        if ending in (("close", 4001), ("close", 4002)):
            key = False
        elif (
            isinstance(ending, tuple)
            and 4000 <= ending[1] <= 4999
            and ending[1] not in (4000, 4005)
            and not key_renewed_for_close
        ):
            key, renewing_for_close = False, True


class BitmusaAdversary(Adversary):
    """The listenKey REST API answers from `rest` (then "ok"), the stream plays `plan`."""

    def __init__(self, rest: list[Any], plan: list[Script]) -> None:
        super().__init__(plan)
        self.rest = list(rest)
        self.posts = 0
        self.headers_seen: list[str] = []

    async def listen_key(self, request: web.Request) -> web.Response:
        self.headers_seen.append(request.headers.get("x-api-key", ""))
        reply = self.rest[self.posts] if self.posts < len(self.rest) else "ok"
        self.posts += 1
        if reply == "ok":
            body = {"data": {"listenKey": f"key{self.posts}"}, "code": 0, "message": "success"}
            return web.json_response(body)
        if reply == 401:
            return web.json_response({"code": 401001, "message": "invalid api key or auth key"}, status=401)
        if reply == 429:
            return web.json_response(
                {"code": 429001, "message": "slow down"}, status=429, headers={"Retry-After": "1"}
            )
        if reply == 500:
            return web.Response(status=500, text="oops")
        if reply == "garbage":
            return web.Response(body=b"\x00\xffnot json")
        if reply == "wrong_shape":
            return web.json_response({"data": {"listenKey": 5}, "code": 0})
        return web.json_response({"code": 404001, "message": "no such key"})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        index = self.handshakes
        self.handshakes += 1
        self.changed.set()
        if index >= len(self.plan):
            return web.Response(status=503, text="the scripts are over")
        script = self.plan[index]
        if script.refuse is not None:
            return web.json_response({"code": 1, "message": "refused"}, status=script.refuse)
        played = Played()
        self.played.append(played)
        ws = web.WebSocketResponse(autoping=False)  # silence must be silence: no pongs either
        await ws.prepare(request)
        reader = asyncio.create_task(self._drain(ws))
        try:
            await self._play_bitmusa(ws, request, script, played)
            await reader
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            pass
        finally:
            reader.cancel()
        return ws

    @staticmethod
    async def _drain(ws: web.WebSocketResponse) -> None:
        async for _ in ws:
            pass

    def _wallet(self, n: int) -> str:
        data = {"asset": "USDT", "free": str(n), "locked": "0"}
        return json.dumps({"data": data, "stream": "spot_wallet", "eventTime": BASE_TIME + n})

    async def _bitmusa_act(
        self, ws: web.WebSocketResponse, action: Any, played: Played, certain: bool
    ) -> None:
        if action == "data":
            n = self._next_data
            self._next_data += 1
            await ws.send_str(self._wallet(n))
            (played.certain if certain else played.uncertain).append(n)
        elif action == "protocol_ping":
            await ws.ping(b"are you there")
        elif isinstance(action, tuple):
            await self._send(ws, action[1])
        else:
            await self._send(ws, BITMUSA_FRAMES[action])

    async def _play_bitmusa(
        self, ws: web.WebSocketResponse, request: web.Request, script: Script, played: Played
    ) -> None:
        certain = script.ending != "abort"
        for action in script.actions:
            await self._bitmusa_act(ws, action, played, certain)
        if script.ending == "silence":
            played.left_open = True
        elif script.ending == "abort":
            assert request.transport is not None
            request.transport.abort()
        elif script.ending == "late":
            await asyncio.sleep(LATE)
            await self._bitmusa_act(ws, "data", played, certain=False)
        else:
            await ws.close(code=script.ending[1], message=b"scripted close")


async def play_bitmusa(rest: list[Any], plan: list[Script]) -> tuple[Outcome, BitmusaAdversary]:
    loop_errors: list[str] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: loop_errors.append(str(context)))
    adversary = BitmusaAdversary(rest, plan)
    app = web.Application()
    app.router.add_post("/spot/userDataStream", adversary.listen_key)
    app.router.add_get("/ws/spot/{key}", adversary.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    statuses: list[StatusEvent] = []
    try:
        stream = connect(
            "bitmusa",
            rest_url=base,
            ws_url=base.replace("http", "ws"),
            on_status=statuses.append,
            **BITMUSA_CREDENTIALS,
            **BITMUSA_OPTIONS,
        )
        delivered, error = await consume_until_played(stream, adversary, len(plan))
    finally:
        await runner.cleanup()
    outcome = Outcome(delivered, error, statuses, adversary.handshakes, adversary.played, loop_errors)
    return outcome, adversary


@FUZZ
@given(scenario=bitmusa_plans)
def test_the_client_survives_any_bitmusa_server_script(
    server_log: ServerLog, scenario: tuple[list[Any], list[Script]]
) -> None:
    rest, plan = scenario
    outcome, adversary = asyncio.run(play_bitmusa(rest, plan))
    assert outcome.loop_errors == []
    assert [r.getMessage() for r in server_log.records if r.levelno >= logging.ERROR] == []
    found = bitmusa_fatal(rest, plan)
    if found is None:
        assert outcome.error is None, outcome.error
        assert outcome.handshakes == len(plan) + 1
    else:
        expected, error = found
        assert isinstance(outcome.error, error), outcome.error
        if isinstance(outcome.error, AuthenticationError):
            assert outcome.error.rejected == "listenKey request"
        assert outcome.handshakes == expected
    check_delivery(outcome)
    secrets = tuple(BITMUSA_CREDENTIALS.values())
    shown = [str(outcome.error or "")] + [status.describe() for status in outcome.statuses]
    assert not [text for text in shown for secret in secrets if secret in text]
    assert set(adversary.headers_seen) <= {BITMUSA_CREDENTIALS["api_key"]}


def test_the_bitmusa_oracle_follows_the_key_rules() -> None:
    live = Script(actions=("data",), ending="silence")
    assert bitmusa_fatal_at([401, 401], [live]) == 0
    assert bitmusa_fatal_at([401, 500, 401], [live]) == 0  # failures that are not rejections do not reset
    assert bitmusa_fatal_at([401], [live]) is None
    # Live resets the count; a 4001 close forgets the key, so the next attempt POSTs again.
    lapsed = Script(ending=("close", 4001))
    assert bitmusa_fatal_at(["ok", 401, 401], [lapsed, live]) == 1
    assert bitmusa_fatal_at(["ok", 401, 401], [Script(ending=("close", 1001)), live]) is None  # key kept
    assert bitmusa_fatal_at(["ok", 401, 401], [Script(refuse=404), live]) == 1
    assert bitmusa_fatal_at(["ok", 401, 401], [Script(refuse=429), live]) is None
    # issue 12: an unknown 4xxx close gets one fresh key; the same close on that key keeps it
    unknown_close = Script(ending=("close", 4321))
    assert bitmusa_fatal_at(["ok", "ok", 401, 401], [unknown_close, unknown_close, live]) is None
    assert bitmusa_fatal_at(["ok", 401, 401], [unknown_close, live]) == 1
    # ... and two 404 handshakes in a row on a stream never live are a wrong URL
    assert bitmusa_fatal([], [Script(refuse=404), Script(refuse=404)]) == (2, ConfigurationError)
    assert bitmusa_fatal(["ok", 500], [Script(refuse=404), Script(refuse=404), live]) is None
