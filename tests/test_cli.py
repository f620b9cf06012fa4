"""The `userstream` command itself: `--version`, and `demo` as one of its subcommands."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import userstream
from userstream.cli import version

ROOT = Path(__file__).resolve().parents[1]


def _run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this interpreter, arguments of the test's own
        [sys.executable, "-m", "userstream", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_version_prints_the_distributions_version_and_exits_0() -> None:
    done = _run("--version")
    assert (done.returncode, done.stderr) == (0, "")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert done.stdout == f"userstream {declared}\n"
    assert version() == importlib.metadata.version("userstream") == userstream.__version__ == declared


def test_the_demo_is_a_subcommand_that_names_itself_so() -> None:
    done = _run("demo", "--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: userstream demo [-h] [--format {dashboard,jsonl}]")
    module = subprocess.run(
        [sys.executable, "-m", "userstream.demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert module.stdout == done.stdout  # `python -m userstream.demo` is the same command, same name
    bad = _run("demo", "--rate", "fast")
    assert bad.returncode == 2
    assert (
        bad.stderr.splitlines()[-1] == "userstream demo: error: argument --rate: invalid float value: 'fast'"
    )


def test_userstream_demo_streams_json_lines_and_names_itself_in_its_messages(tmp_path: Path) -> None:
    done = subprocess.run(  # noqa: S603 - this interpreter, arguments of the test's own
        [sys.executable, "-m", "userstream", "demo", "--duration", "2", "--seed", "3",
         "--sink", "sqlite:d.db", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    kinds = {json.loads(line)["kind"] for line in done.stdout.splitlines()}
    assert kinds == {"balance", "order", "fill"}
    assert done.stderr.splitlines()[0].startswith("userstream demo: emulator on http://127.0.0.1:")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]  # nothing in the working directory
    assert (tmp_path / "data" / "d.db").stat().st_size > 0
