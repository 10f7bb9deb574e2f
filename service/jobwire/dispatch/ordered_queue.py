"""The queue of a job's deliveries to its ordered endpoints (``ordering: "job"``), as its
state snapshot keeps it. Pure.

Entries are in the order the job's events were folded, which is their ``version`` order; per
endpoint, only the first (the head) may be attempted, and the next one waits until the head
has succeeded or been set aside as a dead letter. A terminal webhook's body is made from the
job when its turn comes (a finished job's task object does not change); a lifecycle notice
keeps the body it was made with, so one retried after the job moved on still tells the state it
was about. Past ``NOTICE_BODIES_BYTES`` per job, a notice's body is made when its turn comes
too, carrying the task as it stands then (as a replayed notice does), and the snapshot stays small.

Lifecycle notices coalesce here too: one still waiting (never attempted) gives way to any newer
webhook of the same job to the same endpoint, which carries a later state of the same task.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from jobwire.lifecycle import Job
from jobwire.webhooks.model import Delivery, job_payload, notice_payload
from jobwire.webhooks.notices import LIFECYCLE_TYPES

#: The endpoint option's value that orders its deliveries per job. A job holds at most 2
#: entries per such endpoint: the head, and a lifecycle notice or the terminal webhook after it.
ORDERED = "job"
#: Lifecycle notices' bodies a job's queue keeps, at most, in bytes.
NOTICE_BODIES_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Pending:
    """One delivery to an ordered endpoint, waiting for (or taking) its turn."""

    id: str  # the webhook-id
    endpoint_id: str
    event_type: str
    event_id: str
    created_at: str
    attempts: int = 0
    due_at_ms: int = 0
    not_before_ms: int = 0
    #: The body as made (lifecycle notices, within the job's budget); None: made at its turn.
    body: bytes | None = None
    #: The trace context of the record that made it (jobwire/tracing.py), when tracing is on.
    traceparent: str | None = None

    def encode(self) -> list[Any]:
        fields: list[Any] = [self.id, self.endpoint_id, self.event_type, self.event_id, self.created_at,
                             self.attempts, self.due_at_ms, self.not_before_ms]
        if self.body is not None or self.traceparent is not None:
            # The body as text: the bytes signed after a restore are the bytes made.
            fields += [self.body.decode() if self.body is not None else None, self.traceparent]
        return fields

    @classmethod
    def decode(cls, fields: list[Any]) -> Pending:
        body, trace = (fields[8], fields[9]) if len(fields) > 9 else (None, None)
        return cls(str(fields[0]), str(fields[1]), str(fields[2]), str(fields[3]), str(fields[4]), int(fields[5]),
                   int(fields[6]), int(fields[7]), str(body).encode() if body is not None else None,
                   str(trace) if trace is not None else None)

    @classmethod
    def of(cls, delivery: Delivery, queue: tuple[Pending, ...] = (), traceparent: str | None = None) -> Pending:
        """The entry for ``delivery``, joining ``queue``: a lifecycle notice keeps its body if
        the queue's kept bodies stay within the budget."""
        kept = sum(len(p.body) for p in queue if p.body is not None)
        body = delivery.body if delivery.event_type in LIFECYCLE_TYPES \
            and kept + len(delivery.body) <= NOTICE_BODIES_BYTES else None
        return cls(delivery.id, delivery.endpoint_id, delivery.event_type, delivery.event_id, delivery.created_at,
                   body=body, traceparent=traceparent)

    @property
    def ready_at_ms(self) -> int:
        return max(self.due_at_ms, self.not_before_ms)

    def delivery(self, job: Job) -> Delivery:
        """The delivery to attempt now: the body kept, or made from ``job`` as it stands."""
        body = self.body if self.body is not None else notice_payload(job, self.event_type) \
            if self.event_type in LIFECYCLE_TYPES else job_payload(job)[1]
        return Delivery(self.id, self.endpoint_id, job.tenant, self.event_type, self.event_id, job.id, body,
                        self.created_at, attempts=self.attempts, due_at_ms=self.due_at_ms,
                        not_before_ms=self.not_before_ms, traceparent=self.traceparent)


Queue = tuple[Pending, ...]


def enqueue(queue: Queue, new: Pending) -> Queue:
    """``queue`` with ``new`` at its end (unchanged if it holds ``new`` already: a replay);
    a lifecycle notice waiting for the same endpoint gives way to it."""
    if any(p.id == new.id for p in queue):
        return queue
    seen: set[str] = set()
    kept = []
    for pending in queue:
        is_head = pending.endpoint_id not in seen
        seen.add(pending.endpoint_id)
        superseded = not is_head and pending.endpoint_id == new.endpoint_id and pending.event_type in LIFECYCLE_TYPES
        if not superseded:
            kept.append(pending)
    return (*kept, new)


def heads(queue: Queue) -> list[Pending]:
    """The first entry per endpoint: the deliveries whose turn it is."""
    seen: set[str] = set()
    found = []
    for pending in queue:
        if pending.endpoint_id not in seen:
            seen.add(pending.endpoint_id)
            found.append(pending)
    return found


def head(queue: Queue, endpoint_id: str) -> Pending | None:
    return next((p for p in queue if p.endpoint_id == endpoint_id), None)


def finished(queue: Queue, delivery_id: str) -> Queue:
    """``queue`` without the entry ``delivery_id`` (it succeeded or was set aside)."""
    return tuple(p for p in queue if p.id != delivery_id)


def retrying(queue: Queue, retry: Delivery) -> Queue:
    """``queue`` with the entry of ``retry`` carrying its attempts and next due time."""
    return tuple(replace(p, attempts=retry.attempts, due_at_ms=retry.due_at_ms, not_before_ms=retry.not_before_ms)
                 if p.id == retry.id else p for p in queue)
