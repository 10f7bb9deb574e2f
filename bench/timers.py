"""Deadline timers: memory per timer, and how late 100k timers fire, each against a ceiling
measured in the same run.

- Memory: bytes the dispatcher's timers add per live job (heap entry, due time, heartbeat
  time), against the bytes of the job's own state, which the dispatcher holds anyway.
- Firing: 100k jobs in the dispatcher's partition state, their deadlines spread over a few
  seconds; the timers write each expiry to a real broker through the dispatcher's outbox. The
  delay is the time from a deadline to its expiry being handed to the producer; the ceiling is
  the rate at which the same producer takes the same records without timers.

    .venv/bin/python bench/timers.py [--timers 100000] [--spread-s 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc
import uuid

from _broker import bench_broker

from jobwire import events
from jobwire.config import load_settings
from jobwire.deadlines import expiry_event, next_due
from jobwire.dispatch.outbox import Outbox
from jobwire.dispatch.state import JobState, PartitionState, StateStore
from jobwire.dispatch.timers import Timers
from jobwire.events import new_event
from jobwire.kafka.admin import ensure_topics
from jobwire.kafka.clients import make_producer
from jobwire.lifecycle import Job, apply
from jobwire.timeutil import format_utc
from jobwire.topics import Topics

PARTITIONS = 6


def jobs_due_over(count: int, start: float, spread_s: float) -> list[Job]:
    """``count`` processing jobs whose heartbeat deadlines fall evenly over ``spread_s``."""
    from datetime import UTC, datetime

    created = format_utc(datetime.fromtimestamp(start - 10, UTC))
    jobs = []
    for i in range(count):
        job_id = f"job_t{i:07d}"
        job = apply(None, new_event("job.created", job_id, "acme", {
            "operation": "bench", "parameters": {"n": i}, "timeout_s": 10 + spread_s * i / count}, time=created)).job
        assert job is not None
        jobs.append(job)
    return jobs


def memory_figures(count: int, spread_s: float) -> None:
    state = StateStore.__new__(StateStore)
    state.partitions = {p: PartitionState() for p in range(PARTITIONS)}
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    jobs = jobs_due_over(count, time.time(), spread_s)
    for i, job in enumerate(jobs):
        state.partitions[i % PARTITIONS].jobs[job.id] = JobState(job, i)
    with_state = tracemalloc.get_traced_memory()[0]
    timers = Timers(state, Outbox(None), "jobs.events")  # type: ignore[arg-type]
    for i, job in enumerate(jobs):
        timers.arm(i % PARTITIONS, job)
        timers._heartbeats[job.id] = 0.0  # as if every job had a heartbeat limit: the worst case
    with_timers = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per_timer = (with_timers - with_state) / len(jobs)
    per_state = (with_state - before) / len(jobs)
    print(f"memory per timer: {per_timer:,.0f} bytes (heap entry, due time, heartbeat time); the live job's "
          f"state the dispatcher holds anyway: {per_state:,.0f} bytes, ratio {per_timer / per_state:.2f}")


async def firing_figures(bootstrap: str, count: int, spread_s: float) -> None:
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                              "JOBWIRE_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}.",
                              "JOBWIRE_EVENTS_PARTITIONS": str(PARTITIONS)})
    await ensure_topics(settings)
    topic = Topics(settings.topic_prefix).events
    producer = make_producer(settings.kafka, linger_ms=20)
    await producer.start()
    try:
        outbox = Outbox(producer)
        # The ceiling: the same expiry records, handed to the same producer with no timers.
        sample = jobs_due_over(count, time.time(), spread_s)
        records = [(i % PARTITIONS, job.id, events.encode(expiry_event(job, next_due(job))))  # type: ignore[arg-type]
                   for i, job in enumerate(sample)]
        started = time.perf_counter()
        for partition, key, value in records:
            await outbox.send(topic, key, value, partition=partition)
        await outbox.flush()
        ceiling = count / (time.perf_counter() - started)

        start = time.time() + 3  # arming 100k timers takes a moment; the first falls due after it
        jobs = jobs_due_over(count, start, spread_s)
        state = StateStore(settings.kafka, outbox, Topics(settings.topic_prefix).state)
        state.partitions = {p: PartitionState() for p in range(PARTITIONS)}
        late: list[float] = []

        class Watched(Timers):
            async def _fire(self, partition, job, due):  # type: ignore[no-untyped-def]
                await super()._fire(partition, job, due)
                late.append(time.time() - due.at)

        timers = Watched(state, outbox, topic)
        for i, job in enumerate(jobs):
            state.partitions[i % PARTITIONS].jobs[job.id] = JobState(job, i)
            timers.arm(i % PARTITIONS, job)
        stop = asyncio.Event()
        loop = asyncio.create_task(timers.run(stop))
        deadline = time.monotonic() + spread_s + 120  # bounded: every timer fires or the bench says so
        while len(late) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            await outbox.flush()  # what the intake's commits do
        stop.set()
        await loop
    finally:
        await producer.stop()
    late.sort()
    p50, p99 = (late[min(len(late) - 1, int(len(late) * q))] for q in (0.5, 0.99))
    worst = late[-1]
    print(f"{len(late):,} of {count:,} timers fired over {spread_s:g}s: delay p50 {p50:.3f}s, p99 {p99:.3f}s, "
          f"max {worst:.3f}s (goal: within 1 s of due)")
    print(f"expiries due {count / spread_s:,.0f}/s; the producer alone takes {ceiling:,.0f}/s, "
          f"ratio {count / spread_s / ceiling:.2f} (below 1: the timers keep up)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument("--spread-s", type=float, default=5.0)
    args = parser.parse_args()
    memory_figures(args.timers, args.spread_s)
    with bench_broker() as bootstrap:
        asyncio.run(firing_figures(bootstrap, args.timers, args.spread_s))


if __name__ == "__main__":
    main()
