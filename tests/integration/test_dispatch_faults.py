"""What a crash costs: the dispatcher killed with SIGKILL mid-run, and the broker stopped and
restarted mid-run. Every (event, endpoint) pair must arrive; duplicates carry one webhook-id.
What is lost: nothing (asserted); duplicates: counted and printed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jobwire.config import Settings, load_settings
from jobwire.devkafka import LocalKafka, free_port, set_parent_death_signal
from jobwire.endpoints import EndpointWriter
from jobwire.events import new_event
from jobwire.log import JobEvents, KeyedWriter, ensure_topics, make_producer
from jobwire.secretbox import SecretBox, new_webhook_secret
from jobwire.timeutil import now_utc
from jobwire.topics import Topics
from jobwire.webhooks import Endpoint, SealedSecret, webhook_id
from tests.conftest import env_for
from tests.support.receiver import Receiver, ReceiverServer

SECRET_KEY = "fault-test-secret-key-0123456789"
JOBS = 2000


def fault_env(bootstrap: str) -> dict[str, str]:
    return env_for(bootstrap, JOBWIRE_SECRET_KEY=SECRET_KEY, JOBWIRE_ALLOWED_TARGETS="127.0.0.1/32",
                   JOBWIRE_RETRY_SCHEDULE="0,0.5,1,2,4", JOBWIRE_DEV="1", JOBWIRE_LOG_LEVEL=os.environ.get("FAULT_LOG_LEVEL", "WARNING"))


async def register(settings: Settings, servers: list[ReceiverServer]) -> list[str]:
    """Endpoints written straight to their topic, as the API would write them."""
    producer = make_producer(settings.kafka)
    await producer.start()
    ids = []
    try:
        writer = EndpointWriter(KeyedWriter(producer, Topics(settings.topic_prefix).endpoints))
        box = SecretBox(SECRET_KEY)
        for index, server in enumerate(servers):
            secret = new_webhook_secret()
            server.receiver.secrets.append(secret)
            now = now_utc()
            endpoint = Endpoint(f"ep_fault{index}", "acme", server.url, now, now, (SealedSecret(box.seal(secret)),))
            await writer.put(endpoint)
            ids.append(endpoint.id)
    finally:
        await producer.stop()
    return ids


async def publish_jobs(settings: Settings, first: int, count: int) -> dict[str, str]:
    """``count`` jobs, each created then completed (every 5th failed); job id -> finishing event id."""
    producer = make_producer(settings.kafka)
    await producer.start()
    finishing: dict[str, str] = {}
    try:
        publisher = JobEvents(producer, Topics(settings.topic_prefix).events)

        async def one(i: int) -> None:
            job_id = f"job_f{i:05d}"
            await publisher.publish(new_event("job.created", job_id, "acme", {"operation": "ocr", "parameters": {"i": i}}))
            if i % 5 == 0:
                end = new_event("job.failed", job_id, "acme", {"error": {"code": "x", "message": "boom"}})
            else:
                end = new_event("job.completed", job_id, "acme", {"result": {"i": i}})
            await publisher.publish(end)
            finishing[job_id] = end.id

        await asyncio.gather(*(one(i) for i in range(first, first + count)))
    finally:
        await producer.stop()
    return finishing


def start_dispatcher(env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    with open(log_file, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "jobwire.cli", "dispatcher", "--metrics-port", "0"],
                                env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=set_parent_death_signal)


def check(receivers: list[Receiver], endpoint_ids: list[str], finishing: dict[str, str]) -> int:
    """Everything arrived exactly as expected; returns the number of duplicates."""
    duplicates = 0
    for receiver, endpoint_id in zip(receivers, endpoint_ids, strict=True):
        expected = {webhook_id(event_id, endpoint_id): job_id for job_id, event_id in finishing.items()}
        got: dict[str, set[str]] = {}
        for r in receiver.received:
            got.setdefault(r.webhook_id, set()).add(r.data["id"])
        missing = set(expected) - set(got)
        assert not missing, f"{len(missing)} deliveries lost for {endpoint_id}: jobs {sorted(expected[m] for m in missing)[:10]}"
        assert set(got) == set(expected), "no delivery that should not exist"
        assert all(jobs == {expected[wid]} for wid, jobs in got.items()), "a webhook-id always means the same job"
        assert receiver.rejected == 0
        duplicates += len(receiver.received) - len(got)
    return duplicates


def all_arrived(receivers: list[Receiver], count: int) -> bool:
    return all(len({r.webhook_id for r in receiver.received}) >= count for receiver in receivers)


@pytest.mark.timeout(420)
async def test_sigkill_of_the_dispatcher_loses_nothing(kafka_bootstrap: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    env = fault_env(kafka_bootstrap)
    settings = load_settings(env)
    await ensure_topics(settings)
    receivers = [Receiver(), Receiver()]
    async with ReceiverServer(receivers[0]) as a, ReceiverServer(receivers[1]) as b:
        endpoint_ids = await register(settings, [a, b])
        finishing: dict[str, str] = {}
        kills = 0
        dispatcher = start_dispatcher(env, tmp_path / "dispatcher.log")
        try:
            for wave in range(4):  # bounded: four waves of jobs, a SIGKILL in the middle of each
                before = len(receivers[0].received)
                finishing |= await publish_jobs(settings, wave * (JOBS // 4), JOBS // 4)
                # Kill while this instance is delivering, not while it is still starting.
                await receivers[0].wait_for(lambda: len(receivers[0].received) >= before + 60, timeout_s=90)
                dispatcher.send_signal(signal.SIGKILL)
                dispatcher.wait()
                kills += 1
                dispatcher = start_dispatcher(env, tmp_path / "dispatcher.log")
            with contextlib.suppress(AssertionError):  # check() below says what is missing
                await receivers[0].wait_for(lambda: all_arrived(receivers, JOBS), timeout_s=120)
        finally:
            dispatcher.terminate()
            dispatcher.wait(30)
        duplicates = check(receivers, endpoint_ids, finishing)
    with capsys.disabled():
        print(f"\n[faults] SIGKILL x{kills}: {JOBS * 2} (event, endpoint) pairs, 0 lost, {duplicates} duplicates "
              "(each with its original webhook-id)")


@pytest.mark.timeout(420)
async def test_broker_restart_mid_run_loses_nothing(kafka_broker: LocalKafka | None, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    if kafka_broker is None:
        pytest.skip("restarts a local broker of its own")
    broker = LocalKafka(kafka_broker.cache_dir, tmp_path / "broker", port=free_port())
    await asyncio.to_thread(broker.start)
    try:
        env = fault_env(broker.bootstrap)
        settings = load_settings(env)
        await ensure_topics(settings)
        receivers = [Receiver(), Receiver()]
        async with ReceiverServer(receivers[0]) as a, ReceiverServer(receivers[1]) as b:
            endpoint_ids = await register(settings, [a, b])
            finishing = await publish_jobs(settings, 0, JOBS)
            dispatcher = start_dispatcher(env, tmp_path / "dispatcher.log")
            try:
                await receivers[0].wait_for(lambda: len(receivers[0].received) >= 200, timeout_s=60)
                await asyncio.to_thread(broker.stop)
                await asyncio.sleep(3)
                await asyncio.to_thread(broker.start)
                await receivers[0].wait_for(lambda: all_arrived(receivers, JOBS), timeout_s=240)
                assert dispatcher.poll() is None, "the dispatcher rode out the broker restart"
            finally:
                dispatcher.terminate()
                dispatcher.wait(30)
            duplicates = check(receivers, endpoint_ids, finishing)
    finally:
        await asyncio.to_thread(broker.stop)
    with capsys.disabled():
        print(f"\n[faults] broker restart: {JOBS * 2} (event, endpoint) pairs, 0 lost, {duplicates} duplicates")
