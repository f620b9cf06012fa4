#!/usr/bin/env bash
# Make sure `tmux` is on PATH (tests/test_demo_terminal.py runs the demo in it); see ensure-package.sh.
exec bash "$(dirname "$0")/ensure-package.sh" tmux tmux
