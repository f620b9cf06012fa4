"""`userstream record` then `userstream replay`, as a user runs them, against the real emulator on loopback:
a known ingested sequence comes back as exactly the ingested events; the client's on_frame hook; the
recording format line by line; corrupt lines reported with their number; no secret anywhere."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from userstream.client import connect
from userstream.eventjson import to_json
from userstream.events import Exchange
from userstream.ops.recording import HIDDEN, RecordingWriter, header_for, redact_url
from userstream.protocol import bitmusa_render, coinlocally, coinlocally_render
from userstream.protocol.codec import gunzip, gzip_bytes
from userstream.protocol.messages import DataEvents

Lab = Any  # conftest.Lab (test modules cannot import the conftest)
WAIT = 20.0
QUIET = {  # timings under which no ping, pong or reconnect lands among the frames a test counts
    "ping_interval": 10.0,
    "idle_timeout": 20.0,
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
    "rotate_after": None,
}


# --- the hook -------------------------------------------------------------------------------------------


async def test_on_frame_sees_every_raw_frame_before_parsing_with_its_time_and_connection(lab: Lab) -> None:
    frames: list[tuple[float, bytes | str, int]] = []
    before = time.time()
    stream = connect(
        "coinlocally",
        token=lab.alice.coinlocally_token,
        ws_url=lab.coinlocally_url,
        account="alice",
        on_frame=lambda *frame: frames.append(frame),
        **QUIET,
    )
    async with stream:
        await lab.until_streaming("coinlocally")
        await lab.server.ingest("alice", lab.sequence())
        async with asyncio.timeout(WAIT):
            events = [await anext(stream) for _ in range(5)]
    after = time.time()
    assert events == lab.expected("coinlocally")
    assert [frame for _, frame, _ in frames[:2]] == ["connect success", "sub success"]
    binary = [frame for _, frame, _ in frames[2:]]
    assert all(isinstance(frame, bytes) and frame[:2] == b"\x1f\x8b" for frame in binary)
    parser = coinlocally.Parser(account="alice")
    parsed = [event for frame in binary for event in _events(parser(frame))]
    assert parsed == lab.expected("coinlocally")
    assert {connection for _, _, connection in frames} == {1}
    times = [received_at for received_at, _, _ in frames]
    assert times == sorted(times)
    assert before <= times[0]
    assert times[-1] <= after


async def test_a_raising_on_frame_hook_is_logged_and_the_stream_goes_on(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(received_at: float, frame: bytes | str, connection: int) -> None:
        raise ValueError("disk on fire")

    stream = connect(
        "bitmusa",
        api_key=lab.alice.bitmusa_api_key,
        auth_key=lab.alice.bitmusa_auth_key,
        rest_url=lab.server.base_url,
        ws_url=lab.server.ws_url,
        account="alice",
        on_frame=broken,
        **QUIET,
    )
    with caplog.at_level("ERROR", logger="userstream.client"):
        async with stream:
            await lab.until_streaming("bitmusa")
            await lab.server.ingest("alice", lab.sequence())
            async with asyncio.timeout(WAIT):
                events = [await anext(stream) for _ in range(5)]
    assert events == lab.expected("bitmusa")
    assert [record.getMessage() for record in caplog.records] == [
        "the on_frame callback raised; the stream goes on"
    ] * 5


def _events(incoming: object) -> tuple[object, ...]:
    assert isinstance(incoming, DataEvents)
    return incoming.events


# --- record, then replay ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exchange", "types"),
    [
        ("bitmusa", ["text"] * 5),
        # "connect success", "sub success", then the two balances of one moment in one frame, three orders
        ("coinlocally", ["text", "text", "binary", "binary", "binary", "binary"]),
    ],
)
async def test_record_then_replay_gives_exactly_the_ingested_events(
    lab: Lab, tmp_path: Path, exchange: str, types: list[str]
) -> None:
    out = tmp_path / "session.jsonl"
    started = time.time()
    args = ["record", exchange, "--account", "alice", *lab.endpoints(exchange), "--out", str(out)]
    process = await lab.start(*args, env=lab.environment(exchange))
    try:
        await lab.until_streaming(exchange)
        await lab.server.ingest("alice", lab.sequence())
        lines = await lab.until_lines(out, 1 + len(types))
        key = lab.server.active_listen_key("alice")
    finally:
        process.send_signal(signal.SIGTERM)
    code, stdout, stderr = await lab.finish(process)
    stopped = time.time()
    assert (code, stdout) == (0, b"")
    assert stderr.decode().splitlines()[-1] == f"userstream record: {len(types)} frames written to {out}"
    assert out.stat().st_mode & 0o777 == 0o600

    header = json.loads(lines[0])
    assert started <= header.pop("started_at") <= stopped
    endpoints = (
        {"rest": lab.server.base_url, "ws": lab.server.ws_url}
        if exchange == "bitmusa"
        else {"ws": lab.coinlocally_url}
    )
    assert header == {
        "format": "userstream-recording",
        "version": 1,
        "exchange": exchange,
        "account": "alice",
        "userstream": "0.1.0",
        "endpoints": endpoints,
    }
    records = [json.loads(line) for line in lines[1:]]
    assert [list(record) for record in records] == [["t", "exchange", "conn", "type", "data"]] * len(types)
    assert [record["type"] for record in records] == types
    assert {(record["exchange"], record["conn"]) for record in records} == {(exchange, 1)}
    times = [record["t"] for record in records]
    assert times == sorted(times)
    assert started <= times[0]
    assert times[-1] <= stopped
    if exchange == "coinlocally":
        assert [record["data"] for record in records[:2]] == ["connect success", "sub success"]
        assert gunzip(base64.b64decode(records[2]["data"]))[:35] == b'{"e":"outboundAccountPosition","E":'
    else:
        assert records[0]["data"] == bitmusa_render.render_event(lab.expected("bitmusa")[0])

    code, replayed, report = await lab.run("replay", str(out), "--format", "jsonl")
    assert replayed.splitlines() == [to_json(event) for event in lab.expected(exchange)]
    other = len(types) - (5 if exchange == "bitmusa" else 4)
    assert report.decode() == (
        f"userstream replay: {len(types)} frames: 5 events, {other} other, 0 unknown; 0 bad lines\n"
    )
    assert code == 0
    lab.assert_no_secret(out.read_bytes(), stdout, stderr, replayed, report)
    assert key is None or key.encode() not in out.read_bytes()


async def test_replay_pretty_prints_watch_s_lines(lab: Lab, tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    writer = RecordingWriter.create(path, _header(Exchange.BITMUSA))
    writer.write_frame(1.5, bitmusa_render.render_event(lab.expected("bitmusa")[0]), 1)
    writer.close()
    code, stdout, stderr = await lab.run("replay", str(path), "--format", "pretty")
    assert stdout.decode() == (
        "01:39:08.000  bitmusa/alice  balance  USDT   free 1000.5  locked 0.25  total 1000.75\n"
    )
    assert (code, stderr) == (0, b"userstream replay: 1 frames: 1 events, 0 other, 0 unknown; 0 bad lines\n")


async def test_a_recording_stops_by_itself_after_its_duration(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "short.jsonl"
    args = ["record", "coinlocally", *lab.endpoints("coinlocally"), "--out", str(out), "--duration", "0.5"]
    code, stdout, stderr = await lab.run(*args, env=lab.environment("coinlocally"))
    frames = len(out.read_bytes().splitlines()) - 1
    assert (code, stdout) == (0, b"")
    assert stderr.decode().splitlines()[-1] == f"userstream record: {frames} frames written to {out}"


async def test_record_with_rejected_credentials_exits_2_and_names_what_was_refused(
    lab: Lab, tmp_path: Path
) -> None:
    out = tmp_path / "refused.jsonl"
    env = lab.environment("bitmusa", USERSTREAM_BITMUSA_AUTH_KEY="wrong-SECRET")
    args = ["record", "bitmusa", *lab.endpoints("bitmusa"), "--out", str(out)]
    code, stdout, stderr = await lab.run(*args, env=env)
    assert (code, stdout) == (2, b"")
    assert stderr.decode().splitlines()[-2:] == [
        # issue 12: the method, URL and status, and the server's words
        "userstream record: authentication failed (listenKey request rejected): "
        f"POST {lab.server.base_url}/spot/userDataStream: Bitmusa answered HTTP 401: "
        "invalid api key or auth key",
        f"userstream record: 0 frames written to {out}",
    ]
    assert len(out.read_bytes().splitlines()) == 1  # the header only
    lab.assert_no_secret(stdout, stderr, out.read_bytes())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["record", "coinlocally", "--out", "/nonexistent-dir/r.jsonl"],
            "userstream record: cannot write /nonexistent-dir/r.jsonl: No such file or directory",
        ),
        (
            ["record", "bitmusa", "--out", "r.jsonl"],
            "userstream record: Bitmusa needs --auth-key or the environment variable "
            "USERSTREAM_BITMUSA_AUTH_KEY",
        ),
    ],
)
async def test_record_refuses_what_it_cannot_do_with_exit_2(lab: Lab, args: list[str], message: str) -> None:
    env = lab.environment("coinlocally", USERSTREAM_BITMUSA_API_KEY="x")
    code, stdout, stderr = await lab.run(*args, env=env)
    assert (code, stdout, stderr.decode()) == (2, b"", message + "\n")


# --- replay of broken recordings --------------------------------------------------------------------------


def _header(exchange: Exchange) -> Any:
    return header_for(exchange, "alice", "0.1.0", 1.0, {"ws": "ws://127.0.0.1:1/"})


async def test_hand_corrupted_lines_are_reported_with_their_numbers_and_exit_1(
    lab: Lab, tmp_path: Path
) -> None:
    path = tmp_path / "corrupt.jsonl"
    writer = RecordingWriter.create(path, _header(Exchange.COINLOCALLY))
    _, _, opened, part, closed = lab.expected("coinlocally")
    writer.write_frame(1.0, "connect success", 1)  # line 2
    writer.write_frame(1.1, coinlocally_render.render_event(opened), 1)  # line 3: corrupted below
    writer.write_frame(1.2, coinlocally_render.render_event(part), 1)  # line 4: its gzip truncated below
    writer.write_frame(1.3, '{"e":"listStatus","E":1}', 1)  # line 5: an event type nobody knows
    writer.write_frame(1.4, coinlocally_render.render_event(closed), 1)  # line 6
    writer.close()
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2][:40]  # cut mid-line, as a crash or a careless edit would
    record = json.loads(lines[3])
    record["data"] = base64.b64encode(base64.b64decode(record["data"])[:-6]).decode()
    lines[3] = json.dumps(record).encode()
    lines.insert(6, b"")  # line 7: an empty line
    path.write_bytes(b"\n".join(lines))

    code, stdout, stderr = await lab.run("replay", str(path), "--format", "jsonl")
    assert stdout.splitlines() == [to_json(closed)]
    assert stderr.decode().splitlines() == [
        "userstream replay: line 3: bad record: not JSON: Input data was truncated",
        "userstream replay: line 4: unknown frame (coinlocally, connection 1, binary): "
        f"truncated gzip frame ({len(base64.b64decode(record['data']))} bytes)",
        "userstream replay: line 5: unknown frame (coinlocally, connection 1, text): "
        "unknown event type 'listStatus'",
        "userstream replay: line 7: bad record: empty line",
        "userstream replay: 4 frames: 1 events, 1 other, 2 unknown; 2 bad lines",
    ]
    assert code == 1


async def test_bad_fields_and_base64_are_bad_records(lab: Lab, tmp_path: Path) -> None:
    path = tmp_path / "fields.jsonl"
    header = json.dumps({"format": "userstream-recording", "version": 1, "exchange": "bitmusa",
                         "account": "a", "userstream": "0.1.0", "started_at": 1.0})  # fmt: skip
    lines = [
        header,
        '{"t":1.0,"exchange":"bitmusa","conn":1,"type":"binary","data":"***"}',
        '{"t":1.0,"exchange":"kraken","conn":1,"type":"text","data":"x"}',
        '{"t":1.0,"exchange":"bitmusa","conn":-1,"type":"text","data":"x"}',
        '{"t":1.0,"exchange":"bitmusa","conn":1,"type":"text"}',
        '["not", "an", "object"]',
    ]
    path.write_text("\n".join(lines) + "\n")
    code, stdout, stderr = await lab.run("replay", str(path))
    assert stderr.decode().splitlines() == [
        "userstream replay: line 2: bad record: data is not valid base64: Only base64 data is allowed",
        "userstream replay: line 3: bad record: not a frame record: Invalid enum value 'kraken' - at "
        "`$.exchange`",
        "userstream replay: line 4: bad record: not a frame record: Expected `int` >= 0 - at `$.conn`",
        "userstream replay: line 5: bad record: not a frame record: Object missing required field `data`",
        "userstream replay: line 6: bad record: not a frame record: Expected `object`, got `array`",
        "userstream replay: 0 frames: 0 events, 0 other, 0 unknown; 5 bad lines",
    ]
    assert (code, stdout) == (1, b"")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "line 1 is empty: not a userstream recording"),
        (
            b'{"e":"executionReport"}\n',
            "line 1 is not a userstream recording header (Object missing required field `exchange`)",
        ),
        (
            b'{"format":"other","version":1,"exchange":"bitmusa","account":"a","userstream":"x",'
            b'"started_at":1}\n',
            "line 1 is not a userstream recording header (format 'other')",
        ),
        (
            b'{"format":"userstream-recording","version":2,"exchange":"bitmusa","account":"a",'
            b'"userstream":"x","started_at":1}\n',
            "recording format version 2 is not supported (this userstream reads 1)",
        ),
    ],
)
async def test_a_file_that_is_not_a_recording_exits_2(
    lab: Lab, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "not.jsonl"
    path.write_bytes(content)
    code, stdout, stderr = await lab.run("replay", str(path))
    assert (code, stdout, stderr.decode()) == (2, b"", f"userstream replay: {path}: {message}\n")


async def test_a_missing_file_exits_2(lab: Lab, tmp_path: Path) -> None:
    code, stdout, stderr = await lab.run("replay", str(tmp_path / "absent.jsonl"))
    assert (code, stdout) == (2, b"")
    assert (
        stderr.decode()
        == f"userstream replay: cannot read {tmp_path / 'absent.jsonl'}: No such file or directory\n"
    )


# --- the format's guarantees ------------------------------------------------------------------------------


def test_a_credential_echoed_in_a_frame_is_scrubbed_and_marked(tmp_path: Path) -> None:
    secret = "tok-SECRET"
    path = tmp_path / "scrub.jsonl"
    writer = RecordingWriter.create(path, _header(Exchange.COINLOCALLY), secrets=[secret, ""])
    echoed = f'{{"event":"error","code":401002,"message":"bad token {secret}"}}'
    writer.write_frame(1.0, echoed, 1)
    writer.write_frame(2.0, gzip_bytes(echoed.encode()), 1)
    writer.write_frame(3.0, echoed.encode(), 2)
    writer.write_frame(4.0, "sub success", 2)
    writer.close()
    lines = path.read_bytes().splitlines()
    assert secret.encode() not in path.read_bytes()
    cleaned = echoed.replace(secret, HIDDEN)
    records = [json.loads(line) for line in lines[1:]]
    assert records[0] == {
        "t": 1.0,
        "exchange": "coinlocally",
        "conn": 1,
        "type": "text",
        "data": cleaned,
        "scrubbed": True,
    }
    assert gunzip(base64.b64decode(records[1]["data"])) == cleaned.encode()
    assert base64.b64decode(records[2]["data"]) == cleaned.encode()
    assert [record.get("scrubbed") for record in records] == [True, True, True, None]
    assert writer.frames == 4


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("wss://websocket.bitmusa.com:60002", "wss://websocket.bitmusa.com:60002"),
        ("wss://websocket.bitmusa.com:60002/ws/spot/AbCdEf123", "wss://websocket.bitmusa.com:60002/ws/spot/<listenKey>"),
        ("https://user:pass@example.com/x?token=abc&b=", "https://example.com/x?token=<redacted>&b=<redacted>"),
        ("ws://127.0.0.1:8765/spotws_user/userData/ws", "ws://127.0.0.1:8765/spotws_user/userData/ws"),
    ],
)  # fmt: skip
def test_urls_in_a_header_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown
