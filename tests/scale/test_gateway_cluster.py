"""Three `gateway --redis` instances share one config's accounts through leases, over three `serve` nodes.

All are separate processes on one real Redis; the gateways reach the nodes through a round-robin TCP proxy
(a load balancer in miniature), so a listenKey is made on one node and streamed on another as a matter of
course, and a client whose node dies reconnects to a survivor. Checked: each account is streamed by exactly
one instance (its lease in Redis, every instance's /healthz and /accounts, and the nodes' live connection
counts agree); one serve node and the busiest gateway instance are killed with SIGKILL mid-stream and the
survivors take the dead instance's accounts over within the lease TTL plus a few seconds, with a snapshot
resync; the redis sink's streams, read by a consumer group, hold each event key once, every event ingested
while things were stable exactly once, and the final balances everywhere are the last ones ingested.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import redis.asyncio

from userstream.gateway.cluster import preferred_member

LEASE_TTL = 2.0
LEASE_RENEW = 0.5
PEOPLE = ("alice", "bob", "carol")
EXCHANGES = ("bitmusa", "coinlocally")
ACCOUNTS = tuple(f"{person}-{exchange}" for person in PEOPLE for exchange in EXCHANGES)
SINK_PREFIX = "events"
GROUP = "auditors"
# The client's timings for tests: quick to reconnect, no rotation (one live connection per account).
CALM = (
    "ping_interval = 1.0\nidle_timeout = 5.0\nbackoff_base = 0.01\nbackoff_cap = 0.1\nclose_timeout = 2.0\n"
    "request_timeout = 5.0\nrotate_after = 0\n"
)


def gateway_config(path: Path, rest_url: str, ws_url: str, redis_url: str) -> Path:
    lines = ["[gateway]", "health_grace = 30.0", "", "[defaults]", CALM]
    for person in PEOPLE:
        prefix = person.upper()
        lines += [
            "[[accounts]]",
            f'name = "{person}-bitmusa"',
            'exchange = "bitmusa"',
            f'api_key_env = "{prefix}_BITMUSA_API_KEY"',
            f'auth_key_env = "{prefix}_BITMUSA_AUTH_KEY"',
            f'rest_url = "{rest_url}"',
            f'ws_url = "{ws_url}"',
            "",
            "[[accounts]]",
            f'name = "{person}-coinlocally"',
            'exchange = "coinlocally"',
            f'api_key_env = "{prefix}_COINLOCALLY_API_KEY"',
            f'secret_key_env = "{prefix}_COINLOCALLY_SECRET_KEY"',
            f'ws_url = "{ws_url}/spotws_user/userData/ws"',
            f'snapshot_rest_url = "{rest_url}"',
            "",
        ]
    lines += ["[[sinks]]", 'type = "redis"', f'url = "{redis_url}"', f'prefix = "{SINK_PREFIX}"', ""]
    path.write_text("\n".join(lines))
    return path


def gateway_environment(streams: Any) -> dict[str, str]:
    environ: dict[str, str] = {}
    for person in PEOPLE:
        creds = streams.credentials(person)
        prefix = person.upper()
        environ[f"{prefix}_BITMUSA_API_KEY"] = creds["bitmusa_api_key"]
        environ[f"{prefix}_BITMUSA_AUTH_KEY"] = creds["bitmusa_auth_key"]
        environ[f"{prefix}_COINLOCALLY_API_KEY"] = creds["coinlocally_api_key"]
        environ[f"{prefix}_COINLOCALLY_SECRET_KEY"] = creds["coinlocally_secret_key"]
    return environ


class Audit:
    """A consumer group over the redis sink's account streams: every entry it is handed, in order."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self.entries: list[tuple[str, dict[str, Any]]] = []  # (event key, event JSON)

    async def create(self) -> None:
        for account in ACCOUNTS:
            await self.client.xgroup_create(f"{SINK_PREFIX}:{account}:events", GROUP, id="0", mkstream=True)

    async def read(self) -> None:
        streams = {f"{SINK_PREFIX}:{account}:events": ">" for account in ACCOUNTS}
        reply = await self.client.xreadgroup(GROUP, "auditor-1", streams, count=1000)
        for stream, entries in reply or ():
            for entry_id, fields in entries:
                self.entries.append((fields[b"key"].decode(), json.loads(fields[b"event"])))
                await self.client.xack(stream, GROUP, entry_id)

    def stream_values(self, account: str) -> list[str]:
        """The `free` of `account`'s streamed (not snapshot) balance events, in stream order."""
        return [
            event["free"]
            for _, event in self.entries
            if event["account"] == account and event["kind"] == "balance" and event["source"] == "stream"
        ]

    async def until_streamed(self, expected: dict[str, list[str]]) -> None:
        """Read until each account's streamed values contain `expected[account]` as a run at their end."""
        while True:
            await self.read()
            if all(self.stream_values(a)[-len(v) :] == v for a, v in expected.items()):
                return
            await asyncio.sleep(0.05)


