"""protocol/bitmusa_listen_key.py: the listenKey requests, their replies judged, the credentials read back."""

from __future__ import annotations

from typing import Any

import pytest

from support.bitmusa_paths import listen_key_action
from support.examples import BITMUSA_ACK_REPLY, BITMUSA_CREATE_REPLY, BITMUSA_LISTEN_KEY
from userstream.errors import (
    AuthenticationError,
    ConfigurationError,
    ExchangeError,
    FrameDecodeError,
    ListenKeyInvalidError,
    MessageShapeError,
    RateLimitedError,
    TransportError,
)
from userstream.protocol import bitmusa, bitmusa_listen_key, bitmusa_render
from userstream.protocol.bitmusa import ListenKeyAction
from userstream.protocol.bitmusa_listen_key import (
    Credentials,
    HttpRequest,
    parse_ack_response,
    parse_listen_key_response,
)

# --- REST: requests -----------------------------------------------------------------------------------

CREDS = Credentials(api_key="API-KEY-SECRET-1", auth_key="AUTH-KEY-SECRET-2")
EXPECTED_HEADERS = {"Authorization": "Bearer AUTH-KEY-SECRET-2", "x-api-key": "API-KEY-SECRET-1"}


@pytest.mark.parametrize(
    ("build", "method", "action"),
    [
        (bitmusa_listen_key.create_listen_key_request, "POST", ListenKeyAction.CREATE),
        (bitmusa_listen_key.keepalive_request, "PUT", ListenKeyAction.KEEPALIVE),
        (bitmusa_listen_key.close_listen_key_request, "DELETE", ListenKeyAction.CLOSE),
    ],
)
def test_listen_key_requests(build: Any, method: str, action: ListenKeyAction) -> None:
    request = build(CREDS)
    assert request == HttpRequest(method, "/spot/userDataStream", EXPECTED_HEADERS, b"")
    assert request.headers == EXPECTED_HEADERS
    assert request.url() == "https://openapi.bitmusa.com/spot/userDataStream"
    assert request.url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080/spot/userDataStream"
    assert listen_key_action(method, "/spot/userDataStream") == action


def test_listen_key_action_of_other_requests_is_none() -> None:
    assert listen_key_action("GET", "/spot/userDataStream") is None
    assert listen_key_action("POST", "/spot/other") is None


def test_reprs_never_show_secrets() -> None:
    request = bitmusa_listen_key.create_listen_key_request(CREDS)
    for text in (repr(CREDS), str(CREDS), repr(request), str(request)):
        assert "SECRET" not in text
    assert repr(CREDS) == "Credentials(api_key=<hidden>, auth_key=<hidden>)"
    assert repr(request) == (
        "HttpRequest(method='POST', path='/spot/userDataStream', "
        "headers={'Authorization': <hidden>, 'x-api-key': <hidden>}, body=<0 bytes>)"
    )


@pytest.mark.parametrize(
    ("api_key", "auth_key"), [("", "x"), ("x", ""), ("x\r\nInjected: 1", "y"), ("x", "y\n")]
)
def test_credentials_refuse_empty_or_control_characters_without_echoing_them(
    api_key: str, auth_key: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Credentials(api_key=api_key, auth_key=auth_key)
    assert "Injected" not in str(caught.value)


# --- REST: replies ------------------------------------------------------------------------------------


def test_doc_create_reply_gives_the_listen_key() -> None:
    assert parse_listen_key_response(200, BITMUSA_CREATE_REPLY) == BITMUSA_LISTEN_KEY


def test_doc_ack_reply_is_success() -> None:
    assert parse_ack_response(200, BITMUSA_ACK_REPLY) is None


@pytest.mark.parametrize("status", [401, 403])
def test_http_auth_failure(status: int) -> None:
    with pytest.raises(AuthenticationError) as caught:
        parse_ack_response(status, b"<html>nope</html>")
    assert (caught.value.status, caught.value.rejected) == (status, "listenKey request")


def test_http_429_is_rate_limited() -> None:
    with pytest.raises(RateLimitedError):
        parse_listen_key_response(429, b"")


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (401, bitmusa.ERR_UNAUTHORIZED, AuthenticationError),
        (200, bitmusa.ERR_UNAUTHORIZED, AuthenticationError),
        (200, bitmusa.ERR_RATE_LIMITED, RateLimitedError),
        (404, bitmusa.ERR_LISTEN_KEY_NOT_FOUND, ListenKeyInvalidError),
        (200, bitmusa.ERR_LISTEN_KEY_NOT_FOUND, ListenKeyInvalidError),
    ],
)
def test_reply_codes_map_to_typed_errors(status: int, code: int, error: type[Exception]) -> None:
    body = bitmusa_render.render_error(code, "refused")
    with pytest.raises(error):
        parse_ack_response(status, body)
    with pytest.raises(error):
        parse_listen_key_response(status, body)


