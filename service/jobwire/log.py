"""Kafka adapters: client factories, topic admin, the event publisher, readers and quarantine.

This is the only module (with the dispatcher's own consumer loop) that speaks aiokafka; its
errors are translated to :class:`~jobwire.errors.LogError` here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from jobwire import events
from jobwire.config import KafkaSettings, Settings
from jobwire.errors import InvalidEvent, LogError
from jobwire.events import Event
from jobwire.metrics import INVALID_RECORDS
from jobwire.topics import topic_specs

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where a record sits in a topic: the ``Jobwire-Position`` header is ``partition:offset``."""

    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Position:
        partition, sep, offset = text.strip().partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise ValueError(f"not a log position (partition:offset): {text!r}")
        return cls(int(partition), int(offset))


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One record read from an event topic: the event, or why it is not one."""

    position: Position
    key: bytes | None
    raw: bytes | None
    event: Event | None
    invalid: InvalidEvent | None
    headers: tuple[tuple[str, bytes], ...] = ()


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection options common to every aiokafka client (bootstrap, TLS, SASL)."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    if "SSL" in kafka.security_protocol:
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(
            cafile=kafka.ssl_cafile, certfile=kafka.ssl_certfile, keyfile=kafka.ssl_keyfile
        )
    if kafka.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password
    return options


def make_producer(kafka: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer waiting for all in-sync replicas: no acknowledged write is lost."""
    options = {
        **client_options(kafka),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 2,
        "max_batch_size": 256 * 1024,
        **overrides,
    }
    return AIOKafkaProducer(**options)


