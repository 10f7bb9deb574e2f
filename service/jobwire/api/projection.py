"""The API's read model: every job folded from ``jobs.events``, with its history, in the store.

Fed only by records read from the log, in log order, through the shared fold, so two replicas
(or one replica before and after a restart) that read the same log hold the same jobs. Writers
never touch it directly: they publish, then wait for their own position to be applied.

Each batch of records is folded in memory against the jobs it names (loaded in one query),
then written in one transaction with the offsets it brings the topic to. Memory holds only
what is hot: the batch being folded, and the waiters (read-your-writes, long-polls, streams).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from jobwire.api.store import Store
from jobwire.events import HEARTBEAT, Event
from jobwire.kafka.readers import to_log_record
from jobwire.lifecycle import ACTIVE, Applied, Job, Status, Verdict, apply
from jobwire.metrics import EVENTS_APPLIED, PROJECTION_JOBS
from jobwire.positions import AppliedPositions, Position
from jobwire.records import LogRecord, RawRecord, skipped

log = logging.getLogger(__name__)

IndexKey = tuple[str, str]  # (created_at, job id)
# Bound once: a labels() lookup per event is measurable when rebuilding millions of them.
_APPLIED_BY_VERDICT = {verdict: EVENTS_APPLIED.labels(verdict=verdict.value) for verdict in Verdict}
_STATUS = {status.value: status for status in Status}
_VERDICT = {verdict.value: verdict for verdict in Verdict}
_EVENT_IDS = Job._fields.index("event_ids")
_STATUS_FIELD = Job._fields.index("status")
#: Jobs loaded per query (SQLite binds at most 32766 parameters; fewer keeps each query cheap).
_LOAD_CHUNK = 500
#: Jobs deleted per retention transaction, so no transaction holds the writer for long.
_EVICT_CHUNK = 2000
#: Jobs kept decoded in memory, most recently written or read: a point read in SQLite costs
#: more than the rest of a GET, and the jobs clients poll are the recent and unfinished ones.
HOT_JOBS = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, operation TEXT NOT NULL, status TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, state BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs (tenant, created_at, id);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (tenant, status, created_at, id);
CREATE INDEX IF NOT EXISTS jobs_by_operation ON jobs (tenant, operation, created_at, id);
CREATE INDEX IF NOT EXISTS jobs_by_updated ON jobs (updated_at);
CREATE TABLE IF NOT EXISTS history (
    job_id TEXT NOT NULL, log_partition INTEGER NOT NULL, log_offset INTEGER NOT NULL,
    verdict TEXT NOT NULL, reason TEXT, raw BLOB NOT NULL,
    PRIMARY KEY (job_id, log_partition, log_offset)) WITHOUT ROWID;
"""
TABLES = ("history", "jobs")
_UPSERT_JOB = """INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET
    status = excluded.status, updated_at = excluded.updated_at, state = excluded.state"""
_INSERT_HISTORY = "INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?, ?, ?)"


class FoldedBatch(NamedTuple):
    """What one batch changed, handed from the write to the loop that publishes it."""

    outcomes: list[Applied | None]
    changed: list[Job]
    touched: set[str]
    offsets: dict[int, int]
    created: int
    verdicts: dict[Verdict, int]
    orphans: int
    records: int
    #: Per tenant, how many more (or fewer) jobs are pending or processing than before.
    unfinished_change: Counter[str]


_UNFINISHED_SQL = ", ".join(f"'{status.value}'" for status in sorted(ACTIVE))


def _evict_jobs(db: sqlite3.Connection, cutoff: str) -> tuple[list[str], Counter[str]]:
    """A chunk of jobs removed; their ids, and per tenant the unfinished ones among them."""
    rows = db.execute("SELECT id, tenant, status FROM jobs WHERE updated_at < ? LIMIT ?",
                      (cutoff, _EVICT_CHUNK)).fetchall()
    ids = [job_id for job_id, _, _ in rows]
    db.executemany("DELETE FROM history WHERE job_id = ?", [(job_id,) for job_id in ids])
    db.executemany("DELETE FROM jobs WHERE id = ?", [(job_id,) for job_id in ids])
    return ids, Counter(tenant for _, tenant, status in rows if _STATUS[status] in ACTIVE)


