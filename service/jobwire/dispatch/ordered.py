"""Deliveries to ordered endpoints (``ordering: "job"``), one at a time per job and endpoint.

The dispatcher that owns a job's partition of ``jobs.events`` owns these deliveries: they wait
in the job's state (``ordered_queue``; durable in ``jobs.state`` before the event's offset is
committed), and their retries stay here instead of travelling on the retry tiers, where any
dispatcher could take them and nobody would know when a job's earlier delivery is final. Each
head goes through the endpoint's lane like any delivery (its in-flight and rate limits, the
tenants' share of the senders); other jobs' heads to the same endpoint go concurrently.

When a head has ended (succeeded, or set aside as a dead letter), the next entry is sent only
once the snapshot without the head is acknowledged: after a kill -9 the restored queue never
sends an earlier delivery after a later one. A retry's next due time is kept in the entry; a
restore arms each head at it. What can still reach a receiver twice is the head itself (sent,
then a crash before its end was recorded), with the same webhook-id, never out of order.

A head goes to its lane only while the lanes are below their low-water mark and the lane has
room (``Lanes.has_room``): heads to a slow endpoint wait in the job's state, not in memory,
and never hold intake for other endpoints. A head ends only once the records its attempt wrote
(an attempt, a dead letter) are acknowledged, so the queue never forgets a delivery whose dead
letter a crash lost. While partitions are being revoked none of their heads is sent.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable, Iterable

from jobwire.clock import SYSTEM, Clock
from jobwire.dispatch.lanes import Lanes, Work
from jobwire.dispatch.ordered_queue import finished, head, heads, retrying
from jobwire.dispatch.outbox import Outbox
from jobwire.dispatch.policy import Outcome
from jobwire.dispatch.state import StateStore
from jobwire.waits import wait_event
from jobwire.webhooks.model import EVENT_TYPES, Delivery
from jobwire.webhooks.registry import EndpointRegistry

log = logging.getLogger(__name__)

#: Longest sleep between checks (a head armed earlier meanwhile wakes the loop at once).
MAX_SLEEP_S = 1.0
#: How soon heads are offered again while the lanes are full or their lane has no room.
FULL_RECHECK_S = 0.05
#: Longest a head waits for room in its lane before it is offered again.
MAX_ROOM_WAIT_S = 1.0

Key = tuple[int, str, str]  # (partition, job id, endpoint id)


class Turn:
    """A head handed to the lanes: how its attempt ended goes back to its queue."""

    __slots__ = ("owner", "key", "delivery_id", "epoch", "work")

    def __init__(self, owner: OrderedDeliveries, key: Key, delivery_id: str, epoch: int, work: Work) -> None:
        self.owner = owner
        self.key = key
        self.delivery_id = delivery_id
        self.work = work
        #: The partition's epoch when it was sent: an end reported after a revocation is not ours.
        self.epoch = epoch

    @property
    def partition(self) -> int:
        return self.key[0]

    def retrying(self, retry: Delivery) -> None:
        """The attempt failed and will be tried again: ``retry`` carries when."""
        self.owner.on_retrying(self, retry)

    def ended(self, outcome: Outcome) -> None:
        self.owner.on_ended(self, outcome)

    def put_back(self) -> None:
        """Taken out of its lane unsent (the lane overflowed): offered again later."""
        self.owner.on_ended(self, None)


class OrderedDeliveries:
    def __init__(self, state: StateStore, lanes: Lanes, registry: EndpointRegistry, outbox: Outbox,
                 epoch: Callable[[int], int], clock: Clock = SYSTEM) -> None:
        self.state = state
        self.lanes = lanes
        self.registry = registry
        self.outbox = outbox
        self.epoch = epoch
        self.clock = clock
        self._heap: list[tuple[int, int, Key]] = []
        self._sequence = itertools.count()
        #: key -> the ready time (ms) of its one valid heap entry
        self._armed: dict[Key, int] = {}
        #: key -> the work of its head handed to the lanes (one per key at most)
        self._in_flight: dict[Key, Work] = {}
        #: partitions being revoked: their heads are not sent (the new owner sends them)
        self._revoking: set[int] = set()
        #: heads whose attempt ended, with how (None: put back unsent), to settle in the loop
        self._ended: list[tuple[Turn, Outcome | None]] = []
        self._wake = asyncio.Event()

    # --- what the intake tells it -----------------------------------------------------------

    def offer(self, partition: int, job_id: str) -> None:
        """The job's queue changed: arm each head that is not armed or in flight yet."""
        job_state = self.state.get(partition, job_id)
        if job_state is None:
            return
        for pending in heads(job_state.ordered):
            self._arm((partition, job_id, pending.endpoint_id), pending.ready_at_ms)

    def restored(self, partitions: Iterable[int]) -> int:
        """Arm the heads of freshly restored partitions; returns how many jobs have any."""
        jobs = 0
        for partition in partitions:
            self._revoking.discard(partition)
            state = self.state.partitions.get(partition)
            for job_id, job_state in list(state.jobs.items()) if state else ():
                if job_state.ordered:
                    jobs += 1
                    self.offer(partition, job_id)
        return jobs

    def revoking(self, partitions: set[int]) -> None:
        """Partitions about to be given up: send none of their heads from now on."""
        self._revoking |= partitions

    def forget(self, partitions: set[int]) -> None:
        """Partitions given up: their heads go with them (the new owner restores them). A head
        still in flight stays counted until its attempt ends (to an epoch that has passed), so
        were the partition handed back meanwhile, its head is not sent twice at once."""
        self._in_flight = {k: w for k, w in self._in_flight.items()
                           if k[0] not in partitions or w in self.lanes.in_flight}
        self._armed = {k: at for k, at in self._armed.items() if k[0] not in partitions}
        self._revoking -= partitions

    def ours(self, work: Work, partitions: set[int]) -> bool:
        return work.turn is not None and work.turn.owner is self and work.turn.partition in partitions

    # --- what the senders tell it -----------------------------------------------------------

    def on_retrying(self, turn: Turn, retry: Delivery) -> None:
        if turn.epoch != self.epoch(turn.partition):
            return
        partition, job_id, _ = turn.key
        job_state = self.state.get(partition, job_id)
        if job_state is not None:
            job_state.ordered = retrying(job_state.ordered, retry)
            self.state.touch(partition, job_id)

    def on_ended(self, turn: Turn, outcome: Outcome | None) -> None:
        self._ended.append((turn, outcome))
        self._wake.set()

    # --- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.settle_ended()
            wait_s = self._send_ready()
            self._wake.clear()
            if self._ended:
                continue
            await wait_event(self._wake, wait_s)

    async def settle_ended(self) -> None:
        """Take ended heads out of their queues; once the snapshots saying so are acknowledged,
        arm the entries after them."""
        ended, self._ended = self._ended, []
        heads_left = any(outcome not in (None, Outcome.RETRYING) for _, outcome in ended)
        if heads_left:
            # Their attempt records and dead letters first: a snapshot without the entry must
            # never outlive a dead letter lost in a crash.
            await self.outbox.flush()
        moved: list[Key] = []
        for turn, outcome in ended:
            if self._in_flight.get(turn.key) is turn.work:
                del self._in_flight[turn.key]
            if turn.epoch != self.epoch(turn.partition):
                # Its partition was revoked meanwhile: the new owner has it (perhaps this
                # process again, whose restored head waited for this attempt to end).
                moved.append(turn.key)
                continue
            partition, job_id, endpoint_id = turn.key
            job_state = self.state.get(partition, job_id)
            if job_state is None:
                continue
            if outcome is None or outcome is Outcome.RETRYING:
                moved.append(turn.key)  # the same head, again at its due time
                continue
            pending = head(job_state.ordered, endpoint_id)
            if pending is None or pending.id != turn.delivery_id:
                continue
            job_state.ordered = finished(job_state.ordered, pending.id)
            if pending.event_type in EVENT_TYPES and job_state.terminal_event == pending.event_id:
                # As for any terminal delivery: a replay of the finishing record skips it.
                job_state.settled = job_state.settled | {endpoint_id}
            self.state.touch(partition, job_id)
            moved.append(turn.key)
        if heads_left:
            await self.state.write_changed()
            await self.outbox.flush()
        for partition, job_id, endpoint_id in moved:
            job_state = self.state.get(partition, job_id)
            pending = head(job_state.ordered, endpoint_id) if job_state is not None else None
            if pending is not None:
                self._arm((partition, job_id, endpoint_id), pending.ready_at_ms)

    def _arm(self, key: Key, ready_at_ms: int) -> None:
        if key in self._in_flight or key[0] in self._revoking:
            return
        armed = self._armed.get(key)
        if armed is not None and armed <= ready_at_ms:
            return
        self._armed[key] = ready_at_ms
        heapq.heappush(self._heap, (ready_at_ms, next(self._sequence), key))
        if self._heap[0][2] == key:
            self._wake.set()

    def _send_ready(self) -> float:
        """Hand every head that is ready to its lane; returns how long to sleep."""
        now_ms = int(self.clock.time() * 1000)
        while self._heap and self._heap[0][0] <= now_ms:
            if not self.lanes.drained:
                return FULL_RECHECK_S  # intake's share of the bound stays free
            ready_at_ms, _, key = heapq.heappop(self._heap)
            if self._armed.get(key) != ready_at_ms:
                continue  # superseded, sent, or its partition given up
            del self._armed[key]
            self._send(key, now_ms)
        if len(self._heap) > 2 * len(self._armed) + 1024:
            self._heap = [(at, next(self._sequence), key) for key, at in self._armed.items()]
            heapq.heapify(self._heap)
        if not self._heap:
            return MAX_SLEEP_S
        return min(MAX_SLEEP_S, max(0.0, (self._heap[0][0] - now_ms) / 1000))

    def _send(self, key: Key, now_ms: int) -> None:
        partition, job_id, endpoint_id = key
        job_state = self.state.get(partition, job_id)
        pending = head(job_state.ordered, endpoint_id) if job_state is not None else None
        if job_state is None or pending is None or key in self._in_flight or partition in self._revoking:
            return
        if pending.ready_at_ms > now_ms:  # a retry armed before its due time was known
            self._arm(key, pending.ready_at_ms)
            return
        if not self.lanes.has_room(endpoint_id):
            # The endpoint is slower than its queue: the head waits in the job's state.
            wait_s = min(MAX_ROOM_WAIT_S, max(FULL_RECHECK_S, self.lanes.drain_s(endpoint_id)))
            self._arm(key, now_ms + int(wait_s * 1000))
            return
        endpoint = self.registry.endpoints.get(endpoint_id)
        work = Work(pending.delivery(job_state.job), None)
        work.turn = Turn(self, key, pending.id, self.epoch(partition), work)
        self._in_flight[key] = work
        self.lanes.push(work, endpoint.rate_limit_per_s if endpoint else None)
