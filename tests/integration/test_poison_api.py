"""Poison records on every topic the API reads, on a real broker: the API stays up, answers for
the valid records around them, counts each bad one once, and a restart over them is clean."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from jobwire.config import Settings
from jobwire.kafka.admin import ensure_topics
from jobwire.kafka.clients import client_options
from jobwire.sdk.client import ApiError, Client
from jobwire.topics import Topics
from tests.conftest import another_replica, settings_for
from tests.support.poison import (
    attempt_document,
    endpoint_document,
    event_document,
    invalid_count,
    poison_attempts,
    poison_endpoints,
    poison_events,
)
from tests.support.servers import running_api

ACME_KEY = "key_acme_0123456789"


@pytest.fixture
async def api_settings(kafka_bootstrap: str) -> Settings:
    settings = settings_for(kafka_bootstrap, JOBWIRE_API_KEYS=f"acme:{ACME_KEY}", JOBWIRE_SECRET_KEY="poison-secret-key-0123456789")
    await ensure_topics(settings)
    return settings


async def produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
    """Straight to the topic, as a broken or hostile producer would: no validation on the way."""
    producer = AIOKafkaProducer(**client_options(settings.kafka))
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def until_ready(url: str) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(30):
        while True:
            async with http.get(f"{url}/readyz") as ready:
                if ready.status == 200:
                    return
            await asyncio.sleep(0.05)


async def until_status(client: Client, job_id: str, status: str) -> dict[str, Any]:
    """The job once this replica shows it in ``status`` (raw records carry no position to wait for)."""
    async with asyncio.timeout(30):
        while True:
            try:
                task = await client.get(job_id)
                if task["status"] == status:
                    return task
            except ApiError as exc:
                if exc.status != 404:
                    raise
            await asyncio.sleep(0.05)


def valid_job(job_id: str) -> list[tuple[bytes, bytes | None]]:
    """A job created and completed by records written straight to jobs.events."""
    return [(job_id.encode(), orjson.dumps(event_document(job_id))),
            (job_id.encode(), orjson.dumps(event_document(job_id, "job.completed", data={"result": {"n": 1}})))]


def poison(job_id: str) -> list[tuple[bytes, bytes | None]]:
    return [(job_id.encode(), value) for value in (*poison_events(job_id).values(), None)]


async def test_poison_on_jobs_events_never_takes_the_api_down(api_settings: Settings) -> None:
    topics = Topics(api_settings.topic_prefix)
    await produce(api_settings, topics.events, [*poison("job_early"), *valid_job("job_raw")])
    counted = invalid_count(topics.events)
    per_batch = len(poison("job_x"))

    async with running_api(api_settings) as url, Client(url, ACME_KEY) as client:
        await until_ready(url)
        assert (await client.get("job_raw"))["status"] == "completed"
        submitted = await client.submit("ocr", {"pages": 2})
        # More poison while it runs, on the partition of a job that follows it.
        await produce(api_settings, topics.events, [*poison("job_live"), *valid_job("job_live")])
        await until_status(client, "job_live", "completed")
        await client.cancel(submitted["id"])
        before = {job_id: await client.get(job_id) for job_id in ("job_raw", "job_live", submitted["id"])}
        async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as health:
            assert health.status == 200
        assert invalid_count(topics.events) - counted == 2 * per_batch, "each bad record counted once"

    async with running_api(api_settings) as url, Client(url, ACME_KEY) as client:
        await until_ready(url)
        after = {job_id: await client.get(job_id) for job_id in before}
    assert after == before, "a restart resumes from its store"
    assert invalid_count(topics.events) - counted == 2 * per_batch, "a restart reads no record twice"

    async with running_api(another_replica(api_settings)) as url, Client(url, ACME_KEY) as client:
        await until_ready(url)
        after = {job_id: await client.get(job_id) for job_id in before}
        listed = {task["id"] for task in (await client.list(limit=200))["data"]}
    assert after == before, "a fresh replica folding the poison rebuilds the same jobs"
    assert listed == set(before)
    assert invalid_count(topics.events) - counted == 4 * per_batch


async def test_poison_on_webhook_topics_never_takes_the_api_down(api_settings: Settings) -> None:
    topics = Topics(api_settings.topic_prefix)
    endpoint_poison = poison_endpoints("ep_bad")
    attempt_poison = poison_attempts("msg_ok", "ep_raw")
    await produce(api_settings, topics.endpoints, [
        (b"ep_raw", orjson.dumps(endpoint_document("ep_raw"))),
        *((b"ep_bad", value) for value in endpoint_poison.values()),
        *((b"ep_raw", value) for value in endpoint_poison.values()),  # newer, but bad: the sound one stays
    ])
    # One key, one partition: the sound attempt is applied after all the poison before it.
    await produce(api_settings, topics.attempts, [
        *((b"msg_ok", value) for value in attempt_poison.values()),
        (b"msg_ok", orjson.dumps(attempt_document("msg_ok", "ep_raw"))),
    ])
    counted = {topic: invalid_count(topic) for topic in (topics.endpoints, topics.attempts)}

    def newly_counted() -> dict[str, float]:
        return {topic: invalid_count(topic) - before for topic, before in counted.items()}

    async with running_api(api_settings) as url, Client(url, ACME_KEY) as client:
        await until_ready(url)
        assert [e["id"] for e in await client.endpoints()] == ["ep_raw"]
        with pytest.raises(ApiError) as caught:
            await client.endpoint("ep_bad")
        assert caught.value.status == 404
        assert await until_deliveries(client, "ep_raw") == [("msg_ok", "succeeded")]
        created = await client.create_endpoint("https://hooks.example/new")
        await client.update_endpoint(created["id"], disabled=True)  # writes go on working
        # And poison while it runs, followed by a sound snapshot of the same endpoint.
        await produce(api_settings, topics.endpoints, [
            *((b"ep_raw", value) for value in endpoint_poison.values()),
            (b"ep_raw", orjson.dumps(endpoint_document("ep_raw", description="changed"))),
        ])
        async with asyncio.timeout(30):
            while (await client.endpoint("ep_raw"))["description"] != "changed":
                await asyncio.sleep(0.05)
        expected = {e["id"]: e for e in await client.endpoints()}
        assert set(expected) == {"ep_raw", created["id"]}
    assert newly_counted() == {topics.endpoints: 3 * len(endpoint_poison), topics.attempts: len(attempt_poison)}

    async with running_api(api_settings) as url, Client(url, ACME_KEY) as client:
        await until_ready(url)
        assert {e["id"]: e for e in await client.endpoints()} == expected
        assert await until_deliveries(client, "ep_raw") == [("msg_ok", "succeeded")]
    # The endpoint registry is read again on every start; the delivery log resumes from its store.
    assert newly_counted() == {topics.endpoints: 6 * len(endpoint_poison), topics.attempts: len(attempt_poison)}

    async with running_api(another_replica(api_settings)) as url, Client(url, ACME_KEY) as client:
        await until_ready(url)
        assert await until_deliveries(client, "ep_raw") == [("msg_ok", "succeeded")]
    assert newly_counted() == {topics.endpoints: 9 * len(endpoint_poison), topics.attempts: 2 * len(attempt_poison)}


async def until_deliveries(client: Client, endpoint_id: str) -> list[tuple[str, str]]:
    """The endpoint's deliveries once there are any (the API does not wait for attempts to be ready)."""
    async with asyncio.timeout(30):
        while not (deliveries := await client.deliveries(endpoint_id)):
            await asyncio.sleep(0.05)
    return [(d["id"], d["status"]) for d in deliveries]
