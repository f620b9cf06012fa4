"""The Prometheus text format, written by hand: families, labels escaped, numbers as Prometheus reads them."""

from __future__ import annotations

from userstream.gateway.metrics import Exposition


def test_families_samples_escaping_and_numbers() -> None:
    out = Exposition()
    out.family(
        "events_total",
        "counter",
        "Events\nprocessed \\ by kind.",
        [({"account": 'a"b\\c\nd', "kind": "fill"}, 3), ({"account": "x", "kind": "order"}, True)],
    )
    out.family("lag_seconds", "gauge", "Lag.", [({}, 0.1234567), ({"a": "b"}, float("nan"))])
    out.family("empty", "gauge", "No samples yet.", [])
    assert out.text() == (
        "# HELP userstream_gateway_events_total Events\\nprocessed \\\\ by kind.\n"
        "# TYPE userstream_gateway_events_total counter\n"
        'userstream_gateway_events_total{account="a\\"b\\\\c\\nd",kind="fill"} 3\n'
        'userstream_gateway_events_total{account="x",kind="order"} 1\n'
        "# HELP userstream_gateway_lag_seconds Lag.\n"
        "# TYPE userstream_gateway_lag_seconds gauge\n"
        "userstream_gateway_lag_seconds 0.123457\n"
        'userstream_gateway_lag_seconds{a="b"} NaN\n'
        "# HELP userstream_gateway_empty No samples yet.\n"
        "# TYPE userstream_gateway_empty gauge\n"
    )
