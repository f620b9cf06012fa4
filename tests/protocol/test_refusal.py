"""Refusals in any shape (issue 12): protocol.refusal's reading, Coinlocally's classification of sub replies,
and Bitmusa's REST judgement by HTTP status first and body second, each with exact values."""

from __future__ import annotations

import gzip

import pytest

from userstream.errors import (
    AuthenticationError,
    EndpointNotFoundError,
    ExchangeError,
    FrameDecodeError,
    ListenKeyInvalidError,
    RateLimitedError,
    TransportError,
)
from userstream.protocol import bitmusa_listen_key
from userstream.protocol.coinlocally import Parser
from userstream.protocol.messages import ControlReply, ErrorReply, Unknown
from userstream.protocol.refusal import Refusal, read_refusal, read_text_refusal, scrub

# --- the reading -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"code": "10002", "msg": "token invalid"}, Refusal(10002, "token invalid", False)),
        ({"code": 10002, "message": "bad"}, Refusal(10002, "bad", False)),
        ({"status": 401, "error": "Unauthorized"}, Refusal(401, "Unauthorized", False)),
        ({"status": "error", "msg": "auth failed"}, Refusal(None, "auth failed", False)),
        ({"success": False}, Refusal(None, "", False)),
        ({"ok": "false", "reason": "nope"}, Refusal(None, "nope", False)),
        ({"error": {"code": -2015, "msg": "Invalid API-key"}}, Refusal(-2015, "Invalid API-key", False)),
        ({"error": "denied"}, Refusal(None, "denied", False)),
        ({"event": "error", "code": 4004, "message": "sub token"}, Refusal(4004, "sub token", False)),
        ({"code": "INVALID_TOKEN"}, Refusal("INVALID_TOKEN", "", False)),
        ({"result": "fail"}, Refusal(None, "", False)),
        ({"msg": "Invalid token"}, Refusal(None, "Invalid token", False)),
        ({"code": 429, "msg": "too many requests"}, Refusal(429, "too many requests", True)),
        ({"code": "1013", "msg": "x"}, Refusal(1013, "x", True)),
        ({"code": 5, "msg": "server busy, try again"}, Refusal(5, "server busy, try again", True)),
    ],
)
def test_a_refusal_is_read_in_any_shape(obj: dict[str, object], expected: Refusal) -> None:
    assert read_refusal(obj) == expected


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"code": 0, "msg": "success"},
        {"code": "0", "message": "sub success"},
        {"status": 200, "msg": "ok"},
        {"status": "ok"},
        {"success": True, "data": {"listenKey": "k"}},
        {"error": None},
        {"error": ""},
        {"event": "subscribed", "channel": "user"},
    ],
)
def test_what_refuses_nothing_is_not_a_refusal(obj: dict[str, object]) -> None:
    assert read_refusal(obj) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("token invalid", Refusal(None, "token invalid", False)),
        ("  Authentication failed\n", Refusal(None, "Authentication failed", False)),
        ("Forbidden", Refusal(None, "Forbidden", False)),
        ("rate limit exceeded", Refusal(None, "rate limit exceeded", True)),
        ("hello", None),
        ("connected", None),
    ],
)
def test_a_plain_text_refusal_is_read_by_its_words(text: str, expected: Refusal | None) -> None:
    assert read_text_refusal(text) == expected


def test_scrub_hides_every_secret_then_clips() -> None:
    assert scrub("bad token tok-SECRET (api SECRET-2)", ("tok-SECRET", "SECRET-2", "")) == (
        "bad token <hidden> (api <hidden>)"
    )
    long = "x" * 195 + "tok-SECRET"
    assert scrub(long, ("tok-SECRET",)) == "x" * 195 + "<hidd..."
    assert "tok-S" not in scrub(long, ("tok-SECRET",))


# --- Coinlocally: every reply to the sub -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('{"code":"10002","msg":"token invalid"}', ErrorReply(10002, "token invalid")),
        (gzip.compress(b'{"code":"10002","msg":"token invalid"}'), ErrorReply(10002, "token invalid")),
        ('{"event":"error","code":4004,"message":"m"}', ErrorReply(4004, "m")),
        ('{"event":"error","code":"x"}', ErrorReply("x", "")),
        ('{"event":"error","code":1,"message":2}', ErrorReply(1, "")),
        ('{"status":"fail","error":"sub refused"}', ErrorReply(None, "sub refused")),
        ('{"success":false,"message":"no such token"}', ErrorReply(None, "no such token")),
        ("token invalid", ErrorReply(None, "token invalid")),
        ('"auth fail"', ErrorReply(None, "auth fail")),
        (gzip.compress(b"invalid token"), ErrorReply(None, "invalid token")),
        ('{"code":429,"msg":"too many requests"}', ErrorReply(429, "too many requests", transient=True)),
        ("server busy", ErrorReply(None, "server busy", transient=True)),
        ('{"code":0,"msg":"sub success"}', ControlReply("sub success")),
        ('{"code":"0","data":"connect success"}', ControlReply("connect success")),
        ('{"code":0,"msg":"ok"}', Unknown('{"code":0,"msg":"ok"}', "unrecognized message (no known keys)")),
        ("welcome", Unknown("welcome", "unrecognized text frame")),
    ],
)
def test_coinlocally_classifies_every_reply_to_the_sub(frame: str | bytes, expected: object) -> None:
    assert Parser()(frame) == expected


