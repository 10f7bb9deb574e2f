"""Helpers for tests of the API's store: a digest of its rows, a history worth folding, and
waiting for read models to catch up."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path

from jobwire.api.app import ApiComponents
from jobwire.api.store import FILE_NAME
from jobwire.config import Settings
from jobwire.events import new_event
from jobwire.kafka.clients import make_producer
from jobwire.kafka.readers import LogReader
from jobwire.kafka.writers import JobEvents
from jobwire.topics import Topics


def store_digest(data_dir: Path) -> str:
    """A hash of every job, history row and jobs.events offset in the store at ``data_dir``."""
    db = sqlite3.connect(f"file:{data_dir / FILE_NAME}?mode=ro", uri=True)
    try:
        digest = hashlib.sha256()
        for sql in ("SELECT * FROM jobs ORDER BY id",
                    "SELECT * FROM history ORDER BY job_id, log_partition, log_offset",
                    "SELECT * FROM offsets WHERE topic LIKE '%jobs.events' ORDER BY partition"):
            for row in db.execute(sql):
                digest.update(repr(row).encode())
        return digest.hexdigest()
    finally:
        db.close()


def stored_offsets(data_dir: Path, topic: str) -> dict[int, int]:
    """The offsets committed in the store at ``data_dir`` ({} while there is no store yet)."""
    try:
        db = sqlite3.connect(f"file:{data_dir / FILE_NAME}?mode=ro", uri=True)
    except sqlite3.OperationalError:  # no file yet
        return {}
    try:
        return dict(db.execute("SELECT partition, next_offset FROM offsets WHERE topic = ?", (topic,)).fetchall())
    except sqlite3.OperationalError:  # no tables yet
        return {}
    finally:
        db.close()


async def publish_histories(settings: Settings, first: int, count: int, prefix: str = "job_s") -> int:
    """``count`` jobs with a full history each (created, started, progress, completed or failed),
    a rejected late event on every 7th and a re-sent duplicate on every 11th; returns how many
    records were written."""
    producer = make_producer(settings.kafka)
    await producer.start()
    written = 0
    try:
        publisher = JobEvents(producer, Topics(settings.topic_prefix).events)

        async def one(i: int) -> None:
            nonlocal written
            job_id = f"{prefix}{i:06d}"
            tenant = "acme" if i % 3 else "globex"
            if i % 5 == 0:
                end = new_event("job.failed", job_id, tenant, {"error": {"code": "E", "message": "boom"}})
            else:
                end = new_event("job.completed", job_id, tenant, {"result": {"i": i}})
            history = [
                new_event("job.created", job_id, tenant, {"operation": f"op{i % 4}", "parameters": {"i": i}}),
                new_event("job.started", job_id, tenant, {"stage": "running"}),
                new_event("job.progress", job_id, tenant, {"total": 2, "processed": 1}),
                end,
            ]
            if i % 7 == 0:
                history.append(new_event("job.started", job_id, tenant, {}))  # rejected: terminal
            if i % 11 == 0:
                history.append(end)  # a duplicate: the fold ignores it
            for event in history:
                await publisher.publish(event)
                written += 1

        for chunk in range(first, first + count, 2000):
            await asyncio.gather(*(one(i) for i in range(chunk, min(chunk + 2000, first + count))))
    finally:
        await producer.stop()
    return written


async def log_ends(settings: Settings) -> dict[int, int]:
    async with LogReader(settings.kafka, Topics(settings.topic_prefix).events) as reader:
        return await reader.end_offsets()


async def caught_up(parts: ApiComponents, ends: dict[int, int], timeout_s: float = 120.0) -> None:
    """Wait (bounded) until the projection has applied the log up to ``ends``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not parts.projection.caught_up(ends):
        assert loop.time() < deadline, f"projection stuck at {parts.projection.applied}, log ends {ends}"
        await asyncio.sleep(0.05)


async def ready(parts: ApiComponents, timeout_s: float = 120.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while parts.readiness():
        assert loop.time() < deadline, f"not ready: {parts.readiness()}"
        await asyncio.sleep(0.05)
