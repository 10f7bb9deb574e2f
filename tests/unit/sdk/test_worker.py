"""The worker SDK keeps running whatever a record or a handler's result is."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest

from jobwire import events
from jobwire.config import load_settings
from jobwire.events import Event
from jobwire.kafka.readers import to_log_record
from jobwire.positions import Position
from jobwire.records import LogRecord
from jobwire.sdk.worker import JobContext, Result, Worker
from tests.support.poison import consumer_record, event_document, invalid_count, poison_events


class Published:
    """Stands in for JobEvents: validates as the real one does, keeps what it was given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event) -> Position:
        events.encode(event)  # InvalidEvent, as from the real publisher
        self.events.append(event)
        return Position(0, len(self.events) - 1)


class Group:
    def __init__(self, topic: str) -> None:
        self.topic = topic


async def make_worker(handler: Any) -> tuple[Worker, Published]:
    """A worker without a broker: its group and publisher replaced by stand-ins."""
    worker = Worker(load_settings({}), "ocr", handler)
    await worker._producer.stop()  # never started; stopped so nothing warns about it
    await worker._group.stop()
    worker._group = Group(f"t{uuid.uuid4().hex[:8]}.jobs.events")  # type: ignore[assignment]
    published = Published()
    worker._publisher = published  # type: ignore[assignment]
    return worker, published


async def finished(worker: Worker) -> None:
    async with asyncio.timeout(10):
        while worker._running:
            await asyncio.wait([r.task for r in worker._running.values()])


def records(topic: str, values: list[bytes]) -> list[LogRecord]:
    return [to_log_record(consumer_record(topic, offset, value)) for offset, value in enumerate(values)]


async def test_poison_and_a_failing_fold_are_skipped_and_the_rest_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []

    async def handler(job: JobContext) -> dict[str, Any]:
        ran.append(job.id)
        return {"ok": True}

    worker, published = await make_worker(handler)
    topic = worker._group.topic
    real_observe = worker._observe

    def observe(event: Event) -> None:
        if event.subject == "job_bug":
            raise RuntimeError("a bug while folding")
        real_observe(event)

    monkeypatch.setattr(worker, "_observe", observe)
    poison = list(poison_events("job_x").values())
    batch = records(topic, [*poison, orjson.dumps(event_document("job_bug")), orjson.dumps(event_document("job_ok"))])
    await worker._handle_batch(batch)
    await finished(worker)
    assert ran == ["job_ok"]
    assert [(e.subject, e.type) for e in published.events] == [("job_ok", "job.started"), ("job_ok", "job.completed")]
    assert worker._offsets.committable() == {0: len(batch)}, "nothing holds the partition back"
    assert invalid_count(topic) == len(poison) + 1


async def test_a_result_the_log_refuses_fails_the_job() -> None:
    async def handler(job: JobContext) -> Result:
        return Result({"pages": 3}, result_url="https://files.example/out", result_url_expires_at="2026-13-45T10:00:00Z")

    worker, published = await make_worker(handler)
    batch = records(worker._group.topic, [orjson.dumps(event_document("job_r"))])
    await worker._handle_batch(batch)
    await finished(worker)
    outcome = published.events[-1]
    assert outcome.type == "job.failed" and outcome.data["error"]["code"] == "invalid_result"
    assert "/data/result_url_expires_at" in outcome.data["error"]["message"]
    assert worker._offsets.committable() == {0: 1}
