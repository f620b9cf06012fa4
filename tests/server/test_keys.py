"""The listenKey store: the document's rules with time passed in, so every boundary is exact."""

from __future__ import annotations

import re

from userstream.server.keys import ListenKeyStore

TTL = 3600.0


def test_post_while_active_returns_the_same_key() -> None:
    store = ListenKeyStore(TTL)
    key, created = store.create_or_get("alice", now=0.0)
    assert created
    assert store.create_or_get("alice", now=3599.9) == (key, False)


def test_keys_are_256_bit_url_safe_and_distinct_per_account() -> None:
    store = ListenKeyStore(TTL)
    alice, _ = store.create_or_get("alice", now=0.0)
    bob, _ = store.create_or_get("bob", now=0.0)
    assert alice != bob
    for key in (alice, bob):
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", key)  # 32 random bytes in URL-safe base64


def test_a_key_is_valid_for_the_ttl_after_creation_and_no_longer() -> None:
    store = ListenKeyStore(TTL)
    key, _ = store.create_or_get("alice", now=100.0)
    assert store.lookup(key, now=100.0 + TTL - 0.001) == "alice"
    assert store.lookup(key, now=100.0 + TTL) is None
    assert store.active_key("alice", now=100.0 + TTL) is None


def test_post_after_expiry_creates_a_new_key_and_forgets_the_old() -> None:
    store = ListenKeyStore(TTL)
    old, _ = store.create_or_get("alice", now=0.0)
    new, created = store.create_or_get("alice", now=TTL)
    assert created
    assert new != old
    assert store.lookup(old, now=TTL) is None
    assert store.lookup(new, now=TTL) == "alice"


def test_put_extends_the_validity_to_ttl_from_now() -> None:
    store = ListenKeyStore(TTL)
    key, _ = store.create_or_get("alice", now=0.0)
    assert store.extend("alice", now=3000.0) == key
    # would have lapsed at 3600; now lapses at 6600
    assert store.lookup(key, now=3600.0) == "alice"
    assert store.lookup(key, now=6599.999) == "alice"
    assert store.lookup(key, now=6600.0) is None


def test_put_without_an_active_key_extends_nothing() -> None:
    store = ListenKeyStore(TTL)
    assert store.extend("alice", now=0.0) is None
    store.create_or_get("alice", now=0.0)
    assert store.extend("alice", now=TTL) is None  # lapsed: a PUT cannot revive it


def test_delete_invalidates_and_returns_the_key() -> None:
    store = ListenKeyStore(TTL)
    key, _ = store.create_or_get("alice", now=0.0)
    assert store.delete("alice", now=1.0) == key
    assert store.lookup(key, now=1.0) is None
    assert store.delete("alice", now=1.0) is None
    assert len(store) == 0


def test_expire_due_removes_exactly_the_lapsed_keys_and_next_expiry_follows() -> None:
    store = ListenKeyStore(10.0)
    alice, _ = store.create_or_get("alice", now=0.0)
    bob, _ = store.create_or_get("bob", now=5.0)
    assert store.next_expiry() == 10.0
    assert store.expire_due(now=9.9) == []
    assert store.expire_due(now=10.0) == [("alice", alice)]
    assert store.next_expiry() == 15.0
    assert store.expire_due(now=20.0) == [("bob", bob)]
    assert store.next_expiry() is None


def test_expire_now_lapses_the_key_at_once() -> None:
    store = ListenKeyStore(TTL)
    key, _ = store.create_or_get("alice", now=0.0)
    assert store.expire_now("alice") == key
    assert store.lookup(key, now=0.0) is None
    assert store.expire_now("alice") is None
