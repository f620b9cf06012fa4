"""Durable destinations for events: JSONL, SQLite and Redis Streams, behind one interface and one runner.

`Sink` (base.py) is the interface; `SinkRunner` (runner.py) buffers, batches, retries and applies
backpressure for any sink; config.py turns a config table or a `--sink` flag into both. The Redis sink is
imported from `userstream.sinks.redis` directly: it needs the optional `redis` package. docs/sinks.md holds
the guarantees and the schemas.
"""

from userstream.sinks.base import Sink, SinkUnwritableError, event_key, key_of_json
from userstream.sinks.config import (
    JsonlSpec,
    RedisSpec,
    SinkSpec,
    SqliteSpec,
    build_runner,
    build_sink,
    load_spec,
    parse_sink,
)
from userstream.sinks.jsonl import JsonlSink
from userstream.sinks.runner import Overflow, SinkHealth, SinkRunner
from userstream.sinks.sqlite import SqliteSink, StoredEvent

__all__ = [
    "JsonlSink",
    "JsonlSpec",
    "Overflow",
    "RedisSpec",
    "Sink",
    "SinkHealth",
    "SinkRunner",
    "SinkSpec",
    "SinkUnwritableError",
    "SqliteSink",
    "SqliteSpec",
    "StoredEvent",
    "build_runner",
    "build_sink",
    "event_key",
    "key_of_json",
    "load_spec",
    "parse_sink",
]
