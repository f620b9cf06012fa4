"""Sink options from a config table or a --sink flag: every form, the defaults, errors naming the option."""

from __future__ import annotations

from pathlib import Path

import pytest

from userstream.errors import ConfigurationError
from userstream.sinks import (
    JsonlSink,
    JsonlSpec,
    Overflow,
    RedisSpec,
    SqliteSink,
    SqliteSpec,
    build_runner,
    build_sink,
    load_spec,
    parse_sink,
)
from userstream.sinks.redis import RedisSink


@pytest.mark.parametrize(
    ("flag", "spec"),
    [
        ("jsonl", JsonlSpec()),
        ("jsonl:-", JsonlSpec()),
        (
            "jsonl:/var/log/events.jsonl?max_bytes=1000000&backups=3&fsync=1",
            JsonlSpec(path="/var/log/events.jsonl", max_bytes=1_000_000, backups=3, fsync=True),
        ),
        ("sqlite:events.db", SqliteSpec(path="events.db")),
        (
            "sqlite:events.db?synchronous=normal&capacity=50&batch_size=10&overflow=drop_oldest",
            SqliteSpec(
                path="events.db",
                synchronous="normal",
                capacity=50,
                batch_size=10,
                overflow=Overflow.DROP_OLDEST,
            ),
        ),
        ("redis://127.0.0.1:6379/0", RedisSpec(url="redis://127.0.0.1:6379/0")),
        (
            "redis://cache:6380/1?prefix=desk&maxlen=none&dedupe_window=500&socket_keepalive=true",
            RedisSpec(
                url="redis://cache:6380/1?socket_keepalive=true",
                prefix="desk",
                maxlen=None,
                dedupe_window=500,
            ),
        ),
    ],
)
def test_every_flag_form(flag: str, spec: JsonlSpec | SqliteSpec | RedisSpec) -> None:
    assert parse_sink(flag) == spec


def test_a_config_table_gives_the_same_spec_as_the_flag() -> None:
    table = {"type": "sqlite", "path": "events.db", "capacity": 50, "overflow": "drop_oldest"}
    assert load_spec(table) == parse_sink("sqlite:events.db?capacity=50&overflow=drop_oldest")


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("sqlite:", r"the sqlite sink needs a path \(sqlite:PATH\)"),
        ("postgres://db/events", "a sink is jsonl"),
        ("sqlite:events.db?max_bytes=5", r"unknown sqlite sink option\(s\): max_bytes"),
        ("jsonl:e.jsonl?max_bytes=0", r"Expected `int` >= 1 - at `\$.max_bytes`"),
        ("jsonl:e.jsonl?backups=-1", r"Expected `int` >= 0 - at `\$.backups`"),
        ("sqlite:e.db?synchronous=off", r"at `\$.synchronous`"),
        ("sqlite:e.db?overflow=drop_newest", r"at `\$.overflow`"),
        ("sqlite:e.db?capacity=5&batch_size=6", r"sink batch_size \(6\) exceeds its capacity \(5\)"),
        ("redis://h/0?maxlen=0", r"Expected `int` >= 1 - at `\$.maxlen`"),
    ],
)
def test_bad_flags_are_configuration_errors_naming_the_option(flag: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_sink(flag)


def test_an_unknown_table_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown field `max_byte`"):
        load_spec({"type": "jsonl", "path": "e.jsonl", "max_byte": 10})


def test_a_redis_spec_never_shows_its_password() -> None:
    spec = parse_sink("redis://app:s3cret@cache:6379/0")
    assert "s3cret" not in repr(spec)
    assert "s3cret" not in str(spec)
    assert "redis://***@cache:6379/0" in repr(spec)


def test_specs_build_their_sinks_and_runners(tmp_path: Path) -> None:
    jsonl = build_sink(parse_sink(f"jsonl:{tmp_path / 'e.jsonl'}"))
    assert isinstance(jsonl, JsonlSink)
    assert jsonl.name == f"jsonl:{tmp_path / 'e.jsonl'}"
    assert build_sink(parse_sink("jsonl")).name == "jsonl:-"
    assert isinstance(build_sink(parse_sink("sqlite:e.db")), SqliteSink)
    redis_sink = build_sink(parse_sink("redis://:s3cret@127.0.0.1:6390/0?prefix=desk"))
    assert isinstance(redis_sink, RedisSink)
    assert redis_sink.name == "redis:redis://***@127.0.0.1:6390/0"
    assert redis_sink.stream_key("alice") == "desk:alice:events"

    runner = build_runner(parse_sink("sqlite:e.db?capacity=50&overflow=drop_oldest"))
    assert (runner.capacity, runner.overflow, runner.sink.name) == (50, Overflow.DROP_OLDEST, "sqlite:e.db")
