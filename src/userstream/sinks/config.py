"""How a user names a sink: a config table (`[[sinks]]` in gateway.toml) or a `--sink` flag, validated.

This module owns the sink options, their defaults and their validation (bad input is a
`ConfigurationError` naming the option), and builds the sink and its runner from them. It performs no I/O;
it imports the Redis client only when a Redis sink is asked for, so the other sinks need no extra package.

Flag forms (docs/sinks.md): `jsonl` or `jsonl:-` (stdout), `jsonl:PATH?max_bytes=N&backups=N&fsync=1`,
`sqlite:PATH?synchronous=normal`, `redis://HOST:PORT/DB?prefix=P&maxlen=N&dedupe_window=N`. Every form also
takes the runner's `capacity`, `batch_size`, `overflow` (block | drop_oldest), and the health thresholds
`down_after_attempts` and `down_after_seconds` in its query.

The specs are msgspec Structs, the one definition of every option: their types declare the constraints
(the project's shared `Count` and `Seconds`, `userstream.validation`), the options a flag's query may carry
are their fields, and a table or a flag becomes a spec in one place (`load_spec`, by `msgspec.convert`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

import msgspec

from userstream.client.queue import Overflow
from userstream.errors import ConfigurationError, TransportError
from userstream.events import Event
from userstream.logs import redacted_url
from userstream.sinks.base import Sink
from userstream.sinks.jsonl import JsonlSink
from userstream.sinks.runner import DOWN_AFTER_ATTEMPTS, DOWN_AFTER_SECONDS, SinkRunner
from userstream.sinks.sqlite import SqliteSink
from userstream.validation import Count, Seconds

__all__ = [
    "JsonlSpec",
    "RedisSpec",
    "SinkSpec",
    "SqliteSpec",
    "build_runner",
    "build_sink",
    "load_spec",
    "parse_sink",
]

NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class _RunnerOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    capacity: Count = 10_000
    batch_size: Count | None = None  # 500 or the capacity, whichever is smaller
    overflow: Overflow = Overflow.BLOCK
    down_after_attempts: Count = DOWN_AFTER_ATTEMPTS  # failed writes in a row: the sink is down
    down_after_seconds: Seconds = DOWN_AFTER_SECONDS  # a batch failing or hanging that long: down


class JsonlSpec(_RunnerOptions, frozen=True, tag_field="type", tag="jsonl"):
    path: str = "-"  # "-" is stdout
    max_bytes: Count | None = None
    backups: NonNegative = 5
    fsync: bool = False


class SqliteSpec(_RunnerOptions, frozen=True, tag_field="type", tag="sqlite"):
    path: str
    synchronous: Literal["full", "normal"] = "full"


class RedisSpec(_RunnerOptions, frozen=True, tag_field="type", tag="redis"):
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "userstream"
    maxlen: Count | None = 100_000
    dedupe_window: NonNegative | None = None

    def __repr__(self) -> str:  # the URL may carry a password
        return (
            f"RedisSpec(url={redacted_url(self.url)!r}, prefix={self.prefix!r}, maxlen={self.maxlen}, "
            f"dedupe_window={self.dedupe_window}, capacity={self.capacity}, batch_size={self.batch_size}, "
            f"overflow={self.overflow.value!r}, down_after_attempts={self.down_after_attempts}, "
            f"down_after_seconds={self.down_after_seconds})"
        )


SinkSpec = JsonlSpec | SqliteSpec | RedisSpec


def load_spec(table: Mapping[str, Any]) -> SinkSpec:
    """A sink's options from a config table such as `{"type": "sqlite", "path": "events.db"}`."""
    try:
        spec: SinkSpec = msgspec.convert(dict(table), SinkSpec, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigurationError(f"invalid sink options: {exc}") from None
    if spec.batch_size is not None and spec.batch_size > spec.capacity:
        raise ConfigurationError(
            f"sink batch_size ({spec.batch_size}) exceeds its capacity ({spec.capacity})"
        )
    return spec


def parse_sink(flag: str) -> SinkSpec:
    """A sink's options from a `--sink` flag value (forms in the module docstring)."""
    if flag in ("jsonl", "jsonl:", "-"):
        return load_spec({"type": "jsonl"})
    parts = urlsplit(flag)
    if parts.scheme in ("redis", "rediss", "unix"):
        ours, theirs = _split_query(parts.query, _REDIS_OPTIONS | _RUNNER_OPTIONS)
        url = parts._replace(query=urlencode(theirs)).geturl()
        return load_spec({"type": "redis", "url": url, **ours})
    kind, sep, rest = flag.partition(":")
    if not sep or kind not in ("jsonl", "sqlite"):
        raise ConfigurationError(
            "a sink is jsonl[:PATH], sqlite:PATH or redis://HOST:PORT/DB (options as ?name=value)"
        )
    path, _, query = rest.partition("?")
    ours, theirs = _split_query(query, _FILE_OPTIONS[kind] | _RUNNER_OPTIONS)
    if theirs:
        raise ConfigurationError(f"unknown {kind} sink option(s): {', '.join(name for name, _ in theirs)}")
    if not path:
        raise ConfigurationError(f"the {kind} sink needs a path ({kind}:PATH)")
    return load_spec({"type": kind, "path": path, **ours})


def build_sink(spec: SinkSpec) -> Sink:
    if isinstance(spec, JsonlSpec):
        path = None if spec.path == "-" else spec.path
        return JsonlSink(path, max_bytes=spec.max_bytes, backups=spec.backups, fsync=spec.fsync)
    if isinstance(spec, SqliteSpec):
        return SqliteSink(spec.path, synchronous=spec.synchronous)
    try:
        from userstream.sinks.redis import RedisSink  # noqa: PLC0415 - the redis package is optional
    except ImportError:
        raise ConfigurationError(
            "the redis sink needs the redis package: pip install 'userstream[redis]'"
        ) from None
    return RedisSink(spec.url, prefix=spec.prefix, maxlen=spec.maxlen, dedupe_window=spec.dedupe_window)


def build_runner(
    spec: SinkSpec,
    *,
    on_drop: Callable[[Event], None] | None = None,
    on_retry: Callable[[int, TransportError, float], None] | None = None,
) -> SinkRunner:
    """The sink of `spec` behind a runner with the spec's buffer options."""
    return SinkRunner(
        build_sink(spec),
        capacity=spec.capacity,
        batch_size=spec.batch_size,
        overflow=spec.overflow,
        down_after_attempts=spec.down_after_attempts,
        down_after_seconds=spec.down_after_seconds,
        on_drop=on_drop,
        on_retry=on_retry,
    )


# --- internals --------------------------------------------------------------------------------------------

#: The options a flag's query may carry: the specs' fields (the runner's, then each sink's own).
_RUNNER_OPTIONS = frozenset(_RunnerOptions.__struct_fields__)
_REDIS_OPTIONS = frozenset(RedisSpec.__struct_fields__) - _RUNNER_OPTIONS - {"url"}
_FILE_OPTIONS = {
    "jsonl": frozenset(JsonlSpec.__struct_fields__) - _RUNNER_OPTIONS - {"path"},
    "sqlite": frozenset(SqliteSpec.__struct_fields__) - _RUNNER_OPTIONS - {"path"},
}


def _split_query(query: str, ours: frozenset[str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Our options (typed later by `load_spec`, which accepts numbers and booleans written as text) and
    the rest, in order (for Redis: redis-py's own URL options)."""
    mine: dict[str, Any] = {}
    theirs: list[tuple[str, str]] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in ours:
            if name in ("maxlen", "max_bytes") and value.lower() in ("", "none"):
                mine[name] = None
            else:
                mine[name] = value
        else:
            theirs.append((name, value))
    return mine, theirs
