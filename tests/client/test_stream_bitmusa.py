"""The client on Bitmusa against the real emulator: exact delivery, the listenKey's whole life, dead and
dropped connections, rejected credentials, and a shutdown that leaves nothing running."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import pytest

from userstream.client import State, connect
from userstream.client.status import mask_listen_key
from userstream.errors import AuthenticationError, ConfigurationError
from userstream.server import Account

Env = Any  # conftest.Env
Lab = Callable[..., AbstractAsyncContextManager[Any]]
Recorder = Any  # conftest.Recorder

BITMUSA = "bitmusa"


async def delete_listen_key(env: Env, account: Account) -> None:
    """DELETE the account's listenKey as another process sharing the account would (a third-party client)."""
    headers = {"Authorization": f"Bearer {account.bitmusa_auth_key}", "x-api-key": account.bitmusa_api_key}
    async with (
        aiohttp.ClientSession() as http,
        http.delete(env.server.base_url + "/spot/userDataStream", headers=headers) as reply,
    ):
        assert reply.status == 200
        assert await reply.json() == {"code": 0, "message": "success"}


async def test_events_are_delivered_exactly_and_in_order(lab: Lab, recorder: Recorder) -> None:
    async with lab() as env, connect(BITMUSA, **env.options(BITMUSA), on_status=recorder) as stream:
        await env.until_streaming()
        await env.ingest([env.balance(1), env.order(2), env.balance(3), env.order(4), env.balance(5)])
        events = await env.take(stream, 5)
        key = env.server.active_listen_key("alice")
    assert events == [
        env.expected_balance(1, BITMUSA),
        env.expected_order(2, BITMUSA),
        env.expected_balance(3, BITMUSA),
        env.expected_order(4, BITMUSA),
        env.expected_balance(5, BITMUSA),
    ]
    assert recorder.states() == ["connecting", "connected"]
    assert recorder.statuses[1].listen_key == mask_listen_key(key)
    assert recorder.statuses[1].connection == 1
    assert env.access.count("POST", "/spot/userDataStream", 200) == 1


async def test_a_deleted_key_is_renewed_and_nothing_after_the_new_connection_is_lost(
    lab: Lab, recorder: Recorder
) -> None:
    async with lab() as env, connect(BITMUSA, **env.options(BITMUSA), on_status=recorder) as stream:
        await env.until_streaming()
        old_key = env.server.active_listen_key("alice")
        await env.ingest([env.balance(1)])
        assert await env.take(stream, 1) == [env.expected_balance(1, BITMUSA)]

        await delete_listen_key(env, env.alice)
        renewed = await recorder.wait_for(State.KEY_RENEWED)
        await recorder.wait_for(State.CONNECTED, 2)
        await env.until_streaming()
        new_key = env.server.active_listen_key("alice")
        await env.ingest([env.balance(n) for n in range(2, 12)])
        events = await env.take(stream, 10)

    assert events == [env.expected_balance(n, BITMUSA) for n in range(2, 12)]
    assert new_key is not None
    assert new_key != old_key
    assert renewed.listen_key == mask_listen_key(new_key)
    # issue 12: the reason names the URL (the key masked)
    deleted = (
        f"{env.server.ws_url}/ws/spot/{mask_listen_key(old_key)}: the listenKey was deleted (close code 4002)"
    )
    assert renewed.reason == deleted
    disconnected = recorder.of(State.DISCONNECTED)
    assert [(status.connection, status.reason) for status in disconnected] == [(1, deleted)]
    assert recorder.states() == [
        "connecting",
        "connected",
        "disconnected",
        "reconnecting",
        "connecting",
        "key_renewed",
        "connected",
    ]
    assert env.access.count("POST", "/spot/userDataStream", 200) == 2


async def test_a_key_that_expires_is_replaced(lab: Lab, recorder: Recorder) -> None:
    # The server's keys live 0.5 s and the client's keepalive comes far too late to save them.
    async with (
        lab(listen_key_ttl=0.5) as env,
        connect(BITMUSA, **env.options(BITMUSA, keepalive_interval=1000.0), on_status=recorder),
    ):
        renewed = await recorder.wait_for(State.KEY_RENEWED)
        await recorder.wait_for(State.CONNECTED, 2)
    first_key = recorder.of(State.CONNECTED)[0].listen_key  # masked
    expired = f"{env.server.ws_url}/ws/spot/{first_key}: the listenKey expired (close code 4001)"
    assert renewed.reason == expired  # issue 12: the reason names the URL (the key masked)
    assert recorder.of(State.DISCONNECTED)[0].reason == expired
    assert recorder.states()[:7] == [
        "connecting",
        "connected",
        "disconnected",
        "reconnecting",
        "connecting",
        "key_renewed",
        "connected",
    ]