def _count_unfinished(db: sqlite3.Connection) -> Counter[str]:
    return Counter(dict(db.execute(
        f"SELECT tenant, count(*) FROM jobs WHERE status IN ({_UNFINISHED_SQL}) GROUP BY tenant")))


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
    #: Only jobs changed after this moment: what a poller asks ("what changed since I looked").
    updated_after: str | None = None
    limit: int = 50
    #: Exclusive upper bound from the previous page (newest first).
    after_key: IndexKey | None = None


def encode_job(job: Job) -> bytes:
    """A job as stored: its fields as a JSON array."""
    return orjson.dumps(tuple(job))


def decode_job(state: bytes) -> Job:
    values = orjson.loads(state)
    values[_STATUS_FIELD] = _STATUS[values[_STATUS_FIELD]]
    values[_EVENT_IDS] = tuple(values[_EVENT_IDS])
    return Job(*values)


class Projection:
    def __init__(self, store: Store, topic: str = "jobs.events", retention_s: float = 30 * 86400.0) -> None:
        self.store = store
        #: The topic it is fed from, for offsets and the invalid records count.
        self.topic = topic
        #: Jobs not updated for this long are removed, whatever their status (0: kept for ever).
        self.retention_s = retention_s
        self.positions = AppliedPositions()
        self.orphans = 0
        #: Records read since this process opened the store: what a restart had to replay.
        self.records_read = 0
        #: The log's partitions; a position naming another can never be applied.
        self.partitions: frozenset[int] | None = None
        store.writer.executescript(SCHEMA)
        self._count: int = store.db.execute("SELECT count(*) FROM jobs").fetchone()[0]
        PROJECTION_JOBS.set(self._count)
        # Counted once here, then kept by each batch's change: a submit's quota check costs
        # nothing, where counting the tenant's rows grew with its backlog. So every write to
        # the jobs table (fold, eviction, rebuild) must bring its change here, or the quota
        # drifts until the next start.
        self._unfinished = _count_unfinished(store.db)
        self._changed: dict[str, tuple[asyncio.Event, list[int]]] = {}
        self._hot: OrderedDict[str, Job] = OrderedDict()

    def resume(self, beginnings: Mapping[int, int], ends: Mapping[int, int]) -> dict[int, int]:
        """Where to start reading the log: from the stored offsets, or from its start when the
        store cannot be resumed (then it is emptied first)."""
        start, rebuilt = self.store.resume("jobs", self.topic, TABLES, beginnings, ends)
        if rebuilt:
            self._hot.clear()
            self._count = 0
            self._unfinished.clear()
            PROJECTION_JOBS.set(0)
        self.partitions = frozenset(ends)
        self.positions.applied = dict(start)
        return start

    # --- feeding ----------------------------------------------------------------------------

    def apply_batch(self, records: Sequence[LogRecord]) -> list[Applied | None]:
        """Fold ``records`` (in log order) and commit them with their offsets in one transaction,
        on this thread; returns each record's outcome (None for one that was skipped).

        A record that is no valid event, or that the fold fails on, only advances the offset:
        it is counted and logged, and the batch carries on. (The dispatcher's group
        quarantines such records; every replica reading them must not.)
        """
        if not records:
            return []
        return self._publish(self.store.write_now(self._fold_batch, records))

    async def apply(self, records: Sequence[RawRecord]) -> list[Applied | None]:
        """As ``apply_batch`` for records as read from the log: decoding them, the fold and the
        write all run on the store's writer thread (decoding a batch of 5,000 on the loop would
        hold requests for tens of milliseconds)."""
        if not records:
            return []
        return self._publish(await self.store.write(self._decode_and_fold, records))

    def _decode_and_fold(self, db: sqlite3.Connection, records: Sequence[RawRecord]) -> FoldedBatch:
        return self._fold_batch(db, [to_log_record(record) for record in records])

    def _fold_batch(self, db: sqlite3.Connection, records: Sequence[LogRecord]) -> FoldedBatch:
        """Within the write transaction: fold ``records`` against their jobs as stored, and
        write the changed jobs, the history and the offsets. Touches nothing the loop reads
        but the database, since it may run on the writer thread."""
        verdicts = dict.fromkeys(Verdict, 0)
        jobs = self._load(db, {r.event.subject for r in records if r.event is not None})
        before = {job_id: job.status in ACTIVE for job_id, job in jobs.items()}
        outcomes: list[Applied | None] = []
        changed: dict[str, Job] = {}
        touched: set[str] = set()
        history: list[tuple[Any, ...]] = []
        offsets: dict[int, int] = {}
        orphans = 0
        for record in records:
            position = record.position
            offsets[position.partition] = position.offset + 1
            outcome = self._fold(record, jobs)
            outcomes.append(outcome)
            if outcome is None:
                continue
            verdicts[outcome.verdict] += 1
            if outcome.job is None:
                orphans += 1  # an event for a job that never existed (or was removed)
                continue
            if outcome.verdict is Verdict.DUPLICATE:
                continue
            if record.event is not None and record.event.type == HEARTBEAT:
                continue  # proof of life only: no row changes, no history entry
            job = outcome.job
            history.append((job.id, position.partition, position.offset, outcome.verdict.value, outcome.reason,
                            record.raw))
            touched.add(job.id)
            if outcome.verdict is Verdict.ACCEPTED:
                jobs[job.id] = changed[job.id] = job
        db.executemany(_UPSERT_JOB, [
            (job.id, job.tenant, job.operation, job.status.value, job.created_at, job.updated_at,
             encode_job(job)) for job in changed.values()])
        db.executemany(_INSERT_HISTORY, history)
        self.store.save_offsets(db, self.topic, offsets)
        created = sum(1 for job_id in changed if job_id not in before)
        unfinished_change: Counter[str] = Counter()
        for job in changed.values():
            unfinished_change[job.tenant] += (job.status in ACTIVE) - before.get(job.id, False)
        return FoldedBatch(outcomes, list(changed.values()), touched, offsets, created, verdicts, orphans,
                           len(records), unfinished_change)

    def _publish(self, folded: FoldedBatch) -> list[Applied | None]:
        """On the loop, with the rows committed: only now may readers and waiters see them."""
        self.records_read += folded.records
        self.orphans += folded.orphans
        for verdict, counted in folded.verdicts.items():
            _APPLIED_BY_VERDICT[verdict].inc(counted)  # once per batch: per event shows at rebuild
        self._count += folded.created
        PROJECTION_JOBS.inc(folded.created)
        self._unfinished.update(folded.unfinished_change)
        self.positions.applied.update(folded.offsets)
        for job in folded.changed:
            self._remember(job)
        for job_id in folded.touched:
            self._notify(job_id)
        self.positions.wake()
        return folded.outcomes

    def apply_record(self, record: LogRecord) -> Applied | None:
        return self.apply_batch([record])[0]

    def _fold(self, record: LogRecord, jobs: dict[str, Job]) -> Applied | None:
        event: Event | None = record.event
        if event is None:
            skipped(self.topic, record.position, str(record.invalid))
            return None
        try:
            return apply(jobs.get(event.subject), event)
        except Exception as exc:
            skipped(self.topic, record.position, f"{type(exc).__name__}: {exc}")
            return None

    @staticmethod
    def _load(db: sqlite3.Connection, job_ids: Iterable[str]) -> dict[str, Job]:
        wanted = list(job_ids)
        found: dict[str, Job] = {}
        for start in range(0, len(wanted), _LOAD_CHUNK):
            chunk = wanted[start:start + _LOAD_CHUNK]
            marks = ",".join("?" * len(chunk))
            for (state,) in db.execute(f"SELECT state FROM jobs WHERE id IN ({marks})", chunk):
                job = decode_job(state)
                found[job.id] = job
        return found

    @property
    def applied(self) -> dict[int, int]:
        return self.positions.applied

    async def evict_before(self, cutoff: str) -> int:
        """Remove jobs (any status) and their history last updated before ``cutoff`` (RFC 3339);
        returns how many. In bounded transactions on the writer thread."""
        evicted = 0
        while True:
            ids, unfinished_removed = await self.store.write(_evict_jobs, cutoff)
            evicted += len(ids)
            self._count -= len(ids)
            self._unfinished.subtract(unfinished_removed)
            PROJECTION_JOBS.dec(len(ids))
            for job_id in ids:
                self._hot.pop(job_id, None)
                self._notify(job_id)  # a long-poll on a removed job answers now, with 404
            if len(ids) < _EVICT_CHUNK:
                return evicted

    # --- reading ----------------------------------------------------------------------------

    def count(self) -> int:
        return self._count

    def unfinished(self, tenant: str) -> int:
        """The tenant's pending and processing jobs, as of the batches applied so far."""
        return self._unfinished[tenant]

    def job(self, job_id: str) -> Job | None:
        job = self._hot.get(job_id)
        if job is not None:
            self._hot.move_to_end(job_id)
            return job
        row = self.store.db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._remember(decode_job(row[0])) if row else None

    def get(self, tenant: str, job_id: str) -> Job | None:
        """The job if it exists and belongs to ``tenant``; another tenant's job is not found."""
        job = self.job(job_id)
        return job if job is not None and job.tenant == tenant else None

    def _remember(self, job: Job) -> Job:
        self._hot[job.id] = job
        self._hot.move_to_end(job.id)
        if len(self._hot) > HOT_JOBS:
            self._hot.popitem(last=False)
        return job

    def events_of(self, tenant: str, job_id: str, after: Position | None = None,
                  limit: int = -1) -> list[HistoryEntry] | None:
        """The job's history in log order (after ``after`` when given, at most ``limit`` entries,
        -1: all); None when not found."""
        if self.get(tenant, job_id) is None:
            return None
        partition, offset = (after.partition, after.offset) if after else (-1, -1)
        rows = self.store.db.execute(
            "SELECT log_partition, log_offset, verdict, reason, raw FROM history "
            "WHERE job_id = ? AND (log_partition, log_offset) > (?, ?) ORDER BY log_partition, log_offset LIMIT ?",
            (job_id, partition, offset, limit))
        return [HistoryEntry(Position(p, o), _VERDICT[v], reason, raw) for p, o, v, reason, raw in rows]

    def history_entry(self, job_id: str, position: Position) -> HistoryEntry | None:
        row = self.store.db.execute(
            "SELECT verdict, reason, raw FROM history WHERE job_id = ? AND log_partition = ? AND log_offset = ?",
            (job_id, position.partition, position.offset)).fetchone()
        return HistoryEntry(position, _VERDICT[row[0]], row[1], row[2]) if row else None

    def list(self, query: ListQuery) -> tuple[list[Job], IndexKey | None]:
        """Newest first; returns the page and the key to continue after (None on the last page)."""
        where, args = ["tenant = ?"], [query.tenant]
        if query.status is not None:
            where.append("status = ?")
            args.append(query.status.value)
        if query.operation is not None:
            where.append("operation = ?")
            args.append(query.operation)
        if query.created_after is not None:
            where.append("created_at > ?")
            args.append(query.created_after)
        if query.created_before is not None:
            where.append("created_at < ?")
            args.append(query.created_before)
        if query.updated_after is not None:
            where.append("updated_at > ?")
            args.append(query.updated_after)
        if query.after_key is not None:
            where.append("(created_at, id) < (?, ?)")
            args.extend(query.after_key)
        sql = f"SELECT state FROM jobs WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT ?"
        page = [decode_job(state) for (state,) in self.store.db.execute(sql, [*args, query.limit + 1])]
        if len(page) > query.limit:
            page = page[:query.limit]
            return page, (page[-1].created_at, page[-1].id)
        return page, None

    # --- waiting ----------------------------------------------------------------------------

    def has_partition(self, partition: int) -> bool:
        return self.partitions is None or partition in self.partitions

    def has_applied(self, position: Position) -> bool:
        return self.positions.has_applied(position)

    async def wait_for_position(self, position: Position, timeout_s: float) -> bool:
        """True once the record at ``position`` has been applied; False after the timeout."""
        return await self.positions.wait_for(position, timeout_s)

    def _notify(self, job_id: str) -> None:
        entry = self._changed.pop(job_id, None)
        if entry is not None:
            entry[0].set()

    async def wait_for_change(self, job_id: str, timeout_s: float) -> bool:
        """Wait until anything is added to the job's history; False after the timeout."""
        entry = self._changed.get(job_id)
        if entry is None:
            entry = self._changed[job_id] = (asyncio.Event(), [0])
        changed, waiting = entry
        waiting[0] += 1
        try:
            await asyncio.wait_for(changed.wait(), timeout_s)
        except TimeoutError:
            return False
        finally:
            waiting[0] -= 1
            # The last waiter of an unchanged job takes the entry away: no entry outlives its waiters.
            if waiting[0] == 0 and self._changed.get(job_id) is entry:
                del self._changed[job_id]
        return True

    def caught_up(self, end_offsets: dict[int, int]) -> bool:
        return self.positions.caught_up(end_offsets)
