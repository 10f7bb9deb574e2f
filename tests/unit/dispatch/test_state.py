"""The dispatcher's per-job snapshot (jobs.state) survives its round trip: whatever a job's
history, decoding what was encoded gives the same state, so a restore after a crash or a
rebalance resumes exactly where the snapshot left off."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from jobwire.dispatch.state import JobState
from jobwire.events import new_event
from jobwire.lifecycle import fold

STEPS: list[tuple[str, dict[str, Any]]] = [
    ("job.started", {"stage": "download"}),
    ("job.progress", {"processed": 3, "total": 10, "stage": "ocr"}),
    ("job.heartbeat", {}),
    ("job.cancel_requested", {"reason": "user asked"}),
    ("job.completed", {"result": {"pages": 10, "text": "é ✓ \u0000"}}),
    ("job.failed", {"error": {"code": "boom", "message": "it broke", "details": {"n": 1}}, "retryable": True}),
    ("job.canceled", {"reason": "stopped"}),
]


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.sampled_from(STEPS), max_size=8), offset=st.integers(0, 2**62),
       deadlines=st.sampled_from([{}, {"timeout_s": 60, "heartbeat_timeout_s": 5}, {"pending_timeout_s": 3600}]),
       terminal=st.booleans())
def test_a_snapshot_decodes_to_what_was_encoded(steps: list[tuple[str, dict[str, Any]]], offset: int,
                                               deadlines: dict[str, Any], terminal: bool) -> None:
    created = new_event("job.created", "job_state", "acme",
                        {"operation": "ocr", "parameters": {"pages": 10}, "metadata": {"k": "v"}, **deadlines})
    events = [created, *(new_event(kind, "job_state", "acme", data) for kind, data in steps)]
    job = fold(events)
    assert job is not None
    state = JobState(job, offset, events[-1].id if terminal else None)
    assert JobState.decode(state.encode()) == state


def test_a_snapshot_leaves_out_the_later_fields_a_job_does_not_use() -> None:
    """A dispatcher of the previous version (a rolling upgrade, a rollback) still reads it."""
    import orjson

    from jobwire.dispatch.state import LATER_JOB_FIELDS
    from jobwire.events import new_event
    from jobwire.lifecycle import fold

    plain = fold([new_event("job.created", "job_1", "acme", {"operation": "x", "parameters": {}})])
    called = fold([new_event("job.created", "job_2", "acme", {"operation": "x", "parameters": {},
                                                               "webhook": {"url": "https://c.example/h"}})])
    assert plain is not None and called is not None
    encoded = orjson.loads(JobState(plain, 3).encode())["job"]
    assert not set(LATER_JOB_FIELDS) & set(encoded)
    assert JobState.decode(JobState(plain, 3).encode()).job == plain
    assert JobState.decode(JobState(called, 4).encode()).job == called
