"""The sender pool: a delivery that can neither be attempted nor set aside ends the run (a
restart replays it) instead of holding its partition's commit for good."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jobwire.dispatch.lanes import Lanes, Source, Work
from jobwire.dispatch.sender_pool import SenderPool
from jobwire.errors import LogError
from jobwire.offsets import OffsetTracker
from jobwire.webhooks.model import Delivery


class BrokenDeliverer:
    def __init__(self, bury_fails: bool) -> None:
        self.bury_fails = bury_fails
        self.buried: list[str] = []

    async def attempt(self, delivery: Delivery) -> Any:
        raise ValueError("a bug in the attempt")

    async def bury(self, delivery: Delivery, *_: Any, **__: Any) -> None:
        if self.bury_fails:
            raise TypeError("a bug in the dead letter too")
        self.buried.append(delivery.id)


def work(tracker: OffsetTracker) -> Work:
    delivery = Delivery("msg_1", "ep_1", "acme", "task.completed", "evt_1", "job_1", b"{}", "2026-01-01T00:00:00.000Z")
    return Work(delivery, Source(tracker, 0, 7, 1))


def lanes() -> Lanes:
    return Lanes(in_flight_per_endpoint=1, queue_per_endpoint=10, max_deliveries=10, max_bytes=1 << 20)


async def test_a_failed_attempt_is_buried_and_its_offset_finishes() -> None:
    tracker, subject = OffsetTracker(), lanes()
    deliverer = BrokenDeliverer(bury_fails=False)
    subject.push(work(tracker), None)
    pool = SenderPool(subject, deliverer, 1)  # type: ignore[arg-type]
    running = asyncio.create_task(pool.run())
    for _ in range(100):
        if deliverer.buried:
            break
        await asyncio.sleep(0.01)
    running.cancel()
    assert deliverer.buried == ["msg_1"]
    assert tracker.committable() == {0: 8}


async def test_when_even_the_dead_letter_fails_the_run_ends_instead_of_stalling_the_partition() -> None:
    tracker, subject = OffsetTracker(), lanes()
    subject.push(work(tracker), None)
    pool = SenderPool(subject, BrokenDeliverer(bury_fails=True), 1)  # type: ignore[arg-type]
    with pytest.raises(ExceptionGroup) as ended:
        await asyncio.wait_for(pool.run(), 5)
    assert ended.group_contains(LogError)
    assert tracker.committable() == {0: 7}, "unsettled: the restart replays it"
