"""The dispatcher process: jobs.events -> signed webhooks, with retries that survive crashes.

At-least-once, and what a kill -9 can cost is a duplicate, never a loss:
- a jobs.events offset is committed only after its job snapshot is in ``jobs.state`` and every
  delivery born from it succeeded or was durably written to a retry tier / dead letters
  (a per-partition watermark, ``OffsetTracker``);
- a replayed terminal event is recognised through the snapshot and delivered again with the
  same ``webhook-id`` (derived from event id and endpoint id), so receivers can dedupe;
- a retry tier commits a record only after its next step is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from jobwire.config import Settings
from jobwire.dispatch.delivery import Sender, SendResult
from jobwire.dispatch.limits import EndpointLimits
from jobwire.dispatch.retry import next_step
from jobwire.dispatch.signing import sign_headers
from jobwire.dispatch.state import JobState, StateStore
from jobwire.endpoints import EndpointRegistry, EndpointWriter
from jobwire.lifecycle import Job, Verdict, apply
from jobwire.log import (
    KeyedWriter, LogReader, LogRecord, Quarantine, client_options, commit_owned, make_producer, to_log_record,
)
from jobwire.metrics import CONSUMER_LAG, DEAD_LETTERS, DELIVERIES_IN_FLIGHT, DELIVERY_LATENCY, DELIVERY_OUTCOMES
from jobwire.offsets import OffsetTracker
from jobwire.positions import follow_raw
from jobwire.secretbox import SecretBox
from jobwire.timeutil import format_utc, now_utc
from jobwire.topics import Topics, retry_delays
from jobwire.webhooks import Attempt, Delivery, Endpoint, job_payload, webhook_id

log = logging.getLogger(__name__)


@dataclass
class DispatcherOptions:
    per_endpoint_in_flight: int = 16
    max_in_flight: int = 512
    commit_interval_s: float = 0.2


class Deliverer:
    """Runs one attempt of a delivery and makes its next step durable."""

    def __init__(self, settings: Settings, registry: EndpointRegistry, endpoint_writer: EndpointWriter,
                 sender: Sender, box: SecretBox, tiers: dict[float, KeyedWriter], dead: KeyedWriter,
                 attempts: KeyedWriter, options: DispatcherOptions) -> None:
        self.settings = settings
        self.registry = registry
        self.endpoint_writer = endpoint_writer
        self.sender = sender
        self.box = box
        self.tiers = tiers
        self.dead = dead
        self.attempts = attempts
        self.options = options
        self.limits = EndpointLimits(options.per_endpoint_in_flight)
        self._global = asyncio.Semaphore(options.max_in_flight)
        self._failing_since: dict[str, float] = {}
        self._opened: dict[str, str] = {}

    def secrets_of(self, endpoint: Endpoint) -> list[str]:
        now = now_utc()
        return [self._open(s.sealed) for s in endpoint.secrets if s.expires_at is None or s.expires_at > now]

    def _open(self, sealed: str) -> str:
        # A sealed value has its own random nonce, so it names exactly one secret: cache by it
        # rather than decrypting on every attempt.
        secret = self._opened.get(sealed)
        if secret is None:
            secret = self._opened[sealed] = self.box.open(sealed)
        return secret

    async def attempt(self, delivery: Delivery) -> None:
        endpoint = self.registry.endpoints.get(delivery.endpoint_id)
        if endpoint is None:
            await self._record(delivery, "dropped", error="the endpoint was deleted")
            return
        if endpoint.disabled:
            # Kept, not dropped: re-enabling the endpoint and calling recover delivers it.
            await self._bury(delivery, "skipped", "endpoint_disabled",
                             error=f"endpoint disabled: {endpoint.disabled_reason or 'by the API'}")
            return
        attempt_no = delivery.attempts + 1
        async with self._global, self.limits.slot(endpoint):
            headers = sign_headers(delivery.id, delivery.body, self.secrets_of(endpoint))
            DELIVERIES_IN_FLIGHT.inc()
            try:
                result = await self.sender.post(endpoint.url, delivery.body.encode(), headers)
            finally:
                DELIVERIES_IN_FLIGHT.dec()
        DELIVERY_LATENCY.observe(result.latency_ms / 1000)
        sent = replace(delivery, attempts=attempt_no)
        step = next_step(self.settings.retry_schedule_s, attempt_no, result)
        if step.kind == "succeeded":
            self._failing_since.pop(endpoint.id, None)
            await self._record(sent, "succeeded", result)
            return
        if step.kind != "disabled" and self._failing_too_long(endpoint.id):
            step = replace(step, kind="disabled")
        if step.kind == "disabled":
            gone = result.status_code == 410
            reason = "the endpoint answered 410 Gone" if gone else \
                f"every attempt failed for {self.settings.endpoint_disable_after_s:.0f}s"
            await self.endpoint_writer.put(endpoint.with_changes(disabled=True, disabled_reason=reason, updated_at=now_utc()))
            await self._bury(sent, "disabled", "endpoint_gone" if gone else "endpoint_failing", result,
                             extra={"reason": reason})
            log.warning("endpoint disabled endpoint_id=%s reason=%s", endpoint.id, reason)
        elif step.kind == "dead":
            await self._bury(sent, "failed", "attempts_exhausted", result)
        else:
            due_ms = int(time.time() * 1000 + step.delay_s * 1000)
            await self.tiers[step.tier_s].send(sent.endpoint_id, replace(sent, due_at_ms=due_ms).encode())
            await self._record(sent, "retrying", result, next_at=format_utc(datetime.fromtimestamp(due_ms / 1000, UTC)))

    async def _bury(self, delivery: Delivery, outcome: str, reason: str, result: SendResult | None = None, *,
                    error: str | None = None, extra: dict[str, str] | None = None) -> None:
        """End a delivery unsent: a dead letter, counted, and the attempt record that carries it
        (so retry and recover can send it again)."""
        await self.dead.send(delivery.id, delivery.encode())
        DEAD_LETTERS.labels(reason=reason).inc()
        await self._record(delivery, outcome, result, error=error, extra=extra, dead_letter=True)

    def _failing_too_long(self, endpoint_id: str) -> bool:
        # Counted in memory: a restart starts the clock again, which only delays disabling.
        since = self._failing_since.setdefault(endpoint_id, time.monotonic())
        return time.monotonic() - since > self.settings.endpoint_disable_after_s

    async def _record(self, delivery: Delivery, outcome: str, result: SendResult | None = None, *,
                      error: str | None = None, next_at: str | None = None, extra: dict[str, str] | None = None,
                      dead_letter: bool = False) -> None:
        attempt = Attempt(
            delivery.id, delivery.endpoint_id, delivery.tenant, delivery.event_type, delivery.event_id, delivery.job_id,
            delivery.previous_attempts + delivery.attempts, now_utc(), outcome,
            result.status_code if result else None, result.latency_ms if result else None,
            (result.error if result else None) or error, result.excerpt if result else None, next_at, extra or {},
            asdict(delivery) if dead_letter else None,
        )
        await self.attempts.send(delivery.id, attempt.encode())
        DELIVERY_OUTCOMES.labels(outcome=outcome).inc()
        log.info("delivery attempt delivery_id=%s endpoint_id=%s event_id=%s job_id=%s attempt=%d outcome=%s "
                 "status=%s latency_ms=%s error=%s", delivery.id, delivery.endpoint_id, delivery.event_id,
                 delivery.job_id, attempt.attempt, outcome, attempt.status_code, attempt.latency_ms, attempt.error)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.dispatcher.on_revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.dispatcher.on_assigned(sorted(tp.partition for tp in assigned))


@dataclass
class Dispatcher:
    settings: Settings
    options: DispatcherOptions = field(default_factory=DispatcherOptions)

    def __post_init__(self) -> None:
        if not self.settings.secret_key:
            raise ValueError("the dispatcher needs JOBWIRE_SECRET_KEY")
        self.topics = Topics(self.settings.topic_prefix)
        self.group_id = f"{self.settings.topic_prefix}jobwire-dispatcher"
        self.producer = make_producer(self.settings.kafka)
        self.registry = EndpointRegistry()
        self.sender = Sender(self.settings.allowed_targets)
        self.state = StateStore(self.settings.kafka, self.producer, self.topics.state)
        self.offsets = OffsetTracker()
        writer = lambda topic: KeyedWriter(self.producer, topic)  # noqa: E731
        self.deliverer = Deliverer(
            self.settings, self.registry, EndpointWriter(writer(self.topics.endpoints)), self.sender,
            SecretBox(self.settings.secret_key),
            {d: writer(self.topics.retry(d)) for d in retry_delays(self.settings)},
            writer(self.topics.dead), writer(self.topics.attempts), self.options,
        )
        self.consumer = AIOKafkaConsumer(**client_options(self.settings.kafka), group_id=self.group_id,
                                         enable_auto_commit=False, auto_offset_reset="earliest")
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        # aiokafka fetches newly assigned partitions while the assignment listener still runs:
        # handling waits for this, or records would fold onto state the restore then replaces.
        self._state_ready = asyncio.Event()

    # --- lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until ``stop()``; on the way out in-flight deliveries finish under a timeout."""
        await self.producer.start()
        await self.sender.start()
        endpoints = LogReader(self.settings.kafka, self.topics.endpoints)
        await endpoints.start()
        feeds: list[asyncio.Task[None]] = []
        try:
            ends = await endpoints.end_offsets()
            feeds.append(asyncio.create_task(follow_raw(endpoints, self.registry.apply, self.registry.positions, self._stop)))
            while not self.registry.positions.caught_up(ends):  # know every endpoint before delivering
                await asyncio.sleep(0.02)
            quarantine = Quarantine(self.producer, self.topics.events_invalid, self.topics.events)
            self.consumer.subscribe([self.topics.events], listener=_Rebalance(self))
            await self.consumer.start()
            tiers = [RetryTier(self.settings, self.topics.retry(d), f"{self.group_id}.retry", self.deliverer.attempt)
                     for d in retry_delays(self.settings)]
            tiers.append(RetryTier(self.settings, self.topics.requests, f"{self.group_id}.requests", self.deliverer.attempt))
            feeds += [asyncio.create_task(tier.run(self._stop)) for tier in tiers]
            log.info("dispatcher running group=%s tiers=%d", self.group_id, len(tiers))
            await self._consume(quarantine)
        finally:
            self._stop.set()
            await self._drain(timeout_s=10)
            if feeds:  # they watch the stop flag; cancel only what has not ended by itself
                await asyncio.wait(feeds, timeout=15)
            for feed in feeds:
                feed.cancel()
            for feed in feeds:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await feed
            with contextlib.suppress(Exception):
                await self._commit()
            await self._close(self.consumer.stop, endpoints.stop, self.sender.stop, self.producer.stop)

    def stop(self) -> None:
        self._stop.set()

    @staticmethod
    async def _close(*closers: Callable[[], Awaitable[None]]) -> None:
        for close in closers:
            with contextlib.suppress(Exception):
                await close()

    async def _drain(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout_s)
        for task in self._tasks:
            task.cancel()

    # --- rebalancing ----------------------------------------------------------------------

    async def on_revoked(self, partitions: set[int]) -> None:
        self._state_ready.clear()
        if self._tasks:  # let in-flight deliveries finish, so their offsets can be committed
            await asyncio.wait(self._tasks, timeout=30)
        with contextlib.suppress(Exception):
            await self._commit()
        self.state.forget(partitions)
        self.offsets.forget(partitions)

    async def on_assigned(self, partitions: list[int]) -> None:
        self._state_ready.clear()
        started = time.perf_counter()
        restored = await self.state.restore(partitions)
        log.info("state restored partitions=%s jobs=%d restore_s=%.2f", partitions, restored, time.perf_counter() - started)
        self._state_ready.set()

    # --- the main loop --------------------------------------------------------------------

    async def _consume(self, quarantine: Quarantine) -> None:
        lag = LagGauge(self.consumer, self.topics.events)
        last_commit = 0.0
        while not self._stop.is_set():
            await lag.update()
            fetched = await self.consumer.getmany(timeout_ms=100, max_records=500)
            for tp, records in fetched.items():
                for raw in records:
                    if not self._state_ready.is_set():
                        await self._state_ready.wait()
                    if tp not in self.consumer.assignment():
                        break  # revoked meanwhile: its new owner (maybe us again) re-reads it
                    await self._handle(to_log_record(raw), quarantine)
            # Committing flushes state writes and costs a round trip: on an interval, as Kafka
            # Streams does, not on every batch (a crash replays at most that much, as duplicates).
            if self._state_ready.is_set() and time.monotonic() - last_commit >= self.options.commit_interval_s:
                await self._commit()
                last_commit = time.monotonic()

    async def _handle(self, record: LogRecord, quarantine: Quarantine) -> None:
        partition, offset = record.position.partition, record.position.offset
        event = record.event
        if event is None:
            await quarantine.put(record)
            self.offsets.skip(partition, offset)
            return
        current = self.state.get(partition, event.subject)
        outcome = apply(current.job if current else None, event)
        deliver = False
        if outcome.verdict is Verdict.ACCEPTED and outcome.job is not None:
            terminal = event.id if outcome.became_terminal else None
            await self.state.put(partition, JobState(outcome.job, offset, terminal))
            deliver = outcome.became_terminal
        elif outcome.verdict is Verdict.DUPLICATE and current is not None and current.terminal_event == event.id:
            deliver = True  # replay of the finishing event after a crash: deliver again, same webhook-id
        if not deliver or outcome.job is None:
            self.offsets.skip(partition, offset)
            return
        self.offsets.start(partition, offset)
        task = asyncio.create_task(self._deliver_event(outcome.job, event.id, partition, offset))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_event(self, job: Job, event_id: str, partition: int, offset: int) -> None:
        event_type, body = job_payload(job)
        text = body.decode()
        now = now_utc()
        deliveries = [Delivery(webhook_id(event_id, e.id), e.id, job.tenant, event_type, event_id, job.id, text, now)
                      for e in self.registry.subscribed(job.tenant, event_type)]
        if await with_retries(lambda: asyncio.gather(*(self.deliverer.attempt(d) for d in deliveries)),
                              f"job_id={job.id} event_id={event_id}"):
            self.offsets.finish(partition, offset)

    async def _commit(self) -> None:
        # A snapshot that cannot be written is fatal (raises): committing past it would lose
        # the job's state, so the process ends and a restart replays from the last commit.
        await self.state.flush()
        committed = await commit_owned(self.consumer, self.topics.events, self.offsets.to_commit())
        if committed:
            self.offsets.committed(committed)
            await self.state.drop_finished(committed)