@pytest.mark.parametrize(("status", "code"), [(400, bitmusa.ERR_BAD_REQUEST), (200, 7), (500, -1)])
def test_other_codes_are_exchange_errors_with_the_code(status: int, code: int) -> None:
    with pytest.raises(ExchangeError) as caught:
        parse_ack_response(status, bitmusa_render.render_error(code, "no such thing"))
    assert (caught.value.code, caught.value.status) == (code, status)
    assert str(caught.value) == f"Bitmusa refused the request (HTTP {status}, code {code}): no such thing"


def test_code_zero_with_an_error_status_is_an_exchange_error() -> None:
    with pytest.raises(ExchangeError) as caught:
        parse_ack_response(400, BITMUSA_ACK_REPLY)
    assert (caught.value.code, caught.value.status) == (0, 400)


@pytest.mark.parametrize("body", [b"<html>Bad Gateway</html>", b"", b'{"code":'])
def test_non_json_reply_is_a_frame_decode_error(body: bytes) -> None:
    with pytest.raises(FrameDecodeError):
        parse_listen_key_response(200, body)
    with pytest.raises(FrameDecodeError):
        parse_ack_response(404, body)


def test_server_error_without_a_json_code_is_a_transport_error() -> None:
    with pytest.raises(TransportError) as caught:
        parse_ack_response(502, b"<html>Bad Gateway</html>")
    assert type(caught.value) is TransportError
    with pytest.raises(TransportError):
        parse_ack_response(503, b'{"error": "maintenance"}')


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"[]", "$"),
        (b'"success"', "$"),
        (b'{"code":true,"message":"success"}', "$.code"),
        (b'{"code":0.0,"message":"success"}', "$.code"),
    ],
)
def test_reply_of_the_wrong_shape_names_the_field(body: bytes, field: str) -> None:
    with pytest.raises(MessageShapeError) as caught:
        parse_ack_response(200, body)
    assert caught.value.field == field


@pytest.mark.parametrize("body", [b'{"message":"success"}', b'{"code":"0","message":"success"}', b"{}"])
def test_a_success_without_an_integer_code_is_accepted(body: bytes) -> None:
    # Liberal (issue 12): a 2xx that refuses nothing is a success, its code a number or a numeric text.
    assert parse_ack_response(200, body) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (BITMUSA_ACK_REPLY, "$.data"),
        (b'{"data":null,"code":0,"message":"success"}', "$.data"),
        (b'{"data":[],"code":0,"message":"success"}', "$.data"),
        (b'{"data":{},"code":0,"message":"success"}', "$.data.listenKey"),
        (b'{"data":{"listenKey":5},"code":0,"message":"success"}', "$.data.listenKey"),
        (b'{"data":{"listenKey":""},"code":0,"message":"success"}', "$.data.listenKey"),
        (b'{"data":{"listenKey":"' + b"k" * 513 + b'"},"code":0,"message":"success"}', "$.data.listenKey"),
    ],
)
def test_listen_key_reply_without_a_key_names_the_field(body: bytes, field: str) -> None:
    with pytest.raises(MessageShapeError) as caught:
        parse_listen_key_response(200, body)
    assert caught.value.field == field


def test_deeply_nested_reply_is_a_frame_decode_error() -> None:
    with pytest.raises(FrameDecodeError):
        parse_ack_response(200, b'{"code":0,"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def test_long_exchange_messages_are_clipped() -> None:
    with pytest.raises(ExchangeError) as caught:
        parse_ack_response(400, bitmusa_render.render_error(1, "m" * 10_000))
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer AUTH-KEY-SECRET-2", "x-api-key": "API-KEY-SECRET-1"},
        {"authorization": "Bearer AUTH-KEY-SECRET-2", "X-API-KEY": "API-KEY-SECRET-1"},
        {"AUTHORIZATION": "bearer  AUTH-KEY-SECRET-2 ", "X-Api-Key": "API-KEY-SECRET-1", "Host": "x"},
    ],
)
def test_credentials_from_headers_present(headers: dict[str, str]) -> None:
    assert bitmusa_listen_key.credentials_from_headers(headers) == CREDS


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer AUTH-KEY-SECRET-2"},
        {"x-api-key": "API-KEY-SECRET-1"},
        {"Authorization": "Basic QUxBRERJTjpPcGVuU2VzYW1l", "x-api-key": "API-KEY-SECRET-1"},
        {"Authorization": "AUTH-KEY-SECRET-2", "x-api-key": "API-KEY-SECRET-1"},
        {"Authorization": "Bearer ", "x-api-key": "API-KEY-SECRET-1"},
        {"Authorization": "Bearer AUTH-KEY-SECRET-2", "x-api-key": ""},
        {"Authorization": "Bearer a\x00b", "x-api-key": "API-KEY-SECRET-1"},
    ],
)
def test_credentials_from_headers_missing_or_malformed(headers: dict[str, str]) -> None:
    assert bitmusa_listen_key.credentials_from_headers(headers) is None


def test_request_headers_read_back_as_the_same_credentials() -> None:
    request = bitmusa_listen_key.keepalive_request(CREDS)
    assert bitmusa_listen_key.credentials_from_headers(request.headers) == CREDS
