"""`serve --redis URL`: the listenKey store and the fan-out of one node kept in Redis, shared by every node.

`backend.py` holds `RedisBackend` and lists the module of each job; docs/scaling.md explains the design.
Imported only when a config asks for Redis (redis-py is the optional `userstream[redis]`).
"""
