"""Per-endpoint queues ("lanes") served fairly by a fixed pool of senders, under one memory bound.

Each endpoint has its own queue, in-flight limit and rate limit. A sender takes work only from
a lane that has work, a free slot and a token, round robin over such lanes, so a slow,
rate-limited or failing endpoint occupies at most its own slots and never a shared permit.
Nothing here sleeps on behalf of an endpoint: a rate-limited lane is set aside until its next
token and the senders serve other lanes meanwhile.

The whole structure counts what it holds (deliveries queued plus in flight, and their bytes);
consumers stop reading while it is ``full`` and start again once it is ``drained`` below the
low-water mark. A lane whose own queue is full refuses more (``has_room``): the caller parks
the delivery durably on the retry path instead of holding it. A lane is full when its endpoint
is slow, not when the dispatcher is: while the process is busy on the CPU (``busy``) and the
lane's attempts take no longer than everyone's, its queue waits under the global bound, since
parking it would only add work to a process that has none to spare.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobwire.clock import SYSTEM, Clock
from jobwire.dispatch.copies import Step
from jobwire.offsets import OffsetTracker
from jobwire.webhooks.model import Delivery

if TYPE_CHECKING:
    from jobwire.dispatch.ordered import Turn

#: Longest a delivery should wait in memory for its endpoint: a lane whose queue would take
#: longer to work off has no room, and further deliveries are parked. Queued deliveries hold
#: their record's offset, so this also bounds how long one endpoint holds the commit watermark.
LANE_WAIT_S = 5.0
#: Slowest rate limit honoured: one request per 10 s (a lower configured rate is raised to it).
MIN_RATE_PER_S = 0.1
TOKEN_EPSILON = 1e-9
#: Shortest wait for a token: a timer for less would wake the lane for nothing.
MIN_TOKEN_WAIT_S = 0.001
#: While the dispatcher is busy, a lane whose pace (its attempts' time over its slots, or its
#: rate limit) is more than this many times the typical attempt's is slow by its endpoint's
#: doing, and parks what it cannot work off in time.
SLOWER_THAN_TYPICAL = 2.0
#: Longest a lane holds work in memory even at the dispatcher's own pace: past it, the excess
#: is parked whatever the reason, so the commit watermark and a restart's replay stay bounded.
HELD_WAIT_S = 6 * LANE_WAIT_S
#: Weight of each attempt in the typical attempt's time (an average over the last ~50).
TYPICAL_WEIGHT = 0.02


def _never() -> bool:
    return False


class Source:
    """The consumed record some deliveries came from: its offset is finished when all settle."""

    __slots__ = ("tracker", "partition", "offset", "remaining", "epoch", "on_settled")

    def __init__(self, tracker: OffsetTracker, partition: int, offset: int, deliveries: int,
                 epoch: int | None = None, on_settled: Callable[[Delivery], None] | None = None) -> None:
        self.tracker = tracker
        #: Told of each delivery as it settles (the intake notes it in the job's state, so a
        #: replay after a crash does not send it again).
        self.on_settled = on_settled
        self.partition = partition
        self.offset = offset
        self.remaining = deliveries
        # The partition's epoch when the record was read: if it was revoked since, settling
        # must not finish an offset its new life is re-doing.
        self.epoch = tracker.epoch(partition) if epoch is None else epoch
        tracker.start(partition, offset, self.epoch)

    def settle(self, delivery: Delivery) -> None:
        """One delivery's next step is written (or it succeeded): it no longer needs the record."""
        if self.on_settled is not None and self.tracker.epoch(self.partition) == self.epoch:
            self.on_settled(delivery)
        self.remaining -= 1
        if self.remaining == 0:
            self.tracker.finish(self.partition, self.offset, self.epoch)


@dataclass(slots=True, eq=False)
class Work:
    delivery: Delivery
    #: The record it came from; None for the head of an ordered queue, which has ``turn``.
    source: Source | None
    #: The step of the record it came from (``copies``): its next record names the next step.
    step: Step = Step()
    enqueued_at: float = 0.0  # set by ``Lanes.push``, on the lanes' clock
    started_at: float = 0.0
    #: An ordered endpoint's head (``ordered``): its end goes back to the job's queue.
    turn: Turn | None = None

    def from_records_of(self, tracker: OffsetTracker, partitions: set[int]) -> bool:
        """It came from a record of ``partitions`` read through ``tracker``."""
        return self.source is not None and self.source.tracker is tracker and self.source.partition in partitions

    @property
    def size(self) -> int:
        return len(self.delivery.body) + 512


