#!/usr/bin/env bash
# Usage: ensure-package.sh CMD PKG
# Make sure the command CMD is on PATH, installing the Debian package PKG when it is missing. The tests run
# against real tools (redis-server for the Redis sink, tmux for the demo's terminal dashboard), so a missing
# one must be found here, never later as a mysterious test error. On Debian/Ubuntu it installs the
# distribution's package; anywhere else it says what to do and fails.
set -euo pipefail

if [ "$#" -ne 2 ]; then
    echo "usage: $0 CMD PKG  (install the Debian package PKG when the command CMD is missing)" >&2
    exit 2
fi
CMD="$1"
PKG="$2"
NAME="ensure-package($CMD)"

version() {
    # Most tools answer --version; tmux only -V.
    "$CMD" --version 2>/dev/null | head -n 1 || "$CMD" -V 2>/dev/null | head -n 1 || echo "version unknown"
}

if command -v "$CMD" >/dev/null 2>&1; then
    echo "$NAME: found $(command -v "$CMD") ($(version))"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "$NAME: $CMD is not on PATH and apt-get is not available;" >&2
    echo "$NAME: install $PKG with this system's package manager and re-run." >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "$NAME: $CMD is missing and installing it needs root (no sudo found);" >&2
        echo "$NAME: run as root: apt-get update && apt-get install -y $PKG" >&2
        exit 1
    fi
fi

echo "$NAME: $CMD not found; installing the Debian package $PKG"
echo "+ ${SUDO:+$SUDO }apt-get update"
$SUDO apt-get update -q
echo "+ ${SUDO:+$SUDO }apt-get install -y --no-install-recommends $PKG"
# A package's post-install may try to start a system service (redis-server does); where no init system runs
# (containers) that step fails harmlessly, and the tests start their own server anyway.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "$PKG"

if ! command -v "$CMD" >/dev/null 2>&1; then
    echo "$NAME: apt-get finished but $CMD is still not on PATH" >&2
    exit 1
fi
echo "$NAME: installed $(command -v "$CMD") ($(version))"
