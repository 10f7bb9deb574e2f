"""The API's projection survives any record of jobs.events: it counts, logs and moves on."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord

from jobwire.api import projection as projection_module
from jobwire.api.projection import ListQuery, Projection
from jobwire.api.store import Store, feed
from jobwire.kafka.readers import to_log_record
from jobwire.positions import Position
from tests.support.poison import consumer_record, event_document, invalid_count, poison_events


@pytest.fixture
def topic() -> str:
    return f"t{uuid.uuid4().hex[:8]}.jobs.events"


def test_poison_between_valid_events_only_advances_the_position(topic: str, caplog: pytest.LogCaptureFixture) -> None:
    projection = Projection(Store(None), topic=topic)
    values = [*poison_events("job_a").values(), orjson.dumps(event_document("job_a")),
              *poison_events("job_b").values(), orjson.dumps(event_document("job_b"))]
    with caplog.at_level(logging.WARNING):
        for offset, value in enumerate(values):
            projection.apply_record(to_log_record(consumer_record(topic, offset, value)))
    assert projection.applied == {0: len(values)}
    assert projection.count() == 2 and projection.job("job_a") and projection.job("job_b")
    assert invalid_count(topic) == len(values) - 2
    lines = [r.getMessage() for r in caplog.records if "invalid record skipped" in r.getMessage()]
    assert len(lines) == len(values) - 2 and all(f"topic={topic}" in line for line in lines)
    page, _ = projection.list(ListQuery("acme"))
    assert {job.id for job in page} == {"job_a", "job_b"}


def test_a_record_the_fold_fails_on_is_skipped(topic: str, monkeypatch: pytest.MonkeyPatch) -> None:
    projection = Projection(Store(None), topic=topic)
    real_apply = projection_module.apply

    def apply(job: Any, event: Any) -> Any:
        if event.subject == "job_bug":
            raise RuntimeError("a bug in the fold")
        return real_apply(job, event)

    monkeypatch.setattr(projection_module, "apply", apply)
    outcomes = [projection.apply_record(to_log_record(consumer_record(topic, offset, orjson.dumps(event_document(job)))))
                for offset, job in enumerate(["job_bug", "job_ok"])]
    assert outcomes[0] is None and outcomes[1] is not None
    assert projection.count() == 1 and projection.job("job_ok") and projection.applied == {0: 2}
    assert invalid_count(topic) == 1


class BatchReader:
    """Hands out the given batches, then empty ones (as a caught-up reader does)."""

    def __init__(self, topic: str, batches: list[list[ConsumerRecord[bytes, bytes]]]) -> None:
        self.topic = topic
        self._batches = batches

    async def batches(self, timeout_ms: int = 200) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
        for batch in self._batches:
            yield batch
        while True:
            await asyncio.sleep(0.01)
            yield []


async def test_the_feed_carries_on_after_poison(topic: str) -> None:
    records = [consumer_record(topic, offset, value) for offset, value in
               enumerate([*poison_events("job_a").values(), orjson.dumps(event_document("job_a"))])]
    projection, stop = Projection(Store(None), topic=topic), asyncio.Event()
    feeding = asyncio.create_task(feed(projection, BatchReader(topic, [records]).batches(), stop))
    assert await projection.wait_for_position(Position(0, len(records) - 1), 5)
    stop.set()
    await asyncio.wait_for(feeding, 5)
    assert projection.job("job_a") is not None
