"""Coinlocally's credential and control frames, sans-I/O, in both directions.

It owns the credential (`Credentials`: a login `token` or an `api_key`, never shown), the handshake header
that carries it, the frames around the data (the subscribe frame, the ping and pong frames either side
sends), and, for the exchange-side emulator, the reading of a handshake's credential and the
classification of the client's own frames (`parse_client_frame`: sub or ping, bounded, never raising,
never echoing a token). The constants are `protocol.coinlocally`'s. No socket, task or clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from userstream.errors import ConfigurationError, FrameDecodeError, MessageShapeError
from userstream.protocol.codec import decode_frame
from userstream.protocol.coinlocally import MAX_CLIENT_FRAME, _convert, _Millis, _preview, _utf8
from userstream.protocol.messages import Unknown

__all__ = [
    "Credentials",
    "PingRequest",
    "SubRequest",
    "credentials_from_headers",
    "handshake_headers",
    "parse_client_frame",
    "ping_frame",
    "pong_frame",
    "sub_frame",
]

# --- credentials and client frames ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """A Coinlocally credential: a login `token` or an `api_key`, exactly one. The repr never shows it."""

    token: str | None = None
    api_key: str | None = None

    def __post_init__(self) -> None:
        given = [name for name in ("token", "api_key") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ConfigurationError(
                "Coinlocally needs exactly one credential: a token or an api_key "
                f"(got {' and '.join(given) or 'neither'})"
            )
        secret = self.secret
        if not secret or any(ord(char) < 0x20 or ord(char) == 0x7F for char in secret):
            # An empty value or a CR/LF would make a broken (or injected) handshake header.
            raise ConfigurationError(f"the Coinlocally {given[0]} is empty or has control characters")

    @property
    def header_name(self) -> str:
        return "token" if self.token is not None else "api-key"

    @property
    def secret(self) -> str:
        """The credential's value: what the handshake header and the sub frame's "token" carry."""
        # __post_init__ guarantees exactly one, non-empty: `or` picks it.
        return self.token or self.api_key or ""

    def __repr__(self) -> str:
        name = "token" if self.token is not None else "api_key"
        return f"Credentials({name}=<hidden>)"


def handshake_headers(creds: Credentials) -> dict[str, str]:
    return {creds.header_name: creds.secret}


_ENCODER: Final = msgspec.json.Encoder()


def sub_frame(creds: Credentials) -> str:
    """The subscribe frame; the document sends the api key in the "token" field too."""
    return _ENCODER.encode({"event": "sub", "token": creds.secret}).decode()


def ping_frame(now_ms: int) -> str:
    return f'{{"ping":{int(now_ms)}}}'


def pong_frame(timestamp: int) -> str:
    return f'{{"pong":{int(timestamp)}}}'


# --- the server side: the client's credential and frames ---------------------------------------------


def credentials_from_headers(headers: Mapping[str, str]) -> Credentials | None:
    """The handshake credential, from `token` or `api-key` (names case-insensitive); None unless
    exactly one is present and usable."""
    found = {name.lower(): value for name, value in headers.items()}
    token, api_key = found.get("token"), found.get("api-key")
    try:
        return Credentials(token=token, api_key=api_key)
    except ConfigurationError:
        return None


class SubRequest(msgspec.Struct, frozen=True):
    """The client's {"event": "sub", "token": ...}; `token` is the login token or the api key."""

    token: str

    def __repr__(self) -> str:
        return "SubRequest(token=<hidden>)"


class PingRequest(msgspec.Struct, frozen=True):
    """The client's {"ping": n}; the server answers {"pong": ...}."""

    timestamp: int


class _ClientFrame(msgspec.Struct, frozen=True, gc=False):
    event: Any = None
    token: Any = None
    ping: Any = None


_CLIENT_DECODER: Final = msgspec.json.Decoder(_ClientFrame)


def parse_client_frame(frame: bytes | str) -> SubRequest | PingRequest | Unknown:
    """Classify a frame from the client (server side). Bounded to `MAX_CLIENT_FRAME`; never raises."""
    try:
        message = decode_frame(frame, MAX_CLIENT_FRAME)
        _utf8(message)  # msgspec does not check the UTF-8 of keys it skips; a peer's frame must be text
        parsed = _CLIENT_DECODER.decode(message)
    except FrameDecodeError as exc:
        return Unknown(_client_preview(frame), str(exc))
    except msgspec.DecodeError as exc:  # ValidationError included: not a JSON object
        return Unknown(_client_preview(frame), f"not a JSON object: {exc}")
    except RecursionError:  # absurd nesting (found by tests/fuzz)
        return Unknown(_client_preview(frame), "client frame nested too deeply")
    except Exception as exc:  # the contract is "never raises": a bug must not end the connection
        return Unknown(_client_preview(frame), f"internal error: {type(exc).__name__}")
    if parsed.event == "sub":
        if isinstance(parsed.token, str):
            return SubRequest(parsed.token)
        return Unknown(_client_preview(frame), "sub frame without a string token")
    if parsed.ping is not None:
        try:
            return PingRequest(_convert(parsed.ping, _Millis, "$.ping"))
        except MessageShapeError as exc:
            return Unknown(_client_preview(frame), str(exc))
    return Unknown(_client_preview(frame), "unrecognized client frame")


def _client_preview(frame: bytes | str) -> str:
    """A client frame kept for debugging, unless it may carry a credential: secrets never reach logs."""
    preview = _preview(frame)
    if isinstance(frame, bytes) and frame[:2] == b"\x1f\x8b":
        return f"<gzip client frame of {len(frame)} bytes>"  # compressed: cannot tell, so never show
    return "<redacted: mentions a token>" if "token" in preview.lower() else preview
