"""An operator sees the frames a stream refused: the gateway's /metrics counts them per account, exactly,
against the real emulator sending the impossible values it was given to ingest."""

from __future__ import annotations

from typing import Any

from userstream.gateway import parse_config


def balance(n: int, free: str | None = None) -> dict[str, Any]:
    return {
        "kind": "balance",
        "asset": "USDT",
        "free": f"{n}" if free is None else free,
        "locked": "0",
        "timestamp": 1_700_703_548_000 + n,
    }


def negative_balance(n: int) -> dict[str, Any]:
    return balance(n, f"-{n}")


async def test_metrics_count_malformed_frames_per_account(lab: Any) -> None:
    async with lab() as env:
        document = env.document(accounts=("alice",))
        document["defaults"]["warning_interval"] = 3600.0  # a stream option the gateway config accepts
        config = parse_config(document, source="test")
        async with env.gateway(config) as gateway:
            await env.ingest("alice", [negative_balance(1), negative_balance(2), balance(3)])
            await env.until(lambda: all(account.events["balance"] == 1 for account in gateway.accounts))
            status, text = await env.text(gateway, "/metrics")
    assert status == 200
    lines = text.splitlines()
    for exchange in ("bitmusa", "coinlocally"):
        labels = f'{{account="alice-{exchange}",exchange="{exchange}"}}'
        assert f"userstream_gateway_malformed_frames_total{labels} 2" in lines
        assert f"userstream_gateway_unknown_frames_total{labels} 2" in lines
    assert "# TYPE userstream_gateway_malformed_frames_total counter" in lines
