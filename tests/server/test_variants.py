"""`serve --variant`: each variant's exact wire behaviour, seen by third-party clients (websockets, aiohttp).

Every variant of `userstream.server.variants.VARIANTS` is exercised here at least once, and docs/server.md
lists exactly those variants.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import re
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from support.processes import finish, reaped, userstream
from userstream.errors import ConfigurationError
from userstream.server import Account, ServerConfig
from userstream.server.command import add_parser, build_config
from userstream.server.config import load_accounts_file
from userstream.server.variants import VARIANTS, java_decimal, merge_variants, parse_variants

Kit = Any  # conftest.Kit
Start = Callable[..., AbstractAsyncContextManager[Any]]

TOKEN = "alice-coinlocally-token"
WAIT = 5.0
DOCS = Path(__file__).resolve().parents[2] / "docs" / "server.md"


def variants(*names: str) -> dict[str, Any]:
    return {"variants": names}


async def recv(ws: Any) -> str | bytes:
    async with asyncio.timeout(WAIT):
        frame: str | bytes = await ws.recv()
    return frame


async def drain(ws: Any) -> list[str | bytes]:
    """Every frame until the close."""
    frames: list[str | bytes] = []
    try:
        while True:
            frames.append(await recv(ws))
    except ConnectionClosed:
        return frames


async def closed_with(ws: Any) -> tuple[int | None, str | None]:
    async with asyncio.timeout(WAIT):
        await ws.wait_closed()
    rcvd = ws.close_exc.rcvd
    return (None, None) if rcvd is None else (rcvd.code, rcvd.reason)


def coinlocally(kit: Kit, headers: dict[str, str]) -> Any:
    return connect(
        kit.server.ws_url + "/spotws_user/userData/ws", additional_headers=headers, ping_interval=None
    )


# --- parsing and configuration --------------------------------------------------------------------------


def test_parsing_takes_names_and_values_and_names_what_is_wrong() -> None:
    parsed = parse_variants(["coinlocally-server-ping=0.25", "bitmusa-expired-close", "numbers-as-strings"])
    assert parsed.names == [
        "bitmusa-expired-close=4401",
        "coinlocally-server-ping=0.25",
        "numbers-as-strings",
    ]
    assert parsed.server_ping_interval == 0.25
    assert parsed.expired_close_code(4001) == 4401
    assert not parse_variants([])
    cases = {
        "nope": "unknown variant 'nope' (known: ",
        "numbers-exponent=1": "variant 'numbers-exponent' takes no value",
        "bitmusa-expired-close=1006": "variant 'bitmusa-expired-close': CODE must be a close code "
        "(1000, 1001, 1008, 1011, 1013 or 3000-4999), not '1006'",
        "coinlocally-refusal-code-msg=abc": "variant 'coinlocally-refusal-code-msg': CODE must be a close",
        "coinlocally-server-ping=0": "variant 'coinlocally-server-ping': SECONDS must be in (0, 3600], not",
    }
    for spec, message in cases.items():
        with pytest.raises(ConfigurationError, match="^" + re.escape(message)):
            parse_variants([spec])
    with pytest.raises(
        ConfigurationError,
        match=r"^variants 'numbers-as-strings' and 'numbers-as-numbers' answer the same question",
    ):
        ServerConfig(accounts=make_accounts(), variants=("numbers-as-strings", "numbers-as-numbers"))


def make_accounts() -> Any:
    return (Account(name="a", uid=1, coinlocally_token="t"),)


def test_flags_override_the_accounts_files_variant_of_the_same_group(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(
        'variants = ["numbers-as-strings", "bitmusa-post-extends"]\n'
        '[[accounts]]\nname = "a"\nuid = 1\ncoinlocally_token = "t"\n'
    )
    accounts, file_variants = load_accounts_file(path)
    assert [account.name for account in accounts] == ["a"]
    assert file_variants == ("numbers-as-strings", "bitmusa-post-extends")
    assert merge_variants(file_variants, ["numbers-exponent", "numbers-as-numbers"]) == (
        "bitmusa-post-extends",
        "numbers-exponent",
        "numbers-as-numbers",
    )
    parser = add_parser(_subparsers())
    args = parser.parse_args(
        ["--accounts", str(path), "--variant", "numbers-as-numbers", "--admin-token", "x"]
    )
    config, _ = build_config(args)
    assert config.variants == ("bitmusa-post-extends", "numbers-as-numbers")
    path.write_text('variants = ["nope"]\n[[accounts]]\nname = "a"\nuid = 1\ncoinlocally_token = "t"\n')
    with pytest.raises(ConfigurationError, match=f"^{re.escape(str(path))}: unknown variant 'nope'"):
        load_accounts_file(path)


def _subparsers() -> Any:
    return argparse.ArgumentParser().add_subparsers()


def test_docs_list_exactly_the_registered_variants() -> None:
    text = DOCS.read_text()
    section = text.split("## Variants", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z-]+)(?:=[A-Z]+)?` \|", section, flags=re.MULTILINE))
    assert documented == set(VARIANTS)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0.00002", "2.0E-5"),
        ("0.0000200", "2.0E-5"),
        ("-0.000123", "-1.23E-4"),
        ("12345678.9", "1.23456789E7"),
        ("10000000", "1.0E7"),
        ("9999999.99", "9999999.99"),
        ("0.001", "0.001"),
        ("13000.0000000000000000", "13000.0"),
        ("0.5155", "0.5155"),
        ("0", "0.0"),
        ("0.000000", "0.0"),
        ("1.00000000000000000000000000000000001E-9", "1.00000000000000000000000000000000001E-9"),
    ],
)
def test_java_style_decimals_keep_the_exact_value(value: str, text: str) -> None:
    assert java_decimal(Decimal(value)) == text
    assert Decimal(text) == Decimal(value)


# --- Coinlocally: refusal shapes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "reply", "close"),
    [
        ("coinlocally-refusal-code-msg", '{"code":"10002","msg":"token invalid"}', (4401, "token invalid")),
        (
            "coinlocally-refusal-code-msg=4100",
            '{"code":"10002","msg":"token invalid"}',
            (4100, "token invalid"),
        ),
        ("coinlocally-refusal-text", "token invalid", (1000, "")),
        ("coinlocally-refusal-close", None, (1008, "")),
        ("coinlocally-refusal-close=4999", None, (4999, "")),
    ],
)
@pytest.mark.parametrize("credential", ["unknown", "missing", "mismatched sub"])
async def test_a_refused_sub_has_the_variants_shape(
    start: Start, variant: str, reply: str | None, close: tuple[int, str], credential: str
) -> None:
    headers = {"token": "unknown-token"} if credential == "unknown" else {}
    if credential == "mismatched sub":
        headers = {"token": TOKEN}
    async with start(**variants(variant)) as kit, coinlocally(kit, headers) as ws:
        assert await recv(ws) == "connect success"  # the upgrade happened: the refusal comes at the sub
        await ws.send(
            json.dumps({"event": "sub", "token": "unknown-token" if credential != "missing" else "x"})
        )
        frames = await drain(ws)
        assert frames == ([] if reply is None else [reply])
        assert await closed_with(ws) == close
        assert kit.server.streams("alice") == 0


async def test_refusal_variants_answer_pings_before_the_sub_and_gzip_with_the_control_variant(
    start: Start,
) -> None:
    names = ("coinlocally-refusal-code-msg", "coinlocally-control-gzip", "coinlocally-pong-gzip")
    async with start(**variants(*names)) as kit, coinlocally(kit, {"token": "unknown"}) as ws:
        assert gzip.decompress(await recv(ws)) == b"connect success"
        await ws.send('{"ping":5}')
        pong = json.loads(gzip.decompress(await recv(ws)))
        assert list(pong) == ["pong"]
        await ws.send(json.dumps({"event": "sub", "token": "unknown"}))
        assert gzip.decompress(await recv(ws)) == b'{"code":"10002","msg":"token invalid"}'
        assert await closed_with(ws) == (4401, "token invalid")


async def test_without_a_refusal_variant_an_unknown_credential_is_refused_at_the_handshake(kit: Kit) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with coinlocally(kit, {"token": "unknown"}):
            pass
    assert refused.value.response.status_code == 401


# --- Coinlocally: control replies, pongs, server pings -------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "connect_success", "sub_success"),
    [
        ("coinlocally-control-quoted", '"connect success"', '"sub success"'),
        ("coinlocally-control-gzip", gzip.compress(b"connect success"), gzip.compress(b"sub success")),
    ],
)
async def test_control_replies(start: Start, variant: str, connect_success: Any, sub_success: Any) -> None:
    async with start(**variants(variant)) as kit, coinlocally(kit, {"token": TOKEN}) as ws:
        first = await recv(ws)
        await ws.send(json.dumps({"event": "sub", "token": TOKEN}))
        second = await recv(ws)
        if isinstance(connect_success, bytes):  # gzip headers carry a time: compare what they hold
            assert isinstance(first, bytes)
            assert isinstance(second, bytes)
            assert (gzip.decompress(first), gzip.decompress(second)) == (b"connect success", b"sub success")
        else:
            assert (first, second) == (connect_success, sub_success)
        await ws.send('{"ping":1}')
        assert isinstance(await recv(ws), str)  # the pong stays text: a separate variant


async def test_pong_as_gzip(start: Start) -> None:
    async with start(**variants("coinlocally-pong-gzip")) as kit, coinlocally(kit, {"token": TOKEN}) as ws:
        assert await recv(ws) == "connect success"
        await ws.send('{"ping":1713338308232}')
        frame = await recv(ws)
        assert isinstance(frame, bytes)
        pong = json.loads(gzip.decompress(frame))
        assert list(pong) == ["pong"]
        assert isinstance(pong["pong"], int)


async def test_server_pings_and_a_pong_keeps_the_connection_alive(start: Start) -> None:
    async with (
        start(
            heartbeat_timeout=0.6, **variants("coinlocally-server-ping=0.15", "coinlocally-pong-gzip")
        ) as kit,
        coinlocally(kit, {"token": TOKEN}) as ws,
    ):
        await kit.subscribe(ws, TOKEN)
        loop = asyncio.get_running_loop()
        started = loop.time()
        pings = 0
        while loop.time() - started < 1.5:  # two and a half heartbeat timeouts, answered by pongs only
            frame = await recv(ws)
            assert isinstance(frame, bytes)  # with coinlocally-pong-gzip the server's pings are gzip too
            ping = json.loads(gzip.decompress(frame))
            assert list(ping) == ["ping"]
            await ws.send(json.dumps({"pong": ping["ping"]}))
            pings += 1
        assert pings >= 5
        assert kit.server.streams("alice") == 1
        # stop answering: the heartbeat closes it as ever
        assert all(isinstance(frame, bytes) for frame in await drain(ws))  # pings, maybe, then the close
        assert await closed_with(ws) == (4003, "no ping within 0.6 s")


# --- Bitmusa -------------------------------------------------------------------------------------------


async def test_bitmusa_error_bodies_code_msg(start: Start) -> None:
    async with start(rate_limit_per_second=1, **variants("bitmusa-errors-code-msg")) as kit:
        status, body, headers = await kit.rest("POST", {"x-api-key": "nobody", "Authorization": "Bearer x"})
        assert (status, body) == (401, {"code": 401001, "msg": "invalid api key or auth key"})
        assert headers["Content-Type"] == "application/json"
        status, body, _ = await kit.rest("GET", {}, path="/ws/spot/not-a-key")
        assert (status, body) == (400, {"code": 400001, "msg": "expected a WebSocket upgrade"})
        with pytest.raises(InvalidStatus) as refused:
            async with connect(kit.server.ws_url + "/ws/spot/not-a-key"):
                pass
        assert refused.value.response.status_code == 404
        assert json.loads(refused.value.response.body) == {
            "code": 404001,
            "msg": "listenKey does not exist or has expired",
        }
        status, body, _ = await kit.rest("POST", kit.bitmusa_headers())  # a success is untouched
        assert (status, body["code"], body["message"]) == (200, 0, "success")
        status, body, headers = await kit.rest("POST", kit.bitmusa_headers())
        assert (status, body["code"], headers["Retry-After"]) == (429, 429001, "1")
        status, body, _ = await kit.rest(
            "GET", kit.bitmusa_headers(kit.bob), path="/spot/order/history?status=TRADING"
        )
        assert (status, body) == (400, {"code": 400001, "msg": "symbol is required"})


async def test_bitmusa_error_bodies_html(start: Start) -> None:
    async with start(**variants("bitmusa-errors-html")) as kit:
        async with kit.http.post(kit.server.base_url + "/spot/userDataStream") as reply:
            assert reply.status == 401
            assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
            assert await reply.text() == (
                "<html>\r\n<head><title>401 Unauthorized</title></head>\r\n<body>\r\n"
                "<center><h1>401 Unauthorized</h1></center>\r\n<hr><center>nginx</center>\r\n"
                "</body>\r\n</html>\r\n"
            )
        with pytest.raises(InvalidStatus) as refused:
            async with connect(kit.server.ws_url + "/ws/spot/not-a-key"):
                pass
        assert refused.value.response.status_code == 404
        assert b"<h1>404 Not Found</h1>" in refused.value.response.body
        # Coinlocally's refusals keep their own shape
        async with kit.http.get(kit.server.base_url + "/spotws_user/userData/ws") as reply:
            assert (reply.status, (await reply.json())["event"]) == (400, "error")


@pytest.mark.parametrize("extends", [False, True])
async def test_post_on_an_active_key_extends_it_only_in_the_variant(start: Start, extends: bool) -> None:
    settings = variants("bitmusa-post-extends") if extends else {}
    async with start(listen_key_ttl=0.8, **settings) as kit:
        key = await kit.create_listen_key()
        await asyncio.sleep(0.5)
        assert await kit.create_listen_key() == key  # the active key, either way
        await asyncio.sleep(0.5)  # 1.0 s after creation, 0.5 s after the POST
        assert kit.server.active_listen_key("alice") == (key if extends else None)


@pytest.mark.parametrize(
    ("variant", "code"), [("bitmusa-expired-close", 4401), ("bitmusa-expired-close=1000", 1000)]
)
async def test_an_expired_key_closes_with_the_variants_code(start: Start, variant: str, code: int) -> None:
    async with start(**variants(variant)) as kit:
        key = await kit.create_listen_key()
        async with kit.bitmusa_stream(key) as ws:
            await kit.server.wait_for_streams("alice")
            assert kit.server.expire_listen_key("alice") is True
            assert await closed_with(ws) == (code, "listenKey expired")
        key = await kit.create_listen_key()
        async with kit.bitmusa_stream(key) as ws:  # a DELETE keeps our 4002
            await kit.server.wait_for_streams("alice")
            await kit.rest("DELETE", kit.bitmusa_headers())
            assert await closed_with(ws) == (4002, "listenKey deleted")


# --- numbers --------------------------------------------------------------------------------------------

BALANCE = {"kind": "balance", "asset": "BTC", "free": "0.00002", "locked": "12345678.9", "timestamp": 1}
ORDER = {
    "kind": "order",
    "id": "7",
    "symbol": "BTC/USDT",
    "side": "buy",
    "status": "open",
    "price": "100",
    "amount": "1",
    "filled": "0",
    "cost": "0",
    "timestamp": 2,
}
_ORDER_REST = '"status":"TRADING","createdTime":null,"canceledTime":null,"completedTime":null}'


@pytest.mark.parametrize(
    ("names", "bitmusa_frames", "coinlocally_frames"),
    [
        (
            ("numbers-as-strings",),
            [
                '{"data":{"asset":"BTC","free":"0.00002","locked":"12345678.9"},"stream":"spot_wallet","eventTime":1}',
                '{"data":{"orderId":"7","symbol":"BTC/USDT","direction":"BUY","type":"LIMIT_PRICE","price":"100",'
                '"amount":"1","tradedAmount":"0","value":"0",'
                + _ORDER_REST
                + ',"stream":"spot_order","eventTime":2}',
            ],
            [
                '{"e":"outboundAccountPosition","E":1,"u":1,"B":[{"a":"BTC","f":"0.00002","l":"12345678.9"}]}',
                '{"e":"executionReport","E":2,"T":2,"S":"BUY","s":"BTCUSDT","X":"NEW","x":"NEW","i":"7","l":"0",'
                '"z":"0","L":"0","Z":"0","n":"0","o":"LIMIT","q":"1","p":"100","Q":"0","P":"0"}',
            ],
        ),
        (
            ("numbers-as-numbers",),
            [
                '{"data":{"asset":"BTC","free":0.00002,"locked":12345678.9},"stream":"spot_wallet","eventTime":1}',
                '{"data":{"orderId":"7","symbol":"BTC/USDT","direction":"BUY","type":"LIMIT_PRICE","price":100,'
                '"amount":1,"tradedAmount":0,"value":0,'
                + _ORDER_REST
                + ',"stream":"spot_order","eventTime":2}',
            ],
            [
                '{"e":"outboundAccountPosition","E":1,"u":1,"B":[{"a":"BTC","f":0.00002,"l":12345678.9}]}',
                '{"e":"executionReport","E":2,"T":2,"S":"BUY","s":"BTCUSDT","X":"NEW","x":"NEW","i":"7","l":0,'
                '"z":0,"L":0,"Z":0,"n":0,"o":"LIMIT","q":1,"p":100,"Q":0,"P":0}',
            ],
        ),
        (
            ("numbers-exponent",),
            [
                '{"data":{"asset":"BTC","free":"2.0E-5","locked":"1.23456789E7"},"stream":"spot_wallet","eventTime":1}',
                '{"data":{"orderId":"7","symbol":"BTC/USDT","direction":"BUY","type":"LIMIT_PRICE","price":100.0,'
                '"amount":1.0,"tradedAmount":0.0,"value":0.0,'
                + _ORDER_REST
                + ',"stream":"spot_order","eventTime":2}',
            ],
            [
                '{"e":"outboundAccountPosition","E":1,"u":1,"B":[{"a":"BTC","f":"2.0E-5","l":"1.23456789E7"}]}',
                '{"e":"executionReport","E":2,"T":2,"S":"BUY","s":"BTCUSDT","X":"NEW","x":"NEW","i":"7","l":"0.0",'
                '"z":"0.0","L":"0.0","Z":"0.0","n":"0.0","o":"LIMIT","q":"1.0","p":"100.0","Q":"0.0","P":"0.0"}',
            ],
        ),
        (
            ("numbers-exponent", "numbers-as-numbers"),
            [
                '{"data":{"asset":"BTC","free":2.0E-5,"locked":1.23456789E7},"stream":"spot_wallet","eventTime":1}',
                '{"data":{"orderId":"7","symbol":"BTC/USDT","direction":"BUY","type":"LIMIT_PRICE","price":100.0,'
                '"amount":1.0,"tradedAmount":0.0,"value":0.0,'
                + _ORDER_REST
                + ',"stream":"spot_order","eventTime":2}',
            ],
            [
                '{"e":"outboundAccountPosition","E":1,"u":1,"B":[{"a":"BTC","f":2.0E-5,"l":1.23456789E7}]}',
                '{"e":"executionReport","E":2,"T":2,"S":"BUY","s":"BTCUSDT","X":"NEW","x":"NEW","i":"7","l":0.0,'
                '"z":0.0,"L":0.0,"Z":0.0,"n":0.0,"o":"LIMIT","q":1.0,"p":100.0,"Q":0.0,"P":0.0}',
            ],
        ),
    ],
)
async def test_numbers_are_written_as_the_variant_says(
    start: Start, names: tuple[str, ...], bitmusa_frames: list[str], coinlocally_frames: list[str]
) -> None:
    async with start(**variants(*names)) as kit:
        key = await kit.create_listen_key()
        async with (
            kit.bitmusa_stream(key) as bitmusa_ws,
            coinlocally(kit, {"token": TOKEN}) as coinlocally_ws,
        ):
            await kit.subscribe(coinlocally_ws, TOKEN)
            await kit.server.wait_for_streams("alice", 2)
            assert await kit.ingest("alice", [BALANCE, ORDER]) == (200, {"accepted": 2})
            assert [await recv(bitmusa_ws) for _ in range(2)] == bitmusa_frames
            received = [await recv(coinlocally_ws) for _ in range(2)]
            assert [gzip.decompress(frame).decode() for frame in received] == coinlocally_frames


def test_every_variant_is_exercised_by_this_module() -> None:
    source = Path(__file__).read_text()
    started = set(re.findall(r'"((?:coinlocally|bitmusa|numbers)-[a-z-]+)(?:=\d+(?:\.\d+)?)?"', source))
    assert set(VARIANTS) <= started


# --- the command line -----------------------------------------------------------------------------------


async def test_serve_with_variants_says_so_and_answers_that_way() -> None:
    serve = await userstream(
        "serve", "--port", "0", "--admin-token", "x",
        "--variant", "coinlocally-control-quoted", "--variant", "bitmusa-expired-close=4100",
        environ={"PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    async with reaped(serve) as process:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            banner = [(await process.stdout.readline()).decode() for _ in range(6)]
        assert banner[5] == "  variants            bitmusa-expired-close=4100 coinlocally-control-quoted\n"
        base_url = banner[0].rsplit(" ", 1)[1].strip()
        token = await _demo_token(process)
        async with aiohttp.ClientSession() as http, http.get(base_url + "/healthz") as reply:
            assert (await reply.json())["variants"] == [
                "bitmusa-expired-close=4100",
                "coinlocally-control-quoted",
            ]
        async with connect(
            base_url.replace("http://", "ws://") + "/spotws_user/userData/ws",
            additional_headers={"token": token},
            ping_interval=None,
        ) as ws:
            assert await recv(ws) == '"connect success"'
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await process.wait() == 0


async def _demo_token(process: asyncio.subprocess.Process) -> str:
    """The generated demo account's coinlocally_token, from the accounts-file entry serve prints."""
    assert process.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = (await process.stdout.readline()).decode()
            if line.startswith("coinlocally_token = "):
                return line.split('"')[1]