async def test_an_expired_key_mid_stream_loses_nothing_ingested_after_the_new_connection(
    lab: Lab, recorder: Recorder
) -> None:
    async with lab() as env, connect(BITMUSA, **env.options(BITMUSA), on_status=recorder) as stream:
        await env.until_streaming()
        assert env.server.expire_listen_key("alice") is True
        await recorder.wait_for(State.KEY_RENEWED)
        await recorder.wait_for(State.CONNECTED, 2)
        await env.until_streaming()
        await env.ingest([env.order(n) for n in range(1, 6)])
        events = await env.take(stream, 5)
    assert events == [env.expected_order(n, BITMUSA) for n in range(1, 6)]


async def test_keepalive_keeps_the_key_alive_past_its_ttl(lab: Lab, recorder: Recorder) -> None:
    async with (
        lab(listen_key_ttl=0.5) as env,
        connect(BITMUSA, **env.options(BITMUSA, keepalive_interval=0.1), on_status=recorder) as stream,
    ):
        await env.until_streaming()
        key = env.server.active_listen_key("alice")
        # Ten keepalives span at least a second: twice the key's lifetime without them.
        await env.until(lambda: stream.stats.keepalives >= 10)
        await env.ingest([env.balance(1)])
        events = await env.take(stream, 1)
        assert env.server.active_listen_key("alice") == key
    assert events == [env.expected_balance(1, BITMUSA)]
    assert recorder.states() == ["connecting", "connected"]
    assert stream.stats.connections == 1
    assert env.access.count("PUT", "/spot/userDataStream", 200) >= 10
    assert env.access.count("POST", "/spot/userDataStream") == 1


async def test_a_failed_keepalive_is_retried_with_backoff_before_the_key_lapses(
    lab: Lab, recorder: Recorder
) -> None:
    # Three requests a second are allowed, ten keepalives a second are due: most are refused with 429,
    # and the retries still extend the 1-second key in time.
    async with (
        lab(listen_key_ttl=1.0, rate_limit_per_second=3) as env,
        connect(BITMUSA, **env.options(BITMUSA, keepalive_interval=0.1), on_status=recorder) as stream,
    ):
        await env.until_streaming()
        key = env.server.active_listen_key("alice")
        await env.until(lambda: stream.stats.keepalives >= 6)
        await env.ingest([env.balance(1)])
        events = await env.take(stream, 1)
        assert env.server.active_listen_key("alice") == key
    failed = recorder.of(State.KEEPALIVE_FAILED)
    assert failed
    assert {status.reason for status in failed} == {
        f"PUT {env.server.base_url}/spot/userDataStream: Bitmusa answered HTTP 429: too many requests: "
        "at most 3 per second and 1000000 per minute per account"
    }
    assert all(status.delay is not None and 0 <= status.delay <= 0.05 for status in failed)
    assert events == [env.expected_balance(1, BITMUSA)]
    assert recorder.of(State.DISCONNECTED) == []
    assert stream.stats.connections == 1


async def test_a_silent_server_is_declared_dead_and_replaced(lab: Lab, recorder: Recorder) -> None:
    options = {"ping_interval": 0.1, "idle_timeout": 0.5}
    async with (
        lab() as env,
        connect(BITMUSA, **env.options(BITMUSA, **options), on_status=recorder) as stream,
    ):
        await env.until_streaming()
        assert await env.server.stall("alice") == 1  # TCP stays open; nothing comes back, not even pongs
        disconnected = await recorder.wait_for(State.DISCONNECTED)
        await recorder.wait_for(State.CONNECTED, 2)
        await env.until_streaming()
        await env.ingest([env.balance(7)])
        events = await env.take(stream, 1)
    assert disconnected.connection == 1
    assert disconnected.reason is not None
    assert disconnected.reason.endswith("no frame for 0.5s; connection presumed dead")
    assert events == [env.expected_balance(7, BITMUSA)]


async def test_a_dropped_connection_is_replaced(lab: Lab, recorder: Recorder) -> None:
    async with lab() as env, connect(BITMUSA, **env.options(BITMUSA), on_status=recorder) as stream:
        await env.until_streaming()
        assert await env.server.drop("alice") == 1
        await recorder.wait_for(State.CONNECTED, 2)
        await env.until_streaming()
        await env.ingest([env.balance(8)])
        events = await env.take(stream, 1)
    assert events == [env.expected_balance(8, BITMUSA)]
    assert recorder.of(State.DISCONNECTED)[0].reason is not None
    assert stream.stats.connections == 2
    # The key is still valid, so the client reconnects with it: no new POST.
    assert env.access.count("POST", "/spot/userDataStream", 200) == 1
    assert env.access.count("GET", "/ws/spot/", 101) == 2


