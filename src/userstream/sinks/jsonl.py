"""The JSONL sink: one `eventjson.to_json` line per event, to stdout or to a file with size-based rotation.

This module owns the file handling: appending, flushing once per batch, rotating `file -> file.1 -> ...
-> file.N` by size, and undoing a half-written batch. It knows nothing of buffering or retries (the runner's).

A line is exactly the event's contract JSON, so a reader recomputes the event key as
`sink.base.key_of_json(line)` (the sha256 of the line's bytes). Within one run, `write` skips the keys of
the last `dedupe_window` events it wrote, so a retried batch is written once; across restarts a JSONL file
is at least once (a reader that must not see duplicates dedupes by that key). A line is never split
across files: rotation happens between lines, before a line that would take the file past `max_bytes`
(a single line longer than `max_bytes` gets a file of its own).

File I/O runs on the sink's own worker thread (`sinks.thread`), so a slow disk or a stalled stdout reader
never blocks the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections import OrderedDict
from collections.abc import Sequence
from io import FileIO
from pathlib import Path
from typing import BinaryIO

from userstream import eventjson
from userstream.errors import ConfigurationError, LocalProtocolError, TransportError
from userstream.events import Event
from userstream.sinks.base import SinkUnwritableError, key_of_json
from userstream.sinks.thread import WorkerThread

__all__ = ["JsonlSink"]


class JsonlSink:
    """Events as JSON lines on stdout (`path=None`), on a given binary stream, or in a rotated file."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_bytes: int | None = None,
        backups: int = 5,
        stream: BinaryIO | None = None,
        fsync: bool = False,
        dedupe_window: int = 100_000,
    ) -> None:
        """`max_bytes` (files only) enables rotation, keeping `backups` old files; `fsync` makes every
        batch durable on disk before `write` returns, at the cost of one fsync per batch."""
        if path is not None and stream is not None:
            raise ConfigurationError("a JSONL sink writes to a path or to a stream, not both")
        if max_bytes is not None and (path is None or not (isinstance(max_bytes, int) and max_bytes > 0)):
            raise ConfigurationError(
                f"max_bytes must be a positive integer and needs a path, not {max_bytes!r}"
            )
        if not (isinstance(backups, int) and backups >= 0):
            raise ConfigurationError(f"backups must be a non-negative integer, not {backups!r}")
        if not (isinstance(dedupe_window, int) and dedupe_window >= 0):
            raise ConfigurationError(f"dedupe_window must be a non-negative integer, not {dedupe_window!r}")
        self._path = None if path is None else Path(path)
        self._max_bytes = max_bytes
        self._backups = backups
        self._given_stream = stream
        self._fsync = fsync
        self._dedupe_window = dedupe_window
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._stream: BinaryIO | None = None  # stdout or the caller's stream (not ours to close)
        self._file: FileIO | None = None  # our file: unbuffered, so a failed write leaves nothing behind
        self._size = 0
        self._thread = WorkerThread(f"userstream-jsonl[{'-' if path is None else Path(path).name}]")

    @property
    def name(self) -> str:
        return "jsonl:-" if self._path is None else f"jsonl:{self._path}"

    @property
    def path(self) -> Path | None:
        return self._path

    async def open(self) -> None:
        self._thread.start()
        if self._path is None:
            self._stream = self._given_stream if self._given_stream is not None else sys.stdout.buffer
            return
        try:
            await self._thread.run(self._open_file)
        except OSError as exc:
            self._thread.stop()
            raise ConfigurationError(f"cannot open {self._path} for appending: {exc.strerror}") from None

    async def write(self, batch: Sequence[Event]) -> None:
        if not self._thread.running:
            raise LocalProtocolError(f"{self.name} is not open")
        lines: list[tuple[str, bytes]] = []
        in_batch: set[str] = set()
        for event in batch:
            body = eventjson.to_json(event)
            key = key_of_json(body)
            if key not in self._recent and key not in in_batch:
                in_batch.add(key)
                lines.append((key, body + b"\n"))
        if not lines:
            return
        if self._path is None:
            await self._thread.run(self._write_stream, lines)
        else:
            await self._thread.run(self._write_file, lines)

    async def close(self) -> None:
        if self._thread.running:
            try:
                await self._thread.run(self._release)
            finally:
                self._thread.stop()

    def _release(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.flush()  # stdout or the caller's stream stays open: not ours to close
        file, self._file = self._file, None
        if file is not None:
            file.close()

    # --- on the sink's worker thread -------------------------------------------------------------------

    def _write_stream(self, lines: list[tuple[str, bytes]]) -> None:
        stream = self._stream
        if stream is None:
            raise LocalProtocolError(f"{self.name} is closed")
        try:
            stream.write(b"".join(line for _, line in lines))
            stream.flush()
        except OSError as exc:
            # A pipe cannot be cut back: its reader may see part of this batch twice (at least once).
            raise _write_error(f"writing to {self.name} failed: {exc.strerror or exc}", exc) from None
        for key, _ in lines:
            self._remember(key)

    def _write_file(self, lines: list[tuple[str, bytes]]) -> None:
        """Write lines in order, rotating between lines; each chunk is remembered once it is on file."""
        try:
            if self._file is None:
                self._open_file()  # an earlier failure left it closed
            chunk: list[tuple[str, bytes]] = []
            chunk_bytes = 0
            for key, line in lines:
                if self._must_rotate_before(chunk_bytes, len(line)):
                    self._write_chunk(chunk)
                    chunk, chunk_bytes = [], 0
                    self._rotate()
                chunk.append((key, line))
                chunk_bytes += len(line)
            self._write_chunk(chunk)
        except OSError as exc:
            raise _write_error(f"writing to {self.name} failed: {exc.strerror or exc}", exc) from None

    def _open_file(self) -> None:
        file = FileIO(self._file_path, "ab")
        self._size = os.fstat(file.fileno()).st_size
        self._file = file

    def _must_rotate_before(self, chunk_bytes: int, line_bytes: int) -> bool:
        if self._max_bytes is None:
            return False
        used = self._size + chunk_bytes
        # Only a file that has lines rotates: a line longer than max_bytes gets an empty file to itself.
        return used > 0 and used + line_bytes > self._max_bytes

    def _write_chunk(self, chunk: list[tuple[str, bytes]]) -> None:
        if not chunk:
            return
        file = self._file
        if file is None:
            raise LocalProtocolError(f"{self.name} is closed")
        blob = memoryview(b"".join(line for _, line in chunk))
        try:
            done = 0
            while done < len(blob):
                done += file.write(blob[done:]) or 0
            if self._fsync:
                os.fsync(file.fileno())
        except OSError:
            self._undo_partial_write(file)
            raise
        self._size += len(blob)
        for key, _ in chunk:
            self._remember(key)

    def _undo_partial_write(self, file: FileIO) -> None:
        """Cut the file back to its last whole line, so the retried batch does not follow a torn line."""
        try:
            file.truncate(self._size)
        except OSError:
            # The file is unusable (the disk went away): drop it and reopen on the next write.
            self._file = None
            with contextlib.suppress(OSError):
                file.close()

    def _rotate(self) -> None:
        path = self._file_path
        if self._file is not None:
            file, self._file = self._file, None
            file.close()
        if self._backups == 0:
            path.unlink(missing_ok=True)
        else:
            for index in range(self._backups - 1, 0, -1):
                older = self._backup(index)
                if older.exists():
                    older.replace(self._backup(index + 1))
            path.replace(self._backup(1))
        self._open_file()

    def _backup(self, index: int) -> Path:
        path = self._file_path
        return path.with_name(f"{path.name}.{index}")

    @property
    def _file_path(self) -> Path:
        if self._path is None:
            raise LocalProtocolError("a JSONL sink on a stream has no file")
        return self._path

    def _remember(self, key: str) -> None:
        if self._dedupe_window == 0:
            return
        self._recent[key] = None
        if len(self._recent) > self._dedupe_window:
            self._recent.popitem(last=False)


# Errors that need an operator (a read-only or immutable file or file system, a path of the wrong kind, a
# reader that went away, a failing disk): still retried, but the sink is reported down at once. A full disk
# (ENOSPC) may pass as files are removed: it counts against the runner's thresholds instead.
_UNWRITABLE = frozenset(
    {errno.EROFS, errno.EPERM, errno.EACCES, errno.EISDIR, errno.ENOTDIR, errno.EPIPE, errno.EIO}
)


def _write_error(message: str, exc: OSError) -> TransportError:
    return SinkUnwritableError(message) if exc.errno in _UNWRITABLE else TransportError(message)
