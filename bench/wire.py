"""The frames the bench servers send: pools of distinct, realistic messages of both exchanges.

This module owns the bench's test data. Shapes follow the two exchange documents exactly (every frame here
parses with userstream's own parsers; `check_pools` proves it before anything is timed); values vary, so no
decoder or socket sees the same bytes twice in a row. Bitmusa frames are text JSON, three orders for every
wallet update; Coinlocally frames are gzip-compressed binary JSON, three execution reports for every
account position (one to three assets). `latency_frames` numbers each frame through its event time, so a
client can tell which frame an event came from without any field that userstream would not keep.
"""

from __future__ import annotations

import json
import random
import zlib
from typing import Any

GZIP_WBITS = 31
POOL_SIZE = 4096
SEED = 20240521
#: Event times of latency frames are LATENCY_EPOCH_MS + the frame's index.
LATENCY_EPOCH_MS = 1_750_000_000_000

BITMUSA_SYMBOLS = ["XRP/USDT", "BTC/USDT", "ETH/USDT", "SOL/USDT", "DOGE/USDT", "TRX/BTC"]
BITMUSA_STATUSES = ["TRADING", "COMPLETED", "CANCELED", "OVERTIMED"]
COINLOCALLY_SYMBOLS = ["BTCUSDT", "ETHUSDT", "XRPUSDT", "SOLUSDC", "ETHBTC", "BNBFDUSD"]
COINLOCALLY_STATUSES = ["NEW", "PART_FILLED", "FILLED", "CANCELED", "PENDING_CANCEL"]
ASSETS = ["USDT", "BTC", "ETH", "XRP", "SOL", "USDC", "BNB"]


