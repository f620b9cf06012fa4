#!/usr/bin/env bash
# Make sure `redis-server` is on PATH: the redis sink's tests (and issue 8's multi-node tests) run against a
# real one. On Debian/Ubuntu it installs the distribution's package; anywhere else it says what to do and
# fails, so a missing server is never discovered later as a mysterious test error.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    echo "ensure-redis: found $(command -v redis-server) ($(redis-server --version | head -n 1))"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-redis: redis-server is not on PATH and apt-get is not available;" >&2
    echo "ensure-redis: install Redis (>= 6.2) with this system's package manager and re-run." >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "ensure-redis: redis-server is missing and installing it needs root (no sudo found);" >&2
        echo "ensure-redis: run as root: apt-get update && apt-get install -y redis-server" >&2
        exit 1
    fi
fi

echo "ensure-redis: redis-server not found; installing the Debian package"
echo "+ ${SUDO:+$SUDO }apt-get update"
$SUDO apt-get update -q
echo "+ ${SUDO:+$SUDO }apt-get install -y --no-install-recommends redis-server"
# The package's post-install may try to start a system service; where no init system runs (containers)
# that step fails harmlessly, and the tests start their own server anyway.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends redis-server

if ! command -v redis-server >/dev/null 2>&1; then
    echo "ensure-redis: apt-get finished but redis-server is still not on PATH" >&2
    exit 1
fi
echo "ensure-redis: installed $(command -v redis-server) ($(redis-server --version | head -n 1))"
