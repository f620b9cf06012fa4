"""`make demo`, piped, prints nothing but the events' JSON lines on stdout (README.md, docs/gateway.md).

It runs the real Makefile recipe in this checkout, as a user's shell would (no make of ours around it), so it
needs the checkout's `.venv`: CI's `make test` creates it before pytest runs; elsewhere the test is skipped
with the reason. The first run's set-up (the venv, pip) writes to stderr too; that path was checked by hand
with `make demo VENV=/tmp/pk` on a fresh venv (docs/gateway.md, "The demo").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_MAKE_VARIABLES = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")


def test_make_demo_piped_prints_only_json_lines() -> None:
    if not (ROOT / ".venv" / ".installed").exists():
        pytest.skip("this checkout has no .venv (`make setup` creates it; CI's `make test` does)")
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make on this machine")
    environ = {name: value for name, value in os.environ.items() if name not in _MAKE_VARIABLES}
    done = subprocess.run(  # noqa: S603 - make from PATH, the repository's own Makefile
        [make, "demo", "ARGS=--duration 2 --seed 3"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines, done.stderr
    events = [json.loads(line) for line in lines]  # the first line too: no echo of the recipe
    assert {event["kind"] for event in events} == {"balance", "order", "fill"}
    assert {event["account"] for event in events} == {"demo-bitmusa", "demo-coinlocally"}
    assert "userstream demo: gateway stopped" in done.stderr
