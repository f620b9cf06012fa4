"""client/frame_warnings.py with time as an input: the first frame of each kind is a WARNING with its reason,
later ones are counted and reported once per interval (or when the connection ends), every one at DEBUG."""

from __future__ import annotations

import logging
import math

import pytest

from userstream.client.frame_warnings import FrameWarnings
from userstream.protocol.messages import Unknown, UnknownKind

NAME = "bitmusa/alice connection=1"
NEGATIVE = Unknown("{...}", "$.data.free: a balance cannot be negative, got -1", UnknownKind.MALFORMED)
TOO_BIG = Unknown("{...}", "$.data.amount: cannot be negative, got -2", UnknownKind.MALFORMED)
GARBAGE = Unknown("nope", "Bitmusa frame is not JSON", UnknownKind.UNDECODABLE)
NEWS = Unknown("{}", "unknown stream", UnknownKind.UNKNOWN)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


def debug(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.DEBUG]


def first_line(kind: str, fate: str, reason: str, interval: str = "60") -> str:
    return (
        f"{NAME}: {kind} frame {fate}: {reason} (more {kind} frames on this connection: a count at most "
        f"every {interval}s, each at DEBUG)"
    )


@pytest.fixture
def caplog(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="userstream.client")
    return caplog


def test_the_first_of_a_kind_warns_the_rest_are_counted_and_reported_after_the_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = FrameWarnings(NAME, 60.0)
    assert log.frame(NEGATIVE, now=100.0) is False
    assert log.next_report_at == math.inf  # nothing counted yet
    assert log.frame(TOO_BIG, now=101.0) is True  # the first count: the heartbeat must wake at 160
    assert log.next_report_at == 160.0
    for second in range(102, 110):
        assert log.frame(NEGATIVE, now=float(second)) is False
    log.poll(159.9)
    assert warnings(caplog) == [first_line("malformed", "refused", NEGATIVE.reason)]
    log.poll(160.0)
    assert warnings(caplog)[1:] == [
        f"{NAME}: 9 more malformed frames refused in the last 60.0s (latest: {NEGATIVE.reason})"
    ]
    assert log.next_report_at == math.inf
    # every frame's detail stays at DEBUG, as before
    assert (
        debug(caplog)
        == [f"{NAME}: malformed frame refused: {NEGATIVE.reason}"]
        + [f"{NAME}: malformed frame refused: {TOO_BIG.reason}"]
        + [f"{NAME}: malformed frame refused: {NEGATIVE.reason}"] * 8
    )


def test_each_kind_has_its_own_first_warning_and_its_own_count(caplog: pytest.LogCaptureFixture) -> None:
    log = FrameWarnings(NAME, 10.0)
    log.frame(NEGATIVE, now=0.0)
    log.frame(GARBAGE, now=1.0)
    log.frame(NEWS, now=2.0)
    log.frame(GARBAGE, now=3.0)
    log.frame(NEWS, now=4.0)
    log.frame(NEWS, now=5.0)
    assert log.next_report_at == 11.0  # the undecodable count is due first
    log.poll(11.0)
    log.poll(12.0)
    assert warnings(caplog) == [
        first_line("malformed", "refused", NEGATIVE.reason, "10"),
        first_line("undecodable", "refused", GARBAGE.reason, "10"),
        first_line("unknown", "ignored", NEWS.reason, "10"),
        f"{NAME}: 1 more undecodable frame refused in the last 10.0s (latest: {GARBAGE.reason})",
        f"{NAME}: 2 more unknown frames ignored in the last 10.0s (latest: {NEWS.reason})",
    ]


def test_a_frame_after_the_interval_reports_the_count_at_once(caplog: pytest.LogCaptureFixture) -> None:
    log = FrameWarnings(NAME, 60.0)
    log.frame(NEGATIVE, now=0.0)
    log.frame(NEGATIVE, now=1.0)
    log.frame(TOO_BIG, now=75.0)  # no poll in between: the frame itself finds the count due
    assert warnings(caplog)[1:] == [
        f"{NAME}: 2 more malformed frames refused in the last 75.0s (latest: {TOO_BIG.reason})"
    ]
    # the next window starts at the report: at most one WARNING per kind per interval
    log.frame(NEGATIVE, now=80.0)
    assert log.next_report_at == 135.0


def test_the_count_left_when_the_connection_ends_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    log = FrameWarnings(NAME, 60.0)
    log.frame(GARBAGE, now=0.0)
    log.frame(GARBAGE, now=0.5)
    log.frame(GARBAGE, now=1.0)
    log.close(now=2.0)
    log.close(now=3.0)  # nothing left the second time
    assert warnings(caplog)[1:] == [
        f"{NAME}: 2 more undecodable frames refused in the last 2.0s before the connection ended "
        f"(latest: {GARBAGE.reason})"
    ]


def test_a_quiet_connection_reports_nothing_more(caplog: pytest.LogCaptureFixture) -> None:
    log = FrameWarnings(NAME, 60.0)
    log.frame(NEWS, now=0.0)
    log.poll(1000.0)
    log.close(1001.0)
    assert warnings(caplog) == [first_line("unknown", "ignored", NEWS.reason)]


@pytest.mark.parametrize("interval", [0.0, -1.0, math.nan])
def test_the_interval_must_be_positive(interval: float) -> None:
    with pytest.raises(ValueError, match="the warning interval must be positive"):
        FrameWarnings(NAME, interval)