async def settled(
    cluster: Any, gateways: list[Any], nodes: list[Any], client: redis.asyncio.Redis
) -> dict[str, str]:
    """Wait until every account is live on exactly one of `gateways`, the one its Redis lease names, on
    standby on the others, and the nodes hold exactly one live stream per account; return account ->
    instance.

    Settled means nothing will move any more: every instance sees exactly `gateways` as the live members,
    and every account is held by the member the rendezvous hash gives it among them. Without that, an
    instance that has joined (its /healthz 200, every account on standby) but that the holders have not
    seen yet passes for settled, and the holders hand it its accounts a round later: in the middle of the
    events ingested next, which a hand-over does not stream (the new holder's snapshot corrects the
    state; docs/scaling.md)."""
    while True:
        owners = await _owners(cluster, gateways, nodes, client)
        if owners is not None:
            return owners
        await asyncio.sleep(0.05)


async def _owners(
    cluster: Any, gateways: list[Any], nodes: list[Any], client: redis.asyncio.Redis
) -> dict[str, str] | None:
    live: dict[str, list[str]] = {account: [] for account in ACCOUNTS}
    members: dict[str, str] = {}  # member (instance/random) -> instance
    for gateway in gateways:
        status, health = await cluster.health(gateway)
        if status != 200 or health["cluster"]["members"] != len(gateways):
            return None  # down, or it does not see exactly these instances live yet
        members[health["cluster"]["member"]] = gateway.name
        held = set(health["cluster"]["held"])
        async with cluster.http.get(gateway.url + "/accounts") as reply:
            summaries = (await reply.json())["accounts"]
        for summary in summaries:
            name, state = summary["name"], summary["state"]
            if state == "live" and name in held:
                live[name].append(gateway.name)
            elif state != "standby" or name in held:
                return None  # starting, or between two instances
    if any(len(holders) != 1 for holders in live.values()):
        return None
    owners = {account: holders[0] for account, holders in live.items()}
    if owners != {account: members.get(preferred_member(account, members) or "") for account in owners}:
        return None  # a holder has yet to hand an account over to the instance the hash gives it
    for account, instance in owners.items():
        lease = await client.get(f"userstream:gateway:lease:{account}")
        if lease is None or lease.decode().split("/")[0] != instance:
            return None
    per_person = Counter[str]()
    for node in nodes:
        _, health = await cluster.health(node)
        for person in PEOPLE:
            per_person[person] += health["connections"]["by_account"][person]["live"]
    if any(per_person[person] != len(EXCHANGES) for person in PEOPLE):
        return None  # a connection of a stopped stream is still closing somewhere
    return owners


async def ingest_round(cluster: Any, nodes: list[Any], step: int, streams: Any) -> None:
    """One balance per person (free = step), each on another node."""
    for index, person in enumerate(PEOPLE):
        node = nodes[(step + index) % len(nodes)]
        await cluster.ingest(node, person, [streams.balance(step)])  # stamped with the node's time


