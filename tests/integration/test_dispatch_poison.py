"""Poison on the real broker, for the dispatcher: every class of bad record is set aside with
its reason, the dispatcher stays up, later valid jobs get their webhooks, and a dispatcher
restarted over the same poison is clean (no crash loop)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from jobwire.config import Settings, load_settings
from jobwire.events import new_event
from jobwire.kafka.admin import ensure_topics
from jobwire.kafka.clients import client_options, make_producer
from jobwire.kafka.writers import JobEvents, KeyedWriter
from jobwire.timeutil import now_utc
from jobwire.topics import Topics
from jobwire.webhooks.model import Endpoint, SealedSecret
from jobwire.webhooks.registry import EndpointWriter
from jobwire.webhooks.secretbox import SecretBox, binding, new_webhook_secret
from tests.conftest import env_for
from tests.support.dispatching import publish_jobs, register, start_dispatcher
from tests.support.poison import deep_json, poison_events
from tests.support.receiver import Receiver, ReceiverServer

SECRET_KEY = "poison-test-secret-key-0123456789"
BIG = "x" * (300 * 1024)


def poison_env(bootstrap: str) -> dict[str, str]:
    return env_for(bootstrap, JOBWIRE_SECRET_KEY=SECRET_KEY, JOBWIRE_ALLOWED_TARGETS="127.0.0.1/32",
                   JOBWIRE_RETRY_SCHEDULE="0,1", JOBWIRE_DEV="1", JOBWIRE_LOG_LEVEL="WARNING",
                   JOBWIRE_EVENTS_PARTITIONS="1")


def poison_deliveries() -> dict[str, bytes]:
    good = {"id": "msg_x", "endpoint_id": "ep_poison0", "tenant": "acme", "event_type": "task.completed",
            "event_id": "evt_x", "job_id": "job_x", "body": {"type": "task.completed"},
            "created_at": "2026-11-23T10:00:00.000Z"}
    return {
        "not JSON": b"{{",
        "attempts a string": orjson.dumps({**good, "attempts": "three"}),
        "body a number": orjson.dumps({**good, "body": 5}),
        "missing endpoint": orjson.dumps({k: v for k, v in good.items() if k != "endpoint_id"}),
        "unknown field": orjson.dumps({**good, "surprise": True}),
        "300 levels": orjson.dumps(good).replace(b'{"type":"task.completed"}', deep_json(300)),
    }


async def write_poison(settings: Settings) -> int:
    """Every poison class on jobs.events and on the requests and retry topics; how many."""
    topics = Topics(settings.topic_prefix)
    producer = make_producer(settings.kafka)
    await producer.start()
    count = 0
    try:
        for value in poison_events("job_poison").values():
            await producer.send_and_wait(topics.events, value, key=b"job_poison")
            count += 1
        # Valid events each, but the failed job's task object would be over the size limit.
        publisher = JobEvents(producer, topics.events)
        await publisher.publish(new_event("job.created", "job_huge", "acme", {"operation": "ocr", "parameters": {"p": BIG[:200_000]}}))
        await publisher.publish(new_event("job.failed", "job_huge", "acme", {"error": {
            "code": "x", "message": "m", "details": {"d": BIG[:250_000]}}}))
        count += 1
        for topic in (topics.requests, topics.retry(1.0)):
            for value in poison_deliveries().values():
                await producer.send_and_wait(topic, value, key=b"ep_poison0")
                count += 1
    finally:
        await producer.stop()
    return count


async def register_undecryptable(settings: Settings, server: ReceiverServer) -> str:
    """An endpoint whose secret was sealed with another key: its attempts fail, nothing else."""
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        now = now_utc()
        sealed = SecretBox("a-different-secret-key-0123456789").seal(new_webhook_secret(),
                                                                     bound_to=binding("acme", "ep_foreign"))
        endpoint = Endpoint("ep_foreign", "acme", server.url, now, now, (SealedSecret(sealed),))
        await EndpointWriter(KeyedWriter(producer, Topics(settings.topic_prefix).endpoints)).put(endpoint)
    finally:
        await producer.stop()
    return endpoint.id


async def set_aside(settings: Settings, topic: str) -> list[str]:
    """The reasons on every record of ``topic``'s .invalid companion."""
    consumer = AIOKafkaConsumer(**client_options(settings.kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(Topics(settings.topic_prefix).invalid(topic), 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        reasons: list[str] = []
        for _ in range(100):
            if await consumer.position(tp) >= end:
                break
            for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                reasons.append(dict(record.headers)["jobwire-error"].decode())
        return reasons
    finally:
        await consumer.stop()


@pytest.mark.timeout(300)
async def test_the_dispatcher_sets_poison_aside_and_delivers_what_follows(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = poison_env(kafka_bootstrap)
    settings = load_settings(env)
    await ensure_topics(settings)
    receiver, foreign = Receiver(), Receiver()
    async with ReceiverServer(receiver) as server, ReceiverServer(foreign) as foreign_server:
        await register(settings, [server], prefix="ep_poison")
        await register_undecryptable(settings, foreign_server)
        await write_poison(settings)
        finishing = await publish_jobs(settings, 0, 20)
        log_file = tmp_path / "dispatcher.log"
        for run in range(2):  # the second run starts over the same poison: no crash loop
            dispatcher = start_dispatcher(env, log_file)
            try:
                await receiver.wait_for(lambda: {r.data["id"] for r in receiver.received} >= set(finishing), timeout_s=90)
                await asyncio.sleep(0.5)
                assert dispatcher.poll() is None, log_file.read_text()[-3000:]
            finally:
                dispatcher.terminate()
                dispatcher.wait(60)
            assert dispatcher.returncode == 0, log_file.read_text()[-3000:]
            if run == 0:
                later = await publish_jobs(settings, 20, 5)
                finishing.update(later)
    assert {r.data["id"] for r in receiver.received} == set(finishing)
    assert not foreign.received and foreign.rejected == 0, "an undecryptable secret sends nothing"
    topics = Topics(settings.topic_prefix)
    events = await set_aside(settings, topics.events)
    for expected in ("/time", "nested deeper", "not JSON", "over the"):
        assert any(expected in reason for reason in events), (expected, events)
    requests = await set_aside(settings, topics.requests)
    retries = await set_aside(settings, topics.retry(1.0))
    assert len(requests) >= len(poison_deliveries()) and len(retries) >= len(poison_deliveries())
    assert all(reason.startswith("not a delivery record") for reason in requests + retries)
