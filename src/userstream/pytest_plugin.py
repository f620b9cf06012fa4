"""userstream's pytest plugin: the `userstream_exchange` fixture (registered by the `pytest11` entry point).

Installing userstream is enough: pytest loads this module and a test that names the fixture gets a running
emulator of both exchanges (`userstream.testing.UserstreamExchange`), on a free port, with generated accounts,
stopped after the test. Settings come from the `userstream_exchange` marker and, for parametrized runs, from
`@pytest.mark.parametrize("userstream_exchange", [{...}], indirect=True)` (a dict of the same keywords,
applied over the marker's):

    @pytest.mark.userstream_exchange(accounts=["alice", "bob"], variants=["numbers-as-strings"],
                                     listen_key_ttl=2.0)
    async def test_my_bot(userstream_exchange): ...

Nothing of serve is imported until a test uses the fixture, so a suite that does not use it pays nothing.
Loading the module twice (the entry point and `-p userstream.pytest_plugin`) is harmless: the entry point
bears the module's own name, and pytest skips a plugin name it already holds. docs/testing.md is the guide.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from userstream.testing import UserstreamExchange

__all__ = ["pytest_configure", "userstream_exchange"]

MARKER = "userstream_exchange"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(accounts=[...], variants=[...], **server_config): settings of the userstream_exchange "
        "fixture (account names, serve variants, any ServerConfig field)",
    )


@pytest.fixture
def userstream_exchange(request: pytest.FixtureRequest) -> Iterator[UserstreamExchange]:
    """A running emulator of both exchanges for this test: `userstream.testing.UserstreamExchange`."""
    from userstream.testing import UserstreamExchange  # noqa: PLC0415 - lazy: no cost for suites without it

    settings = _settings(request)
    with UserstreamExchange.start(**settings) as exchange:
        yield exchange


def _settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(MARKER))):  # the closest marker wins
        if marker.args:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER} takes keywords only (accounts=..., variants=..., ...), "
                f"not {marker.args!r}"
            )
        settings.update(marker.kwargs)
    param = getattr(request, "param", None)
    if param is not None:
        if not isinstance(param, dict):
            raise pytest.UsageError(
                f"an indirect parameter of {MARKER} must be a dict of its settings, not {param!r}"
            )
        settings.update(param)
    return settings
