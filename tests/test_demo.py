"""The main job, `make demo`: as a non-terminal run (the JSONL contract, bounded), and its dashboard loop."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time

from userstream.demo import demo_gateway_config
from userstream.eventjson import from_dict, to_json
from userstream.events import Fill
from userstream.gateway import Gateway
from userstream.gateway.dashboard import run_dashboard
from userstream.server import ServerConfig, demo_account, running_server


def test_demo_prints_contract_jsonl_from_a_gateway_on_both_exchanges_and_stops() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "userstream.demo", "--duration", "2", "--rate", "40", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    events = [from_dict(json.loads(line)) for line in lines]
    assert {(event.exchange.value, event.account) for event in events} == {
        ("bitmusa", "demo-bitmusa"),
        ("coinlocally", "demo-coinlocally"),
    }
    # Every line is the contract's JSON exactly: what eventjson writes for the event is what was printed.
    assert [to_json(event).decode() for event in events] == lines
    assert {event.kind for event in events} == {"balance", "order", "fill"}
    fills = [event for event in events if isinstance(event, Fill)]
    assert all(fill.amount > 0 for fill in fills)
    assert "demo-coinlocally subscribed" in done.stderr
    assert "gateway stopped" in done.stderr


def test_demo_help_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "userstream.demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert "--drop-every" in done.stdout


def test_demo_refuses_a_negative_notice_time() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "userstream.demo", "--notice-seconds", "-1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    # (the program's name before it is another part of issue 15's)
    assert done.stderr.splitlines()[-1].endswith(": error: --notice-seconds must be 0 or more")


async def test_the_dashboard_draws_frames_of_the_running_gateway_and_gives_the_screen_back() -> None:
    account = demo_account()
    config = ServerConfig(accounts=(account,), port=0, simulate_rate=50.0, seed=1)
    async with running_server(config) as server:
        gateway_config, environ = demo_gateway_config(server, account, http_port=None)
        async with Gateway(gateway_config, environ=environ) as gateway:
            out = io.StringIO()
            stop = asyncio.Event()

            async def stop_after_two_frames() -> None:
                while out.getvalue().count("\x1b[H") < 2:  # noqa: ASYNC110 - a StringIO has no signal
                    await asyncio.sleep(0.01)
                stop.set()

            async with asyncio.timeout(10), asyncio.TaskGroup() as tasks:
                tasks.create_task(stop_after_two_frames())
                await run_dashboard(
                    gateway,
                    stop,
                    title="userstream demo",
                    out=out,
                    clock=time.monotonic,
                    wall_ms=lambda: time.time_ns() // 1_000_000,
                )
    text = out.getvalue()
    assert text.startswith("\x1b[?1049h\x1b[?25l\x1b[H")  # alternate screen, no cursor, home
    assert text.endswith("\x1b[?25h\x1b[?1049l")  # and back
    frame = text.split("\x1b[H")[1]
    assert frame.startswith("userstream demo  ")
    assert "\ndemo-bitmusa      bitmusa      " in frame
    assert "\ndemo-coinlocally  coinlocally  " in frame
    assert frame.endswith("Ctrl-C to stop\x1b[K\x1b[J")
