"""`userstream watch` as a user runs it: a subprocess against the real emulator, exact JSONL on stdout,
status lines where asked, exit 0 on SIGTERM, exit 2 on rejected or missing credentials, no secret anywhere."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from support import processes
from support.examples import BITMUSA_WALLET_EVENT, COINLOCALLY_ORDER_EVENT
from userstream.cli import build_parser
from userstream.client.command import format_pretty, timing_arguments
from userstream.errors import ConfigurationError
from userstream.eventjson import to_json
from userstream.events import Exchange, Fill, Side

Env = Any  # conftest.Env
Lab = Callable[..., AbstractAsyncContextManager[Any]]

WAIT = 20.0
FAST = ["--backoff-base", "0.01", "--backoff-cap", "0.05", "--ping-interval", "1", "--idle-timeout", "5"]


def environment(**credentials: str) -> dict[str, str]:
    """The test's environment without any USERSTREAM_* variable, plus `credentials`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("USERSTREAM_")}
    env.update(credentials)
    return env


async def watch(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await processes.userstream("watch", *args, env=env, stdin=asyncio.subprocess.DEVNULL)


async def lines(process: asyncio.subprocess.Process, count: int) -> list[bytes]:
    assert process.stdout is not None
    async with asyncio.timeout(WAIT):
        return [(await process.stdout.readline()).rstrip(b"\n") for _ in range(count)]


async def finish(process: asyncio.subprocess.Process) -> tuple[int, bytes, bytes]:
    stdout, stderr = await processes.finish(process, WAIT)
    assert process.returncode is not None
    return process.returncode, stdout, stderr


def bitmusa_env(env: Env, **overrides: str) -> dict[str, str]:
    credentials = {
        "USERSTREAM_BITMUSA_API_KEY": env.alice.bitmusa_api_key,
        "USERSTREAM_BITMUSA_AUTH_KEY": env.alice.bitmusa_auth_key,
    }
    credentials.update(overrides)
    return environment(**credentials)


def assert_no_secret(*outputs: bytes) -> None:
    for output in outputs:
        for secret in SECRETS:
            assert secret.encode() not in output


SECRETS = (  # conftest's accounts' credentials, and the wrong ones the tests pass
    "alice-bitmusa-api-SECRET",
    "alice-bitmusa-auth-SECRET",
    "alice-coinlocally-api-SECRET",
    "alice-coinlocally-token-SECRET",
    "wrong-SECRET",
)


async def test_bitmusa_jsonl_is_exactly_the_event_contract_one_line_each(lab: Lab) -> None:
    async with lab() as env:
        urls = ["--rest-url", env.server.base_url, "--ws-url", env.server.ws_url]
        process = await watch("bitmusa", *urls, "--account", "alice", *FAST, env=bitmusa_env(env))
        try:
            await env.until_streaming()
            await env.ingest([env.balance(1), env.order(2), env.balance(3)])
            printed = await lines(process, 3)
            key = env.server.active_listen_key("alice")
        finally:
            process.send_signal(signal.SIGTERM)
        code, rest, stderr = await finish(process)
    assert printed == [
        to_json(env.expected_balance(1, "bitmusa")),
        to_json(env.expected_order(2, "bitmusa")),
        to_json(env.expected_balance(3, "bitmusa")),
    ]
    assert (code, rest) == (0, b"")
    log = stderr.decode().splitlines()
    assert log == [
        "userstream watch: bitmusa/alice connecting connection=1 attempt=1",
        f"userstream watch: bitmusa/alice connected connection=1 listen_key={key[:6]}...",
    ]
    assert_no_secret(rest, stderr)
    assert key.encode() not in stderr


async def test_coinlocally_with_status_lines_on_stdout(lab: Lab) -> None:
    async with lab() as env:
        credentials = environment(USERSTREAM_COINLOCALLY_TOKEN=env.alice.coinlocally_token)
        process = await watch(
            "coinlocally", "--ws-url", env.coinlocally_url, "--status", *FAST, env=credentials
        )
        try:
            statuses = await lines(process, 2)
            await env.until_streaming()
            await env.ingest([env.order(1), env.balance(2)])
            printed = await lines(process, 3)
        finally:
            process.send_signal(signal.SIGINT)
        code, rest, stderr = await finish(process)
    assert [json.loads(line)["state"] for line in statuses] == ["connecting", "connected"]
    assert json.loads(printed[0]) == {
        "kind": "status",
        "state": "subscribed",
        "exchange": "coinlocally",
        "account": "default",
        "reason": None,
        "attempt": None,
        "delay": None,
        "dropped": None,
        "connection": 1,
        "listen_key": None,
        "corrections": None,
    }
    assert printed[1:] == [
        to_json(env.expected_order(1, "coinlocally", account="default")),
        to_json(env.expected_balance(2, "coinlocally", account="default")),
    ]
    assert (code, rest, stderr) == (0, b"", b"")


async def test_rejected_credentials_exit_2_with_a_clear_message(lab: Lab) -> None:
    async with lab() as env:
        urls = ["--rest-url", env.server.base_url, "--ws-url", env.server.ws_url]
        credentials = bitmusa_env(env, USERSTREAM_BITMUSA_AUTH_KEY="wrong-SECRET")
        process = await watch("bitmusa", *urls, *FAST, env=credentials)
        code, stdout, stderr = await finish(process)
        attempts = env.access.count("POST", "/spot/userDataStream", 401)
    assert code == 2
    assert stdout == b""
    assert attempts == 3
    # issue 12: the method, URL and status, and the server's own words (scrubbed)
    assert stderr.decode().splitlines()[-1] == (
        "userstream watch: authentication failed (listenKey request rejected): "
        f"POST {env.server.base_url}/spot/userDataStream: "
        "Bitmusa answered HTTP 401: invalid api key or auth key"
    )
    assert_no_secret(stdout, stderr)


async def test_a_rejected_coinlocally_token_flag_exits_2(lab: Lab) -> None:
    async with lab() as env:
        args = ["--ws-url", env.coinlocally_url, "--token", "wrong-SECRET", *FAST]
        process = await watch("coinlocally", *args, env=environment())
        code, stdout, stderr = await finish(process)
    assert code == 2
    assert stderr.decode().splitlines()[-1] == (
        "userstream watch: authentication failed (token header rejected): "
        f"{env.coinlocally_url}: Coinlocally refused the 'token' header (HTTP 401)"
    )
    assert_no_secret(stdout, stderr)


@pytest.mark.parametrize(
    ("args", "credentials", "message"),
    [
        (
            ["bitmusa"],
            {"USERSTREAM_BITMUSA_AUTH_KEY": "x"},
            "userstream watch: Bitmusa needs --api-key or the environment variable "
            "USERSTREAM_BITMUSA_API_KEY",
        ),
        (
            ["coinlocally"],
            {},
            "userstream watch: Coinlocally needs --token or --api-key, or the environment variable "
            "USERSTREAM_COINLOCALLY_TOKEN or USERSTREAM_COINLOCALLY_API_KEY",
        ),
        (
            ["coinlocally", "--token", "a", "--api-key", "b"],
            {},
            "userstream watch: Coinlocally needs exactly one credential: a token or an api_key "
            "(got token and api_key)",
        ),
        (
            ["bitmusa", "--ws-url", "http://127.0.0.1:1"],
            {"USERSTREAM_BITMUSA_API_KEY": "x", "USERSTREAM_BITMUSA_AUTH_KEY": "y"},
            "userstream watch: the Bitmusa WebSocket URL must be an absolute wss:// or ws:// URL, "
            "not 'http://127.0.0.1:1'",
        ),
    ],
)
async def test_missing_or_bad_arguments_exit_2(
    args: list[str], credentials: dict[str, str], message: str
) -> None:
    process = await watch(*args, env=environment(**credentials))
    code, stdout, stderr = await finish(process)
    assert (code, stdout, stderr.decode()) == (2, b"", message + "\n")


def test_pretty_lines_are_readable() -> None:
    # The documents' examples, for alice (the order without a creation time, as this test has always had it).
    balance = msgspec.structs.replace(BITMUSA_WALLET_EVENT, account="alice")
    order = msgspec.structs.replace(COINLOCALLY_ORDER_EVENT, account="alice", created_at=None)
    fill = Fill(
        exchange=Exchange.BITMUSA,
        account="alice",
        timestamp=1700703548846,
        order_id="C1",
        symbol="XRP/USDT",
        side=Side.BUY,
        amount=Decimal("2"),
        price=Decimal("0.5155"),
        cost=Decimal("1.031"),
        order_filled=Decimal("2"),
        derived=True,
    )
    assert format_pretty(balance) == (
        "01:39:08.846  bitmusa/alice  balance  USDT   free 1132800.449  locked 80669.91  total 1213470.359"
    )
    assert format_pretty(order) == (
        "06:25:08.472  coinlocally/alice  order    BTC/USDT   sell limit  open     1 @ 13000  "
        "filled 0.17861112  remaining 0.82138888  id 2690536306533246156  "
        "last fill 0.1000000000000000 @ 13000.0000000000000000"
    )
    assert format_pretty(fill) == (
        "01:39:08.846  bitmusa/alice  fill     XRP/USDT   buy  2 @ 0.5155  order C1 filled 2  (derived)"
    )


# --- timings: a flag left out fits the flags given; only flags that contradict each other are refused ------


def endpoints(env: Env, exchange: str) -> tuple[list[str], dict[str, str]]:
    """The endpoint flags and the credentials (in the environment) of alice on this server."""
    if exchange == "bitmusa":
        return ["--rest-url", env.server.base_url, "--ws-url", env.server.ws_url], bitmusa_env(env)
    return ["--ws-url", env.coinlocally_url], environment(
        USERSTREAM_COINLOCALLY_TOKEN=env.alice.coinlocally_token
    )


@pytest.mark.parametrize("idle_timeout", ["5", "10", "30"])
@pytest.mark.parametrize("exchange", ["bitmusa", "coinlocally"])
async def test_an_idle_timeout_alone_streams_on_both_exchanges(
    lab: Lab, exchange: str, idle_timeout: str
) -> None:
    # The issue's report: `watch bitmusa --idle-timeout 30` refused to start ("idle_timeout (30s) must exceed
    # ping_interval (30s)") though no ping interval was given. Every other timing is left at its default.
    async with lab() as env:
        urls, credentials = endpoints(env, exchange)
        process = await watch(exchange, *urls, "--idle-timeout", idle_timeout, env=credentials)
        try:
            await env.until_streaming()
            await env.ingest([env.balance(1)])
            printed = await lines(process, 1)
            key = env.server.active_listen_key("alice") if exchange == "bitmusa" else None
        finally:
            process.send_signal(signal.SIGTERM)
        code, rest, stderr = await finish(process)
    assert printed == [to_json(env.expected_balance(1, exchange, account="default"))]
    assert (code, rest) == (0, b"")
    head = f"userstream watch: {exchange}/default"
    if exchange == "bitmusa":
        assert key is not None
        live = [f"{head} connected connection=1 listen_key={key[:6]}..."]
    else:
        live = [f"{head} connected connection=1", f"{head} subscribed connection=1"]
    assert stderr.decode().splitlines() == [f"{head} connecting connection=1 attempt=1", *live]
    assert_no_secret(rest, stderr)


async def test_the_derived_ping_interval_is_logged_at_info(lab: Lab) -> None:
    async with lab() as env:
        urls, credentials = endpoints(env, "coinlocally")
        args = [*urls, "--idle-timeout", "30", "--log-level", "INFO"]
        process = await watch("coinlocally", *args, env=credentials)
        try:
            await env.until_streaming()
        finally:
            process.send_signal(signal.SIGTERM)
        code, _, stderr = await finish(process)
    assert code == 0
    assert stderr.decode().splitlines()[0] == (
        "userstream watch: INFO: coinlocally/default: ping_interval 20s, derived from idle_timeout (30s): "
        "idle_timeout / 1.5, at most 30s"
    )


def parsed(*flags: str) -> Any:
    return build_parser().parse_args(["watch", "bitmusa", *flags])


@pytest.mark.parametrize(
    ("flags", "timings"),
    [
        ([], {}),  # nothing given: nothing passed, the library's defaults apply
        (["--idle-timeout", "30"], {"idle_timeout": 30.0}),
        (["--rotate-after", "0"], {"rotate_after": None}),
        (
            ["--ping-interval", "2", "--backoff-cap", "9", "--sub-timeout", "3", "--stable-after", "0"],
            {"ping_interval": 2.0, "backoff_cap": 9.0, "sub_timeout": 3.0, "stable_after": 0.0},
        ),
        (
            ["--keepalive-interval", "60", "--overlap-timeout", "1", "--close-timeout", "2"],
            {"keepalive_interval": 60.0, "overlap_timeout": 1.0, "close_timeout": 2.0},
        ),
        (["--request-timeout", "4", "--backoff-base", "0.5"], {"request_timeout": 4.0, "backoff_base": 0.5}),
    ],
)
def test_only_the_timing_flags_given_are_passed_on(flags: list[str], timings: dict[str, Any]) -> None:
    assert timing_arguments(parsed(*flags)) == timings


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--idle-timeout", "30", "--ping-interval", "30"],
            "--idle-timeout (30s) must exceed --ping-interval (30s): the pong of a ping is what proves a "
            "quiet connection alive (give one of the two and the other is derived from it)",
        ),
        (
            ["--keepalive-interval", "3600"],
            "--keepalive-interval (3600s) must be shorter than the listenKey's validity (3600s)",
        ),
        (
            ["--backoff-base", "5", "--backoff-cap", "2"],
            "--backoff-cap (2s) must be at least --backoff-base (5s)",
        ),
        (
            ["--rotate-after", "10", "--overlap-timeout", "10"],
            "--overlap-timeout (10s) must be shorter than --rotate-after (10s): a rotation's hand-over would "
            "last until the next rotation is due",
        ),
        (
            ["--overlap-timeout", "90000"],
            "--overlap-timeout (90000s) must be shorter than --rotate-after (84600s by default): a "
            "rotation's hand-over would last until the next rotation is due",
        ),
        (
            ["--rotate-after", "60", "--stable-after", "60"],
            "--stable-after (60s) must be shorter than --rotate-after (60s): every connection would be "
            "rotated before it counted as stable, so the reconnect backoff would never start over",
        ),
        (["--idle-timeout", "0"], "--idle-timeout must be a positive number of seconds, not 0.0"),
        (
            ["--rotate-after", "-5"],
            "--rotate-after must be a positive number of seconds (0 turns rotation off), not -5.0",
        ),
        (["--stable-after", "-1"], "--stable-after must be a number of seconds, 0 or more, not -1.0"),
    ],
)
def test_contradicting_timing_flags_are_refused_naming_the_flags(flags: list[str], message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        timing_arguments(parsed(*flags))
    assert str(raised.value) == message


async def test_two_contradicting_flags_exit_2_naming_them() -> None:
    credentials = {"USERSTREAM_BITMUSA_API_KEY": "x", "USERSTREAM_BITMUSA_AUTH_KEY": "y"}
    process = await watch(
        "bitmusa", "--ping-interval", "30", "--idle-timeout", "30", env=environment(**credentials)
    )
    code, stdout, stderr = await finish(process)
    assert (code, stdout, stderr.decode()) == (
        2,
        b"",
        "userstream watch: --idle-timeout (30s) must exceed --ping-interval (30s): the pong of a ping is "
        "what proves a quiet connection alive (give one of the two and the other is derived from it)\n",
    )


@pytest.mark.parametrize("flag", ["--queue-size", "--queue-bytes"])
@pytest.mark.parametrize("size", ["0", "-3", "many"])
def test_a_queue_size_below_one_is_refused_naming_the_flag(
    flag: str, size: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        parsed(flag, size)
    assert raised.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"userstream watch: error: argument {flag}: must be a positive integer, not {size!r}"
    )
