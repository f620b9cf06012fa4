"""The client's one retry policy: whether another attempt can help, and how long to wait before it.

This module owns the pure pieces every retrying part of the client uses (the supervisor's reconnects in
`supervisor.py`, the listenKey keepalives in `listen_key.py`, resync's snapshots in `resync.py`):
`Backoff`, a delay generator (exponential growth with full jitter, base and cap configurable, the random
source injectable, reset after a connection that stayed up for a stable period); `classify(exc)`, which
sorts every error of ours into what the caller does next; and `RetryPolicy`, the two together with the
rules the three used to write each their own way: a rejected credential is retried at most `auth_attempts`
times in a row (a server hiccup is not worth a dead bot, a wrong key is not worth a retry storm), and a
peer that said how long to wait (`retry_after`: a 429 or 418 with Retry-After, on a REST reply or on the
WebSocket handshake) is never asked again sooner. It performs no I/O and never sleeps; its callers do both.

Full jitter (a uniform delay in [0, min(cap, base * 2**n)]) is the variant AWS's analysis found to spread
a crowd of reconnecting clients best: after an exchange-wide outage, thousands of bots do not come back in
lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from enum import Enum

from userstream.errors import (
    AuthenticationError,
    ConfigurationError,
    ListenKeyInvalidError,
    LocalProtocolError,
    UserStreamError,
)

__all__ = ["Action", "Backoff", "RetryPolicy", "classify", "retry_after"]


class Action(Enum):
    """What to do after an error."""

    RETRY = "retry"  # reconnect after a backoff delay
    NEW_LISTEN_KEY = "new_listen_key"  # forget the listenKey, get a new one, then reconnect
    FATAL = "fatal"  # retrying cannot help (subject to the supervisor's bounded auth attempts)


def classify(exc: BaseException) -> Action:
    """Sort an error by what the caller does next.

    Rejected credentials, bad configuration and our own protocol misuse are fatal; a listenKey that lapsed
    or was deleted needs a new key; every other error of ours (transport trouble, a peer that sent garbage,
    an unexpected exchange error code) is retried. Exceptions that are not ours are fatal: they are bugs,
    and retrying a bug forever is exactly the silent failure this client exists to prevent.
    """
    if isinstance(exc, AuthenticationError | ConfigurationError | LocalProtocolError):
        return Action.FATAL
    if isinstance(exc, ListenKeyInvalidError):
        return Action.NEW_LISTEN_KEY
    if isinstance(exc, UserStreamError):
        return Action.RETRY
    return Action.FATAL


class Backoff:
    """Exponential backoff with full jitter.

    The n-th consecutive delay (n from 0) is uniform in [0, min(cap, base * 2**n)]. `reset_if_stable` starts
    over after a connection that stayed up for `stable_after` seconds, so one hiccup a day does not inherit
    yesterday's long delays, while a server that accepts and drops every connection at once still gets
    growing delays. `rng` returns a float in [0, 1); pass a seeded one for reproducible tests.
    """

    __slots__ = ("_attempts", "_base", "_cap", "_rng", "_stable_after")

    def __init__(
        self,
        *,
        base: float,
        cap: float,
        stable_after: float,
        rng: Callable[[], float] | None = None,
    ) -> None:
        if not base > 0:
            raise ConfigurationError(f"backoff base must be positive, not {base}")
        if not cap >= base:
            raise ConfigurationError(f"backoff cap ({cap}) must be at least its base ({base})")
        if not stable_after >= 0:
            raise ConfigurationError(f"stable_after must not be negative, not {stable_after}")
        self._base = base
        self._cap = cap
        self._stable_after = stable_after
        self._rng = rng if rng is not None else random.random
        self._attempts = 0

    @property
    def attempts(self) -> int:
        """How many delays were handed out since the last reset."""
        return self._attempts

    def ceiling(self) -> float:
        """The upper bound of the next delay."""
        # 2**n overflows float around n = 1024; the cap is reached long before, so clamp the exponent.
        return min(self._cap, self._base * 2.0 ** min(self._attempts, 64))

    def next_delay(self) -> float:
        delay = self._rng() * self.ceiling()
        self._attempts += 1
        return delay

    def reset(self) -> None:
        self._attempts = 0

    def reset_if_stable(self, live_for: float) -> bool:
        """Start over if the last connection stayed up `live_for` >= `stable_after` seconds."""
        if live_for >= self._stable_after:
            self._attempts = 0
            return True
        return False


def retry_after(error: BaseException) -> float | None:
    """The seconds the peer asked us to wait before asking again, when it said (`RateLimitedError` from a
    REST reply, `HandshakeRejectedError` from a refused WebSocket upgrade: both carry `retry_after`)."""
    hint = getattr(error, "retry_after", None)
    return float(hint) if isinstance(hint, int | float) and not isinstance(hint, bool) and hint >= 0 else None


class RetryPolicy:
    """One retrying loop's policy: `judge(error)` says what to do, `delay(error)` how long to wait first.

    `judge` classifies the error (`classify`) and counts rejected credentials: an `AuthenticationError`
    is retried (judged RETRY) until it is the `auth_attempts`-th in a row, then FATAL; `auth_attempts=1`
    makes it fatal at once. `delay` is the backoff's next delay, and at least the error's `retry_after`.
    `succeeded()` starts both counts over; `reset_if_stable` starts the delays over after a connection that
    stayed up long enough (the rejected-credential count is reset by `succeeded`, when the caller knows the
    credential was accepted).
    """

    __slots__ = ("_auth_attempts", "auth_failures", "backoff")

    def __init__(self, backoff: Backoff, *, auth_attempts: int = 1) -> None:
        self.backoff = backoff
        self._auth_attempts = auth_attempts
        #: rejected credentials in a row
        self.auth_failures = 0

    @property
    def attempts(self) -> int:
        """Delays handed out since the last reset."""
        return self.backoff.attempts

    def judge(self, error: BaseException) -> Action:
        """What to do after `error`: FATAL (stop), NEW_LISTEN_KEY, or RETRY after `delay(error)`."""
        action = classify(error)
        if isinstance(error, AuthenticationError):
            self.auth_failures += 1
            return Action.FATAL if self.auth_failures >= self._auth_attempts else Action.RETRY
        return action

    def delay(self, error: BaseException | None = None) -> float:
        """The next delay: the backoff's, or the peer's `retry_after` when that is longer."""
        delay = self.backoff.next_delay()
        hint = None if error is None else retry_after(error)
        return delay if hint is None else max(delay, hint)

    def succeeded(self) -> None:
        """An attempt worked: the next failure starts a new series."""
        self.backoff.reset()
        self.auth_failures = 0

    def accepted(self) -> None:
        """The credential was accepted (a connection went live): rejections count from zero again. The
        delays start over only once the connection proves stable (`reset_if_stable`)."""
        self.auth_failures = 0

    def reset_if_stable(self, live_for: float) -> bool:
        return self.backoff.reset_if_stable(live_for)
