"""No credential and no full listenKey in anything the client shows: status events, reprs, errors, logs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from userstream.client import State, connect
from userstream.client.options import StreamOptions
from userstream.client.session import OpenArguments
from userstream.client.transport import Transport
from userstream.errors import AuthenticationError

Env = Any  # conftest.Env
Lab = Callable[..., AbstractAsyncContextManager[Any]]
Recorder = Any  # conftest.Recorder


def shown(recorder: Recorder, *things: object) -> str:
    """Everything a user or a log could see, as one text."""
    parts = [status.to_json().decode() for status in recorder.statuses]
    parts += [status.describe() for status in recorder.statuses]
    parts += [repr(status) for status in recorder.statuses]
    parts += [repr(thing) for thing in things] + [str(thing) for thing in things]
    return "\n".join(parts)


async def test_bitmusa_shows_no_secret_through_renewals_drops_and_a_fatal_end(
    lab: Lab, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="userstream.client")
    keys: list[str] = []
    async with lab() as env:
        async with connect("bitmusa", **env.options("bitmusa"), on_status=recorder) as stream:
            await env.until_streaming()
            keys.append(env.server.active_listen_key("alice"))
            env.server.expire_listen_key("alice")
            await recorder.wait_for(State.KEY_RENEWED)
            await recorder.wait_for(State.CONNECTED, 2)
            keys.append(env.server.active_listen_key("alice"))
            await env.server.drop("alice")
            await recorder.wait_for(State.CONNECTED, 3)
            seen = shown(recorder, stream, stream.options, stream.stats)
        bad = connect("bitmusa", **env.options("bitmusa", auth_key="wrong-SECRET"), on_status=recorder)
        async with bad:
            with pytest.raises(AuthenticationError) as raised:
                async with asyncio.timeout(10):
                    await anext(bad)
        seen += shown(recorder, bad, raised.value, raised.value.args) + caplog.text
    assert len(recorder.of(State.KEY_RENEWED)) == 1
    for secret in (*env.secrets, "wrong-SECRET", *keys):
        assert secret not in seen
    assert keys[1][:6] + "..." in seen  # the masked form is what correlates


async def test_coinlocally_shows_no_secret(
    lab: Lab, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="userstream.client")
    async with lab() as env:
        async with connect("coinlocally", **env.options("coinlocally"), on_status=recorder) as stream:
            await env.until_streaming()
            await env.server.system_close("alice")
            await recorder.wait_for(State.SUBSCRIBED, 2)
            seen = shown(recorder, stream, stream.options)
        options = {**env.options("coinlocally"), "token": None, "api_key": "wrong-SECRET"}
        async with connect("coinlocally", **options, on_status=recorder) as bad:
            with pytest.raises(AuthenticationError) as raised:
                async with asyncio.timeout(10):
                    await anext(bad)
        seen += shown(recorder, bad, raised.value) + caplog.text
    for secret in (*env.secrets, "wrong-SECRET"):
        assert secret not in seen


def test_the_arguments_a_session_is_opened_with_keep_the_credentials_out_of_their_repr() -> None:
    options = StreamOptions()
    transport = Transport(tls=options.tls_policy(), request_timeout=1.0, max_frame=options.max_frame)
    arguments = OpenArguments(
        transport, options, "api-key-secret", "auth-key-secret", "token-secret", None, "ws://127.0.0.1:1/ws"
    )
    shown = repr(arguments)
    assert "secret" not in shown
    assert "ws_url='ws://127.0.0.1:1/ws'" in shown
