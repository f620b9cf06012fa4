"""Per-account request rate limits for Bitmusa's listenKey REST API: sliding windows, time passed in.

The exchange documents 8 requests per second and 200 per minute per account. A request is allowed when,
counting it, no window holds more than its limit of *allowed* requests in the last `window` seconds; a refused
request is not counted, so a client that backs off recovers as soon as the window slides. Pure: no clock,
no I/O; `now` is monotonic seconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["RateLimiter", "Window"]


@dataclass(frozen=True, slots=True)
class Window:
    limit: int
    seconds: float


class RateLimiter:
    """account -> the times of its recent allowed requests, checked against every window."""

    __slots__ = ("_history", "_longest", "_windows")

    def __init__(self, windows: tuple[Window, ...]) -> None:
        if not windows:
            raise ValueError("at least one window is required")
        self._windows = windows
        self._longest = max(window.seconds for window in windows)
        self._history: dict[str, deque[float]] = {}

    def acquire(self, account: str, now: float) -> float:
        """Count one request and return 0.0 if it is allowed; else return seconds until one would be."""
        history = self._history.setdefault(account, deque())
        while history and history[0] <= now - self._longest:
            history.popleft()
        wait = 0.0
        for window in self._windows:
            in_window = _count_since(history, now - window.seconds)
            if in_window >= window.limit:
                # the oldest request that keeps the window full leaves it at that time + window
                oldest_blocking = history[len(history) - window.limit]
                wait = max(wait, oldest_blocking + window.seconds - now)
        if wait > 0.0:
            return wait
        history.append(now)
        return 0.0


def _count_since(history: deque[float], start: float) -> int:
    """How many times in `history` (ascending) are after `start`. Scans from the newest end."""
    count = 0
    for stamp in reversed(history):
        if stamp <= start:
            break
        count += 1
    return count
