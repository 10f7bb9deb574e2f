"""The intake and an ordered endpoint (``ordering: "job"``): a job's webhooks to it are queued
in the job's snapshot instead of handed out, in the order of its events, beside the concurrent
deliveries to other endpoints; a record read again after a crash queues nothing twice and never
puts an ended webhook back behind a later one."""

from __future__ import annotations

from typing import Any

from jobwire.dispatch.ordered_queue import finished, heads
from jobwire.dispatch.state import JobState
from jobwire.events import new_event
from jobwire.webhooks.model import Endpoint, SealedSecret
from tests.unit.dispatch.test_intake_notices import intake, job_events

LIFECYCLE = ("task.started", "task.progress", "task.completed", "task.failed", "task.canceled")


class Ordered:
    def __init__(self) -> None:
        self.offered: list[str] = []

    def offer(self, partition: int, job_id: str) -> None:
        self.offered.append(job_id)


def with_ordered_endpoint() -> Any:
    subject = intake()
    subject.registry.endpoints["ep_o"] = Endpoint(
        "ep_o", "acme", "https://ordered.example/h", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z",
        (SealedSecret("x"),), event_types=LIFECYCLE, ordering="job")
    subject.ordered = Ordered()
    return subject


async def test_webhooks_to_an_ordered_endpoint_wait_in_the_snapshot_in_event_order() -> None:
    subject = with_ordered_endpoint()
    events = [*job_events(progress=3), new_event("job.completed", "job_1", "acme", {"result": {}},
                                                 time="2026-01-01T01:00:00.000Z")]
    handed = [await subject._fold(0, offset, e) for offset, e in enumerate(events)]
    assert all(d.endpoint_id == "ep_1" for made in handed for d in made), "the ordered ones are not handed out"
    state = JobState.decode(subject.state.get(0, "job_1").encode())
    kinds = [p.event_type for p in state.ordered]
    assert kinds == ["task.started", "task.completed"], "the head, then the terminal one (progress gave way)"
    assert subject.ordered.offered, "the dispatcher's ordered sender is told"
    assert list(state.unsettled_notices) == [o for o, made in enumerate(handed)
                                             if made and made[0].event_type in LIFECYCLE[:2]], \
        "only notices handed out wait to settle; the queued ones are durable with the snapshot"


async def test_a_record_read_again_queues_nothing_twice_and_nothing_behind_a_later_one() -> None:
    subject = with_ordered_endpoint()
    events = [*job_events(progress=0), new_event("job.completed", "job_1", "acme", {"result": {}},
                                                 time="2026-01-01T01:00:00.000Z")]
    for offset, event in enumerate(events):
        await subject._fold(0, offset, event)
    state = subject.state.get(0, "job_1")
    (started, done) = state.ordered
    state.ordered = finished(state.ordered, started.id)  # task.started reached the receiver
    again = await subject._fold(0, 1, events[1])  # a crash: the start read again
    assert all(d.endpoint_id != "ep_o" for d in again)
    assert state.ordered == (done,), "task.started is not put back behind task.completed"
    again = await subject._fold(0, 2, events[2])  # and the finishing record read again
    assert state.ordered == (done,) and [p.id for p in heads(state.ordered)] == [done.id]
    assert all(d.endpoint_id != "ep_o" for d in again)
