"""The dispatcher process, composed: jobs.events -> signed webhooks, with retries that survive
crashes. This module only builds the parts and runs them; each part is its own module.

    jobs.events ──▶ EventIntake ──▶ Lanes (one queue per endpoint, bounded) ──▶ SenderPool ──▶ HTTP
                        │  full lane: park ─▶ webhooks.requests              │
    retry tiers ──▶ TierConsumer ──┘  (due, has room)                       └─▶ Deliverer: policy,
    + requests      (not due: wait; no room / Retry-After: hop onward)          attempt records, retry
                                                                                 tiers, dead letters

At-least-once, and what a kill -9 can cost is a duplicate, never a loss: every consumer commits
only offsets whose work is done, after the outbox has every record written for them
acknowledged; a replayed terminal event is delivered again with the same ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any

from jobwire.clock import SYSTEM, Clock
from jobwire.config import Settings
from jobwire.dispatch.deliverer import Deliverer, Poster, tier_topic
from jobwire.dispatch.http_client import Sender
from jobwire.dispatch.intake import EventIntake
from jobwire.dispatch.lanes import Lanes
from jobwire.dispatch.outbox import Outbox, Producer
from jobwire.dispatch.policy import Tiers
from jobwire.dispatch.received import RECALL_PER_PARTITION, Received, RecentAttempts
from jobwire.dispatch.saturation import CpuLoad
from jobwire.dispatch.sender_pool import SenderPool
from jobwire.dispatch.state import ReadChangelog, StateStore
from jobwire.dispatch.tier_consumer import TierConsumer, tier_fetch_wait_ms
from jobwire.dispatch.timers import Timers
from jobwire.errors import ConfigError
from jobwire.kafka.clients import make_producer
from jobwire.kafka.consumers import Consumer, group_consumer
from jobwire.kafka.quarantine import Quarantine
from jobwire.kafka.readers import LogReader, follow_raw, read_tail, read_to_end
from jobwire.metrics import DISPATCH_HELD, DISPATCH_HELD_BYTES, ENDPOINT_OLDEST_AGE, ENDPOINT_QUEUE_DEPTH
from jobwire.topics import Topics, delay_label
from jobwire.webhooks.registry import EndpointRegistry
from jobwire.webhooks.secretbox import SecretBox

log = logging.getLogger(__name__)

#: How many of the deepest endpoint queues the per-endpoint gauges show (bounded cardinality).
GAUGED_ENDPOINTS = 20


@dataclass(frozen=True)
class DispatcherOptions:
    commit_interval_s: float = 0.2
    shutdown_grace_s: float = 10.0


class DispatcherParts:
    """Every part of a dispatcher, wired, around the clients it is given: the process builds it
    on aiokafka (``Dispatcher``); the simulation (tests/sim) builds it on in-memory fakes."""

    def __init__(self, settings: Settings, options: DispatcherOptions, *, producer: Producer,
                 consumer: Callable[[str, str, int], Consumer], read_changelog: ReadChangelog, sender: Poster,
                 recent_attempts: RecentAttempts | None = None, clock: Clock = SYSTEM,
                 busy: Callable[[], bool] | None = None) -> None:
        """``busy``: whether the process is busy on the CPU (the simulation decides it from its
        seed; by default ``CpuLoad`` measures it)."""
        if not settings.secret_key:
            raise ConfigError("JOBWIRE_SECRET_KEY", "the dispatcher needs it to open endpoint secrets")
        self.settings = settings
        self.topics = topics = Topics(settings.topic_prefix)
        self.group_id = f"{settings.topic_prefix}jobwire-dispatcher"
        self.producer = producer
        self.outbox = Outbox(producer)
        self.registry = EndpointRegistry()
        self.tiers = Tiers.of_schedule(settings.retry_schedule_s)
        self.lanes = Lanes(in_flight_per_endpoint=settings.endpoint_in_flight,
                           queue_per_endpoint=settings.endpoint_max_queued,
                           max_deliveries=settings.dispatch_max_deliveries, max_bytes=settings.dispatch_max_bytes,
                           senders=settings.dispatch_senders, clock=clock, busy=busy or CpuLoad().busy)
        self.received = Received()
        self._recent_attempts = recent_attempts
        self.deliverer = Deliverer(
            schedule_s=settings.retry_schedule_s, tiers=self.tiers,
            disable_after_s=settings.endpoint_disable_after_s, topics=topics, registry=self.registry,
            sender=sender, box=SecretBox(settings.secret_key), outbox=self.outbox, received=self.received, clock=clock,
            secret_keys=settings.secret_key or "")
        self.pool = SenderPool(self.lanes, self.deliverer, settings.dispatch_senders)
        self.state = StateStore(self.outbox, topics.state, read_changelog,
                                retention_s=settings.retention_days * 86400)
        interval = options.commit_interval_s
        # A deadline waits until the intake has read its partition past it (see timers.py).
        self.timers = Timers(self.state, self.outbox, topics.events, clock=clock.time,
                             read_through=lambda partition: self.intake.read_through.get(partition, -math.inf),
                             cancel_grace_s=settings.cancel_grace_s)
        self.intake = EventIntake(
            consumer(self.group_id, "events", settings.kafka.fetch_max_wait_ms), topics.events,
            state=self.state, registry=self.registry, lanes=self.lanes, deliverer=self.deliverer,
            outbox=self.outbox, timers=self.timers,
            commit_interval_s=interval, clock=clock, progress_interval_s=settings.progress_webhook_interval_s,
            quarantine=Quarantine(producer, topics.events, topics.events_invalid))
        self.tier_consumers = [
            TierConsumer(consumer(f"{self.group_id}.retry" if delay else f"{self.group_id}.requests",
                                  f"retry-{delay_label(delay)}" if delay else "requests",
                                  tier_fetch_wait_ms(delay, settings.kafka.fetch_max_wait_ms)),
                         tier_topic(topics, delay), delay, tiers=self.tiers, lanes=self.lanes,
                         registry=self.registry, deliverer=self.deliverer, outbox=self.outbox,
                         commit_interval_s=interval, clock=clock,
                         quarantine=Quarantine(producer, tier_topic(topics, delay),
                                               topics.invalid(tier_topic(topics, delay))))
            for delay in (0.0, *self.tiers.delays_s)
        ]

    @property
    def committers(self) -> list[EventIntake | TierConsumer]:
        return [self.intake, *self.tier_consumers]

    async def recall(self) -> None:
        """Before the first attempt: learn which deliveries receivers took in the last moments
        before this process started, so a replay after a crash does not send them again."""
        if self._recent_attempts is None:
            return
        started = time.monotonic()
        read = await self.received.recall(self._recent_attempts)
        log.info("recent attempts read records=%d received=%d seconds=%.2f", read, len(self.received),
                 time.monotonic() - started)

    def loops(self, stop: asyncio.Event) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """The parts that run, by name, once the consumers are subscribed and started."""
        return [("senders", self.pool.run()), ("intake", self.intake.run(stop)),
                ("state", self.state.keep_written(stop)), ("ordered", self.intake.ordered.run(stop)),
                ("deadlines", self.timers.run(stop)), *((t.topic, t.run(stop)) for t in self.tier_consumers)]


class Dispatcher:
    """Builds every part from ``settings``; ``sender`` may be replaced (tests use fakes)."""

    def __init__(self, settings: Settings, options: DispatcherOptions | None = None, *,
                 sender: Poster | None = None) -> None:
        self.settings = settings
        self.options = options or DispatcherOptions()
        self.http = Sender(settings.allowed_targets, proxy=settings.egress_proxy) if sender is None else None
        self.producer = make_producer(settings.kafka)
        self.parts = parts = DispatcherParts(
            settings, self.options, producer=self.producer, consumer=self._consumer,
            read_changelog=partial(read_to_end, settings.kafka, Topics(settings.topic_prefix).state),
            recent_attempts=partial(_attempt_values, settings, Topics(settings.topic_prefix).attempts),
            sender=sender or self.http)  # type: ignore[arg-type]
        self.topics, self.group_id, self.outbox = parts.topics, parts.group_id, parts.outbox
        self.registry, self.tiers, self.lanes, self.deliverer = parts.registry, parts.tiers, parts.lanes, parts.deliverer
        self.pool, self.state, self.timers = parts.pool, parts.state, parts.timers
        self.intake, self.tier_consumers = parts.intake, parts.tier_consumers
        self._stop = asyncio.Event()

    def _consumer(self, group_id: str, member: str, fetch_wait_ms: int) -> Consumer:
        """A member of ``group_id``; ``member`` tells this process's consumers apart, since the
        retry tiers share one group and a static id may be held by one consumer only.
        ``fetch_wait_ms``: how long the broker may hold its idle fetch."""
        instance = self.settings.instance_id
        # A member learns of a rebalance from its next heartbeat, and the group waits for every
        # member to rejoin: beats every 3 s at most (Kafka's default), however long the session.
        session_ms = int(self.settings.group_session_timeout_s * 1000)
        return group_consumer(self.settings.kafka, group_id,
                              group_instance_id=f"{instance}.{member}" if instance else None,
                              session_timeout_ms=session_ms, heartbeat_interval_ms=min(3000, session_ms // 3),
                              fetch_max_wait_ms=fetch_wait_ms)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Run until ``stop()``. A part that fails (the log unreachable for good) ends the run
        with its error, after a best-effort shutdown, so the process exits non-zero."""
        await self.producer.start()
        if self.http is not None:
            await self.http.start()
        endpoints = LogReader(self.settings.kafka, self.topics.endpoints)
        consumers = [self.intake.consumer, *(t.consumer for t in self.tier_consumers)]
        parts: list[asyncio.Task[None]] = []
        failure: BaseException | None = None
        try:
            await endpoints.start()
            ends = await endpoints.end_offsets()
            parts.append(asyncio.create_task(
                follow_raw(endpoints, self.registry.apply, self.registry.positions, self._stop), name="endpoints"))
            while not self.registry.positions.caught_up(ends):  # know every endpoint before delivering
                await self._first_of(parts, asyncio.sleep(0.02))
            self.intake.consumer.subscribe([self.topics.events], listener=self.intake.listener)
            for tier in self.tier_consumers:
                tier.consumer.subscribe([tier.topic], listener=tier.listener)
            await self._first_of(parts, self.parts.recall())
            for consumer in consumers:
                await consumer.start()
            parts += [asyncio.create_task(loop, name=name) for name, loop in self.parts.loops(self._stop)]
            parts.append(asyncio.create_task(self._gauges(), name="gauges"))
            log.info("dispatcher running group=%s tiers=%s senders=%d", self.group_id,
                     ",".join(t.topic for t in self.tier_consumers), self.pool.size)
            await self._first_of(parts, self._stop.wait())
        except Exception as exc:
            failure = exc
            log.error("dispatcher stopping on a failure error=%s", exc)
        finally:
            self._stop.set()
            await self._shutdown(parts, consumers, endpoints, clean=failure is None)
        if failure is not None:
            raise failure

    async def _first_of(self, parts: list[asyncio.Task[None]], waiting: Awaitable[object]) -> None:
        """Wait for ``waiting``, but raise at once if a running part failed meanwhile."""
        waiter = asyncio.ensure_future(waiting)
        try:
            done, _ = await asyncio.wait([waiter, *parts], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        for task in done:
            if task is not waiter:
                if self._stop.is_set() and not task.cancelled() and task.exception() is None:
                    continue  # the loops end by themselves once told to stop
                task.result()  # a part's failure, raised here
                raise RuntimeError(f"dispatcher part {task.get_name()} ended unexpectedly")

    async def _shutdown(self, parts: list[asyncio.Task[None]], consumers: list[Consumer],
                        endpoints: LogReader, *, clean: bool) -> None:
        loops = [p for p in parts if p.get_name() not in ("senders", "gauges")]
        if loops:  # they watch the stop flag; cancel only what has not ended by itself
            await asyncio.wait(loops, timeout=15)
        self.lanes.close()  # no new attempts; queued work stays uncommitted and is read again
        if clean:
            await self.pool.drain(self.options.shutdown_grace_s)
            with contextlib.suppress(Exception):  # heads that ended in the drain leave their queues
                await self.parts.intake.ordered.settle_ended()
        for part in parts:
            part.cancel()
        for part in parts:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await part
        if clean:
            for committer in self.parts.committers:
                with contextlib.suppress(Exception):
                    await committer.commit()
        closers: list[Callable[[], Awaitable[None]]] = [c.stop for c in consumers]
        closers += [endpoints.stop, self.producer.stop]
        if self.http is not None:
            closers.append(self.http.stop)
        for close in closers:
            with contextlib.suppress(Exception):
                await close()

    async def _gauges(self) -> None:
        while True:
            DISPATCH_HELD.set(self.lanes.deliveries)
            DISPATCH_HELD_BYTES.set(self.lanes.bytes)
            ENDPOINT_QUEUE_DEPTH.clear()
            ENDPOINT_OLDEST_AGE.clear()
            for endpoint_id, depth, age in self.lanes.busiest(GAUGED_ENDPOINTS):
                ENDPOINT_QUEUE_DEPTH.labels(endpoint_id=endpoint_id).set(depth)
                ENDPOINT_OLDEST_AGE.labels(endpoint_id=endpoint_id).set(age)
            await asyncio.sleep(2)


async def _attempt_values(settings: Settings, topic: str) -> AsyncIterator[bytes | None]:
    async for record in read_tail(settings.kafka, topic, RECALL_PER_PARTITION):
        yield record.value
