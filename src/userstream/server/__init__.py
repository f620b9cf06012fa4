"""The exchange side, `userstream serve`: both documented user-data-stream services in one process.

`create_app(config)` is the aiohttp application factory; `running_server(config)` runs it in-process and
yields a `ServerHandle` (URLs, ingest, fault controls) for tests and programs; `load_accounts` reads the
accounts file. docs/server.md is the contract: routes, error shapes, close codes and flags.
"""

from userstream.server.app import create_app
from userstream.server.config import Account, ServerConfig, demo_account, load_accounts
from userstream.server.ingest import IngestError
from userstream.server.run import LedgerNotKeptError, ServerHandle, running_server
from userstream.server.simulator import Ledger

__all__ = [
    "Account",
    "IngestError",
    "Ledger",
    "LedgerNotKeptError",
    "ServerConfig",
    "ServerHandle",
    "create_app",
    "demo_account",
    "load_accounts",
    "running_server",
]
