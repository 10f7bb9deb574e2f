"""The status API on a real broker, with real workers and real HTTP on loopback."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import aiohttp
import orjson
import pytest

from jobwire.config import Settings
from jobwire.devtools.demo_ops import DEMO_OPERATIONS
from jobwire.kafka.admin import ensure_topics
from jobwire.sdk.client import ApiError, Client
from jobwire.sdk.worker import JobContext
from tests.conftest import another_replica, settings_for
from tests.support.eventually import eventually
from tests.support.servers import running_api, running_worker

ACME_KEY = "key_acme_0123456789"
GLOBEX_KEY = "key_globex_0123456789"


@pytest.fixture
async def api_settings(kafka_bootstrap: str) -> Settings:
    settings = settings_for(kafka_bootstrap, JOBWIRE_API_KEYS=f"acme:{ACME_KEY},globex:{GLOBEX_KEY}")
    await ensure_topics(settings)
    return settings


async def test_submit_work_and_watch_it_finish(api_settings: Settings) -> None:
    async with running_api(api_settings) as url, running_worker(api_settings, "wordcount", DEMO_OPERATIONS["wordcount"]), \
            Client(url, ACME_KEY) as client:
        task = await client.submit("wordcount", {"text": "to be or not to be"}, metadata={"customer": "c1"})
        assert task["status"] == "pending"
        assert (await client.get(task["id"]))["id"] == task["id"], "no 404 right after the 202"
        streamed = client.stream(task["id"])
        done = await client.wait(task["id"], timeout_s=30)
        assert done["status"] == "completed"
        assert done["result"] == {"words": 6, "distinct": 4}
        assert done["result_checksum"]["algorithm"] == "sha256"
        assert done["metadata"] == {"customer": "c1"}
        assert done["started_at"] and done["finished_at"] and done["version"] == 3
        frames = [frame async for frame in streamed]
        assert [f["event"]["type"] for f in frames] == ["job.created", "job.started", "job.completed"]
        history = await client.events(task["id"])
        assert [h["event"]["type"] for h in history] == ["job.created", "job.started", "job.completed"]
        assert all(h["verdict"] == "accepted" for h in history)


async def test_a_batch_of_jobs_is_run_by_a_worker_and_its_keys_replay(api_settings: Settings) -> None:
    async with running_api(api_settings) as url, running_worker(api_settings, "wordcount", DEMO_OPERATIONS["wordcount"]), \
            Client(url, ACME_KEY) as client:
        jobs = [{"job": {"operation": "wordcount", "parameters": {"text": "a " * n}}, "idempotency_key": f"batch-{n}"}
                for n in range(1, 6)]
        answers = await client.submit_batch(jobs)
        assert [a["status"] for a in answers] == [202] * 5
        done = [await client.wait(a["task"]["id"], timeout_s=30) for a in answers]
        assert [d["result"]["words"] for d in done] == [1, 2, 3, 4, 5]
        again = await client.submit_batch(jobs[:2])
        assert [(a["status"], a["task"]["id"]) for a in again] == [(200, answers[0]["task"]["id"]),
                                                                   (200, answers[1]["task"]["id"])]


async def test_sse_streams_live_until_terminal(api_settings: Settings) -> None:
    async with running_api(api_settings) as url, Client(url, ACME_KEY) as client:
        task = await client.submit("manual", {})
        received: list[str] = []

        async def listen() -> None:
            async for frame in client.stream(task["id"]):
                received.append(frame["event"]["type"])

        listener = asyncio.create_task(listen())
        # The stream is open once its history (job.created) has arrived. Each event after that
        # is posted only when the previous one came through: a frame can then only have come
        # live, never from a replay of history.
        await eventually(lambda: received == ["job.created"], "the stream's history")
        async with aiohttp.ClientSession() as http:
            for body in ({"type": "job.started"}, {"type": "job.progress", "data": {"total": 2, "processed": 1}},
                         {"type": "job.completed", "data": {"result": {"ok": True}}}):
                seen = len(received)
                async with http.post(f"{url}/v1/jobs/{task['id']}/events", json=body,
                                     headers={"X-API-Key": ACME_KEY}) as response:
                    assert response.status == 202, await response.text()
                await eventually(lambda: len(received) > seen, f"{body['type']} on the open stream")
                assert received[-1] == body["type"]
        await asyncio.wait_for(listener, 15)
        assert received == ["job.created", "job.started", "job.progress", "job.completed"]


async def test_prefer_wait_returns_the_finished_task(api_settings: Settings) -> None:
    async with running_api(api_settings) as url, running_worker(api_settings, "fail", DEMO_OPERATIONS["fail"]), \
            aiohttp.ClientSession() as http:
        async with http.post(f"{url}/v1/jobs", json={"operation": "fail", "parameters": {"message": "no pages"}},
                             headers={"X-API-Key": ACME_KEY, "Prefer": "wait=20"}) as response:
            assert response.status == 200
            task = await response.json()
    assert task["status"] == "failed"
    assert task["error"] == {"code": "demo_failure", "message": "no pages", "details": {"operation": "fail"}}
    assert task["result"] == {"error": "no pages", "details": {"operation": "fail"}}


async def test_long_poll_returns_on_change(api_settings: Settings) -> None:
    async with running_api(api_settings) as url, Client(url, ACME_KEY) as client, aiohttp.ClientSession() as http:
        task = await client.submit("manual", {})
        headers = {"X-API-Key": ACME_KEY, "Prefer": "wait=20", "If-None-Match": '"1"'}
        poll = asyncio.create_task(http.get(f"{url}/v1/jobs/{task['id']}", headers=headers))
        await asyncio.sleep(0.3)
        assert not poll.done(), "the poll waits while nothing changes"
        await client.cancel(task["id"])
        response = await asyncio.wait_for(poll, 10)
        assert response.status == 200 and (await response.json())["status"] == "canceled"
        response.release()
        quiet = await http.get(f"{url}/v1/jobs/{task['id']}",
                               headers={"X-API-Key": ACME_KEY, "Prefer": "wait=1", "If-None-Match": '"2"'})
        assert quiet.status == 304, "terminal and unchanged: not modified"
        quiet.release()


async def test_cancel_pending_and_processing(api_settings: Settings) -> None:
    started = asyncio.Event()

    async def slow(job: JobContext) -> dict[str, Any]:
        started.set()
        await asyncio.sleep(30)
        return {}

    async with running_api(api_settings) as url, running_worker(api_settings, "slow", slow, cancel_grace_s=0.2), \
            Client(url, ACME_KEY) as client:
        pending = await client.submit("nobody-runs-this", {})
        assert (await client.cancel(pending["id"], reason="changed my mind"))["status"] == "canceled"

        running = await client.submit("slow", {})
        await asyncio.wait_for(started.wait(), 15)
        async with asyncio.timeout(15):  # until this replica has applied job.started
            while (await client.get(running["id"]))["status"] != "processing":
                await asyncio.sleep(0.05)
        requested = await client.cancel(running["id"])
        assert requested["cancel_requested"] is True
        final = await client.wait(running["id"], timeout_s=20)
        assert final["status"] == "canceled"
        with pytest.raises(ApiError) as caught:
            await client.cancel(running["id"])
        assert caught.value.status == 409


async def test_idempotent_submit_and_tenant_isolation(api_settings: Settings) -> None:
    async with running_api(api_settings) as url, Client(url, ACME_KEY) as acme, Client(url, GLOBEX_KEY) as globex:
        first, second = await asyncio.gather(
            acme.submit("ocr", {"f": 1}, idempotency_key="order-7"),
            acme.submit("ocr", {"f": 1}, idempotency_key="order-7"),
        )
        assert first["id"] == second["id"]
        page = await acme.list(operation="ocr")
        assert [t["id"] for t in page["data"]] == [first["id"]], "concurrent repeats made one job"
        with pytest.raises(ApiError) as caught:
            await globex.get(first["id"])
        assert caught.value.status == 404
        assert (await globex.list())["data"] == []


async def test_read_your_writes_across_two_replicas(api_settings: Settings) -> None:
    async with running_api(api_settings) as url_a, running_api(another_replica(api_settings)) as url_b, \
            aiohttp.ClientSession() as http:
        for _ in range(20):
            async with http.post(f"{url_a}/v1/jobs", json={"operation": "ocr", "parameters": {}},
                                 headers={"X-API-Key": ACME_KEY}) as created:
                assert created.status == 202
                job = await created.json()
                position = created.headers["Jobwire-Position"]
            async with http.get(f"{url_b}/v1/jobs/{job['id']}",
                                headers={"X-API-Key": ACME_KEY, "Jobwire-Position": position}) as read:
                assert read.status == 200, "replica B waited for the write made on A"


async def _digest(url: str) -> tuple[int, str]:
    tasks: list[dict[str, Any]] = []
    async with Client(url, ACME_KEY) as client:
        cursor = None
        while True:
            page = await client.list(limit=200, cursor=cursor)
            tasks += page["data"]
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]
    digest = hashlib.sha256(b"".join(orjson.dumps(t, option=orjson.OPT_SORT_KEYS) for t in tasks)).hexdigest()
    return len(tasks), digest


async def test_restart_rebuilds_an_identical_projection(api_settings: Settings) -> None:
    async with running_api(api_settings) as url, running_worker(api_settings, "wordcount", DEMO_OPERATIONS["wordcount"]), \
            Client(url, ACME_KEY) as client:
        tasks = [await client.submit("wordcount", {"text": f"word {i} " * i}) for i in range(30)]
        tasks.append(await client.submit("manual", {}))
        await client.cancel(tasks[-1]["id"])
        for task in tasks[:-1]:
            await client.wait(task["id"], timeout_s=30)
        before = await _digest(url)
    async with running_api(api_settings) as url:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                async with http.get(f"{url}/readyz") as ready:
                    if ready.status == 200:
                        break
                await asyncio.sleep(0.1)
        after = await _digest(url)
    assert before[0] == 31
    assert after == before