# --- Bitmusa REST: status first, body second ---------------------------------------------------------------

CREDS = bitmusa_listen_key.Credentials(api_key="api-SECRET", auth_key="auth-SECRET")
POST = bitmusa_listen_key.create_listen_key_request(CREDS)
URL = "http://127.0.0.1:8080/spot/userDataStream"
WHERE = f"POST {URL}: "


def judge(status: int, body: bytes) -> str:
    return bitmusa_listen_key.parse_listen_key_response(status, body, request=POST, url=URL)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (401, b"<html><body>401 Unauthorized</body></html>", "Bitmusa answered HTTP 401"),
        (401, b"", "Bitmusa answered HTTP 401"),
        (401, b'{"success":false}', "Bitmusa answered HTTP 401"),
        (
            401,
            b'{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}',
            "Bitmusa answered HTTP 401: Invalid API-key, IP, or permissions for action.",
        ),
        (
            403,
            b'{"message":"key auth-SECRET is disabled"}',
            "Bitmusa answered HTTP 403: key <hidden> is disabled",
        ),
        (403, b'{"error":"Bearer auth-SECRET refused"}', "Bitmusa answered HTTP 403: <hidden> refused"),
        (
            200,
            b'{"code":401001,"message":"invalid"}',
            "Bitmusa refused the request (HTTP 200, code 401001): invalid",
        ),
    ],
)
def test_401_and_403_are_a_refused_credential_whatever_the_body(
    status: int, body: bytes, message: str
) -> None:
    with pytest.raises(AuthenticationError) as caught:
        judge(status, body)
    assert str(caught.value) == WHERE + message
    assert caught.value.rejected == "listenKey request"


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b'{"code":10001,"msg":"account frozen"}', 10001, "(HTTP 200, code 10001): account frozen"),
        (b'{"code":"-1","message":"api-SECRET unknown"}', -1, "(HTTP 200, code -1): <hidden> unknown"),
        (b'{"code":"E_SUSPENDED","msg":"suspended"}', None, "(HTTP 200, code E_SUSPENDED): suspended"),
        (b'{"success":false,"error":"maintenance window"}', None, "(HTTP 200): maintenance window"),
    ],
)
def test_a_200_that_refuses_is_an_exchange_error_quoting_code_and_message(
    body: bytes, code: int | None, message: str
) -> None:
    with pytest.raises(ExchangeError) as caught:
        judge(200, body)
    assert str(caught.value) == f"{WHERE}Bitmusa refused the request {message}"
    assert (caught.value.code, caught.value.status) == (code, 200)


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (
            502,
            b"<html>Bad Gateway</html>",
            TransportError,
            "Bitmusa answered HTTP 502 without a JSON body (an HTML page)",
        ),
        (503, b"", TransportError, "Bitmusa answered HTTP 503 without a JSON body (an empty body)"),
        (
            200,
            b"OK",
            FrameDecodeError,
            "Bitmusa reply (HTTP 200) is not JSON (a 2-byte body that is not JSON)",
        ),
        (
            400,
            b"<!DOCTYPE html><p>bad",
            FrameDecodeError,
            "Bitmusa reply (HTTP 400) is not JSON (an HTML page)",
        ),
        (
            404,
            b"404: Not Found",
            EndpointNotFoundError,
            "HTTP 404 with a 14-byte body that is not JSON: no Bitmusa endpoint at this URL",
        ),
        (
            404,
            b'{"code":404,"msg":"Not Found"}',
            EndpointNotFoundError,
            "HTTP 404: no Bitmusa endpoint at this URL",
        ),
        (429, b"<html>slow down</html>", RateLimitedError, "Bitmusa answered HTTP 429"),
        (
            404,
            b'{"code":404001,"message":"gone"}',
            ListenKeyInvalidError,
            "Bitmusa refused the request (HTTP 404, code 404001): gone",
        ),
    ],
)
def test_every_other_shape_names_status_method_and_url(
    status: int, body: bytes, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        judge(status, body)
    assert type(caught.value) is error
    assert str(caught.value) == WHERE + message
    if isinstance(caught.value, EndpointNotFoundError):
        assert (caught.value.url, caught.value.expected) == (URL, "/spot/userDataStream")


def test_no_header_value_is_ever_quoted() -> None:
    for status in (200, 401, 403, 404, 500, 502):
        body = b'{"code":7,"msg":"Bearer auth-SECRET api-SECRET"}'
        with pytest.raises(Exception) as caught:  # noqa: PT011 - the type varies with the status; the text is the point
            judge(status, body)
        assert "SECRET" not in str(caught.value), status
