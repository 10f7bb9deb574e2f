"""Every job ends, end to end (real broker, API, dispatcher, workers, loopback receivers that
verify with svix): a worker killed with SIGKILL leaves its job to the heartbeat deadline and
the subscriber still gets ``task.failed``; a dispatcher restart keeps the timers; a job whose
worker heartbeats outlives its heartbeat limit; a completion racing the expiry and two
deciders writing the same expiry each make exactly one terminal state and one webhook.
(A job no worker takes: tests/integration/test_seed_example.py.) What a kill -9 loses: nothing;
the job still ends and its webhook still arrives."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jobwire.config import Settings, load_settings
from jobwire.deadlines import expiry_event, next_due
from jobwire.devtools.broker import set_parent_death_signal
from jobwire.events import new_event
from jobwire.kafka.admin import ensure_topics
from jobwire.kafka.clients import make_producer
from jobwire.kafka.writers import JobEvents
from jobwire.lifecycle import fold
from jobwire.sdk.client import Client
from jobwire.sdk.worker import JobContext
from jobwire.timeutil import parse_utc
from jobwire.topics import Topics
from tests.conftest import env_for
from tests.integration.test_dispatch import ACME_KEY, endpoint_for, running_dispatcher
from tests.support.eventually import eventually
from tests.support.groups import dispatcher_idle
from tests.support.receiver import Receiver, ReceiverServer
from tests.support.servers import running_api, running_worker

SLACK_S = 3.0  # the dispatcher's check interval, a commit, a fetch: generous on a busy 2-core box


def expiry_env(bootstrap: str) -> dict[str, str]:
    return env_for(bootstrap, JOBWIRE_API_KEYS=f"acme:{ACME_KEY}", JOBWIRE_DEV="1",
                   JOBWIRE_SECRET_KEY="test-secret-key-0123456789", JOBWIRE_ALLOWED_TARGETS="127.0.0.1/32",
                   JOBWIRE_RETRY_SCHEDULE="0,0.3,0.6")


async def ready_settings(bootstrap: str) -> tuple[dict[str, str], Settings]:
    env = expiry_env(bootstrap)
    settings = load_settings(env)
    await ensure_topics(settings)
    return env, settings


async def status_becomes(client: Client, job_id: str, wanted: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    task = await client.get(job_id)
    while task["status"] != wanted:
        assert time.monotonic() < deadline, f"{job_id} is {task['status']}, not {wanted}"
        await asyncio.sleep(0.05)
        task = await client.get(job_id)
    return task


def webhooks_for(receiver: Receiver, job_id: str) -> list[Any]:
    return [r for r in receiver.received if r.data.get("id") == job_id]


async def test_a_killed_workers_job_times_out_and_its_subscriber_hears(kafka_bootstrap: str, tmp_path: Path) -> None:
    env, settings = await ready_settings(kafka_bootstrap)
    receiver = Receiver()
    async with ReceiverServer(receiver) as server, running_api(settings) as url, running_dispatcher(settings), \
            Client(url, ACME_KEY) as client:
        await endpoint_for(client, server)
        with open(tmp_path / "worker.log", "wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "jobwire.cli", "worker", "--operation", "slow",
                 "--handler", "tests.support.slow_handlers:never_finishes"],
                env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, preexec_fn=set_parent_death_signal)
        try:
            job = await client.submit("slow", {}, heartbeat_timeout_s=2, timeout_s=600)
            running = await status_becomes(client, job["id"], "processing")
            deadline = time.monotonic() + 30
            while (await client.get(job["id"]))["progress"]["processed"] != 1:  # the handler is under way
                assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-2000:]
                await asyncio.sleep(0.05)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        finally:
            if worker.poll() is None:
                worker.kill()
        failed = await status_becomes(client, job["id"], "failed")
        assert failed["error"]["code"] == "timeout"
        assert failed["error"]["details"]["deadline"] == "heartbeat_timeout_s"
        # The expiry is dated at the deadline: the last sign of life plus the limit.
        silent_s = (parse_utc(failed["finished_at"]) - parse_utc(running["updated_at"])).total_seconds()
        assert 2 <= silent_s <= 2 + SLACK_S + 1, silent_s
        await receiver.wait_for(lambda: webhooks_for(receiver, job["id"]) != [])
        [hook] = webhooks_for(receiver, job["id"])
        assert hook.type == "task.failed" and hook.data["error"]["code"] == "timeout"


async def test_a_heartbeating_worker_keeps_a_long_job_alive(kafka_bootstrap: str) -> None:
    _, settings = await ready_settings(kafka_bootstrap)

    async def long_job(job: JobContext) -> dict[str, Any]:
        await asyncio.sleep(3 * 2)  # three heartbeat limits, with no event of its own
        return {"done": True}

    async with running_api(settings) as url, running_dispatcher(settings), running_worker(settings, "long", long_job), \
            Client(url, ACME_KEY) as client:
        job = await client.submit("long", {}, heartbeat_timeout_s=2)
        done = await client.wait(job["id"], timeout_s=60)
        assert done["status"] == "completed" and done["result"] == {"done": True}, done["error"]
        assert [e["event"]["type"] for e in await client.events(job["id"])] == \
            ["job.created", "job.started", "job.completed"], "heartbeats stay out of the history"


async def test_a_dispatcher_restart_keeps_the_timers(kafka_bootstrap: str) -> None:
    _, settings = await ready_settings(kafka_bootstrap)
    receiver = Receiver()
    async with ReceiverServer(receiver) as server, running_api(settings) as url, Client(url, ACME_KEY) as client:
        await endpoint_for(client, server)
        async with running_dispatcher(settings) as dispatcher:
            job = await client.submit("nobody", {}, pending_timeout_s=4)
            deadline = time.monotonic() + 30
            while len(dispatcher.timers) == 0:  # its timer is armed in the first dispatcher
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        assert (await client.get(job["id"]))["status"] == "pending"
        pending_until = parse_utc(job["pending_deadline_at"]).timestamp()
        while time.time() < pending_until + 0.5:  # no dispatcher runs while the deadline passes
            await asyncio.sleep(0.1)
        assert (await client.get(job["id"]))["status"] == "pending"
        async with running_dispatcher(settings):
            failed = await status_becomes(client, job["id"], "failed")
            assert failed["error"]["code"] == "expired"
            await receiver.wait_for(lambda: webhooks_for(receiver, job["id"]) != [])


async def test_completion_racing_expiry_makes_one_terminal_state_and_one_webhook(kafka_bootstrap: str) -> None:
    _, settings = await ready_settings(kafka_bootstrap)
    receiver = Receiver()
    offsets_s = (-0.3, -0.1, 0.0, 0.1, 0.3)  # completions around the deadline: either may win
    async with ReceiverServer(receiver) as server, running_api(settings) as url, running_dispatcher(settings), \
            Client(url, ACME_KEY) as client:
        await endpoint_for(client, server)
        jobs = [await client.submit("race", {}, timeout_s=2) for _ in offsets_s]
        for job in jobs:
            await client._request("POST", f"/v1/jobs/{job['id']}/events", json={"type": "job.started"},
                                  expect=(202,))

        async def complete_at(job: dict[str, Any], offset_s: float) -> None:
            moment = parse_utc(job["deadline_at"]).timestamp() + offset_s
            await asyncio.sleep(max(0.0, moment - time.time()))
            await client._request("POST", f"/v1/jobs/{job['id']}/events",
                                  json={"type": "job.completed", "data": {"result": {"ok": True}}},
                                  expect=(202, 409))

        await asyncio.gather(*(complete_at(job, offset) for job, offset in zip(jobs, offsets_s, strict=True)))
        finals = [await client.wait(job["id"], timeout_s=30) for job in jobs]
        await receiver.wait_for(lambda: all(webhooks_for(receiver, job["id"]) for job in jobs))
        # Every record handled and committed: a second webhook for any of them would be here.
        await eventually(lambda: dispatcher_idle(settings), "the dispatcher idle", timeout_s=60)
        for final in finals:
            hooks = webhooks_for(receiver, final["id"])
            assert len({h.webhook_id for h in hooks}) == 1, hooks
            assert hooks[0].type == f"task.{final['status']}"
            history = await client.events(final["id"])
            terminal = [e for e in history if e["event"]["type"] in ("job.completed", "job.failed")]
            assert [e["verdict"] for e in terminal].count("accepted") == 1
            assert all(e["reason"] for e in terminal if e["verdict"] == "rejected")
            if final["status"] == "failed":
                assert final["error"]["code"] == "timeout"


async def test_two_deciders_writing_the_same_expiry_make_one_transition(kafka_bootstrap: str) -> None:
    _, settings = await ready_settings(kafka_bootstrap)
    receiver = Receiver()
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        async with ReceiverServer(receiver) as server, running_api(settings) as url, Client(url, ACME_KEY) as client, \
                running_dispatcher(settings):
            await endpoint_for(client, server)
            task = await client.submit("twice", {}, timeout_s=3600)
            created = fold([new_event("job.created", task["id"], "acme", {"operation": "twice", "parameters": {},
                                                                          "timeout_s": 3600},
                                      time=task["created_at"])])
            assert created is not None
            expiry = expiry_event(created, next_due(created))  # type: ignore[arg-type]
            publisher = JobEvents(producer, Topics(settings.topic_prefix).events)
            await asyncio.gather(publisher.publish(expiry), publisher.publish(expiry))
            failed = await status_becomes(client, task["id"], "failed")
            assert failed["version"] == task["version"] + 1
            await receiver.wait_for(lambda: webhooks_for(receiver, task["id"]) != [])
            await eventually(lambda: dispatcher_idle(settings), "the dispatcher idle", timeout_s=60)
            assert len(webhooks_for(receiver, task["id"])) == 1
    finally:
        await producer.stop()


async def test_a_worker_that_ignores_a_cancel_has_its_job_canceled_after_the_grace(kafka_bootstrap: str) -> None:
    settings = load_settings({**expiry_env(kafka_bootstrap), "JOBWIRE_CANCEL_GRACE_S": "1"})
    await ensure_topics(settings)
    receiver = Receiver()
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        # A worker of its own making (not the SDK, which stops its handlers): it starts the job
        # and then goes silent, cancel or not.
        publisher = JobEvents(producer, Topics(settings.topic_prefix).events)
        async with ReceiverServer(receiver) as server, running_api(settings) as url, running_dispatcher(settings), \
                Client(url, ACME_KEY) as client:
            await endpoint_for(client, server)
            job = await client.submit("stubborn", {}, timeout_s=600)
            await publisher.publish(new_event("job.started", job["id"], "acme", {}))
            await status_becomes(client, job["id"], "processing")
            asked = await client.cancel(job["id"], reason="the customer gave up")
            assert asked["status"] == "processing" and asked["cancel_requested"] is True
            canceled = await status_becomes(client, job["id"], "canceled")
            # Dated at the end of the grace, counted from the cancel request.
            waited_s = (parse_utc(canceled["finished_at"]) - parse_utc(asked["updated_at"])).total_seconds()
            assert waited_s == 1.0, waited_s
            assert "the customer gave up" in (await client.events(job["id"]))[-1]["event"]["data"]["reason"]
            await receiver.wait_for(lambda: webhooks_for(receiver, job["id"]) != [])
            [hook] = webhooks_for(receiver, job["id"])
            assert hook.type == "task.canceled"
            # The worker wakes up and reports a result: refused, and kept in the history.
            await publisher.publish(new_event("job.completed", job["id"], "acme", {"result": {"late": True}}))
            history = await eventually(lambda: late_entry(client, job["id"]), "the late outcome in the history",
                                       timeout_s=30)
            assert history["verdict"] == "rejected"
            assert (await client.get(job["id"]))["status"] == "canceled"
    finally:
        await producer.stop()


async def late_entry(client: Client, job_id: str) -> dict[str, Any] | None:
    entries = [e for e in await client.events(job_id) if e["event"]["type"] == "job.completed"]
    return entries[0] if entries else None