async def ensure_topics(settings: Settings) -> list[str]:
    """Create every missing topic with its configuration; existing ones are left as they are."""
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    created = []
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        for spec in missing:
            try:
                await admin.create_topics(
                    [NewTopic(spec.name, spec.partitions, settings.replication_factor, topic_configs=spec.config)]
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:  # a concurrent creator won the race: same outcome
                pass
    except KafkaError as exc:
        raise LogError(f"could not create topics on {settings.kafka.bootstrap_servers}: {exc}") from exc
    finally:
        await admin.close()
    for name in created:
        log.info("topic created topic=%s", name)
    return created


class JobEvents:
    """Publishes validated job events to ``jobs.events``, keyed by job id (per-job order)."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    async def publish(self, event: Event) -> Position:
        """Validate, write, and wait for the broker's acknowledgement; returns where it landed."""
        value = events.encode(event)
        try:
            metadata = await self._producer.send_and_wait(self.topic, value, key=event.subject.encode())
        except KafkaError as exc:
            raise LogError(f"publishing {event.type} for {event.subject} failed: {exc}", retriable=exc.retriable) from exc
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


def to_log_record(record: ConsumerRecord[bytes, bytes]) -> LogRecord:
    position = Position(record.partition, record.offset)
    headers = tuple(record.headers or ())
    try:
        return LogRecord(position, record.key, record.value, events.decode(record.value), None, headers)
    except InvalidEvent as exc:
        return LogRecord(position, record.key, record.value, None, exc, headers)


class Quarantine:
    """Copies invalid records to ``jobs.events.invalid`` with the reason in headers, and counts."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, source_topic: str) -> None:
        self._producer = producer
        self.topic = topic
        self.source_topic = source_topic

    async def put(self, record: LogRecord) -> None:
        assert record.invalid is not None
        reason = str(record.invalid)[:2000]
        headers = [
            ("jobwire-error", reason.encode()),
            ("jobwire-source-topic", self.source_topic.encode()),
            ("jobwire-source-position", str(record.position).encode()),
        ]
        await self._producer.send_and_wait(self.topic, record.raw, key=record.key, headers=headers)
        INVALID_RECORDS.labels(topic=self.source_topic).inc()
        log.warning("invalid record quarantined topic=%s position=%s reason=%s", self.source_topic, record.position, reason[:200])


class LogReader:
    """Reads every partition of a topic from the beginning (or end), without a consumer group.

    Each API replica uses one to build its own projection; ``end_offsets`` snapshots where the
    log ended at start-up, which is what ``/readyz`` waits for.
    """

    def __init__(self, kafka: KafkaSettings, topic: str, *, from_end: bool = False) -> None:
        self.topic = topic
        self._from_end = from_end
        self._consumer = AIOKafkaConsumer(
            **client_options(kafka), enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 << 20, fetch_max_bytes=32 << 20,
        )
        self.partitions: list[TopicPartition] = []

    async def start(self) -> None:
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self.topic)
        for _ in range(50):  # metadata for a just-created topic can lag a moment
            if partitions:
                break
            await asyncio.sleep(0.1)
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(self.topic)
        if not partitions:
            await self._consumer.stop()
            raise LogError(f"topic {self.topic} does not exist; run `jobwire topics create`", retriable=False)
        self.partitions = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(self.partitions)
        if self._from_end:
            await self._consumer.seek_to_end(*self.partitions)
        else:
            await self._consumer.seek_to_beginning(*self.partitions)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def __aenter__(self) -> LogReader:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def end_offsets(self) -> dict[int, int]:
        ends = await self._consumer.end_offsets(self.partitions)
        return {tp.partition: offset for tp, offset in ends.items()}

    async def raw_batches(self, timeout_ms: int = 200, max_records: int = 5000) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
        """Like ``batches`` for topics that do not hold job events (endpoints, attempts)."""
        while True:
            fetched = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
            yield [r for records in fetched.values() for r in records]

    async def batches(self, timeout_ms: int = 200, max_records: int = 5000) -> AsyncIterator[list[LogRecord]]:
        """Batches of records as they arrive; an empty batch means nothing came within the timeout."""
        async for batch in self.raw_batches(timeout_ms, max_records):
            yield [to_log_record(r) for r in batch]


class GroupConsumer:
    """A consumer-group member with manual commits: the caller commits only finished work."""

    def __init__(self, kafka: KafkaSettings, topic: str, group_id: str, **overrides: Any) -> None:
        self.topic = topic
        self._consumer = AIOKafkaConsumer(
            topic, **client_options(kafka), group_id=group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", **overrides,
        )

    @property
    def consumer(self) -> AIOKafkaConsumer:
        return self._consumer

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def fetch(self, timeout_ms: int = 200, max_records: int = 1000) -> list[LogRecord]:
        fetched = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return [to_log_record(r) for records in fetched.values() for r in records]

    async def commit(self, next_offsets: dict[int, int]) -> dict[int, int]:
        """Commit, per partition, the offset of the next record to read; see ``commit_owned``."""
        return await commit_owned(self._consumer, self.topic, next_offsets)


async def commit_owned(consumer: AIOKafkaConsumer, topic: str, next_offsets: dict[int, int]) -> dict[int, int]:
    """Commit the offsets of the partitions ``consumer`` still owns; returns what was committed.

    A failed commit (the broker restarting, or a rebalance that took partitions away) is logged
    and returns nothing: the caller offers the same offsets again, and a partition's new owner
    replays from the last commit (at-least-once).
    """
    owned = {tp.partition for tp in consumer.assignment()}
    offsets = {p: o for p, o in next_offsets.items() if p in owned}
    if not offsets:
        return {}
    try:
        await consumer.commit({TopicPartition(topic, p): o for p, o in offsets.items()})
    except KafkaError as exc:  # CommitFailedError and IllegalStateError included
        log.warning("commit failed topic=%s offsets=%s error=%s", topic, offsets, exc)
        return {}
    return offsets


async def consume(
    consumer: GroupConsumer,
    quarantine: Quarantine,
    handle: Callable[[LogRecord], Awaitable[None]],
    *,
    burst: bool = False,
    stop: asyncio.Event | None = None,
    max_records: int = 500,
) -> int:
    """The group consume loop: each batch is handled, invalid records set aside, then committed.

    A record is committed only after ``handle`` returned for it (at-least-once). In burst mode
    the loop returns once a fetch comes back empty, so tests end by themselves.
    Returns the number of valid records handled.
    """
    handled = 0
    while stop is None or not stop.is_set():
        batch = await consumer.fetch(timeout_ms=500 if burst else 200, max_records=max_records)
        if not batch:
            if burst:
                return handled
            continue
        next_offsets: dict[int, int] = {}
        for record in batch:
            if record.event is None:
                await quarantine.put(record)
            else:
                await handle(record)
                handled += 1
            next_offsets[record.position.partition] = record.position.offset + 1
        await consumer.commit(next_offsets)
    return handled
