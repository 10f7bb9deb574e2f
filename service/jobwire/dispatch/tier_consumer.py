"""Consumers of the retry tiers (``webhooks.retry.<delay>``) and of the requests topic (the tier of
delay 0: test events, manual retries, recoveries and parked deliveries).

A tier's records are in due order (``policy``), so a partition waits, paused, for its head
record to be due; records wait in Kafka, not in memory. A due record whose endpoint has no room
or whose Retry-After has not passed hops onward (``policy.on_read``) instead of holding the
partition. A record is committed only after its next step is durable; one that does not decode
is copied to the tier's ``.invalid`` companion with the reason and skipped.

Copies of a record written twice by a replay are skipped (``copies``).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from jobwire import tracing
from jobwire.clock import SYSTEM, Clock
from jobwire.dispatch.consuming import ConsumerLoop, Rebalance, Records
from jobwire.dispatch.copies import Claims, Step
from jobwire.dispatch.deliverer import Deliverer, tier_topic
from jobwire.dispatch.lanes import Lanes, Source, Work
from jobwire.dispatch.outbox import Outbox
from jobwire.dispatch.policy import Route, Tiers, on_read
from jobwire.kafka.codecs import undecodable
from jobwire.kafka.consumers import Consumer, TopicPartition
from jobwire.kafka.quarantine import Quarantine
from jobwire.metrics import COPIES_DROPPED, HOPS
from jobwire.positions import Position
from jobwire.webhooks.model import Delivery
from jobwire.webhooks.registry import EndpointRegistry

log = logging.getLogger(__name__)

MAX_TRACKED_HOPS = 10_000
#: How long the broker may hold a retry tier's idle fetch: a partition resumed when its head
#: falls due waits for the fetch parked there to expire, so this is a share of the tier's delay
#: (a 5 s retry is at most 50 ms late), between these bounds. Records written to a tier end a
#: parked fetch at once. Polling every tier as often as the intake (20 ms) was about 4 % of a
#: core in an idle dispatcher and 2 % in the broker.
TIER_FETCH_WAIT_SHARE = 0.01
TIER_FETCH_WAIT_MS = (50, 500)


def tier_fetch_wait_ms(tier_s: float, least_ms: int) -> int:
    """The fetch wait of the tier of delay ``tier_s``, never under ``least_ms`` (the operator's
    KAFKA_FETCH_MAX_WAIT_MS), which the requests topic (delay 0: test events, manual retries,
    parked deliveries) keeps as it is, as prompt as the intake."""
    if tier_s <= 0:
        return least_ms
    low, high = TIER_FETCH_WAIT_MS
    return max(least_ms, min(high, max(low, int(tier_s * 1000 * TIER_FETCH_WAIT_SHARE))))


class TierConsumer(ConsumerLoop):
    def __init__(self, consumer: Consumer, topic: str, tier_s: float, *, tiers: Tiers, lanes: Lanes,
                 registry: EndpointRegistry, deliverer: Deliverer, quarantine: Quarantine, outbox: Outbox,
                 commit_interval_s: float, clock: Clock = SYSTEM) -> None:
        super().__init__(consumer, topic, lanes=lanes, outbox=outbox, commit_interval_s=commit_interval_s,
                         clock=clock)
        self.tier_s = tier_s
        self.tiers = tiers
        self.registry = registry
        self.deliverer = deliverer
        self.quarantine = quarantine
        self.listener = Rebalance(self.on_revoked)
        self._waiting: dict[TopicPartition, int] = {}  # partition -> due time (ms) of its head
        # Per endpoint, deliveries hopped onward since it last had room: they queue up behind
        # its lane, so each next one hops further (the backlog spreads over the tiers in order).
        self._hopped: dict[str, int] = {}
        self._claims = Claims()

    async def before_fetch(self) -> None:
        self._hold()

    def _hold(self) -> None:
        now_ms = self.clock.time() * 1000
        for tp, due_ms in list(self._waiting.items()):
            if due_ms <= now_ms:
                del self._waiting[tp]
        self.flow(set(self._waiting))

    async def take(self, tp: TopicPartition, records: Records, epoch: int) -> int | None:
        now_ms = int(self.clock.time() * 1000)
        for raw in records:
            if not self.owns(tp, epoch):
                return None  # revoked meanwhile (maybe handed back): the rest is read again
            try:
                skipped_batch = undecodable(raw.headers)
                if skipped_batch is not None:
                    raise ValueError(skipped_batch)
                delivery = Delivery.decode(raw.value or b"")
                traced = tracing.traceparent_of(raw.headers)
                if traced is not None:
                    delivery = replace(delivery, traceparent=traced)
            except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, it is set aside
                await self.quarantine.put_raw(raw.key, raw.value, Position(raw.partition, raw.offset),
                                              f"not a delivery record: {type(exc).__name__}: {exc}",
                                              tuple(raw.headers or ()))
                self.tracker.skip(raw.partition, raw.offset, epoch)
                continue
            step_read = Step.read(raw.headers, delivery, f"{self.topic}:{raw.partition}:{raw.offset}")
            record = step_read.identity(delivery)
            if not step_read.origin and self._claims.is_copy(tp.partition, record):
                COPIES_DROPPED.inc()
                self.tracker.skip(raw.partition, raw.offset, epoch)
                continue
            endpoint_id = delivery.endpoint_id
            # A writer's clock running ahead must not hold the partition: no record waits
            # longer than its tier's delay after it was written.
            due_ms = min(delivery.due_at_ms, raw.timestamp + int(self.tier_s * 1000)) if raw.timestamp > 0 \
                else delivery.due_at_ms
            step = on_read(self.tiers, self.tier_s, due_ms, delivery.not_before_ms, now_ms=now_ms,
                           has_room=self.lanes.has_room(endpoint_id),
                           drain_s=self.lanes.drain_s(endpoint_id, self._hopped.get(endpoint_id, 0)))
            if step.route is Route.WAIT or (step.route is Route.TAKE and self.lanes.full):
                # Read it again from here: once due, or once the lanes have room.
                if step.route is Route.WAIT:
                    self._waiting[tp] = step.due_at_ms
                    self._hold()
                return raw.offset
            self._claims.claim(tp.partition, record)
            if step.route is Route.HOP:
                held_back = delivery.not_before_ms > now_ms
                if not held_back:
                    if len(self._hopped) >= MAX_TRACKED_HOPS:
                        self._hopped.clear()  # a bound, not a loss: the estimates start again
                    self._hopped[endpoint_id] = self._hopped.get(endpoint_id, 0) + 1
                await self._hop(delivery, step_read.moved(), step.tier_s, step.due_at_ms,
                                "retry_after" if held_back else "endpoint_full")
                self.tracker.skip(raw.partition, raw.offset, epoch)
                continue
            self._hopped.pop(endpoint_id, None)
            endpoint = self.registry.endpoints.get(endpoint_id)
            source = Source(self.tracker, raw.partition, raw.offset, 1, epoch)
            self.lanes.push(Work(delivery, source, step_read), endpoint.rate_limit_per_s if endpoint else None)
        return None

    async def _hop(self, delivery: Delivery, moved: Step, tier_s: float, due_at_ms: int, reason: str) -> None:
        HOPS.labels(reason=reason).inc()
        with tracing.span("webhook hop", parent=delivery.traceparent,
                          attributes={"jobwire.delivery.id": delivery.id, "jobwire.endpoint.id": delivery.endpoint_id,
                                      "jobwire.hop.reason": reason, "jobwire.hop.tier_s": tier_s}):
            await self.outbox.send(tier_topic(self.deliverer.topics, tier_s), delivery.endpoint_id,
                                   replace(delivery, due_at_ms=due_at_ms).encode(),
                                   headers=[*moved.headers(), *tracing.record_headers(delivery.traceparent)])

    async def on_revoked(self, partitions: set[int]) -> None:
        self.lanes.drop(lambda w: w.from_records_of(self.tracker, partitions))
        await self.commit_on_revocation(partitions)
        self.tracker.forget(partitions)
        self._hopped.clear()
        self._claims.forget(partitions)
        for tp in [tp for tp in self._waiting if tp.partition in partitions]:
            del self._waiting[tp]
