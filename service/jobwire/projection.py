"""The API's read model: every job folded from ``jobs.events``, with indexes and history.

Fed only by records read from the log, in log order, through the shared fold, so two replicas
(or one replica before and after a restart) that read the same log hold the same jobs. Writers
never touch it directly: they publish, then wait for their own position to be applied.

Indexes are sorted by ``(created_at, job id)`` per tenant, per (tenant, status) and per
(tenant, operation), so list queries and cursors seek instead of scanning all jobs.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import sys
from datetime import UTC, datetime, timedelta
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from sortedcontainers import SortedList

from jobwire.events import Event
from jobwire.lifecycle import Applied, Job, Status, Verdict, apply
from jobwire.log import LogReader, LogRecord, Position, skipped
from jobwire.metrics import EVENTS_APPLIED, PROJECTION_JOBS
from jobwire.positions import AppliedPositions
from jobwire.timeutil import format_utc

log = logging.getLogger(__name__)

IndexKey = tuple[str, str]  # (created_at, job id)
# Bound once: a labels() lookup per event is measurable when rebuilding millions of them.
_APPLIED_BY_VERDICT = {verdict: EVENTS_APPLIED.labels(verdict=verdict.value) for verdict in Verdict}


class HistoryEntry(NamedTuple):
    """One event of a job's history. The raw record is kept (compact) and decoded on demand."""

    position: Position
    verdict: Verdict
    reason: str | None
    raw: bytes


@dataclass(frozen=True, slots=True)
class ListQuery:
    tenant: str
    status: Status | None = None
    operation: str | None = None
    created_after: str | None = None
    created_before: str | None = None
    limit: int = 50
    #: Exclusive upper bound from the previous page (newest first).
    after_key: IndexKey | None = None


