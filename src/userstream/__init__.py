"""userstream: trustworthy private user data streams for Bitmusa and Coinlocally."""

from userstream.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectionLostError,
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
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
)

__all__ = [
    "AuthenticationError",
    "BalanceUpdate",
    "ConfigurationError",
    "ConnectionLostError",
    "Event",
    "Exchange",
    "ExchangeError",
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
    "TransportError",
    "UserStreamError",
]
__version__ = "0.1.0"
