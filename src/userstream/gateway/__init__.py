"""`userstream gateway`: many accounts on both exchanges in one process, with sinks, HTTP and live events.

`config` reads and checks `gateway.toml`; `app` is the composition root (`Gateway`: the service and the
HTTP API beside it); `service` supervises the accounts (`account`: one account's runtime and its one
picture; `streams`: its `UserStream`; `sink_handles`: the sinks); `snapshot` is the immutable
`GatewaySnapshot` every reader shows; `http` serves the API from it (`metrics` writes the Prometheus page,
`sse` fans events out to live subscribers); `dashboard` redraws a terminal view of it (`dashboard_layout`
lays a frame out); `cluster` and `leases` share accounts between instances; `command` is the CLI.
docs/gateway.md is the reference.
"""

from userstream.gateway.account import AccountRuntime, ConnectionState
from userstream.gateway.app import Gateway
from userstream.gateway.config import AccountConfig, GatewayConfig, load_config, parse_config
from userstream.gateway.snapshot import GatewaySnapshot

__all__ = [
    "AccountConfig",
    "AccountRuntime",
    "ConnectionState",
    "Gateway",
    "GatewayConfig",
    "GatewaySnapshot",
    "load_config",
    "parse_config",
]
