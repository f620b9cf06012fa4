"""`userstream gateway`: many accounts on both exchanges in one process, with sinks, HTTP and live events.

`config` reads and checks `gateway.toml`; `service` runs the accounts (`Gateway`); `http` serves the API
(`metrics` writes the Prometheus page, `sse` fans events out to live subscribers); `dashboard` renders a
terminal view of a running gateway; `command` is the CLI. docs/gateway.md is the reference.
"""

from userstream.gateway.config import AccountConfig, GatewayConfig, load_config, parse_config
from userstream.gateway.service import AccountRuntime, ConnectionState, Gateway

__all__ = [
    "AccountConfig",
    "AccountRuntime",
    "ConnectionState",
    "Gateway",
    "GatewayConfig",
    "load_config",
    "parse_config",
]
