"""The recording file: raw WebSocket frames with their receive times, one JSON object per line.

This module owns the format `userstream record` writes and `userstream replay` reads, and nothing about
sockets or parsing. A recording is JSON Lines:

- line 1, the header: {"format": "userstream-recording", "version": 1, "exchange", "account",
  "userstream": the version that wrote it, "started_at": epoch seconds, "endpoints": {"rest", "ws"}}.
  It holds no credential, and every URL in it goes through `redact_url` (a listenKey in a path, a
  password, query values).
- every further line, one frame as received: {"t": receive time (epoch seconds, float), "exchange",
  "conn": the connection's serial within the stream, "type": "text" | "binary", "data": the text, or
  base64 of the bytes}. `"scrubbed": true` is added to a frame in which a credential of the recording
  account was found and replaced by `<hidden>` (a server that echoes what it refused, say).

The writer flushes after every frame, so a recording cut short by a crash keeps everything received until
then. The reader never raises for a bad frame line: it yields a `BadLine` naming the line and the reason,
so one corrupt line does not hide the rest.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Final, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import msgspec

from userstream.errors import ConfigurationError, FrameDecodeError
from userstream.events import Exchange
from userstream.protocol.client_wire import ListenKeyWire
from userstream.protocol.codec import DEFAULT_MAX_FRAME, gunzip, gzip_bytes
from userstream.protocol.registry import REGISTRY

__all__ = [
    "FORMAT",
    "HIDDEN",
    "MAX_LINE",
    "VERSION",
    "BadLine",
    "FrameRecord",
    "Header",
    "RecordedFrame",
    "RecordingWriter",
    "header_for",
    "numbered_lines",
    "read_frames",
    "read_header",
    "redact_url",
]

FORMAT: Final = "userstream-recording"
VERSION: Final = 1
#: What replaces a credential found in a frame.
HIDDEN: Final = "<hidden>"
#: The longest line read back: a frame is at most 1 MiB, which base64 makes 1.4 MB; this leaves room.
MAX_LINE: Final = 4 * DEFAULT_MAX_FRAME

_GZIP_MAGIC: Final = b"\x1f\x8b"  # one frame is one gzip member (protocol.codec routes the same way)
_Serial = Annotated[int, msgspec.Meta(ge=0)]
_Seconds = Annotated[float, msgspec.Meta(ge=0)]


class Header(msgspec.Struct, frozen=True, kw_only=True):
    """Line 1 of a recording: what was recorded, by which version, from where (redacted)."""

    format: str = FORMAT
    version: int = VERSION
    exchange: Exchange
    account: str
    userstream: str
    started_at: float
    endpoints: dict[str, str] = msgspec.field(default_factory=dict)


class FrameRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """One received frame. Field order is the documented order of the line's keys."""

    t: _Seconds
    exchange: Exchange
    conn: _Serial
    type: Literal["text", "binary"]
    data: str
    scrubbed: bool = False

    def frame(self) -> bytes | str:
        """The frame as the client received it: text as is, binary decoded from base64."""
        if self.type == "text":
            return self.data
        try:
            return base64.b64decode(self.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise FrameDecodeError(f"data is not valid base64: {exc}") from None


@dataclass(frozen=True, slots=True)
class RecordedFrame:
    line: int
    record: FrameRecord
    frame: bytes | str


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that is not a frame record: its number (1-based) and why."""

    line: int
    reason: str


_ENCODER: Final = msgspec.json.Encoder()
#: The WebSocket paths that end in a listenKey (Bitmusa's), from the registry.
_LISTEN_KEY_PATH_PREFIXES: Final = tuple(
    entry.client.ws_path_prefix for entry in REGISTRY.values() if isinstance(entry.client, ListenKeyWire)
)
_HEADER_DECODER: Final = msgspec.json.Decoder(Header)
_FRAME_DECODER: Final = msgspec.json.Decoder(FrameRecord)


def redact_url(url: str) -> str:
    """`url` without what can be a secret: a userinfo part, query values, and a Bitmusa listenKey path."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    path = parts.path
    for prefix in _LISTEN_KEY_PATH_PREFIXES:
        prefix_at = path.find(prefix)
        if prefix_at >= 0 and path[prefix_at + len(prefix) :]:
            path = path[: prefix_at + len(prefix)] + "<listenKey>"
            break
    query = "&".join(f"{name}=<redacted>" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, path, query, ""))


