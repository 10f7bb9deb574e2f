"""``jobwire audit``: proof, from the log alone, that every webhook owed was dealt with.

For every terminal event of ``jobs.events`` in a time window, it finds the endpoints subscribed
to it at that moment (the endpoint's snapshot on ``webhooks.endpoints`` in force when the event
was written) and looks for the delivery's outcome: an attempt record on ``webhooks.attempts``,
a dead letter on ``webhooks.dead``, a record still on the retry path (``webhooks.requests``
and the tiers), or an entry waiting its turn in an ordered endpoint's queue (the job's latest
snapshot on ``jobs.state``). A pair with none of them is *missing*: the at-least-once promise was broken for
it (or the dispatcher is behind: the default window ends a minute ago for that reason).

The ledger is pure (``Ledger``: feed it records in log order, then ``report``); ``audit`` reads
the topics into it.
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from jobwire.binding import decode_record
from jobwire.config import Settings
from jobwire.errors import InvalidEvent
from jobwire.kafka.readers import read_whole
from jobwire.lifecycle import Job, apply
from jobwire.records import RawRecord
from jobwire.topics import Topics, retry_delays
from jobwire.webhooks import callbacks
from jobwire.webhooks.model import Endpoint, job_payload, webhook_id
from jobwire.webhooks.registry import decode_endpoint

#: Outcomes that end a delivery (an attempt record saying so is final).
FINAL = {"succeeded": "delivered", "failed": "dead", "disabled": "dead", "skipped": "dead", "dropped": "dropped"}


@dataclass(frozen=True, slots=True)
class Owed:
    job_id: str
    event_id: str
    event_type: str
    endpoint_id: str
    webhook_id: str
    at_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "event_id": self.event_id, "event_type": self.event_type,
                "endpoint_id": self.endpoint_id, "webhook_id": self.webhook_id, "at_ms": self.at_ms}


@dataclass
class Report:
    since_ms: int
    until_ms: int
    terminal_events: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("delivered", "dead", "dropped", "pending", "missing"), 0))
    missing: list[Owed] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing

    def to_dict(self) -> dict[str, Any]:
        return {"since_ms": self.since_ms, "until_ms": self.until_ms, "terminal_events": self.terminal_events,
                "pairs": sum(self.counts.values()), **self.counts, "ok": self.ok,
                "missing_pairs": [m.to_dict() for m in self.missing]}


class Ledger:
    def __init__(self, since_ms: int, until_ms: int) -> None:
        self.since_ms = since_ms
        self.until_ms = until_ms
        self._jobs: dict[str, Job | None] = {}
        self._terminal: list[tuple[Job, str, str, int]] = []  # (job, event id, event type, at ms)
        #: endpoint id -> its snapshots in log-time order: ([at ms], [Endpoint or None])
        self._history: dict[str, tuple[list[int], list[Endpoint | None]]] = {}
        self._final: dict[str, str] = {}
        self._pending: set[str] = set()
        #: (partition, job id) -> delivery ids its latest snapshot's ordered queue holds
        self._queued: dict[tuple[int, bytes | None], set[str]] = {}

    def event(self, record: RawRecord, timestamp_ms: int) -> None:
        try:
            event = decode_record(record.value, record.headers or ())
        except InvalidEvent:
            return  # set aside by the dispatcher; not an event, so it owes nothing
        job = self._jobs.get(event.subject)
        outcome = apply(job, event)
        self._jobs[event.subject] = outcome.job
        if outcome.became_terminal and outcome.job is not None and self.since_ms <= timestamp_ms <= self.until_ms:
            event_type, _ = job_payload(outcome.job)
            self._terminal.append((outcome.job, event.id, event_type, timestamp_ms))
        if outcome.job is not None and outcome.job.status.terminal:
            self._jobs[event.subject] = outcome.job._replace(parameters={}, result=None, metadata=None, error=None)

    def endpoint(self, record: RawRecord, timestamp_ms: int) -> None:
        endpoint_id = (record.key or b"").decode(errors="replace")
        try:
            snapshot = None if record.value is None else decode_endpoint(record.key, record.value)
        except ValueError:
            return
        times, snapshots = self._history.setdefault(endpoint_id, ([], []))
        times.append(timestamp_ms)
        snapshots.append(snapshot)

    def attempt(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            attempt = orjson.loads(value)
            delivery_id, outcome = attempt["delivery_id"], attempt["outcome"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if outcome in FINAL:
            self._final[delivery_id] = FINAL[outcome]
        else:
            self._pending.add(delivery_id)

    def dead_letter(self, value: bytes | None) -> None:
        delivery_id = _delivery_id(value)
        if delivery_id is not None:
            self._final.setdefault(delivery_id, "dead")

    def snapshot(self, record: RawRecord) -> None:
        """A job's state snapshot: the deliveries its ordered queue holds are pending (the
        latest snapshot per job counts)."""
        queued: set[str] = set()
        try:
            data = orjson.loads(record.value) if record.value is not None else {}
            queued = {str(entry[0]) for entry in (data.get("ordered") or ())} if isinstance(data, dict) else set()
        except (orjson.JSONDecodeError, TypeError, IndexError, AttributeError):
            pass
        key = (record.partition, record.key)
        if queued:
            self._queued[key] = queued
        else:
            self._queued.pop(key, None)

    def on_retry_path(self, value: bytes | None) -> None:
        delivery_id = _delivery_id(value)
        if delivery_id is not None:
            self._pending.add(delivery_id)

    def subscribed(self, tenant: str, event_type: str, at_ms: int) -> Iterable[Endpoint]:
        """The endpoints subscribed to ``event_type`` as they were at ``at_ms``."""
        for times, snapshots in self._history.values():
            index = bisect.bisect_right(times, at_ms) - 1
            snapshot = snapshots[index] if index >= 0 else None
            if snapshot is not None and snapshot.tenant == tenant and snapshot.wants(event_type):
                yield snapshot

    def report(self) -> Report:
        report = Report(self.since_ms, self.until_ms, terminal_events=len(self._terminal))
        queued = set().union(*self._queued.values())
        for job, event_id, event_type, at_ms in self._terminal:
            owed = [e.id for e in self.subscribed(job.tenant, event_type, at_ms)
                    if e.takes(job)]  # a job a content filter turned away owes nothing
            if callbacks.wants(job, event_type):
                owed.append(callbacks.callback_endpoint_id(job.tenant, (job.webhook or {})["url"]))  # its callback
            for endpoint_id in owed:
                wid = webhook_id(event_id, endpoint_id)
                state = self._final.get(wid) or ("pending" if wid in self._pending or wid in queued else "missing")
                report.counts[state] += 1
                if state == "missing":
                    report.missing.append(Owed(job.id, event_id, event_type, endpoint_id, wid, at_ms))
        return report


def _delivery_id(value: bytes | None) -> str | None:
    try:
        found = orjson.loads(value or b"")["id"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return found if isinstance(found, str) else None


async def audit(settings: Settings, since_ms: int, until_ms: int) -> Report:
    """Read the topics the guarantee lives in (whole, up to where they end now) and report."""
    topics = Topics(settings.topic_prefix)
    ledger = Ledger(since_ms, until_ms)
    feeds: list[tuple[str, Any]] = [
        (topics.endpoints, ledger.endpoint), (topics.events, ledger.event),
        (topics.state, lambda r, _: ledger.snapshot(r)),
        (topics.attempts, lambda r, _: ledger.attempt(r.value)), (topics.dead, lambda r, _: ledger.dead_letter(r.value)),
        *((topic, lambda r, _: ledger.on_retry_path(r.value))
          for topic in (topics.requests, *(topics.retry(d) for d in retry_delays(settings)))),
    ]
    for topic, feed in feeds:
        records: AsyncIterator[Any] = read_whole(settings.kafka, topic)
        async for record in records:
            feed(record, record.timestamp)
    return ledger.report()
