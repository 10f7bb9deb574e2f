"""The dispatcher's consumer of ``jobs.events``: fold, snapshot, and hand terminal jobs' deliveries
to the endpoint lanes (or park them when their endpoint's queue is full).

A jobs.events offset is committed only after the job's snapshot is acknowledged in
``jobs.state`` and every delivery born from the record succeeded or was durably written onward
(retry tier, requests topic, dead letters): the ``OffsetTracker`` watermark, flushed through the
outbox before each commit. A replayed terminal event is recognised through the snapshot and
delivered again with the same ``webhook-id``.

No record can stop it: one that does not decode, or fails anywhere in fold, encoding or routing,
is copied to ``jobs.events.invalid`` with the reason and skipped.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from jobwire import tracing
from jobwire.binding import decode_record
from jobwire.clock import SYSTEM, Clock, utc_now
from jobwire.dispatch.consuming import ConsumerLoop, Rebalance, Records
from jobwire.dispatch.copies import Step
from jobwire.dispatch.deliverer import Deliverer
from jobwire.dispatch.lanes import Lanes, Source, Work
from jobwire.dispatch.ordered import OrderedDeliveries
from jobwire.dispatch.ordered_queue import ORDERED, Pending, Queue, enqueue
from jobwire.dispatch.outbox import MAX_RECORD_BYTES, Outbox
from jobwire.dispatch.state import JobState, StateStore
from jobwire.dispatch.timers import Timers
from jobwire.errors import InvalidEvent, JobwireError, LogError
from jobwire.events import HEARTBEAT, Event
from jobwire.kafka.codecs import undecodable
from jobwire.kafka.consumers import Consumer, ConsumerRecord, TopicPartition
from jobwire.kafka.quarantine import Quarantine
from jobwire.lifecycle import Job, Status, Verdict, apply
from jobwire.metrics import PARKED
from jobwire.positions import Position
from jobwire.task import MAX_TASK_BYTES
from jobwire.timeutil import canonical
from jobwire.webhooks import callbacks
from jobwire.webhooks.model import Delivery, job_payload, notice_payload, webhook_id
from jobwire.webhooks.notices import LIFECYCLE_TYPES, MAX_UNSETTLED, PROGRESS, STARTED, notice_for
from jobwire.webhooks.registry import EndpointRegistry

log = logging.getLogger(__name__)

REVOKE_GRACE_S = 10.0
#: Coalescing of task.progress webhooks: at most one per job per this many seconds.
DEFAULT_PROGRESS_INTERVAL_S = 5.0


class PayloadTooLarge(JobwireError):
    pass


class EventIntake(ConsumerLoop):
    def __init__(self, consumer: Consumer, topic: str, *, state: StateStore, registry: EndpointRegistry,
                 lanes: Lanes, deliverer: Deliverer, quarantine: Quarantine, outbox: Outbox,
                 timers: Timers, commit_interval_s: float, clock: Clock = SYSTEM,
                 progress_interval_s: float = DEFAULT_PROGRESS_INTERVAL_S) -> None:
        super().__init__(consumer, topic, lanes=lanes, outbox=outbox, commit_interval_s=commit_interval_s,
                         clock=clock)
        self.state = state
        self.registry = registry
        self.deliverer = deliverer
        self.quarantine = quarantine
        self.timers = timers
        self.progress_interval_s = progress_interval_s
        #: partition -> unix seconds of a fetch after which every record up to it was handled:
        #: the moment this dispatcher has seen that partition's log through (deadlines wait for it).
        self.read_through: dict[int, float] = {}
        self.listener = Rebalance(self.on_revoked, self.on_assigned)
        # aiokafka fetches newly assigned partitions while the assignment listener still runs:
        # handling waits for this, or records would fold onto state the restore then replaces.
        self._state_ready = asyncio.Event()
        # aiokafka logs and swallows a listener's exception; a failed restore must end the run.
        self._restore_failed: BaseException | None = None
        #: Deliveries to ordered endpoints: queued in the job's state, sent from there.
        self.ordered = OrderedDeliveries(state, lanes, registry, outbox, self.tracker.epoch, clock)

    # --- the loop ---------------------------------------------------------------------------

    async def before_fetch(self) -> None:
        self._check_restore()
        self.flow()

    async def before_partition(self) -> None:
        if not self._state_ready.is_set():
            await self._state_ready.wait()
        self._check_restore()

    async def take(self, tp: TopicPartition, records: Records, epoch: int) -> int | None:
        for raw in records:
            if not self.owns(tp, epoch):
                return None
            if self.lanes.full or not self._state_ready.is_set():
                # Fan-out filled the lanes mid-batch, or a revocation began: read the rest later.
                return raw.offset
            await self._handle(raw, epoch)
        return None

    async def after_fetch(self) -> None:
        await self._note_read_through()

    def may_commit(self) -> bool:
        return self._state_ready.is_set()

    async def _note_read_through(self) -> None:
        # A copy: a rebalance during an await below changes the assignment under it.
        for tp in list(self.consumer.assignment()):
            highwater, polled_ms = self.consumer.highwater(tp), self.consumer.last_poll_timestamp(tp)
            if tp.topic != self.topic or highwater is None or polled_ms is None:
                continue
            try:
                position = await self.consumer.position(tp)
            except Exception:  # noqa: BLE001 - revoked meanwhile (aiokafka's IllegalStateError): not ours now
                continue
            if position >= highwater and tp in self.consumer.assignment():
                self.read_through[tp.partition] = polled_ms / 1000

    def _check_restore(self) -> None:
        if self._restore_failed is not None:
            raise LogError(f"restoring {self.state.topic} failed: {self._restore_failed}") from self._restore_failed

    async def before_flush(self) -> None:
        # After the offsets are read: every snapshot changed by a record below them is written
        # (or being written by the periodic pass, which this waits for), so the flush covers it.
        await self.state.write_changed()

    async def commit_once(self) -> dict[int, int]:
        committed = await super().commit_once()
        if committed:
            await self.state.drop_finished(committed, now=self.clock.time())
        return committed

    # --- one record -------------------------------------------------------------------------

    async def _handle(self, raw: ConsumerRecord[bytes, bytes], epoch: int) -> None:
        """One record. While tracing is on, a record that makes webhooks gets a ``dispatch`` span
        in the job's trace (linked to the record's own, a cancel request's say), and its webhooks
        carry that span's context; while off, they carry the record's, passed on."""
        partition, offset = raw.partition, raw.offset
        skipped_batch = undecodable(raw.headers)
        if skipped_batch is not None:
            await self._set_aside(raw, skipped_batch, epoch)
            return
        record_trace = tracing.traceparent_of(raw.headers)
        trace, deliveries = None, []
        try:
            event = decode_record(raw.value, raw.headers or ())
            trace = self._dispatch_span(raw, event, record_trace)
            deliveries = await self._fold(partition, offset, event, trace, record_trace)
            if not deliveries:
                self.tracker.skip(partition, offset, epoch)
                return
        except (InvalidEvent, PayloadTooLarge) as exc:
            await self._set_aside(raw, str(exc), epoch)
            return
        except LogError:
            raise  # the log itself failed: fatal, a restart replays from the last commit
        except Exception as exc:  # noqa: BLE001 - any record-specific failure is set aside, never fatal
            log.exception("record handling failed topic=%s position=%d:%d", self.topic, partition, offset)
            await self._set_aside(raw, f"handling failed: {type(exc).__name__}: {exc}", epoch)
            return
        finally:
            if trace is not None and not deliveries:
                trace.end()
        traceparent = trace.traceparent()
        if traceparent is not None:
            deliveries = [replace(d, traceparent=traceparent) for d in deliveries]
        if deliveries[0].event_type in LIFECYCLE_TYPES:
            remaining = [len(deliveries)]

            def settled(delivery: Delivery) -> None:
                remaining[0] -= 1
                if remaining[0] == 0:
                    self.state.notices_settled(partition, delivery.job_id or "", offset)
        else:
            def settled(delivery: Delivery) -> None:
                self.state.settled(partition, delivery.job_id or "", delivery.endpoint_id)
        source = Source(self.tracker, partition, offset, len(deliveries), epoch, on_settled=settled)
        try:
            for delivery in deliveries:
                await self.route(delivery, source)
        finally:
            trace.end()

    def _dispatch_span(self, raw: ConsumerRecord[bytes, bytes], event: Event,
                       record_trace: str | None) -> tracing.Deferred:
        if not tracing.enabled():
            return tracing.Deferred("dispatch", parent=record_trace)  # passes the record's context on
        # The job's own trace when it has one (a cancel request, a deadline: linked, not a
        # trace of their own).
        current = self.state.get(raw.partition, event.subject)
        return tracing.Deferred(f"dispatch {event.type}", kind=tracing.CONSUMER,
                                parent=(current.trace if current else None) or record_trace, link=record_trace,
                                attributes={"messaging.destination.partition.id": str(raw.partition),
                                            "messaging.kafka.offset": raw.offset,
                                            "jobwire.job.id": event.subject, "jobwire.event.id": event.id})

    async def _set_aside(self, raw: ConsumerRecord[bytes, bytes], reason: str, epoch: int) -> None:
        await self.quarantine.put_raw(raw.key, raw.value, Position(raw.partition, raw.offset), reason,
                                      tuple(raw.headers or ()))
        self.tracker.skip(raw.partition, raw.offset, epoch)

    async def _fold(self, partition: int, offset: int, event: Event, trace: tracing.Deferred | None = None,
                    record_trace: str | None = None) -> list[Delivery]:
        """Apply the event to the job's state; the deliveries it causes (none unless terminal).

        Everything that can fail for this record (encoding the snapshot, the payload, its size)
        happens before the state changes, so a record set aside leaves no trace."""
        current = self.state.get(partition, event.subject)
        if current is None and self.state.finished_long_ago(partition, event.subject):
            return []  # the job finished long ago: nothing changes it (the API refuses it too)
        if current is not None and offset <= current.offset:
            # Read again after a crash: applied already. The finishing record itself (its
            # offset was not committed, so its deliveries may not all have been made) is
            # delivered again, same webhook-id.
            if current.terminal_event == event.id and current.offset == offset:
                again = self._requeue(partition, current, trace, self._deliveries(
                    event, current.job, self._body(current.job), skip=current.settled))
                log.info("terminal event read again job_id=%s event_id=%s settled=%d delivering_again=%d",
                         current.job.id, event.id, len(current.settled), len(again))
                return again
            if offset in current.unsettled_notices:
                # Its lifecycle webhooks may not all have been made: again, same webhook-ids,
                # carrying the job as it stands now; content filters judge it as it was then
                # (processing, no error), so a replay reaches the endpoints the first pass did.
                kind = STARTED if event.type == "job.started" else PROGRESS
                # Those to ordered endpoints were queued by the first pass, durably with the
                # snapshot read here; once ended they are gone from the queue, and queued again
                # they would follow the job's later webhooks: left out.
                as_noticed = current.job._replace(status=Status.PROCESSING, error=None)
                loose = self._ordered(current.ordered, trace, self._deliveries(
                    event, current.job, (kind, notice_payload(current.job, kind)), judged=as_noticed))[1]
                if not loose:  # nothing left to settle for it: it must not hold a place for good
                    current.unsettled_notices = tuple(o for o in current.unsettled_notices if o != offset)
                    self.state.touch(partition, current.job.id)
                return loose
            return []
        outcome = apply(current.job if current else None, event)
        job = outcome.job
        if event.type == HEARTBEAT:  # moves the heartbeat deadline; no snapshot, no delivery
            if outcome.verdict is Verdict.ACCEPTED and job is not None:
                self.timers.heartbeat(job, event.time)
            return []
        if outcome.verdict is not Verdict.ACCEPTED or job is None:
            return []
        unsettled = current.unsettled_notices if current else ()
        noticed_at = current.progress_noticed_at if current else None
        body = self._body(job) if outcome.became_terminal else None
        # Never more notices unsettled than the snapshot keeps: past that a progress notice is
        # left out (the next one, or the terminal webhook, tells the state), never an older
        # unsettled one forgotten.
        room = len(unsettled) < MAX_UNSETTLED
        notice = None if body is not None or not room else self._notice(event, job, noticed_at)
        if notice is not None:
            body = (notice, notice_payload(job, notice))
        deliveries = self._deliveries(event, job, body) if body is not None else []
        queue, deliveries = self._ordered(current.ordered if current else (), trace, deliveries)
        if notice is not None and deliveries:
            unsettled = (*unsettled, offset)
        if notice == PROGRESS and (deliveries or queue != (current.ordered if current else ())):
            noticed_at = canonical(event.time)
        snapshot = JobState(job, offset, event.id if outcome.became_terminal else None,
                            unsettled_notices=unsettled, progress_noticed_at=noticed_at, ordered=queue,
                            trace=(current.trace if current else None) or record_trace)
        encoded = snapshot.encode()
        if len(encoded) > MAX_RECORD_BYTES:
            raise PayloadTooLarge(f"the job's state snapshot would be {len(encoded)} bytes, over the "
                                  f"{MAX_RECORD_BYTES} byte record limit")
        self.state.put(partition, snapshot, encoded)
        self.timers.arm(partition, job)
        if queue:
            self.ordered.offer(partition, job.id)
        return deliveries

    def _ordered(self, queue: Queue, trace: tracing.Deferred | None,
                 deliveries: list[Delivery]) -> tuple[Queue, list[Delivery]]:
        """``deliveries`` to ordered endpoints go into the job's queue (with ``trace``'s context,
        the record's dispatch span); the others are returned."""
        loose = []
        for delivery in deliveries:
            endpoint = self.registry.endpoints.get(delivery.endpoint_id)
            if endpoint is not None and endpoint.ordering == ORDERED and not callbacks.is_callback(endpoint.id):
                queue = enqueue(queue, Pending.of(delivery, queue, trace.traceparent() if trace else None))
            else:
                loose.append(delivery)
        return queue, loose

    def _requeue(self, partition: int, current: JobState, trace: tracing.Deferred | None,
                 deliveries: list[Delivery]) -> list[Delivery]:
        """The finishing record read again: its deliveries to ordered endpoints join the job's
        queue unless they are in it already or have ended (in ``settled`` then); one the first
        pass sent concurrently, before the endpoint was made ordered, is queued now."""
        queue, loose = self._ordered(current.ordered, trace, deliveries)
        if queue != current.ordered:
            current.ordered = queue
            self.state.touch(partition, current.job.id)
            self.ordered.offer(partition, current.job.id)
        return loose

    def _notice(self, event: Event, job: Job, noticed_at: str | None) -> str | None:
        """The lifecycle webhook this event makes, when any endpoint of the tenant wants it."""
        if event.type not in ("job.started", "job.progress"):
            return None
        kind = notice_for(event, job, noticed_at, self.progress_interval_s)
        if kind is None or not (self.registry.subscribed(job.tenant, kind) or callbacks.wants(job, kind)):
            return None
        return kind

    def _deliveries(self, event: Event, job: Job, body: tuple[str, bytes],
                    skip: frozenset[str] = frozenset(), judged: Job | None = None) -> list[Delivery]:
        """The deliveries of ``body`` about ``job`` to every endpoint that wants it (content
        filters judge ``judged``, the job itself unless given) and to the job's callback."""
        event_type, payload = body
        now = utc_now(self.clock)
        # A lifecycle event's id is the worker's to choose, and only unique within its job:
        # its webhook-id names the job too, so two jobs' notices never share one.
        named = event.id if event_type not in LIFECYCLE_TYPES else f"{job.id}\0{event.id}"
        found = [Delivery(webhook_id(named, e.id), e.id, job.tenant, event_type, event.id, job.id, payload, now)
                 for e in self.registry.subscribed(job.tenant, event_type)
                 if e.id not in skip and e.takes(judged or job)]
        if job.webhook and callbacks.wants(job, event_type):
            lane = callbacks.callback_endpoint_id(job.tenant, job.webhook["url"])
            if lane not in skip:
                found.append(Delivery(webhook_id(named, lane), lane, job.tenant, event_type, event.id, job.id,
                                      payload, now, url=job.webhook["url"]))
        return found

    @staticmethod
    def _body(job: object) -> tuple[str, bytes]:
        event_type, payload = job_payload(job)  # type: ignore[arg-type]
        if len(payload) > MAX_TASK_BYTES:
            raise PayloadTooLarge(f"the task object would be {len(payload)} bytes, over the {MAX_TASK_BYTES} byte limit")
        return event_type, payload

    async def route(self, delivery: Delivery, source: Source) -> None:
        """To its endpoint's lane, or parked on the retry path when that lane is full."""
        if self.lanes.has_room(delivery.endpoint_id):
            endpoint = self.registry.endpoints.get(delivery.endpoint_id)
            self.lanes.push(Work(delivery, source), endpoint.rate_limit_per_s if endpoint else None)
            return
        await self.deliverer.park(delivery, Step())
        PARKED.inc()
        source.settle(delivery)

    # --- rebalancing ------------------------------------------------------------------------

    async def on_revoked(self, partitions: set[int]) -> None:
        # Every rebalance of the group revokes, an empty set included: one line each shows them.
        log.info("partitions revoked partitions=%s", sorted(partitions))
        self._state_ready.clear()
        # Queued work of those partitions is let go unsent: the new owner re-reads the records.
        # The commit below stays under it, since those offsets never finish here.
        def ours(w: Work) -> bool:
            return w.from_records_of(self.tracker, partitions) or self.ordered.ours(w, partitions)

        self.ordered.revoking(partitions)
        self.lanes.drop(ours)
        # Attempts under way get a moment to end, so their offsets commit and the new owner
        # does not send them again.
        deadline = self.clock.monotonic() + REVOKE_GRACE_S
        while any(ours(w) for w in self.lanes.in_flight) and self.clock.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.lanes.drop(ours)  # whatever was queued meanwhile
        await self.commit_on_revocation(partitions)
        self.ordered.forget(partitions)
        self.timers.forget(job_id for p in partitions for job_id in self.state.jobs_of(p))
        self.state.forget(partitions)
        self.tracker.forget(partitions)
        for partition in partitions:
            self.read_through.pop(partition, None)

    async def on_assigned(self, partitions: list[int]) -> None:
        self._state_ready.clear()
        started = self.clock.monotonic()
        try:
            restored = await self.state.restore(partitions)
        except Exception as exc:  # noqa: BLE001 - handed to the loop, which ends the run with it
            log.error("state restore failed partitions=%s error=%s", partitions, exc)
            self._restore_failed = exc
            self._state_ready.set()
            return
        timers = self.timers.restored(partitions)
        ordered = self.ordered.restored(partitions)
        log.info("state restored partitions=%s jobs=%d timers=%d ordered_jobs=%d restore_s=%.2f", partitions,
                 restored, timers, ordered, self.clock.monotonic() - started)
        self._state_ready.set()
