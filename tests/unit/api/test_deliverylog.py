"""The delivery log survives any record of webhooks.attempts; a bad one changes nothing."""

from __future__ import annotations

import asyncio
import logging
import uuid

import orjson
import pytest

from jobwire.api.deliverylog import DeliveryLog
from jobwire.api.store import Store
from tests.support.poison import attempt_document, consumer_record, invalid_count, poison_attempts


def rows(deliveries: DeliveryLog) -> tuple[list[object], ...]:
    db = deliveries.store.db
    return (db.execute("SELECT * FROM deliveries ORDER BY id").fetchall(),
            db.execute("SELECT * FROM attempts ORDER BY delivery_id, log_offset").fetchall(),
            db.execute("SELECT * FROM endpoint_health ORDER BY hour, outcome").fetchall())


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
    page, more = deliveries.of_endpoint("ep_1", "failed")
    assert [v.id for v in page] == ["msg_a"] and more is None


def test_tombstones_are_ignored(topic: str) -> None:
    deliveries = DeliveryLog(Store(None))
    deliveries.apply_attempt(consumer_record(topic, 0, None))
    assert rows(deliveries) == ([], [], []) and invalid_count(topic) == 0


def test_the_delivery_list_pages_newest_first_with_every_attempt_of_each(topic: str) -> None:
    deliveries = DeliveryLog(Store(None))
    offset = 0
    for n in range(7):
        for attempt in (1, 2):  # two attempts each, interleaved with the other deliveries' records
            outcome = "retrying" if attempt == 1 else ("failed" if n % 3 == 0 else "succeeded")
            document = attempt_document(f"msg_{n}", "ep_1", attempt=attempt, outcome=outcome,
                                        at=f"2026-11-23T10:0{n}:0{attempt}.000Z")
            deliveries.apply_batch([consumer_record(topic, offset, orjson.dumps(document))])
            offset += 1
    seen, before, pages = [], None, 0
    while True:
        page, before = deliveries.of_endpoint("ep_1", limit=3, before=before)
        pages += 1
        assert len(page) <= 3 and all(len(v.attempts) == 2 for v in page)
        assert all([a["attempt"] for a in v.attempts] == [1, 2] for v in page)
        seen += [v.id for v in page]
        if before is None:
            break
    assert seen == [f"msg_{n}" for n in range(6, -1, -1)] and pages == 3
    failed, more = deliveries.of_endpoint("ep_1", "failed", limit=2)
    assert [v.id for v in failed] == ["msg_6", "msg_3"] and more is not None
    assert [v.id for v in deliveries.of_endpoint("ep_1", "failed", limit=2, before=more)[0]] == ["msg_0"]


def test_endpoint_health_is_counted_as_attempts_are_folded_and_evicted_with_them(topic: str) -> None:
    deliveries = DeliveryLog(Store(None))
    documents = [attempt_document("msg_a", "ep_1", at="2026-11-23T09:59:00.000Z", outcome="retrying"),
                 attempt_document("msg_a", "ep_1", attempt=2, at="2026-11-23T10:00:01.000Z"),
                 attempt_document("msg_b", "ep_1", at="2026-11-23T10:30:00.000Z"),
                 attempt_document("msg_c", "ep_2", at="2026-11-23T10:30:00.000Z", outcome="failed")]
    deliveries.apply_batch([consumer_record(topic, n, orjson.dumps(d)) for n, d in enumerate(documents)])
    assert deliveries.health("ep_1", "2026-11-23T09:00:00.000Z") == {
        ("2026-11-23T09", "retrying"): 1, ("2026-11-23T10", "succeeded"): 2}
    assert deliveries.health("ep_1", "2026-11-23T10:00:00.000Z") == {("2026-11-23T10", "succeeded"): 2}
    assert deliveries.health("ep_2", "2026-11-23T00:00:00.000Z") == {("2026-11-23T10", "failed"): 1}
    asyncio.run(deliveries.evict_before("2026-11-23T10:00:00.000Z"))
    assert deliveries.health("ep_1", "2026-11-23T00:00:00.000Z") == {("2026-11-23T10", "succeeded"): 2}