async def test_rejected_credentials_stop_after_three_attempts(lab: Lab, recorder: Recorder) -> None:
    async with lab() as env:
        options = env.options(BITMUSA, auth_key="wrong-auth-key-SECRET")
        async with connect(BITMUSA, **options, on_status=recorder) as stream:
            with pytest.raises(AuthenticationError) as raised:
                async with asyncio.timeout(10):
                    await anext(stream)
            assert stream.running is False  # the supervisor is gone: nothing can try again
            attempts = env.access.count("POST", "/spot/userDataStream")
            refused = env.access.count("POST", "/spot/userDataStream", 401)
    assert (attempts, refused) == (3, 3)
    assert raised.value.rejected == "listenKey request"
    assert raised.value.status == 401
    shown = (
        f"POST {env.server.base_url}/spot/userDataStream: "
        "Bitmusa answered HTTP 401: invalid api key or auth key"
    )
    assert str(raised.value) == shown  # issue 12: method, URL and status named, the server's words quoted
    assert recorder.states() == [
        "connecting",
        "reconnecting",
        "connecting",
        "reconnecting",
        "connecting",
        "fatal",
    ]
    assert [status.attempt for status in recorder.of(State.CONNECTING)] == [1, 2, 3]
    assert recorder.statuses[-1].reason == shown
    assert stream.stats.auth_failures == 3


async def test_auth_attempts_is_configurable(lab: Lab) -> None:
    async with lab() as env:
        options = env.options(BITMUSA, api_key="nobody", auth_attempts=1)
        async with connect(BITMUSA, **options) as stream:
            with pytest.raises(AuthenticationError):
                async with asyncio.timeout(10):
                    await anext(stream)
        assert env.access.count("POST", "/spot/userDataStream") == 1


async def test_a_clean_exit_leaves_the_shared_key_alone_unless_asked(lab: Lab) -> None:
    async with lab() as env:
        async with connect(BITMUSA, **env.options(BITMUSA)):
            await env.until_streaming()
            key = env.server.active_listen_key("alice")
        assert env.server.active_listen_key("alice") == key  # other processes on the account keep it
        assert env.access.count("DELETE", "/spot/userDataStream") == 0

        async with connect(BITMUSA, **env.options(BITMUSA, close_key_on_exit=True)):
            await env.until_streaming()
        assert env.server.active_listen_key("alice") is None
        assert env.access.count("DELETE", "/spot/userDataStream", 200) == 1


async def test_leaving_the_block_ends_every_task_the_stream_started(lab: Lab, recorder: Recorder) -> None:
    def ours() -> set[str]:
        return {
            task.get_name() for task in asyncio.all_tasks() if task.get_name().startswith("userstream-client")
        }

    async with lab() as env:
        stream = connect(BITMUSA, **env.options(BITMUSA, keepalive_interval=0.2), on_status=recorder)
        async with stream:
            await recorder.wait_for(State.CONNECTED)
            running = ours()
        left = ours()
        events = [event async for event in stream]  # a closed stream ends its iteration
    assert running == {
        "userstream-client:bitmusa/alice",
        "userstream-client:session",
        "userstream-client:ws-1",
        "userstream-client:heartbeat-1",
    }
    assert left == set()
    assert events == []


async def test_two_accounts_never_see_each_other(lab: Lab) -> None:
    async with (
        lab() as env,
        connect(BITMUSA, **env.options(BITMUSA)) as alice,
        connect(BITMUSA, **env.options(BITMUSA, env.bob)) as bob,
    ):
        await env.until_streaming()
        await env.until_streaming(account=env.bob)
        await env.ingest([env.balance(1)], env.bob)
        await env.ingest([env.balance(2)])
        assert await env.take(alice, 1) == [env.expected_balance(2, BITMUSA)]
        assert await env.take(bob, 1) == [env.expected_balance(1, BITMUSA, account="bob")]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"auth_key": None}, "Bitmusa needs an api_key and an auth_key (auth_key missing)"),
        ({"token": "x"}, "Bitmusa takes api_key and auth_key, not a token"),
        ({"rest_url": "ftp://example.com"}, "the Bitmusa REST URL must be an absolute https:// or http://"),
        ({"ws_url": "https://example.com"}, "the Bitmusa WebSocket URL must be an absolute wss:// or ws://"),
        ({"idle_timeout": 1.0, "ping_interval": 1.0}, "idle_timeout (1s) must exceed ping_interval (1s)"),
        ({"keepalive_interval": 3600.0}, "keepalive_interval (3600s) must be shorter than"),
        ({"overflow": "drop_newest"}, "overflow must be 'block' or 'drop_oldest'"),
        ({"queue_size": 0}, "queue_size must be a positive integer"),
    ],
)
async def test_bad_arguments_are_refused_before_anything_starts(
    lab: Lab, overrides: dict[str, Any], message: str
) -> None:
    async with lab() as env:
        with pytest.raises(ConfigurationError) as raised:
            connect(BITMUSA, **{**env.options(BITMUSA), **overrides})
    assert str(raised.value).startswith(message)
