"""The lifecycle fold: what an event does to a job. Pure: no I/O, no clock, no Kafka.

``apply(job, event)`` is the one place that decides what an event means. The API's projection
and the dispatcher both call it, so they can never disagree about a job's state.

Rules (shared/DESIGN.md, "Events"):
- ``job.created`` makes a pending job; every other event needs the job to exist.
- Terminal states (completed, failed, canceled) never change.
- An event whose id was applied recently is a no-op (``Verdict.DUPLICATE``). A job remembers
  the id of its ``job.created`` and of its last ``EVENT_ID_WINDOW - 1`` accepted events, not
  every id for ever: a copy of an event (a producer's retry, two deciders) arrives close to
  the original, and a replay after a crash is recognised by its log position by whoever reads
  the log again (``dispatch/state.py``), so the job's state stays the same size however long
  it runs.
- A job takes at most ``MAX_EVENTS_PER_JOB`` accepted events; past it only the events that end
  it (completed, failed, canceled) are accepted, the rest are rejected with that reason.
- An event the state does not allow changes nothing and is reported ``Verdict.REJECTED`` with
  a reason, so the caller can keep it in the job's history.
- ``version`` counts accepted events.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

from jobwire.events import Event
from jobwire.timeutil import canonical, parse_utc


class Status(str, Enum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELED})
ACTIVE = frozenset({Status.PENDING, Status.PROCESSING})

#: Which states each event type may be applied in, and the state it leads to
#: (``None``: the status stays as it is).
TRANSITIONS: dict[str, tuple[frozenset[Status], Status | None]] = {
    "job.input_received": (frozenset({Status.PENDING}), None),
    "job.started": (frozenset({Status.PENDING}), Status.PROCESSING),
    "job.heartbeat": (ACTIVE, None),
    "job.progress": (ACTIVE, Status.PROCESSING),
    "job.completed": (ACTIVE, Status.COMPLETED),
    "job.failed": (ACTIVE, Status.FAILED),
    "job.cancel_requested": (ACTIVE, None),
    "job.canceled": (ACTIVE, Status.CANCELED),
}


#: Event ids a job remembers (its ``job.created`` and the latest accepted ones).
EVENT_ID_WINDOW = 64
#: Accepted events per job (``version``); past it only an ending event is accepted.
MAX_EVENTS_PER_JOB = 100_000
ENDINGS = frozenset({"job.completed", "job.failed", "job.canceled"})
#: What a job may take while its input file is still to be uploaded: the upload itself, and
#: what ends it (a cancel, an expiry). A worker's events wait for the file.
BEFORE_INPUT = frozenset({"job.input_received", "job.cancel_requested", "job.canceled", "job.failed"})


class Verdict(str, Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class Job(NamedTuple):
    """A job's state. A NamedTuple, not a dataclass: ``_replace`` is several times faster than
    ``dataclasses.replace`` and a tuple is smaller, and the projection holds one per job."""

    id: str
    tenant: str
    operation: str
    parameters: dict[str, Any]
    metadata: dict[str, Any] | None
    idempotency_key: str | None
    status: Status
    created_at: str
    updated_at: str
    version: int
    #: The id of the job's ``job.created`` first, then the latest accepted ones (a bounded window).
    event_ids: tuple[str, ...]
    stage: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    result_url: str | None = None
    result_url_expires_at: str | None = None
    result_checksum: dict[str, Any] | None = None
    progress_total: int | None = None
    progress_processed: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    cancel_requested: bool = False
    cancel_reason: str | None = None
    retryable: bool | None = None
    #: Deadlines as submitted (seconds; None: none). ``jobwire.deadlines`` says when they fall.
    timeout_s: float | None = None
    pending_timeout_s: float | None = None
    heartbeat_timeout_s: float | None = None
    #: When a cancel was first asked for a job a worker runs: the forced cancel counts from it.
    cancel_requested_at: str | None = None
    #: The job's input file (``job.created``'s ``input``; ``awaiting_upload`` until
    #: ``job.input_received``), and when it arrived: the pending deadline counts from then.
    input: dict[str, Any] | None = None
    input_received_at: str | None = None
    #: A result stored as a file: {id, filename, content_type, size, sha256}.
    result_file: dict[str, Any] | None = None
    #: The job's own callback: {url, events} (webhooks/callbacks.py).
    webhook: dict[str, Any] | None = None

    @property
    def awaiting_upload(self) -> bool:
        return self.input is not None and bool(self.input.get("awaiting_upload"))


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of one event: the job after it, and whether the event counted."""

    job: Job | None
    verdict: Verdict
    reason: str | None = None
    #: True when this event moved the job into a terminal state (what webhooks are made of).
    became_terminal: bool = False


