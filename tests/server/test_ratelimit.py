"""Sliding-window rate limits, time passed in: 8 per second and 200 per minute per account."""

from __future__ import annotations

import pytest

from userstream.server.ratelimit import RateLimiter, Window


def documented() -> RateLimiter:
    return RateLimiter((Window(8, 1.0), Window(200, 60.0)))


def test_eight_requests_in_a_second_pass_and_the_ninth_waits_for_the_oldest() -> None:
    limiter = documented()
    for i in range(8):
        assert limiter.acquire("alice", now=10.0 + i * 0.01) == 0.0
    assert limiter.acquire("alice", now=10.5) == pytest.approx(0.5)  # 10.0 leaves the window at 11.0
    assert limiter.acquire("alice", now=11.0) == 0.0


def test_refused_requests_are_not_counted() -> None:
    limiter = documented()
    for _ in range(8):
        limiter.acquire("alice", now=0.0)
    for _ in range(100):
        assert limiter.acquire("alice", now=0.5) > 0
    assert limiter.acquire("alice", now=1.0) == 0.0


def test_accounts_have_separate_budgets() -> None:
    limiter = documented()
    for _ in range(8):
        limiter.acquire("alice", now=0.0)
    assert limiter.acquire("alice", now=0.0) > 0
    assert limiter.acquire("bob", now=0.0) == 0.0


def test_two_hundred_a_minute() -> None:
    limiter = documented()
    allowed = 0
    now = 0.0
    while now < 60.0:  # 8 per second would allow 480 in a minute; the minute window stops it at 200
        if limiter.acquire("alice", now=now) == 0.0:
            allowed += 1
        now += 0.125
    assert allowed == 200
    # the first of them (t=0) leaves the minute window at t=60
    assert limiter.acquire("alice", now=59.99) == pytest.approx(0.01)
    assert limiter.acquire("alice", now=60.0) == 0.0


def test_a_limiter_needs_a_window() -> None:
    with pytest.raises(ValueError, match="at least one window"):
        RateLimiter(())
