"""The event log on a real broker: publish, read back, positions, quarantine, topic admin."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import defaultdict

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from jobwire.config import Settings
from jobwire.errors import ConfigError, LogError
from jobwire.events import Event, new_event
from jobwire.kafka.admin import ensure_topics, replication_of
from jobwire.kafka.clients import client_options, make_producer
from jobwire.kafka.quarantine import Quarantine
from jobwire.kafka.readers import GroupConsumer, LogReader
from jobwire.kafka.writers import JobEvents
from jobwire.lifecycle import Status, fold
from jobwire.positions import Position
from jobwire.records import LogRecord
from jobwire.topics import Replication, Topics, TopicSpec, topic_specs
from tests.conftest import settings_for
from tests.support.consume import consume


def job_history(job_id: str, tenant: str = "acme") -> list[Event]:
    history = [new_event("job.created", job_id, tenant, {"operation": "ocr", "parameters": {"n": 1}})]
    history.append(new_event("job.started", job_id, tenant, {"stage": "converting"}))
    history += [new_event("job.progress", job_id, tenant, {"total": 7, "processed": i}) for i in range(1, 8)]
    history.append(new_event("job.completed", job_id, tenant, {"result": {"pages": 7}}))
    return history


async def read_all(settings: Settings, count: int, timeout_s: float = 60) -> list[LogRecord]:
    records: list[LogRecord] = []
    async with LogReader(settings.kafka, Topics(settings.topic_prefix).events) as reader:
        async with asyncio.timeout(timeout_s):
            async for batch in reader.batches():
                records.extend(batch)
                if len(records) >= count:
                    return records
    raise AssertionError("unreachable")


async def test_ten_thousand_events_read_back_in_per_job_order(settings: Settings) -> None:
    await ensure_topics(settings)
    jobs = [f"job_rt{i:04d}" for i in range(1000)]
    histories = {job: job_history(job) for job in jobs}
    positions: dict[str, Position] = {}
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        publisher = JobEvents(producer, Topics(settings.topic_prefix).events)
        gate = asyncio.Semaphore(250)

        async def publish_job(job: str) -> None:
            async with gate:
                for event in histories[job]:  # one job's events in order; jobs run concurrently
                    positions[event.id] = await publisher.publish(event)

        await asyncio.gather(*(publish_job(job) for job in jobs))
    finally:
        await producer.stop()

    records = await read_all(settings, 10_000)
    assert len(records) == 10_000
    assert all(r.event is not None for r in records)
    by_job: dict[str, list[Event]] = defaultdict(list)
    for record in records:
        assert record.event is not None
        assert positions[record.event.id] == record.position, "publish() reported where the record is"
        assert record.key == record.event.subject.encode()
        by_job[record.event.subject].append(record.event)
    assert len({p.partition for p in positions.values()}) == settings.events_partitions
    for job, history in histories.items():
        assert [e.id for e in by_job[job]] == [e.id for e in history], f"order of {job}"
        folded = fold(by_job[job])
        assert folded is not None and folded.status is Status.COMPLETED and folded.version == 10


async def test_invalid_records_are_set_aside_and_valid_ones_around_them_processed(settings: Settings) -> None:
    await ensure_topics(settings)
    topics = Topics(settings.topic_prefix)
    good = [new_event("job.created", "job_q", "acme", {"operation": "ocr", "parameters": {}}),
            new_event("job.started", "job_q", "acme", {}),
            new_event("job.completed", "job_q", "acme", {"result": {}})]
    bad_json = b"{not json"
    bad_schema = orjson.dumps({**good[1].to_dict(), "id": "evt_x", "data": {"stage": 42}})
    raw = AIOKafkaProducer(**client_options(settings.kafka))
    await raw.start()
    try:
        for value in [orjson.dumps(good[0].to_dict()), bad_json, orjson.dumps(good[1].to_dict()), bad_schema,
                      None, orjson.dumps(good[2].to_dict())]:
            await raw.send_and_wait(topics.events, value, key=b"job_q")
    finally:
        await raw.stop()

    handled: list[Event] = []
    partitions: set[int] = set()

    async def handle(record: LogRecord) -> None:
        assert record.event is not None
        handled.append(record.event)
        partitions.add(record.position.partition)

    producer = make_producer(settings.kafka)
    group = GroupConsumer(settings.kafka, topics.events, group_id=f"{settings.topic_prefix}test")
    await producer.start()
    await group.start()
    try:
        quarantine = Quarantine(producer, topics.events, topics.events_invalid)
        count = await asyncio.wait_for(consume(group, quarantine, handle, burst=True), 60)
        (partition,) = partitions  # one key, one partition
        committed = await group.consumer.committed(TopicPartition(topics.events, partition))
    finally:
        await group.stop()
        await producer.stop()
    assert count == 3
    assert [e.id for e in handled] == [e.id for e in good]
    assert committed == 6, "the whole partition, bad records included, is committed"

    invalid = AIOKafkaConsumer(topics.events_invalid, **client_options(settings.kafka), auto_offset_reset="earliest")
    await invalid.start()
    try:
        fetched = await invalid.getmany(timeout_ms=5000)
    finally:
        await invalid.stop()
    copies = [r for rs in fetched.values() for r in rs]
    assert [c.value for c in copies] == [bad_json, bad_schema, None]
    reasons = [dict(c.headers)["jobwire-error"].decode() for c in copies]
    assert "not JSON" in reasons[0] and "/data/stage" in reasons[1] and "tombstone" in reasons[2]
    assert all(c.key == b"job_q" for c in copies)


async def test_topics_are_created_once_with_their_configs(settings: Settings) -> None:
    first = await ensure_topics(settings)
    topics = Topics(settings.topic_prefix)
    assert set(first) == {spec.name for spec in topic_specs(settings)}
    assert {topics.events, topics.events_invalid, topics.state, topics.endpoints, topics.attempts, topics.dead,
            topics.requests, topics.retry(5), topics.retry(300), topics.retry(36000)} <= set(first)
    assert await ensure_topics(settings) == []
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    await admin.start()
    try:
        described = await admin.describe_topics([topics.events])
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topics.events)])
    finally:
        await admin.close()
    assert len(described[0]["partitions"]) == settings.events_partitions
    entries = {c[0]: c[1] for c in configs[0].resources[0][4]}
    assert entries["retention.ms"] == str(30 * 24 * 3600 * 1000)


async def topic_names(settings: Settings) -> set[str]:
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_concurrent_creators_both_succeed_and_each_topic_is_made_once(settings: Settings) -> None:
    expected = {spec.name for spec in topic_specs(settings)}
    first, second = await asyncio.gather(ensure_topics(settings), ensure_topics(settings))
    assert set(first) | set(second) <= expected
    assert not set(first) & set(second), "a topic is reported created by one caller only"
    assert expected <= await topic_names(settings), "both returned once every topic exists"
    assert await ensure_topics(settings) == []


async def test_a_topic_the_broker_refuses_is_a_log_error_naming_it(settings: Settings,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    topics = Topics(settings.topic_prefix)
    sound = topic_specs(settings)
    broken = [TopicSpec(s.name, s.partitions, {**s.config, "retention.ms": "a fortnight"})
              if s.name == topics.attempts else s for s in sound]
    monkeypatch.setattr("jobwire.kafka.admin.topic_specs", lambda *_: broken)
    with pytest.raises(LogError, match=re.escape(topics.attempts)) as caught:
        await ensure_topics(settings)
    assert "InvalidConfigurationError" in str(caught.value) and not caught.value.retriable
    async with asyncio.timeout(30):  # the sound topics of the request were created
        while topics.events not in await topic_names(settings):
            await asyncio.sleep(0.05)
    monkeypatch.setattr("jobwire.kafka.admin.topic_specs", lambda *_: sound)
    assert await ensure_topics(settings) == [topics.attempts], "a fixed config creates only what is missing"


async def test_too_few_brokers_for_the_replication_factor_is_named(kafka_bootstrap: str) -> None:
    settings = settings_for(kafka_bootstrap, JOBWIRE_REPLICATION_FACTOR="3")
    with pytest.raises(ConfigError, match="3 copies need at least 3 brokers; the cluster has 1") as caught:
        await ensure_topics(settings)
    assert caught.value.variable == "JOBWIRE_REPLICATION_FACTOR"
    assert not set(await topic_names(settings)) & {s.name for s in topic_specs(settings)}, "nothing half-created"


async def test_replication_follows_a_single_broker_cluster(kafka_bootstrap: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(kafka_bootstrap)  # replication unset: from the cluster
    assert await replication_of(settings) == (1, Replication(1, 1))
    with caplog.at_level(logging.WARNING, logger="jobwire.kafka.admin"):
        await ensure_topics(settings)
    assert "set JOBWIRE_REPLICATION_FACTOR to pin it" in caplog.text, "auto on too few brokers says so"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jobwire.kafka.admin"):
        await ensure_topics(settings_for(kafka_bootstrap, JOBWIRE_REPLICATION_FACTOR="1"))
    assert "JOBWIRE_REPLICATION_FACTOR" not in caplog.text, "a pinned factor is taken as meant"


async def test_publish_refuses_invalid_events_before_the_log(settings: Settings) -> None:
    from jobwire.errors import InvalidEvent

    await ensure_topics(settings)
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        publisher = JobEvents(producer, Topics(settings.topic_prefix).events)
        with pytest.raises(InvalidEvent):
            await publisher.publish(new_event("job.progress", "job_x", "acme", {"total": "many"}))
        position = await publisher.publish(new_event("job.started", "job_x", "acme", {}))
    finally:
        await producer.stop()
    records = await read_all(settings, 1)
    assert [r.position for r in records] == [position], "only the valid event reached the log"