def compact(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def gzip_member(message: bytes) -> bytes:
    deflater = zlib.compressobj(6, zlib.DEFLATED, GZIP_WBITS)
    return deflater.compress(message) + deflater.flush()


def _decimal(rng: random.Random, high: float, places: int) -> str:
    return f"{rng.uniform(0, high):.{places}f}"


def bitmusa_order(rng: random.Random, index: int, event_time: int) -> bytes:
    status = rng.choice(BITMUSA_STATUSES)
    amount = round(rng.uniform(0.0001, 5000), rng.randint(0, 4))
    traded = 0 if status == "TRADING" else round(amount * rng.random(), 4)
    price = round(rng.uniform(0.0001, 70000), rng.randint(0, 6))
    created = event_time - rng.randint(1, 5000)
    return compact(
        {
            "data": {
                "orderId": f"C{171558199502193 + index * 7919}",
                "symbol": rng.choice(BITMUSA_SYMBOLS),
                "direction": rng.choice(["BUY", "SELL"]),
                "type": rng.choice(["LIMIT_PRICE", "MARKET_PRICE"]),
                "price": price,
                "amount": amount,
                "tradedAmount": traded,
                "value": round(traded * price, 6),
                "status": status,
                "createdTime": created,
                "canceledTime": event_time if status in ("CANCELED", "OVERTIMED") else None,
                "completedTime": event_time if status == "COMPLETED" else None,
            },
            "stream": "spot_order",
            "eventTime": event_time,
        }
    )


def bitmusa_wallet(rng: random.Random, index: int, event_time: int) -> bytes:
    return compact(
        {
            "data": {
                "asset": rng.choice(ASSETS),
                "free": _decimal(rng, 2_000_000, rng.randint(0, 8)),
                "locked": _decimal(rng, 100_000, rng.randint(0, 8)),
            },
            "stream": "spot_wallet",
            "eventTime": event_time,
        }
    )


def coinlocally_execution(rng: random.Random, index: int, event_time: int) -> bytes:
    amount = rng.uniform(0.001, 5000)
    filled = amount * rng.random()
    price = rng.uniform(0.0001, 70000)
    last = filled * rng.random()
    return compact(
        {
            "e": "executionReport",
            "E": event_time,
            "T": event_time - rng.randint(1, 80),
            "S": rng.choice(["BUY", "SELL"]),
            "s": rng.choice(COINLOCALLY_SYMBOLS),
            "X": rng.choice(COINLOCALLY_STATUSES),
            "x": rng.choice(["NEW", "TRADE", "STATUS"]),
            "i": str(2690536306533246156 + index * 104729),
            "l": f"{last:.16f}",
            "z": f"{filled:.8f}",
            "L": f"{price:.16f}",
            "Z": f"{filled * price:.8f}",
            "n": f"{filled * price * 0.001:.16f}",
            "o": rng.choice(["LIMIT", "MARKET"]),
            "q": f"{amount:.{rng.randint(0, 8)}f}",
            "p": f"{price:.{rng.randint(0, 8)}f}",
            "Q": f"{filled:.8f}",
            "O": event_time - rng.randint(100, 90_000),
            "P": "0",
        }
    )


def coinlocally_position(rng: random.Random, index: int, event_time: int) -> bytes:
    assets = rng.sample(ASSETS, rng.randint(1, 3))
    return compact(
        {
            "e": "outboundAccountPosition",
            "E": event_time,
            "u": event_time - rng.randint(1, 60),
            "B": [
                {"a": asset, "f": _decimal(rng, 50_000, 8), "l": _decimal(rng, 900, 8)} for asset in assets
            ],
        }
    )


def _frame(exchange: str, rng: random.Random, index: int, event_time: int) -> bytes:
    """Every fourth frame is a balance update, the rest are order updates."""
    balance = index % 4 == 3
    if exchange == "bitmusa":
        return (bitmusa_wallet if balance else bitmusa_order)(rng, index, event_time)
    message = (coinlocally_position if balance else coinlocally_execution)(rng, index, event_time)
    return gzip_member(message)


def pool(exchange: str, size: int = POOL_SIZE) -> list[bytes]:
    """`size` distinct frames (payloads, as they go on the wire) for throughput runs."""
    rng = random.Random(f"{SEED}-{exchange}")
    return [_frame(exchange, rng, index, 1_745_389_508_472 + index * 173) for index in range(size)]


def latency_frames(exchange: str, count: int) -> list[bytes]:
    """`count` distinct frames; frame k carries event time LATENCY_EPOCH_MS + k."""
    rng = random.Random(f"{SEED}-latency-{exchange}")
    return [_frame(exchange, rng, index, LATENCY_EPOCH_MS + index) for index in range(count)]


def events_in(exchange: str, payload: bytes) -> int:
    """How many normalized events a frame carries (an account position: one per asset)."""
    if exchange == "bitmusa":
        return 1
    message = json.loads(zlib.decompress(payload, GZIP_WBITS))
    return len(message["B"]) if message["e"] == "outboundAccountPosition" else 1


def check_pools(frames: dict[str, list[bytes]]) -> dict[str, Any]:
    """Parse every frame with userstream's own parsers (nothing is timed until they all parse), and
    describe the pools: frame sizes and events per frame."""
    from userstream.protocol import bitmusa, coinlocally  # noqa: PLC0415 - only the parent checks
    from userstream.protocol.messages import DataEvents  # noqa: PLC0415

    parsers = {"bitmusa": bitmusa.Parser(), "coinlocally": coinlocally.Parser()}
    described: dict[str, Any] = {}
    for exchange, payloads in frames.items():
        parse = parsers[exchange]
        events = 0
        for payload in payloads:
            frame: str | bytes = payload.decode() if exchange == "bitmusa" else payload
            parsed = parse(frame)
            if not isinstance(parsed, DataEvents):
                raise TypeError(f"{exchange} bench frame does not parse: {parsed}")
            events += len(parsed.events)
        sizes = sorted(map(len, payloads))
        described[exchange] = {
            "frames": len(payloads),
            "bytes_median": sizes[len(sizes) // 2],
            "bytes_p10": sizes[len(sizes) // 10],
            "bytes_p90": sizes[len(sizes) * 9 // 10],
            "events_per_frame": round(events / len(payloads), 3),
            "kind": "text JSON" if exchange == "bitmusa" else "gzip binary JSON",
        }
    return described
