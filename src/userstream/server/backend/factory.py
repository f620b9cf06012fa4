"""`make_backend(config, node)`: the backend a `ServerConfig` asks for.

Redis when `redis_url` is set, else the in-memory default. The Redis backend is imported only when asked
for: redis-py is an optional dependency (`userstream[redis]`).
"""

from __future__ import annotations

from userstream.errors import ConfigurationError
from userstream.server.backend.interface import Backend, Node
from userstream.server.backend.memory import MemoryBackend
from userstream.server.config import ServerConfig

__all__ = ["make_backend"]


def make_backend(config: ServerConfig, node: Node) -> Backend:
    """The backend `config` asks for: Redis when `redis_url` is set, else the in-memory default."""
    if config.redis_url is None:
        return MemoryBackend(config.listen_key_ttl, node)
    try:
        from userstream.server.backend.redis.backend import RedisBackend  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if exc.name != "redis":
            raise
        raise ConfigurationError("--redis needs redis-py: pip install 'userstream[redis]'") from None
    return RedisBackend(config, node)
