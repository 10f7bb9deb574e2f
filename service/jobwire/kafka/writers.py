"""Writers: job events (validated, structured CloudEvents) and keyed records of other topics.
Each waits for the broker's acknowledgement and returns where the record landed."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from jobwire import events, tracing
from jobwire.binding import STRUCTURED_HEADERS
from jobwire.errors import LogError
from jobwire.events import Event
from jobwire.positions import Position


class JobEvents:
    """Publishes validated job events to ``jobs.events``, keyed by job id (per-job order)."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    async def publish(self, event: Event) -> Position:
        """Validate, write, and wait for the broker's acknowledgement; returns where it landed."""
        value = events.encode(event)
        with tracing.span(f"publish {event.type}", kind=tracing.PRODUCER,
                          attributes={"jobwire.job.id": event.subject, "jobwire.event.id": event.id,
                                      "messaging.destination.name": self.topic}):
            traced = tracing.kafka_headers()  # this span's context (or one passed on)
            try:
                metadata = await self._producer.send_and_wait(self.topic, value, key=event.subject.encode(),
                                                              headers=[*STRUCTURED_HEADERS, *traced] if traced
                                                              else STRUCTURED_HEADERS)
            except KafkaError as exc:
                raise LogError(f"publishing {event.type} for {event.subject} failed: {exc}",
                               retriable=exc.retriable) from exc
        return Position(metadata.partition, metadata.offset)


class KeyedWriter:
    """Writes keyed records (endpoint snapshots, delivery requests) and returns their position."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    async def send(self, key: str, value: bytes | None) -> Position:
        try:
            metadata = await self._producer.send_and_wait(self.topic, value, key=key.encode())
        except KafkaError as exc:
            raise LogError(f"writing {key} to {self.topic} failed: {exc}", retriable=exc.retriable) from exc
        return Position(metadata.partition, metadata.offset)