class RetryTier:
    """Consumes one retry topic (or the API's requests topic); pauses partitions until due."""

    def __init__(self, settings: Settings, topic: str, group_id: str,
                 attempt: Callable[[Delivery], Awaitable[None]]) -> None:
        self.topic = topic
        self._attempt = attempt
        self._consumer = AIOKafkaConsumer(topic, **client_options(settings.kafka), group_id=group_id,
                                          enable_auto_commit=False, auto_offset_reset="earliest")
        self._offsets = OffsetTracker()
        self._paused: dict[TopicPartition, int] = {}  # partition -> due_at_ms of its head
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        lag = LagGauge(self._consumer, self.topic)
        try:
            await self._consumer.start()
            while not stop.is_set():
                await lag.update()
                self._resume_due()
                fetched = await self._consumer.getmany(timeout_ms=100, max_records=500)
                for tp, records in fetched.items():
                    self._take(tp, records)
                await self._commit()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=10)
            await self._commit()
        finally:
            await self._consumer.stop()

    def _take(self, tp: TopicPartition, records: list) -> None:  # type: ignore[type-arg]
        now_ms = time.time() * 1000
        for raw in records:
            try:
                delivery = Delivery.decode(raw.value)
            except (TypeError, ValueError):
                log.warning("invalid delivery record skipped topic=%s offset=%s", self.topic, raw.offset)
                self._offsets.skip(tp.partition, raw.offset)
                continue
            if delivery.due_at_ms > now_ms:
                # Not due: read it again from here once it is; later records are newer still.
                self._consumer.seek(tp, raw.offset)
                self._consumer.pause(tp)
                self._paused[tp] = delivery.due_at_ms
                return
            self._offsets.start(tp.partition, raw.offset)
            task = asyncio.create_task(self._run(delivery, tp.partition, raw.offset))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, delivery: Delivery, partition: int, offset: int) -> None:
        if await with_retries(lambda: self._attempt(delivery), f"delivery_id={delivery.id}"):
            self._offsets.finish(partition, offset)

    def _resume_due(self) -> None:
        now_ms = time.time() * 1000
        for tp, due_ms in list(self._paused.items()):
            if due_ms <= now_ms:
                del self._paused[tp]
                if tp in self._consumer.assignment():
                    self._consumer.resume(tp)

    async def _commit(self) -> None:
        self._offsets.committed(await commit_owned(self._consumer, self.topic, self._offsets.to_commit()))


class LagGauge:
    """Records not yet read on the consumer's partitions, refreshed every few seconds."""

    def __init__(self, consumer: AIOKafkaConsumer, topic: str, every_s: float = 5.0) -> None:
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


STEP_RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 16.0)


async def with_retries(step: Callable[[], Awaitable[object]], what: str) -> bool:
    """Run a delivery step, again after a pause when it fails (the log may be restarting).

    Repeating a step can only duplicate a webhook (same webhook-id), never lose one. After
    the last try the record stays uncommitted, so a restart replays it.
    """
    for delay_s in (*STEP_RETRY_DELAYS_S, None):
        try:
            await step()
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if delay_s is None:
                log.error("delivery step failed for good %s error=%s; replayed after a restart", what, exc)
                return False
            log.warning("delivery step failed %s error=%s; again in %.0fs", what, exc, delay_s)
            await asyncio.sleep(delay_s)
    return False
