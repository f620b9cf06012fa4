"""`userstream doctor` against the real emulator on loopback: every check OK on a healthy server, the
credential check FAILing for bad credentials, reachability FAILing on a closed port, the clock judged
from the Date header (with a shifted local clock passed in), and the pure judgements with exact values."""

from __future__ import annotations

import email.utils
import socket
import time
from decimal import Decimal
from typing import Any

import pytest

from userstream.errors import ConfigurationError
from userstream.events import BalanceUpdate, Exchange
from userstream.ops.doctor import (
    Check,
    DoctorOptions,
    Verdict,
    diagnose,
    judge_binary_frame,
    judge_clock_skew,
)
from userstream.protocol import bitmusa_render, coinlocally, coinlocally_render
from userstream.protocol.codec import gzip_bytes

Lab = Any  # conftest.Lab (test modules cannot import the conftest)
WAIT = 20.0

BITMUSA_CHECKS = [
    "rest reachable",
    "ws reachable",
    "clock skew",
    "credentials",
    "ws handshake",
    "frame decoding",
    "ping",
]
COINLOCALLY_CHECKS = [
    "ws reachable",
    "clock skew",
    "ws handshake",
    "sub handshake",
    "credentials",
    "gzip decoding",
    "ping",
]
BALANCE = {
    "kind": "balance",
    "asset": "USDT",
    "free": "1000.5",
    "locked": "0.25",
    "timestamp": 1_700_703_548_000,
}


def verdicts(stdout: bytes) -> list[tuple[str, str]]:
    """(verdict, check) of every check line; the last line is the summary."""
    return [(line[:4].strip(), line[6:21].strip()) for line in stdout.decode().splitlines()[:-1]]


def details(stdout: bytes) -> dict[str, str]:
    return {line[6:21].strip(): line[23:] for line in stdout.decode().splitlines()[:-1]}


async def doctor_while_trading(lab: Lab, exchange: str, *extra: str) -> tuple[int, bytes, bytes]:
    """Run doctor; once its stream is up, one event is ingested, which its frame check then decodes."""
    args = ["doctor", exchange, *lab.endpoints(exchange), "--frame-wait", str(WAIT), *extra]
    process = await lab.start(*args, env=lab.environment(exchange))
    await lab.until_streaming(exchange)
    await lab.server.ingest("alice", [BALANCE])
    return await lab.finish(process)


async def test_a_healthy_bitmusa_server_passes_every_check(lab: Lab) -> None:
    code, stdout, stderr = await doctor_while_trading(lab, "bitmusa")
    key = lab.server.active_listen_key("alice")
    assert verdicts(stdout) == [("OK", name) for name in BITMUSA_CHECKS]
    assert stdout.decode().splitlines()[-1] == "7 checks: 7 OK, 0 WARN, 0 FAIL, 0 SKIP"
    shown = details(stdout)
    assert shown["credentials"] == (
        f"listenKey request accepted (key {key[:6]}...); the key is left open, not DELETEd: every "
        "client of the account shares it, so a DELETE would cut them all off (an unused key lapses by "
        "itself in 60 min)"
    )
    frame = bitmusa_render.render_event(
        BalanceUpdate(
            exchange=Exchange.BITMUSA,
            account="alice",
            timestamp=BALANCE["timestamp"],
            asset="USDT",
            free=Decimal("1000.5"),
            locked=Decimal("0.25"),
        )
    )
    assert shown["frame decoding"] == f"first frame ({len(frame)} characters, text): 1 event parsed"
    assert shown["clock skew"] == (
        f"in agreement with the Date header of GET {lab.server.base_url}/ (1 s resolution)"
    )
    assert (code, stderr) == (0, b"")
    lab.assert_no_secret(stdout, stderr)
    assert lab.server.active_listen_key("alice") == key  # left open, not deleted


