"""The fold: every (state, event) pair from a table, plus properties over random histories."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobwire.events import Event, new_event
from jobwire.lifecycle import TERMINAL, Job, Status, Verdict, apply, fold
from jobwire.task import task_object

JOB = "job_1"
TENANT = "acme"
_counter = itertools.count()


def ev(type: str, data: dict[str, Any] | None = None, *, tenant: str = TENANT, event_id: str | None = None) -> Event:
    defaults: dict[str, dict[str, Any]] = {
        "job.created": {"operation": "ocr", "parameters": {"pages": 3}},
        "job.progress": {"total": 10, "processed": 4, "stage": "running"},
        "job.completed": {"result": {"pages": 3}},
        "job.failed": {"error": {"code": "bad_input", "message": "page 2 is blank", "details": {"page": 2}}},
        "job.input_received": RECEIVED,
    }
    second = next(_counter) % 60
    return new_event(
        type, JOB, tenant, data if data is not None else defaults.get(type, {}),
        event_id=event_id or f"evt_{next(_counter)}", time=f"2026-11-23T10:00:{second:02d}.000Z",
    )


RECEIVED = {"file_id": "file_1", "size": 3, "sha256": "ab" * 32, "content_type": "application/pdf",
            "filename": "a.pdf"}
#: A job created to wait for its input file.
AWAITING = {"operation": "ocr", "parameters": {}, "input": {"file_id": "file_1", "awaiting_upload": True,
                                                            "upload_timeout_s": 3600}}

STATES: dict[str, list[str]] = {
    "none": [],
    "pending": ["job.created"],
    "processing": ["job.created", "job.started"],
    "cancel_requested": ["job.created", "job.started", "job.cancel_requested"],
    "completed": ["job.created", "job.completed"],
    "failed": ["job.created", "job.failed"],
    "canceled": ["job.created", "job.canceled"],
    "awaiting_upload": ["job.created"],
    "received": ["job.created", "job.input_received"],
}


def job_in(state: str) -> Job | None:
    if state in ("awaiting_upload", "received"):
        return fold([ev("job.created", AWAITING), *(ev(t) for t in STATES[state][1:])])
    return fold([ev(t) for t in STATES[state]])


A, R = Verdict.ACCEPTED, Verdict.REJECTED
# (state, event type) -> (verdict, status after); the whole table, one row per state.
TABLE: dict[tuple[str, str], tuple[Verdict, str | None]] = {
    ("none", "job.created"): (A, "pending"),
    ("none", "job.started"): (R, None),
    ("none", "job.progress"): (R, None),
    ("none", "job.completed"): (R, None),
    ("none", "job.failed"): (R, None),
    ("none", "job.cancel_requested"): (R, None),
    ("none", "job.canceled"): (R, None),
    ("pending", "job.created"): (R, "pending"),
    ("pending", "job.started"): (A, "processing"),
    ("pending", "job.progress"): (A, "processing"),
    ("pending", "job.completed"): (A, "completed"),
    ("pending", "job.failed"): (A, "failed"),
    ("pending", "job.cancel_requested"): (A, "pending"),
    ("pending", "job.canceled"): (A, "canceled"),
    ("processing", "job.created"): (R, "processing"),
    ("processing", "job.started"): (R, "processing"),
    ("processing", "job.progress"): (A, "processing"),
    ("processing", "job.completed"): (A, "completed"),
    ("processing", "job.failed"): (A, "failed"),
    ("processing", "job.cancel_requested"): (A, "processing"),
    ("processing", "job.canceled"): (A, "canceled"),
    ("cancel_requested", "job.created"): (R, "processing"),
    ("cancel_requested", "job.started"): (R, "processing"),
    ("cancel_requested", "job.progress"): (A, "processing"),
    ("cancel_requested", "job.completed"): (A, "completed"),
    ("cancel_requested", "job.failed"): (A, "failed"),
    ("cancel_requested", "job.cancel_requested"): (A, "processing"),
    ("cancel_requested", "job.canceled"): (A, "canceled"),
    # A heartbeat is accepted while the job is live and changes nothing at all (checked below).
    ("none", "job.heartbeat"): (R, None),
    ("pending", "job.heartbeat"): (A, "pending"),
    ("processing", "job.heartbeat"): (A, "processing"),
    ("cancel_requested", "job.heartbeat"): (A, "processing"),
    **{(s, t): (R, s) for s in ("completed", "failed", "canceled") for t in (
        "job.created", "job.started", "job.heartbeat", "job.progress", "job.completed", "job.failed",
        "job.cancel_requested", "job.canceled", "job.input_received")},
    # Only a job created to wait for its input takes job.input_received, once.
    ("none", "job.input_received"): (R, None),
    ("pending", "job.input_received"): (R, "pending"),
    ("processing", "job.input_received"): (R, "processing"),
    ("cancel_requested", "job.input_received"): (R, "processing"),
    # Until the file arrives no worker's event counts; the upload, a cancel or an expiry do.
    ("awaiting_upload", "job.created"): (R, "pending"),
    ("awaiting_upload", "job.input_received"): (A, "pending"),
    ("awaiting_upload", "job.started"): (R, "pending"),
    ("awaiting_upload", "job.heartbeat"): (R, "pending"),
    ("awaiting_upload", "job.progress"): (R, "pending"),
    ("awaiting_upload", "job.completed"): (R, "pending"),
    ("awaiting_upload", "job.failed"): (A, "failed"),
    ("awaiting_upload", "job.cancel_requested"): (A, "pending"),
    ("awaiting_upload", "job.canceled"): (A, "canceled"),
    # Once it has, the job is an ordinary pending one.
    ("received", "job.created"): (R, "pending"),
    ("received", "job.input_received"): (R, "pending"),
    ("received", "job.started"): (A, "processing"),
    ("received", "job.heartbeat"): (A, "pending"),
    ("received", "job.progress"): (A, "processing"),
    ("received", "job.completed"): (A, "completed"),
    ("received", "job.failed"): (A, "failed"),
    ("received", "job.cancel_requested"): (A, "pending"),
    ("received", "job.canceled"): (A, "canceled"),
}


def test_input_received_must_name_the_awaited_file_and_the_pending_deadline_counts_from_it() -> None:
    from jobwire.deadlines import Kind, epoch, next_due

    waiting = fold([ev("job.created", {**AWAITING, "pending_timeout_s": 60})])
    assert waiting is not None and waiting.awaiting_upload
    due = next_due(waiting)
    assert due is not None and due.kind is Kind.UPLOAD and due.at == epoch(waiting.created_at) + 3600
    other = apply(waiting, ev("job.input_received", {**RECEIVED, "file_id": "file_2"}))
    assert other.verdict is R and "not the one" in (other.reason or "")
    received = apply(waiting, ev("job.input_received")).job
    assert received is not None and not received.awaiting_upload and received.input_received_at
    assert received.input == {**AWAITING["input"], **RECEIVED, "awaiting_upload": False}
    due = next_due(received)
    assert due is not None and due.kind is Kind.PENDING and due.at == epoch(received.input_received_at) + 60
    shown = task_object(received)["input"]
    assert shown["status"] == "received" and shown["checksum"] == {"algorithm": "sha256", "value": "ab" * 32}
    assert task_object(waiting)["input"]["upload_deadline_at"] is not None


def test_an_upload_at_or_after_its_deadline_loses_to_the_expiry() -> None:
    from jobwire.deadlines import expiry_event, next_due

    waiting = fold([new_event("job.created", JOB, TENANT, AWAITING, event_id="evt_c", time="2026-11-23T10:00:00.000Z")])
    assert waiting is not None
    late = new_event("job.input_received", JOB, TENANT, RECEIVED, event_id="evt_l", time="2026-11-23T11:00:00.000Z")
    applied = apply(waiting, late)
    assert applied.verdict is R and "deadline" in (applied.reason or "")
    just_in_time = new_event("job.input_received", JOB, TENANT, RECEIVED, event_id="evt_i", time="2026-11-23T10:59:59.999Z")
    assert apply(waiting, just_in_time).verdict is A
    due = next_due(waiting)
    assert due is not None
    expired = apply(waiting, expiry_event(waiting, due)).job
    assert expired is not None and expired.status is Status.FAILED and expired.error is not None
    assert expired.error["code"] == "expired" and "upload_timeout_s=3600" in expired.error["message"]


@pytest.mark.parametrize(("state", "event_type"), sorted(TABLE))
def test_transition_table(state: str, event_type: str) -> None:
    before = job_in(state)
    verdict, status_after = TABLE[(state, event_type)]
    applied = apply(before, ev(event_type))
    assert applied.verdict is verdict
    if verdict is R:
        assert applied.job is before, "a rejected event changes nothing"
        assert applied.reason
        assert not applied.became_terminal
    elif event_type == "job.heartbeat":
        assert applied.job is before, "a heartbeat changes no state, no version, no event ids"
        assert not applied.became_terminal
    else:
        assert applied.job is not None
        assert applied.job.version == (before.version + 1 if before else 1)
        assert applied.became_terminal == (Status(status_after) in TERMINAL)
    if status_after is None:
        assert applied.job is None
    else:
        assert applied.job is not None and applied.job.status.value == status_after


def test_table_covers_every_pair() -> None:
    from jobwire.events import EVENT_TYPES

    assert set(TABLE) == {(s, t) for s in STATES for t in EVENT_TYPES}


def test_terminal_rejection_says_why() -> None:
    applied = apply(job_in("completed"), ev("job.failed"))
    assert applied.reason == "job is completed; terminal states never change"


def test_duplicate_event_id_is_a_no_op() -> None:
    job = fold([ev("job.created")])
    progress = ev("job.progress", {"total": 10, "processed": 5})
    once = apply(job, progress).job
    twice = apply(once, progress)
    assert twice.verdict is Verdict.DUPLICATE
    assert twice.job is once


def test_duplicate_created_is_a_no_op_not_a_rejection() -> None:
    created = ev("job.created")
    job = fold([created])
    assert apply(job, created).verdict is Verdict.DUPLICATE


def test_other_tenant_cannot_change_a_job() -> None:
    applied = apply(job_in("pending"), ev("job.completed", tenant="mallory"))
    assert applied.verdict is Verdict.REJECTED
    assert applied.reason == "event tenant does not own this job"


def test_progress_beyond_total_is_rejected() -> None:
    applied = apply(job_in("processing"), ev("job.progress", {"total": 3, "processed": 4}))
    assert applied.verdict is Verdict.REJECTED


def test_times_stage_and_progress() -> None:
    created = new_event("job.created", JOB, TENANT, {"operation": "ocr", "parameters": {}}, time="2026-11-23T10:00:00+01:00")
    started = new_event("job.started", JOB, TENANT, {"stage": "converting"}, time="2026-11-23T09:00:01.5Z")
    progress = new_event("job.progress", JOB, TENANT, {"total": 8, "processed": 2}, time="2026-11-23T09:00:02.123456789Z")
    done = new_event(
        "job.completed", JOB, TENANT,
        {"result": {"ok": True}, "result_url": "https://files.example/r.pdf",
         "result_checksum": {"algorithm": "sha256", "value": "ab12"}},
        time="2026-11-23T09:00:03Z",
    )
    job = fold([created, started, progress, done])
    assert job is not None
    assert job.created_at == "2026-11-23T09:00:00.000Z"  # normalised to UTC
    assert job.started_at == "2026-11-23T09:00:01.500Z"
    assert job.updated_at == job.finished_at == "2026-11-23T09:00:03.000Z"
    assert job.stage == "converting"
    assert (job.progress_total, job.progress_processed) == (8, 8)
    assert job.version == 4
    task = task_object(job)
    assert task["status"] == "completed"
    assert task["result_checksum"] == {"algorithm": "sha256", "value": "ab12"}
    assert task["progress"] == {"total": 8, "processed": 8}


def test_failed_job_carries_both_error_shapes() -> None:
    job = fold([ev("job.created"), ev("job.failed")])
    assert job is not None
    task = task_object(job)
    assert task["result"] == {"error": "page 2 is blank", "details": {"page": 2}}
    assert task["error"] == {"code": "bad_input", "message": "page 2 is blank", "details": {"page": 2}}


def test_cancel_requested_flag_and_reason() -> None:
    job = fold([ev("job.created"), ev("job.started"), ev("job.cancel_requested", {"reason": "user asked"})])
    assert job is not None and job.cancel_requested and job.status is Status.PROCESSING
    assert job.cancel_reason == "user asked"
    canceled = apply(job, ev("job.canceled")).job
    assert canceled is not None and canceled.status is Status.CANCELED and canceled.cancel_reason == "user asked"


def test_task_object_matches_schema() -> None:
    from jobwire.validation import validator

    for state in ("pending", "processing", "completed", "failed", "canceled"):
        job = job_in(state)
        assert job is not None
        assert validator("task.json").violations(task_object(job)) == []


# --- properties -----------------------------------------------------------------------------

EVENT_TYPES_AFTER_CREATE = [
    "job.started", "job.progress", "job.completed", "job.failed", "job.cancel_requested", "job.canceled",
]
event_strategy = st.builds(
    lambda t, tenant, n: ev(t, tenant=tenant, event_id=f"evt_h{n}"),
    st.sampled_from(["job.created", *EVENT_TYPES_AFTER_CREATE]),
    st.sampled_from([TENANT, TENANT, TENANT, "other"]),
    st.integers(0, 12),  # small id space: duplicates happen often
)
ALLOWED = {
    Status.PENDING: {Status.PENDING, Status.PROCESSING, *TERMINAL},
    Status.PROCESSING: {Status.PROCESSING, *TERMINAL},
}


@settings(max_examples=400, deadline=None)
@given(st.lists(event_strategy, max_size=25))
def test_properties_over_random_histories(history: list[Event]) -> None:
    job: Job | None = None
    accepted = 0
    for event in history:
        before = job
        applied = apply(job, event)
        job = applied.job
        if applied.verdict is Verdict.ACCEPTED:
            accepted += 1
        else:
            assert job is before
        if before is not None:
            assert job is not None
            assert job.version >= before.version, "version never decreases"
            if before.status in TERMINAL:
                assert job is before, "terminal states never change"
            else:
                assert job.status in ALLOWED[before.status], "only transitions the table allows"
            again = apply(job, event)
            assert again.job is job, "applying an event twice equals applying it once"
    if job is not None:
        assert job.version == accepted, "version counts accepted events"


@settings(max_examples=200, deadline=None)
@given(st.permutations(
    ["job.created", "job.started", "job.progress", "job.cancel_requested", "job.completed", "job.failed"]
))
def test_any_order_yields_an_allowed_state(order: list[str]) -> None:
    job = fold([ev(t) for t in order])
    if order.index("job.created") != 0:
        # Events before created are rejected; the job still exists once created arrives.
        assert job is not None
    assert job is not None
    assert job.status in {Status.PENDING, Status.PROCESSING, *TERMINAL}
    first_terminal = next((t for t in order[order.index("job.created"):] if t in ("job.completed", "job.failed")), None)
    if first_terminal:
        assert job.status.value == first_terminal.removeprefix("job.")
