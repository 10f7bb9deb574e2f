"""Every codec Kafka clients compress with (gzip, snappy, lz4, zstd) is read on the real broker:
by the readers every API replica uses and by the consumer-group fetch the dispatcher and the
workers use. (Without the codecs installed, one snappy, lz4 or zstd batch from a Java or Go
producer made aiokafka raise out of every fetch of that partition, for good.)"""

from __future__ import annotations

import asyncio

import pytest

from jobwire.config import Settings
from jobwire.events import encode, new_event
from jobwire.kafka.admin import ensure_topics
from jobwire.kafka.clients import make_producer
from jobwire.kafka.consumers import fetch, group_consumer
from jobwire.kafka.readers import LogReader
from jobwire.topics import Topics

CODECS = ("gzip", "snappy", "lz4", "zstd")


async def publish_compressed(settings: Settings, codec: str, count: int) -> set[str]:
    producer = make_producer(settings.kafka, compression_type=codec, linger_ms=50)
    await producer.start()
    ids = set()
    try:
        futures = []
        for n in range(count):
            event = new_event("job.created", f"job_{codec}_{n}", "acme", {"operation": "ocr", "parameters": {"n": n}})
            ids.add(event.id)
            futures.append(await producer.send(Topics(settings.topic_prefix).events, encode(event),
                                               key=event.subject.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return ids


@pytest.mark.parametrize("codec", CODECS)
async def test_compressed_batches_are_read_by_replicas_and_group_members(settings: Settings, codec: str) -> None:
    await ensure_topics(settings)
    published = await publish_compressed(settings, codec, 200)
    topic = Topics(settings.topic_prefix).events

    seen: set[str] = set()
    async with LogReader(settings.kafka, topic) as reader:
        async with asyncio.timeout(60):
            async for batch in reader.batches():
                seen |= {r.event.id for r in batch if r.event is not None}
                assert all(r.invalid is None for r in batch)
                if seen >= published:
                    break
    assert seen == published

    consumer = group_consumer(settings.kafka, f"{settings.topic_prefix}codec-{codec}")
    consumer.subscribe([topic])
    await consumer.start()
    taken: set[bytes] = set()
    try:
        async with asyncio.timeout(60):
            while len(taken) < len(published):
                fetched = await fetch(consumer, timeout_ms=200, max_records=500)
                taken |= {r.value for records in fetched.values() for r in records if r.value}
    finally:
        await consumer.stop()
    assert len(taken) == len(published)


async def test_a_batch_past_the_inflation_bound_is_skipped_with_a_marker_and_reading_goes_on(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gzip batch that inflates past the bound (lowered here, so the broker gets an ordinary
    batch) comes out as one marker record; the records after it are read as usual."""
    from jobwire.kafka import codecs

    monkeypatch.setattr(codecs, "MAX_INFLATED_BYTES", 64 << 10)
    await ensure_topics(settings)
    topic = Topics(settings.topic_prefix).events
    producer = make_producer(settings.kafka, compression_type="gzip", linger_ms=100)
    await producer.start()
    try:
        # Each record alone inflates past the bound, however the producer batches them.
        big = [await producer.send(topic, b"\0" * 100_000, key=b"job_big", partition=0) for _ in range(10)]
        await asyncio.gather(*big)
        after = new_event("job.created", "job_after", "acme", {"operation": "ocr", "parameters": {}})
        await producer.send_and_wait(topic, encode(after), key=b"job_after", partition=0)
    finally:
        await producer.stop()
    invalid, events = [], []
    async with LogReader(settings.kafka, topic) as reader:
        async with asyncio.timeout(60):
            async for batch in reader.batches():
                invalid += [r for r in batch if r.invalid is not None]
                events += [r.event for r in batch if r.event is not None]
                if any(e.id == after.id for e in events):
                    break
    assert invalid and all("inflates past" in str(r.invalid) for r in invalid)
    assert [e.id for e in events] == [after.id]
