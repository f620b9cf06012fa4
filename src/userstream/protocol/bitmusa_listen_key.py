"""Bitmusa's listenKey REST calls, sans-I/O: the requests to build and the judgement of their replies.

It owns the credentials every listenKey request carries (`Credentials`, never shown), the requests
(create: POST, keep-alive: PUT, close: DELETE, all on `protocol.bitmusa.LISTEN_KEY_PATH`), the reading of a
reply into a listenKey or a typed error (the HTTP status first, the body second), and, for the emulator,
the reading of those credentials from a request's headers. The endpoints and error codes are
`protocol.bitmusa`'s; the emulator's replies are rendered by `protocol.bitmusa_render`. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from userstream.errors import (
    AuthenticationError,
    ConfigurationError,
    EndpointNotFoundError,
    ExchangeError,
    FrameDecodeError,
    ListenKeyInvalidError,
    MessageShapeError,
    RateLimitedError,
    TransportError,
    UserStreamError,
)
from userstream.protocol.bitmusa import (
    ENDPOINTS,
    ERR_LISTEN_KEY_NOT_FOUND,
    ERR_RATE_LIMITED,
    ERR_UNAUTHORIZED,
    REST_BASE,
    ListenKeyAction,
    _clip,
)
from userstream.protocol.refusal import read_refusal, reply_text, scrub

__all__ = [
    "Credentials",
    "HttpRequest",
    "close_listen_key_request",
    "create_listen_key_request",
    "credentials_from_headers",
    "keepalive_request",
    "parse_ack_response",
    "parse_listen_key_response",
]

# --- credentials and REST requests ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """The two secrets every listenKey request carries. Its repr names them and never shows them."""

    api_key: str
    auth_key: str

    def __post_init__(self) -> None:
        for name in ("api_key", "auth_key"):
            value = getattr(self, name)
            # Refusing control characters keeps a secret from smuggling extra HTTP header lines.
            if not isinstance(value, str) or not value or not value.isprintable():
                raise ConfigurationError(f"Bitmusa {name} must be a non-empty printable string")

    def __repr__(self) -> str:
        return "Credentials(api_key=<hidden>, auth_key=<hidden>)"


@dataclass(frozen=True, slots=True, repr=False)
class HttpRequest:
    """One HTTP request to send, as values. Its repr shows header names only: the values are secrets."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""

    def url(self, base: str = REST_BASE) -> str:
        return base.rstrip("/") + self.path

    def __repr__(self) -> str:
        names = ", ".join(f"{name!r}: <hidden>" for name in self.headers)
        return (
            f"HttpRequest(method={self.method!r}, path={self.path!r}, headers={{{names}}}, "
            f"body=<{len(self.body)} bytes>)"
        )


def _auth_headers(creds: Credentials) -> dict[str, str]:
    return {"Authorization": f"Bearer {creds.auth_key}", "x-api-key": creds.api_key}


def _listen_key_request(action: ListenKeyAction, creds: Credentials) -> HttpRequest:
    method, path = ENDPOINTS[action]
    return HttpRequest(method, path, _auth_headers(creds))


def create_listen_key_request(creds: Credentials) -> HttpRequest:
    return _listen_key_request(ListenKeyAction.CREATE, creds)


def keepalive_request(creds: Credentials) -> HttpRequest:
    return _listen_key_request(ListenKeyAction.KEEPALIVE, creds)


def close_listen_key_request(creds: Credentials) -> HttpRequest:
    return _listen_key_request(ListenKeyAction.CLOSE, creds)


# --- REST replies ---------------------------------------------------------------------------------

_REPLY_DECODER = msgspec.json.Decoder(dict[str, Any])
#: Longest listenKey accepted from a reply; the document's is 44 characters.
_LISTEN_KEY_LIMIT = 512

_ErrorFactory = Callable[[str, int], UserStreamError]


def _unauthorized(message: str, status: int) -> UserStreamError:
    return AuthenticationError(message, rejected="listenKey request", status=status)


def _rate_limited(message: str, status: int) -> UserStreamError:
    return RateLimitedError(message)


def _listen_key_invalid(message: str, status: int) -> UserStreamError:
    return ListenKeyInvalidError(message)


#: reply `code` -> the error it means. Any other non-zero code is an ExchangeError carrying the code.
_ERRORS_BY_CODE: dict[int, _ErrorFactory] = {
    ERR_UNAUTHORIZED: _unauthorized,
    ERR_RATE_LIMITED: _rate_limited,
    ERR_LISTEN_KEY_NOT_FOUND: _listen_key_invalid,
}
#: HTTP status -> the error it means, whatever the body says.
_ERRORS_BY_STATUS: dict[int, _ErrorFactory] = {
    401: _unauthorized,
    403: _unauthorized,
    429: _rate_limited,
}


def parse_listen_key_response(
    status: int, body: bytes, *, request: HttpRequest | None = None, url: str = ""
) -> str:
    """The listenKey of a create (POST) reply; a typed error naming what was wrong otherwise.

    With the `request` that was sent and the `url` it went to (scheme, host, path: nothing secret),
    errors name the method and URL, quote the server's text with the request's credentials scrubbed out,
    and a 404 is an `EndpointNotFoundError` (see `_judge_reply`)."""
    reply = _judge_reply(status, body, request=request, url=url)
    data = reply.get("data")
    if not isinstance(data, dict):
        raise MessageShapeError("listenKey reply has no `data` object", field="$.data")
    key = data.get("listenKey")
    if not isinstance(key, str) or not key or len(key) > _LISTEN_KEY_LIMIT:
        raise MessageShapeError(
            "listenKey reply has no usable `data.listenKey` string", field="$.data.listenKey"
        )
    return key


