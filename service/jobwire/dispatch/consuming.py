"""The one consumer loop of the dispatcher (the intake of ``jobs.events`` and every retry tier
run it): lag, pausing for flow control, taking what was fetched partition by partition, the
commit that waits for the outbox first, and the rebalance hook.

Every record ``getmany`` returns is either taken or read again: a partition that stops early
is rewound to its first record not taken, and once the lanes are full every partition after
it is rewound whole. (aiokafka has already moved the position of every partition it returned
records for; a record neither taken nor rewound would be skipped without a trace.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from jobwire.clock import SYSTEM, Clock
from jobwire.dispatch.lanes import Lanes
from jobwire.dispatch.outbox import Outbox
from jobwire.errors import LogError
from jobwire.kafka.consumers import Consumer, ConsumerRecord, RebalanceListener, TopicPartition, fetch
from jobwire.kafka.readers import commit_owned
from jobwire.metrics import CONSUMER_LAG, PAUSED_PARTITIONS
from jobwire.offsets import OffsetTracker

log = logging.getLogger(__name__)

#: Most records taken per fetch (fewer while the lanes have less room).
FETCH_RECORDS = 500
FETCH_WAIT_MS = 100

Records = list[ConsumerRecord[bytes, bytes]]


class LagGauge:
    """Records not yet read on the consumer's partitions, refreshed every few seconds."""

    def __init__(self, consumer: Consumer, topic: str, every_s: float = 5.0, clock: Clock = SYSTEM) -> None:
        self._consumer = consumer
        self._gauge = CONSUMER_LAG.labels(topic=topic)
        self._every_s = every_s
        self._clock = clock
        self._last = -every_s

    async def update(self) -> None:
        if self._clock.monotonic() - self._last < self._every_s:
            return
        self._last = self._clock.monotonic()
        total = 0
        for tp in list(self._consumer.assignment()):
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                with contextlib.suppress(Exception):  # revoked meanwhile: not ours to count
                    total += max(0, highwater - await self._consumer.position(tp))
        self._gauge.set(total)


def hold(consumer: Consumer, topic: str, paused: set[TopicPartition]) -> None:
    """Pause exactly ``paused`` among the consumer's partitions, resume the rest."""
    assigned = consumer.assignment()
    wanted = paused & assigned
    current = consumer.paused()
    if wanted - current:
        consumer.pause(*(wanted - current))
    if (current & assigned) - wanted:
        consumer.resume(*((current & assigned) - wanted))
    PAUSED_PARTITIONS.labels(topic=topic).set(len(wanted))


async def commit(consumer: Consumer, topic: str, outbox: Outbox, tracker: OffsetTracker,
                 before_flush: Callable[[], Awaitable[None]] | None = None) -> dict[int, int]:
    """The offsets finished so far, committed once everything written so far is acknowledged
    (read first: work that finishes during the flush waits for the next commit; then
    ``before_flush`` writes what those offsets need, then the flush waits for it all)."""
    offsets = tracker.to_commit()
    if before_flush is not None:
        await before_flush()
    await outbox.flush()
    committed = await commit_owned(consumer, topic, offsets)
    if committed:
        tracker.committed(committed)
    return committed


