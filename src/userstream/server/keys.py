"""Bitmusa's listenKeys on the exchange side: which key each account holds and until when it is valid.

Pure bookkeeping, no I/O and no clock: every method takes `now` (monotonic seconds), so the rules of the
document are tested exactly. One active key per account: POST while a key is active returns that same key,
PUT extends it by the TTL, DELETE invalidates it. A key is 256 random bits in URL-safe text. Closing the
WebSockets that use a lapsed or deleted key is the caller's job (`ExchangeServer`), told by the return values.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

__all__ = ["ListenKeyStore"]


@dataclass(slots=True)
class _Entry:
    key: str
    expires_at: float


class ListenKeyStore:
    """account name -> its active listenKey and the monotonic time it lapses."""

    __slots__ = ("_by_account", "_owner", "ttl")

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._by_account: dict[str, _Entry] = {}
        self._owner: dict[str, str] = {}

    def create_or_get(self, account: str, now: float) -> tuple[str, bool]:
        """The account's active key, or a new one valid for `ttl`. Returns (key, created)."""
        entry = self._active(account, now)
        if entry is not None:
            return entry.key, False
        self._drop(account)
        key = secrets.token_urlsafe(32)
        self._by_account[account] = _Entry(key, now + self.ttl)
        self._owner[key] = account
        return key, True

    def extend(self, account: str, now: float) -> str | None:
        """Make the account's active key valid for `ttl` from now; None when it has no active key."""
        entry = self._active(account, now)
        if entry is None:
            return None
        entry.expires_at = now + self.ttl
        return entry.key

    def delete(self, account: str, now: float) -> str | None:
        """Invalidate the account's active key and return it; None when it had no active key."""
        entry = self._active(account, now)
        self._drop(account)
        return None if entry is None else entry.key

    def lookup(self, key: str, now: float) -> str | None:
        """The account that owns `key` if the key is active, else None (unknown, lapsed or deleted)."""
        account = self._owner.get(key)
        if account is None:
            return None
        entry = self._by_account[account]
        return account if entry.expires_at > now else None

    def active_key(self, account: str, now: float) -> str | None:
        entry = self._active(account, now)
        return None if entry is None else entry.key

    def expire_due(self, now: float) -> list[tuple[str, str]]:
        """Remove every key that has lapsed by `now`; return them as (account, key) pairs."""
        due = [(account, entry.key) for account, entry in self._by_account.items() if entry.expires_at <= now]
        for account, _ in due:
            self._drop(account)
        return due

    def expire_now(self, account: str) -> str | None:
        """Let the account's key lapse at once (a fault injected by tests); return it if there was one."""
        entry = self._by_account.get(account)
        self._drop(account)
        return None if entry is None else entry.key

    def next_expiry(self) -> float | None:
        """The earliest time a key lapses, for the sweeper to sleep until; None when there are no keys."""
        if not self._by_account:
            return None
        return min(entry.expires_at for entry in self._by_account.values())

    def __len__(self) -> int:
        return len(self._by_account)

    def _active(self, account: str, now: float) -> _Entry | None:
        entry = self._by_account.get(account)
        if entry is None or entry.expires_at <= now:
            return None
        return entry

    def _drop(self, account: str) -> None:
        entry = self._by_account.pop(account, None)
        if entry is not None:
            del self._owner[entry.key]
