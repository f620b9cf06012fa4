"""Ctrl-C anywhere prints no traceback (issue 13, section 5).

Every command, and the README's library example, runs as a real subprocess until it is busy (streaming from
`userstream serve`, serving, replaying a recording that is still being written, or in the middle of a
connection to a server that accepts and never answers); then it gets SIGINT, as Ctrl-C sends it. It must
exit with its documented status (0 for the commands whose way to stop is a signal, 130 for the ones cut
short) and its stderr must hold no "Traceback".
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from support.examples import BITMUSA_WALLET
from support.processes import LoggedProcess
from userstream.events import Exchange
from userstream.ops.recording import FrameRecord, header_for
from userstream.server import ServerConfig, ServerHandle, load_accounts, running_server

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "stream_bitmusa.py"
WAIT = 20.0  # the bound on every wait; never reached when all is well
ALICE_BITMUSA = {
    "USERSTREAM_BITMUSA_API_KEY": "alice-bitmusa-api-key-example",
    "USERSTREAM_BITMUSA_AUTH_KEY": "alice-bitmusa-auth-key-example",
}


@asynccontextmanager
async def serve() -> AsyncIterator[ServerHandle]:
    config = ServerConfig(
        host="127.0.0.1", port=0, accounts=load_accounts(ROOT / "examples" / "accounts.toml")
    )
    async with running_server(config) as server:
        yield server


@dataclass
class Silent:
    port: int
    accepted: asyncio.Event


@asynccontextmanager
async def silent_server() -> AsyncIterator[Silent]:
    """A TCP server that accepts every connection and never says a word: a client on it is mid-connect."""
    held: list[asyncio.StreamWriter] = []
    accepted = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        accepted.set()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield Silent(server.sockets[0].getsockname()[1], accepted)
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def streaming(server: ServerHandle) -> None:
    async with asyncio.timeout(WAIT):
        await server.wait_for_streams("alice", exchange=Exchange.BITMUSA)


CLI = [sys.executable, "-m", "userstream"]


@dataclass(frozen=True)
class Case:
    #: how to start it, given the work directory and the server's base URL
    argv: Callable[[Path, str], list[str]]
    #: when it is busy: awaited with the process and the server
    busy: Callable[[LoggedProcess, ServerHandle], Awaitable[None]]
    exit_code: int
    environ: dict[str, str] | None = None


def _watch(tmp: Path, url: str) -> list[str]:
    return [*CLI, "watch", "bitmusa", "--rest-url", url, "--ws-url", url.replace("http", "ws", 1)]


def _record(tmp: Path, url: str) -> list[str]:
    ws = url.replace("http", "ws", 1)
    return [*CLI, "record", "bitmusa", "--rest-url", url, "--ws-url", ws, "--out", str(tmp / "rec.jsonl")]


def _gateway(tmp: Path, url: str) -> list[str]:
    config = tmp / "gateway.toml"
    config.write_text(
        f"""
[gateway]
http_host = "127.0.0.1"
http_port = 0

[[accounts]]
name = "alice"
exchange = "bitmusa"
api_key_env = "USERSTREAM_BITMUSA_API_KEY"
auth_key_env = "USERSTREAM_BITMUSA_AUTH_KEY"
rest_url = "{url}"
ws_url = "{url.replace("http", "ws", 1)}"

