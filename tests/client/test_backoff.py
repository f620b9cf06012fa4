"""client/backoff.py: exponential delays with full jitter, resets, the classification of errors, and the one
retry policy built from them (bounded credential retries, the peer's Retry-After honoured)."""

from __future__ import annotations

import pytest

from userstream.client.backoff import Action, Backoff, RetryPolicy, classify, retry_after
from userstream.client.websocket import HandshakeRejectedError, PeerClosedError
from userstream.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectionLostError,
    ExchangeError,
    FrameDecodeError,
    ListenKeyInvalidError,
    LocalProtocolError,
    MessageShapeError,
    RateLimitedError,
    TransportError,
)


def constant(value: float) -> Backoff:
    return Backoff(base=1.0, cap=10.0, stable_after=60.0, rng=lambda: value)


def test_ceilings_double_from_base_up_to_the_cap() -> None:
    backoff = constant(1.0 - 2**-53)  # the largest rng value: delays sit just under each ceiling
    ceilings = []
    for _ in range(7):
        ceilings.append(backoff.ceiling())
        backoff.next_delay()
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert backoff.attempts == 7


def test_full_jitter_scales_the_ceiling_by_the_random_draw() -> None:
    draws = iter([0.5, 0.25, 0.0, 0.75])
    backoff = Backoff(base=2.0, cap=100.0, stable_after=1.0, rng=lambda: next(draws))
    assert [backoff.next_delay() for _ in range(4)] == [1.0, 1.0, 0.0, 12.0]


def test_many_attempts_never_overflow() -> None:
    backoff = constant(0.5)
    for _ in range(5000):
        backoff.next_delay()
    assert backoff.next_delay() == 5.0


def test_reset_after_a_stable_connection_only() -> None:
    backoff = constant(0.5)
    for _ in range(3):
        backoff.next_delay()
    assert backoff.reset_if_stable(59.9) is False
    assert backoff.attempts == 3
    assert backoff.reset_if_stable(60.0) is True
    assert backoff.attempts == 0
    assert backoff.next_delay() == 0.5


@pytest.mark.parametrize(
    ("base", "cap", "stable_after"), [(0.0, 1.0, 1.0), (2.0, 1.0, 1.0), (1.0, 2.0, -1.0)]
)
def test_bad_parameters_are_configuration_errors(base: float, cap: float, stable_after: float) -> None:
    with pytest.raises(ConfigurationError):
        Backoff(base=base, cap=cap, stable_after=stable_after)


@pytest.mark.parametrize(
    ("error", "action"),
    [
        (AuthenticationError("no", rejected="api key"), Action.FATAL),
        (ConfigurationError("bad url"), Action.FATAL),
        (LocalProtocolError("misuse"), Action.FATAL),
        (ListenKeyInvalidError("gone"), Action.NEW_LISTEN_KEY),
        (RateLimitedError("slow down", retry_after=1.0), Action.RETRY),
        (ConnectionLostError("closed"), Action.RETRY),
        (PeerClosedError("closed", code=1001), Action.RETRY),
        (HandshakeRejectedError("503", status=503), Action.RETRY),
        (TransportError("broken"), Action.RETRY),
        (FrameDecodeError("not gzip"), Action.RETRY),
        (MessageShapeError("no field", field="$.data"), Action.RETRY),
        (ExchangeError("odd", code=500001, status=500), Action.RETRY),
        (ValueError("a bug"), Action.FATAL),
    ],
)
def test_classify(error: BaseException, action: Action) -> None:
    assert classify(error) is action


# --- RetryPolicy: the one retry rule of the supervisor, Bitmusa's keepalive and resync ----------------------


def test_a_rejected_credential_is_retried_until_the_auth_attempts_th_in_a_row() -> None:
    policy = RetryPolicy(constant(0.5), auth_attempts=3)
    refused = AuthenticationError("refused", rejected="api key")
    assert [policy.judge(refused) for _ in range(3)] == [Action.RETRY, Action.RETRY, Action.FATAL]
    assert policy.auth_failures == 3
    policy.accepted()
    assert (policy.auth_failures, policy.judge(refused)) == (0, Action.RETRY)
    assert RetryPolicy(constant(0.5)).judge(refused) is Action.FATAL  # auth_attempts=1: not retried
    assert policy.judge(ConfigurationError("x")) is Action.FATAL
    assert policy.judge(ListenKeyInvalidError("x")) is Action.NEW_LISTEN_KEY
    assert policy.judge(ConnectionLostError("x")) is Action.RETRY


def test_the_delay_is_at_least_what_the_peer_asked_for() -> None:
    policy = RetryPolicy(constant(0.5))
    limited = RateLimitedError("429", retry_after=2.0)
    refused = HandshakeRejectedError("429", status=429, retry_after=3.0)
    assert [retry_after(limited), retry_after(refused), retry_after(ConnectionLostError("x"))] == [
        2.0,
        3.0,
        None,
    ]
    # ceilings 1, 2, 4, 8: half of each, or the peer's Retry-After when longer
    assert [policy.delay(limited), policy.delay(refused), policy.delay(limited), policy.delay()] == [
        2.0,
        3.0,
        2.0,
        4.0,
    ]
    assert policy.attempts == 4
    policy.succeeded()
    assert (policy.attempts, policy.delay(RateLimitedError("429"))) == (0, 0.5)
