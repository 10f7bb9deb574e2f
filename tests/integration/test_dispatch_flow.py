"""Flow control on the real broker: one tenant's slow or rate-limited endpoints never delay
another tenant's webhooks, and a large backlog for a slow endpoint keeps the dispatcher's
memory flat while every delivery is either made or durably parked."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from jobwire.config import Settings, load_settings
from jobwire.kafka.admin import ensure_topics
from jobwire.kafka.clients import client_options
from jobwire.topics import Topics
from jobwire.webhooks.model import Delivery, webhook_id
from tests.conftest import env_for
from tests.integration.test_dispatch import running_dispatcher
from tests.support.dispatching import publish_jobs, register, start_dispatcher
from tests.support.receiver import Receiver, ReceiverServer

SECRET_KEY = "flow-test-secret-key-0123456789"


def flow_env(bootstrap: str, **env: str) -> dict[str, str]:
    return env_for(bootstrap, JOBWIRE_SECRET_KEY=SECRET_KEY, JOBWIRE_ALLOWED_TARGETS="127.0.0.1/32",
                   JOBWIRE_RETRY_SCHEDULE="0,5,30", JOBWIRE_DEV="1", JOBWIRE_LOG_LEVEL="WARNING", **env)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@pytest.mark.timeout(300)
async def test_a_slow_and_a_rate_limited_tenant_never_delay_another(kafka_bootstrap: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(flow_env(kafka_bootstrap, JOBWIRE_ENDPOINT_MAX_QUEUED="200"))
    await ensure_topics(settings)
    slow = [Receiver(delay_s=3.0) for _ in range(3)]
    limited, healthy = Receiver(), Receiver()
    async with ReceiverServer(slow[0]) as s0, ReceiverServer(slow[1]) as s1, ReceiverServer(slow[2]) as s2, \
            ReceiverServer(limited) as lim, ReceiverServer(healthy) as ok:
        await register(settings, [s0, s1, s2], tenant="acme", prefix="ep_slow")
        await register(settings, [lim], tenant="acme", prefix="ep_limited", rate_limit_per_s=1.0)
        [healthy_id] = await register(settings, [ok], tenant="globex", prefix="ep_ok")
        # Thousands queued for acme first: 600 jobs x 4 endpoints.
        await publish_jobs(settings, 0, 600, tenant="acme", prefix="job_acme")
        async with running_dispatcher(settings):
            await slow[0].wait_for(lambda: len(slow[0].seen) >= 16, timeout_s=60)  # acme's backlog is being worked
            published: dict[str, float] = {}
            finishing_ids: set[str] = set()
            for batch in range(20):  # globex: 200 jobs over about 4 s, while acme's backlog stands
                started = time.monotonic()
                finishing = await publish_jobs(settings, batch * 10, 10, tenant="globex", prefix="job_globex")
                published.update({job_id: started for job_id in finishing})
                finishing_ids.update(finishing.values())
                await asyncio.sleep(0.2)
            await healthy.wait_for(lambda: len({r.data["id"] for r in healthy.received}) >= 200, timeout_s=60)
            slow_done = sum(len(r.received) for r in slow)
            limited_done = len(limited.received)
    first_arrival: dict[str, float] = {}
    for received in healthy.received:
        first_arrival.setdefault(received.data["id"], received.at)
    latencies = [first_arrival[job_id] - at for job_id, at in published.items()]
    with capsys.disabled():
        print(f"\n[flow] globex: 200 webhooks, p50 {sorted(latencies)[100] * 1000:.0f} ms, "
              f"p99 {p99(latencies) * 1000:.0f} ms; meanwhile acme's slow endpoints took {slow_done}, "
              f"its 1/s endpoint {limited_done}")
    assert p99(latencies) < 1.0, "another tenant's backlog must not delay these"
    assert healthy.rejected == 0
    assert {r.webhook_id for r in healthy.received} <= {webhook_id(e, healthy_id) for e in finishing_ids}
    assert all(r.data["id"].startswith("job_globex") for r in healthy.received), "only globex's own jobs"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def read_parked(settings: Settings, topics: list[str]) -> set[str]:
    """Delivery ids of every record on the retry path (requests topic and tiers)."""
    consumer = AIOKafkaConsumer(**client_options(settings.kafka), enable_auto_commit=False)
    await consumer.start()
    ids: set[str] = set()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in range(settings.events_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in partitions]
            if all(position >= ends[tp] for position, tp in zip(positions, partitions, strict=True)):
                break
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                ids.update(Delivery.decode(r.value).id for r in records if r.value)
    finally:
        await consumer.stop()
    return ids


BACKLOG_JOBS = int(os.environ.get("BACKLOG_JOBS", "20000"))
RSS_LIMIT_MB = 300


@pytest.mark.timeout(420)
async def test_a_backlog_for_a_slow_endpoint_keeps_memory_flat_and_loses_nothing(
        kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = flow_env(kafka_bootstrap, JOBWIRE_EVENTS_PARTITIONS="3")
    settings = load_settings(env)
    await ensure_topics(settings)
    receiver = Receiver(delay_s=2.0)
    async with ReceiverServer(receiver) as server:
        [endpoint_id] = await register(settings, [server])
        finishing = await publish_jobs(settings, 0, BACKLOG_JOBS)  # the backlog waits before the dispatcher starts
        dispatcher = start_dispatcher(env, tmp_path / "dispatcher.log")
        peak = 0.0
        try:
            topics = Topics(settings.topic_prefix)
            group = f"{settings.topic_prefix}jobwire-dispatcher"
            deadline = time.monotonic() + 240
            consumed = False
            while time.monotonic() < deadline and not consumed:  # until every record is settled
                await asyncio.sleep(1)
                assert dispatcher.poll() is None, (tmp_path / "dispatcher.log").read_text()[-3000:]
                peak = max(peak, rss_mb(dispatcher.pid))
                consumed = await committed_to_end(settings, group, topics.events)
            for _ in range(10):  # and a while longer, working the parked backlog
                await asyncio.sleep(1)
                peak = max(peak, rss_mb(dispatcher.pid))
            assert consumed, "the dispatcher settled every record of the backlog"
        finally:
            dispatcher.terminate()
            dispatcher.wait(60)
        expected = {webhook_id(event_id, endpoint_id) for event_id in finishing.values()}
        delivered = {r.webhook_id for r in receiver.received}
        parked = await read_parked(settings,
                                   [topics.requests, *(topics.retry(d) for d in (5.0, 30.0))])
    missing = expected - delivered - parked
    with capsys.disabled():
        print(f"\n[backlog] {len(expected)} deliveries to a 2 s endpoint: {len(delivered)} delivered, "
              f"{len(expected & parked - delivered)} parked; dispatcher peak RSS {peak:.0f} MB")
    assert not missing, f"{len(missing)} deliveries neither delivered nor parked"
    assert peak < RSS_LIMIT_MB, f"dispatcher RSS {peak:.0f} MB over {RSS_LIMIT_MB} MB"


async def committed_to_end(settings, group: str, topic: str) -> bool:  # type: ignore[no-untyped-def]
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    consumer = AIOKafkaConsumer(**client_options(settings.kafka), enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        partitions = [TopicPartition(topic, p) for p in range(settings.events_partitions)]
        if not partitions or any(tp not in committed for tp in partitions):
            return False
        ends = await consumer.end_offsets(partitions)
        return all(committed[tp].offset >= ends[tp] for tp in partitions)
    finally:
        await consumer.stop()
        await admin.close()
