"""The parse path's cost per frame, for two source trees side by side (issue 14): timed, and counted.

`bench/run.py`'s sections time whole clients. This script isolates what the protocol parsers cost per frame
of the bench's pools (bench/wire.py), next to what the limit does with the same frame (`zlib.decompress`
and select_libs' typed msgspec decode with Decimal), so a change to the parsers can be judged on a machine
too noisy for absolute times:

- **timed**: each tree runs in its own process (`PYTHONPATH=<tree>`), the trees alternate for `--rounds`
  rounds, and each figure is the minimum over `--passes` passes of ns per frame (the least disturbed
  pass). The parser's figure divided by the limit's, measured in the same process, is the ratio to read;
- **counted** (`--valgrind`): CPU instructions per frame under valgrind's cachegrind, the same script run
  with 0 and with 2 passes over 1,000 frames and the difference divided. Instruction counts do not depend
  on the machine's load, so they compare trees exactly (not time: a cache miss costs more than an add).

    PYTHONPATH=src python bench/parse_cost.py --tree base=../base/src --tree after=src --name NAME

writes bench/results/NAME.json (every round of every figure, and their medians).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
VALGRIND_FRAMES = 1000


def _min_ns(function: Callable[[Any], object], inputs: Sequence[Any], passes: int) -> float:
    best = float("inf")
    for _ in range(passes):
        started = time.perf_counter_ns()
        for item in inputs:
            function(item)
        best = min(best, (time.perf_counter_ns() - started) / len(inputs))
    return round(best, 1)


def _functions(exchange: str) -> tuple[list[Any], dict[str, Callable[[Any], object]]]:
    """The pool's frames as the client hands them over, and what is measured on each."""
    import select_libs  # noqa: PLC0415 - in the child only
    import wire  # noqa: PLC0415
    from userstream.protocol import bitmusa, coinlocally  # noqa: PLC0415

    if exchange == "bitmusa":
        frames: list[Any] = [frame.decode() for frame in wire.pool("bitmusa")[:1024]]
        parser: Any = bitmusa.Parser()
        return frames, {"parse": parser, "limit": select_libs.BITMUSA_TYPED.decode}
    frames = wire.pool("coinlocally")[:1024]
    parser = coinlocally.Parser()
    typed = select_libs.COINLOCALLY_TYPED.decode
    return frames, {
        "parse": parser,
        "limit": lambda frame: typed(zlib.decompress(frame, 31)),
        "zlib.decompress": lambda frame: zlib.decompress(frame, 31),
    }


def child_timed(passes: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for exchange in ("bitmusa", "coinlocally"):
        frames, functions = _functions(exchange)
        for function in functions.values():  # every frame parses as data: the bench checks it too
            function(frames[0])
        out[exchange] = {name: _min_ns(function, frames, passes) for name, function in functions.items()}
    return out


def child_counted(exchange: str, passes: int) -> None:
    frames, functions = _functions(exchange)
    parse = functions["parse"]
    frames = frames[:VALGRIND_FRAMES]
    parse(frames[0])
    for _ in range(passes):
        for frame in frames:
            parse(frame)


def _run_child(tree: str, *args: str, valgrind: bool = False) -> str:
    env = dict(os.environ, PYTHONPATH=tree, PYTHONHASHSEED="0")
    command = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    if valgrind:
        command = [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            *command,
        ]
    done = subprocess.run(  # noqa: S603 - this script and valgrind, with arguments of our own
        command, env=env, capture_output=True, text=True, check=True, cwd=BENCH_DIR
    )
    return done.stdout if not valgrind else done.stderr


def _instructions(tree: str, exchange: str, passes: int) -> int:
    for line in _run_child(tree, "counted", exchange, str(passes), valgrind=True).splitlines():
        if "I" in line and "refs:" in line:
            return int(line.split(":")[1].replace(",", "").strip())
    raise RuntimeError("cachegrind printed no instruction count")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", default=[], help="NAME=PATH of a src directory")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (0: count instructions only)")
    parser.add_argument("--passes", type=int, default=40)
    parser.add_argument("--valgrind", action="store_true", help="also count instructions per frame")
    parser.add_argument("--name", default="parse_cost", help="results file: bench/results/NAME.json")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(BENCH_DIR))
        if args.child[0] == "timed":
            print(json.dumps(child_timed(int(args.child[1]))))
        else:
            child_counted(args.child[1], int(args.child[2]))
        return
    # absolute: the children run in bench/
    trees = {name: str(Path(path).resolve()) for name, path in (tree.split("=", 1) for tree in args.tree)}
    rounds: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, path in trees.items():
            rounds[name].append(json.loads(_run_child(path, "timed", str(args.passes))))
    results: dict[str, Any] = {"passes": args.passes, "rounds": args.rounds, "trees": trees, "timed": {}}
    for name, measured in rounds.items() if args.rounds else ():
        figures: dict[str, Any] = {}
        for exchange in ("bitmusa", "coinlocally"):
            ratios = [each[exchange]["parse"] / each[exchange]["limit"] for each in measured]
            figures[exchange] = {
                "parse_ns": statistics.median(each[exchange]["parse"] for each in measured),
                "limit_ns": statistics.median(each[exchange]["limit"] for each in measured),
                "parse_over_limit": round(statistics.median(ratios), 2),
                "rounds": [each[exchange] for each in measured],
            }
        results["timed"][name] = figures
    if args.valgrind:
        if shutil.which("valgrind") is None:
            parser.error("--valgrind needs valgrind on PATH")
        counted: dict[str, dict[str, int]] = {}
        for name, path in trees.items():
            for exchange in ("bitmusa", "coinlocally"):
                idle, busy = _instructions(path, exchange, 0), _instructions(path, exchange, 2)
                counted.setdefault(name, {})[exchange] = (busy - idle) // (2 * VALGRIND_FRAMES)
        results["instructions_per_frame"] = counted
    out = BENCH_DIR / "results" / f"{args.name}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "timed"}, indent=2))
    for name, figures in results["timed"].items():
        for exchange, f in figures.items():
            print(
                f"{name} {exchange}: parse {f['parse_ns']:,.0f} ns, limit {f['limit_ns']:,.0f} ns, "
                f"parse/limit {f['parse_over_limit']}"
            )
    print(f"wrote {out.relative_to(BENCH_DIR.parent)}")


if __name__ == "__main__":
    main()
