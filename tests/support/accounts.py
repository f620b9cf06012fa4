"""Accounts several test modules share."""

from __future__ import annotations

from userstream.server import Account

__all__ = ["ALICE_WITH_SECRET_KEY"]

#: tests/client/conftest.py's alice with a Coinlocally secret key, so that both exchanges take snapshots
ALICE_WITH_SECRET_KEY = Account(
    name="alice",
    uid=24005174,
    bitmusa_api_key="alice-bitmusa-api-SECRET",
    bitmusa_auth_key="alice-bitmusa-auth-SECRET",
    coinlocally_api_key="alice-coinlocally-api-SECRET",
    coinlocally_token="alice-coinlocally-token-SECRET",
    coinlocally_secret_key="alice-coinlocally-secret-key-SECRET",
)
