"""The consumer loop the intake and the tiers share: every record fetched is taken or read again,
whatever the shape of the batch across partitions (against tests/sim's in-memory consumer)."""

from __future__ import annotations

import time

from aiokafka.structs import TopicPartition

from jobwire.dispatch.consuming import ConsumerLoop, Records
from jobwire.dispatch.lanes import Lanes, Source, Work
from jobwire.dispatch.outbox import Outbox
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
