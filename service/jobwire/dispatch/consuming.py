"""What every dispatcher consumer shares: lag, pausing for flow control, the rebalance hook,
and the commit that waits for the outbox first."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable

from jobwire.dispatch.outbox import Outbox
from jobwire.kafka.consumers import Consumer, RebalanceListener, TopicPartition
from jobwire.kafka.readers import commit_owned
from jobwire.metrics import CONSUMER_LAG, PAUSED_PARTITIONS
from jobwire.offsets import OffsetTracker


class LagGauge:
    """Records not yet read on the consumer's partitions, refreshed every few seconds."""

    def __init__(self, consumer: Consumer, topic: str, every_s: float = 5.0) -> None:
        self._consumer = consumer
        self._gauge = CONSUMER_LAG.labels(topic=topic)
        self._every_s = every_s
        self._last = 0.0

    async def update(self) -> None:
        if time.monotonic() - self._last < self._every_s:
            return
        self._last = time.monotonic()
        total = 0
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                with contextlib.suppress(Exception):
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


async def commit(consumer: Consumer, topic: str, outbox: Outbox, tracker: OffsetTracker) -> dict[int, int]:
    """The offsets finished so far, committed once everything written so far is acknowledged
    (read first: work that finishes during the flush waits for the next commit)."""
    offsets = tracker.to_commit()
    await outbox.flush()
    committed = await commit_owned(consumer, topic, offsets)
    if committed:
        tracker.committed(committed)
    return committed


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
