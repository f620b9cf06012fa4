"""`make bench` section 7 (issue 14): what the gateway costs per event it stores into SQLite.

This module owns the measurement, made from outside as an operator would see it. One `userstream serve
--simulate RATE` process feeds two accounts (alice on Bitmusa, bob on Coinlocally with the keys of its REST
snapshot, so both streams keep a resync picture), for the whole section. Each candidate is a
`python -m userstream gateway` process with PYTHONPATH at the candidate's src, a fresh data directory, both
accounts and one SQLite sink with its defaults (`synchronous = "full"`). Once its first rows are stored and
a warm-up has passed, a window of `seconds` is measured: the rows of `events` (its `max(seq)`, read over a
connection of this process) and the gateway's CPU time (`/proc/<pid>/stat` utime + stime, every thread,
the sink's too) at both ends. Then the gateway gets SIGTERM and the next candidate starts.

Figures per run: stored events/s, CPU µs per stored event, events/s per core (10^6 / that), the share of one
core, and serve's CPU share (the load the two cores also carry). With a baseline (`--baseline-src`, the
tree before a change), the candidates alternate inside each round (baseline, now, then again), each figure
is the median over the rounds, and the ratio is the median of the rounds' ratios, so the drift of a shared
machine slows both alike. The offered rate should be one both candidates keep up with: then the events
stored are the same, and the CPU per event is the comparison.

`--profile DIR` adds, after the rounds, one run per candidate under py-spy (`record --pid`, raw collapsed
stacks, a separate run since the sampling costs the process time) and prints where the gateway's CPU goes:
each function's own share of the samples and its share with what it calls (`--py-spy PATH`: the binary).

bench/sink_batches.py measures the SQLite sink alone by batch size, the other half of this section in
`make bench`.

Run alone: .venv/bin/python bench/gateway.py [--baseline-src PATH] [--rounds 3] [--rate 6000]
[--seconds 10] [--warmup 3] [--profile DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import CLOCK_TICKS, cpu_seconds, median

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
READY_WITHIN = 60.0
#: issue 14's target: stored events per second per core of the gateway's CPU
TARGET_PER_CORE = 30_000

# Example credentials for the emulator only (serve's accounts file and the gateway's environment).
_CREDENTIALS = {
    "BENCH_ALICE_API_KEY": "bench-alice-bitmusa-api-key",
    "BENCH_ALICE_AUTH_KEY": "bench-alice-bitmusa-auth-key",
    "BENCH_BOB_API_KEY": "bench-bob-coinlocally-api-key",
    "BENCH_BOB_SECRET_KEY": "bench-bob-coinlocally-secret-key",
}
_ACCOUNTS_TOML = f"""
[[accounts]]
name = "alice"
uid = 1001
bitmusa_api_key = "{_CREDENTIALS["BENCH_ALICE_API_KEY"]}"
bitmusa_auth_key = "{_CREDENTIALS["BENCH_ALICE_AUTH_KEY"]}"

[[accounts]]
name = "bob"
uid = 1002
coinlocally_api_key = "{_CREDENTIALS["BENCH_BOB_API_KEY"]}"
coinlocally_secret_key = "{_CREDENTIALS["BENCH_BOB_SECRET_KEY"]}"
"""


@dataclass(frozen=True)
class Candidate:
    name: str
    src: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _gateway_toml(port: int) -> str:
    base = f"http://127.0.0.1:{port}"
    return f"""
[gateway]
http_port = 0
data_dir = "data"

[defaults]
snapshot_symbols = ["BTC/USDT", "ETH/USDT", "XRP/USDT"]

[[accounts]]
name = "alice-bitmusa"
exchange = "bitmusa"
api_key_env = "BENCH_ALICE_API_KEY"
auth_key_env = "BENCH_ALICE_AUTH_KEY"
rest_url = "{base}"
ws_url = "ws://127.0.0.1:{port}"

[[accounts]]
name = "bob-coinlocally"
exchange = "coinlocally"
api_key_env = "BENCH_BOB_API_KEY"
secret_key_env = "BENCH_BOB_SECRET_KEY"
snapshot_rest_url = "{base}"
ws_url = "ws://127.0.0.1:{port}/spotws_user/userData/ws"

