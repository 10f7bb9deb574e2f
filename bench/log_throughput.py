"""Event log throughput against a real local broker; each figure is a ratio to a raw ceiling.

    .venv/bin/python bench/log_throughput.py [--events 200000]

- produce: raw aiokafka ``send_and_wait`` of pre-encoded bytes vs ``JobEvents.publish`` (build,
  validate, encode, send), same producer settings (acks=all, idempotent), same concurrency.
- consume: raw consume + ``orjson.loads`` vs consume + decode + schema validation + fold.
- cold start: a fresh broker (format + start) with the jars already cached.

Starts its own broker unless KAFKA_BOOTSTRAP_SERVERS is set. Not part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from _broker import bench_broker, cache_dir
from aiokafka import AIOKafkaConsumer

from jobwire.config import load_settings
from jobwire.devtools.broker import LocalKafka, free_port
from jobwire.events import Event, new_event
from jobwire.kafka.admin import ensure_topics
from jobwire.kafka.clients import client_options, make_producer
from jobwire.kafka.readers import LogReader
from jobwire.kafka.writers import JobEvents
from jobwire.lifecycle import Job, apply
from jobwire.topics import Topics

CONCURRENCY = 500


def sample_events(count: int) -> list[Event]:
    """About 300 bytes each: created events for count/2 jobs, then their completions."""
    jobs = count // 2
    created = [
        new_event("job.created", f"job_b{i:07d}", "acme",
                  {"operation": "pdf.convert", "parameters": {"url": f"https://files.example/in/{i:07d}.docx",
                                                              "format": "pdf", "dpi": 300}},
                  source="/bench")
        for i in range(jobs)
    ]
    done = [new_event("job.completed", f"job_b{i:07d}", "acme", {"result": {"pages": 12}}, source="/bench")
            for i in range(jobs)]
    return created + done


async def run_concurrently(items: list, send) -> float:  # type: ignore[no-untyped-def]
    queue = iter(items)
    started = time.perf_counter()

    async def lane() -> None:
        for item in queue:
            await send(item)

    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
    return time.perf_counter() - started


async def produce(bootstrap: str, count: int) -> tuple[float, float, str, str]:
    base = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "JOBWIRE_EVENTS_PARTITIONS": "6"}
    raw_settings = load_settings({**base, "JOBWIRE_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}raw."})
    our_settings = load_settings({**base, "JOBWIRE_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}our."})
    await ensure_topics(raw_settings)
    await ensure_topics(our_settings)
    events = sample_events(count)
    encoded = [(e.subject.encode(), orjson.dumps(e.to_dict())) for e in events]
    print(f"event size: {sum(len(v) for _, v in encoded) / len(encoded):.0f} bytes on average")

    producer = make_producer(raw_settings.kafka)
    await producer.start()
    try:
        raw_topic = Topics(raw_settings.topic_prefix).events
        raw_s = await run_concurrently(encoded, lambda kv: producer.send_and_wait(raw_topic, kv[1], key=kv[0]))
        publisher = JobEvents(producer, Topics(our_settings.topic_prefix).events)
        ours_s = await run_concurrently(events, publisher.publish)
    finally:
        await producer.stop()
    return count / raw_s, count / ours_s, Topics(raw_settings.topic_prefix).events, Topics(our_settings.topic_prefix).events


async def consume_raw(bootstrap: str, topic: str, count: int) -> float:
    # No group: aiokafka assigns every partition, starting at the earliest offset.
    consumer = AIOKafkaConsumer(topic, **client_options(load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap}).kafka),
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 << 20, fetch_max_bytes=32 << 20)
    await consumer.start()
    try:
        seen = 0
        started = time.perf_counter()
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batch.values():
                for record in records:
                    orjson.loads(record.value)
                    seen += 1
        return count / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def consume_fold(bootstrap: str, topic: str, count: int) -> float:
    jobs: dict[str, Job | None] = {}
    seen = 0
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    async with LogReader(settings.kafka, topic) as reader:
        started = time.perf_counter()
        async for batch in reader.batches(timeout_ms=1000):
            for record in batch:
                event = record.event
                assert event is not None
                jobs[event.subject] = apply(jobs.get(event.subject), event).job
                seen += 1
            if seen >= count:
                break
        return count / (time.perf_counter() - started)


def cold_start(cache: Path) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        broker = LocalKafka(cache, Path(run_dir), port=free_port())
        started = time.perf_counter()
        broker.start()
        elapsed = time.perf_counter() - started
        broker.stop()
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    start_s = cold_start(cache_dir())
    print(f"broker cold start (jars cached, fresh data dir): {start_s:.1f} s (goal <= 15 s)")
    with bench_broker() as bootstrap:
        raw_rate, our_rate, raw_topic, our_topic = await produce(bootstrap, args.events)
        print(f"produce: raw aiokafka {raw_rate:,.0f}/s, JobEvents.publish {our_rate:,.0f}/s, "
              f"ratio {our_rate / raw_rate:.2f} (goal >= 0.8)")
        raw_c = await consume_raw(bootstrap, our_topic, args.events)
        fold_c = await consume_fold(bootstrap, our_topic, args.events)
        print(f"consume: raw+orjson {raw_c:,.0f}/s, decode+validate+fold {fold_c:,.0f}/s, "
              f"ratio {fold_c / raw_c:.2f} (goal >= 0.5)")

if __name__ == "__main__":
    asyncio.run(main())
