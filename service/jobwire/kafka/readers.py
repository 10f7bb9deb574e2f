"""Readers: every partition of a topic without a group (API replicas, registries), and
consumer-group members with manual commits; records arrive decoded as :class:`LogRecord`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from jobwire import events
from jobwire.binding import decode_record, is_binary
from jobwire.config import KafkaSettings
from jobwire.errors import InvalidEvent, LogError, Violation
from jobwire.kafka.clients import consumer_options
from jobwire.kafka.codecs import undecodable
from jobwire.positions import AppliedPositions, Position
from jobwire.records import LogRecord, RawRecord, skipped

log = logging.getLogger(__name__)


def to_log_record(record: RawRecord) -> LogRecord:
    position = Position(record.partition, record.offset)
    headers = tuple(record.headers or ())
    skipped_batch = undecodable(headers)
    if skipped_batch is not None:
        return LogRecord(position, record.key, record.value, None, InvalidEvent([Violation("", skipped_batch)]), headers)
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


class LogReader:
    """Reads every partition of a topic from the beginning (or end), without a consumer group.

    Each API replica uses one to build its own projection; ``end_offsets`` snapshots where the
    log ended at start-up, which is what ``/readyz`` waits for.
    """

    def __init__(self, kafka: KafkaSettings, topic: str, *, from_end: bool = False) -> None:
        self.topic = topic
        self._from_end = from_end
        self._consumer = AIOKafkaConsumer(
            **consumer_options(kafka), enable_auto_commit=False, auto_offset_reset="earliest",
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
            topic, **consumer_options(kafka), group_id=group_id, enable_auto_commit=False,
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


async def follow_raw(
    reader: LogReader,
    apply: Callable[[RawRecord], None],
    positions: AppliedPositions,
    stop: asyncio.Event,
) -> None:
    """Feed every record of a non-event topic to ``apply``, in order, until ``stop``.

    ``apply`` skips the records it finds malformed; should it raise all the same, the record is
    skipped here (counted and logged): one record must never end a replica's view of a topic.
    No quarantine copy either way: every replica reads every record, so each would write one.
    """
    async for batch in reader.raw_batches(timeout_ms=100):
        for record in batch:
            position = Position(record.partition, record.offset)
            try:
                apply(record)
            except Exception as exc:
                skipped(reader.topic, position, f"{type(exc).__name__}: {exc}")
            positions.advance(position)
        if batch:
            positions.wake()
        if stop.is_set():
            return


async def read_to_end(kafka: KafkaSettings, topic: str, partitions: list[int]) -> AsyncIterator[RawRecord]:
    """Every record of ``partitions``, one partition after the other, from the first record each
    holds to the end it had when called (a changelog restore). ``LogError`` if the broker
    fails meanwhile."""
    consumer = AIOKafkaConsumer(**consumer_options(kafka), enable_auto_commit=False,
                                max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    tps = [TopicPartition(topic, p) for p in partitions]
    try:
        await consumer.start()
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                fetched = await consumer.getmany(tp, timeout_ms=1000, max_records=10_000)
                for record in fetched.get(tp, []):
                    yield record
    except KafkaError as exc:
        raise LogError(f"reading {topic} partitions {partitions} failed: {exc}", retriable=exc.retriable) from exc
    finally:
        await consumer.stop()


async def read_whole(kafka: KafkaSettings, topic: str) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record of every partition of ``topic``, in order per partition, up to the end the
    topic had when called. ``LogError`` if the topic is missing or the broker fails meanwhile."""
    async for record in _read_up_to_end(kafka, topic, last=None):
        yield record


async def read_tail(kafka: KafkaSettings, topic: str, last: int) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """The last ``last`` records (at most) of each partition of ``topic``, up to the end it had
    when called. ``LogError`` if the topic is missing or the broker fails meanwhile."""
    async for record in _read_up_to_end(kafka, topic, last=last):
        yield record


async def _read_up_to_end(kafka: KafkaSettings, topic: str, last: int | None) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    reader = LogReader(kafka, topic)
    await reader.start()
    try:
        ends = await reader.end_offsets()
        starts = await reader.beginning_offsets()
        if last is not None:
            starts = {p: max(start, ends[p] - last) for p, start in starts.items()}
            reader.seek(starts)
        read = dict(starts)
        if all(read[p] >= end for p, end in ends.items()):
            return
        async for batch in reader.raw_batches(timeout_ms=500):
            for record in batch:
                if record.offset < ends[record.partition]:
                    yield record
                read[record.partition] = max(read[record.partition], record.offset + 1)
            if all(read[p] >= end for p, end in ends.items()):
                return
    except KafkaError as exc:
        raise LogError(f"reading {topic} failed: {exc}", retriable=exc.retriable) from exc
    finally:
        await reader.stop()
