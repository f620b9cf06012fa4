"""Frame payload decoders and encoders, in one registry: gzip (Coinlocally's binary frames) and plain.

Decoding is bounded: a frame that inflates past `max_size` bytes is refused (a gzip bomb is a few KiB on
the wire), and every zlib or UTF-8 failure becomes a `FrameDecodeError` naming what was wrong.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from userstream.errors import FrameDecodeError

__all__ = [
    "DECODERS",
    "DEFAULT_MAX_FRAME",
    "decode_frame",
    "gunzip",
    "gzip_bytes",
]

#: The largest decoded message accepted, in bytes. Real user-stream messages are well under 4 KiB.
DEFAULT_MAX_FRAME = 1 << 20

_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 31  # zlib's "gzip container" mode


def gunzip(data: bytes, max_size: int = DEFAULT_MAX_FRAME) -> bytes:
    """Inflate one complete gzip member; refuse truncated, corrupt or oversized input."""
    inflater = zlib.decompressobj(_GZIP_WBITS)
    try:
        out = inflater.decompress(data, max_size + 1)
    except zlib.error as exc:
        raise FrameDecodeError(f"corrupt gzip frame ({len(data)} bytes): {exc}") from None
    if len(out) > max_size or inflater.unconsumed_tail:
        raise FrameDecodeError(f"gzip frame inflates past the {max_size}-byte limit")
    if not inflater.eof:
        raise FrameDecodeError(f"truncated gzip frame ({len(data)} bytes)")
    if inflater.unused_data:  # one frame is one gzip member; anything after it is garbage
        raise FrameDecodeError(f"{len(inflater.unused_data)} trailing bytes after the gzip member")
    return out


def plain(data: bytes, max_size: int = DEFAULT_MAX_FRAME) -> bytes:
    if len(data) > max_size:
        raise FrameDecodeError(f"frame of {len(data)} bytes exceeds the {max_size}-byte limit")
    return data


#: name -> decoder. A binary frame is routed by its first bytes (see `decode_frame`).
DECODERS: dict[str, Callable[[bytes, int], bytes]] = {"gzip": gunzip, "plain": plain}


def decode_frame(frame: bytes | str, max_size: int = DEFAULT_MAX_FRAME) -> bytes:
    """Return the message bytes of a text or binary frame, inflating gzip when the magic says so."""
    if isinstance(frame, str):
        if len(frame) > max_size:  # cheap first: a character is at least one byte
            raise FrameDecodeError(f"frame of {len(frame)} characters exceeds the {max_size} limit")
        try:
            message = frame.encode()
        except UnicodeEncodeError:  # lone surrogates: no real socket yields them, a caller's str might
            raise FrameDecodeError("text frame is not valid Unicode (lone surrogate)") from None
        if len(message) > max_size:  # the limit is in bytes, and a character may take four
            raise FrameDecodeError(f"frame of {len(message)} bytes exceeds the {max_size}-byte limit")
        return message
    name = "gzip" if frame[:2] == _GZIP_MAGIC else "plain"
    return DECODERS[name](frame, max_size)


def gzip_bytes(message: bytes, level: int = 6) -> bytes:
    """Compress one message as a single gzip member, as Coinlocally's binary frames are."""
    deflater = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
    return deflater.compress(message) + deflater.flush()