def parse_ack_response(
    status: int, body: bytes, *, request: HttpRequest | None = None, url: str = ""
) -> None:
    """Judge a keep-alive (PUT) or close (DELETE) reply: return on success, raise a typed error otherwise."""
    _judge_reply(status, body, request=request, url=url)


def _judge_reply(
    status: int, body: bytes, *, request: HttpRequest | None = None, url: str = ""
) -> dict[str, Any]:
    """The HTTP status first, the body second (docs/client.md, "Refusals"): 401/403 is a refused
    credential and 429 a rate limit whatever the body; a body that is not JSON is an error naming the
    status (a 404 of a known request: `EndpointNotFoundError`, 5xx: transient); a JSON object that refuses
    (`protocol.refusal`: a non-zero `code`, `success: false`, an `error`...) is the error its code means,
    else an `ExchangeError` quoting code and text; a 2xx that refuses nothing is the reply."""
    where = f"{request.method} {url}: " if request is not None and url else ""
    secrets = _secrets_of(request)
    try:
        reply: dict[str, Any] | None = _REPLY_DECODER.decode(body)
        shape_error = None
    except msgspec.ValidationError:
        # JSON of another type, or text that only starts like a number ("404: Not Found")
        reply, shape_error = None, ("not a JSON object" if _is_json(body) else None)
    except msgspec.DecodeError:
        reply, shape_error = None, None
    except RecursionError:
        raise FrameDecodeError(f"{where}Bitmusa reply (HTTP {status}) is nested too deeply") from None
    refusal = read_refusal(reply) if reply is not None else None
    text = reply_text(reply) if reply is not None and secrets else ""  # quoted only when it can be scrubbed
    said = f": {_clip(scrub(text, secrets))}" if text else ""
    by_status = _ERRORS_BY_STATUS.get(status)
    if by_status is not None:
        raise by_status(f"{where}Bitmusa answered HTTP {status}{said}", status)
    not_found = status == 404 and request is not None and bool(url)
    expected = "" if request is None else request.path
    if reply is None:
        if shape_error is not None:
            raise MessageShapeError(f"{where}Bitmusa reply is not a JSON object", field="$")
        raise _not_json(status, body, where, url=url if not_found else "", expected=expected)
    code = reply.get("code")
    if code is not None and type(code) is not int and not isinstance(code, str):  # bool, float, object
        raise MessageShapeError(f"{where}Bitmusa reply has no integer or text `code`", field="$.code")
    if refusal is not None and not (not_found and refusal.code != ERR_LISTEN_KEY_NOT_FOUND):
        shown = f", code {refusal.code}" if refusal.code is not None else ""
        text = f": {_clip(scrub(refusal.message, secrets))}" if refusal.message else ""
        message = f"{where}Bitmusa refused the request (HTTP {status}{shown}){text}"
        number = refusal.code if isinstance(refusal.code, int) else None
        by_code = _ERRORS_BY_CODE.get(number) if number is not None else None
        if by_code is not None:
            raise by_code(message, status)
        if status >= 500 and number is None:
            raise TransportError(message)
        raise ExchangeError(message, code=number, status=status)
    if not_found:
        raise EndpointNotFoundError(
            f"{where}HTTP 404: no Bitmusa endpoint at this URL", url=url, expected=expected
        )
    if not 200 <= status < 300:
        if code is None and status >= 500:
            raise TransportError(f"{where}Bitmusa answered HTTP {status} without a reply code")
        with_code = "without a reply code" if code is None else f"with code {code}"
        raise ExchangeError(f"{where}Bitmusa answered HTTP {status} {with_code}", code=0, status=status)
    return reply


def _not_json(status: int, body: bytes, where: str, *, url: str, expected: str) -> UserStreamError:
    """The error for a reply whose body is not JSON: it says the status and what the body looks like."""
    kind = _body_kind(body)
    if url:  # a 404 of a known request
        return EndpointNotFoundError(
            f"{where}HTTP 404 with {kind}: no Bitmusa endpoint at this URL", url=url, expected=expected
        )
    if status >= 500:
        return TransportError(f"{where}Bitmusa answered HTTP {status} without a JSON body ({kind})")
    return FrameDecodeError(f"{where}Bitmusa reply (HTTP {status}) is not JSON ({kind})")


def _is_json(body: bytes) -> bool:
    try:
        msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return False
    return True


def _secrets_of(request: HttpRequest | None) -> tuple[str, ...]:
    """The credentials a request carries (its header values, and a bearer token without its prefix)."""
    if request is None:
        return ()
    values = tuple(request.headers.values())
    return values + tuple(value.removeprefix("Bearer ") for value in values if value.startswith("Bearer "))


def _body_kind(body: bytes) -> str:
    """What a body that is not JSON looks like, without quoting it."""
    head = body.lstrip()[:64].lower()
    if not head:
        return "an empty body"
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head:
        return "an HTML page"
    return f"a {len(body)}-byte body that is not JSON"


def credentials_from_headers(headers: Mapping[str, str]) -> Credentials | None:
    """Server side: the credentials a listenKey request carries, or None when either is absent or malformed.

    Header names are case-insensitive (HTTP); so is the "Bearer" scheme (RFC 7235).
    """
    authorization = api_key = None
    for name, value in headers.items():
        lowered = name.lower()
        if lowered == "authorization":
            authorization = value
        elif lowered == "x-api-key":
            api_key = value
    if authorization is None or not api_key:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        return Credentials(api_key=api_key.strip(), auth_key=token)
    except ConfigurationError:
        return None
