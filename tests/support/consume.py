"""The group consume loop the integration tests drive: fetch, hand each record to ``handle``,
set aside what fails, commit. (The services have their own loops with flow control.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from jobwire.errors import LogError
from jobwire.kafka.quarantine import Quarantine
from jobwire.kafka.readers import GroupConsumer
from jobwire.records import LogRecord


async def consume(
    consumer: GroupConsumer,
    quarantine: Quarantine,
    handle: Callable[[LogRecord], Awaitable[None]],
    *,
    burst: bool = False,
    stop: asyncio.Event | None = None,
    max_records: int = 500,
) -> int:
    """The group consume loop: each batch is handled, invalid records set aside, then committed.

    A record is committed only after ``handle`` returned for it (at-least-once). A record that
    ``handle`` fails on is set aside like an invalid one; a ``LogError`` is not the record's
    fault (the log is unavailable), so it stops the loop instead and the record is replayed.
    In burst mode the loop returns once a fetch comes back empty, so tests end by themselves.
    Returns the number of valid records handled.
    """
    handled = 0
    while stop is None or not stop.is_set():
        batch = await consumer.fetch(timeout_ms=500 if burst else 200, max_records=max_records)
        if not batch:
            if burst:
                return handled
            continue
        next_offsets: dict[int, int] = {}
        for record in batch:
            if record.event is None:
                await quarantine.put(record)
            else:
                try:
                    await handle(record)
                    handled += 1
                except LogError:
                    raise
                except Exception as exc:
                    await quarantine.put(record, f"handling failed: {type(exc).__name__}: {exc}")
            next_offsets[record.position.partition] = record.position.offset + 1
        await consumer.commit(next_offsets)
    return handled
