"""CloudEvents over Kafka as other services write it: records made by the CloudEvents SDK in
binary mode (attributes in ``ce_`` headers) and structured mode reach the API, the dispatcher
and the webhook; a broken binary record is set aside with its reason and its headers; what
jobwire writes is structured mode with the binding's ``content-type``."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from cloudevents.v1.http import CloudEvent
from cloudevents.v1.kafka import from_structured, to_binary, to_structured

from jobwire.kafka.admin import ensure_topics
from jobwire.kafka.clients import client_options, make_producer
from jobwire.sdk.client import Client
from jobwire.topics import Topics
from tests.integration.test_dispatch import ACME_KEY, endpoint_for, hook_settings, running_dispatcher
from tests.integration.test_dispatch_poison import set_aside
from tests.support.receiver import Receiver, ReceiverServer
from tests.support.servers import running_api


def sdk_event(kind: str, job_id: str, data: dict[str, Any], n: int) -> CloudEvent:
    return CloudEvent({"type": kind, "source": "/services/billing", "subject": job_id, "tenant": "acme",
                       "id": f"evt_ce_{job_id}_{n}", "time": "2026-11-23T10:00:00Z",
                       "datacontenttype": "application/json"}, data)


async def test_binary_and_structured_sdk_records_make_jobs_and_webhooks(kafka_bootstrap: str) -> None:
    settings = hook_settings(kafka_bootstrap)
    await ensure_topics(settings)
    topic = Topics(settings.topic_prefix).events
    receiver = Receiver()
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        async with ReceiverServer(receiver) as server, running_api(settings) as url, running_dispatcher(settings), \
                Client(url, ACME_KEY) as client:
            await endpoint_for(client, server)
            for job_id, encode in (("job_cebin", to_binary), ("job_cestr", to_structured)):
                history = [sdk_event("job.created", job_id, {"operation": "ocr", "parameters": {}}, 1),
                           sdk_event("job.completed", job_id, {"result": {"pages": 2}}, 2)]
                for event in history:
                    message = encode(event)
                    await producer.send_and_wait(topic, message.value, key=job_id.encode(),
                                                 headers=list(message.headers.items()))
            broken = to_binary(sdk_event("job.created", "job_cebad", {"operation": "ocr"}, 1))  # no parameters
            await producer.send_and_wait(topic, broken.value, key=b"job_cebad", headers=list(broken.headers.items()))

            await receiver.wait_for(lambda: {r.data["id"] for r in receiver.received} >= {"job_cebin", "job_cestr"})
            for job_id in ("job_cebin", "job_cestr"):
                task = await client.wait(job_id, timeout_s=30)
                assert task["status"] == "completed" and task["result"] == {"pages": 2}
                history = await client.events(job_id)
                assert [e["event"]["type"] for e in history] == ["job.created", "job.completed"]
                assert history[0]["event"]["source"] == "/services/billing"
            reasons: list[str] = []
            for _ in range(100):  # bounded: the dispatcher sets it aside as it reads it
                reasons = await set_aside(settings, topic)
                if reasons:
                    break
                await asyncio.sleep(0.1)
            assert any("parameters" in reason for reason in reasons)
    finally:
        await producer.stop()


async def test_jobwire_writes_structured_mode_with_its_content_type(kafka_bootstrap: str) -> None:
    settings = hook_settings(kafka_bootstrap)
    await ensure_topics(settings)
    async with running_api(settings) as url, Client(url, ACME_KEY) as client:
        task = await client.submit("ocr", {"pages": 1})
    consumer = AIOKafkaConsumer(**client_options(settings.kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        topic = Topics(settings.topic_prefix).events
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or range(6)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found = None
        for _ in range(100):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found = found or next((r for r in records if r.key == task["id"].encode()), None)
            if found is not None:
                break
    finally:
        await consumer.stop()
    assert found is not None
    headers = dict(found.headers)
    assert headers["content-type"] == b"application/cloudevents+json"
    message = type(to_structured(sdk_event("job.created", "x", {}, 0)))(headers, found.key, found.value)
    read = from_structured(message)
    assert (read["type"], read["subject"], read.get_data()["operation"]) == ("job.created", task["id"], "ocr")
