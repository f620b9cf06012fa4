"""The SQLite sink alone: CPU µs per event by batch size, on this tree's code and a baseline's (issue 14).

This module owns the in-process half of the gateway section (bench/gateway.py measures from outside): no
network, no event loop work but the sink's, so a change to the sink shows without the noise of serve and the
streams. Each run is a fresh process (`python bench/sink_batches.py --child`, PYTHONPATH at the candidate's
src) that makes the events of two simulated accounts (`server.simulator.Market`, one per exchange, seeded),
writes the first `warm` of them into a new database, then writes `events` more in batches of the size under
test through `SqliteSink.write` (its worker thread, `synchronous = "full"`), and reports its CPU time
(`time.process_time`: every thread) per event. Candidates alternate within each round; medians over rounds.

Run alone: .venv/bin/python bench/sink_batches.py [--baseline-src PATH] [--sizes 1,10,50,500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import median

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
SIZES = (1, 10, 50, 500)


def _events(count: int) -> list[Any]:
    import msgspec  # noqa: PLC0415 - in the child, from the candidate's tree

    from userstream.events import Exchange  # noqa: PLC0415
    from userstream.server.simulator import Market  # noqa: PLC0415

    accounts = [
        (Market("alice", random.Random(1)), Exchange.BITMUSA),
        (Market("bob", random.Random(2), first_order_id=2_000_001), Exchange.COINLOCALLY),
    ]
    made: list[Any] = []
    for market, exchange in accounts:
        made += [msgspec.structs.replace(e, exchange=exchange) for e in market.opening_balances(0)]
    step = 0
    while len(made) < count:
        market, exchange = accounts[step % 2]
        made += [msgspec.structs.replace(e, exchange=exchange) for e in market.step(1_700_000_000_000 + step)]
        step += 1
    return made[:count]


async def _child(size: int, warm: int, count: int) -> dict[str, float]:
    from userstream.sinks import SqliteSink  # noqa: PLC0415

    events = _events(warm + count)
    with tempfile.TemporaryDirectory(prefix="bench-sink-") as workdir:
        sink = SqliteSink(Path(workdir) / "events.db")
        await sink.open()
        try:
            for at in range(0, warm, 500):
                await sink.write(events[at : min(at + 500, warm)])
            started = time.process_time()
            for at in range(warm, warm + count, size):
                await sink.write(events[at : at + size])
            cpu = time.process_time() - started
        finally:
            await sink.close()
    return {"cpu_us_per_event": round(cpu / count * 1e6, 1)}


def one_run(src: Path, size: int, warm: int, count: int) -> float:
    done = subprocess.run(  # noqa: S603 - this script, on the candidate's src
        [sys.executable, __file__, "--child", str(size), str(warm), str(count)],
        env={**os.environ, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        check=True,
    )
    result: float = json.loads(done.stdout)["cpu_us_per_event"]
    return result


def run(
    *,
    baseline_src: Path | None = None,
    sizes: tuple[int, ...] = SIZES,
    rounds: int = 3,
    warm: int = 20_000,
    events: int = 5_000,
) -> dict[str, Any]:
    """Each round: for each batch size, each candidate once (the baseline first)."""
    candidates = {"now": SRC} if baseline_src is None else {"baseline": baseline_src.resolve(), "now": SRC}
    runs: dict[str, dict[str, list[float]]] = {name: {str(s): [] for s in sizes} for name in candidates}
    for _ in range(rounds):
        for size in sizes:
            for name, src in candidates.items():
                # fewer events for the smallest batches: each is a transaction with its fsync
                count = min(events, max(500, size * 200))
                runs[name][str(size)].append(one_run(src, size, warm, count))
    figures: dict[str, Any] = {
        "rounds": rounds,
        "warm_events": warm,
        "candidates": {name: str(src) for name, src in candidates.items()},
        "runs": runs,
    }
    for name in candidates:
        figures[name] = {size: median(values) for size, values in runs[name].items()}
    return figures


def markdown(figures: dict[str, Any]) -> str:
    names = list(figures["candidates"])
    lines = [
        f"SQLite sink alone, CPU µs per event by batch size (a database of {figures['warm_events']:,} events "
        f"first; median of {figures['rounds']} runs):",
        "",
        "| batch size | " + " | ".join(names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for size in figures[names[0]]:
        lines.append(f"| {int(size):,} | " + " | ".join(f"{figures[n][size]:.1f}" for n in names) + " |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        size, warm, count = map(int, sys.argv[2:])
        print(json.dumps(asyncio.run(_child(size, warm, count))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", type=Path, help="src directory of the tree to compare against")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    sizes = tuple(int(size) for size in args.sizes.split(","))
    figures = run(baseline_src=args.baseline_src, sizes=sizes, rounds=args.rounds)
    print(markdown(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
