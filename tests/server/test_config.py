"""The accounts file and the server config: a bad file is refused with a message naming account and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from userstream.errors import ConfigurationError
from userstream.events import Exchange
from userstream.protocol.registry import REGISTRY
from userstream.server import Account, ServerConfig, demo_account, load_accounts
from userstream.server.config import CREDENTIAL_KEYS, credential_key, parse_accounts

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "accounts.toml"

GOOD = """
[[accounts]]
name = "alice"
uid = 7
bitmusa_api_key = "a-api"
bitmusa_auth_key = "a-auth"
coinlocally_token = "a-token"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "accounts.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_file_loads() -> None:
    accounts = load_accounts(EXAMPLE)
    assert [account.name for account in accounts] == ["alice", "bob", "carol-coinlocally-only"]
    assert [account.uid for account in accounts] == [24005174, 24005175, 24005176]
    assert accounts[2].holds(Exchange.COINLOCALLY)
    assert not accounts[2].holds(Exchange.BITMUSA)


def test_a_good_file_gives_its_accounts(tmp_path: Path) -> None:
    (alice,) = load_accounts(write(tmp_path, GOOD))
    assert alice == Account(
        name="alice", uid=7, bitmusa_api_key="a-api", bitmusa_auth_key="a-auth", coinlocally_token="a-token"
    )
    assert alice.credentials() == {
        "bitmusa_api_key": "a-api",
        "bitmusa_auth_key": "a-auth",
        "coinlocally_token": "a-token",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[accounts]]\nuid = 1\ncoinlocally_token = "t"\n', "accounts[0]: key 'name' is missing"),
        ('[[accounts]]\nname = ""\nuid = 1\ncoinlocally_token = "t"\n', "key 'name' must be a non-empty"),
        ('[[accounts]]\nname = "alice"\ncoinlocally_token = "t"\n', "account 'alice': key 'uid' is missing"),
        (
            '[[accounts]]\nname = "alice"\nuid = "7"\ncoinlocally_token = "t"\n',
            "account 'alice': key 'uid' must be a non-negative integer",
        ),
        (
            '[[accounts]]\nname = "alice"\nuid = true\ncoinlocally_token = "t"\n',
            "account 'alice': key 'uid' must be a non-negative integer",
        ),
        (
            '[[accounts]]\nname = "alice"\nuid = -1\ncoinlocally_token = "t"\n',
            "account 'alice': key 'uid' must be a non-negative integer",
        ),
        (
            '[[accounts]]\nname = "alice"\nuid = 1\ncoinlocally_token = 5\n',
            "account 'alice': key 'coinlocally_token' must be a non-empty string",
        ),
        (
            '[[accounts]]\nname = "alice"\nuid = 1\ncoinlocally_token = " t"\n',
            "account 'alice': key 'coinlocally_token' must be printable with no surrounding spaces",
        ),
        (
            '[[accounts]]\nname = "alice"\nuid = 1\ncoinlocally_tokn = "t"\n',
            "account 'alice': unknown key 'coinlocally_tokn'",
        ),
        (
            '[[accounts]]\nname = "alice"\nuid = 1\nbitmusa_api_key = "k"\n',
            "account 'alice': key 'bitmusa_auth_key' is missing (Bitmusa needs both keys)",
        ),
        ('[[accounts]]\nname = "alice"\nuid = 1\n', "account 'alice': no credentials"),
        (
            '[[accounts]]\nname = "alice"\nuid = 1\ncoinlocally_token = "t"\n'
            '[[accounts]]\nname = "alice"\nuid = 2\ncoinlocally_token = "u"\n',
            "account 'alice': duplicate name",
        ),
        (
            '[[accounts]]\nname = "alice"\nuid = 1\ncoinlocally_token = "same"\n'
            '[[accounts]]\nname = "bob"\nuid = 2\ncoinlocally_api_key = "same"\n',
            "account 'bob': key 'coinlocally_api_key' repeats a credential of account 'alice'",
        ),
        (
            '[[accounts]]\nname = "alice"\nuid = 1\nbitmusa_api_key = "k"\nbitmusa_auth_key = "x"\n'
            '[[accounts]]\nname = "bob"\nuid = 2\nbitmusa_api_key = "k"\nbitmusa_auth_key = "y"\n',
            "account 'bob': key 'bitmusa_api_key' repeats a credential of account 'alice'",
        ),
        ("title = 'x'\n", "unknown top-level key 'title'"),
        ("", "expected at least one [[accounts]] table"),
        ("[[accounts]\n", "is not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_naming_account_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_accounts(write(tmp_path, text))
    assert message in str(caught.value)


def test_error_messages_never_show_a_credential(tmp_path: Path) -> None:
    text = (
        '[[accounts]]\nname = "alice"\nuid = 1\ncoinlocally_token = "s3cret-value"\n'
        '[[accounts]]\nname = "bob"\nuid = 2\ncoinlocally_token = "s3cret-value"\n'
    )
    with pytest.raises(ConfigurationError) as caught:
        load_accounts(write(tmp_path, text))
    assert "s3cret-value" not in str(caught.value)


def test_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read accounts file"):
        load_accounts(tmp_path / "absent.toml")


def test_parse_accounts_names_its_source() -> None:
    with pytest.raises(ConfigurationError, match=r"^inline: expected at least one"):
        parse_accounts({"accounts": []}, source="inline")


def test_reprs_hide_every_secret() -> None:
    account = demo_account()
    config = ServerConfig(accounts=(account,), admin_token="admin-s3cret")
    for secret in (*account.credentials().values(), "admin-s3cret"):
        assert secret not in repr(account)
        assert secret not in repr(config)
    assert repr(account) == "Account(name='demo', uid=24005174)"


def test_demo_accounts_have_fresh_256_bit_credentials() -> None:
    first, second = demo_account(), demo_account()
    assert first.holds(Exchange.BITMUSA)
    assert first.holds(Exchange.COINLOCALLY)
    assert len(first.credentials()) == 5  # the Coinlocally secret key too (it signs REST requests)
    assert all(len(value) == 43 for value in first.credentials().values())  # 32 bytes, URL-safe base64
    assert set(first.credentials().values()).isdisjoint(second.credentials().values())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"listen_key_ttl": 0}, "listen_key_ttl must be a positive number"),
        ({"heartbeat_timeout": -1.0}, "heartbeat_timeout must be a positive number"),
        ({"max_connection_age": 0.0}, "max_connection_age must be a positive number"),
        ({"rate_limit_per_second": 0}, "rate_limit_per_second must be a positive integer"),
        ({"simulate_rate": 0.0}, "simulate rate must be positive"),
        ({"port": 70000}, "port must be in 0..65535"),
        ({"admin_token": ""}, "the admin token must not be empty"),
        ({"accounts": ()}, "at least one account is required"),
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {"accounts": (demo_account(),)}
    settings.update(overrides)
    with pytest.raises(ConfigurationError, match=message):
        ServerConfig(**settings)  # type: ignore[arg-type]


def test_the_accounts_file_has_a_key_for_every_credential_the_registry_names() -> None:
    # serve's credential rules are the registry's: each credential an exchange takes is a key of the file.
    named = {
        credential_key(entry.exchange, credential)
        for entry in REGISTRY.values()
        for credential in (
            *entry.credentials_required,
            *entry.credentials_one_of,
            *(credential for credential, _ in entry.credentials_optional),
            *entry.credentials_identifying,
        )
    }
    assert named == set(CREDENTIAL_KEYS) == set(Account.__struct_fields__) - {"name", "uid"}
