"""The demo's dashboard as a person sees it: `userstream.demo` in a real terminal (tmux) at 80x24 and at
160x50, the screen captured and read.

Each test starts its own tmux server (a socket of its own, `-L`, no user configuration, no status line),
runs the demo there with a seed and a cut every 1.5 s, polls `capture-pane` until the screen shows what a
user looks for (bounded by TMUX_WAIT, never a fixed sleep), and asserts it on one capture: the account
states, the balances of every asset, open orders and the latest fill, the header's notice of the reconnect
after a cut, no line wider than the terminal and no row spent on "... and N more". The server is killed at
the end. tmux is installed by `make unit` (scripts/ensure-tmux.sh); a missing one fails, never skips.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from userstream.server.simulator import INSTRUMENTS

TMUX_WAIT = 60.0  # the bound on waiting for a screen; a loaded 2-core machine shows one in a few seconds
ASSETS = sorted({part for instrument in INSTRUMENTS for part in instrument.symbol.split("/")})
NUMBER = r"\d+(?:\.\d+)?"
ACCOUNT_ROW = r"^demo-{0}\s+{0}\s+(live|reconnecting)\s"
ORDER_ROW = re.compile(rf"^demo-(bitmusa|coinlocally)\s+\d+\s+[A-Z]+/USDT\s+(buy|sell)\s+{NUMBER}\s+{NUMBER}")
FILL_ROW = re.compile(
    rf"\d\d:\d\d:\d\d\.\d{{3}}\s+demo-(bitmusa|coinlocally)\s+[A-Z]+/USDT\s+(buy|sell)\s+{NUMBER}"
)
NOTICE = re.compile(
    r"^! \d\d:\d\d:\d\d demo-(bitmusa|coinlocally) live again( after \d+\.\ds)? "
    r"\(reconnect [1-9]\d*, resync \d+\)$"
)


class Terminal:
    """A tmux server of its own with one detached session of a fixed size."""

    def __init__(self, tmux: str, socket: str, workdir: Path) -> None:
        self.tmux = tmux
        self.socket = socket
        self.config = workdir / "tmux.conf"
        self.config.write_text("set -g status off\nset -g remain-on-exit on\n")
        self.stderr = workdir / "demo.stderr"
        self.socket_path: Path | None = None

    def run(self, *args: str) -> str:
        done = subprocess.run(  # noqa: S603 - tmux from PATH, arguments of this test
            [self.tmux, "-L", self.socket, "-f", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, f"tmux {' '.join(args)}: {done.stderr}"
        return done.stdout

    def start(self, width: int, height: int, command: list[str]) -> None:
        line = f"{shlex.join(command)} 2>{shlex.quote(str(self.stderr))}"
        self.run("new-session", "-d", "-s", "demo", "-x", str(width), "-y", str(height), line)
        self.socket_path = Path(self.run("display-message", "-p", "#{socket_path}").strip())
        assert self.run("display-message", "-p", "-t", "demo", "#{pane_width}x#{pane_height}").strip() == (
            f"{width}x{height}"
        )

    def capture(self) -> list[str]:
        return self.run("capture-pane", "-p", "-t", "demo").split("\n")[:-1]

    def wait_for(self, shows: Callable[[list[str]], bool]) -> list[str]:
        """The first capture that `shows` accepts, polled until TMUX_WAIT."""
        deadline = time.monotonic() + TMUX_WAIT
        screen = self.capture()
        while not shows(screen):
            if self.run("display-message", "-p", "-t", "demo", "#{pane_dead}").strip() == "1":
                pytest.fail(f"the demo exited:\n{self.stderr.read_text()}\nscreen:\n" + "\n".join(screen))
            if time.monotonic() > deadline:
                pytest.fail(f"no such screen within {TMUX_WAIT}s; the last:\n" + "\n".join(screen))
            time.sleep(0.1)
            screen = self.capture()
        return screen

    def close(self) -> None:
        """Kill the server (and the demo with it); tmux leaves its socket file behind, so remove it."""
        subprocess.run(  # noqa: S603 - as in `run`
            [self.tmux, "-L", self.socket, "kill-server"], capture_output=True, timeout=30, check=False
        )
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)


_SOCKETS = itertools.count()


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.fail(
            "tmux is not on PATH: the dashboard is tested in a real terminal. "
            "Run `bash scripts/ensure-tmux.sh` (as `make unit` does)."
        )
    socket = f"userstream-{os.getpid()}-{next(_SOCKETS)}"  # short: a socket path has ~100 bytes
    screen = Terminal(tmux, socket, tmp_path)
    try:
        yield screen
    finally:
        screen.close()


def demo_command() -> list[str]:
    return [
        sys.executable,
        "-m",
        "userstream.demo",
        "--seed",
        "7",
        "--rate",
        "40",
        "--drop-every",
        "1.5",  # a cut soon, and again while the test looks
        "--notice-seconds",
        "30",  # the header holds the reconnect longer than a loaded machine takes to capture it
    ]


def complete(screen: list[str]) -> bool:
    """What a user looks for: accounts, every balance, an open order, a fill, the reconnect notice."""
    return (
        all(
            any(re.match(ACCOUNT_ROW.format(exchange), line) for line in screen)
            for exchange in ("bitmusa", "coinlocally")
        )
        and all(any(line.startswith(f"{asset} ") for line in screen) for asset in ASSETS)
        and any(ORDER_ROW.match(line) for line in screen)
        and any(FILL_ROW.search(line) for line in screen)
        and any(NOTICE.match(line) for line in screen)
    )


def assert_readable(screen: list[str], width: int, height: int) -> None:
    text = "\n".join(screen)
    assert len(screen) == height, text
    assert all(len(line) <= width for line in screen), text
    # The title, cut before the clock and the rate are.
    title = r"userstream demo: serve --simulate 40 on http://127\.0\.0\S*"
    rate = r"(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d UTC  \d+\.\d (ev|events)/s"
    assert re.fullmatch(f"{title}  {rate}", screen[0]), text
    assert not any(re.search(r"\.\.\. and \d+ more", line) for line in screen), text
    assert "OPEN ORDERS  none" not in text, text
    assert "RECENT FILLS  none yet" not in text, text
    # The balances: one row per asset, a `free / locked` cell for each account.
    header = next(line for line in screen if line.startswith("BALANCES"))
    assert header.split() == [
        "BALANCES",
        "demo-bitmusa",
        "free",
        "/",
        "locked",
        "demo-coinlocally",
        "free",
        "/",
        "locked",
    ]
    for asset in ASSETS:
        row = next(line for line in screen if line.startswith(f"{asset} "))
        assert re.fullmatch(rf"{asset}\s+{NUMBER} / {NUMBER}\s+{NUMBER} / {NUMBER}", row), row
    # The header holds the reconnect after a cut, right under the title.
    assert any(NOTICE.match(line) for line in screen[:4]), text
    assert any(re.match(r"OPEN ORDERS \((\d+|\d+ of \d+, newest)\)", line) for line in screen), text


def test_the_demo_at_80x24_shows_state_balances_orders_the_latest_fill_and_the_reconnect(
    terminal: Terminal,
) -> None:
    terminal.start(80, 24, demo_command())
    screen = terminal.wait_for(complete)
    assert_readable(screen, 80, 24)
    # The footer last: below it only the rows of a frame shorter than the terminal, none scrolled off.
    assert [line for line in screen if line][-1].startswith("Ctrl-C to stop. Try: curl http://127.0.0.1:")


def test_the_demo_at_160x50_shows_more_of_each_side_by_side(terminal: Terminal) -> None:
    terminal.start(160, 50, demo_command())

    def many_fills(screen: list[str]) -> bool:  # the demo has made ten fills within a few seconds
        return complete(screen) and sum(1 for line in screen if FILL_ROW.search(line)) >= 10

    screen = terminal.wait_for(many_fills)
    assert_readable(screen, 160, 50)
    text = "\n".join(screen)
    # More of each: the events column and the age of the last event are back, orders and fills share
    # the lines (so ten fills and more show beside the orders), the log has room.
    assert (
        "ACCOUNT           EXCHANGE     STATE        EVENTS  EV/S RECONNECTS RESYNCS  LAST EVENT" in screen
    ), text
    assert any(re.match(r"OPEN ORDERS \(.*\)\s+\u2502 RECENT FILLS", line) for line in screen), text
    assert "LOG" in screen, text
    # The footer last: below it only the rows of a frame shorter than the terminal, none scrolled off.
    assert [line for line in screen if line][-1].startswith("Ctrl-C to stop. Try: curl http://127.0.0.1:")