class RecordingWriter:
    """Writes one recording: the header at creation, then one flushed line per frame.

    `secrets` are the credentials of the recorded account: should one appear in a frame, it is replaced by
    `HIDDEN` (inside a gzip frame too, which is then re-compressed) and the line says `"scrubbed": true`.
    """

    def __init__(self, file: IO[bytes], *, exchange: Exchange, secrets: Iterable[str] = ()) -> None:
        self._file = file
        self._exchange = exchange
        self._secrets = tuple(secret.encode() for secret in secrets if secret)
        self.frames = 0

    @classmethod
    def create(cls, path: str | Path, header: Header, *, secrets: Iterable[str] = ()) -> RecordingWriter:
        """Create (or truncate) `path`, readable by its owner only (frames carry the account's data), and
        write the header. OSError if the file cannot be written."""
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        file = os.fdopen(descriptor, "wb")
        writer = cls(file, exchange=header.exchange, secrets=secrets)
        writer._write_line(_ENCODER.encode(header))
        return writer

    def write_frame(self, received_at: float, frame: bytes | str, conn: int) -> None:
        """Append one frame. OSError when the disk refuses it."""
        cleaned, scrubbed = self._scrub(frame)
        if isinstance(cleaned, str):
            record = FrameRecord(received_at, self._exchange, conn, "text", cleaned, scrubbed)
        else:
            data = base64.b64encode(cleaned).decode("ascii")
            record = FrameRecord(received_at, self._exchange, conn, "binary", data, scrubbed)
        self._write_line(_ENCODER.encode(record))
        self.frames += 1

    def close(self) -> None:
        self._file.close()

    def _write_line(self, line: bytes) -> None:
        self._file.write(line + b"\n")
        self._file.flush()

    def _scrub(self, frame: bytes | str) -> tuple[bytes | str, bool]:
        if not self._secrets:
            return frame, False
        if isinstance(frame, str):
            cleaned_text = frame
            for secret in self._secrets:
                cleaned_text = cleaned_text.replace(secret.decode(), HIDDEN)
            return cleaned_text, cleaned_text != frame
        if frame[:2] == _GZIP_MAGIC:
            try:
                message = gunzip(frame)
            except FrameDecodeError:
                pass  # not decodable: scrub the raw bytes below, which is all anyone could read
            else:
                cleaned_message = self._scrub_bytes(message)
                if cleaned_message == message:
                    return frame, False
                return gzip_bytes(cleaned_message), True
        cleaned = self._scrub_bytes(frame)
        return cleaned, cleaned != frame

    def _scrub_bytes(self, data: bytes) -> bytes:
        for secret in self._secrets:
            data = data.replace(secret, HIDDEN.encode())
        return data


def read_header(line: bytes) -> Header:
    """Line 1 of a recording; ConfigurationError when it is not a header this version can read."""
    if not line.strip():
        raise ConfigurationError("line 1 is empty: not a userstream recording")
    try:
        header = _HEADER_DECODER.decode(line)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise ConfigurationError(f"line 1 is not a userstream recording header ({exc})") from None
    if header.format != FORMAT:
        raise ConfigurationError(f"line 1 is not a userstream recording header (format {header.format!r})")
    if header.version != VERSION:
        raise ConfigurationError(
            f"recording format version {header.version} is not supported (this userstream reads {VERSION})"
        )
    return header


def read_frames(lines: Iterable[tuple[int, bytes]]) -> Iterator[RecordedFrame | BadLine]:
    """The frames of numbered lines (line 1, the header, excluded by the caller). Never raises."""
    for number, line in lines:
        if len(line) > MAX_LINE:
            yield BadLine(number, f"line longer than {MAX_LINE} bytes")
            continue
        if not line.strip():
            yield BadLine(number, "empty line")
            continue
        try:
            record = _FRAME_DECODER.decode(line)
            frame = record.frame()
        except msgspec.ValidationError as exc:
            yield BadLine(number, f"not a frame record: {exc}")
        except msgspec.DecodeError as exc:
            yield BadLine(number, f"not JSON: {exc}")
        except FrameDecodeError as exc:
            yield BadLine(number, str(exc))
        else:
            yield RecordedFrame(number, record, frame)


def numbered_lines(file: IO[bytes], first: int = 1) -> Iterator[tuple[int, bytes]]:
    """Lines of `file` with their numbers, without line ends; a line over `MAX_LINE` comes back cut to
    `MAX_LINE + 1` bytes (so the reader reports it) while the rest of it is skipped."""
    number = first
    while True:
        line = file.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            while (rest := file.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                pass  # skip the remainder of an overlong line
        yield number, line.rstrip(b"\r\n")
        number += 1


def header_for(
    exchange: Exchange, account: str, version: str, started_at: float, endpoints: Mapping[str, str | None]
) -> Header:
    """The header of a new recording, with every endpoint redacted."""
    shown = {name: redact_url(url) for name, url in endpoints.items() if url is not None}
    return Header(
        exchange=exchange, account=account, userstream=version, started_at=started_at, endpoints=shown
    )
