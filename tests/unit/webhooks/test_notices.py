"""Lifecycle webhooks (pure): a start is told once; progress is coalesced by the events' own
times, at most one per interval, the last step always told, the same on every replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from jobwire.events import new_event
from jobwire.lifecycle import apply
from jobwire.timeutil import format_utc
from jobwire.webhooks.notices import PROGRESS, STARTED, notice_for

START = datetime(2026, 12, 1, tzinfo=UTC)


def run(gaps_ms: list[int], total: int, interval_s: float) -> list[tuple[int, str]]:
    """The notices a job's events make: (progress step, time) of each task.progress."""
    at = START
    job = apply(None, new_event("job.created", "job_1", "acme", {"operation": "x", "parameters": {}},
                                time=format_utc(at))).job
    started = new_event("job.started", "job_1", "acme", {}, time=format_utc(at))
    job = apply(job, started).job
    assert job is not None and notice_for(started, job, None, interval_s) == STARTED
    noticed_at: str | None = None
    told = []
    for step, gap in enumerate(gaps_ms, start=1):
        at += timedelta(milliseconds=gap)
        event = new_event("job.progress", "job_1", "acme", {"processed": min(step, total), "total": total},
                          time=format_utc(at))
        job = apply(job, event).job
        assert job is not None
        if notice_for(event, job, noticed_at, interval_s) == PROGRESS:
            noticed_at = event.time
            told.append((min(step, total), event.time))
    return told


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 4000), min_size=1, max_size=60), st.integers(1, 80),
       st.sampled_from([0.0, 0.5, 1.0, 5.0]))
def test_progress_is_told_at_most_once_per_interval_and_its_last_step_always(
        gaps_ms: list[int], total: int, interval_s: float) -> None:
    told = run(gaps_ms, total, interval_s)
    assert told == run(gaps_ms, total, interval_s), "the same events make the same notices"
    assert told and told[0][0] == 1, "the first progress is told"
    ordinary = [(step, at) for step, at in told if step < total]
    for (_, earlier), (_, later) in zip(ordinary, ordinary[1:], strict=False):
        gap = (datetime.fromisoformat(later.replace("Z", "+00:00")) -
               datetime.fromisoformat(earlier.replace("Z", "+00:00"))).total_seconds()
        assert gap >= interval_s
    if len(gaps_ms) >= total:
        assert any(step == total for step, _ in told), "the last step is always told"


def test_other_events_make_no_lifecycle_webhook() -> None:
    created = new_event("job.created", "job_1", "acme", {"operation": "x", "parameters": {}})
    job = apply(None, created).job
    assert job is not None and notice_for(created, job, None, 5.0) is None
