"""The dispatcher's per-partition job state and its changelog ``jobs.state``.

Like a Kafka Streams state store with its cache: every accepted event updates the job in
memory, and the jobs changed since the last commit are written to the compacted changelog
(same partition as the job's events) just before the jobs.events offset is committed, so a job
that reports progress a thousand times between two commits costs one write, and a snapshot
never grows with the job's events (``lifecycle`` keeps a bounded window of event ids).

Each snapshot carries the log offset of the last event applied to it: after a crash, records
of the job at or below it are known to be applied already (a replay), whatever their ids.

On assignment a partition's state is restored from the changelog, so restore time grows with
live jobs, not with history. A finished job is replaced, once the commit has moved past the
event that finished it, by a marker of a few bytes: a ``job.created`` replayed for it (or any
later event) is then refused as the API refuses it, instead of starting a phantom job whose
deadline would fail it. Markers go after ``retention_s`` (the API forgets jobs then too) or,
past ``max_markers`` per partition, oldest first.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from jobwire.dispatch.ordered_queue import Pending, Queue
from jobwire.dispatch.outbox import Outbox
from jobwire.lifecycle import Job, Status
from jobwire.metrics import INVALID_RECORDS
from jobwire.records import RawRecord

log = logging.getLogger(__name__)

#: How often snapshots changed since the last write are written (between commits too).
WRITE_EVERY_S = 0.005
#: Finished-job markers kept per partition at most (the oldest go first).
MAX_MARKERS = 200_000

ReadChangelog = Callable[[list[int]], AsyncIterator[RawRecord]]


#: Job fields added after the first snapshots were written (left out of a snapshot while None).
LATER_JOB_FIELDS = ("input", "input_received_at", "result_file", "webhook")


@dataclass(slots=True)
class JobState:
    job: Job
    #: Offset in jobs.events of the last event applied to the job.
    offset: int
    #: The event that made the job terminal: replaying it after a crash delivers again.
    terminal_event: str | None = None
    #: Endpoints whose delivery of the terminal event has settled (sent, or durably on the
    #: retry path or dead): a replay after a crash does not send those again.
    settled: frozenset[str] = frozenset()
    #: Offsets of the job's records that made lifecycle webhooks not all settled yet: read
    #: again after a crash, they are delivered again (webhooks/notices.py).
    unsettled_notices: tuple[int, ...] = ()
    #: The event time of the job's last ``task.progress`` notice (coalescing counts from it).
    progress_noticed_at: str | None = None
    #: The job's deliveries to ordered endpoints, waiting for or taking their turn
    #: (``ordered_queue``): the job's state is kept, never evicted, while any is left.
    ordered: Queue = ()
    #: The job's trace (jobwire/tracing.py): the ``traceparent`` of the record that created it.
    #: Its later records (a cancel, a deadline) are handled in it, so the job stays one trace.
    trace: str | None = None

    def encode(self) -> bytes:
        job: dict[str, Any] = self.job._asdict()
        job["status"] = self.job.status.value
        for name in LATER_JOB_FIELDS:
            if job[name] is None:
                # As before the field existed: a dispatcher of the previous version (a rolling
                # upgrade, a rollback) still reads the snapshot of a job that does not use it.
                del job[name]
        snapshot: dict[str, Any] = {"job": job, "offset": self.offset, "terminal_event": self.terminal_event,
                                    "settled": sorted(self.settled)}
        if self.unsettled_notices:
            snapshot["unsettled_notices"] = self.unsettled_notices
        if self.progress_noticed_at is not None:
            snapshot["progress_noticed_at"] = self.progress_noticed_at
        if self.ordered:
            snapshot["ordered"] = [p.encode() for p in self.ordered]
        if self.trace is not None:
            snapshot["trace"] = self.trace
        return orjson.dumps(snapshot)

    @classmethod
    def decode(cls, raw: bytes) -> JobState:
        data = orjson.loads(raw)
        job = data["job"]
        job["status"] = Status(job["status"])
        job["event_ids"] = tuple(job["event_ids"])
        return cls(Job(**job), data["offset"], data.get("terminal_event"), frozenset(data.get("settled") or ()),
                   tuple(data.get("unsettled_notices") or ()), data.get("progress_noticed_at"),
                   tuple(Pending.decode(p) for p in data.get("ordered") or ()), data.get("trace"))


def _marker(finished_at: float) -> bytes:
    return orjson.dumps({"finished_at": finished_at})


@dataclass
class PartitionState:
    jobs: dict[str, JobState] = field(default_factory=dict)
    #: (offset of the terminal event, job id) of finished jobs not yet turned into markers.
    finished: list[tuple[int, str]] = field(default_factory=list)
    #: job id -> unix seconds it finished, oldest first: finished jobs the state no longer holds.
    markers: OrderedDict[str, float] = field(default_factory=OrderedDict)
    #: Jobs changed since their snapshot was last written, with its encoding when known.
    changed: dict[str, bytes | None] = field(default_factory=dict)


class StateStore:
    def __init__(self, outbox: Outbox, topic: str, read_changelog: ReadChangelog, *,
                 retention_s: float = 30 * 86400.0, max_markers: int = MAX_MARKERS) -> None:
        self._outbox = outbox
        self._read = read_changelog
        self.topic = topic
        self.retention_s = retention_s
        self.max_markers = max_markers
        self.partitions: dict[int, PartitionState] = {}
        #: (outbox mark, partition, job id, endpoint id or notice offset): settled, waiting for
        #: acknowledgements.
        self._settling: deque[tuple[int, int, str, str | int]] = deque()
        self._writing = asyncio.Lock()

    async def restore(self, partitions: list[int]) -> int:
        """Load the changelog of ``partitions``; returns how many live jobs were restored."""
        for partition in partitions:
            self.partitions[partition] = PartitionState()
        async for record in self._read(partitions):
            state = self.partitions[record.partition]
            job_id = (record.key or b"").decode()
            state.jobs.pop(job_id, None)
            state.markers.pop(job_id, None)
            if record.value is not None:
                self._restore_one(state, job_id, record.value, record.offset)
        restored = 0
        for partition in partitions:
            state = self.partitions[partition]
            for job_id, job_state in state.jobs.items():
                if job_state.job.status.terminal:
                    state.finished.append((job_state.offset, job_id))
            state.markers = OrderedDict(sorted(state.markers.items(), key=lambda item: item[1]))
            restored += len(state.jobs)
        return restored

    def _restore_one(self, state: PartitionState, job_id: str, raw: bytes, offset: int) -> None:
        try:
            data = orjson.loads(raw)
            if isinstance(data, dict) and set(data) == {"finished_at"}:
                state.markers[job_id] = float(data["finished_at"])
            else:
                state.jobs[job_id] = JobState.decode(raw)
        except Exception as exc:  # a snapshot we cannot read is skipped: the job's events still count
            INVALID_RECORDS.labels(topic=self.topic).inc()
            log.warning("unreadable state snapshot skipped job_id=%s offset=%s error=%s", job_id, offset,
                        f"{type(exc).__name__}: {exc}"[:300])

    def forget(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.partitions.pop(partition, None)

    def jobs_of(self, partition: int) -> list[str]:
        state = self.partitions.get(partition)
        return list(state.jobs) if state else []

    def get(self, partition: int, job_id: str) -> JobState | None:
        state = self.partitions.get(partition)
        return state.jobs.get(job_id) if state else None

    def finished_long_ago(self, partition: int, job_id: str) -> bool:
        """The job finished and its state was let go (only its marker is left)."""
        state = self.partitions.get(partition)
        return state is not None and job_id in state.markers

    def put(self, partition: int, job_state: JobState, encoded: bytes | None = None) -> None:
        """Keep ``job_state``; its snapshot is written with the next ``write_changed``
        (``encoded`` when the caller already encoded it, to be sure it can be)."""
        state = self.partitions.setdefault(partition, PartitionState())
        job_id = job_state.job.id
        state.jobs[job_id] = job_state
        state.markers.pop(job_id, None)
        state.changed[job_id] = encoded
        if job_state.terminal_event is not None:
            state.finished.append((job_state.offset, job_id))

    def touch(self, partition: int, job_id: str) -> None:
        """The job's state was changed in place: its snapshot is written with the next pass."""
        state = self.partitions.get(partition)
        if state is not None and job_id in state.jobs:
            state.changed[job_id] = None

    def settled(self, partition: int, job_id: str, endpoint_id: str) -> None:
        """The job's terminal delivery to ``endpoint_id`` has settled. It is noted once every
        record written so far (its own among them: an attempt, a retry, a dead letter) is
        acknowledged: a snapshot saying "settled" must never outlive a lost retry record."""
        self._settling.append((self._outbox.mark(), partition, job_id, endpoint_id))

    def notices_settled(self, partition: int, job_id: str, offset: int) -> None:
        """Every lifecycle webhook made by the job's record at ``offset`` has settled; noted,
        as ``settled`` is, once every record written so far is acknowledged."""
        self._settling.append((self._outbox.mark(), partition, job_id, offset))

    def _note_settled(self) -> None:
        while self._settling and self._outbox.acked(self._settling[0][0]):
            _, partition, job_id, what = self._settling.popleft()
            state = self.partitions.get(partition)
            job_state = state.jobs.get(job_id) if state else None
            if state is None or job_state is None:
                continue
            if isinstance(what, int):  # a record's lifecycle webhooks
                if what in job_state.unsettled_notices:
                    job_state.unsettled_notices = tuple(o for o in job_state.unsettled_notices if o != what)
                    state.changed[job_id] = None
                continue
            if job_state.terminal_event is None:
                continue
            job_state.settled = job_state.settled | {what}
            state.changed[job_id] = None

    @property
    def unwritten(self) -> int:
        return sum(len(state.changed) for state in self.partitions.values())

    async def write_changed(self) -> None:
        """Write the snapshot of every job changed since the last call (through the outbox,
        acknowledged before the commit that follows)."""
        # One pass at a time: a commit waits for a periodic pass under way, or it could read an
        # emptied change list and commit past a snapshot that pass has not handed over yet.
        async with self._writing:
            self._note_settled()
            # A copy: a revocation may forget partitions while a send below awaits.
            for partition, state in list(self.partitions.items()):
                changed, state.changed = state.changed, {}
                for job_id, encoded in changed.items():
                    job_state = state.jobs.get(job_id)
                    if self.partitions.get(partition) is not state:
                        break  # revoked meanwhile: its new owner's snapshots must not be overwritten
                    if job_state is not None:
                        await self._outbox.send(self.topic, job_id, encoded or job_state.encode(),
                                                partition=partition)

    async def keep_written(self, stop: asyncio.Event, every_s: float = WRITE_EVERY_S) -> None:
        """Write changed snapshots every ``every_s`` between commits too: which deliveries of a
        finished job have settled is what spares a replay after a crash from sending them again,
        so it should be durable within milliseconds, not at the next commit."""
        while not stop.is_set():
            await asyncio.sleep(every_s)
            self._note_settled()
            if self.unwritten:
                await self.write_changed()

    async def drop_finished(self, committed: dict[int, int], now: float) -> None:
        """Finished jobs whose terminal event is below the committed offset become markers,
        dated ``now`` (unix seconds; not the event's time, which a producer's clock sets);
        markers past retention (or over the count) are tombstoned."""
        for partition, offset in committed.items():
            state = self.partitions.get(partition)
            if state is None:
                continue
            keep = []
            for finished_at, job_id in state.finished:
                job_state = state.jobs.get(job_id)
                if finished_at >= offset or job_state is None or job_state.offset != finished_at:
                    if finished_at >= offset:
                        keep.append((finished_at, job_id))
                    continue
                if job_state.ordered:  # deliveries still to make: asked again at the next commit
                    keep.append((finished_at, job_id))
                    continue
                del state.jobs[job_id]
                state.changed.pop(job_id, None)
                state.markers[job_id] = now
                await self._outbox.send(self.topic, job_id, _marker(now), partition=partition)
            state.finished = keep
            await self._expire_markers(partition, state, now)

    async def _expire_markers(self, partition: int, state: PartitionState, now: float) -> None:
        cutoff = now - self.retention_s if self.retention_s > 0 else None
        while state.markers:
            job_id, finished_at = next(iter(state.markers.items()))
            if len(state.markers) <= self.max_markers and (cutoff is None or finished_at >= cutoff):
                break
            del state.markers[job_id]
            await self._outbox.send(self.topic, job_id, None, partition=partition)
