"""Log lines: one per event, whatever the values logged hold."""

from __future__ import annotations

import logging
import sys

import pytest
from starlette.testclient import TestClient

from jobwire.api.app import create_app
from jobwire.config import load_settings
from jobwire.logging_setup import OneLineFormatter
from tests.support.memlog import memory_components

FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def formatted(message: str, *args: object, exc_info: object = None) -> str:
    record = logging.LogRecord("jobwire.test", logging.INFO, __file__, 1, message, args, exc_info)  # type: ignore[arg-type]
    return OneLineFormatter(FORMAT).format(record)


def test_no_value_can_end_a_line_or_start_one() -> None:
    line = formatted("request path=%s reason=%s", "/\nts=0 level=ERROR logger=forged", "bell\x07 cr\r tab\t del\x7f")
    assert "\n" not in line and "\r" not in line and "\x07" not in line and "\x7f" not in line
    assert line.endswith(r"path=/\nts=0 level=ERROR logger=forged reason=bell\x07 cr\r tab\t del\x7f")
    assert line.count("level=") == 2 and line.index("level=INFO") < line.index(r"\nts=0")


def test_a_traceback_stays_on_its_events_line() -> None:
    try:
        raise ValueError("first\nsecond")
    except ValueError:
        line = formatted("store write failed topic=%s", "jobs.events", exc_info=sys.exc_info())
    assert "\n" not in line and r"Traceback (most recent call last):\n" in line and r"first\nsecond" in line


def test_the_access_log_writes_the_path_as_sent(caplog: pytest.LogCaptureFixture) -> None:
    parts, _, _ = memory_components()
    settings = load_settings({"JOBWIRE_API_KEYS": "acme:key_acme_0123456789"})
    with TestClient(create_app(settings, parts)) as client, caplog.at_level(logging.INFO, "jobwire.api.app"):
        client.get("/v1/jobs/%0Ats=0%20level=ERROR%20x=%E2%82%AC")
    [message] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("request ")]
    assert message.startswith("request method=GET path=/v1/jobs/%0Ats=0%20level=ERROR%20x=%E2%82%AC status=")
    assert " level=" not in message, "a space decoded from the path would start a field of the client's choosing"
