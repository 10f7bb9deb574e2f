"""The consumer loop the intake and the tiers share: every record fetched is taken or read again,
whatever the shape of the batch across partitions (against tests/sim's in-memory consumer)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.structs import TopicPartition

from jobwire.dispatch.consuming import ConsumerLoop, Records
from jobwire.dispatch.lanes import Lanes, Source, Work
from jobwire.dispatch.outbox import Outbox
from jobwire.dispatch.tier_consumer import tier_fetch_wait_ms
from jobwire.errors import LogError
from jobwire.webhooks.model import Delivery
from tests.sim.fake_kafka import FakeConsumer, FakeKafka


class WallClock:
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


class OneDeliveryPerRecord(ConsumerLoop):
    async def take(self, tp: TopicPartition, records: Records, epoch: int) -> int | None:
        for raw in records:
            if self.lanes.full:
                return raw.offset
            delivery = Delivery(f"msg_{tp.partition}_{raw.offset}", "ep_1", "acme", "task.completed", "evt", "job",
                                b"{}", "2026-01-01T00:00:00.000Z")
            self.lanes.push(Work(delivery, Source(self.tracker, tp.partition, raw.offset, 1, epoch)), None)
        return None


async def loop_over(partitions: int, records: int, bound: int) -> tuple[OneDeliveryPerRecord, FakeConsumer]:
    import random

    kafka = FakeKafka(WallClock())  # type: ignore[arg-type]
    kafka.create("jobs.events", partitions)
    for p in range(partitions):
        for _ in range(records):
            kafka.append("jobs.events", p, b"k", b"v")
    consumer = FakeConsumer(kafka, "g", random.Random(1))
    consumer.subscribe(["jobs.events"], None)
    await consumer.start()
    lanes = Lanes(in_flight_per_endpoint=1, queue_per_endpoint=1000, max_deliveries=bound, max_bytes=1 << 30)
    return OneDeliveryPerRecord(consumer, "jobs.events", lanes=lanes, outbox=Outbox(None),  # type: ignore[arg-type]
                                commit_interval_s=1.0), consumer


async def test_a_batch_that_fills_the_lanes_leaves_every_other_partition_to_be_read_again() -> None:
    loop, consumer = await loop_over(partitions=3, records=5, bound=4)
    fetched = {TopicPartition("jobs.events", p): [r.consumer_record() for r in consumer._kafka.topics["jobs.events"][p]]
               for p in range(3)}
    for tp in fetched:
        consumer.seek(tp, 5)  # as aiokafka does: the positions moved past what it returned
    await loop.take_fetched(fetched, {p: 0 for p in range(3)})
    assert loop.lanes.deliveries == 4
    positions = {tp.partition: await consumer.position(tp) for tp in fetched}
    assert positions == {0: 4, 1: 0, 2: 0}, "the first partition resumes after what it took, the others from the start"
    assert loop.tracker.committable() == {0: 0}


async def test_records_fetched_before_a_revocation_are_not_taken_by_the_partitions_next_life() -> None:
    loop, consumer = await loop_over(partitions=1, records=3, bound=100)
    tp = TopicPartition("jobs.events", 0)
    fetched = {tp: [r.consumer_record() for r in consumer._kafka.topics["jobs.events"][0]]}
    epochs = {0: loop.tracker.epoch(0)}
    loop.tracker.forget({0})  # revoked (and handed back) while the batch waited its turn
    await loop.take_fetched(fetched, epochs)
    assert loop.lanes.deliveries == 0 and loop.tracker.committable() == {}


class SkipEveryRecord(ConsumerLoop):
    """Records that need no work: each only moves the offset to commit."""

    async def take(self, tp: TopicPartition, records: Records, epoch: int) -> int | None:
        for raw in records:
            self.tracker.skip(tp.partition, raw.offset, epoch)
        return None


class HeldFlush(Outbox):
    """An outbox whose acknowledgements arrive when the test says (or never: ``fail``)."""

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self.release = asyncio.Event()
        self.flushes = 0
        self.fail: Exception | None = None

    async def flush(self) -> None:
        self.flushes += 1
        if self.fail is None:
            await self.release.wait()
        if self.fail is not None:
            raise self.fail


async def skipping_loop(outbox: Outbox) -> tuple[SkipEveryRecord, FakeKafka, FakeConsumer]:
    import random

    kafka = FakeKafka(WallClock())  # type: ignore[arg-type]
    kafka.create("jobs.events", 1)
    consumer = FakeConsumer(kafka, "g", random.Random(1))
    consumer.subscribe(["jobs.events"], None)
    await consumer.start()
    lanes = Lanes(in_flight_per_endpoint=1, queue_per_endpoint=10, max_deliveries=10, max_bytes=1 << 20)
    return SkipEveryRecord(consumer, "jobs.events", lanes=lanes, outbox=outbox, commit_interval_s=0.0), kafka, consumer


async def wait_until(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


async def test_the_loop_takes_records_while_a_commit_waits_for_acknowledgements() -> None:
    outbox = HeldFlush()
    loop, kafka, _ = await skipping_loop(outbox)
    kafka.append("jobs.events", 0, b"k", b"v")
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    try:
        await wait_until(lambda: outbox.flushes == 1)  # the first commit waits for its acknowledgements
        for _ in range(3):
            kafka.append("jobs.events", 0, b"k", b"v")
        await wait_until(lambda: loop.tracker.committable() == {0: 4})  # taken meanwhile
        assert kafka.committed == {}, "nothing is committed before the writes are acknowledged"
        assert outbox.flushes == 1, "one commit at a time"
        outbox.release.set()
        # The first commit covers what was taken before it started; the next one the rest.
        await wait_until(lambda: kafka.committed.get(("g", "jobs.events", 0)) == 4)
    finally:
        stop.set()
        await running


async def ended_mid_commit() -> tuple[SkipEveryRecord, FakeKafka, HeldFlush]:
    """A loop that took one record and ended while its commit waits for acknowledgements."""
    outbox = HeldFlush()
    loop, kafka, _ = await skipping_loop(outbox)
    kafka.append("jobs.events", 0, b"k", b"v")
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    await wait_until(lambda: outbox.flushes == 1)
    stop.set()
    await running  # ends at once, the commit still waiting for its acknowledgements
    return loop, kafka, outbox


async def test_a_commit_asked_for_while_one_is_under_way_waits_for_it() -> None:
    loop, kafka, outbox = await ended_mid_commit()
    revocation = asyncio.create_task(loop.commit())  # as a revocation or the shutdown asks
    await asyncio.sleep(0.05)
    assert outbox.flushes == 1 and not revocation.done(), "it waits for the commit under way"
    outbox.release.set()
    assert await revocation == {} and outbox.flushes == 2  # the one under way committed offset 1 already
    assert kafka.committed == {("g", "jobs.events", 0): 1}


async def test_a_failed_commit_ends_the_loop_with_its_error() -> None:
    outbox = HeldFlush()
    outbox.fail = LogError("the producer's writes failed")
    loop, kafka, _ = await skipping_loop(outbox)
    kafka.append("jobs.events", 0, b"k", b"v")
    with pytest.raises(LogError, match="writes failed"):
        await asyncio.wait_for(loop.run(asyncio.Event()), 10)
    assert kafka.committed == {}


async def test_a_commit_still_under_way_when_the_loop_ends_says_when_it_fails(caplog: pytest.LogCaptureFixture) -> None:
    _, kafka, outbox = await ended_mid_commit()
    outbox.fail = LogError("a record was not acknowledged")
    outbox.release.set()
    await wait_until(lambda: "commit under way as the consumer ended failed" in caplog.text)
    assert kafka.committed == {}


@pytest.mark.parametrize(("tier_s", "least_ms", "expected_ms"), [
    (0.0, 20, 20),  # the requests topic: as prompt as the intake
    (1.0, 20, 50),
    (5.0, 20, 50),  # at most 1 % late
    (30.0, 20, 300),
    (3600.0, 20, 500),  # aiokafka's own default, never more
    (5.0, 1000, 1000),  # an operator's longer wait stands
])
def test_a_tier_waits_for_its_fetch_a_share_of_its_delay(tier_s: float, least_ms: int, expected_ms: int) -> None:
    assert tier_fetch_wait_ms(tier_s, least_ms) == expected_ms
