"""protocol/codec.py: bounded gzip/plain frame decoding, with every failure a FrameDecodeError."""

from __future__ import annotations

import gzip
import zlib

import pytest

from userstream.errors import FrameDecodeError
from userstream.protocol.codec import DECODERS, DEFAULT_MAX_FRAME, decode_frame, gunzip, gzip_bytes

MESSAGE = b'{"pong": 1713338308233}'


def test_gunzip_inverts_gzip_bytes() -> None:
    assert gunzip(gzip_bytes(MESSAGE)) == MESSAGE


def test_gunzip_reads_what_the_standard_library_writes() -> None:
    # Coinlocally's frames come from somebody else's gzip, not ours.
    assert gunzip(gzip.compress(MESSAGE, mtime=0)) == MESSAGE
    assert gzip.decompress(gzip_bytes(MESSAGE)) == MESSAGE


def test_gzip_bytes_is_one_gzip_member_with_the_magic() -> None:
    assert gzip_bytes(MESSAGE)[:2] == b"\x1f\x8b"
    assert gunzip(gzip_bytes(b"")) == b""


@pytest.mark.parametrize("cut", [1, 4, 8, 12])
def test_truncated_gzip_is_refused(cut: int) -> None:
    frame = gzip_bytes(MESSAGE)[:-cut]
    with pytest.raises(FrameDecodeError, match="truncated gzip frame"):
        gunzip(frame)


def test_header_only_gzip_is_truncated() -> None:
    with pytest.raises(FrameDecodeError, match=r"truncated gzip frame \(10 bytes\)"):
        gunzip(gzip_bytes(MESSAGE)[:10])


def test_corrupt_gzip_is_refused() -> None:
    frame = bytearray(gzip_bytes(MESSAGE))
    frame[-5] ^= 0xFF  # inside the CRC32/size trailer: the body inflates, the check fails
    with pytest.raises(FrameDecodeError, match="corrupt gzip frame"):
        gunzip(bytes(frame))


def test_corrupt_deflate_body_is_refused() -> None:
    frame = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"\xff" * 16  # reserved block type 3
    with pytest.raises(FrameDecodeError, match="corrupt gzip frame"):
        gunzip(frame)


def test_oversize_is_refused_and_the_limit_itself_is_fine() -> None:
    assert gunzip(gzip_bytes(b"a" * 100), max_size=100) == b"a" * 100
    with pytest.raises(FrameDecodeError, match="inflates past the 100-byte limit"):
        gunzip(gzip_bytes(b"a" * 101), max_size=100)


def test_gzip_bomb_is_refused_without_inflating_it_all() -> None:
    bomb = gzip_bytes(b"\0" * (8 * DEFAULT_MAX_FRAME))
    assert len(bomb) < 9 * 1024  # a few KiB on the wire, 8 MiB inflated
    with pytest.raises(FrameDecodeError, match=f"inflates past the {DEFAULT_MAX_FRAME}-byte limit"):
        gunzip(bomb)


def test_trailing_garbage_after_the_member_is_refused() -> None:
    with pytest.raises(FrameDecodeError, match="4 trailing bytes after the gzip member"):
        gunzip(gzip_bytes(MESSAGE) + b"junk")


def test_two_concatenated_members_are_refused() -> None:
    frame = gzip_bytes(MESSAGE) + gzip_bytes(MESSAGE)
    with pytest.raises(FrameDecodeError, match="trailing bytes after the gzip member"):
        gunzip(frame)


def test_decoders_registry() -> None:
    assert sorted(DECODERS) == ["gzip", "plain"]
    assert DECODERS["plain"](MESSAGE, 100) == MESSAGE
    assert DECODERS["gzip"](gzip_bytes(MESSAGE), 100) == MESSAGE


def test_decode_frame_text_binary_and_gzip() -> None:
    assert decode_frame(MESSAGE.decode()) == MESSAGE
    assert decode_frame(MESSAGE) == MESSAGE
    assert decode_frame(gzip_bytes(MESSAGE)) == MESSAGE
    assert decode_frame("connect success") == b"connect success"
    assert decode_frame(b"") == b""
    assert decode_frame("") == b""
    assert decode_frame("é") == "é".encode()


def test_decode_frame_bounds_every_kind() -> None:
    assert decode_frame("x" * 10, max_size=10) == b"x" * 10
    with pytest.raises(FrameDecodeError, match="frame of 11 characters exceeds the 10 limit"):
        decode_frame("x" * 11, max_size=10)
    with pytest.raises(FrameDecodeError, match="frame of 11 bytes exceeds the 10-byte limit"):
        decode_frame(b"x" * 11, max_size=10)
    with pytest.raises(FrameDecodeError, match="inflates past the 10-byte limit"):
        decode_frame(gzip_bytes(b"x" * 11), max_size=10)


def test_decode_frame_of_ten_megabytes_is_refused() -> None:
    with pytest.raises(FrameDecodeError, match="exceeds"):
        decode_frame(b"{" * 10_000_000)
    with pytest.raises(FrameDecodeError, match="exceeds"):
        decode_frame("{" * 10_000_000)


def test_decode_frame_routes_by_magic_only() -> None:
    # Bytes that merely start like gzip but are not are a decode error, never passed through as plain.
    with pytest.raises(FrameDecodeError, match="gzip frame"):
        decode_frame(b"\x1f\x8b not really gzip")


def test_text_frame_with_a_lone_surrogate_is_a_decode_error() -> None:
    with pytest.raises(FrameDecodeError, match="lone surrogate"):
        decode_frame("\ud800{}")


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 4096, 40_000, 200_000])
def test_gzip_bytes_sized_to_the_message_inflates_back_with_any_gzip_reader(size: int) -> None:
    message = bytes((index * 7919 + index // 97) % 251 for index in range(size))  # little repetition
    frame = gzip_bytes(message)
    assert gzip.decompress(frame) == message
    assert zlib.decompress(frame, 31) == message
    assert decode_frame(frame, max_size=max(size, 1)) == message
