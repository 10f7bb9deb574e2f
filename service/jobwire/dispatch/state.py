"""The dispatcher's per-partition job state and its changelog ``jobs.state``.

Like a Kafka Streams state store: every accepted event updates the job's snapshot, written
to the compacted changelog (same partition as the job's events) before the jobs.events
offset is committed. On assignment a partition's state is restored from the changelog, so
restore time grows with live jobs, not with history. Finished jobs are tombstoned once the
commit has moved past the event that finished them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from jobwire.config import KafkaSettings
from jobwire.dispatch.outbox import Outbox
from jobwire.kafka.readers import read_to_end
from jobwire.lifecycle import Job, Status
from jobwire.metrics import INVALID_RECORDS

log = logging.getLogger(__name__)


@dataclass(slots=True)
class JobState:
    job: Job
    offset: int
    #: The event that made the job terminal: replaying it after a crash delivers again.
    terminal_event: str | None = None

    def encode(self) -> bytes:
        job: dict[str, Any] = self.job._asdict()
        job["status"] = self.job.status.value
        job["event_ids"] = sorted(self.job.event_ids)
        return orjson.dumps({"job": job, "offset": self.offset, "terminal_event": self.terminal_event})

    @classmethod
    def decode(cls, raw: bytes) -> JobState:
        data = orjson.loads(raw)
        job = data["job"]
        job["status"] = Status(job["status"])
        job["event_ids"] = frozenset(job["event_ids"])
        return cls(Job(**job), data["offset"], data.get("terminal_event"))


@dataclass
class PartitionState:
    jobs: dict[str, JobState] = field(default_factory=dict)
    #: (offset of the terminal event, job id) of finished jobs not yet tombstoned.
    finished: list[tuple[int, str]] = field(default_factory=list)


class StateStore:
    def __init__(self, kafka: KafkaSettings, outbox: Outbox, topic: str) -> None:
        self._kafka = kafka
        self._outbox = outbox
        self.topic = topic
        self.partitions: dict[int, PartitionState] = {}

    async def restore(self, partitions: list[int]) -> int:
        """Load the changelog of ``partitions``; returns how many live jobs were restored."""
        for partition in partitions:
            self.partitions[partition] = PartitionState()
        async for record in read_to_end(self._kafka, self.topic, partitions):
            state = self.partitions[record.partition]
            job_id = (record.key or b"").decode()
            if record.value is None:
                state.jobs.pop(job_id, None)
            else:
                self._restore_one(state, job_id, record.value, record.offset)
        restored = 0
        for partition in partitions:
            state = self.partitions[partition]
            for job_id, job_state in state.jobs.items():
                if job_state.job.status.terminal:
                    state.finished.append((job_state.offset, job_id))
            restored += len(state.jobs)
        return restored

    def _restore_one(self, state: PartitionState, job_id: str, raw: bytes, offset: int) -> None:
        try:
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

    async def put(self, partition: int, job_state: JobState, encoded: bytes | None = None) -> None:
        """Keep ``job_state`` and write its snapshot (acknowledged before the next commit);
        ``encoded`` when the caller already encoded it, to be sure it can be."""
        state = self.partitions.setdefault(partition, PartitionState())
        state.jobs[job_state.job.id] = job_state
        if job_state.terminal_event is not None:
            state.finished.append((job_state.offset, job_state.job.id))
        await self._outbox.send(self.topic, job_state.job.id, encoded or job_state.encode(), partition=partition)

    async def drop_finished(self, committed: dict[int, int]) -> None:
        """Tombstone finished jobs whose terminal event is below the committed offset."""
        for partition, offset in committed.items():
            state = self.partitions.get(partition)
            if state is None:
                continue
            keep = []
            for finished_at, job_id in state.finished:
                if finished_at < offset:
                    state.jobs.pop(job_id, None)
                    await self._outbox.send(self.topic, job_id, None, partition=partition)
                else:
                    keep.append((finished_at, job_id))
            state.finished = keep
