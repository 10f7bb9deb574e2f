"""When a job's deadlines fall, and the event that ends a job whose deadline has passed. Pure:
no I/O; the clock is an argument.

A job may carry three limits, set when it is created (``job.created`` data, the submit body):

- ``timeout_s``: from creation to a terminal state;
- ``pending_timeout_s``: from creation to a worker's first event;
- ``heartbeat_timeout_s``: the longest a processing job may go without any event from its
  worker (``job.heartbeat`` included).

And one the deployment sets (``JOBWIRE_CANCEL_GRACE_S``): how long a worker has to stop a job
it runs once a cancel is asked for it. Past that the job ends ``canceled`` whatever the worker
does (a forced cancel); a late outcome from the worker is rejected and kept in the history.

Whoever owns a job's partition (the dispatcher) asks ``next_due`` after every change and fires
``expiry_event`` when the time comes. The expiry is an ordinary ``job.failed`` whose id is
derived from the job and the deadline, so two deciders (or one that fires again after a crash)
make one transition: the fold takes the first terminal event and rejects the rest.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import NamedTuple

from jobwire.events import Event, new_event
from jobwire.ids import derived_id
from jobwire.lifecycle import Job, Status
from jobwire.timeutil import LATEST, format_utc, parse_utc

SOURCE = "/jobwire/deadlines"
#: error.code of a job that a worker started but did not finish in time / that never started.
TIMEOUT = "timeout"
EXPIRED = "expired"


class Kind(str, Enum):
    """Which limit fell; the value is the field that set it."""

    TIMEOUT = "timeout_s"
    PENDING = "pending_timeout_s"
    HEARTBEAT = "heartbeat_timeout_s"
    CANCEL = "cancel_grace_s"
    UPLOAD = "upload_timeout_s"


class Due(NamedTuple):
    """A job's next deadline: unix seconds, and which limit it is."""

    at: float
    kind: Kind


def epoch(text: str) -> float:
    return parse_utc(text).timestamp()


def _after(start: str, seconds: float | None) -> str | None:
    if seconds is None:
        return None
    try:
        return format_utc(parse_utc(start) + timedelta(seconds=seconds))
    except OverflowError:  # created in the year 9999: the deadline lies past the calendar
        return LATEST


def deadline_at(job: Job) -> str | None:
    """When the whole job's time is up (``created_at + timeout_s``), for the task object."""
    return _after(job.created_at, job.timeout_s)


def pending_deadline_at(job: Job) -> str | None:
    """When a job no worker has started expires: ``pending_timeout_s`` from its creation, or
    from the arrival of its input file for a job that waited for one."""
    return _after(job.input_received_at or job.created_at, job.pending_timeout_s)


def upload_deadline_at(job: Job) -> str | None:
    """When a job still waiting for its input file expires."""
    return _after(job.created_at, _upload_limit(job)) if job.awaiting_upload else None


def _upload_limit(job: Job) -> float | None:
    return job.input.get("upload_timeout_s") if job.input is not None else None


def last_sign_of_life(job: Job, heartbeat_at: float | None) -> float:
    """The latest event that shows the worker alive: a heartbeat, or any accepted event."""
    updated = epoch(job.updated_at)
    return updated if heartbeat_at is None else max(updated, heartbeat_at)


def next_due(job: Job, heartbeat_at: float | None = None, cancel_grace_s: float | None = None) -> Due | None:
    """The earliest deadline still ahead of ``job`` (its time may already be past); None when
    the job is finished or has no limit that applies in its state.

    ``heartbeat_at``: unix seconds of the latest heartbeat seen, which the job itself does not
    keep (heartbeats change no state). ``cancel_grace_s``: the deployment's grace for a running
    job's cancel (None: a cancel waits for the worker however long)."""
    if job.status.terminal:
        return None
    candidates: list[Due] = []
    created = None
    if job.timeout_s is not None:
        created = epoch(job.created_at)
        candidates.append(Due(created + job.timeout_s, Kind.TIMEOUT))
    if job.awaiting_upload and (upload_s := _upload_limit(job)) is not None:
        created = epoch(job.created_at) if created is None else created
        candidates.append(Due(created + upload_s, Kind.UPLOAD))
    elif job.status is Status.PENDING and job.pending_timeout_s is not None:
        waiting_since = epoch(job.input_received_at or job.created_at)
        candidates.append(Due(waiting_since + job.pending_timeout_s, Kind.PENDING))
    if job.status is Status.PROCESSING and job.heartbeat_timeout_s is not None:
        candidates.append(Due(last_sign_of_life(job, heartbeat_at) + job.heartbeat_timeout_s, Kind.HEARTBEAT))
    if job.status is Status.PROCESSING and job.cancel_requested_at is not None and cancel_grace_s is not None:
        candidates.append(Due(epoch(job.cancel_requested_at) + cancel_grace_s, Kind.CANCEL))
    # On a tie the whole job's timeout names the cause: it is the limit the client chose first.
    return min(candidates, key=lambda due: (due.at, list(Kind).index(due.kind))) if candidates else None


def expiry_event_id(job_id: str, kind: Kind) -> str:
    return derived_id("evt", f"{job_id}\0expiry\0{kind.value}")


def expiry_event(job: Job, due: Due) -> Event:
    """The ``job.failed`` that ends ``job`` because ``due`` passed (``job.canceled`` for a
    forced cancel). Its time is the deadline
    itself, so every decider (and every replay) writes the same event."""
    at = format_utc(datetime.fromtimestamp(due.at, UTC))
    if due.kind is Kind.CANCEL:
        asked = job.cancel_requested_at or at
        reason = (f"canceled by request at {asked}; the worker did not stop within the grace period "
                  f"(deadline {at})")
        if job.cancel_reason:
            reason = f"{job.cancel_reason} ({reason})"
        return new_event("job.canceled", job.id, job.tenant, {"reason": reason[:1000]}, source=SOURCE,
                         event_id=expiry_event_id(job.id, due.kind), time=at)
    limit = _upload_limit(job) if due.kind is Kind.UPLOAD else getattr(job, due.kind.value)
    never_started = job.status is Status.PENDING
    if due.kind is Kind.UPLOAD:
        message = f"the input file was not uploaded within upload_timeout_s={limit:g} (deadline {at})"
    elif due.kind is Kind.PENDING:
        message = f"no worker started the job within pending_timeout_s={limit:g} (deadline {at})"
    elif due.kind is Kind.TIMEOUT:
        message = f"the job did not finish within timeout_s={limit:g} (deadline {at})"
    else:
        message = f"no event or heartbeat from the worker within heartbeat_timeout_s={limit:g} (deadline {at})"
    error = {"code": EXPIRED if never_started else TIMEOUT, "message": message,
             "details": {"deadline": due.kind.value, "deadline_at": at, "limit_s": limit}}
    return new_event("job.failed", job.id, job.tenant, {"error": error}, source=SOURCE,
                     event_id=expiry_event_id(job.id, due.kind), time=at)