class ConsumerLoop:
    """Fetch, take partition by partition, commit on an interval; subclasses say what taking a
    partition's records means (``take``) and may hook the steps around it."""

    def __init__(self, consumer: Consumer, topic: str, *, lanes: Lanes, outbox: Outbox,
                 commit_interval_s: float, clock: Clock = SYSTEM) -> None:
        self.consumer = consumer
        self.topic = topic
        self.lanes = lanes
        self.outbox = outbox
        self.commit_interval_s = commit_interval_s
        self.clock = clock
        self.tracker = OffsetTracker()
        self._flow_paused = False
        self._commit_lock = asyncio.Lock()
        self._committing: asyncio.Task[dict[int, int]] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        lag = LagGauge(self.consumer, self.topic, clock=self.clock)
        last_commit = -self.commit_interval_s
        try:
            await self._loop(stop, lag, last_commit)
        finally:
            if self._committing is not None:  # the shutdown's commit waits for it; its end is not lost
                self._committing.add_done_callback(self._log_failed_commit)

    async def _loop(self, stop: asyncio.Event, lag: LagGauge, last_commit: float) -> None:
        while not stop.is_set():
            self._raise_failed_commit()
            await lag.update()
            await self.before_fetch()
            fetched = await fetch(self.consumer, timeout_ms=FETCH_WAIT_MS,
                                  max_records=max(1, min(FETCH_RECORDS, self.lanes.room())))
            # Each partition's epoch as the records arrive, before any await: a rebalance while
            # they wait their turn (even one that hands the partition back) makes them stale,
            # and its new life reads them again from the committed offset. (Read after the
            # wait, a batch fetched before a revocation counted as read by the new life: the
            # simulation found it.)
            epochs = {tp.partition: self.tracker.epoch(tp.partition) for tp in fetched}
            await self.take_fetched(fetched, epochs)
            await self.after_fetch()
            if (self._committing is None and self.may_commit()
                    and self.clock.monotonic() - last_commit >= self.commit_interval_s):
                # Committing waits for acknowledgements and costs a round trip: on an interval,
                # as Kafka Streams does (a crash replays at most that much, as duplicates), and
                # beside the loop, which goes on taking records meanwhile (waiting for it held
                # every record fetched in those milliseconds: the p99 of a delivery).
                self._committing = asyncio.create_task(self.commit(), name=f"commit {self.topic}")
                last_commit = self.clock.monotonic()
        self._raise_failed_commit()

    def _log_failed_commit(self, task: asyncio.Task[dict[int, int]]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.warning("commit under way as the consumer ended failed topic=%s: %s", self.topic, task.exception())

    def _raise_failed_commit(self) -> None:
        """Let go of a finished background commit, raising what it raised."""
        task = self._committing
        if task is not None and task.done():
            self._committing = None
            task.result()

    async def take_fetched(self, fetched: dict[TopicPartition, Records], epochs: dict[int, int]) -> None:
        for tp, records in fetched.items():
            if not records:
                continue
            await self.before_partition()
            epoch = epochs[tp.partition]
            if not self.owns(tp, epoch):
                continue
            resume: int | None = records[0].offset
            if not self.lanes.full:
                resume = await self.take(tp, records, epoch)
            if resume is not None and self.owns(tp, epoch):
                self.consumer.seek(tp, resume)

    def owns(self, tp: TopicPartition, epoch: int) -> bool:
        """Still assigned, and not revoked since ``epoch`` was read."""
        return tp in self.consumer.assignment() and self.tracker.epoch(tp.partition) == epoch

    async def take(self, tp: TopicPartition, records: Records, epoch: int) -> int | None:
        """Take ``records`` in order; the offset of the first one not taken (read again), or
        None when all were (or the partition was revoked meanwhile)."""
        raise NotImplementedError

    async def before_fetch(self) -> None:
        self.flow()

    async def before_partition(self) -> None:
        pass

    async def after_fetch(self) -> None:
        pass

    def may_commit(self) -> bool:
        return True

    def flow(self, waiting: set[TopicPartition] | None = None) -> None:
        """Pause every partition while the lanes are full (until they drain below the
        low-water mark), else only ``waiting``."""
        if self.lanes.full:
            self._flow_paused = True
        elif self._flow_paused and self.lanes.drained:
            self._flow_paused = False
        hold(self.consumer, self.topic, set(self.consumer.assignment()) if self._flow_paused else (waiting or set()))

    async def commit(self) -> dict[int, int]:
        """Commit what is finished, after any commit under way (the loop's own runs in the
        background; a revocation's and the shutdown's wait for it): one at a time, so offsets
        and what follows a commit are never applied out of order."""
        async with self._commit_lock:
            return await self.commit_once()

    async def commit_once(self) -> dict[int, int]:
        return await commit(self.consumer, self.topic, self.outbox, self.tracker, self.before_flush)

    async def before_flush(self) -> None:
        pass

    async def commit_on_revocation(self, partitions: set[int]) -> None:
        try:
            await self.commit()
        except LogError:
            log.warning("commit on revocation failed topic=%s partitions=%s; the new owner replays",
                        self.topic, sorted(partitions))


class Rebalance(RebalanceListener):
    def __init__(self, revoked: Callable[[set[int]], Awaitable[None]],
                 assigned: Callable[[list[int]], Awaitable[None]] | None = None) -> None:
        self._revoked = revoked
        self._assigned = assigned

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self._assigned is not None:
            await self._assigned(sorted(tp.partition for tp in assigned))
