"""The store on disk without a broker: resuming or rebuilding, one owner per data dir, retention
of jobs of every status and of deliveries, the list filters and cursors."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from pathlib import Path

import orjson
import pytest
from aiokafka import ConsumerRecord

from jobwire.api.app import progress
from jobwire.api.deliverylog import DeliveryLog
from jobwire.api.projection import ListQuery, Projection, decode_job, encode_job
from jobwire.api.store import Store, stale_reason
from jobwire.errors import StoreError
from jobwire.events import encode, new_event
from jobwire.kafka.readers import to_log_record
from jobwire.lifecycle import Status
from jobwire.positions import Position
from jobwire.records import LogRecord
from tests.support.poison import attempt_document, consumer_record

TOPIC = "jobs.events"


def raw_record(offset: int, event_type: str, job_id: str, data: dict[str, object], at: str, tenant: str = "acme",
               partition: int = 0) -> ConsumerRecord[bytes, bytes]:
    """An event as read from the log."""
    event = new_event(event_type, job_id, tenant, data)._replace(time=at)
    return ConsumerRecord(TOPIC, partition, offset, 0, 0, job_id.encode(), encode(event), None, 0, 0, ())


def record(offset: int, event_type: str, job_id: str, data: dict[str, object], at: str, tenant: str = "acme",
           partition: int = 0) -> LogRecord:
    return to_log_record(raw_record(offset, event_type, job_id, data, at, tenant, partition))


def finished_jobs(projection: Projection) -> None:
    """Jobs in every status: created 2026-01-0N, last updated as named."""
    records = [
        record(0, "job.created", "job_pending", {"operation": "a", "parameters": {}}, "2026-01-01T00:00:00Z"),
        record(1, "job.created", "job_running", {"operation": "a", "parameters": {}}, "2026-01-02T00:00:00Z"),
        record(2, "job.started", "job_running", {}, "2026-01-02T00:00:01Z"),
        record(3, "job.created", "job_done", {"operation": "b", "parameters": {}}, "2026-01-03T00:00:00Z"),
        record(4, "job.completed", "job_done", {"result": {}}, "2026-01-03T00:00:01Z"),
        record(5, "job.created", "job_failed", {"operation": "b", "parameters": {}}, "2026-01-04T00:00:00Z"),
        record(6, "job.failed", "job_failed", {"error": {"code": "E", "message": "m"}}, "2026-01-04T00:00:01Z"),
        record(7, "job.created", "job_canceled", {"operation": "a", "parameters": {}}, "2026-01-05T00:00:00Z"),
        record(8, "job.canceled", "job_canceled", {}, "2026-01-05T00:00:01Z"),
        record(9, "job.created", "job_recent", {"operation": "a", "parameters": {}}, "2026-03-01T00:00:00Z"),
    ]
    projection.apply_batch(records)


def test_job_state_round_trips_through_its_stored_form() -> None:
    projection = Projection(Store(None))
    finished_jobs(projection)
    for job_id in ("job_pending", "job_running", "job_done", "job_failed", "job_canceled"):
        job = projection.job(job_id)
        assert job is not None and decode_job(encode_job(job)) == job


async def test_retention_removes_old_jobs_of_every_status_with_their_history() -> None:
    projection = Projection(Store(None))
    finished_jobs(projection)
    assert projection.count() == 6
    assert await projection.evict_before("2026-02-01T00:00:00.000Z") == 5
    assert projection.count() == 1 and projection.job("job_recent") is not None
    for status in Status:
        page, _ = projection.list(ListQuery("acme", status=status))
        assert [job.id for job in page] == (["job_recent"] if status is Status.PENDING else [])
    rows = projection.store.db.execute("SELECT DISTINCT job_id FROM history").fetchall()
    assert rows == [("job_recent",)]


async def test_jobs_kept_in_memory_follow_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("jobwire.api.projection.HOT_JOBS", 2)
    projection = Projection(Store(None))
    finished_jobs(projection)
    assert projection.get("acme", "job_running").status is Status.PROCESSING  # type: ignore[union-attr]
    projection.apply_batch([record(10, "job.completed", "job_running", {"result": {}}, "2026-01-06T00:00:00Z")])
    assert projection.get("acme", "job_running").status is Status.COMPLETED  # type: ignore[union-attr]
    assert len(projection._hot) == 2, "bounded"
    for job_id in ("job_pending", "job_done", "job_running"):  # read back from the store when not kept
        assert projection.get("acme", job_id) == decode_job(projection.store.db.execute(
            "SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()[0])
    assert projection.get("globex", "job_running") is None
    await projection.evict_before("2026-02-01T00:00:00.000Z")
    assert projection.get("acme", "job_running") is None and projection.job("job_done") is None


async def test_retention_of_deliveries() -> None:
    deliveries = DeliveryLog(Store(None))
    for offset, (delivery, at) in enumerate([("msg_old", "2026-01-01T00:00:00.000Z"), ("msg_new", "2026-03-01T00:00:00.000Z")]):
        deliveries.apply_batch([consumer_record("webhooks.attempts", offset, orjson.dumps(
            attempt_document(delivery, "ep_1", at=at)))])
    assert await deliveries.evict_before("2026-02-01T00:00:00.000Z") == 1
    assert deliveries.get("acme", "msg_old") is None and deliveries.get("acme", "msg_new") is not None
    assert deliveries.store.db.execute("SELECT count(*) FROM attempts").fetchone() == (1,)


def test_list_filters_and_cursor_pages() -> None:
    projection = Projection(Store(None))
    finished_jobs(projection)
    page, next_key = projection.list(ListQuery("acme", operation="a", limit=2))
    assert [job.id for job in page] == ["job_recent", "job_canceled"] and next_key is not None
    page, next_key = projection.list(ListQuery("acme", operation="a", limit=2, after_key=next_key))
    assert [job.id for job in page] == ["job_running", "job_pending"] and next_key is None
    page, _ = projection.list(ListQuery("acme", created_after="2026-01-02T00:00:00.000Z",
                                        created_before="2026-01-05T00:00:00.000Z"))
    assert [job.id for job in page] == ["job_failed", "job_done"]
    assert projection.list(ListQuery("globex")) == ([], None)


def test_history_and_verdicts_come_back_in_log_order() -> None:
    projection = Projection(Store(None))
    finished_jobs(projection)
    late = record(10, "job.started", "job_done", {}, "2026-01-03T00:00:02Z")
    projection.apply_batch([late])
    entries = projection.events_of("acme", "job_done")
    assert entries is not None
    assert [(e.position.offset, e.verdict.value) for e in entries] == [(3, "accepted"), (4, "accepted"), (10, "rejected")]
    assert projection.history_entry("job_done", Position(0, 10)).reason  # type: ignore[union-attr]
    assert projection.events_of("globex", "job_done") is None, "another tenant's job is not found"
    assert [e.position.offset for e in projection.events_of("acme", "job_done", after=Position(0, 3)) or []] == [4, 10]


async def test_reads_go_on_while_the_writer_thread_holds_a_transaction(tmp_path: Path) -> None:
    """On disk, folding runs on the writer thread: a request reading the store never waits for
    a batch, a WAL checkpoint or an eviction, and the loop stays free meanwhile."""
    store = Store(tmp_path)
    projection, deliveries = Projection(store, TOPIC), DeliveryLog(store)
    try:
        await projection.apply([raw_record(0, "job.created", "job_a", {"operation": "a", "parameters": {}},
                                           "2026-01-01T00:00:00Z")])
        await deliveries.apply([consumer_record("webhooks.attempts", 0, orjson.dumps(
            attempt_document("msg_a", "ep_1")))])
        assert projection.applied == {0: 1} and deliveries.positions.applied == {0: 1}
        holding, release = threading.Event(), threading.Event()
        threads: list[str] = []

        def slow_write(db: sqlite3.Connection) -> None:
            threads.append(threading.current_thread().name)
            db.execute("UPDATE jobs SET status = 'canceled'")
            holding.set()
            assert release.wait(10)

        writing = asyncio.create_task(store.write(slow_write))
        assert await asyncio.to_thread(holding.wait, 10)
        page, _ = projection.list(ListQuery("acme"))  # served from the store, on the loop
        assert [job.status for job in page] == [Status.PENDING], "a read sees the last commit, not the open write"
        assert deliveries.get("acme", deliveries.of_endpoint("ep_1")[0][0].id) is not None
        release.set()
        await writing
        assert threads[0].startswith("store-writer") and threads[0] != threading.current_thread().name
        assert projection.store.db.execute("SELECT status FROM jobs").fetchone() == ("canceled",)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.db.execute("DELETE FROM jobs")  # only the log's fold writes
    finally:
        store.close()


def test_closing_the_store_waits_for_the_write_under_way(tmp_path: Path) -> None:
    store = Store(tmp_path)
    projection = Projection(store, TOPIC)
    projection.resume({0: 0}, {0: 11})

    async def write_then_close() -> None:
        writing = asyncio.create_task(projection.apply([raw_record(0, "job.created", "job_a", {
            "operation": "a", "parameters": {}}, "2026-01-01T00:00:00Z")]))
        await asyncio.sleep(0)  # the write is on the writer thread
        store.close()
        await writing

    asyncio.run(write_then_close())
    store = Store(tmp_path)
    try:
        assert store.offsets(TOPIC) == {0: 1}
        assert store.db.execute("SELECT id FROM jobs").fetchall() == [("job_a",)]
    finally:
        store.close()


def test_a_data_dir_has_one_owner(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        with pytest.raises(StoreError, match="in use by another jobwire api process"):
            Store(tmp_path)
    finally:
        store.close()
    Store(tmp_path).close()  # free again once closed


def test_a_restarted_store_resumes_from_its_offsets(tmp_path: Path) -> None:
    store = Store(tmp_path)
    projection = Projection(store, TOPIC)
    assert projection.resume({0: 0}, {0: 0}) == {0: 0}
    finished_jobs(projection)
    store.close()
    store = Store(tmp_path)
    projection = Projection(store, TOPIC)
    assert projection.resume({0: 0}, {0: 10}) == {0: 10}
    assert projection.count() == 6 and projection.applied == {0: 10}
    store.close()


@pytest.mark.parametrize(("beginnings", "ends", "why"), [
    ({0: 0}, {0: 4}, "past the log end"),  # the topic was deleted and made again
    ({0: 12}, {0: 20}, "before the log start"),  # retention removed records never applied
    ({1: 0}, {1: 20}, "not in the log"),  # another topic under the same name
])
def test_a_store_that_cannot_resume_is_rebuilt_with_a_log_line(tmp_path: Path, beginnings: dict[int, int],
                                                               ends: dict[int, int], why: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    store = Store(tmp_path)
    projection = Projection(store, TOPIC)
    projection.resume({0: 0}, {0: 10})
    finished_jobs(projection)
    with caplog.at_level(logging.WARNING):
        start = projection.resume(beginnings, ends)
    assert start == {p: beginnings[p] for p in ends}
    assert projection.count() == 0 and store.offsets(TOPIC) == {}
    assert any("store rebuilding model=jobs" in r.getMessage() and why in r.getMessage() for r in caplog.records)
    store.close()


def test_a_store_fed_from_another_topic_is_rebuilt(tmp_path: Path) -> None:
    store = Store(tmp_path)
    projection = Projection(store, TOPIC)
    projection.resume({0: 0}, {0: 10})
    finished_jobs(projection)
    other = Projection(store, "other.jobs.events")
    other.resume({0: 0}, {0: 10})
    assert other.count() == 0
    store.close()


def test_stale_reason_accepts_resumable_offsets() -> None:
    assert stale_reason({0: 5, 1: 0}, {0: 0, 1: 0}, {0: 5, 1: 3}) is None
    assert stale_reason({}, {0: 7}, {0: 9}) is None


def test_progress_is_the_share_of_the_catch_up_done() -> None:
    assert progress({0: 0, 1: 10}, {0: 5, 1: 10}, {0: 10, 1: 20}) == 0.25
    assert progress({0: 10}, {0: 10}, {0: 10}) == 1.0
