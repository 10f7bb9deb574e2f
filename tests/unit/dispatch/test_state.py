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
