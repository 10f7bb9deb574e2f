"""follow_raw: one record must never end a replica's view of a topic."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import ConsumerRecord

from jobwire.kafka.readers import follow_raw
from jobwire.positions import AppliedPositions, Position
from tests.support.poison import consumer_record, invalid_count


class RawReader:
    def __init__(self, topic: str, batch: list[ConsumerRecord[bytes, bytes]]) -> None:
        self.topic = topic
        self._batch = batch

    async def raw_batches(self, timeout_ms: int = 200) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
        yield self._batch
        while True:
            await asyncio.sleep(0.01)
            yield []


async def test_a_record_apply_raises_on_is_skipped_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    topic = f"t{uuid.uuid4().hex[:8]}.webhooks.attempts"
    applied: list[bytes | None] = []

    def apply(record: ConsumerRecord[bytes, bytes]) -> None:
        if record.value == b"boom":
            raise KeyError("an apply function with a bug")
        applied.append(record.value)

    batch = [consumer_record(topic, offset, value) for offset, value in enumerate([b"a", b"boom", b"c"])]
    positions, stop = AppliedPositions(), asyncio.Event()
    with caplog.at_level(logging.WARNING):
        feed = asyncio.create_task(follow_raw(RawReader(topic, batch), apply, positions, stop))  # type: ignore[arg-type]
        assert await positions.wait_for(Position(0, 2), 5)
        stop.set()
        await asyncio.wait_for(feed, 5)
    assert applied == [b"a", b"c"] and positions.applied == {0: 3}
    assert invalid_count(topic) == 1
    (line,) = [r.getMessage() for r in caplog.records if "invalid record skipped" in r.getMessage()]
    assert "position=0:1" in line and "KeyError" in line
