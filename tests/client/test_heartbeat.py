"""protocol/heartbeat.py: ping and idle deadlines as exact arithmetic on times passed in."""

from __future__ import annotations

import math

import pytest

from userstream.protocol.heartbeat import Due, Heartbeat


def test_first_ping_is_due_one_interval_after_start() -> None:
    beat = Heartbeat(ping_interval=30.0, idle_timeout=45.0, now=100.0)
    assert beat.next_ping_at == 130.0
    assert beat.idle_deadline == 145.0
    assert beat.next_deadline == 130.0
    assert beat.poll(129.999) is Due.NOTHING
    assert beat.poll(130.0) is Due.PING


def test_pings_keep_their_rhythm_whatever_arrives() -> None:
    beat = Heartbeat(ping_interval=30.0, idle_timeout=45.0, now=0.0)
    beat.frame_received(10.0)
    beat.frame_received(29.0)
    assert beat.poll(30.0) is Due.PING  # data does not replace the ping the server demands
    beat.ping_sent(30.0)
    assert beat.next_ping_at == 60.0
    assert beat.idle_deadline == 74.0


def test_silence_for_idle_timeout_is_death_and_death_wins_over_a_ping() -> None:
    beat = Heartbeat(ping_interval=30.0, idle_timeout=45.0, now=0.0)
    beat.ping_sent(30.0)
    assert beat.poll(44.999) is Due.NOTHING
    assert beat.poll(45.0) is Due.DEAD
    assert beat.poll(60.0) is Due.DEAD


def test_any_frame_postpones_death_and_old_times_never_move_it_back() -> None:
    beat = Heartbeat(ping_interval=None, idle_timeout=5.0, now=0.0)
    beat.frame_received(4.0)
    beat.frame_received(1.0)
    assert beat.idle_deadline == 9.0
    assert beat.next_ping_at == math.inf
    assert beat.next_deadline == 9.0


def test_time_spent_waiting_for_the_consumer_is_not_silence() -> None:
    beat = Heartbeat(ping_interval=1.0, idle_timeout=5.0, now=0.0)
    beat.frame_received(2.0)
    beat.suspend()
    assert beat.idle_deadline == math.inf
    assert beat.poll(100.0) is Due.PING  # pings go on: the server still wants them
    beat.resume(100.0)
    assert beat.idle_deadline == 105.0
    assert beat.poll(104.0) is Due.PING


def test_nested_suspends_resume_on_the_last() -> None:
    beat = Heartbeat(ping_interval=None, idle_timeout=5.0, now=0.0)
    beat.suspend()
    beat.suspend()
    beat.resume(10.0)
    assert beat.idle_deadline == math.inf
    beat.resume(20.0)
    assert beat.idle_deadline == 25.0
    with pytest.raises(ValueError, match="without a matching suspend"):
        beat.resume(30.0)


@pytest.mark.parametrize(("ping_interval", "idle_timeout"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0)])
def test_nonsense_intervals_are_refused(ping_interval: float, idle_timeout: float) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Heartbeat(ping_interval=ping_interval, idle_timeout=idle_timeout, now=0.0)
