#!/usr/bin/env bash
# Make sure `tmux` is on PATH: the demo's dashboard is tested as a person sees it, in a real terminal
# (tests/test_demo_terminal.py runs it in tmux at 80x24 and 160x50 and reads the screen). On
# Debian/Ubuntu it installs the distribution's package; anywhere else it says what to do and fails, so a
# missing tmux is never discovered later as a mysterious test error.
set -euo pipefail

if command -v tmux >/dev/null 2>&1; then
    echo "ensure-tmux: found $(command -v tmux) ($(tmux -V))"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-tmux: tmux is not on PATH and apt-get is not available;" >&2
    echo "ensure-tmux: install tmux (>= 3.0) with this system's package manager and re-run." >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "ensure-tmux: tmux is missing and installing it needs root (no sudo found);" >&2
        echo "ensure-tmux: run as root: apt-get update && apt-get install -y tmux" >&2
        exit 1
    fi
fi

echo "ensure-tmux: tmux not found; installing the Debian package"
echo "+ ${SUDO:+$SUDO }apt-get update"
$SUDO apt-get update -q
echo "+ ${SUDO:+$SUDO }apt-get install -y --no-install-recommends tmux"
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends tmux

if ! command -v tmux >/dev/null 2>&1; then
    echo "ensure-tmux: apt-get finished but tmux is still not on PATH" >&2
    exit 1
fi
echo "ensure-tmux: installed $(command -v tmux) ($(tmux -V))"