class Lane:
    __slots__ = ("endpoint_id", "tenant", "queue", "in_flight", "rate", "tokens", "stamp", "listed", "latency")

    def __init__(self, endpoint_id: str, tenant: str, now: float) -> None:
        self.endpoint_id = endpoint_id
        self.tenant = tenant
        self.queue: deque[Work] = deque()
        self.in_flight = 0
        self.rate: float | None = None
        self.tokens = 1.0
        self.stamp = now
        self.listed = False  # in the ready ring or the timer heap
        # Seconds an attempt takes, smoothed (None until one ended): with the in-flight limit
        # (and the rate limit) it says how fast the queue can drain.
        self.latency: float | None = None

    def refill(self, now: float) -> None:
        if self.rate is not None:
            burst = max(self.rate, 1.0)
            self.tokens = min(burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    @property
    def has_token(self) -> bool:
        # Within rounding of a whole token counts as one: refills of a few ulps at a time
        # would otherwise never reach 1.0 and the lane would wake itself for ever (the
        # simulation's virtual clock found it).
        return self.tokens >= 1 - TOKEN_EPSILON

    def next_token_in(self) -> float:
        assert self.rate is not None
        return max(MIN_TOKEN_WAIT_S, (1 - self.tokens) / self.rate)


class Lanes:
    def __init__(self, *, in_flight_per_endpoint: int, queue_per_endpoint: int, max_deliveries: int,
                 max_bytes: int, low_water: float = 0.5, senders: int | None = None, clock: Clock = SYSTEM,
                 busy: Callable[[], bool] = _never) -> None:
        self.clock = clock
        #: Whether the process is busy on the CPU (saturation.CpuLoad): its lanes' paces are its own.
        self.busy = busy
        #: How long an attempt typically takes, over every lane's recent attempts.
        self.typical_latency: float | None = None
        #: The senders taking work: a tenant holds at most its share of them (all of them over
        #: the tenants with work) while another tenant's work is ready. None: no tenant share.
        self.senders = senders
        self._tenant_work: dict[str, int] = {}  # tenant -> deliveries queued and in flight
        self._tenant_in_flight: dict[str, int] = {}
        self.in_flight_per_endpoint = in_flight_per_endpoint
        self.queue_per_endpoint = queue_per_endpoint
        self.max_deliveries = max_deliveries
        self.max_bytes = max_bytes
        self.low_water = low_water
        self.lanes: dict[str, Lane] = {}
        self.deliveries = 0  # queued + in flight
        self.in_flight: set[Work] = set()
        self.bytes = 0
        self._ready: deque[Lane] = deque()
        self._timed: list[tuple[float, int, Lane]] = []
        self._sequence = itertools.count()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._closed = False

    # --- bounds -----------------------------------------------------------------------------

    @property
    def full(self) -> bool:
        return self.deliveries >= self.max_deliveries or self.bytes >= self.max_bytes

    @property
    def drained(self) -> bool:
        """Below the low-water mark: paused consumers may read again."""
        return (self.deliveries <= self.max_deliveries * self.low_water
                and self.bytes <= self.max_bytes * self.low_water)

    def room(self) -> int:
        """How many more deliveries fit before ``full``."""
        return max(0, self.max_deliveries - self.deliveries)

    def has_room(self, endpoint_id: str) -> bool:
        """The endpoint's queue takes more: under its size limit, and (once its pace is known
        and it holds more than a few slots' worth) workable within ``LANE_WAIT_S``."""
        lane = self.lanes.get(endpoint_id)
        if lane is None:
            return True
        queued = len(lane.queue)
        if queued >= self.queue_per_endpoint:
            return False
        # Until an attempt has ended its pace is unknown: take work (``overflow`` gives back
        # what turns out to be too much once the pace is known).
        if queued < self.in_flight_per_endpoint or lane.latency is None:
            return True
        drain_s = self.drain_s(endpoint_id)
        return drain_s <= LANE_WAIT_S or drain_s <= self._holds_s(lane)

    def _holds_s(self, lane: Lane) -> float:
        """How much of its work (in seconds at its pace) a lane holds in memory: more than
        ``LANE_WAIT_S`` only at the dispatcher's own pace, and only while its tenant holds no
        more than its share of the bound (the bound over the tenants with work), so that one
        tenant's held backlog never pauses the intake for the others."""
        if len(self._tenant_work) > 1 and \
                self._tenant_work.get(lane.tenant, 0) * len(self._tenant_work) > self.max_deliveries:
            return LANE_WAIT_S
        return HELD_WAIT_S if self._paced_by_us(lane) else LANE_WAIT_S

    def _paced_by_us(self, lane: Lane) -> bool:
        """The lane drains as fast as the dispatcher serves anyone: the process is busy and the
        lane's pace (a rate limit included) is no slower than the typical attempt's, so it is
        the dispatcher's own pace, not its endpoint's."""
        typical = self.typical_latency
        return (typical is not None and lane.latency is not None
                and self._interval(lane) * self.in_flight_per_endpoint <= SLOWER_THAN_TYPICAL * typical
                and self.busy())

    def drain_s(self, endpoint_id: str, more: int = 0) -> float:
        """Roughly how long the endpoint needs to work off its queue plus ``more`` deliveries."""
        lane = self.lanes.get(endpoint_id)
        if lane is None:
            return 0.0
        return (len(lane.queue) + more) * self._interval(lane)

    def _interval(self, lane: Lane) -> float:
        """Seconds between attempts the lane can sustain: its slots over its latency, or its rate."""
        if lane.latency is None:
            return 0.0
        interval = lane.latency / self.in_flight_per_endpoint
        return max(interval, 1 / lane.rate) if lane.rate is not None else interval

    # --- feeding ----------------------------------------------------------------------------

    def push(self, work: Work, rate_limit_per_s: float | None) -> None:
        endpoint_id = work.delivery.endpoint_id
        lane = self.lanes.get(endpoint_id)
        if lane is None:
            lane = self.lanes[endpoint_id] = Lane(endpoint_id, work.delivery.tenant, self.clock.monotonic())
        rate = max(rate_limit_per_s, MIN_RATE_PER_S) if rate_limit_per_s else None
        if rate != lane.rate:
            lane.refill(self.clock.monotonic())
            lane.rate = rate
        work.enqueued_at = self.clock.monotonic()
        lane.queue.append(work)
        self.deliveries += 1
        self.bytes += work.size
        self._count(lane.tenant, 1)
        self._consider(lane)

    def overflow(self, lane: Lane) -> list[Work]:
        """The newest queued work beyond what ``lane`` works off in ``LANE_WAIT_S`` (or
        ``HELD_WAIT_S`` when its pace is the dispatcher's) at its measured pace, taken out, once
        it holds twice that: the caller parks it. A burst taken in before the endpoint
        showed it is slow does not stay in memory holding the commit watermark."""
        drain_s = self.drain_s(lane.endpoint_id)
        if lane.latency is None or drain_s <= 2 * LANE_WAIT_S:
            return []
        holds_s = self._holds_s(lane)
        if drain_s <= 2 * holds_s:
            return []
        keep = max(self.in_flight_per_endpoint, int(holds_s / max(self._interval(lane), 1e-6)))
        spilled = []
        while len(lane.queue) > keep:
            work = lane.queue.pop()
            self.deliveries -= 1
            self.bytes -= work.size
            self._count(lane.tenant, -1)
            spilled.append(work)
        spilled.reverse()
        return spilled

    def drop(self, doomed: Callable[[Work], bool]) -> list[Work]:
        """Remove queued (not in-flight) work matching ``doomed``; returns it."""
        removed: list[Work] = []
        for lane in self.lanes.values():
            kept: deque[Work] = deque()
            before = len(removed)
            for work in lane.queue:
                (removed if doomed(work) else kept).append(work)
            lane.queue = kept
            if len(removed) > before:
                self._count(lane.tenant, before - len(removed))
        for work in removed:
            self.deliveries -= 1
            self.bytes -= work.size
        return removed

    def _count(self, tenant: str, change: int) -> None:
        _adjust(self._tenant_work, tenant, change)

    def _over_share(self, tenant: str) -> bool:
        if self.senders is None or len(self._tenant_work) < 2:
            return False
        share = max(1, self.senders // len(self._tenant_work))
        return self._tenant_in_flight.get(tenant, 0) >= share

    # --- serving ----------------------------------------------------------------------------

    def close(self) -> None:
        """Hand out no more work (shutting down): what is queued stays unsent and uncommitted."""
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def take(self) -> tuple[Lane, Work]:
        """The next delivery to attempt, fairly across tenants, then across their endpoints;
        waits while there is none."""
        while True:
            if self._closed:
                await asyncio.get_running_loop().create_future()  # until cancelled
            self._release_timed(self.clock.monotonic())
            # Lanes of tenants holding their share of the senders wait while another tenant's
            # lane is ready; when only theirs are, the first is served (no sender stays idle).
            over_share: list[Lane] = []
            while self._ready:
                lane = self._ready.popleft()
                lane.listed = False
                now = self.clock.monotonic()
                lane.refill(now)
                if not lane.queue or lane.in_flight >= self.in_flight_per_endpoint:
                    continue
                if lane.rate is not None and not lane.has_token:
                    self._consider(lane)
                    continue
                if self._over_share(lane.tenant):
                    over_share.append(lane)
                    continue
                self._requeue_front(over_share)
                return self._start(lane, now)
            if over_share:
                lane = over_share.pop(0)
                self._requeue_front(over_share)
                return self._start(lane, self.clock.monotonic())
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()

    def _requeue_front(self, lanes: list[Lane]) -> None:
        for lane in reversed(lanes):
            lane.listed = True
            self._ready.appendleft(lane)

    def _start(self, lane: Lane, now: float) -> tuple[Lane, Work]:
        if lane.rate is not None:
            lane.tokens = max(0.0, lane.tokens - 1)
        work = lane.queue.popleft()
        work.started_at = now
        lane.in_flight += 1
        _adjust(self._tenant_in_flight, lane.tenant, 1)
        self.in_flight.add(work)
        self._consider(lane)  # back of the ring: the next endpoint goes first
        if self._ready:
            self._wake_one()  # more is ready than this sender takes: pass it on
        return lane, work

    def release(self, lane: Lane, work: Work) -> None:
        """An attempt ended (whatever its outcome): frees its slot and its share of the bound."""
        lane.in_flight -= 1
        _adjust(self._tenant_in_flight, lane.tenant, -1)
        self.in_flight.discard(work)
        self.deliveries -= 1
        self.bytes -= work.size
        self._count(lane.tenant, -1)
        took = self.clock.monotonic() - work.started_at
        lane.latency = took if lane.latency is None else 0.8 * lane.latency + 0.2 * took
        typical = self.typical_latency
        self.typical_latency = took if typical is None else typical + TYPICAL_WEIGHT * (took - typical)
        if not lane.queue and not lane.in_flight and not lane.listed and lane.rate is None:
            # Idle lanes go (endpoints come and go); a rate-limited one stays, since its tokens
            # are what enforces the rate across bursts.
            del self.lanes[lane.endpoint_id]
            return
        self._consider(lane)

    def _consider(self, lane: Lane) -> None:
        """List ``lane`` where it belongs: ready now, ready at its next token, or nowhere."""
        if lane.listed or not lane.queue or lane.in_flight >= self.in_flight_per_endpoint:
            return
        lane.listed = True
        if lane.rate is not None:
            lane.refill(self.clock.monotonic())
            if not lane.has_token:
                at = self.clock.monotonic() + lane.next_token_in()
                heapq.heappush(self._timed, (at, next(self._sequence), lane))
                self._arm(at)
                return
        self._ready.append(lane)
        self._wake_one()

    def _release_timed(self, now: float) -> None:
        while self._timed and self._timed[0][0] <= now:
            _, _, lane = heapq.heappop(self._timed)
            self._ready.append(lane)

    def _arm(self, at: float) -> None:
        if at >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = at
        self._timer = loop.call_at(loop.time() + max(0.0, at - self.clock.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        now = self.clock.monotonic()
        before = len(self._ready)
        self._release_timed(now)
        for _ in range(len(self._ready) - before):
            self._wake_one()
        if self._timed:
            self._arm(self._timed[0][0])

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # --- observing --------------------------------------------------------------------------

    def busiest(self, count: int) -> Iterator[tuple[str, int, float]]:
        """(endpoint id, queued, age of the oldest queued in s) of the ``count`` deepest lanes."""
        now = self.clock.monotonic()
        deepest = heapq.nlargest(count, self.lanes.values(), key=lambda lane: len(lane.queue))
        for lane in deepest:
            oldest = now - lane.queue[0].enqueued_at if lane.queue else 0.0
            yield lane.endpoint_id, len(lane.queue), oldest


def _adjust(counts: dict[str, int], tenant: str, change: int) -> None:
    """Change a per-tenant count; a tenant whose count falls to 0 leaves the table (its size is
    the number of tenants with work)."""
    left = counts.get(tenant, 0) + change
    if left:
        counts[tenant] = left
    else:
        counts.pop(tenant, None)