[[sinks]]
type = "jsonl"
path = "{tmp / "events.jsonl"}"
"""
    )
    return [*CLI, "gateway", "--config", str(config)]


async def _stream_busy(process: LoggedProcess, server: ServerHandle) -> None:
    await streaming(server)


async def _printed(process: LoggedProcess, text: str, where: str = "stdout") -> None:
    await process.until(lambda: text in getattr(process, where), repr(text))


CASES = {
    "watch": Case(_watch, _stream_busy, 0, ALICE_BITMUSA),
    "record": Case(_record, _stream_busy, 0, ALICE_BITMUSA),
    "gateway": Case(_gateway, _stream_busy, 0, ALICE_BITMUSA),
    "example": Case(lambda tmp, url: [sys.executable, str(EXAMPLE), url], _stream_busy, 130),
    "serve": Case(
        lambda tmp, url: [
            *CLI,
            "serve",
            "--port",
            "0",
            "--accounts",
            str(ROOT / "examples" / "accounts.toml"),
        ],
        lambda process, server: _printed(process, "listening on"),
        0,
    ),
    "demo": Case(
        lambda tmp, url: [sys.executable, "-m", "userstream.demo", "--duration", "60", "--rate", "40"],
        lambda process, server: _printed(process, '"kind"'),
        0,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_ctrl_c_while_busy_prints_no_traceback(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    async with serve() as server:
        process = LoggedProcess(tmp_path, case.argv(tmp_path, server.base_url), case.environ)
        await process.start()
        try:
            await case.busy(process, server)
            code = await process.stop(signal.SIGINT)
        finally:
            await process.kill()
    assert "Traceback" not in process.stderr
    assert code == case.exit_code, process.stderr[-2000:]


@pytest.mark.parametrize(
    ("name", "exit_code"), [("watch", 0), ("record", 0), ("gateway", 0), ("example", 130)]
)
async def test_ctrl_c_while_connecting_prints_no_traceback(name: str, exit_code: int, tmp_path: Path) -> None:
    async with silent_server() as silent:
        argv = CASES[name].argv(tmp_path, f"http://127.0.0.1:{silent.port}")
        process = LoggedProcess(tmp_path, argv, ALICE_BITMUSA)
        await process.start()
        try:
            async with asyncio.timeout(WAIT):  # the listenKey request is sent, and will never be answered
                await silent.accepted.wait()
            code = await process.stop(signal.SIGINT)
        finally:
            await process.kill()
    assert "Traceback" not in process.stderr
    assert code == exit_code, process.stderr[-2000:]


async def test_ctrl_c_during_doctors_connect_prints_no_traceback(tmp_path: Path) -> None:
    async with silent_server() as silent:
        url = f"http://127.0.0.1:{silent.port}"
        argv = [*CLI, "doctor", "bitmusa", "--rest-url", url, "--ws-url", url.replace("http", "ws", 1)]
        process = LoggedProcess(tmp_path, [*argv, "--timeout", "60"], ALICE_BITMUSA)
        await process.start()
        try:
            # Reachability is checked; the clock check's request now waits on a server that never answers.
            await _printed(process, "ws reachable")
            code = await process.stop(signal.SIGINT)
        finally:
            await process.kill()
    assert "Traceback" not in process.stderr
    assert code == 130
    assert process.stderr.strip() == "userstream doctor: interrupted"


async def test_ctrl_c_during_replay_of_a_recording_still_written_prints_no_traceback(tmp_path: Path) -> None:
    fifo = tmp_path / "recording.jsonl"
    os.mkfifo(fifo)
    process = LoggedProcess(tmp_path, [*CLI, "replay", str(fifo), "--format", "jsonl"])
    await process.start()
    try:
        loop = asyncio.get_running_loop()
        writer = await loop.run_in_executor(None, fifo.open, "wb")  # opens once replay opened it to read
        with writer:
            header = header_for(Exchange.BITMUSA, "alice", "test", 1.0, {})
            frame = FrameRecord(t=2.0, exchange=Exchange.BITMUSA, conn=1, type="text", data=BITMUSA_WALLET)
            writer.write(msgspec.json.encode(header) + b"\n" + msgspec.json.encode(frame) + b"\n")
            writer.flush()
            await _printed(process, '"kind":"balance"')  # replayed; now it waits for the next line
            code = await process.stop(signal.SIGINT)
    finally:
        await process.kill()
    assert "Traceback" not in process.stderr
    assert code == 130
