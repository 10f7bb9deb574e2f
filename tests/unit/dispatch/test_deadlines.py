"""Deadlines without a broker: when each falls, the expiry event, how the fold settles races,
and the dispatcher's timers on a fake clock."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobwire import events
from jobwire.config import load_settings
from jobwire.deadlines import EXPIRED, TIMEOUT, Kind, epoch, expiry_event, expiry_event_id, next_due
from jobwire.dispatch.state import JobState, PartitionState
from jobwire.dispatch.timers import FIRE_BATCH, RECHECK_S, REFIRE_S, Timers
from jobwire.errors import ConfigError
from jobwire.events import new_event
from jobwire.lifecycle import Job, Status, Verdict, apply, fold
from jobwire.task import task_object
from jobwire.timeutil import EARLIEST, LATEST, bound_utc

CREATED = "2026-11-23T10:00:00.000Z"
T0 = epoch(CREATED)


def at(seconds: float) -> str:
    return f"2026-11-23T10:{int(seconds) // 60:02d}:{seconds % 60:06.3f}Z"


def created(job_id: str = "job_d", **deadlines: float) -> Job:
    job = fold([new_event("job.created", job_id, "acme", {"operation": "ocr", "parameters": {}, **deadlines},
                          time=CREATED)])
    assert job is not None
    return job


def then(job: Job, kind: str, seconds: float, data: dict[str, Any] | None = None) -> Job:
    outcome = apply(job, new_event(kind, job.id, job.tenant, data or {}, time=at(seconds)))
    assert outcome.verdict is Verdict.ACCEPTED, outcome.reason
    assert outcome.job is not None
    return outcome.job


# --- when deadlines fall ----------------------------------------------------------------------


def test_a_job_without_limits_has_no_deadline() -> None:
    assert next_due(created()) is None


def test_each_limit_applies_in_its_state() -> None:
    job = created(timeout_s=60, pending_timeout_s=10, heartbeat_timeout_s=5)
    assert next_due(job) == (T0 + 10, Kind.PENDING)  # pending: the start limit comes first
    started = then(job, "job.started", 4)
    assert next_due(started) == (T0 + 4 + 5, Kind.HEARTBEAT)  # processing: silence since the start
    assert next_due(started, heartbeat_at=T0 + 30) == (T0 + 35, Kind.HEARTBEAT)
    assert next_due(started, heartbeat_at=T0 + 58) == (T0 + 60, Kind.TIMEOUT)  # the whole job's limit caps it
    assert next_due(then(started, "job.progress", 20, {"total": 2, "processed": 1})) == (T0 + 25, Kind.HEARTBEAT)
    assert next_due(then(started, "job.completed", 9, {"result": {}})) is None


def test_a_tie_is_named_after_the_whole_jobs_timeout() -> None:
    assert next_due(created(timeout_s=10, pending_timeout_s=10)) == (T0 + 10, Kind.TIMEOUT)


def test_the_task_object_shows_the_deadlines() -> None:
    task = task_object(created(timeout_s=3600, pending_timeout_s=1.5))
    assert task["deadline_at"] == "2026-11-23T11:00:00.000Z"
    assert task["pending_deadline_at"] == "2026-11-23T10:00:01.500Z"
    assert (task["timeout_s"], task["pending_timeout_s"], task["heartbeat_timeout_s"]) == (3600, 1.5, None)
    assert task_object(created())["deadline_at"] is None


# --- the expiry -------------------------------------------------------------------------------


def test_a_job_that_never_started_expires_and_one_that_did_times_out() -> None:
    pending = created(pending_timeout_s=10)
    expiry = expiry_event(pending, next_due(pending))  # type: ignore[arg-type]
    assert expiry.type == "job.failed" and expiry.time == at(10)
    assert expiry.data["error"]["code"] == EXPIRED
    assert "pending_timeout_s=10" in expiry.data["error"]["message"]
    assert expiry.data["error"]["details"] == {"deadline": "pending_timeout_s", "deadline_at": at(10), "limit_s": 10}
    events.encode(expiry)  # valid against the event schema

    running = then(created(heartbeat_timeout_s=5), "job.started", 1)
    timed_out = expiry_event(running, next_due(running))  # type: ignore[arg-type]
    assert timed_out.data["error"]["code"] == TIMEOUT
    assert "heartbeat_timeout_s=5" in timed_out.data["error"]["message"]


def test_the_expiry_is_the_same_event_whoever_writes_it() -> None:
    job = created(timeout_s=30)
    first, second = (expiry_event(job, next_due(job)) for _ in range(2))  # type: ignore[arg-type]
    assert first == second
    assert first.id == expiry_event_id(job.id, Kind.TIMEOUT) != expiry_event_id(job.id, Kind.PENDING)
    failed = apply(job, first)
    assert failed.verdict is Verdict.ACCEPTED and failed.became_terminal
    again = apply(failed.job, second)
    assert again.verdict is Verdict.DUPLICATE and again.job is failed.job  # one transition


def test_the_first_terminal_event_wins_and_the_loser_says_why() -> None:
    job = then(created(timeout_s=30), "job.started", 1)
    expiry = expiry_event(job, next_due(job))  # type: ignore[arg-type]
    completion = new_event("job.completed", job.id, "acme", {"result": {}}, time=at(31))

    expired = apply(job, expiry).job
    late = apply(expired, completion)
    assert late.verdict is Verdict.REJECTED and late.job is expired
    assert late.reason == "job is failed (timeout); terminal states never change"

    done = apply(job, completion).job
    assert apply(done, expiry).verdict is Verdict.REJECTED
    assert done is not None and done.status is Status.COMPLETED


def test_a_heartbeat_changes_nothing_and_is_refused_once_the_job_ended() -> None:
    job = then(created(heartbeat_timeout_s=5), "job.started", 1)
    beat = new_event("job.heartbeat", job.id, "acme", {}, time=at(3))
    assert apply(job, beat).job is job
    failed = apply(job, expiry_event(job, next_due(job))).job  # type: ignore[arg-type]
    assert apply(failed, beat).verdict is Verdict.REJECTED


# --- configuration ----------------------------------------------------------------------------


def test_default_deadlines_per_operation() -> None:
    settings = load_settings({"JOBWIRE_JOB_DEADLINES": orjson.dumps(
        {"*": {"pending_timeout_s": 86400, "timeout_s": 7200}, "convert": {"timeout_s": 3600}}).decode()})
    assert settings.deadlines_for("convert") == {"pending_timeout_s": 86400, "timeout_s": 3600}
    assert settings.deadlines_for("other") == {"pending_timeout_s": 86400, "timeout_s": 7200}
    assert load_settings({}).deadlines_for("convert") == {}


@pytest.mark.parametrize("raw", [
    "not json", "[]", '{"convert": 3600}', '{"convert": {"deadline_s": 5}}', '{"convert": {"timeout_s": 0}}',
    '{"convert": {"timeout_s": "60"}}', '{"convert": {"timeout_s": true}}', '{"*": {"timeout_s": 1e12}}',
])
def test_bad_default_deadlines_are_refused_at_start(raw: str) -> None:
    with pytest.raises(ConfigError, match="JOBWIRE_JOB_DEADLINES"):
        load_settings({"JOBWIRE_JOB_DEADLINES": raw})


# --- range bounds in queries ------------------------------------------------------------------


def test_a_bound_beyond_the_years_utc_can_hold_is_clamped() -> None:
    assert bound_utc("0001-01-01T00:00:00.0+00:02") == EARLIEST
    assert bound_utc("9999-12-31T23:59:59-01:00") == LATEST
    assert bound_utc("2026-11-23T11:00:00+01:00") == "2026-11-23T10:00:00.000Z"
    with pytest.raises(ValueError):
        bound_utc("2026-02-30T00:00:00Z")


# --- the dispatcher's timers ------------------------------------------------------------------


class FakeOutbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int | None, dict[str, Any]]] = []

    async def send(self, topic: str, key: str, value: bytes, *, partition: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> None:
        assert headers is not None and headers[0] == ("content-type", b"application/cloudevents+json")
        self.headers = headers
        self.sent.append((key, partition, orjson.loads(value)))


class FakeState:
    def __init__(self) -> None:
        self.partitions: dict[int, PartitionState] = {}

    def get(self, partition: int, job_id: str) -> JobState | None:
        state = self.partitions.get(partition)
        return state.jobs.get(job_id) if state else None

    def put(self, partition: int, job: Job) -> None:
        self.partitions.setdefault(partition, PartitionState()).jobs[job.id] = JobState(job, 0)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def timers_at(clock: Clock) -> tuple[Timers, FakeState, FakeOutbox]:
    state, outbox = FakeState(), FakeOutbox()
    return Timers(state, outbox, "jobs.events", clock=clock), state, outbox  # type: ignore[arg-type]


async def test_a_timer_fires_once_due_into_the_jobs_partition() -> None:
    clock = Clock()
    timers, state, outbox = timers_at(clock)
    job = created(pending_timeout_s=10)
    state.put(3, job)
    timers.arm(3, job)
    clock.now = T0 + 9.9
    assert await timers.fire_due() == 0
    clock.now = T0 + 10
    assert await timers.fire_due() == 1
    [(key, partition, document)] = outbox.sent
    assert (key, partition, document["id"]) == (job.id, 3, expiry_event_id(job.id, Kind.PENDING))
    assert await timers.fire_due() == 0  # not again while the expiry is on its way back


async def test_a_lost_expiry_is_written_again() -> None:
    clock = Clock()
    timers, state, outbox = timers_at(clock)
    job = created(timeout_s=5)
    state.put(0, job)
    timers.arm(0, job)
    clock.now = T0 + 5
    await timers.fire_due()
    clock.now = T0 + 5 + REFIRE_S
    await timers.fire_due()
    assert [d["id"] for _, _, d in outbox.sent] == [expiry_event_id(job.id, Kind.TIMEOUT)] * 2


async def test_a_heartbeat_moves_the_deadline_and_the_folded_expiry_disarms() -> None:
    clock = Clock()
    timers, state, outbox = timers_at(clock)
    job = then(created(heartbeat_timeout_s=5), "job.started", 1)
    state.put(0, job)
    timers.arm(0, job)
    timers.heartbeat(job, at(4))
    clock.now = T0 + 6
    assert await timers.fire_due() == 0  # due at 1+5 was moved to 4+5
    clock.now = T0 + 9
    assert await timers.fire_due() == 1
    failed = apply(job, events.decode(orjson.dumps(outbox.sent[0][2]))).job
    assert failed is not None and failed.status is Status.FAILED
    state.put(0, failed)
    timers.arm(0, failed)
    assert len(timers) == 0
    clock.now = T0 + 9 + REFIRE_S
    assert await timers.fire_due() == 0


async def test_jobs_that_finish_or_move_away_never_fire() -> None:
    clock = Clock()
    timers, state, outbox = timers_at(clock)
    finished, moved = created("job_f", timeout_s=5), created("job_m", timeout_s=5)
    for partition, job in ((0, finished), (1, moved)):
        state.put(partition, job)
        timers.arm(partition, job)
    state.put(0, then(finished, "job.completed", 2, {"result": {}}))
    del state.partitions[1]
    timers.forget(["job_m"])
    clock.now = T0 + 60
    assert await timers.fire_due() == 0 and outbox.sent == []


async def test_restored_partitions_count_silence_from_the_restore() -> None:
    clock = Clock()
    timers, state, outbox = timers_at(clock)
    silent = then(created("job_s", heartbeat_timeout_s=5), "job.started", 1)
    waiting = created("job_w", pending_timeout_s=30)
    state.put(0, silent)
    state.put(0, waiting)
    clock.now = T0 + 100  # the dispatcher was down long past both deadlines
    assert timers.restored([0]) == 2
    assert await timers.fire_due() == 1  # the start limit is in the changelog: it fires at once
    assert outbox.sent[0][0] == "job_w"
    clock.now = T0 + 104.9
    assert await timers.fire_due() == 0  # heartbeats are not: silence counts from the restore
    clock.now = T0 + 105
    assert await timers.fire_due() == 1


async def test_a_burst_of_due_timers_fires_in_bounded_passes() -> None:
    clock = Clock()
    timers, state, outbox = timers_at(clock)
    for i in range(FIRE_BATCH + 10):
        job = created(f"job_{i}", timeout_s=1)
        state.put(i % 4, job)
        timers.arm(i % 4, job)
    clock.now = T0 + 1
    assert await timers.fire_due() == FIRE_BATCH
    assert await timers.fire_due() == 10
    assert len({key for key, _, _ in outbox.sent}) == FIRE_BATCH + 10


async def test_the_loop_wakes_for_an_earlier_timer() -> None:
    clock = Clock()
    timers, state, outbox = timers_at(clock)
    stop = asyncio.Event()
    loop = asyncio.create_task(timers.run(stop))
    await asyncio.sleep(0)
    job = created(timeout_s=1)
    state.put(0, job)
    clock.now = T0 + 2
    timers.arm(0, job)  # already due: fires without waiting out the loop's sleep
    for _ in range(100):
        if outbox.sent:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(loop, 5)
    assert len(outbox.sent) == 1


@given(st.lists(st.tuples(st.sampled_from(["progress", "heartbeat"]), st.floats(0.1, 3)), max_size=30))
def test_progress_never_leaves_more_than_the_live_entries_behind(steps: list[tuple[str, float]]) -> None:
    clock = Clock()
    timers, state, _ = timers_at(clock)
    job = then(created(heartbeat_timeout_s=5), "job.started", 0)
    state.put(0, job)
    timers.arm(0, job)
    elapsed = 0.0
    for kind, step in steps:
        elapsed += step
        if kind == "progress":
            job = then(job, "job.progress", min(elapsed, 59), {"total": 100, "processed": 1})
            state.put(0, job)
            timers.arm(0, job)
        else:
            timers.heartbeat(job, at(min(elapsed, 59)))
    assert len(timers) == 1
    assert len(timers._heap) <= 2 * len(timers) + 1024


def test_a_deadline_past_the_calendar_is_its_last_moment() -> None:
    job = fold([new_event("job.created", "job_late", "acme", {"operation": "ocr", "parameters": {}, "timeout_s": 86400},
                          time="9999-12-31T12:00:00.000Z")])
    assert job is not None and task_object(job)["deadline_at"] == LATEST


async def test_a_deadline_waits_until_the_partition_is_read_past_it() -> None:
    clock, read = Clock(), {0: T0}
    state, outbox = FakeState(), FakeOutbox()
    timers = Timers(state, outbox, "jobs.events", clock=clock,  # type: ignore[arg-type]
                    read_through=lambda partition: read.get(partition, float("-inf")))
    job = created(timeout_s=5)
    state.put(0, job)
    timers.arm(0, job)
    clock.now = T0 + 6
    assert await timers.fire_due() == 0, "a completion written before the deadline may still be unread"
    read[0] = T0 + 5.5
    clock.now = T0 + 6 + RECHECK_S
    assert await timers.fire_due() == 1


# --- forced cancel --------------------------------------------------------------------------


def test_a_running_job_whose_worker_ignores_a_cancel_ends_canceled_after_the_grace() -> None:
    running = then(created(), "job.started", 4)
    asked = then(running, "job.cancel_requested", 10, {"reason": "customer asked"})
    assert next_due(asked) is None, "no grace configured (off): the cancel waits for the worker"
    assert next_due(asked, cancel_grace_s=30) == (T0 + 40, Kind.CANCEL)
    # Asking again does not push the deadline back; progress from the worker does not either.
    again = then(then(asked, "job.cancel_requested", 25), "job.progress", 30, {"total": 2, "processed": 1})
    assert again.cancel_requested_at == at(10) and next_due(again, cancel_grace_s=30) == (T0 + 40, Kind.CANCEL)
    forced = expiry_event(again, next_due(again, cancel_grace_s=30))  # type: ignore[arg-type]
    assert forced.type == "job.canceled" and forced.time == at(40) and forced.id == expiry_event_id(again.id, Kind.CANCEL)
    assert "customer asked" in forced.data["reason"] and "grace period" in forced.data["reason"]
    events.encode(forced)  # the log takes it
    outcome = apply(again, forced)
    assert outcome.verdict is Verdict.ACCEPTED and outcome.job is not None and outcome.job.status is Status.CANCELED
    late = apply(outcome.job, new_event("job.completed", again.id, "acme", {"result": {}}, time=at(41)))
    assert late.verdict is Verdict.REJECTED, "the worker's late outcome is refused (and kept in the history)"


def test_a_forced_cancel_never_comes_before_the_jobs_own_deadlines_or_for_a_pending_job() -> None:
    running = then(created(timeout_s=20), "job.started", 4)
    asked = then(running, "job.cancel_requested", 10)
    assert next_due(asked, cancel_grace_s=30) == (T0 + 20, Kind.TIMEOUT)
    pending = created()
    # A pending job is canceled at once by the API; the grace is only for a worker's running job.
    assert next_due(then(pending, "job.cancel_requested", 1), cancel_grace_s=0) is None


@pytest.mark.parametrize(("raw", "expected"), [("", 30.0), ("0", 0.0), ("off", None), ("OFF", None), ("2.5", 2.5)])
def test_the_cancel_grace_setting(raw: str, expected: float | None) -> None:
    assert load_settings({"JOBWIRE_CANCEL_GRACE_S": raw}).cancel_grace_s == expected


@pytest.mark.parametrize("raw", ["-1", "nan", "inf", "soon", "86401"])
def test_a_bad_cancel_grace_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"JOBWIRE_CANCEL_GRACE_S": raw})
    assert caught.value.variable == "JOBWIRE_CANCEL_GRACE_S"


async def test_an_expiry_is_written_in_the_jobs_trace() -> None:
    clock = Clock()
    timers, state, outbox = timers_at(clock)
    job = created(timeout_s=5)
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    state.partitions.setdefault(0, PartitionState()).jobs[job.id] = JobState(job, 0, trace=trace)
    timers.arm(0, job)
    clock.now = T0 + 5
    assert await timers.fire_due() == 1
    assert ("traceparent", trace.encode()) in outbox.headers, "its timeout webhook stays in the job's trace"
