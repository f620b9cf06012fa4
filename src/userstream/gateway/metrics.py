"""`/metrics`: the gateway's counters in the Prometheus text exposition format (version 0.0.4), by hand.

This module owns the metric names, their help texts and label sets, and the format itself (escaping,
numbers). It reads one `GatewaySnapshot` (snapshot.py) and writes text; it keeps no state, does no I/O and
knows nothing else of the gateway. Writing the format by hand keeps the project free of a metrics
dependency for a page of text; docs/gateway.md lists every metric.

Every name starts with `userstream_gateway_`. Per-account metrics carry `account` and `exchange` labels
(and `kind` for events); per-sink metrics a `sink` label (the sink's name, which never holds a password).
Counters of every account are written from the start at 0, so a rate() never misses its first increase.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

from userstream.gateway.account import EVENT_KINDS, ConnectionState
from userstream.gateway.snapshot import AccountView, GatewaySnapshot, SinkView

__all__ = ["CONTENT_TYPE", "PREFIX", "Exposition", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "userstream_gateway_"

Labels = Mapping[str, str]
Sample = tuple[Labels, float | int]


class Exposition:
    """Builds the text: one HELP and TYPE per family, then its samples."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        full = PREFIX + name
        self._lines.append(f"# HELP {full} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {full} {kind}")
        for labels, value in samples:
            self._lines.append(f"{full}{_labels(labels)} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def render_metrics(snapshot: GatewaySnapshot) -> str:
    """Every metric of the gateway at the moment of `snapshot`."""
    out = Exposition()
    accounts = snapshot.accounts

    def per_account(value: Callable[[AccountView], float | int | None]) -> list[Sample]:
        samples: list[Sample] = []
        for account in accounts:
            number = value(account)
            if number is not None:
                samples.append(({"account": account.name, "exchange": account.exchange.value}, number))
        return samples

    def stat(name: str) -> Callable[[AccountView], int]:
        return lambda account: 0 if account.stats is None else int(getattr(account.stats, name))

    out.family(
        "events_total",
        "counter",
        "Events processed (stream events, resync corrections and the fills derived from them).",
        (
            (
                {"account": account.name, "exchange": account.exchange.value, "kind": kind},
                account.events[kind],
            )
            for account in accounts
            for kind in EVENT_KINDS
        ),
    )
    out.family(
        "snapshot_events_total",
        "counter",
        "Events marked source=snapshot: corrections a resync emitted, and their fills.",
        per_account(lambda account: account.snapshot_events),
    )
    out.family(
        "account_up",
        "gauge",
        "1 while the account has a live connection.",
        per_account(lambda account: int(account.connection is ConnectionState.LIVE)),
    )
    out.family(
        "account_failed",
        "gauge",
        "1 once the account's stream stopped for good (rejected credentials, say).",
        per_account(lambda account: int(account.connection is ConnectionState.FAILED)),
    )
    out.family(
        "connections_total",
        "counter",
        "WebSocket connections opened.",
        per_account(stat("connections")),
    )
    out.family(
        "reconnects_total",
        "counter",
        "Reconnect attempts after a connection ended or an attempt failed.",
        per_account(lambda account: account.reconnects),
    )
    out.family(
        "disconnects_total",
        "counter",
        "Connections that ended unexpectedly.",
        per_account(lambda account: account.disconnects),
    )
    out.family(
        "keepalive_failures_total",
        "counter",
        "Bitmusa listenKey keepalives that failed (and were retried).",
        per_account(lambda account: account.keepalive_failures),
    )
    out.family(
        "snapshot_resyncs_total",
        "counter",
        "REST snapshot resyncs performed.",
        per_account(lambda account: account.resyncs),
    )
    out.family(
        "snapshot_resync_failures_total",
        "counter",
        "REST snapshot resyncs that failed.",
        per_account(lambda account: account.resync_failures),
    )
    out.family(
        "seconds_since_last_event",
        "gauge",
        "Seconds since the account's latest event arrived (absent before the first).",
        per_account(lambda account: account.seconds_since_last_event),
    )
    out.family(
        "event_lag_seconds",
        "gauge",
        "Arrival time minus event time of the latest event (clock skew included).",
        per_account(lambda account: account.lag),
    )
    out.family(
        "stream_queue_depth",
        "gauge",
        "Events waiting in the client's queue for the gateway, snapshot corrections included.",
        per_account(lambda account: account.backlog),
    )
    out.family(
        "stream_queue_bytes",
        "gauge",
        "What the events in the client's queue weigh, as its queue_bytes bound counts them.",
        per_account(stat("queued_bytes")),
    )
    out.family(
        "stream_dropped_total",
        "counter",
        "Events the client's queue discarded (overflow drop_oldest).",
        per_account(stat("dropped")),
    )
    out.family(
        "duplicates_suppressed_total",
        "counter",
        "Copies withheld during rotation overlaps.",
        per_account(stat("duplicates_suppressed")),
    )
    out.family(
        "unknown_frames_total",
        "counter",
        "Frames that were not understood (malformed ones included).",
        per_account(stat("unknown_frames")),
    )
    out.family(
        "malformed_frames_total",
        "counter",
        "Frames refused as broken: undecodable, or malformed (impossible values included).",
        per_account(stat("malformed_frames")),
    )

    sinks = snapshot.sinks

    def per_sink(kind: str, name: str, help_text: str, value: Callable[[SinkView], float | int]) -> None:
        out.family(name, kind, help_text, (({"sink": sink.name}, value(sink)) for sink in sinks))

    per_sink(
        "gauge",
        "sink_up",
        "1 while the sink writes (or retries under its thresholds); 0 when down or failed.",
        lambda sink: int(sink.healthy),
    )
    per_sink(
        "gauge",
        "sink_failing_seconds",
        "Seconds the batch being retried has been failing (0 while writes succeed).",
        lambda sink: sink.health.failing_for or 0.0,
    )
    per_sink("gauge", "sink_queue_depth", "Events accepted and not yet written.", lambda s: s.pending)
    per_sink("gauge", "sink_capacity", "The sink's buffer size in events.", lambda s: s.capacity)
    per_sink("counter", "sink_written_total", "Events the sink confirmed.", lambda s: s.written)
    per_sink(
        "counter",
        "sink_dropped_total",
        "Events dropped because the buffer was full (overflow drop_oldest).",
        lambda s: s.dropped,
    )
    per_sink("counter", "sink_retries_total", "Failed writes that were retried.", lambda s: s.retries)
    per_sink(
        "counter",
        "sink_abandoned_total",
        "Events accepted but never written (a fatal sink error, or a shutdown that timed out).",
        lambda s: s.abandoned,
    )
    per_sink(
        "counter",
        "sink_lost_total",
        "Events offered after the sink had failed for good.",
        lambda s: s.lost,
    )

    hub = snapshot.hub
    out.family("sse_subscribers", "gauge", "Live /events subscribers.", [({}, hub.subscribers)])
    out.family(
        "sse_queue_depth",
        "gauge",
        "Events waiting in the /events subscribers' buffers.",
        [({}, hub.buffered)],
    )
    out.family(
        "sse_dropped_subscribers_total",
        "counter",
        "/events subscribers cut off for falling too far behind.",
        [({}, hub.dropped_subscribers)],
    )
    out.family(
        "sse_stalled_subscribers_total",
        "counter",
        "/events readers disconnected because a write to them timed out (they read nothing).",
        [({}, hub.stalled_subscribers)],
    )
    out.family(
        "sse_refused_subscribers_total",
        "counter",
        "/events readers refused (503) beyond sse_max_subscribers.",
        [({}, hub.refused_subscribers)],
    )
    out.family("healthy", "gauge", "1 when /healthz answers 200.", [({}, int(snapshot.healthy))])
    return out.text()


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape_label(value)}"' for name, value in labels.items()) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float | int) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(round(value, 6))
