"""The seam between one `serve` node and what several nodes must share: the listenKey store and the fan-out.

A backend owns the two things an exchange keeps beyond one process: which listenKey each account holds and
until when, and the fan-out of published events (every event reaches every live stream of its account, on
every node, once, in publish order). The package holds one module per job:

    interface.py   `Backend` (what the server asks of a backend), `Node` (what a backend asks of its
                   server: deliver a batch, close a key's streams, close every stream) and
                   `BackendUnavailableError`
    factory.py     `make_backend(config, node)`: Redis when `redis_url` is set, else memory
    memory.py      `MemoryBackend`: the single process as it always was
    redis/         `RedisBackend`: both kept in Redis, so N nodes behind a load balancer behave as one
                   (docs/scaling.md), split into its layout and scripts, listenKeys, fan-out reader,
                   publisher and health check

A backend calls back into its node through `Node` and never touches a connection itself. This package
imports nothing of the server but `ServerConfig` and the rendered batch (render.py).
"""
