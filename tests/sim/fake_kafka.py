"""Kafka in memory, for the simulation: topics of partitions of records, committed offsets per
group, a producer whose acknowledgements come late (in order per partition, as an idempotent
producer's do) or fail, and consumers that return batches of any shape across partitions and
go through rebalances (revoke, then hand back some or all) while the dispatcher runs.

Only what the dispatcher's parts call is modelled; every await here is a point where another
task (a rebalance, an acknowledgement, a sender) can run.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from tests.sim.virtual_loop import VirtualClock


@dataclass
class Stored:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int

    def consumer_record(self) -> ConsumerRecord[bytes, bytes]:
        return ConsumerRecord(self.topic, self.partition, self.offset, self.timestamp, 0, self.key, self.value,
                              None, len(self.key or b""), len(self.value or b""), self.headers)

    @property
    def is_tombstone(self) -> bool:
        return self.value is None


class NotAcknowledged(KafkaError):
    retriable = False


@dataclass
class FakeKafka:
    clock: VirtualClock
    topics: dict[str, list[list[Stored]]] = field(default_factory=dict)
    #: (group, topic, partition) -> next offset to read
    committed: dict[tuple[str, str, int], int] = field(default_factory=dict)
    #: Called with (group, topic, partition, offset) before a commit takes effect.
    on_commit: Callable[[str, str, int, int], None] = lambda *_: None
    #: Fetches waiting for a record to be appended.
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def create(self, topic: str, partitions: int) -> None:
        self.topics.setdefault(topic, [[] for _ in range(partitions)])

    def partitions(self, topic: str) -> int:
        return len(self.topics[topic])

    def partition_for(self, topic: str, key: bytes | None) -> int:
        return zlib.crc32(key or b"") % self.partitions(topic)

    def append(self, topic: str, partition: int | None, key: bytes | None, value: bytes | None,
               headers: Sequence[tuple[str, bytes]] = ()) -> Stored:
        self.create(topic, 1)  # the companions (.invalid) appear when first written
        if partition is None:
            partition = self.partition_for(topic, key)
        log = self.topics[topic][partition]
        record = Stored(topic, partition, len(log), key, value, tuple(headers), int(self.clock.time() * 1000))
        log.append(record)
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        return record

    def records(self, topic: str) -> list[Stored]:
        return [r for log in self.topics.get(topic, []) for r in log]

    async def tail(self, topic: str, last: int) -> AsyncIterator[bytes | None]:
        """The values of the last ``last`` records of each partition."""
        for log in list(self.topics.get(topic, [])):
            for record in log[max(0, len(log) - last):]:
                await asyncio.sleep(0)
                yield record.value

    async def read_changelog(self, topic: str, partitions: list[int]) -> AsyncIterator[Stored]:
        for partition in partitions:
            for record in list(self.topics[topic][partition]):
                await asyncio.sleep(0)
                yield record


class FakeProducer:
    """Acknowledges after a random delay, in order per partition; fails an acknowledgement with
    probability ``fail_p``. ``crash`` ends it: what was not acknowledged is kept or lost at random
    (the broker may have written it)."""

    def __init__(self, kafka: FakeKafka, rng: random.Random, *, max_ack_s: float, fail_p: float) -> None:
        self._kafka = kafka
        self._rng = rng
        self._max_ack_s = max_ack_s
        self._fail_p = fail_p
        self._last_ack: dict[tuple[str, int], float] = {}
        self._pending: list[tuple[asyncio.TimerHandle, Callable[[], None], asyncio.Future[Any]]] = []
        self.dead = False

    async def send(self, topic: str, value: bytes | None = None, *, key: bytes | None = None,
                   partition: int | None = None, headers: Sequence[tuple[str, bytes]] | None = None,
                   ) -> asyncio.Future[Any]:
        if self.dead:
            raise KafkaError("producer closed")
        if self._rng.random() < 0.3:
            await asyncio.sleep(0)  # an await point inside send, as aiokafka's has
        self._kafka.create(topic, 1)
        target = self._kafka.partition_for(topic, key) if partition is None else partition
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        at = max(loop.time() + self._rng.random() * self._max_ack_s, self._last_ack.get((topic, target), 0.0) + 1e-6)
        self._last_ack[(topic, target)] = at
        failing = self._rng.random() < self._fail_p

        def write() -> None:
            if future.done():
                return
            if failing:
                future.set_exception(NotAcknowledged(f"simulated: {topic} not acknowledged"))
                return
            future.set_result(self._kafka.append(topic, target, key, value, headers or ()))

        handle = loop.call_at(at, self._done(write))
        self._pending.append((handle, write, future))
        return future

    def _done(self, write: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            self._pending = [p for p in self._pending if p[1] is not write]
            write()
        return run

    async def send_and_wait(self, topic: str, value: bytes | None = None, *, key: bytes | None = None,
                            headers: Sequence[tuple[str, bytes]] | None = None) -> Any:
        return await (await self.send(topic, value, key=key, headers=headers))

    def crash(self) -> None:
        self.dead = True
        for handle, write, future in self._pending:
            handle.cancel()
            if self._rng.random() < 0.5:
                write()  # the broker had it; the acknowledgement was lost with the process
            future.cancel()  # nobody of the dead process may go on waiting for it
        self._pending.clear()


class FakeConsumer:
    """One group member on one topic, with the parts of aiokafka's consumer the dispatcher calls."""

    def __init__(self, kafka: FakeKafka, group: str, rng: random.Random) -> None:
        self._kafka = kafka
        self.group = group
        self._rng = rng
        self.topic = ""
        self.listener: Any = None
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._position: dict[TopicPartition, int] = {}
        self._polled_ms: dict[TopicPartition, int] = {}
        self.fetches = 0
        self.max_asked = 0
        self.closed = False

    # --- joining ----------------------------------------------------------------------------

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.topic = topics[0]
        self.listener = listener

    async def start(self) -> None:
        await self.assign(set(range(self._kafka.partitions(self.topic))))

    async def stop(self) -> None:
        self.closed = True

    def all_partitions(self) -> set[int]:
        return set(range(self._kafka.partitions(self.topic)))

    async def revoke(self) -> None:
        """The first half of an (eager) rebalance: every partition is revoked."""
        revoked = set(self._assigned)
        if self.listener is not None and not self.closed:
            await self.listener.on_partitions_revoked(revoked)
        self._assigned.clear()
        self._paused.clear()

    async def assign(self, partitions: set[int]) -> None:
        """The second half: these are ours, read on from their committed offsets."""
        tps = {TopicPartition(self.topic, p) for p in partitions}
        for tp in tps:
            self._position[tp] = self._kafka.committed.get((self.group, self.topic, tp.partition), 0)
        self._assigned = tps
        if self.listener is not None and not self.closed:
            await self.listener.on_partitions_assigned(set(tps))

    # --- what the dispatcher calls ----------------------------------------------------------

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def pause(self, *tps: TopicPartition) -> None:
        self._paused |= set(tps) & self._assigned

    def resume(self, *tps: TopicPartition) -> None:
        self._paused -= set(tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self._assigned:
            raise IllegalStateError(f"no current assignment for partition {tp}")
        self._position[tp] = offset

    async def position(self, tp: TopicPartition) -> int:
        await asyncio.sleep(0)
        if tp not in self._assigned:
            raise IllegalStateError(f"partition {tp} is not assigned")
        return self._position[tp]

    def highwater(self, tp: TopicPartition) -> int | None:
        return len(self._kafka.topics[self.topic][tp.partition]) if tp in self._assigned else None

    def last_poll_timestamp(self, tp: TopicPartition) -> int | None:
        return self._polled_ms.get(tp)

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        self.fetches += 1
        self.max_asked = max(self.max_asked, max_records)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            fetched = self._take(max_records)
            if fetched or loop.time() >= deadline - 1e-6:  # float rounding must not spin
                return fetched
            # Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that meets a
            # result, and a crashed dispatcher's task would live on.
            waiter: asyncio.Future[None] = loop.create_future()
            timer = loop.call_at(deadline, lambda: waiter.done() or waiter.set_result(None))
            self._kafka.waiters.append(waiter)
            try:
                await waiter
            finally:
                timer.cancel()

    def _take(self, max_records: int) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        now_ms = int(self._kafka.clock.time() * 1000)
        fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        readable = sorted(self._assigned - self._paused)
        self._rng.shuffle(readable)
        room = max_records
        # Batches of any shape: sometimes one partition takes most, sometimes all share.
        share = max(1, max_records // max(1, len(readable))) if self._rng.random() < 0.5 else max_records
        for tp in readable:
            self._polled_ms[tp] = now_ms
            log = self._kafka.topics[self.topic][tp.partition]
            start = self._position[tp]
            if room <= 0 or start >= len(log):
                continue
            count = min(room, len(log) - start, self._rng.randint(1, min(share, max(1, room))))
            fetched[tp] = [r.consumer_record() for r in log[start:start + count]]
            self._position[tp] = start + count
            room -= count
        return fetched

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await asyncio.sleep(0)
        if self.closed or any(tp not in self._assigned for tp in offsets):
            raise CommitFailedError("simulated: the partitions were reassigned")
        for tp, offset in offsets.items():
            self._kafka.on_commit(self.group, tp.topic, tp.partition, offset)
            self._kafka.committed[(self.group, tp.topic, tp.partition)] = offset
