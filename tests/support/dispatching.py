"""Helpers for dispatcher tests on the real broker: endpoints written straight to their topic
(as the API writes them), finished jobs published as a worker would, the dispatcher as a
process of its own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from jobwire.config import Settings
from jobwire.devtools.broker import set_parent_death_signal
from jobwire.events import new_event
from jobwire.kafka.clients import make_producer
from jobwire.kafka.writers import JobEvents, KeyedWriter
from jobwire.timeutil import now_utc
from jobwire.topics import Topics
from jobwire.webhooks.model import Endpoint, SealedSecret, webhook_id
from jobwire.webhooks.registry import EndpointWriter
from jobwire.webhooks.secretbox import SecretBox, binding, new_webhook_secret
from tests.support.receiver import Receiver, ReceiverServer


async def register(settings: Settings, servers: list[ReceiverServer], *, tenant: str = "acme",
                   prefix: str = "ep_fault", **fields: Any) -> list[str]:
    """Endpoints written straight to their topic, as the API would write them."""
    assert settings.secret_key is not None
    producer = make_producer(settings.kafka)
    await producer.start()
    ids = []
    try:
        writer = EndpointWriter(KeyedWriter(producer, Topics(settings.topic_prefix).endpoints))
        box = SecretBox(settings.secret_key)
        for index, server in enumerate(servers):
            secret = new_webhook_secret()
            server.receiver.secrets.append(secret)
            now = now_utc()
            sealed = box.seal(secret, bound_to=binding(tenant, f"{prefix}{index}"))
            endpoint = Endpoint(f"{prefix}{index}", tenant, server.url, now, now, (SealedSecret(sealed),),
                                **fields)
            await writer.put(endpoint)
            ids.append(endpoint.id)
    finally:
        await producer.stop()
    return ids


async def publish_jobs(settings: Settings, first: int, count: int, *, tenant: str = "acme",
                       prefix: str = "job_f", producer: AIOKafkaProducer | None = None) -> dict[str, str]:
    """``count`` jobs, each created then completed (every 5th failed); job id -> finishing event id.
    With ``producer``, through it (a steady flow without a client start per call)."""
    own = producer is None
    producer = producer or make_producer(settings.kafka)
    if own:
        await producer.start()
    finishing: dict[str, str] = {}
    try:
        publisher = JobEvents(producer, Topics(settings.topic_prefix).events)

        async def one(i: int) -> None:
            job_id = f"{prefix}{i:05d}"
            await publisher.publish(new_event("job.created", job_id, tenant, {"operation": "ocr", "parameters": {"i": i}}))
            if i % 5 == 0:
                end = new_event("job.failed", job_id, tenant, {"error": {"code": "x", "message": "boom"}})
            else:
                end = new_event("job.completed", job_id, tenant, {"result": {"i": i}})
            await publisher.publish(end)
            finishing[job_id] = end.id

        for chunk in range(first, first + count, 2000):
            await asyncio.gather(*(one(i) for i in range(chunk, min(chunk + 2000, first + count))))
    finally:
        if own:
            await producer.stop()
    return finishing


def start_dispatcher(env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    with open(log_file, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "jobwire.cli", "dispatcher", "--metrics-port", "0"],
                                env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=set_parent_death_signal)


def check_deliveries(receivers: list[Receiver], endpoint_ids: list[str], finishing: dict[str, str]) -> int:
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


def run_audit(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    """``jobwire audit --json`` as an operator runs it: (exit status, report)."""
    done = subprocess.run([sys.executable, "-m", "jobwire.cli", "audit", "--json", *args],
                          env={**os.environ, **env}, capture_output=True, timeout=120, check=False)
    assert done.returncode in (0, 1), done.stderr.decode()[-2000:]
    import orjson

    return done.returncode, orjson.loads(done.stdout)