def apply(job: Job | None, event: Event) -> Applied:
    """Fold one validated event into ``job`` (``None`` when the job does not exist yet)."""
    if job is not None and event.id in job.event_ids:
        return Applied(job, Verdict.DUPLICATE)
    if event.type == "job.created":
        if job is not None:
            return Applied(job, Verdict.REJECTED, f"job {job.id} already exists")
        return Applied(_created(event), Verdict.ACCEPTED)
    if job is None:
        return Applied(None, Verdict.REJECTED, f"job {event.subject} does not exist")
    if event.tenant != job.tenant:
        return Applied(job, Verdict.REJECTED, "event tenant does not own this job")
    allowed_from, target = TRANSITIONS[event.type]
    if job.status not in allowed_from:
        if job.status.terminal:
            reason = f"job is {job.status.value}{_why(job)}; terminal states never change"
        else:
            reason = f"{event.type} is not allowed while the job is {job.status.value}"
        return Applied(job, Verdict.REJECTED, reason)
    if job.awaiting_upload and event.type not in BEFORE_INPUT:
        return Applied(job, Verdict.REJECTED, f"{event.type} is not allowed before the job's input file is uploaded")
    if event.type == "job.input_received":
        if not job.awaiting_upload:
            return Applied(job, Verdict.REJECTED, "the job is not waiting for an input file")
        if job.input is None or event.data["file_id"] != job.input["file_id"]:
            return Applied(job, Verdict.REJECTED, "the file is not the one this job waits for")
        if _past(job.created_at, job.input.get("upload_timeout_s"), event.time):
            # The expiry is timed at the deadline: an upload at or after it loses to the expiry,
            # whichever reaches the log first.
            return Applied(job, Verdict.REJECTED, "the upload came after the job's upload deadline")
    if event.type == "job.heartbeat":
        # Proof of life only: no state, no version, no event id kept (a long job sends many);
        # whoever tracks deadlines takes the time from the event.
        return Applied(job, Verdict.ACCEPTED)
    if event.type == "job.progress" and event.data["processed"] > event.data["total"]:
        return Applied(job, Verdict.REJECTED, "progress.processed exceeds progress.total")
    if job.version >= MAX_EVENTS_PER_JOB and event.type not in ENDINGS:
        return Applied(job, Verdict.REJECTED, f"the job has taken its {MAX_EVENTS_PER_JOB} events; only "
                                              "job.completed, job.failed or job.canceled is accepted now")
    at = canonical(event.time)
    # One _replace for everything: each builds all of Job's fields, and this runs per event.
    changed = job._replace(
        **_transition(job, event, at),
        status=target or job.status,
        updated_at=at,
        version=job.version + 1,
        event_ids=remember(job.event_ids, event.id),
    )
    return Applied(changed, Verdict.ACCEPTED, became_terminal=changed.status.terminal)


def remember(event_ids: tuple[str, ...], event_id: str) -> tuple[str, ...]:
    """``event_ids`` with ``event_id`` added: the first (the job's creation) is kept, the
    oldest of the rest make way once there are ``EVENT_ID_WINDOW``."""
    if len(event_ids) < EVENT_ID_WINDOW:
        return (*event_ids, event_id)
    return (event_ids[0], *event_ids[len(event_ids) - EVENT_ID_WINDOW + 2:], event_id)


def _created(event: Event) -> Job:
    at = canonical(event.time)
    data = event.data
    return Job(
        id=event.subject,
        tenant=event.tenant,
        operation=data["operation"],
        parameters=data["parameters"],
        metadata=data.get("metadata"),
        idempotency_key=data.get("idempotency_key"),
        status=Status.PENDING,
        created_at=at,
        updated_at=at,
        version=1,
        event_ids=(event.id,),
        timeout_s=data.get("timeout_s"),
        pending_timeout_s=data.get("pending_timeout_s"),
        heartbeat_timeout_s=data.get("heartbeat_timeout_s"),
        input=data.get("input"),
        webhook=data.get("webhook"),
    )


def _why(job: Job) -> str:
    """For a failed job, its error code: a completion rejected after an expiry says so."""
    return f" ({job.error['code']})" if job.status is Status.FAILED and job.error else ""


def _transition(job: Job, event: Event, at: str) -> dict[str, Any]:
    """The fields an allowed event sets, beside status, time and version."""
    data = event.data
    kind = event.type
    started_at = job.started_at or at
    if kind == "job.input_received":
        received = {name: data[name] for name in ("file_id", "size", "sha256", "content_type", "filename")}
        return {"input": {**(job.input or {}), **received, "awaiting_upload": False}, "input_received_at": at}
    if kind == "job.started":
        return {"started_at": started_at, "stage": data.get("stage", job.stage)}
    if kind == "job.progress":
        return {"started_at": started_at, "stage": data.get("stage", job.stage),
                "progress_total": data["total"], "progress_processed": data["processed"]}
    if kind == "job.completed":
        done = job.progress_total if job.progress_total is not None else job.progress_processed
        return {"finished_at": at, "result": data["result"], "result_url": data.get("result_url"),
                "result_url_expires_at": _maybe_time(data.get("result_url_expires_at")),
                "result_checksum": data.get("result_checksum") or _file_checksum(data.get("result_file")),
                "result_file": data.get("result_file"), "progress_processed": done}
    if kind == "job.failed":
        error = data["error"]
        details = error.get("details") or {}
        # The details are kept once, here; the task object shows them in both seed shapes
        # (result {error, details} too), so snapshots and records carry them once.
        return {"finished_at": at, "error": {"code": error["code"], "message": error["message"], "details": details},
                "retryable": data.get("retryable")}
    if kind == "job.cancel_requested":
        return {"cancel_requested": True, "cancel_reason": data.get("reason") or job.cancel_reason,
                "cancel_requested_at": job.cancel_requested_at or at}
    if kind == "job.canceled":
        return {"finished_at": at, "cancel_reason": data.get("reason") or job.cancel_reason}
    raise AssertionError(f"no transition for {kind}")  # TRANSITIONS and this function disagree


def _past(start: str, seconds: float | None, moment: str) -> bool:
    """Whether ``moment`` is at or after ``start + seconds``."""
    if seconds is None:
        return False
    return (parse_utc(moment) - parse_utc(start)).total_seconds() >= seconds


def _file_checksum(result_file: dict[str, Any] | None) -> dict[str, Any] | None:
    return {"algorithm": "sha256", "value": result_file["sha256"]} if result_file else None


def _maybe_time(value: str | None) -> str | None:
    return canonical(value) if value else None


def fold(events: list[Event], job: Job | None = None) -> Job | None:
    """Apply ``events`` in order; convenient for tests and for rebuilding one job."""
    for event in events:
        job = apply(job, event).job
    return job
