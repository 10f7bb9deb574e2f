"""Quarantine: a copy with the reason in headers, counted, logged once; failures are LogErrors."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from aiokafka.errors import NotLeaderForPartitionError

from jobwire.errors import InvalidEvent, LogError, Violation
from jobwire.kafka.quarantine import Quarantine
from jobwire.positions import Position
from jobwire.records import LogRecord
from tests.support.poison import invalid_count


class Producer:
    def __init__(self, fail: Exception | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self._fail = fail

    async def send_and_wait(self, topic: str, value: bytes | None, *, key: bytes | None, headers: Any) -> None:
        if self._fail is not None:
            raise self._fail
        self.sent.append({"topic": topic, "value": value, "key": key, "headers": dict(headers)})


@pytest.fixture
def topic() -> str:
    return f"t{uuid.uuid4().hex[:8]}.webhooks.retry.5s"


async def test_put_raw_copies_with_headers_counts_and_logs(topic: str, caplog: pytest.LogCaptureFixture) -> None:
    producer = Producer()
    quarantine = Quarantine(producer, topic, f"{topic}.invalid")  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        await quarantine.put_raw(b"ep_1", b"{oops", Position(2, 41), "not JSON\nat all" + "x" * 5000)
    (copy,) = producer.sent
    assert copy["topic"] == f"{topic}.invalid" and copy["key"] == b"ep_1" and copy["value"] == b"{oops"
    assert copy["headers"]["jobwire-source-topic"] == topic.encode()
    assert copy["headers"]["jobwire-source-position"] == b"2:41"
    assert copy["headers"]["jobwire-error"].startswith(b"not JSON\nat all") and len(copy["headers"]["jobwire-error"]) == 2000
    assert invalid_count(topic) == 1
    (line,) = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
    assert f"topic={topic}" in line and "position=2:41" in line and "\n" not in line and len(line) < 400


async def test_put_takes_the_reason_from_the_record(topic: str) -> None:
    producer = Producer()
    quarantine = Quarantine(producer, topic, f"{topic}.invalid")  # type: ignore[arg-type]
    invalid = InvalidEvent([Violation("/time", "not a real time")])
    await quarantine.put(LogRecord(Position(0, 7), b"job_1", b"{}", None, invalid))
    assert producer.sent[0]["headers"]["jobwire-error"] == b"/time: not a real time"


async def test_a_copy_that_cannot_be_written_is_a_log_error(topic: str) -> None:
    quarantine = Quarantine(Producer(fail=NotLeaderForPartitionError()), topic, f"{topic}.invalid")  # type: ignore[arg-type]
    with pytest.raises(LogError, match="quarantining") as caught:
        await quarantine.put_raw(None, None, Position(0, 1), "tombstone")
    assert caught.value.retriable, "as retriable as the cause"
    assert invalid_count(topic) == 0, "counted once written"


def test_swapped_topics_are_refused() -> None:
    with pytest.raises(ValueError):
        Quarantine(Producer(), "jobs.events.invalid", "jobs.events")  # type: ignore[arg-type]


async def test_a_record_near_the_limit_is_copied_truncated_with_its_size_and_hash(topic: str) -> None:
    """The copy adds headers: a value of 1 MiB less a little, with large headers of its own,
    would be over the producer's limit, and quarantining it would fail the consumer."""
    import hashlib

    from jobwire.kafka.quarantine import COPY_LIMIT_BYTES

    producer = Producer()
    quarantine = Quarantine(producer, topic, f"{topic}.invalid")  # type: ignore[arg-type]
    value = b"v" * (1024 * 1024 - 100)
    original_headers = tuple((f"h{i}", b"x" * 4000) for i in range(20))
    await quarantine.put_raw(b"job_1", value, Position(0, 3), "too big", original_headers)
    (copy,) = producer.sent
    size = len(copy["value"]) + len(copy["key"]) + sum(len(n) + len(v) for n, v in copy["headers"].items())
    assert size <= COPY_LIMIT_BYTES
    assert value.startswith(copy["value"]) and len(copy["value"]) > 900 * 1024
    assert copy["headers"]["jobwire-original-size"] == str(len(value)).encode()
    assert copy["headers"]["jobwire-original-sha256"] == hashlib.sha256(value).hexdigest().encode()


async def test_a_small_record_is_copied_whole_without_size_headers(topic: str) -> None:
    producer = Producer()
    quarantine = Quarantine(producer, topic, f"{topic}.invalid")  # type: ignore[arg-type]
    await quarantine.put_raw(b"k", b"small", Position(0, 1), "bad", (("trace", b"1"),))
    (copy,) = producer.sent
    assert copy["value"] == b"small" and copy["headers"]["trace"] == b"1"
    assert "jobwire-original-size" not in copy["headers"]