async def test_a_healthy_coinlocally_server_passes_every_check(lab: Lab) -> None:
    code, stdout, stderr = await doctor_while_trading(lab, "coinlocally")
    assert verdicts(stdout) == [("OK", name) for name in COINLOCALLY_CHECKS]
    assert stdout.decode().splitlines()[-1] == "7 checks: 7 OK, 0 WARN, 0 FAIL, 0 SKIP"
    shown = details(stdout)
    assert shown["credentials"] == "the token was accepted by the handshake and the sub"
    assert shown["gzip decoding"].startswith("first binary frame: ")
    assert shown["gzip decoding"].endswith(" bytes of JSON, 1 event parsed")
    assert shown["sub handshake"].startswith("'connect success' then 'sub success' in ")
    assert shown["ws handshake"].startswith(f"{lab.coinlocally_url}: upgraded in ")
    assert (code, stderr) == (0, b"")
    lab.assert_no_secret(stdout, stderr)


async def test_bad_bitmusa_credentials_fail_the_credential_check(lab: Lab) -> None:
    env = lab.environment("bitmusa", USERSTREAM_BITMUSA_AUTH_KEY="wrong-SECRET")
    code, stdout, stderr = await lab.run("doctor", "bitmusa", *lab.endpoints("bitmusa"), env=env)
    assert verdicts(stdout) == [
        ("OK", "rest reachable"),
        ("OK", "ws reachable"),
        ("OK", "clock skew"),
        ("FAIL", "credentials"),
        ("SKIP", "ws handshake"),
        ("SKIP", "frame decoding"),
        ("SKIP", "ping"),
    ]
    shown = details(stdout)
    assert shown["credentials"] == "rejected: Bitmusa answered HTTP 401 (check the api key and the auth key)"
    assert shown["ws handshake"] == "no listenKey (see credentials)"
    assert stdout.decode().splitlines()[-1] == "7 checks: 3 OK, 0 WARN, 1 FAIL, 3 SKIP"
    assert (code, stderr) == (1, b"")
    lab.assert_no_secret(stdout, stderr)


async def test_a_bad_coinlocally_token_fails_the_handshake_and_the_credential_check(lab: Lab) -> None:
    env = lab.environment("coinlocally", USERSTREAM_COINLOCALLY_TOKEN="wrong-SECRET")
    code, stdout, stderr = await lab.run("doctor", "coinlocally", *lab.endpoints("coinlocally"), env=env)
    assert verdicts(stdout) == [
        ("OK", "ws reachable"),
        ("OK", "clock skew"),
        ("FAIL", "ws handshake"),
        ("SKIP", "sub handshake"),
        ("FAIL", "credentials"),
        ("SKIP", "gzip decoding"),
        ("SKIP", "ping"),
    ]
    shown = details(stdout)
    assert shown["ws handshake"] == f"{lab.coinlocally_url}: refused with HTTP 401"
    assert shown["credentials"] == "Coinlocally refused the 'token' header (HTTP 401)"
    assert (code, stderr) == (1, b"")
    lab.assert_no_secret(stdout, stderr)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens on it once the probe is closed


@pytest.mark.parametrize("exchange", ["bitmusa", "coinlocally"])
async def test_a_closed_port_fails_reachability_and_skips_the_rest(lab: Lab, exchange: str) -> None:
    port = closed_port()
    if exchange == "bitmusa":
        where = ["--rest-url", f"http://127.0.0.1:{port}", "--ws-url", f"ws://127.0.0.1:{port}"]
        expected = [("FAIL", "rest reachable"), ("FAIL", "ws reachable")]
        expected += [("SKIP", name) for name in BITMUSA_CHECKS[2:]]
    else:
        where = ["--ws-url", f"ws://127.0.0.1:{port}/spotws_user/userData/ws"]
        expected = [("FAIL", "ws reachable")] + [("SKIP", name) for name in COINLOCALLY_CHECKS[1:]]
    code, stdout, stderr = await lab.run("doctor", exchange, *where, env=lab.environment(exchange))
    assert verdicts(stdout) == expected
    assert details(stdout)["ws reachable"] == (
        f"127.0.0.1:{port}: TCP connect failed (127.0.0.1: Connection refused)"
    )
    assert (code, stderr) == (1, b"")
    lab.assert_no_secret(stdout, stderr)


