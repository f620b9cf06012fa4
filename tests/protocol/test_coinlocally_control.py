"""protocol/coinlocally_control.py: the credential, its header, sub/ping/pong, the client's frames read."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.examples import COINLOCALLY_PING
from userstream.errors import ConfigurationError
from userstream.protocol.codec import gzip_bytes
from userstream.protocol.coinlocally_control import (
    Credentials,
    PingRequest,
    SubRequest,
    credentials_from_headers,
    handshake_headers,
    parse_client_frame,
    ping_frame,
    pong_frame,
    sub_frame,
)
from userstream.protocol.coinlocally_render import render_pong
from userstream.protocol.messages import Unknown


def test_token_connection_frames() -> None:
    creds = Credentials(token="tok-123")
    assert handshake_headers(creds) == {"token": "tok-123"}
    assert sub_frame(creds) == '{"event":"sub","token":"tok-123"}'


def test_api_key_connection_sends_the_key_as_the_sub_token() -> None:
    creds = Credentials(api_key="key-456")
    assert handshake_headers(creds) == {"api-key": "key-456"}
    assert sub_frame(creds) == '{"event":"sub","token":"key-456"}'


def test_sub_frame_escapes_json() -> None:
    assert sub_frame(Credentials(token='a"b\\c')) == '{"event":"sub","token":"a\\"b\\\\c"}'


def test_ping_and_pong_frames() -> None:
    assert ping_frame(1713338308232) == '{"ping":1713338308232}'
    assert pong_frame(1713338308233) == '{"pong":1713338308233}'
    assert render_pong(1713338308233) == '{"pong":1713338308233}'
    assert json.loads(ping_frame(0)) == {"ping": 0}


def test_credentials_repr_hides_secrets() -> None:
    token = Credentials(token="s3cret-token")
    api_key = Credentials(api_key="s3cret-key")
    assert repr(token) == "Credentials(token=<hidden>)"
    assert repr(api_key) == "Credentials(api_key=<hidden>)"
    assert "s3cret" not in str(token) + str(api_key) + f"{token!r}{api_key!r}"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one credential: a token or an api_key (got neither)"),
        ({"token": "s3cret", "api_key": "s3cret"}, "(got token and api_key)"),
        ({"token": ""}, "the Coinlocally token is empty or has control characters"),
        ({"api_key": "s3cret\r\nX-Evil: 1"}, "the Coinlocally api_key is empty or has control"),
    ],
)
def test_exactly_one_usable_credential(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Credentials(**kwargs)
    assert message in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_credentials_are_frozen() -> None:
    creds = Credentials(token="t")
    with pytest.raises(AttributeError):
        creds.token = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"token": "t1"}, Credentials(token="t1")),
        ({"Token": "t1", "Host": "x"}, Credentials(token="t1")),
        ({"API-Key": "k1"}, Credentials(api_key="k1")),
        ({"api-key": "k1"}, Credentials(api_key="k1")),
        ({"token": "t1", "api-key": "k1"}, None),
        ({"Host": "x"}, None),
        ({"token": ""}, None),
        ({"token": "bad\nvalue"}, None),
    ],
)
def test_credentials_from_headers(headers: dict[str, str], expected: Credentials | None) -> None:
    assert credentials_from_headers(headers) == expected


# --- the client's frames (server side) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        '{"event":"sub","token":"tok-1"}',
        b'{"event": "sub", "token": "tok-1"}',
        gzip_bytes(b'{"event":"sub","token":"tok-1"}'),
        sub_frame(Credentials(token="tok-1")),
    ],
)
def test_client_sub_frame(frame: bytes | str) -> None:
    assert parse_client_frame(frame) == SubRequest("tok-1")


def test_sub_request_repr_hides_the_token() -> None:
    assert repr(SubRequest("tok-1")) == "SubRequest(token=<hidden>)"


@pytest.mark.parametrize("frame", [ping_frame(1713338308232), COINLOCALLY_PING.encode()])
def test_client_ping_frame(frame: bytes | str) -> None:
    assert parse_client_frame(frame) == PingRequest(1713338308232)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ('{"event":"sub"}', "sub frame without a string token"),
        ('{"event":"sub","token":7}', "sub frame without a string token"),
        ('{"ping":"now"}', "$.ping"),
        ('{"ping":-5}', "$.ping"),
        ('{"event":"unsub","token":"t"}', "unrecognized client frame"),
        ("{}", "unrecognized client frame"),
        ("[1]", "not a JSON object"),
        ("ping", "not a JSON object"),
        ("", "not a JSON object"),
        (b"", "not a JSON object"),
        (b'{"ping":1,"x":"\xff"}', "frame is not UTF-8"),
        ('{"ping":1}' + " " * 4096, "exceeds the 4096"),
        (b'{"ping":1}' + b" " * 4096, "exceeds the 4096"),
        (gzip_bytes(b" " * 5000), "inflates past the 4096-byte limit"),
        (gzip_bytes(b'{"ping":1}')[:-3], "truncated gzip frame"),
    ],
)
def test_bad_client_frames_are_unknown(frame: bytes | str, reason: str) -> None:
    incoming = parse_client_frame(frame)
    assert isinstance(incoming, Unknown)
    assert reason in incoming.reason


def test_bad_client_frames_never_show_a_token() -> None:
    incoming = parse_client_frame('{"event":"sub","token":"s3cret"')
    assert isinstance(incoming, Unknown)
    assert "s3cret" not in incoming.raw + incoming.reason
    gzipped = parse_client_frame(gzip_bytes(b'{"event":"sub","token":"s3cret"')[:-2])
    assert isinstance(gzipped, Unknown)
    assert "s3cret" not in gzipped.raw + gzipped.reason


@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_arbitrary_client_input_never_raises(frame: bytes | str) -> None:
    assert isinstance(parse_client_frame(frame), SubRequest | PingRequest | Unknown)
