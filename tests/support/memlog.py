"""In-memory stand-ins for the topics, for unit tests of routes only (one ordered partition,
no Kafka semantics beyond that). Integration tests use the real broker."""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord

from jobwire import events
from jobwire.api.app import ApiComponents
from jobwire.api.deliverylog import DeliveryLog
from jobwire.api.projection import Projection
from jobwire.api.store import Store
from jobwire.events import Event
from jobwire.positions import AppliedPositions, Position
from jobwire.records import LogRecord
from jobwire.webhooks.registry import EndpointRegistry, EndpointWriter


class MemoryLog:
    def __init__(self, projection: Projection) -> None:
        self.projection = projection
        self.records: list[LogRecord] = []

    async def publish(self, event: Event) -> Position:
        raw = events.encode(event)
        record = LogRecord(Position(0, len(self.records)), event.subject.encode(), raw, events.decode(raw), None)
        self.records.append(record)
        self.projection.apply_record(record)
        return record.position


class MemoryTopic:
    """Keyed records in one partition, applied at once to whoever follows the topic."""

    def __init__(self, name: str, apply: Any = None, positions: AppliedPositions | None = None) -> None:
        self.name = name
        self.records: list[tuple[str, bytes | None]] = []
        self._apply = apply
        self._positions = positions

    async def send(self, key: str, value: bytes | None) -> Position:
        position = Position(0, len(self.records))
        self.records.append((key, value))
        if self._apply is not None:
            record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
                self.name, 0, position.offset, 0, 0, key.encode(), value, None, 0, 0, ())
            self._apply(record)
        if self._positions is not None:
            self._positions.advance(position)
            self._positions.wake()
        return position


def memory_components() -> tuple[ApiComponents, MemoryLog, MemoryTopic]:
    store = Store(None)
    projection = Projection(store)
    log = MemoryLog(projection)
    registry = EndpointRegistry()
    requests = MemoryTopic("webhooks.requests")
    components = ApiComponents(
        projection, log, registry,
        EndpointWriter(MemoryTopic("webhooks.endpoints", registry.apply, registry.positions)),
        DeliveryLog(store), requests,
    )
    return components, log, requests
