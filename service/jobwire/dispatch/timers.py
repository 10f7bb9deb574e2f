"""Deadline timers for the live jobs of the partitions this dispatcher owns.

The jobs themselves are in the partition state (``state.py``): a timer is only a heap entry
``(due, job id, partition)`` plus the latest due time per job, so the state store stays the
one truth. An entry is checked against the job when it comes due: if the job finished, moved
away with its partition, or its deadline moved later (a heartbeat, a start), the entry is
dropped or pushed again. So arming is O(log n), a heartbeat is O(1), and restoring a partition
restores its timers with it.

What fires is a ``job.failed`` written to the job's own partition of ``jobs.events``
(``jobwire.deadlines``), through the outbox, like any record the dispatcher writes: it is
acknowledged before the next commit. The intake folds it back like any event, which finishes
the job (or is rejected if a completion got there first) and sends the webhook. Until it comes
back, the timer re-checks every ``REFIRE_S``, so a write lost with a crash is written again.

A deadline fires only once this dispatcher has read the job's partition through to a moment
past it (``read_through``, from the intake's fetches): while it lags behind, a heartbeat or a
completion written before the deadline may still be in its backlog, so it waits rather than
expire a job wrongly.

Heartbeat times are not in the changelog (they change no state): after a restore, a processing
job's last sign of life counts from the restore, so a restart can delay a heartbeat timeout by
at most one timeout, and never fires one early.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Callable, Iterable

from jobwire import events, tracing
from jobwire.binding import STRUCTURED_HEADERS
from jobwire.deadlines import Due, epoch, expiry_event, next_due
from jobwire.dispatch.outbox import Outbox
from jobwire.dispatch.state import StateStore
from jobwire.lifecycle import Job
from jobwire.metrics import DEADLINE_TIMERS, DEADLINES_FIRED
from jobwire.waits import wait_event

log = logging.getLogger(__name__)

#: Longest sleep between checks (an earlier timer armed meanwhile wakes the loop at once).
MAX_SLEEP_S = 1.0
#: How long a fired expiry may take to come back through the log before it is written again.
REFIRE_S = 30.0
#: How soon a deadline is checked again while the partition's log is not read that far yet.
RECHECK_S = 0.2
#: Expiries written per pass before the loop yields, so a burst of them never starves the rest.
FIRE_BATCH = 1000


class Timers:
    def __init__(self, state: StateStore, outbox: Outbox, events_topic: str,
                 clock: Callable[[], float] = time.time,
                 read_through: Callable[[int], float] = lambda partition: math.inf,
                 cancel_grace_s: float | None = None) -> None:
        self._state = state
        self._cancel_grace_s = cancel_grace_s
        self._read_through = read_through
        self._outbox = outbox
        self._topic = events_topic
        self._clock = clock
        self._heap: list[tuple[float, str, int]] = []
        #: job id -> (due time, partition) of its one valid heap entry (others for it are stale).
        self._due: dict[str, tuple[float, int]] = {}
        #: job id -> unix seconds of its latest heartbeat (jobs with a heartbeat limit only).
        self._heartbeats: dict[str, float] = {}
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._due)

    # --- what the intake tells it -----------------------------------------------------------

    def arm(self, partition: int, job: Job) -> None:
        """After any change of ``job``: (re)arm its next deadline, or forget it when none is left."""
        due = next_due(job, self._heartbeats.get(job.id), self._cancel_grace_s)
        if due is None:
            self._discard(job.id)
            return
        self._push(job.id, partition, due.at)

    def heartbeat(self, job: Job, at: str) -> None:
        """A worker's proof of life for ``job``; the heap entry is re-checked when it comes due."""
        if job.heartbeat_timeout_s is not None:
            seen = epoch(at)
            if seen > self._heartbeats.get(job.id, 0.0):
                self._heartbeats[job.id] = seen

    def restored(self, partitions: Iterable[int]) -> int:
        """Arm every live job of freshly restored ``partitions``; returns how many have a timer."""
        now = self._clock()
        armed = 0
        for partition in partitions:
            state = self._state.partitions.get(partition)
            for job_state in (state.jobs.values() if state else ()):
                job = job_state.job
                if job.heartbeat_timeout_s is not None:
                    # Heartbeats are not in the changelog: count the silence from now.
                    self._heartbeats[job.id] = max(self._heartbeats.get(job.id, 0.0), now)
                self.arm(partition, job)
                armed += job.id in self._due
        DEADLINE_TIMERS.set(len(self._due))
        return armed

    def forget(self, job_ids: Iterable[str]) -> None:
        """Jobs of partitions given up: their timers go with them to the new owner."""
        for job_id in job_ids:
            self._discard(job_id)
        DEADLINE_TIMERS.set(len(self._due))

    def _push(self, job_id: str, partition: int, at: float) -> None:
        if self._due.get(job_id) == (at, partition):
            return
        self._due[job_id] = (at, partition)
        if len(self._heap) > 2 * len(self._due) + 1024:
            # Stale entries (deadlines moved by progress events) would otherwise wait for their
            # old time to pass: rebuild from the valid ones, so the heap stays O(live timers).
            self._heap = [(due, job, p) for job, (due, p) in self._due.items()]
            heapq.heapify(self._heap)
        else:
            heapq.heappush(self._heap, (at, job_id, partition))
        if self._heap[0][1] == job_id:
            self._wake.set()  # earlier than what the loop sleeps towards

    def _discard(self, job_id: str) -> None:
        self._due.pop(job_id, None)
        self._heartbeats.pop(job_id, None)

    # --- firing -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            fired = await self.fire_due()
            if fired >= FIRE_BATCH:
                await asyncio.sleep(0)
                continue
            DEADLINE_TIMERS.set(len(self._due))
            sleep = MAX_SLEEP_S if not self._heap else min(MAX_SLEEP_S, max(0.0, self._heap[0][0] - self._clock()))
            self._wake.clear()
            await wait_event(self._wake, sleep)

    async def fire_due(self) -> int:
        """Write the expiry of every job whose deadline has passed (at most ``FIRE_BATCH``)."""
        now = self._clock()
        fired = 0
        while self._heap and self._heap[0][0] <= now and fired < FIRE_BATCH:
            at, job_id, partition = heapq.heappop(self._heap)
            if self._due.get(job_id) != (at, partition):
                continue  # superseded by a later arm
            job_state = self._state.get(partition, job_id)
            due = next_due(job_state.job, self._heartbeats.get(job_id), self._cancel_grace_s) if job_state else None
            if job_state is None or due is None:
                self._discard(job_id)  # finished, or its partition moved away
                continue
            if due.at > now:
                self._push(job_id, partition, due.at)  # moved later (a heartbeat, a start)
                continue
            if self._read_through(partition) < due.at:
                # This dispatcher has not yet read the partition as far as the deadline: a
                # heartbeat or a completion may be waiting in its backlog. Decide once it has.
                self._push(job_id, partition, now + RECHECK_S)
                continue
            await self._fire(partition, job_state.job, due, job_state.trace)
            fired += 1
            # Checked again later in case the write is lost; a folded expiry disarms it first.
            self._push(job_id, partition, now + REFIRE_S)
        return fired

    async def _fire(self, partition: int, job: Job, due: Due, trace: str | None = None) -> None:
        event = expiry_event(job, due)
        # In the job's trace: its timeout webhook is part of the job's story.
        await self._outbox.send(self._topic, job.id, events.encode(event), partition=partition,
                                headers=[*STRUCTURED_HEADERS, *tracing.record_headers(trace)])
        DEADLINES_FIRED.labels(deadline=due.kind.value).inc()
        log.info("deadline passed job_id=%s event_id=%s deadline=%s late_s=%.3f", job.id, event.id,
                 due.kind.value, self._clock() - due.at)
