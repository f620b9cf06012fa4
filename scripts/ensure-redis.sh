#!/usr/bin/env bash
# Make sure `redis-server` is on PATH (the Redis sink's tests run against a real one); see ensure-package.sh.
exec bash "$(dirname "$0")/ensure-package.sh" redis-server redis-server
