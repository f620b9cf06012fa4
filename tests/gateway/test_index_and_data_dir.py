"""The gateway's `GET /` (an index of its endpoints) and its data directory for sink files (issue 15)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from userstream.errors import ConfigurationError
from userstream.gateway import parse_config
from userstream.gateway.config import DEFAULT_DATA_DIR, sink_in_data_dir
from userstream.gateway.http import ENDPOINTS, create_app
from userstream.sinks.config import JsonlSpec, RedisSpec, SqliteSpec


async def test_the_root_lists_every_route_and_the_accounts(lab: Any) -> None:
    async with lab() as env, env.gateway(env.config(accounts=("alice",))) as gateway:
        status, body = await env.get(gateway, "/")
        routes = {route.resource.canonical for route in create_app(gateway).router.routes()}
    assert status == 200
    assert body == {
        "service": "userstream gateway",
        "docs": "docs/gateway.md",
        "endpoints": ENDPOINTS,
        "accounts": ["alice-bitmusa", "alice-coinlocally"],
    }
    assert set(ENDPOINTS) == routes  # the index cannot drift from what is served


async def test_sink_files_named_by_a_relative_path_go_to_the_data_directory(
    lab: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started_in = tmp_path / "cwd"
    started_in.mkdir()
    monkeypatch.chdir(started_in)
    absolute = tmp_path / "elsewhere.jsonl"
    async with lab() as env:
        config = env.config(
            accounts=("alice",),
            sinks=[
                {"type": "sqlite", "path": "events.db"},
                {"type": "jsonl", "path": "logs/events.jsonl"},
                {"type": "jsonl", "path": str(absolute)},
            ],
        )
        assert config.data_dir == DEFAULT_DATA_DIR == "data"
        async with env.gateway(config) as gateway:
            status, health = await env.get(gateway, "/healthz")
    assert status == 200
    assert list(health["sinks"]) == [
        "sqlite:data/events.db",
        "jsonl:data/logs/events.jsonl",
        f"jsonl:{absolute}",
    ]
    assert sorted(path.name for path in started_in.iterdir()) == ["data"]  # nothing else where it started
    assert stat.S_IMODE((started_in / "data").stat().st_mode) == 0o700  # balances and orders: owner only
    assert (started_in / "data" / "events.db").is_file()
    assert (started_in / "data" / "logs" / "events.jsonl").is_file()
    assert absolute.is_file()


async def test_the_data_directory_is_configurable(lab: Any, tmp_path: Path) -> None:
    async with lab() as env:
        document = env.document(accounts=("alice",), sinks=[{"type": "sqlite", "path": "events.db"}])
        document["gateway"]["data_dir"] = str(tmp_path / "state")
        config = parse_config(document, source="test")
        async with env.gateway(config):
            pass
    assert (tmp_path / "state" / "events.db").is_file()


def test_only_relative_file_paths_move() -> None:
    assert sink_in_data_dir(SqliteSpec(path="a.db"), "/srv/us") == SqliteSpec(path="/srv/us/a.db")
    assert sink_in_data_dir(JsonlSpec(path="x/a.jsonl"), "d") == JsonlSpec(path="d/x/a.jsonl")
    assert sink_in_data_dir(SqliteSpec(path="a.db"), "~/us") == SqliteSpec(path=str(Path.home() / "us/a.db"))
    options = SqliteSpec(path="a.db", synchronous="normal", capacity=7, batch_size=3)
    assert sink_in_data_dir(options, "d") == SqliteSpec(
        path="d/a.db", synchronous="normal", capacity=7, batch_size=3
    )
    for unmoved in (SqliteSpec(path="/abs/a.db"), JsonlSpec(path="-"), JsonlSpec(), RedisSpec()):
        assert sink_in_data_dir(unmoved, "d") is unmoved


@pytest.mark.parametrize(("value", "message"), [("", "''"), (5, "5")])
def test_a_bad_data_dir_is_refused_naming_it(value: object, message: str) -> None:
    document = {
        "gateway": {"data_dir": value},
        "accounts": [{"name": "a", "exchange": "coinlocally", "token_env": "T"}],
    }
    with pytest.raises(ConfigurationError) as caught:
        parse_config(document, source="g.toml")
    assert str(caught.value) == f"g.toml: data_dir must be a directory's path, not {message}"


def _toml(document: dict[str, Any]) -> str:
    """The TOML of a `lab` document (tables, arrays of tables, strings, numbers, booleans, lists)."""

    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, list):
            return "[" + ", ".join(value(element) for element in item) + "]"
        return repr(item) if isinstance(item, int | float) else json.dumps(item)

    lines: list[str] = []
    for name, content in document.items():
        for table in content if isinstance(content, list) else [content]:
            lines.append(f"[[{name}]]" if isinstance(content, list) else f"[{name}]")
            lines += [f"{key} = {value(item)}" for key, item in table.items()]
    return "\n".join(lines) + "\n"


async def test_the_data_dir_flag_overrides_the_config(lab: Any, tmp_path: Path) -> None:
    async with lab() as env:
        document = env.document(accounts=("alice",), sinks=[{"type": "sqlite", "path": "events.db"}])
        document["gateway"]["data_dir"] = "from-config"
        config = tmp_path / "gateway.toml"
        config.write_text(_toml(document))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "userstream", "gateway", "--config", str(config), "--data-dir", "from-flag",
            cwd=tmp_path, env={**os.environ, **env.environ},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            async with asyncio.timeout(20):
                first = (await process.stdout.readline()).decode()
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                _, stderr = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert first.startswith("userstream gateway: 2 accounts; HTTP API on http://127.0.0.1:"), stderr
    assert process.returncode == 0, stderr.decode()
    assert _names(tmp_path) == ["from-flag", "gateway.toml"]
    assert _names(tmp_path / "from-flag") == ["events.db"]


def _names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())
