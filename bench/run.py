"""userstream's benchmarks (issue 6): throughput, latency, serve fan-out, memory, reconnect, the peers and the
gateway into SQLite, in one run.

This script owns the run: which sections, with what sizes, the markdown report and the results file
bench/results/<name>.json (the machine, the versions, every figure, every run). Each figure is the median of
at least 3 runs, and every comparison is made inside one run: clients are measured round-robin against the
same server. Servers always run in their own processes (started with "spawn"), so a measured client never
shares its interpreter with a server's Python; on a 2-core machine the server and the client each get a
core. The sections and what each measures are described in their modules and in docs/performance.md.

Run: .venv/bin/python bench/run.py   (about 14 minutes on 2 cores; --quick for a smoke run of ~2 minutes;
--sections throughput,latency to run some; --name NAME to write bench/results/NAME.json; --baseline-src
PATH to measure the gateway of another tree's src beside this one's, alternating)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import fanout
import gateway
import latency
import memory
import micro
import peers
import pusher
import reconnect
import serve_child
import sink_batches
import throughput
import wire
from common import RESULTS_DIR, child, machine, raise_fd_limit

SECTIONS = ("micro", "throughput", "latency", "fanout", "memory", "reconnect", "peers", "gateway")

#: issue 6's targets, checked in the report
TARGETS = {
    "userstream/hand-written": {"bitmusa": 3.0, "coinlocally": 1.8},
    "userstream/limit": {"bitmusa": 0.5, "coinlocally": 0.7},
    "fanout_p99_ms_at_100": 5.0,
    "serve_kib_per_connection": 20.0,
    "client_cpu_share_pct": 5.0,
    "gateway_events_per_s_per_core": gateway.TARGET_PER_CORE,  # issue 14
}

FULL = {
    "micro_runs": 7,
    "throughput_events": 60_000,
    "throughput_runs": 7,
    "latency_seconds": 4.0,
    "latency_runs": 3,
    "fanout_sizes": [1, 100, 1000],
    "fanout_events": 20_000,
    "fanout_runs": 3,
    "fanout_seconds": 3.0,
    "serve_connections": 10_000,
    "serve_first": 1_000,
    "serve_per_account": 100,
    "serve_runs": 3,
    "client_streams": 1000,
    "client_window": 30.0,
    "client_windows": 3,
    "reconnect_runs": 5,
    "peers_events": 30_000,
    "peers_runs": 5,
    "peers_seconds": 3.0,
    "gateway_rounds": 3,
    "gateway_rate": 6000.0,
    "gateway_seconds": 10.0,
    "gateway_warmup": 3.0,
    "sink_batch_sizes": (1, 10, 50, 500),
}
QUICK = FULL | {
    "micro_runs": 3,
    "throughput_events": 5_000,
    "throughput_runs": 3,
    "latency_seconds": 0.5,
    "fanout_sizes": [1, 10],
    "fanout_events": 2_000,
    "fanout_seconds": 0.5,
    "serve_connections": 400,
    "serve_first": 100,
    "serve_per_account": 100,
    "serve_runs": 3,
    "client_streams": 50,
    "client_window": 2.0,
    "reconnect_runs": 3,
    "peers_events": 2_000,
    "peers_runs": 1,
    "peers_seconds": 0.5,
    "gateway_rounds": 1,
    "gateway_seconds": 2.0,
    "gateway_warmup": 1.0,
    "sink_batch_sizes": (10, 500),
}


def run_sections(
    sections: list[str], sizes: dict[str, Any], baseline_src: Path | None = None
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    pools = {exchange: wire.pool(exchange) for exchange in ("bitmusa", "coinlocally")}
    results["frames"] = wire.check_pools(pools)
    per_frame = {exchange: described["events_per_frame"] for exchange, described in results["frames"].items()}
    if "micro" in sections:
        results["micro"] = _timed(micro.run, sizes["micro_runs"])
    if "throughput" in sections or "latency" in sections:
        with child(pusher.main) as push:
            if "throughput" in sections:
                results["throughput"] = _timed(
                    throughput.run, push, sizes["throughput_events"], sizes["throughput_runs"]
                )
            if "latency" in sections:
                results["latency"] = _timed(
                    latency.run,
                    push,
                    events_per_frame=per_frame,
                    seconds=sizes["latency_seconds"],
                    runs=sizes["latency_runs"],
                )
    if "fanout" in sections:
        with child(serve_child.main, accounts=max(sizes["fanout_sizes"])) as serve:
            results["fanout"] = _timed(
                fanout.run,
                serve,
                sizes=sizes["fanout_sizes"],
                events=sizes["fanout_events"],
                runs=sizes["fanout_runs"],
                rate=1000.0,
                seconds=sizes["fanout_seconds"],
            )
    if "memory" in sections:
        results["memory"] = {
            "serve": _timed(
                memory.serve_idle,
                sizes["serve_connections"],
                sizes["serve_first"],
                sizes["serve_per_account"],
                sizes["serve_runs"],
            ),
            "client": _timed(
                memory.client_idle, sizes["client_streams"], sizes["client_window"], sizes["client_windows"]
            ),
        }
    if "reconnect" in sections:
        results["reconnect"] = _timed(reconnect.run, sizes["reconnect_runs"])
    if "peers" in sections:
        results["peers"] = _timed(
            peers.run, sizes["peers_events"], sizes["peers_runs"], sizes["peers_seconds"]
        )
    if "gateway" in sections:
        results["gateway"] = _timed(
            gateway.run,
            baseline_src=baseline_src,
            rounds=sizes["gateway_rounds"],
            rate=sizes["gateway_rate"],
            seconds=sizes["gateway_seconds"],
            warmup=sizes["gateway_warmup"],
        )
        results["sink_batches"] = _timed(
            sink_batches.run,
            baseline_src=baseline_src,
            sizes=sizes["sink_batch_sizes"],
            rounds=sizes["gateway_rounds"],
        )
    return results


def _timed(function: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    started = time.perf_counter()
    result: dict[str, Any] = function(*args, **kwargs)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(f"  {function.__module__}.{function.__name__}: {result['seconds']} s", file=sys.stderr)
    return result


# --- the report ------------------------------------------------------------------------------------------


def _mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"# userstream benchmarks, {m['date']}",
        "",
        f"{m['cpu']}, {m['cpu_count']} cores, {m['memory_gib']} GiB, {m['platform']}, CPython {m['python']}, "
        f"{m['event_loop']}; commit {m['git_commit']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
        + ". Every figure is a median of the runs stated; compare rows, not machines.",
        "",
    ]
    frames = results.get("frames", {})
    if frames:
        lines.append(
            "Frames: "
            + "; ".join(
                f"{ex} {d['kind']}, median {d['bytes_median']} B "
                f"(p10 {d['bytes_p10']}, p90 {d['bytes_p90']}), "
                f"{d['events_per_frame']} events/frame, {d['frames']} distinct"
                for ex, d in frames.items()
            )
            + ".\n"
        )
    mc = results.get("micro")
    if mc:
        lines += [
            "## 0. Hot-path functions, before → after "
            f"(ns per call, median of {mc['runs']} interleaved passes)",
            "",
            "| function | before | after | speed-up |",
            "|---|---:|---:|---:|",
        ]
        for name, f in mc.items():
            if isinstance(f, dict) and "before_ns" in f:
                lines.append(
                    f"| {name} | {f['before_ns']:,.0f} | {f['after_ns']:,.0f} | {f['speedup']:.1f}x |"
                )
        ssl_cost = mc["ssl context per stream"]
        parse = mc["parse one frame, now (ns)"]
        lines += [
            "",
            f"One verifying SSL context (what every stream built before it was shared): "
            f"{ssl_cost['ms_per_context']} ms. Parsing one frame now: Bitmusa {parse['bitmusa']:,.0f} ns, "
            f"Coinlocally {parse['coinlocally']:,.0f} ns.",
            "",
        ]
    tp = results.get("throughput")
    if tp:
        lines += [
            f"## 1. Client throughput (events/s, median of {tp['runs']} runs "
            f"of {tp['events_per_run']:,} events)",
            "",
            "| exchange | userstream | limit | hand-written | userstream / hand-written | userstream / limit "
            "| CPU µs/event: userstream | limit | hand-written |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for exchange, f in tp["exchanges"].items():
            r = f["ratios"]
            vs_hand, vs_limit = r["userstream/hand-written"], r["userstream/limit"]
            hand_target = TARGETS["userstream/hand-written"][exchange]
            limit_target = TARGETS["userstream/limit"][exchange]
            lines.append(
                f"| {exchange} | {f['userstream']['events_per_s']:,} | {f['limit']['events_per_s']:,} | "
                f"{f['hand-written']['events_per_s']:,} | {vs_hand:.2f} (≥ {hand_target}: "
                f"{_mark(vs_hand >= hand_target)}) | {vs_limit:.2f} (≥ {limit_target}: "
                f"{_mark(vs_limit >= limit_target)}) | {f['userstream']['cpu_us_per_event']:.2f} | "
                f"{f['limit']['cpu_us_per_event']:.2f} | {f['hand-written']['cpu_us_per_event']:.2f} |"
            )
        lines.append("")
    lat = results.get("latency")
    if lat:
        lines += [
            f"## 2. Latency at {lat['events_per_s']:,.0f} events/s, server write → consumer (µs, median of "
            f"{lat['runs']} runs of {lat['seconds_per_run']:g} s)",
            "",
            "| exchange | client | p50 | p99 | p99.9 | max |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for exchange, by_client in lat["exchanges"].items():
            for name, f in by_client.items():
                lines.append(
                    f"| {exchange} | {name} | {f['p50_us']:,.0f} | {f['p99_us']:,.0f} | "
                    f"{f['p999_us']:,.0f} | "
                    f"{f['max_us']:,.0f} |"
                )
        lines.append("")
    fo = results.get("fanout")
    if fo:
        lines += [
            f"## 3. serve fan-out: ingest → delivery (median of {fo['runs']} runs; latency at "
            f"{fo['latency_events_per_s']:,.0f} events/s spread over the connections, one event per POST)",
            "",
            "| exchange | connections | events/s (batches of "
            f"{fo['batch']}) | server CPU µs/event | p50 ms | p99 ms | p99.9 ms |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for exchange, by_size in fo["exchanges"].items():
            for size, f in by_size.items():
                target = ""
                if size == "100":
                    target = f" (≤ {TARGETS['fanout_p99_ms_at_100']}: {_mark(f['p99_ms'] <= 5.0)})"
                lines.append(
                    f"| {exchange} | {int(size):,} | {f['events_per_s']:,} | "
                    f"{f['server_cpu_us_per_event']} | "
                    f"{f['p50_ms']:.2f} | {f['p99_ms']:.2f}{target} | {f['p999_ms']:.2f} |"
                )
        lines.append("")
    mem = results.get("memory")
    if mem:
        serve = mem["serve"]
        lines += [
            f"## 4. Memory and idle cost (median of {serve['runs']} runs)",
            "",
            f"serve, {serve['connections']:,} idle connections ({serve['per_account']} per account):",
            "",
            "| dialect | RSS before | RSS at "
            f"{serve['first']:,} | RSS at {serve['connections']:,} | KiB/connection, marginal "
            "| KiB/connection, whole |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for exchange in ("bitmusa", "coinlocally"):
            f = serve[exchange]
            target = TARGETS["serve_kib_per_connection"]
            lines.append(
                f"| {exchange} | {f['rss_before_mib']:.1f} MiB | {f['rss_at_first_mib']:.1f} MiB | "
                f"{f['rss_at_total_mib']:.1f} MiB | {f['kib_per_connection_marginal']:.1f} (≤ {target:g}: "
                f"{_mark(f['kib_per_connection_marginal'] <= target)}) | "
                f"{f['kib_per_connection_total']:.1f} |"
            )
        c = mem["client"]
        share_target = TARGETS["client_cpu_share_pct"]
        lines += [
            "",
            f"client, {c['streams']:,} idle Coinlocally streams in one process (pinging every 30 s): "
            f"RSS {c['rss_before_mib']} → {c['rss_after_mib']} MiB, "
            f"**{c['kib_per_stream']} KiB per stream**; "
            f"CPU **{c['cpu_share_of_one_core_pct']}% of one core** (< {share_target:g}%: "
            f"{_mark(c['cpu_share_of_one_core_pct'] < share_target)}; median of {c['windows']} windows of "
            f"{c['window_seconds']:g} s: {c['runs_cpu_share_pct']}; "
            f"{c['pings_sent_in_windows']} pings sent).",
            "",
        ]
    rc = results.get("reconnect")
    if rc:
        lines += [
            f"## 5. Reconnect: drop → first event on the new connection (ms, median of {rc['runs']} runs)",
            "",
            "| exchange | backoff draw pinned to 0 (the client's own work) "
            "| default backoff (jitter in [0, 1 s]) |",
            "|---|---:|---:|",
        ]
        for exchange, f in rc["exchanges"].items():
            lines.append(f"| {exchange} | {f['backoff_draw_0_ms']:.1f} | {f['default_backoff_ms']:,.0f} |")
        lines.append("")
    if results.get("peers"):
        lines.append(peers.markdown(results["peers"]).replace("## The peers", "## 6. The peers", 1))
    if results.get("gateway"):
        lines.append(gateway.markdown(results["gateway"]))
    if results.get("sink_batches"):
        lines.append(sink_batches.markdown(results["sink_batches"]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that everything runs")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS)
    )
    parser.add_argument("--name", default="userstream", help="results file: bench/results/NAME.json")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="the gateway section also measures this src directory (another tree's), alternating",
    )
    args = parser.parse_args()
    sections = [name for name in args.sections.split(",") if name]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    fd_limit = raise_fd_limit()
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": machine(),
        "sizes": sizes,
        "quick": args.quick,
        "fd_limit": fd_limit,
    }
    results |= run_sections(sections, sizes, args.baseline_src)
    results["seconds"] = round(time.perf_counter() - started, 1)
    print(markdown(results))
    print(f"({results['seconds']} s)")
    output = RESULTS_DIR / f"{args.name}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {Path(output).relative_to(Path.cwd()) if output.is_relative_to(Path.cwd()) else output}")


if __name__ == "__main__":
    main()