@dataclass
class Projection:
    retention_s: float = 30 * 86400.0
    jobs: dict[str, Job] = field(default_factory=dict)
    history: dict[str, list[HistoryEntry]] = field(default_factory=dict)
    positions: AppliedPositions = field(default_factory=AppliedPositions)
    orphans: int = 0
    #: The topic it is fed from, for the invalid records count.
    topic: str = "jobs.events"

    def __post_init__(self) -> None:
        self._by_tenant: dict[str, SortedList] = {}
        self._by_status: dict[tuple[str, Status], SortedList] = {}
        self._by_operation: dict[tuple[str, str], SortedList] = {}
        self._finished: list[tuple[str, str]] = []  # heap of (finished_at, job id)
        self._changed: dict[str, asyncio.Event] = {}

    # --- feeding ----------------------------------------------------------------------------

    def apply_record(self, record: LogRecord) -> Applied | None:
        """Fold one record; returns the fold's outcome.

        A record that is no valid event, or that anything here fails on, only advances the
        position: it is counted and logged, and the projection carries on with the next one.
        (The dispatcher's group quarantines such records; every replica reading them must not.)
        """
        self.positions.advance(record.position)
        event = record.event
        if event is None:
            skipped(self.topic, record.position, str(record.invalid))
            return None
        try:
            return self._fold(record, event)
        except Exception as exc:
            skipped(self.topic, record.position, f"{type(exc).__name__}: {exc}")
            return None

    def _fold(self, record: LogRecord, event: Event) -> Applied:
        before = self.jobs.get(event.subject)
        outcome = apply(before, event)
        _APPLIED_BY_VERDICT[outcome.verdict].inc()
        if outcome.job is None:
            self.orphans += 1  # an event for a job that never existed (or was evicted)
            return outcome
        if outcome.verdict is Verdict.DUPLICATE:
            return outcome
        job = outcome.job
        assert record.raw is not None
        self.history.setdefault(job.id, []).append(
            HistoryEntry(record.position, outcome.verdict, outcome.reason, record.raw)
        )
        if outcome.verdict is Verdict.ACCEPTED:
            self._store(before, job)
        self._notify(job.id)
        return outcome

    def applied_batch(self) -> None:
        """Call after each batch: wakes writers waiting for their position."""
        self.positions.wake()

    @property
    def applied(self) -> dict[int, int]:
        return self.positions.applied

    def _store(self, before: Job | None, job: Job) -> None:
        key = (job.created_at, job.id)
        if before is None:
            job = job._replace(tenant=sys.intern(job.tenant), operation=sys.intern(job.operation))
            self._index(self._by_tenant, job.tenant, key)
            self._index(self._by_operation, (job.tenant, job.operation), key)
            self._index(self._by_status, (job.tenant, job.status), key)
            PROJECTION_JOBS.inc()
        elif before.status is not job.status:
            self._by_status[(job.tenant, before.status)].remove(key)
            self._index(self._by_status, (job.tenant, job.status), key)
        if job.status.terminal and job.finished_at and (before is None or not before.status.terminal):
            heapq.heappush(self._finished, (job.finished_at, job.id))
        self.jobs[job.id] = job

    @staticmethod
    def _index(index: dict, name: object, key: IndexKey) -> None:  # type: ignore[type-arg]
        entries = index.get(name)
        if entries is None:
            entries = index[name] = SortedList()
        entries.add(key)

    def evict_finished_before(self, cutoff: str) -> int:
        """Drop terminal jobs that finished before ``cutoff`` (RFC 3339); returns how many."""
        evicted = 0
        while self._finished and self._finished[0][0] < cutoff:
            _, job_id = heapq.heappop(self._finished)
            job = self.jobs.pop(job_id, None)
            if job is None:
                continue
            key = (job.created_at, job.id)
            self._by_tenant[job.tenant].remove(key)
            self._by_status[(job.tenant, job.status)].remove(key)
            self._by_operation[(job.tenant, job.operation)].remove(key)
            self.history.pop(job_id, None)
            self._changed.pop(job_id, None)
            PROJECTION_JOBS.dec()
            evicted += 1
        return evicted

    # --- reading ----------------------------------------------------------------------------

    def get(self, tenant: str, job_id: str) -> Job | None:
        """The job if it exists and belongs to ``tenant``; another tenant's job is not found."""
        job = self.jobs.get(job_id)
        return job if job is not None and job.tenant == tenant else None

    def events_of(self, tenant: str, job_id: str) -> list[HistoryEntry] | None:
        return self.history.get(job_id, []) if self.get(tenant, job_id) else None

    def list(self, query: ListQuery) -> tuple[list[Job], IndexKey | None]:
        """Newest first; returns the page and the key to continue after (None on the last page)."""
        candidates = [self._by_tenant.get(query.tenant)]
        if query.status is not None:
            candidates.append(self._by_status.get((query.tenant, query.status)))
        if query.operation is not None:
            candidates.append(self._by_operation.get((query.tenant, query.operation)))
        if any(c is None for c in candidates):
            return [], None
        index = min(candidates, key=len)  # walk the smallest index, filter on the rest
        page: list[Job] = []
        for key in self._walk(index, query):
            job = self.jobs[key[1]]
            if query.status is not None and job.status is not query.status:
                continue
            if query.operation is not None and job.operation != query.operation:
                continue
            if len(page) == query.limit:
                return page, (page[-1].created_at, page[-1].id)
            page.append(job)
        return page, None

    @staticmethod
    def _walk(index: SortedList, query: ListQuery) -> Iterator[IndexKey]:
        maximum: IndexKey | None = query.after_key
        if query.created_before is not None:
            bound = (query.created_before, "")
            maximum = min(maximum, bound) if maximum else bound
        minimum = (query.created_after, "\uffff") if query.created_after is not None else None
        return iter(index.irange(minimum, maximum, inclusive=(False, False), reverse=True))

    # --- waiting ----------------------------------------------------------------------------

    def has_applied(self, position: Position) -> bool:
        return self.positions.has_applied(position)

    async def wait_for_position(self, position: Position, timeout_s: float) -> bool:
        """True once the record at ``position`` has been applied; False after the timeout."""
        return await self.positions.wait_for(position, timeout_s)

    def _notify(self, job_id: str) -> None:
        changed = self._changed.pop(job_id, None)
        if changed is not None:
            changed.set()

    async def wait_for_change(self, job_id: str, timeout_s: float) -> bool:
        """Wait until anything is added to the job's history; False after the timeout."""
        changed = self._changed.get(job_id)
        if changed is None:
            changed = self._changed[job_id] = asyncio.Event()
        try:
            await asyncio.wait_for(changed.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def caught_up(self, end_offsets: dict[int, int]) -> bool:
        return self.positions.caught_up(end_offsets)

async def follow(projection: Projection, reader: LogReader, stop: asyncio.Event) -> None:
    """Apply records from ``reader`` to ``projection`` until ``stop`` is set; evicts old jobs."""
    last_eviction = 0.0
    loop = asyncio.get_running_loop()
    async for batch in reader.batches(timeout_ms=100):
        for record in batch:
            projection.apply_record(record)
        if batch:
            projection.applied_batch()
        if stop.is_set():
            return
        if loop.time() - last_eviction > 60:
            last_eviction = loop.time()
            cutoff = format_utc(datetime.now(UTC) - timedelta(seconds=projection.retention_s))
            evicted = projection.evict_finished_before(cutoff)
            if evicted:
                log.info("projection evicted finished jobs count=%d cutoff=%s", evicted, cutoff)
