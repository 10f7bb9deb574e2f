"""``jobwire demo``: a tour of a running stack from the client's side.

Submits a few demo jobs (some succeed, one fails, one is canceled), prints each status change
as it streams in, then a summary with the webhook deliveries the dispatcher made for them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jobwire.sdk.client import Client

JOBS: list[tuple[str, dict[str, Any]]] = [
    ("wordcount", {"text": "to be or not to be"}),
    ("wordcount", {"text": "the quick brown fox jumps over the lazy dog"}),
    ("sleep", {"seconds": 2}),
    ("fail", {"message": "the scanner jammed"}),
    ("sleep", {"seconds": 30}),  # canceled while it runs
]
EXPECTED = ["completed", "completed", "completed", "failed", "canceled"]


async def run_demo(api: str, api_key: str, *, timeout_s: float = 60.0) -> int:
    started = time.monotonic()

    def stamp() -> str:
        return f"{time.monotonic() - started:6.2f}s"

    async with Client(api, api_key) as client:
        tasks = [await client.submit(operation, parameters) for operation, parameters in JOBS]
        print(f"{stamp()} submitted {len(tasks)} jobs", flush=True)

        async def follow(task: dict[str, Any]) -> None:
            async for entry in client.stream(task["id"]):
                event = entry["event"]
                detail = ""
                data = event["data"]
                if event["type"] == "job.progress":
                    detail = f" {data['processed']}/{data['total']}"
                elif event["type"] == "job.failed":
                    detail = f" {data['error']['code']}: {data['error']['message']}"
                verdict = "" if entry["verdict"] == "accepted" else f" (rejected: {entry['reason']})"
                print(f"{stamp()} {task['operation']:<9} {task['id']}  {event['type']}{detail}{verdict}", flush=True)

        followers = [asyncio.create_task(follow(task)) for task in tasks]
        long_running = tasks[-1]
        while (await client.get(long_running["id"]))["status"] == "pending" and time.monotonic() - started < 10:
            await asyncio.sleep(0.2)
        await client.cancel(long_running["id"], reason="demo: no longer needed")
        await asyncio.wait_for(asyncio.gather(*followers), timeout_s)

        finished = [await client.get(task["id"]) for task in tasks]
        print("\nsummary")
        for task in finished:
            outcome = task["result"] if task["status"] == "completed" else task["error"] or task["status"]
            print(f"  {task['operation']:<9} {task['id']}  {task['status']:<9} {outcome}")
        await show_deliveries(client, {t["id"] for t in finished})
        ok = [t["status"] for t in finished] == EXPECTED
        print("\nall jobs ended as expected" if ok else "\nsome jobs did not end as expected")
        return 0 if ok else 1


async def show_deliveries(client: Client, job_ids: set[str], wait_s: float = 10.0) -> None:
    """Webhook deliveries for the demo's jobs, waiting a little: dispatch is asynchronous."""
    endpoints = await client.endpoints()
    if not endpoints:
        print("\nno webhook endpoints registered: nothing was delivered")
        return
    deadline = time.monotonic() + wait_s
    while True:
        rows = []
        for endpoint in endpoints:
            deliveries = [d for d in await client.deliveries(endpoint["id"]) if d["job_id"] in job_ids]
            rows.append((endpoint, deliveries))
        expected = sum(1 for e in endpoints if not e["disabled"]) * len(job_ids)
        done = sum(1 for _, ds in rows for d in ds if d["status"] == "succeeded")
        if done >= expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    print("\nwebhooks")
    for endpoint, deliveries in rows:
        by_status: dict[str, int] = {}
        for delivery in deliveries:
            by_status[delivery["status"]] = by_status.get(delivery["status"], 0) + 1
        print(f"  {endpoint['url']}: {by_status or 'none yet'}")
