"""Structured logs: one JSON object per line, and listenKeys cut to a prefix wherever a path is logged."""

from __future__ import annotations

import json
import logging

from userstream.logs import JsonFormatter, log_event, redact, safe_path


def test_a_record_is_one_json_line_with_its_fields() -> None:
    logger = logging.getLogger("userstream.test.logs")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        log_event(logger, logging.INFO, "stream opened", account="alice", count=3)
        log_event(logger, logging.DEBUG, "not emitted", account="alice")
    finally:
        logger.removeHandler(handler)
    (record,) = records
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry.pop("time").endswith("+00:00")
    assert entry == {
        "level": "info",
        "logger": "userstream.test.logs",
        "message": "stream opened",
        "account": "alice",
        "count": 3,
    }


def test_safe_path_redacts_a_listen_key_and_nothing_else() -> None:
    key = "cAUzPhRQYWX1a2cE528PeAgtErBE96QWP5HpwFMSEzUC"
    assert safe_path(f"/ws/spot/{key}") == "/ws/spot/cAUzPh..."
    assert safe_path("/spot/userDataStream") == "/spot/userDataStream"
    assert safe_path("/spotws_user/userData/ws") == "/spotws_user/userData/ws"


def test_redact_keeps_six_characters() -> None:
    assert redact("cAUzPhRQYWX1a2cE528PeAgtErBE96QWP5HpwFMSEzUC") == "cAUzPh..."
