"""Which offsets are safe to commit while work finishes out of order. Pure; no Kafka.

A record's offset is *pending* from when it is read until its work is durable. Per partition
the committable offset is the lowest pending one, or one past the highest seen when nothing is
pending: a commit never skips unfinished work, so a crash replays it (at-least-once).
"""

from __future__ import annotations

import heapq


class OffsetTracker:
    def __init__(self) -> None:
        self._pending: dict[int, list[int]] = {}  # partition -> heap of pending offsets
        self._finished: dict[int, set[int]] = {}  # finished but not yet popped from the heap
        self._next: dict[int, int] = {}  # partition -> one past the highest offset seen
        self._committed: dict[int, int] = {}
        #: Bumped when a partition is forgotten: work started before cannot finish offsets of
        #: the same partition after it comes back (a replay may be re-doing that offset).
        self._epochs: dict[int, int] = {}

    def epoch(self, partition: int) -> int:
        return self._epochs.get(partition, 0)

    def start(self, partition: int, offset: int, epoch: int | None = None) -> None:
        if epoch is not None and epoch != self.epoch(partition):
            return  # read before the partition was revoked: its new life reads it again
        heapq.heappush(self._pending.setdefault(partition, []), offset)
        self._seen(partition, offset)

    def skip(self, partition: int, offset: int, epoch: int | None = None) -> None:
        """A record that needs no work: only moves the high-water mark."""
        if epoch is not None and epoch != self.epoch(partition):
            return
        self._seen(partition, offset)

    def _seen(self, partition: int, offset: int) -> None:
        if offset + 1 > self._next.get(partition, 0):
            self._next[partition] = offset + 1

    def finish(self, partition: int, offset: int, epoch: int | None = None) -> None:
        if epoch is not None and epoch != self.epoch(partition):
            return  # started before the partition was revoked: its new life replays the offset
        self._finished.setdefault(partition, set()).add(offset)
        heap = self._pending.get(partition, [])
        done = self._finished[partition]
        while heap and heap[0] in done:
            done.discard(heapq.heappop(heap))

    def committable(self) -> dict[int, int]:
        """Per partition, the offset to commit now (next to read after a restart)."""
        safe = {}
        for partition, high in self._next.items():
            heap = self._pending.get(partition)
            safe[partition] = heap[0] if heap else high
        return safe

    def to_commit(self) -> dict[int, int]:
        """The committable offsets that moved since the last successful commit."""
        return {p: o for p, o in self.committable().items() if self._committed.get(p) != o}

    def committed(self, offsets: dict[int, int]) -> None:
        """Record a successful commit; until then ``to_commit`` keeps offering the offsets."""
        self._committed.update(offsets)

    def forget(self, partitions: set[int]) -> None:
        """Drop partitions this consumer no longer owns (after a rebalance)."""
        for partition in partitions:
            self._epochs[partition] = self.epoch(partition) + 1
            for table in (self._pending, self._finished, self._next, self._committed):
                table.pop(partition, None)
