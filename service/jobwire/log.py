"""Kafka adapters: client factories, topic admin, the event publisher, readers and quarantine.

This is the only module (with the dispatcher's own consumer loop) that speaks aiokafka; its
errors are translated to :class:`~jobwire.errors.LogError` here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from jobwire import events
from jobwire.binding import STRUCTURED_HEADERS, decode_record, is_binary
from jobwire.config import KafkaSettings, Settings
from jobwire.errors import InvalidEvent, LogError, Violation
from jobwire.events import Event
from jobwire.metrics import INVALID_RECORDS
from jobwire.topics import TopicSpec, topic_specs

log = logging.getLogger(__name__)


class Position(NamedTuple):
    """Where a record sits in a topic: the ``Jobwire-Position`` header is ``partition:offset``.
    A NamedTuple, as LogRecord: one is made per record read, and a frozen dataclass costs
    several times more to build."""

    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Position:
        partition, sep, offset = text.strip().partition(":")
        # isascii too: isdigit alone takes "²", which int() refuses.
        if not sep or not all(part.isascii() and part.isdigit() for part in (partition, offset)):
            raise ValueError(f"not a log position (partition:offset): {text!r}")
        return cls(int(partition), int(offset))


class LogRecord(NamedTuple):
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


#: How long ``ensure_topics`` waits for the topics to show in the cluster's metadata.
TOPICS_VISIBLE_TIMEOUT_S = 30.0


async def ensure_topics(settings: Settings, *, visible_within_s: float = TOPICS_VISIBLE_TIMEOUT_S) -> list[str]:
    """Create every missing topic with its configuration; returns the names this call created.

    Existing topics are left as they are. Safe to run concurrently: a topic another creator
    made first counts as existing. Returns only once every topic is in the cluster metadata
    with a leader for each partition, so readers and writers started next find them. A topic
    the broker refuses (a bad config, too few brokers) raises :class:`LogError` naming it.
    """
    specs = topic_specs(settings)
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        created = await _create_topics(admin, missing, settings.replication_factor) if missing else []
        await _wait_until_visible(admin, [spec.name for spec in specs], visible_within_s)
    except KafkaError as exc:
        raise LogError(f"could not create topics on {settings.kafka.bootstrap_servers}: {exc}",
                       retriable=exc.retriable) from exc
    finally:
        await admin.close()
    return created


async def _create_topics(admin: AIOKafkaAdminClient, specs: list[TopicSpec], replication_factor: int) -> list[str]:
    """One CreateTopics request for all of ``specs``; returns the names it created.

    The broker answers with an error code per topic instead of failing the request, so each
    is checked here: 36 (already exists) means someone else won the race, which is fine.
    """
    response = await admin.create_topics(
        [NewTopic(spec.name, spec.partitions, replication_factor, topic_configs=spec.config) for spec in specs]
    )
    created, refused = [], []
    for entry in response.topic_errors:  # (topic, error_code) and, from v1 on, error_message
        name, code = entry[0], entry[1]
        if code == 0:
            created.append(name)
            log.info("topic created topic=%s", name)
        elif code == TopicAlreadyExistsError.errno:
            log.info("topic created concurrently by another client topic=%s", name)
        else:
            message = entry[2] if len(entry) > 2 and entry[2] else ""
            refused.append((name, for_code(code), code, message))
    if refused:
        reasons = "; ".join(f"{name}: {error.__name__} (error {code}) {message}".rstrip()
                            for name, error, code, message in refused)
        raise LogError(f"the broker refused to create topics: {reasons}",
                       retriable=all(error.retriable for _, error, _, _ in refused))
    return created


async def _wait_until_visible(admin: AIOKafkaAdminClient, names: list[str], timeout_s: float) -> None:
    """Poll the metadata until every topic in ``names`` has a leader for each partition."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pause = 0.05
    while True:
        # All topics, not just ours: naming topics in a metadata request can auto-create them
        # with broker defaults on clusters where auto.create.topics.enable is on.
        described = {t["topic"]: t for t in await admin.describe_topics()}
        waiting = {name: _not_ready(described.get(name)) for name in names}
        waiting = {name: why for name, why in waiting.items() if why}
        if not waiting:
            return
        if loop.time() + pause > deadline:
            details = ", ".join(f"{name} ({why})" for name, why in sorted(waiting.items()))
            raise LogError(f"topics not ready in the cluster metadata after {timeout_s:g} s: {details}")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


def _not_ready(topic: dict[str, Any] | None) -> str | None:
    """Why a topic's metadata entry is not usable yet; None when it is."""
    if topic is None:
        return "missing"
    if topic["error_code"]:
        return for_code(topic["error_code"]).__name__
    partitions = topic["partitions"]
    if not partitions:
        return "no partitions"
    leaderless = [p["partition"] for p in partitions if p["error_code"] or p["leader"] < 0]
    return f"no leader for partitions {leaderless[:10]}" if leaderless else None