async def test_an_unknown_variant_exits_2_naming_it() -> None:
    process = await userstream("serve", "--variant", "coinlocally-refusal-json")
    out, err = await finish(process, 30)
    assert (process.returncode, out) == (2, b"")
    assert err.decode().startswith(
        "userstream serve: unknown variant 'coinlocally-refusal-json' (known: bitmusa-"
    )


@pytest.mark.parametrize(
    ("names", "wallet", "orders"),
    [
        (
            ("numbers-as-strings",),
            '{"data":[{"asset":"BTC","free":"0.00002","locked":"12345678.9"}],"code":0,"message":"success"}',
            '"price":"100","amount":"1","tradedAmount":"0","value":"0"',
        ),
        (
            ("numbers-exponent", "numbers-as-numbers"),
            '{"data":[{"asset":"BTC","free":2.0E-5,"locked":1.23456789E7}],"code":0,"message":"success"}',
            '"price":100.0,"amount":1.0,"tradedAmount":0.0,"value":0.0',
        ),
    ],
)
async def test_rest_snapshots_write_numbers_as_the_streams_do(
    start: Start, names: tuple[str, ...], wallet: str, orders: str
) -> None:
    async with start(**variants(*names)) as kit:
        assert await kit.ingest("alice", [BALANCE, ORDER]) == (200, {"accepted": 2})
        base, headers = kit.server.base_url, kit.bitmusa_headers()
        async with kit.http.get(base + "/spot/wallet", headers=headers) as reply:
            assert (reply.status, await reply.text()) == (200, wallet)
        query = "/spot/order/history?status=TRADING&symbol=BTC/USDT"
        async with kit.http.get(base + query, headers=headers) as reply:
            assert reply.status == 200
            assert (
                '"type":"LIMIT_PRICE",' + orders + ',"status":"TRADING","createdTime":null'
            ) in await reply.text()


@pytest.mark.parametrize("variant", ["coinlocally-refusal-close", "coinlocally-refusal-text"])
async def test_shutdown_closes_a_refused_connection_that_waits_for_its_sub(
    start: Start, variant: str
) -> None:
    """A connection upgraded only to be refused at the sub belongs to no account, so no stream closes it at
    shutdown: serve's own shutdown must (aiohttp's, after `close_timeout`), or each one stays open, on
    both ends, past the server's life."""
    descriptors = len(os.listdir("/proc/self/fd"))
    async with coinlocally_after(start, variant) as ws:
        async with asyncio.timeout(WAIT):
            await ws.wait_closed()  # the server closed it: nothing was sent by the client meanwhile
    assert len(os.listdir("/proc/self/fd")) == descriptors


@asynccontextmanager
async def coinlocally_after(start: Start, variant: str) -> AsyncIterator[Any]:
    """A refused Coinlocally connection (upgraded, "connect success" read), once serve has stopped."""
    async with start(close_timeout=0.5, **variants(variant)) as kit:
        ws = await coinlocally(kit, {"token": "unknown-token"})
        assert await recv(ws) == "connect success"
    try:
        yield ws
    finally:
        await ws.close()