[[sinks]]
type = "sqlite"
path = "events.db"
"""


def _environ(src: Path) -> dict[str, str]:
    return {**os.environ, **_CREDENTIALS, "PYTHONPATH": str(src), "USERSTREAM_ADMIN_TOKEN": "bench-admin"}


@contextlib.contextmanager
def _serve(workdir: Path, rate: float) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """This tree's `userstream serve --simulate RATE` with the two accounts, until the block ends."""
    accounts = workdir / "accounts.toml"
    accounts.write_text(_ACCOUNTS_TOML)
    port = _free_port()
    command = [sys.executable, "-m", "userstream", "serve", "--port", str(port), "--accounts", str(accounts)]
    command += ["--simulate", f"{rate:g}", "--seed", "14", "--log-level", "WARNING"]
    with (workdir / "serve.log").open("wb") as log:
        process = subprocess.Popen(command, env=_environ(SRC), stdout=log, stderr=log)  # noqa: S603
    try:
        deadline = time.monotonic() + READY_WITHIN
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"serve did not start; see {workdir / 'serve.log'}") from None
                time.sleep(0.05)
        yield process, port
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _main_thread_cpu(pid: int) -> float:
    """CPU seconds of a process's main thread (its event loop; the others are the sink's writer and the
    loop's executor)."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _stored(database: Path) -> int:
    """Rows in `events` (its largest seq: the table is append-only), 0 before it exists."""
    if not database.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as reader:
        try:
            row = reader.execute("SELECT max(seq) FROM events").fetchone()
        except sqlite3.OperationalError:  # the schema is not created yet
            return 0
    return int(row[0] or 0)


def one_run(
    candidate: Candidate,
    serve: tuple[subprocess.Popen[bytes], int],
    *,
    seconds: float,
    warmup: float,
    profile: tuple[Path, Path] | None = None,
) -> dict[str, Any]:
    """One gateway process of `candidate`: warm up, measure a window, stop it. `profile` is
    (py-spy binary, output file): the window is recorded (its figures then include py-spy's cost)."""
    serve_process, port = serve
    with tempfile.TemporaryDirectory(prefix=f"bench-gateway-{candidate.name}-") as tmp:
        workdir = Path(tmp)
        config = workdir / "gateway.toml"
        config.write_text(_gateway_toml(port))
        database = workdir / "data" / "events.db"
        command = [sys.executable, "-m", "userstream", "gateway", "--config", str(config)]
        with (workdir / "gateway.log").open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - our own CLI
                command, cwd=workdir, env=_environ(candidate.src), stdout=log, stderr=log
            )
        try:
            deadline = time.monotonic() + READY_WITHIN
            while _stored(database) == 0:
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (workdir / "gateway.log").read_text(errors="replace")[-2000:]
                    raise SystemExit(f"the {candidate.name} gateway stored nothing:\n{tail}")
                time.sleep(0.05)
            time.sleep(warmup)
            spy = None
            if profile is not None:
                binary, output = profile
                spy = subprocess.Popen(  # noqa: S603 - py-spy on our own child
                    [
                        *(str(binary), "record", "--pid", str(process.pid), "--duration", f"{seconds:g}"),
                        *("--rate", "200", "--format", "raw", "--output", str(output), "--nonblocking"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            rows0, cpu0, main0, serve0, t0 = (
                _stored(database),
                cpu_seconds(process.pid),
                _main_thread_cpu(process.pid),
                cpu_seconds(serve_process.pid),
                time.monotonic(),
            )
            time.sleep(seconds)
            rows1, cpu1, main1, serve1, t1 = (
                _stored(database),
                cpu_seconds(process.pid),
                _main_thread_cpu(process.pid),
                cpu_seconds(serve_process.pid),
                time.monotonic(),
            )
            if spy is not None:
                spy.wait(seconds + 30)
            if process.poll() is not None:
                raise SystemExit(f"the {candidate.name} gateway ended during the window")
        finally:
            _stop(process)
    stored = rows1 - rows0
    elapsed = t1 - t0
    cpu = cpu1 - cpu0
    if stored <= 0:
        raise SystemExit(f"the {candidate.name} gateway stored nothing in {elapsed:.1f} s")
    cpu_us = cpu / stored * 1e6
    return {
        "stored": stored,
        "seconds": round(elapsed, 3),
        "events_per_s": round(stored / elapsed),
        "cpu_us_per_event": round(cpu_us, 1),
        "main_thread_us_per_event": round((main1 - main0) / stored * 1e6, 1),
        "other_threads_us_per_event": round((cpu - (main1 - main0)) / stored * 1e6, 1),
        "events_per_s_per_core": round(1e6 / cpu_us),
        "cpu_share_pct": round(cpu / elapsed * 100, 1),
        "serve_cpu_share_pct": round((serve1 - serve0) / elapsed * 100, 1),
    }


def run(
    *,
    baseline_src: Path | None = None,
    rounds: int = 3,
    rate: float = 6000.0,
    seconds: float = 10.0,
    warmup: float = 3.0,
    profile_dir: Path | None = None,
    py_spy: Path | None = None,
) -> dict[str, Any]:
    """Every round runs each candidate once (the baseline first); figures are medians over the rounds."""
    candidates = [Candidate("now", SRC)]
    if baseline_src is not None:
        candidates.insert(0, Candidate("baseline", baseline_src.resolve()))
    runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in candidates}
    profiles: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-gateway-serve-") as tmp, _serve(Path(tmp), rate) as serve:
        for round_number in range(rounds):
            for candidate in candidates:
                result = one_run(candidate, serve, seconds=seconds, warmup=warmup)
                runs[candidate.name].append(result)
                print(f"  gateway round {round_number + 1} {candidate.name}: {result}", file=sys.stderr)
        if profile_dir is not None:
            binary = py_spy or Path(shutil.which("py-spy") or "py-spy")
            profile_dir.mkdir(parents=True, exist_ok=True)
            for candidate in candidates:
                output = profile_dir / f"gateway-{candidate.name}.txt"
                result = one_run(candidate, serve, seconds=seconds, warmup=warmup, profile=(binary, output))
                profiles[candidate.name] = {"run": result, "file": str(output), **summarize(output)}
    figures: dict[str, Any] = {
        "rate": rate,
        "rounds": rounds,
        "seconds_per_run": seconds,
        "warmup": warmup,
        "accounts": 2,
        "candidates": {c.name: str(c.src) for c in candidates},
        "runs": runs,
    }
    for name, results in runs.items():
        figures[name] = {key: median([r[key] for r in results]) for key in results[0]}
    if baseline_src is not None:
        ratios = [b["cpu_us_per_event"] / n["cpu_us_per_event"] for b, n in zip(*runs.values(), strict=True)]
        figures["cpu_baseline_over_now"] = round(median(ratios), 2)
        figures["cpu_ratios"] = [round(r, 2) for r in ratios]
    if profiles:
        figures["profiles"] = profiles
    return figures


# --- profiles ------------------------------------------------------------------------------------------


def summarize(raw: Path, top: int = 20) -> dict[str, Any]:
    """From py-spy's raw output (one `frame;frame;... count` line per stack, outermost first), per thread
    (the event loop, and the sink's writer: `_in_worker`): each function's own share of that thread's
    samples, and its share with what it calls (counted once per stack)."""
    own: dict[str, Counter[str]] = {"event loop": Counter(), "sink thread": Counter()}
    inclusive: dict[str, Counter[str]] = {"event loop": Counter(), "sink thread": Counter()}
    totals: Counter[str] = Counter()
    lines = raw.read_text().splitlines() if raw.exists() else []
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        thread = "sink thread" if _in_worker(stack) else "event loop"
        frames = [name for name in map(_function, stack.split(";")) if name]
        if not frames:
            continue
        totals[thread] += count
        own[thread][frames[-1]] += count
        for frame in set(frames):
            inclusive[thread][frame] += count
    summary: dict[str, Any] = {"samples": sum(totals.values())}
    for thread, total in totals.items():
        summary[thread] = {
            "samples": total,
            "own_pct": {name: round(n / total * 100, 1) for name, n in own[thread].most_common(top)},
            "inclusive_pct": {
                name: round(n / total * 100, 1) for name, n in inclusive[thread].most_common(top * 2)
            },
        }
    return summary


def _in_worker(stack: str) -> bool:
    """A stack of a thread other than the event loop's (the SQLite writer): it starts in `Thread._bootstrap`
    or, when py-spy could not unwind it all, runs a work item or the sink's own code."""
    outermost = stack.split(";", 1)[0]
    return (
        outermost.startswith("Thread._bootstrap")
        or "_WorkItem.run (" in stack
        or "/sinks/sqlite.py" in outermost
    )


def _function(frame: str) -> str:
    """`name (path/to/module.py:123)` -> `module.py:name`; a thread's or process's root frame -> ''."""
    name, _, where = frame.partition(" (")
    if not where:
        return ""
    path = where.rstrip(")").rsplit(":", 1)[0]
    marker = "/userstream/"
    module = path.split(marker, 1)[1] if marker in path else Path(path).name
    return f"{module}:{name}"


# --- the report ----------------------------------------------------------------------------------------


def markdown(figures: dict[str, Any]) -> str:
    lines = [
        f"## 7. The gateway: serve --simulate {figures['rate']:g} events/s -> gateway (2 accounts) -> SQLite "
        f"(median of {figures['rounds']} runs of {figures['seconds_per_run']:g} s)",
        "",
        "| gateway | stored events/s | CPU µs per stored event (event loop + SQLite thread, "
        "each its own median) "
        f"| events/s per core (target ≥ {TARGET_PER_CORE:,}) | gateway's share of a core | serve's share |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in figures["candidates"]:
        f = figures[name]
        per_core = f["events_per_s_per_core"]
        lines.append(
            f"| {name} | {f['events_per_s']:,.0f} | {f['cpu_us_per_event']:.1f} "
            f"({f['main_thread_us_per_event']:.1f} + {f['other_threads_us_per_event']:.1f}) "
            f"| {per_core:,.0f} ({'met' if per_core >= TARGET_PER_CORE else '**missed**'}) "
            f"| {f['cpu_share_pct']:.0f}% "
            f"| {f['serve_cpu_share_pct']:.0f}% |"
        )
    if "cpu_baseline_over_now" in figures:
        lines += [
            "",
            f"CPU per stored event, baseline / now: **{figures['cpu_baseline_over_now']:.2f}x** "
            f"(median of the rounds' ratios {figures['cpu_ratios']}; "
            f"baseline: {figures['candidates']['baseline']}).",
        ]
    for name, profile in figures.get("profiles", {}).items():
        run_figures = profile["run"]
        for thread, per_event in (
            ("event loop", run_figures["main_thread_us_per_event"]),
            ("sink thread", run_figures["other_threads_us_per_event"]),
        ):
            if thread not in profile:
                continue
            part = profile[thread]
            lines += [
                "",
                f"Where {name}'s {thread} spends its {per_event:.1f} µs per stored event (py-spy, "
                f"{part['samples']} samples; µs = the share of samples x the thread's CPU per event):",
                "",
                "| function | own | own µs | with callees | with callees µs |",
                "|---|---:|---:|---:|---:|",
            ]
            for function, share in part["own_pct"].items():
                with_callees = part["inclusive_pct"].get(function)
                lines.append(
                    f"| {function} | {share}% | {share * per_event / 100:.1f} | "
                    + (
                        f"{with_callees}% | {with_callees * per_event / 100:.1f} |"
                        if with_callees is not None
                        else "| |"
                    )
                )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", type=Path, help="src directory of the tree to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=6000.0, help="serve --simulate RATE (events/s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after the first stored row")
    parser.add_argument("--profile", type=Path, help="directory for py-spy's profiles (one extra run each)")
    parser.add_argument("--py-spy", type=Path, help="the py-spy binary (default: from PATH)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    figures = run(
        baseline_src=args.baseline_src,
        rounds=args.rounds,
        rate=args.rate,
        seconds=args.seconds,
        warmup=args.warmup,
        profile_dir=args.profile,
        py_spy=args.py_spy,
    )
    print(markdown(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
