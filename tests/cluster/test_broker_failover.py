"""Broker failover on a 3-node cluster: jobs flow through the API and the worker SDK, webhooks
go out, and the broker leading most `jobs.events` partitions is SIGKILLed, then restarted.

What is lost: nothing (asserted: every accepted job's webhook arrives). Duplicates: counted,
each with its original webhook-id. The API: every submission is accepted in the end (a 503
always carries Retry-After; any other error fails the test); reads answer 200 throughout. The
restarted broker: back in sync on every partition. Figures are printed (docs/scaling.md)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from jobwire.config import load_settings
from jobwire.devtools.cluster import LocalCluster
from jobwire.kafka.admin import ensure_topics
from jobwire.sdk.worker import JobContext
from jobwire.topics import Topics, topic_specs
from tests.support.cluster import API_KEY, cluster_env, fully_in_sync, leaders, topic_config
from tests.support.dispatching import register, start_dispatcher
from tests.support.eventually import eventually
from tests.support.receiver import Receiver, ReceiverServer
from tests.support.servers import running_api, running_worker

MAX_JOBS = 3000  # bounded; the flow stops once the fault is over and 60 more jobs are in
SUBMITTERS = 3
PACE_S = 0.05  # between one submitter's jobs: a steady flow rather than a burst
ATTEMPTS = 30  # per job, bounded; a client retries 503s and broken connections with the same key


@dataclass
class Submissions:
    """What the API answered, as a client saw it."""

    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key -> job id
    statuses: list[tuple[float, float, int | str]] = field(default_factory=list)  # (start, end, status)
    retry_after_missing: int = 0
    reads: list[int | str] = field(default_factory=list)

    def unavailable(self) -> list[tuple[float, float, int | str]]:
        return [s for s in self.statuses if s[2] not in (200, 202)]


async def submit(http: aiohttp.ClientSession, url: str, key: str, index: int, seen: Submissions) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": key}
    body = {"operation": "ocr", "parameters": {"i": index}}
    for _ in range(ATTEMPTS):
        started = time.monotonic()
        pause = 1.0
        try:
            async with http.post(f"{url}/v1/jobs", json=body, headers=headers) as response:
                document: dict[str, Any] = await response.json(content_type=None)
                seen.statuses.append((started, time.monotonic(), response.status))
                if response.status in (200, 202):
                    seen.accepted[key] = document["id"]
                    return
                assert response.status == 503, f"the API answered {response.status}: {document}"
                if "Retry-After" not in response.headers:
                    seen.retry_after_missing += 1
                pause = float(response.headers.get("Retry-After", "1"))
        except (TimeoutError, aiohttp.ClientError) as error:
            seen.statuses.append((started, time.monotonic(), type(error).__name__))
        await asyncio.sleep(pause)
    raise AssertionError(f"job {key} was not accepted in {ATTEMPTS} attempts")


async def submitter(http: aiohttp.ClientSession, url: str, first: int, seen: Submissions,
                    enough: asyncio.Event) -> None:
    for index in range(first, MAX_JOBS, SUBMITTERS):
        if enough.is_set():
            return
        await submit(http, url, f"key-{index:04d}", index, seen)
        await asyncio.sleep(PACE_S)


async def reader(http: aiohttp.ClientSession, url: str, seen: Submissions, stop: asyncio.Event) -> None:
    """Reads are served from the replica's own store: they must not notice the broker at all."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    while not stop.is_set():
        try:
            async with http.get(f"{url}/v1/jobs?limit=5", headers=headers) as response:
                seen.reads.append(response.status)
        except (TimeoutError, aiohttp.ClientError) as error:
            seen.reads.append(type(error).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


async def handler(job: JobContext) -> dict[str, Any]:
    return {"echo": job.parameters["i"]}


@pytest.mark.timeout(600)
async def test_sigkill_of_the_leading_broker_loses_no_webhook(kafka_cluster: LocalCluster, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    env = cluster_env(kafka_cluster.bootstrap)
    settings = load_settings(env)
    topics = Topics(settings.topic_prefix)
    await ensure_topics(settings)
    # The plan on a 3-broker cluster: three copies, two must acknowledge.
    assert await topic_config(settings, topics.events, "min.insync.replicas") == "2"
    assert await fully_in_sync(settings, [topics.events, topics.state, topics.endpoints])

    receiver = Receiver()
    seen = Submissions()
    async with ReceiverServer(receiver) as server:
        [endpoint_id] = await register(settings, [server])
        dispatcher = start_dispatcher(env, tmp_path / "dispatcher.log")
        try:
            async with running_api(settings) as url, running_worker(settings, "ocr", handler), \
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                stop_reading, enough = asyncio.Event(), asyncio.Event()
                reading = asyncio.create_task(reader(http, url, seen, stop_reading))
                flow = asyncio.gather(*(submitter(http, url, i, seen, enough) for i in range(SUBMITTERS)))

                async def accepted(more: int, what: str) -> None:
                    target = len(seen.accepted) + more
                    await eventually(lambda: len(seen.accepted) >= target, what, timeout_s=240)
                    assert not flow.done(), "the flow is still running"

                # The fault strikes while jobs are submitted and webhooks are going out.
                await eventually(lambda: len(receiver.received) >= 40, "webhooks flowing", timeout_s=120)
                led = await leaders(settings, topics.events)
                victim = max(set(led.values()), key=list(led.values()).count)
                killed_at = time.monotonic()
                kafka_cluster.kill(victim)
                # Jobs go on being accepted on two brokers (min.insync.replicas 2), then it returns.
                await accepted(60, "jobs accepted with a broker down")
                down_s = time.monotonic() - killed_at
                # Launched from this thread, which outlives the test: the node dies with the
                # thread that started it (PR_SET_PDEATHSIG), so not from a worker thread.
                node = kafka_cluster.node(victim)
                launched_at = time.monotonic()
                node.launch()
                await asyncio.to_thread(node.wait_ready, launched_at, 120.0, brokers=3)
                restarted_at = time.monotonic()
                await accepted(60, "jobs accepted after the restart")
                enough.set()
                await asyncio.wait_for(flow, 120)
                stop_reading.set()
                await reading
                jobs = set(seen.accepted.values())
                await eventually(lambda: jobs <= {r.data["id"] for r in receiver.received},
                                 "a webhook for every accepted job", timeout_s=180)
                caught_up = await eventually(
                    lambda: fully_in_sync(settings, [s.name for s in topic_specs(settings)]),
                    "the restarted broker back in sync on every partition", timeout_s=180)
                catch_up_s = time.monotonic() - restarted_at
        finally:
            dispatcher.terminate()
            dispatcher.wait(30)

    assert caught_up
    submitted = len(seen.accepted)
    assert submitted < MAX_JOBS, "the flow ended on the fault's conditions, not on its bound"
    by_job: dict[str, set[str]] = {}
    for r in receiver.received:
        if r.type.startswith("task."):
            by_job.setdefault(r.data["id"], set()).add(r.webhook_id)
    lost = jobs - set(by_job)
    assert not lost, f"{len(lost)} webhooks lost"
    assert all(len(ids) == 1 for ids in by_job.values()), "a duplicate carries its original webhook-id"
    assert receiver.rejected == 0
    assert seen.retry_after_missing == 0, "every 503 says when to come back"
    assert all(status == 200 for status in seen.reads), f"reads answered {set(seen.reads)}"
    duplicates = sum(1 for r in receiver.received if r.type.startswith("task.")) - len(by_job)
    unavailable = seen.unavailable()
    window = (max(s[1] for s in unavailable) - min(s[0] for s in unavailable)) if unavailable else 0.0
    slowest = max(end - start for start, end, _ in seen.statuses)
    with capsys.disabled():
        print(f"\nbroker failover: node {victim} (led {list(led.values()).count(victim)}/{len(led)} "
              f"jobs.events partitions) SIGKILLed for {down_s:.1f} s; jobs {submitted}, lost 0, duplicates {duplicates}; "
              f"API: {len(unavailable)} unavailable answers over {window:.1f} s "
              f"({sorted({str(s[2]) for s in unavailable})}), slowest submit {slowest:.1f} s, "
              f"{len(seen.reads)} reads all 200; restarted broker in sync after {catch_up_s:.1f} s; "
              f"endpoint {endpoint_id}")