class JobEvents:
    """Publishes validated job events to ``jobs.events``, keyed by job id (per-job order)."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    async def publish(self, event: Event) -> Position:
        """Validate, write, and wait for the broker's acknowledgement; returns where it landed."""
        value = events.encode(event)
        try:
            metadata = await self._producer.send_and_wait(self.topic, value, key=event.subject.encode(),
                                                          headers=STRUCTURED_HEADERS)
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
        event = decode_record(record.value, headers)
        # Binary mode carries only the data in the value: keep the whole event, structured, as
        # the record's bytes (what histories show and what the fold's readers decode).
        raw = events.encode(event) if headers and is_binary(headers) else record.value
        return LogRecord(position, record.key, raw, event, None, headers)
    except InvalidEvent as exc:
        return LogRecord(position, record.key, record.value, None, exc, headers)
    except Exception as exc:  # a bug in decode must not stop every consumer: set the record aside
        log.exception("decoding failed position=%s", position)
        invalid = InvalidEvent([Violation("", f"could not be decoded: {type(exc).__name__}: {exc}")])
        return LogRecord(position, record.key, record.value, None, invalid, headers)


class Quarantine:
    """Sets aside records that cannot be handled: a copy goes to the ``.invalid`` companion of
    their topic with the reason and origin in headers; each is counted and logged once.

    For consumer-group members only, where one member reads each record: readers without a
    group (every API replica) would each write a copy, so they count and log instead.
    """

    def __init__(self, producer: AIOKafkaProducer, source_topic: str, invalid_topic: str) -> None:
        if invalid_topic == source_topic or source_topic.endswith(".invalid"):
            # Swapped arguments would copy records back into the topic being read, for ever.
            raise ValueError(f"cannot quarantine {source_topic} into {invalid_topic}")
        self._producer = producer
        self.source_topic = source_topic
        self.invalid_topic = invalid_topic
        self._counted = INVALID_RECORDS.labels(topic=source_topic)

    async def put(self, record: LogRecord, reason: str | None = None) -> None:
        """Set aside a record read from an event topic; ``reason`` defaults to why it is invalid."""
        if reason is None:
            reason = str(record.invalid) if record.invalid is not None else "could not be handled"
        await self.put_raw(record.key, record.raw, record.position, reason, record.headers)

    async def put_raw(self, key: bytes | None, value: bytes | None, position: Position, reason: str,
                      original_headers: Sequence[tuple[str, bytes]] = ()) -> None:
        """Set aside a record of any topic, as it was read (its headers too: a binary-mode event
        is mostly headers). ``LogError`` if the copy is not written."""
        reason = reason[:2000]
        headers = [
            *((name, kept) for name, kept in original_headers[:64] if not name.startswith("jobwire-")),
            ("jobwire-error", reason.encode()),
            ("jobwire-source-topic", self.source_topic.encode()),
            ("jobwire-source-position", str(position).encode()),
        ]
        try:
            await self._producer.send_and_wait(self.invalid_topic, value, key=key, headers=headers)
        except KafkaError as exc:
            raise LogError(f"quarantining {self.source_topic} {position} to {self.invalid_topic} failed: {exc}",
                           retriable=exc.retriable) from exc
        self._counted.inc()
        log.warning("invalid record quarantined topic=%s position=%s reason=%s",
                    self.source_topic, position, _one_line(reason))


def skipped(topic: str, position: Position, reason: str) -> None:
    """Count and log a record a reader without a consumer group skips (it does not quarantine:
    every replica reads every record, so each would write a copy)."""
    INVALID_RECORDS.labels(topic=topic).inc()
    log.warning("invalid record skipped topic=%s position=%s reason=%s", topic, position, _one_line(reason))


def _one_line(reason: str, limit: int = 200) -> str:
    """A reason fit for a one-line log: newlines escaped, cut at ``limit`` characters."""
    return reason[:limit].replace("\n", "\\n").replace("\r", "\\r")


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

    async def beginning_offsets(self) -> dict[int, int]:
        """The first offset each partition still holds (above 0 once retention removed records)."""
        starts = await self._consumer.beginning_offsets(self.partitions)
        return {tp.partition: offset for tp, offset in starts.items()}

    def seek(self, offsets: dict[int, int]) -> None:
        """Read on from these offsets (partition -> next offset), as a store resuming does."""
        for tp in self.partitions:
            if tp.partition in offsets:
                self._consumer.seek(tp, offsets[tp.partition])

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

    A record is committed only after ``handle`` returned for it (at-least-once). A record that
    ``handle`` fails on is set aside like an invalid one; a ``LogError`` is not the record's
    fault (the log is unavailable), so it stops the loop instead and the record is replayed.
    In burst mode the loop returns once a fetch comes back empty, so tests end by themselves.
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
                try:
                    await handle(record)
                    handled += 1
                except LogError:
                    raise
                except Exception as exc:
                    await quarantine.put(record, f"handling failed: {type(exc).__name__}: {exc}")
            next_offsets[record.position.partition] = record.position.offset + 1
        await consumer.commit(next_offsets)
    return handled
