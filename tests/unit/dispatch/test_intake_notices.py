"""The intake's lifecycle webhooks across a crash: every record that made task.started or
task.progress webhooks is delivered again when read again before they all settled, however
many are outstanding (none forgotten), with the same webhook-ids; and two jobs whose workers
chose the same event id never share a webhook-id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from jobwire.clock import SYSTEM
from jobwire.dispatch.intake import EventIntake
from jobwire.dispatch.state import JobState, StateStore
from jobwire.events import Event, new_event
from jobwire.timeutil import format_utc
from jobwire.webhooks.model import Endpoint, SealedSecret
from jobwire.webhooks.registry import EndpointRegistry


class Outbox:
    def mark(self) -> int:
        return 0

    def acked(self, mark: int) -> bool:
        return True

    async def send(self, *args: Any, **kwargs: Any) -> None:
        return None


class Timers:
    def arm(self, *args: Any) -> None:
        return None


def intake(filter: dict[str, Any] | None = None) -> EventIntake:
    subject = EventIntake.__new__(EventIntake)  # the fold alone: no consumer, lanes or outbox
    registry = EndpointRegistry()
    endpoint = Endpoint("ep_1", "acme", "https://example.com/h", "2026-01-01T00:00:00.000Z",
                        "2026-01-01T00:00:00.000Z", (SealedSecret("x"),),
                        event_types=("task.started", "task.progress", "task.completed"), filter=filter)
    registry.endpoints[endpoint.id] = endpoint
    subject.state, subject.registry, subject.timers = StateStore(Outbox(), "jobs.state", None), registry, Timers()  # type: ignore[arg-type]
    subject.progress_interval_s, subject.clock = 5.0, SYSTEM
    return subject


def job_events(job_id: str = "job_1", progress: int = 40, *, started_id: str | None = None) -> list[Event]:
    events = [new_event("job.created", job_id, "acme", {"operation": "ocr", "parameters": {}},
                        time="2026-01-01T00:00:00.000Z"),
              new_event("job.started", job_id, "acme", {}, time="2026-01-01T00:00:01.000Z", event_id=started_id)]
    start = datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC)
    events += [new_event("job.progress", job_id, "acme", {"processed": i, "total": 100},
                         time=format_utc(start + timedelta(seconds=10 * i))) for i in range(progress)]  # 10 s apart
    return events


async def test_no_outstanding_notice_is_forgotten_however_many() -> None:
    subject = intake()
    events = job_events(progress=40)  # a backlog: 40 progress events a minute apart, none settled
    made = {offset: [d.id for d in await subject._fold(0, offset, e)] for offset, e in enumerate(events)}
    snapshot = JobState.decode(subject.state.get(0, "job_1").encode())  # type: ignore[union-attr]
    assert [o for o in made if made[o]] == list(snapshot.unsettled_notices), "every notice kept as unsettled"
    assert len(snapshot.unsettled_notices) == 16, "and no more made than the snapshot keeps"
    subject.state.partitions[0].jobs["job_1"] = snapshot  # a crash: the snapshot as written, read again
    again = {offset: [d.id for d in await subject._fold(0, offset, e)] for offset, e in enumerate(events)}
    assert again == made, "each delivered again, with the same webhook-ids"


async def test_a_replay_judges_filters_by_the_job_as_it_was_when_noticed() -> None:
    subject = intake(filter={"status": "processing"})
    events = job_events(progress=0)
    made = [await subject._fold(0, offset, e) for offset, e in enumerate(events)]
    finished = new_event("job.completed", "job_1", "acme", {"result": {}}, time="2026-01-01T00:05:00.000Z")
    assert await subject._fold(0, 2, finished) == [], "the filter turns the completed job away"
    again = await subject._fold(0, 1, events[1])
    assert [d.id for d in again] == [d.id for d in made[1]] and again[0].event_type == "task.started"


async def test_two_jobs_with_the_same_worker_chosen_event_id_get_distinct_webhook_ids() -> None:
    subject = intake()
    ids = []
    for partition, job_id in enumerate(("job_a", "job_b")):
        for offset, event in enumerate(job_events(job_id, progress=0, started_id="started")):
            ids += [d.id for d in await subject._fold(partition, offset, event)]
    assert len(ids) == 2 and len(set(ids)) == 2
