"""An in-memory stand-in for jobs.events, for unit tests of routes only (no Kafka semantics
beyond one ordered partition). Integration tests use the real broker."""

from __future__ import annotations

from jobwire import events
from jobwire.events import Event
from jobwire.log import LogRecord, Position
from jobwire.projection import Projection


class MemoryLog:
    def __init__(self, projection: Projection) -> None:
        self.projection = projection
        self.records: list[LogRecord] = []

    async def publish(self, event: Event) -> Position:
        raw = events.encode(event)
        record = LogRecord(Position(0, len(self.records)), event.subject.encode(), raw, events.decode(raw), None)
        self.records.append(record)
        self.projection.apply_record(record)
        self.projection.applied_batch()
        return record.position
