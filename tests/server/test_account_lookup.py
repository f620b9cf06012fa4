"""ExchangeServer.account_for: one lookup of accounts by credential, driven by the registry's account_keys.

The first credential presented finds the account; every one presented must then be the account's own. The
handshakes and REST routes that use it are tested end to end beside them (test_app_*.py, test_snapshots.py).
"""

from __future__ import annotations

from typing import Any

from userstream.events import Exchange


async def test_an_account_is_found_by_its_credentials_of_that_exchange_only(kit: Any) -> None:
    server = kit.server.server
    alice, bob = kit.alice, kit.bob
    bitmusa, coinlocally = Exchange.BITMUSA, Exchange.COINLOCALLY
    both = {"api_key": alice.bitmusa_api_key, "auth_key": alice.bitmusa_auth_key}
    assert server.account_for(bitmusa, both) is alice
    assert server.account_for(bitmusa, {**both, "auth_key": bob.bitmusa_auth_key}) is None  # bob's auth key
    assert server.account_for(bitmusa, {**both, "auth_key": "guess"}) is None
    assert server.account_for(bitmusa, {"api_key": "guess", "auth_key": alice.bitmusa_auth_key}) is None
    assert server.account_for(coinlocally, {"token": bob.coinlocally_token}) is bob
    assert server.account_for(coinlocally, {"api_key": alice.coinlocally_api_key}) is alice
    assert server.account_for(coinlocally, {"token": alice.coinlocally_api_key}) is None  # the kind counts
    assert server.account_for(coinlocally, {"api_key": alice.bitmusa_api_key}) is None  # so does the exchange
    assert server.account_for(coinlocally, {}) is None
