"""Lifecycle webhooks: ``task.started`` and ``task.progress``, for endpoints that list them.

Pure. A job's start is told once. Its progress is coalesced: a ``job.progress`` makes a notice
only when ``interval_s`` has passed, by the events' own times, since the last notice of the
job (or when it reports its last step), so a worker that reports every page costs a receiver
at most one webhook per job per interval, each carrying the job as it stands then. Decided
from the events alone, the same events give the same notices on every dispatcher and after
every restart. What a burst's last step would have said is carried by the next notice, or by
the terminal webhook, whose task object holds the final progress.
"""

from __future__ import annotations

from jobwire.events import Event
from jobwire.lifecycle import Job
from jobwire.timeutil import parse_utc

STARTED = "task.started"
PROGRESS = "task.progress"
LIFECYCLE_TYPES = (STARTED, PROGRESS)
#: Records of a job whose notices are not all settled, at most (its snapshot keeps them all,
#: so a replay sends each again); past it no new progress notice is made until some settle.
MAX_UNSETTLED = 16


def notice_for(event: Event, job: Job, last_progress_notice_at: str | None, interval_s: float) -> str | None:
    """The lifecycle webhook type ``event`` (accepted, ``job`` after it) makes, if any."""
    if event.type == "job.started":
        return STARTED
    if event.type != "job.progress":
        return None
    if job.progress_total is not None and job.progress_processed is not None \
            and job.progress_processed >= job.progress_total:
        return PROGRESS  # the last step is always told
    if last_progress_notice_at is None:
        return PROGRESS
    waited = (parse_utc(event.time) - parse_utc(last_progress_notice_at)).total_seconds()
    return PROGRESS if waited >= interval_s else None