async def test_gateway_instances_share_accounts_by_lease_and_take_over_a_dead_ones(
    cluster: Any, round_robin: Any, redis_server: Any, streams: Any, tmp_path: Path
) -> None:
    nodes = list(await asyncio.gather(*(cluster.serve(f"node-{n}") for n in "abc")))
    proxy = await round_robin([node.port for node in nodes])
    config = gateway_config(tmp_path / "gateway.toml", proxy.url, proxy.ws_url, redis_server.url)
    environ = gateway_environment(streams)
    client = redis.asyncio.Redis.from_url(redis_server.url)
    audit = Audit(client)
    await audit.create()
    try:
        gateways = list(
            await asyncio.gather(
                *(
                    cluster.gateway(
                        f"gw-{n}",
                        config,
                        "--lease-ttl",
                        str(LEASE_TTL),
                        "--lease-renew",
                        str(LEASE_RENEW),
                        env=environ,
                    )
                    for n in (1, 2, 3)
                )
            )
        )
        owners = await cluster.within(settled(cluster, gateways, nodes, client), "accounts shared out")

        # Stable: every event ingested, on any node, reaches the sink once, from the one instance.
        for step in range(1, 6):
            await ingest_round(cluster, nodes, step, streams)
        stable = {account: [str(step) for step in range(1, 6)] for account in ACCOUNTS}
        await cluster.within(audit.until_streamed(stable), "the first events in the sink")

        # Mid-stream: kill a serve node and the busiest instance while events keep coming.
        busiest = Counter(owners.values()).most_common(1)[0][0]
        doomed = next(gateway for gateway in gateways if gateway.name == busiest)
        survivors = [gateway for gateway in gateways if gateway is not doomed]
        living_nodes = nodes[1:]

        async def keep_ingesting() -> None:
            for step in range(100, 140):
                await ingest_round(cluster, living_nodes, step, streams)
                await asyncio.sleep(0.05)

        ingesting = asyncio.create_task(keep_ingesting())
        await asyncio.sleep(0.3)
        nodes[0].kill()
        doomed.kill()
        try:
            async with asyncio.timeout(LEASE_TTL + 6.0):  # the TTL, a renewal, then connect and resync
                new_owners = await settled(cluster, survivors, living_nodes, client)
        except TimeoutError:
            logs = "\n".join(f"--- {p.name}:\n{p.log_tail()}" for p in survivors)
            raise AssertionError(
                f"the dead instance's accounts were not taken over in time\n{logs}"
            ) from None
        await ingesting

        taken_over = [account for account, instance in owners.items() if instance == busiest]
        assert taken_over
        assert {new_owners[account] for account in ACCOUNTS} <= {gateway.name for gateway in survivors}
        for account in taken_over:  # the new holder began with a snapshot resync
            holder = next(gateway for gateway in survivors if gateway.name == new_owners[account])
            async with cluster.http.get(f"{holder.url}/accounts/{account}") as reply:
                assert (await reply.json())["resyncs"] >= 1

        # Stable again: every event reaches the sink exactly once, and every picture is the truth.
        for step in range(200, 205):
            await ingest_round(cluster, living_nodes, step, streams)
        last = {account: [str(step) for step in range(200, 205)] for account in ACCOUNTS}
        await cluster.within(audit.until_streamed(last), "the last events in the sink", *survivors)

        keys = Counter(key for key, _ in audit.entries)
        assert [key for key, count in keys.items() if count > 1] == []  # each event key once
        for account in ACCOUNTS:
            values = audit.stream_values(account)
            assert values[:5] == stable[account]
            assert values[-5:] == last[account]
            assert len(values) == len(set(values))  # nothing streamed twice, however the takeover went
        for account, instance in new_owners.items():
            holder = next(gateway for gateway in survivors if gateway.name == instance)
            async with cluster.http.get(f"{holder.url}/accounts/{account}/balances") as reply:
                (usdt,) = (await reply.json())["balances"]
            assert (usdt["asset"], usdt["free"]) == ("USDT", "204")

        # A clean stop (SIGTERM) hands the accounts over at once: its leases are deleted, not left to lapse.
        leaving, staying = survivors
        assert await asyncio.to_thread(leaving.stop) == 0
        for account in ACCOUNTS:
            lease = await client.get(f"userstream:gateway:lease:{account}")
            assert lease is None or lease.decode().startswith(f"{staying.name}/")
        await cluster.within(
            settled(cluster, [staying], living_nodes, client), "one instance holds all", staying
        )
    finally:
        await client.aclose()


async def test_two_instances_writing_one_account_leave_each_event_key_once_in_the_sink(
    cluster: Any, redis_server: Any, streams: Any, tmp_path: Path
) -> None:
    """Without leases two instances stream the same account: the redis sink's script keeps one copy."""
    node = await cluster.serve("node-a")
    config = gateway_config(tmp_path / "gateway.toml", node.url, node.ws_url, redis_server.url)
    environ = gateway_environment(streams)
    client = redis.asyncio.Redis.from_url(redis_server.url)
    audit = Audit(client)
    await audit.create()
    try:
        argv = ["gateway", "--config", str(config), "--http-port", "0"]
        first, second = await asyncio.gather(
            cluster.start("plain-1", argv, env=environ), cluster.start("plain-2", argv, env=environ)
        )

        async def both_live() -> None:
            while True:
                states = []
                for gateway in (first, second):
                    async with cluster.http.get(gateway.url + "/accounts") as reply:
                        states += [summary["state"] for summary in (await reply.json())["accounts"]]
                if states == ["live"] * (2 * len(ACCOUNTS)):
                    return
                await asyncio.sleep(0.05)

        await cluster.within(both_live(), "both instances streaming every account")
        for step in range(1, 11):
            await ingest_round(cluster, [node], step, streams)

        async def both_processed() -> None:
            while True:
                counts = []
                for gateway in (first, second):
                    async with cluster.http.get(gateway.url + "/accounts") as reply:
                        counts += [s["events"]["balance"] for s in (await reply.json())["accounts"]]
                if counts == [10] * (2 * len(ACCOUNTS)):
                    return
                await asyncio.sleep(0.05)

        await cluster.within(both_processed(), "both instances saw every event")
        # a clean stop flushes the sink (exit 0: every event written)
        assert await asyncio.gather(asyncio.to_thread(first.stop), asyncio.to_thread(second.stop)) == [0, 0]
        await audit.read()
        for account in ACCOUNTS:
            assert audit.stream_values(account) == [str(step) for step in range(1, 11)]
        assert len(audit.entries) == len({key for key, _ in audit.entries}) == 10 * len(ACCOUNTS)
    finally:
        await client.aclose()
