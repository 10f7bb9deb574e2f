"""The sender of ordered queues (dispatch/ordered.py) with real lanes: a head goes to its lane
only while the lane has room; a head that ended leaves its queue only after the records its
attempt wrote are acknowledged, and only then is the next one sent; partitions being revoked
send nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from jobwire.dispatch.lanes import Lanes
from jobwire.dispatch.ordered import OrderedDeliveries
from jobwire.dispatch.ordered_queue import Pending
from jobwire.dispatch.policy import Outcome
from jobwire.dispatch.state import JobState, StateStore
from jobwire.events import new_event
from jobwire.lifecycle import fold
from jobwire.webhooks.registry import EndpointRegistry


class Outbox:
    """Acknowledges only when told: ``flush`` waits for ``ack``."""

    def __init__(self) -> None:
        self.acked = asyncio.Event()
        self.sent: list[Any] = []

    def mark(self) -> int:
        return len(self.sent)

    async def send(self, *args: Any, **kwargs: Any) -> None:
        self.sent.append(args)

    async def flush(self) -> None:
        await self.acked.wait()


def entries(job_id: str, count: int) -> tuple[Pending, ...]:
    return tuple(Pending(f"msg_{job_id}_{n}", "ep_o", "task.completed" if n == count - 1 else "task.progress",
                         f"evt_{n}", "2026-01-01T00:00:00.000Z") for n in range(count))


def setup(jobs: int = 1, per_job: int = 2, queue_per_endpoint: int = 10) -> tuple[OrderedDeliveries, Lanes, Outbox]:
    outbox = Outbox()
    state = StateStore(outbox, "jobs.state", None)  # type: ignore[arg-type]
    for n in range(jobs):
        job = fold([new_event("job.created", f"job_{n}", "acme", {"operation": "ocr", "parameters": {}}),
                    new_event("job.completed", f"job_{n}", "acme", {"result": {}})])
        assert job is not None
        state.put(0, JobState(job, n, ordered=entries(f"job_{n}", per_job)))
    lanes = Lanes(in_flight_per_endpoint=1, queue_per_endpoint=queue_per_endpoint, max_deliveries=100,
                  max_bytes=1 << 20)
    ordered = OrderedDeliveries(state, lanes, EndpointRegistry(), outbox, lambda partition: 0)  # type: ignore[arg-type]
    ordered.restored([0])
    return ordered, lanes, outbox


def queue_of(ordered: OrderedDeliveries) -> tuple[Pending, ...]:
    job_state = ordered.state.get(0, "job_0")
    assert job_state is not None
    return job_state.ordered


async def test_the_next_entry_waits_for_the_acknowledged_end_of_the_head() -> None:
    ordered, lanes, outbox = setup()
    ordered._send_ready()
    lane, work = await lanes.take()
    assert work.delivery.id == "msg_job_0_0" and work.turn is not None
    work.turn.ended(Outcome.FAILED)  # a dead letter written, not yet acknowledged
    lanes.release(lane, work)
    settling = asyncio.create_task(ordered.settle_ended())
    await asyncio.sleep(0.01)
    assert not settling.done() and len(queue_of(ordered)) == 2, \
        "the entry stays until the dead letter is acknowledged"
    outbox.acked.set()
    await settling
    assert [p.id for p in queue_of(ordered)] == ["msg_job_0_1"]
    ordered._send_ready()
    _, work = await lanes.take()
    assert work.delivery.id == "msg_job_0_1"


async def test_one_head_per_job_and_only_what_the_lane_has_room_for() -> None:
    ordered, lanes, _ = setup(jobs=30, per_job=3, queue_per_endpoint=5)
    ordered._send_ready()
    queued = [w.delivery.id for lane in lanes.lanes.values() for w in lane.queue]
    assert len(queued) == 5, "the lane's room, not every job's head"
    assert all(i.endswith("_0") for i in queued), "only heads"


async def test_partitions_being_revoked_send_nothing() -> None:
    ordered, lanes, _ = setup(jobs=3)
    ordered.revoking({0})
    ordered._send_ready()
    assert lanes.deliveries == 0
    ordered.forget({0})
    ordered.restored([0])  # handed back
    ordered._send_ready()
    assert lanes.deliveries == 3