async def test_missing_credentials_exit_2_before_any_check(lab: Lab) -> None:
    env = lab.environment("coinlocally", USERSTREAM_COINLOCALLY_TOKEN="")
    code, stdout, stderr = await lab.run("doctor", "bitmusa", env=env)
    assert (code, stdout, stderr.decode()) == (
        2,
        b"",
        "userstream doctor: Bitmusa needs --api-key or the environment variable USERSTREAM_BITMUSA_API_KEY\n",
    )


# --- in process: the clock passed in, a quiet account -------------------------------------------------------


def coinlocally_options(lab: Lab, **overrides: Any) -> DoctorOptions:
    settings: dict[str, Any] = {
        "exchange": Exchange.COINLOCALLY,
        "token": lab.alice.coinlocally_token,
        "ws_url": lab.coinlocally_url,
        "frame_wait": 0.05,
    }
    settings.update(overrides)
    return DoctorOptions(**settings)


@pytest.mark.parametrize(
    ("shift", "verdict", "side"),
    [(5.0, Verdict.WARN, "ahead of"), (-60.0, Verdict.FAIL, "behind"), (0.0, Verdict.OK, None)],
)
async def test_the_clock_check_compares_the_date_header_with_the_clock_it_is_given(
    lab: Lab, shift: float, verdict: Verdict, side: str | None
) -> None:
    def shifted() -> float:  # only the wall clock moves: the doctor's own timings use the loop's clock
        return time.time() + shift

    seen: list[Check] = []
    results = await diagnose(coinlocally_options(lab, wall_clock=shifted), report=seen.append)
    assert seen == results
    clock = next(check for check in results if check.name == "clock skew")
    assert clock.verdict is verdict
    if side is not None:
        assert clock.detail.startswith(f"the local clock is {side} the server's by at least ")
    assert [check.name for check in results] == COINLOCALLY_CHECKS
    others = [check.verdict for check in results if check.name not in ("clock skew", "gzip decoding")]
    assert others == [Verdict.OK] * 5


async def test_a_quiet_account_skips_the_frame_check_and_passes_the_rest(lab: Lab) -> None:
    options = DoctorOptions(
        exchange=Exchange.BITMUSA,
        api_key=lab.alice.bitmusa_api_key,
        auth_key=lab.alice.bitmusa_auth_key,
        rest_url=lab.server.base_url,
        ws_url=lab.server.ws_url,
        frame_wait=0.05,
    )
    results = await diagnose(options)
    assert [(check.verdict, check.name) for check in results] == [
        (Verdict.SKIP if name == "frame decoding" else Verdict.OK, name) for name in BITMUSA_CHECKS
    ]
    skipped = next(check for check in results if check.verdict is Verdict.SKIP)
    assert skipped.detail == "no frame within 0.05 s: the account was quiet (run it while the account trades)"
    quiet = await diagnose(coinlocally_options(lab))
    assert [(check.verdict, check.name) for check in quiet] == [
        (Verdict.SKIP if name == "gzip decoding" else Verdict.OK, name) for name in COINLOCALLY_CHECKS
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"exchange": Exchange.BITMUSA, "api_key": "a"}, "Bitmusa needs an api key and an auth key"),
        (
            {"exchange": Exchange.BITMUSA, "api_key": "a", "auth_key": "b", "rest_url": "ftp://x"},
            "the Bitmusa REST URL must be an absolute https:// or http:// URL, not 'ftp://x'",
        ),
        (
            {"exchange": Exchange.COINLOCALLY, "auth_key": "b"},
            "Coinlocally takes a token or an api key, not an auth key",
        ),
    ],
)
async def test_unusable_options_raise_before_any_check(options: dict[str, Any], message: str) -> None:
    seen: list[Check] = []
    with pytest.raises(ConfigurationError) as raised:
        await diagnose(DoctorOptions(**options), report=seen.append)
    assert (str(raised.value), seen) == (message, [])


