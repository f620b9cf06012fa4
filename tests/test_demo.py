"""The main job, `make demo`, as a non-terminal run: a bounded run printing the JSON contract."""

import json
import subprocess
import sys

from userstream.eventjson import from_dict


def test_demo_prints_contract_jsonl_from_both_exchanges_and_stops() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "userstream.demo", "--duration", "1.5", "--rate", "40", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    events = [from_dict(json.loads(line)) for line in lines]
    assert {event.exchange.value for event in events} == {"bitmusa", "coinlocally"}
    assert {event.account for event in events} == {"demo"}
    assert "subscribed" in done.stderr
