"""The delivery log survives any record of webhooks.attempts; a bad one changes nothing."""

from __future__ import annotations

import logging
import uuid

import orjson
import pytest

from jobwire.api.deliverylog import DeliveryLog
from jobwire.api.store import Store
from tests.support.poison import attempt_document, consumer_record, invalid_count, poison_attempts


def rows(deliveries: DeliveryLog) -> tuple[list[object], list[object]]:
    db = deliveries.store.db
    return (db.execute("SELECT * FROM deliveries ORDER BY id").fetchall(),
            db.execute("SELECT * FROM attempts ORDER BY delivery_id, log_offset").fetchall())


@pytest.fixture
def topic() -> str:
    return f"t{uuid.uuid4().hex[:8]}.webhooks.attempts"


def test_malformed_attempts_are_skipped_before_they_change_anything(topic: str, caplog: pytest.LogCaptureFixture) -> None:
    deliveries = DeliveryLog(Store(None))
    deliveries.apply_attempt(consumer_record(topic, 0, orjson.dumps(attempt_document("msg_a", "ep_1"))))
    before = rows(deliveries)
    poison = poison_attempts("msg_a", "ep_1")
    with caplog.at_level(logging.WARNING):
        for offset, (what, value) in enumerate(poison.items(), start=1):
            deliveries.apply_attempt(consumer_record(topic, offset, value))
            assert rows(deliveries) == before, what
    assert invalid_count(topic) == len(poison)
    lines = [r.getMessage() for r in caplog.records if "invalid record skipped" in r.getMessage()]
    assert len(lines) == len(poison)
    # The next sound attempt applies, and reads of the log still work.
    failed = attempt_document("msg_a", "ep_1", attempt=2, outcome="failed", at="2026-11-23T10:00:02.000Z",
                              dead_letter={"id": "msg_a", "endpoint_id": "ep_1", "tenant": "acme",
                                           "event_type": "task.completed", "event_id": "evt_1", "job_id": "job_1",
                                           "body": {"type": "task.completed"}, "created_at": "2026-11-23T10:00:00.000Z",
                                           "attempts": 2})
    deliveries.apply_attempt(consumer_record(topic, len(poison) + 1, orjson.dumps(failed)))
    view = deliveries.get("acme", "msg_a")
    assert view is not None and view.status == "failed" and len(view.attempts) == 2
    assert "msg_a" in deliveries.dead
    orjson.dumps(view.public())
    assert [v.id for v in deliveries.of_endpoint("ep_1", "failed")] == ["msg_a"]


def test_tombstones_are_ignored(topic: str) -> None:
    deliveries = DeliveryLog(Store(None))
    deliveries.apply_attempt(consumer_record(topic, 0, None))
    assert rows(deliveries) == ([], []) and invalid_count(topic) == 0
