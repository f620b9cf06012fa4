"""The server's truth: what every event published so far implies, per account.

`TrueStates` holds one `userstream.state.AccountState` per account, fed with every batch this node
delivers (admin ingest and simulator alike, and with Redis every node's publishes: see
`ExchangeServer.deliver`), so that the REST snapshot routes answer what the events imply right now,
including events no stream received. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable

from userstream.events import Event
from userstream.state import AccountSnapshot, AccountState

__all__ = ["TrueStates"]


class TrueStates:
    """account name -> the `AccountState` its published events imply: the server's truth."""

    def __init__(self) -> None:
        self._states: dict[str, AccountState] = {}

    def apply(self, account: str, events: Iterable[Event]) -> None:
        state = self._states.get(account)
        if state is None:
            state = self._states[account] = AccountState()
        for event in events:
            state.apply(event)

    def snapshot(self, account: str) -> AccountSnapshot:
        """The account's balances and open orders now (empty for an account without events)."""
        state = self._states.get(account)
        return AccountSnapshot.of() if state is None else state.snapshot()
