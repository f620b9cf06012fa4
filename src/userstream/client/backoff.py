"""How long to wait before the next attempt, and whether another attempt can help at all.

This module owns two pure pieces of the reconnect policy: `Backoff`, a delay generator (exponential growth
with full jitter, base and cap configurable, the random source injectable, reset after a connection that
stayed up for a stable period), and `classify(exc)`, which sorts every error of ours into what the
supervisor does next. It performs no I/O and never sleeps; the supervisor in `stream.py` does both.

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

__all__ = ["Action", "Backoff", "classify"]


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
