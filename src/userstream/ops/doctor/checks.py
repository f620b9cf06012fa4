"""The doctor's vocabulary and its pure judgements: verdicts, checks, options, the clock and gzip rulings.

This module owns what a check is (`Check`: a name, a `Verdict` and its reason), what `diagnose` is given
(`DoctorOptions`), the limits it judges by, and the judgements that need no I/O: the clock skew from an
HTTP `Date` header, the first binary frame's gzip, and how a classified frame is described.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from userstream.errors import FrameDecodeError
from userstream.events import Exchange
from userstream.protocol.codec import decode_frame
from userstream.protocol.messages import (
    ControlReply,
    DataEvents,
    Incoming,
    SystemClose,
    Unknown,
)

__all__ = [
    "EXIT_INTERRUPTED",
    "SHOWN_REPLY_CHARS",
    "SKEW_FAIL",
    "SKEW_WARN",
    "SLOW_ROUND_TRIP",
    "Check",
    "DoctorOptions",
    "Verdict",
    "describe",
    "judge_binary_frame",
    "judge_clock_skew",
    "ms",
]

#: Clock skew limits, seconds. Over SKEW_WARN, lags computed from event times are off by as much; over
#: SKEW_FAIL, exchanges refuse signed REST requests (their time windows are seconds wide).
SKEW_WARN: Final = 1.0
SKEW_FAIL: Final = 30.0
#: A ping answered slower than this is a WARN: the heartbeat still works, the path is poor.
SLOW_ROUND_TRIP: Final = 1.0

#: The exit status after Ctrl-C (SIGINT): the shell's 128 + 2, since the diagnosis was cut short.
EXIT_INTERRUPTED: Final = 130

_GZIP_MAGIC: Final = b"\x1f\x8b"
#: How much of a server's refusal a check quotes.
SHOWN_REPLY_CHARS: Final = 200


class Verdict(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    verdict: Verdict
    detail: str

    def line(self) -> str:
        return f"{self.verdict.value:<4}  {self.name:<15}  {self.detail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DoctorOptions:
    """What to check and how long to wait. `wall_clock` (epoch seconds) is what the clock check compares
    with the server's; a test passes a shifted one."""

    exchange: Exchange
    api_key: str | None = field(default=None, repr=False)
    auth_key: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    rest_url: str | None = None
    ws_url: str | None = None
    account: str = "default"
    timeout: float = 5.0
    frame_wait: float = 3.0
    verify_tls: bool = True
    ca_file: str | None = None  # extra trusted CA certificates (PEM), as connect()'s
    wall_clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)


# --- pure judgements -------------------------------------------------------------------------------------


def judge_clock_skew(date_header: str | None, sent_at: float, received_at: float, source: str) -> Check:
    """The clock check from a reply's `Date` header and the local (epoch) times around its request.

    `Date` has 1 s resolution: the server's time when it answered lies in [D, D + 1), and that moment lies
    in [sent_at, received_at] locally. The skew reported is the smallest one consistent with both, so a
    clock in sync is never blamed for the header's rounding.
    """
    name = "clock skew"
    if date_header is None:
        return Check(name, Verdict.SKIP, f"the reply to {source} has no Date header")
    try:
        date = email.utils.parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return Check(name, Verdict.SKIP, f"the Date header of {source} is not an HTTP date")
    server = date.timestamp() if date.tzinfo is not None else date.replace(tzinfo=None).timestamp()
    lowest = server - received_at  # skew = server time - local time
    highest = server + 1 - sent_at
    skew = 0.0 if lowest <= 0 <= highest else (lowest if lowest > 0 else highest)
    if skew == 0:
        return Check(name, Verdict.OK, f"in agreement with the Date header of {source} (1 s resolution)")
    side = "behind" if skew > 0 else "ahead of"
    detail = f"the local clock is {side} the server's by at least {abs(skew):.1f} s (Date header of {source})"
    if abs(skew) > SKEW_FAIL:
        return Check(
            name, Verdict.FAIL, f"{detail}; fix it (NTP): signed requests fail, lags are meaningless"
        )
    if abs(skew) > SKEW_WARN:
        return Check(name, Verdict.WARN, f"{detail}; lags computed from event times are off by as much")
    return Check(name, Verdict.OK, detail)


def judge_binary_frame(frame: bytes, parser: Callable[[bytes | str], Incoming]) -> Check:
    """The gzip check of Coinlocally's first binary frame."""
    name = "gzip decoding"
    gzipped = frame[:2] == _GZIP_MAGIC
    try:
        message = decode_frame(frame)
    except FrameDecodeError as exc:
        return Check(
            name, Verdict.FAIL, f"the first binary frame ({len(frame)} bytes) does not decode: {exc}"
        )
    incoming = parser(frame)
    sizes = f"{len(frame)} bytes of gzip -> {len(message)} bytes" if gzipped else f"{len(frame)} bytes"
    if isinstance(incoming, Unknown):
        return Check(
            name,
            Verdict.WARN,
            f"first binary frame: {sizes}, not understood: {incoming.reason} "
            "(record it with `userstream record` and report it)",
        )
    if not gzipped:
        return Check(
            name,
            Verdict.WARN,
            f"first binary frame: {sizes}, not gzip (the document says binary frames are): "
            f"{describe(incoming)}",
        )
    return Check(name, Verdict.OK, f"first binary frame: {sizes} of JSON, {describe(incoming)}")


def describe(incoming: Incoming) -> str:
    if isinstance(incoming, DataEvents):
        count = len(incoming.events)
        return f"{count} event{'' if count == 1 else 's'} parsed"
    if isinstance(incoming, SystemClose):
        return "the SYSTEM close notice"
    if isinstance(incoming, ControlReply):
        return f"the control reply {incoming.text!r}"
    return type(incoming).__name__


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"
