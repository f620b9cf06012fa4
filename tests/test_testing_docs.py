"""docs/testing.md works literally: its bot is examples/bot.py, and its test passes as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "testing.md"
BOT = ROOT / "examples" / "bot.py"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_doc_shows_the_example_bot_verbatim() -> None:
    (bot_block,) = [block for block in python_blocks() if block.startswith("class Bot")]
    assert bot_block in BOT.read_text()
    assert BOT.read_text().endswith(bot_block)  # the whole class, up to the end of the file


def test_the_doc_example_test_passes_as_written(tmp_path: Path) -> None:
    (example,) = [block for block in python_blocks() if "def test_" in block and "from bot import" in block]
    (tmp_path / "test_bot_example.py").write_text(example)
    paths = [str(ROOT / "examples"), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}
    command = [sys.executable, "-m", "pytest", "-v", "-W", "error", "-p", "no:cacheprovider",
               "-p", "userstream.pytest_plugin", "-o", "asyncio_mode=auto",
               "-o", "asyncio_default_fixture_loop_scope=function", "--rootdir", str(tmp_path),
               str(tmp_path / "test_bot_example.py")]  # fmt: skip
    result = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    passed = sorted(re.findall(r"::(\S+) PASSED", result.stdout))
    assert passed == [
        "test_bot_cancels_while_the_stream_is_down[bitmusa]",
        "test_bot_cancels_while_the_stream_is_down[coinlocally]",
        "test_bot_reads_prices_written_as_strings",
    ]
