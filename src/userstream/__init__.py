"""userstream: trustworthy private user data streams for Bitmusa and Coinlocally."""

from userstream import sync
from userstream.client import StatusEvent, UserStream, connect, run
from userstream.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectionLostError,
    EndpointNotFoundError,
    ExchangeError,
    FrameDecodeError,
    ListenKeyInvalidError,
    LocalProtocolError,
    MessageShapeError,
    ProtocolError,
    RateLimitedError,
    RemoteProtocolError,
    TransportError,
    UserStreamError,
)
from userstream.events import (
    BalanceUpdate,
    Event,
    Exchange,
    Fill,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    Source,
)
from userstream.fills import FillTracker
from userstream.state import AccountSnapshot, AccountState

__all__ = [
    "AccountSnapshot",
    "AccountState",
    "AuthenticationError",
    "BalanceUpdate",
    "ConfigurationError",
    "ConnectionLostError",
    "EndpointNotFoundError",
    "Event",
    "Exchange",
    "ExchangeError",
    "Fill",
    "FillTracker",
    "FrameDecodeError",
    "ListenKeyInvalidError",
    "LocalProtocolError",
    "MessageShapeError",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "ProtocolError",
    "RateLimitedError",
    "RemoteProtocolError",
    "Side",
    "Source",
    "StatusEvent",
    "TransportError",
    "UserStream",
    "UserStreamError",
    "connect",
    "run",
    "sync",
]
__version__ = "0.1.0"
