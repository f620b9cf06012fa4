"""An account's `UserStream`, as the gateway opens it: `connect()`'s arguments from the account's config.

This module owns what the gateway hands `connect()` for one account: the stream options of its table, its
credentials read from the environment at that moment (never kept), its endpoints and its resync arguments.
The stream keeps its picture (`picture=True`): that picture is the account's (account.py). Nothing here
starts the stream; the supervisor (service.py) does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from userstream.client.entry import connect
from userstream.client.status import StatusEvent
from userstream.client.supervisor import UserStream
from userstream.errors import ConfigurationError
from userstream.gateway.config import AccountConfig, resolve_credentials
from userstream.protocol.registry import spec

__all__ = ["open_stream"]


def open_stream(
    account: AccountConfig, environ: Mapping[str, str], on_status: Callable[[StatusEvent], object]
) -> UserStream:
    """The account's `UserStream` (not started), its credentials read from `environ` now."""
    arguments: dict[str, Any] = dict(account.options)
    credentials = resolve_credentials(account, environ)
    secret_key = credentials.pop("secret_key", None)  # signs snapshot requests only
    arguments.update(credentials)
    if account.rest_url is not None:
        arguments["rest_url"] = account.rest_url
    if account.ws_url is not None:
        arguments["ws_url"] = account.ws_url
    arguments.update(_resync_arguments(account, secret_key))
    try:
        return connect(account.exchange, account=account.name, on_status=on_status, picture=True, **arguments)
    except ConfigurationError as exc:
        raise ConfigurationError(f"account {account.name!r}: {exc}") from None


def _resync_arguments(account: AccountConfig, secret_key: str | None) -> dict[str, Any]:
    """`connect()`'s snapshot-resync arguments: resync after unplanned reconnects as the account says, and
    once at the start too, when the exchange can give a snapshot (one that signs its snapshots needs the
    secret key)."""
    resync: dict[str, Any] = {"resync": account.resync}
    if account.resync:
        if secret_key is not None:
            resync["secret_key"] = secret_key
        if account.snapshot_rest_url is not None:
            resync["snapshot_rest_url"] = account.snapshot_rest_url
        if account.snapshot_symbols is not None:
            resync["snapshot_symbols"] = list(account.snapshot_symbols)
        if not spec(account.exchange).snapshot_needs_secret_key or secret_key is not None:
            resync["initial_snapshot"] = True
    return resync