# --- pure judgements ----------------------------------------------------------------------------------

DATE = "Wed, 22 Nov 2023 01:39:08 GMT"
SERVER = email.utils.parsedate_to_datetime(DATE).timestamp()


AGREE = "in agreement with the Date header of GET / (1 s resolution)"
AHEAD = "the local clock is ahead of the server's by at least"
BEHIND = "the local clock is behind the server's by at least"
LAG = "lags computed from event times are off by as much"
NTP = "fix it (NTP): signed requests fail, lags are meaningless"


@pytest.mark.parametrize(
    ("sent", "received", "verdict", "detail"),
    [
        (0.2, 0.3, Verdict.OK, AGREE),
        (-0.3, 1.8, Verdict.OK, AGREE),
        (1.5, 1.6, Verdict.OK, f"{AHEAD} 0.5 s (Date header of GET /)"),
        (-3.25, -3.0, Verdict.WARN, f"{BEHIND} 3.0 s (Date header of GET /); {LAG}"),
        (41.0, 41.5, Verdict.FAIL, f"{AHEAD} 40.0 s (Date header of GET /); {NTP}"),
    ],
)
def test_the_clock_skew_is_the_smallest_one_the_date_header_allows(
    sent: float, received: float, verdict: Verdict, detail: str
) -> None:
    expected = Check("clock skew", verdict, detail)
    assert judge_clock_skew(DATE, SERVER + sent, SERVER + received, "GET /") == expected


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        (None, "the reply to GET / has no Date header"),
        ("soon", "the Date header of GET / is not an HTTP date"),
    ],
)
def test_without_a_usable_date_header_the_clock_check_is_skipped(header: str | None, detail: str) -> None:
    assert judge_clock_skew(header, 0.0, 1.0, "GET /") == Check("clock skew", Verdict.SKIP, detail)


def test_the_gzip_judgement_of_a_first_binary_frame() -> None:
    parser = coinlocally.Parser(account="alice")
    event = BalanceUpdate(
        exchange=Exchange.COINLOCALLY,
        account="alice",
        timestamp=1,
        asset="USDT",
        free=Decimal("1"),
        locked=Decimal("0"),
    )
    message = coinlocally_render.render_message(event)
    frame = gzip_bytes(message)
    notice = coinlocally_render.render_system_close(7)
    unknown = gzip_bytes(b'{"e":"listStatus","E":1}')
    name = "gzip decoding"
    assert judge_binary_frame(frame, parser) == Check(
        name,
        Verdict.OK,
        f"first binary frame: {len(frame)} bytes of gzip -> {len(message)} bytes of JSON, 1 event parsed",
    )
    assert judge_binary_frame(notice, parser).detail.endswith(" bytes of JSON, the SYSTEM close notice")
    assert judge_binary_frame(frame[:-4], parser) == Check(
        name,
        Verdict.FAIL,
        f"the first binary frame ({len(frame) - 4} bytes) does not decode: "
        f"truncated gzip frame ({len(frame) - 4} bytes)",
    )
    assert judge_binary_frame(message, parser) == Check(
        name,
        Verdict.WARN,
        f"first binary frame: {len(message)} bytes, not gzip (the document says binary frames are): "
        "1 event parsed",
    )
    assert judge_binary_frame(unknown, parser) == Check(
        name,
        Verdict.WARN,
        f"first binary frame: {len(unknown)} bytes of gzip -> 24 bytes, not understood: unknown event type "
        "'listStatus' (record it with `userstream record` and report it)",
    )  # fmt: skip
