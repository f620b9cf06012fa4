"""userstream.pytest_plugin: the `userstream_exchange` fixture as a bot developer's suite meets it.

Each test runs pytest itself, in a subprocess, on a small test file in a fresh directory (no project
configuration): the plugin loaded as a user's suite loads it, through the `pytest11` entry point (a
distribution's metadata on the path declaring exactly pyproject's entry point) and/or `-p`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE = "userstream.pytest_plugin"


def entry_points() -> dict[str, str]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    declared: dict[str, str] = project["entry-points"]["pytest11"]
    return declared


def with_entry_point(site: Path) -> Path:
    """A distribution on `site` declaring pyproject's pytest11 entry points (as the installed one does)."""
    dist = site / "userstream_entry_probe-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: userstream-entry-probe\nVersion: 0.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points().items())
    (dist / "entry_points.txt").write_text(f"[pytest11]\n{lines}")
    return site


def run_pytest(
    directory: Path, source: str, *args: str, site: Path | None = None
) -> subprocess.CompletedProcess[str]:
    (directory / "test_bot.py").write_text(textwrap.dedent(source))
    paths = [str(p) for p in (site,) if p is not None] + [str(ROOT / "src")]
    inherited = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, *([inherited] if inherited else [])])}
    command = [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider",
               "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
               "--rootdir", str(directory), *args, str(directory / "test_bot.py")]  # fmt: skip
    return subprocess.run(  # noqa: S603 - our own interpreter and arguments
        command, cwd=directory, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_pyproject_names_the_entry_point_as_the_module() -> None:
    assert entry_points() == {MODULE: MODULE}


FIXTURE_TESTS = """
    import asyncio
    import pytest
    import userstream
    from userstream.testing import UserstreamExchange, balance

    def test_sync_test_gets_a_running_exchange(userstream_exchange: UserstreamExchange) -> None:
        assert list(userstream_exchange.accounts) == ["alice"]
        assert userstream_exchange.variants == ()
        assert userstream_exchange.push(balance("USDT", "1")) == 1

    @pytest.mark.userstream_exchange(accounts=["maker", "taker"], variants=["numbers-as-strings"],
                                     listen_key_ttl=2.5)
    def test_marker_settings(userstream_exchange, request) -> None:
        assert list(userstream_exchange.accounts) == ["maker", "taker"]
        assert userstream_exchange.variants == ("numbers-as-strings",)
        assert userstream_exchange._handle.config.listen_key_ttl == 2.5

    @pytest.mark.userstream_exchange(accounts=["marker"], heartbeat_timeout=3.0)
    @pytest.mark.parametrize("userstream_exchange", [{"accounts": ["param"]}, {}], indirect=True)
    def test_indirect_parameter_goes_over_the_marker(userstream_exchange) -> None:
        assert list(userstream_exchange.accounts) in (["param"], ["marker"])
        assert userstream_exchange._handle.config.heartbeat_timeout == 3.0

    async def test_async_test_streams(userstream_exchange) -> None:
        ex = userstream_exchange
        async with userstream.connect("coinlocally", **ex.coinlocally.connect_kwargs()) as stream:
            await ex.wait_for_streams()
            ex.push(balance("BTC", "0.5", timestamp=1))
            async with asyncio.timeout(10):
                event = await anext(stream)
        assert (event.asset, str(event.free), event.timestamp) == ("BTC", "0.5", 1)

    def test_plugin_is_registered_once(request) -> None:
        import userstream.pytest_plugin as plugin
        manager = request.config.pluginmanager
        assert [p for p in manager.get_plugins() if p is plugin] == [plugin]
        assert manager.get_plugin("userstream.pytest_plugin") is plugin
"""


def test_fixture_marker_and_parameters_through_the_entry_point(tmp_path: Path) -> None:
    site = with_entry_point(tmp_path / "site")
    (tmp_path / "suite").mkdir()
    result = run_pytest(tmp_path / "suite", FIXTURE_TESTS, site=site)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout


def test_loading_it_twice_is_harmless(tmp_path: Path) -> None:
    """The entry point and `-p`, and a conftest's `pytest_plugins` too: one registration, same results."""
    site = with_entry_point(tmp_path / "site")
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(f"pytest_plugins = [{MODULE!r}]\n")
    result = run_pytest(suite, FIXTURE_TESTS, "-p", MODULE, site=site)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout


def test_p_loads_it_without_the_probe_entry_point(tmp_path: Path) -> None:
    """As before pyproject's entry point is installed (`pip install -e .` refreshes it): `-p` alone."""
    result = run_pytest(tmp_path, FIXTURE_TESTS, "-p", MODULE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout


def test_it_can_be_turned_off(tmp_path: Path) -> None:
    site = with_entry_point(tmp_path / "site")
    (tmp_path / "suite").mkdir()
    source = """
        def test_uses_it(userstream_exchange) -> None:
            pass
    """
    result = run_pytest(tmp_path / "suite", source, "-p", f"no:{MODULE}", site=site)
    assert result.returncode == 1
    assert "fixture 'userstream_exchange' not found" in result.stdout


def test_bad_settings_fail_the_test_at_setup_naming_them(tmp_path: Path) -> None:
    source = """
        import pytest

        @pytest.mark.userstream_exchange(variants=["numbers-as-roman"])
        def test_unknown_variant(userstream_exchange) -> None:
            pass

        @pytest.mark.userstream_exchange("alice")
        def test_positional(userstream_exchange) -> None:
            pass

        @pytest.mark.parametrize("userstream_exchange", ["alice"], indirect=True)
        def test_not_a_dict(userstream_exchange) -> None:
            pass
    """
    result = run_pytest(tmp_path, source, "-p", MODULE)
    assert result.returncode != 0
    assert "3 errors" in result.stdout, result.stdout
    assert "unknown variant 'numbers-as-roman'" in result.stdout
    assert "takes keywords only" in result.stdout
    assert "must be a dict of its settings, not 'alice'" in result.stdout


def test_loading_the_plugin_imports_nothing_of_serve() -> None:
    """A suite that never uses the fixture pays nothing: serve, aiohttp's server and the handle stay out."""
    probe = (
        "import sys, userstream.pytest_plugin\n"
        "print(sorted(m for m in sys.modules if m.startswith(('userstream.server', 'userstream.testing',"
        " 'aiohttp.web'))))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
