"""client/backoff.py: exponential delays with full jitter, resets, and the classification of errors."""

from __future__ import annotations

import pytest

from userstream.client.backoff import Action, Backoff, classify
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
