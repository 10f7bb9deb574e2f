"""One simulated schedule of the dispatcher: the real intake, lanes, senders, tiers, outbox,
offset tracker and state store (``DispatcherParts``), on fake Kafka, fake receivers and a
virtual clock, under faults drawn from a seed: acknowledgements late or failing, receivers
slow, failing or hanging, rebalances (revoke, then hand back) at any await point, and crashes
(kill -9: no commit, unacknowledged writes kept or lost) with restarts from the committed
offsets. After the faults stop, the dispatcher runs until everything is committed; then the
invariants are checked (``Violation`` names the first broken one)."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from jobwire.clock import utc_now
from jobwire.config import Settings
from jobwire.dispatch.lanes import Lanes
from jobwire.dispatch.policy import SendResult
from jobwire.dispatch.received import RECALL_PER_PARTITION
from jobwire.dispatch.service import DispatcherOptions, DispatcherParts
from jobwire.errors import LogError
from jobwire.events import Event, encode
from jobwire.events import new_event as make_event
from jobwire.topics import Topics
from jobwire.webhooks.callbacks import callback_endpoint_id
from jobwire.webhooks.model import Endpoint, SealedSecret, webhook_id
from jobwire.webhooks.secretbox import SecretBox, binding, new_webhook_secret
from tests.sim.fake_kafka import FakeConsumer, FakeKafka, FakeProducer
from tests.sim.virtual_loop import VirtualClock, VirtualLoop

SECRET_KEY = "simulation-secret-key-0123456789"
TENANTS = ("acme", "globex")
TERMINAL = {"job.completed": "task.completed", "job.failed": "task.failed", "job.canceled": "task.canceled"}
#: Longest virtual time the dispatcher gets, after the last fault, to commit everything.
SETTLE_S = 600.0


#: Where jobs' own callbacks (``webhook_url``) go in the simulation.
CALLBACK_URLS = ("https://client-1.example/done", "https://client-2.example/done")


class Violation(AssertionError):
    pass


@dataclass
class Receivers:
    """Every endpoint's receiver: latency, errors and hangs drawn per endpoint."""

    rng: random.Random
    behaviour: dict[str, tuple[float, float, float]]  # url -> (latency s, error p, hang p)
    healthy: bool = False  # once the faults stop, every receiver answers 200
    #: (url, webhook-id) -> how many times the receiver took it and answered 2xx
    taken: dict[tuple[str, str], int] = field(default_factory=dict)
    requests: int = 0
    #: Ordered endpoints' URLs, and (url, webhook-id) -> (job id, place of its event in the job)
    ordered: set[str] = field(default_factory=set)
    places: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    #: (url, job id) -> the latest place an ordered endpoint took; the first webhook taken after
    #: a later one of the same job, when any
    reached: dict[tuple[str, str], int] = field(default_factory=dict)
    out_of_order: str | None = None

    async def post(self, url: str, body: bytes, headers: dict[str, str], *, delivery_id: str = "") -> SendResult:
        latency, error_p, hang_p = self.behaviour[url]
        self.requests += 1
        half = latency * self.rng.random()
        if not self.healthy and self.rng.random() < hang_p:
            await asyncio.sleep(15.0)
            return SendResult(None, 15000.0, "timed out")
        await asyncio.sleep(half)
        failing = not self.healthy and self.rng.random() < error_p
        if not failing:  # the receiver has it, whatever happens to the answer
            key = (url, headers["webhook-id"])
            self.taken[key] = self.taken.get(key, 0) + 1
            self._note_order(key)
        await asyncio.sleep(half)
        return SendResult(500 if failing else 200, half * 2000, "HTTP 500" if failing else None)

    def _note_order(self, key: tuple[str, str]) -> None:
        url, wid = key
        if url not in self.ordered or key not in self.places:
            return
        job_id, place = self.places[key]
        latest = self.reached.get((url, job_id), -1)
        if place < latest and self.out_of_order is None:
            self.out_of_order = f"{url} took {wid} (event {place} of {job_id}) after event {latest} of that job"
        self.reached[(url, job_id)] = max(latest, place)


@dataclass
class Plan:
    seed: int
    partitions: int
    endpoints: list[Endpoint]
    jobs: int
    max_deliveries: int
    queue_per_endpoint: int
    in_flight: int
    senders: int
    crashes: int
    rebalances: int
    ack_fail_p: float
    max_ack_s: float
    #: Progress events of the longest job (the others draw theirs).
    long_job_progress: int = 0
    #: How often the dispatcher finds itself busy on the CPU (lanes then hold, not park, a
    #: backlog whose pace is typical).
    busy_p: float = 0.0
    #: Every receiver answering 200 in this many seconds (None: drawn per endpoint).
    uniform_latency_s: float | None = None


def endpoint(n: int, tenant: str, event_types: tuple[str, ...] | None = None,
             rate_limit_per_s: float | None = None) -> Endpoint:
    endpoint_id = f"ep_{n}"
    sealed = SecretBox(SECRET_KEY).seal(new_webhook_secret(), bound_to=binding(tenant, endpoint_id))
    return Endpoint(endpoint_id, tenant, f"https://receiver-{n}.example/hook", "2027-01-01T00:00:00.000Z",
                    "2027-01-01T00:00:00.000Z", (SealedSecret(sealed),), event_types=event_types,
                    rate_limit_per_s=rate_limit_per_s)


def draw_plan(seed: int) -> Plan:
    rng = random.Random(seed)
    endpoints = [endpoint(n, TENANTS[0] if n < 4 else rng.choice(TENANTS),
                          rng.choice([None, None, ("task.completed",), ("task.failed", "task.canceled")]),
                          rng.choice([None, None, None, 5.0, 50.0]))
                 for n in range(rng.randint(1, 6))]
    # Lifecycle subscriptions from an RNG of their own: the draws above (and so every seed's
    # plan from before they existed) stay as they were.
    lifecycle = random.Random(seed ^ 0x5EED)
    endpoints = [replace(e, event_types=(*(e.event_types or ("task.completed", "task.failed", "task.canceled")),
                                         "task.started")) if lifecycle.random() < 0.3 else e for e in endpoints]
    # Ordered endpoints (``ordering: "job"``), some hearing of progress too, from an RNG of their own.
    ordering = random.Random(seed ^ 0x0D3E)
    endpoints = [replace(e, ordering="job", event_types=(*(e.event_types or ("task.completed", "task.failed",
                                                                            "task.canceled")), "task.started",
                                                        *(("task.progress",) if ordering.random() < 0.5 else ())))
                 if ordering.random() < 0.4 else e for e in endpoints]
    busy_p = random.Random(seed ^ 0xB057).choice([0.0, 0.5, 1.0])  # an RNG of its own, as above
    return Plan(seed, partitions=rng.randint(1, 4), endpoints=endpoints, jobs=rng.randint(5, 60),
                max_deliveries=rng.randint(1, 30), queue_per_endpoint=rng.randint(1, 20),
                in_flight=rng.randint(1, 4), senders=rng.randint(1, 8), crashes=rng.randint(0, 3),
                rebalances=rng.randint(0, 4), ack_fail_p=rng.choice([0.0, 0.0, 0.002, 0.01]),
                max_ack_s=rng.choice([0.001, 0.01, 0.2]), busy_p=busy_p)


@dataclass
class Outcome:
    plan: Plan
    expected: dict[tuple[str, str], str]  # (endpoint url, webhook-id) -> job id
    delivered: int
    dead: int
    duplicates: int
    restarts: int
    virtual_s: float
    #: Deliveries parked on the retry path by full lanes (records of the requests topic).
    parked: int = 0


class World:
    def __init__(self, plan: Plan, loop: VirtualLoop) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed * 7919 + 1)
        self.clock = VirtualClock(loop)
        self.topics = Topics()
        self.kafka = FakeKafka(self.clock, on_commit=self._on_commit)
        self.settings = Settings(
            secret_key=SECRET_KEY, retry_schedule_s=(0.0, 1.0, 5.0, 10.0),
            dispatch_max_deliveries=plan.max_deliveries, dispatch_max_bytes=64 << 20,
            dispatch_senders=plan.senders, endpoint_in_flight=plan.in_flight,
            endpoint_max_queued=plan.queue_per_endpoint)
        self.receivers = Receivers(self.rng, {
            e.url: (self.rng.choice([0.001, 0.01, 0.1, 1.0]), self.rng.choice([0.0, 0.1, 0.5]),
                    self.rng.choice([0.0, 0.0, 0.05])) for e in plan.endpoints})
        # Jobs' own callback URLs answer as receivers do (drawn apart, so earlier draws stay).
        drawn = random.Random(plan.seed ^ 0xCA11 + 1)
        self.receivers.behaviour.update({url: (drawn.choice([0.001, 0.01, 0.1]), drawn.choice([0.0, 0.1, 0.5]), 0.0)
                                         for url in CALLBACK_URLS})
        if plan.uniform_latency_s is not None:
            self.receivers.behaviour = {url: (plan.uniform_latency_s, 0.0, 0.0) for url in self.receivers.behaviour}
        #: (endpoint url, webhook-id) -> job id: what must reach each receiver
        self.expected: dict[tuple[str, str], str] = {}
        #: What may reach a receiver without being owed: progress notices, which coalesce
        self.allowed: set[tuple[str, str]] = set()
        #: (partition, offset) of each event record that finishes a job -> the pairs it owes
        self.owed: dict[tuple[int, int], list[tuple[str, str]]] = {}
        #: delivery ids with a record on the retry path or among the dead letters
        self.durable: set[str] = set()
        self.dead: set[str] = set()
        self.max_fan_out = max(sum(1 for e in plan.endpoints if e.tenant == t) for t in TENANTS)
        self.parts: DispatcherParts | None = None
        self.restarts = 0

    # --- the log's contents -----------------------------------------------------------------

    def _create_topics(self) -> None:
        p = self.plan.partitions
        for topic, count in ((self.topics.events, p), (self.topics.state, p), (self.topics.requests, 2),
                             (self.topics.dead, 1), (self.topics.attempts, 2), (self.topics.endpoints, 1),
                             *((self.topics.retry(d), self.rng.randint(1, 2)) for d in (1.0, 5.0, 10.0))):
            self.kafka.create(topic, count)
        for endpoint in self.plan.endpoints:
            self.kafka.append(self.topics.endpoints, 0, endpoint.id.encode(), endpoint.encode())
            if endpoint.ordering == "job":
                self.receivers.ordered.add(endpoint.url)

    async def publish(self) -> None:
        """Every job's events, in order per job, jobs interleaved, over virtual time; duplicates,
        poison, and events that a finished job must refuse among them."""
        rng = random.Random(self.plan.seed * 31 + 7)

        def new_event(type: str, job_id: str, tenant: str, data: dict[str, Any]) -> Event:
            # Ids and times from the seed and the virtual clock: a seed replays exactly.
            return make_event(type, job_id, tenant, data, event_id=f"evt_{rng.getrandbits(112):028x}",
                              time=utc_now(self.clock))

        streams = []
        #: event id -> the (url, webhook-id) pairs its record owes
        owing: dict[str, list[tuple[str, str]]] = defaultdict(list)
        # Which jobs have their own callback URL, from an RNG of its own: the draws of ``rng``
        # (and so every seed's events from before callbacks existed) stay as they were.
        callbacks = random.Random(self.plan.seed ^ 0xCA11)
        for n in range(self.plan.jobs):
            tenant = rng.choice(TENANTS)
            job_id = f"job_{n:04d}"
            created: dict[str, Any] = {"operation": "ocr", "parameters": {"n": n}}
            callback = callbacks.choice(CALLBACK_URLS) if callbacks.random() < 0.25 else None
            if callback is not None:
                created["webhook"] = {"url": callback}  # the job's own callback URL
            events = [new_event("job.created", job_id, tenant, created)]
            if rng.random() < 0.7:
                started = new_event("job.started", job_id, tenant, {})
                events.append(started)
                # A lifecycle webhook is owed like a terminal one, by the record that starts the job.
                for e in self.plan.endpoints:
                    if e.tenant == tenant and e.wants("task.started"):
                        named = webhook_id(f"{job_id}\0{started.id}", e.id)  # lifecycle ids name the job
                        self.expected[(e.url, named)] = job_id
                        owing[started.id].append((e.url, named))
                        self.receivers.places[(e.url, named)] = (job_id, len(events) - 1)
            progress = self.plan.long_job_progress if n == 0 and self.plan.long_job_progress else \
                rng.choice([0, 0, 1, 5, 40])
            for i in range(progress):
                events.append(new_event("job.progress", job_id, tenant,
                                        {"processed": i, "total": max(progress, 100)}))
                for e in self.plan.endpoints:
                    if e.tenant == tenant and e.wants("task.progress"):
                        named = webhook_id(f"{job_id}\0{events[-1].id}", e.id)
                        self.allowed.add((e.url, named))
                        self.receivers.places[(e.url, named)] = (job_id, len(events) - 1)
            kind = rng.choice(list(TERMINAL))
            data: dict[str, Any] = {"job.completed": {"result": {"n": n}},
                                    "job.failed": {"error": {"code": "boom", "message": "it broke"}},
                                    "job.canceled": {}}[kind]
            end = new_event(kind, job_id, tenant, data)
            events.append(end)
            for e in self.plan.endpoints:
                if e.tenant == tenant and e.wants(TERMINAL[kind]):
                    self.expected[(e.url, webhook_id(end.id, e.id))] = job_id
                    owing[end.id].append((e.url, webhook_id(end.id, e.id)))
                    self.receivers.places[(e.url, webhook_id(end.id, e.id))] = (job_id, len(events) - 1)
            if callback is not None:
                lane = callback_endpoint_id(tenant, callback)
                self.expected[(callback, webhook_id(end.id, lane))] = job_id
                owing[end.id].append((callback, webhook_id(end.id, lane)))
            encoded = [encode(e) for e in events]
            if rng.random() < 0.2:  # a producer's retry: the same event twice
                at = rng.randrange(len(encoded))
                encoded.insert(at + 1, encoded[at])
            if rng.random() < 0.15:  # after the end, a second end and a second creation: refused
                encoded.append(encode(new_event("job.completed", job_id, tenant, {"result": {}})))
                encoded.append(encode(new_event("job.created", job_id, tenant, {"operation": "ocr", "parameters": {}})))
                encoded.append(encode(new_event("job.failed", job_id, tenant,
                                                {"error": {"code": "phantom", "message": "x"}})))
            streams.append((job_id, encoded, end.id))
        while streams:
            index = rng.randrange(len(streams))
            job_id, encoded, _ = streams[index]
            value = encoded.pop(0)
            record = self.kafka.append(self.topics.events, None, job_id.encode(), value)
            event_id = orjson.loads(value)["id"]
            if event_id in owing and (record.partition, record.offset) not in self.owed:
                self.owed[(record.partition, record.offset)] = owing[event_id]
            if not encoded:
                streams.pop(index)
            if rng.random() < 0.05:
                self.kafka.append(self.topics.events, None, job_id.encode(), b"\xffnot an event")
            if len(encoded) % 100 == 0 or rng.random() < 0.5:
                await asyncio.sleep(rng.choice([0.0, 0.0, 0.001, 0.05]))

    # --- invariants -------------------------------------------------------------------------

    def _queued(self) -> set[str]:
        """Deliveries waiting in an ordered endpoint's queue, in the jobs' latest snapshots."""
        latest: dict[tuple[int, bytes | None], bytes | None] = {}
        for record in self.kafka.records(self.topics.state):
            latest[(record.partition, record.key)] = record.value
        return {entry[0] for value in latest.values() if value is not None
                for entry in orjson.loads(value).get("ordered", ())}

    def _index(self) -> None:
        """Which deliveries have a durable next step (retry path or dead letter), from the log."""
        for topic in (self.topics.requests, self.topics.dead, *(self.topics.retry(d) for d in (1.0, 5.0, 10.0))):
            for record in self.kafka.records(topic):
                if record.value is not None:
                    delivery_id = orjson.loads(record.value)["id"]
                    self.durable.add(delivery_id)
                    if topic == self.topics.dead:
                        self.dead.add(delivery_id)

    def _on_commit(self, group: str, topic: str, partition: int, offset: int) -> None:
        """No commit passes unfinished work: each pair owed by a committed jobs.events record is
        received or has a durable next step."""
        if topic != self.topics.events:
            return
        self._index()
        queued = self._queued()
        for (p, o), pairs in self.owed.items():
            if p != partition or o >= offset:
                continue
            for url, wid in pairs:
                if (url, wid) not in self.receivers.taken and wid not in self.durable and wid not in queued:
                    raise Violation(f"commit of {topic}:{partition} at {offset} passes {wid} for {url}, "
                                    "neither received nor on the retry path")

    def _busy(self) -> Callable[[], bool]:
        """The dispatcher's CPU load as the seed has it: busy with probability ``busy_p`` at each
        look, from an RNG of its own so that the other draws stay as they were."""
        draws = random.Random(self.plan.seed ^ 0xC0DE)
        return lambda: draws.random() < self.plan.busy_p

    def _watch_bound(self, lanes: Lanes) -> None:
        push = lanes.push
        limit = self.plan.max_deliveries + self.max_fan_out

        def bounded_push(work: Any, rate: float | None) -> None:
            push(work, rate)
            if lanes.deliveries > limit:
                raise Violation(f"the lanes hold {lanes.deliveries} deliveries, over the bound {limit}")

        lanes.push = bounded_push  # type: ignore[method-assign]

    # --- running ----------------------------------------------------------------------------

    async def start(self, faulty: bool) -> tuple[DispatcherParts, FakeProducer, list[FakeConsumer], list[asyncio.Task[None]], asyncio.Event]:
        producer = FakeProducer(self.kafka, self.rng, max_ack_s=self.plan.max_ack_s,
                                fail_p=self.plan.ack_fail_p if faulty else 0.0)
        consumers: list[FakeConsumer] = []

        def consumer(group: str, member: str, fetch_wait_ms: int) -> FakeConsumer:
            made = FakeConsumer(self.kafka, group, self.rng)
            consumers.append(made)
            return made

        recall = self.rng.choice([0, 5, RECALL_PER_PARTITION])
        parts = DispatcherParts(self.settings, DispatcherOptions(commit_interval_s=self.rng.choice([0.05, 0.2, 1.0])),
                                producer=producer, consumer=consumer,  # type: ignore[arg-type]
                                read_changelog=lambda partitions: self.kafka.read_changelog(self.topics.state, partitions),
                                # Sometimes nothing, a little or much of the attempts' tail is read.
                                recent_attempts=lambda: self.kafka.tail(self.topics.attempts, recall),
                                sender=self.receivers, clock=self.clock, busy=self._busy())
        self._watch_bound(parts.lanes)
        for record in self.kafka.records(self.topics.endpoints):
            parts.registry.apply(record)
        for loop_part in parts.committers:
            loop_part.consumer.subscribe([loop_part.topic], listener=loop_part.listener)
        stop = asyncio.Event()
        await parts.recall()
        for made in consumers:
            await made.start()
        tasks = [asyncio.create_task(coro, name=name) for name, coro in parts.loops(stop)]
        self.parts = parts
        return parts, producer, consumers, tasks, stop

    async def crash(self, producer: FakeProducer, consumers: list[FakeConsumer], tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        for consumer in consumers:
            consumer.closed = True
        producer.crash()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.restarts += 1

    async def rebalance(self, consumers: list[FakeConsumer]) -> None:
        consumer = self.rng.choice(consumers)
        await consumer.revoke()
        await asyncio.sleep(self.rng.choice([0.0, 0.01, 0.5, 3.0]))
        every = consumer.all_partitions()
        some = {p for p in every if self.rng.random() < 0.6}
        await consumer.assign(some)
        if some != every:
            await asyncio.sleep(self.rng.choice([0.1, 2.0]))
            await consumer.revoke()
            await consumer.assign(every)

    @staticmethod
    def _failed(tasks: list[asyncio.Task[None]]) -> BaseException | None:
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None

    async def run(self) -> Outcome:
        self._create_topics()
        publisher = asyncio.create_task(self.publish())
        faults = self.plan.crashes + self.plan.rebalances
        kinds = ["crash"] * self.plan.crashes + ["rebalance"] * self.plan.rebalances
        self.rng.shuffle(kinds)
        parts, producer, consumers, tasks, stop = await self.start(faulty=faults > 0)
        for kind in kinds:
            await self._run_for(self.rng.choice([0.01, 0.1, 1.0, 5.0]), tasks)
            failure = self._failed(tasks)
            if kind == "crash" or failure is not None:
                if failure is not None and not _log_failure(failure):
                    raise failure  # anything but the log failing is a bug
                await self.crash(producer, consumers, tasks)
                parts, producer, consumers, tasks, stop = await self.start(faulty=True)
            else:
                await self.rebalance(consumers)
        # The faults stop: a clean restart, healthy receivers, then settle.
        await self.crash(producer, consumers, tasks)
        self.receivers.healthy = True
        parts, producer, consumers, tasks, stop = await self.start(faulty=False)
        await publisher
        await self._settle(parts, tasks)
        stop.set()
        parts.lanes.close()
        await self.crash(producer, consumers, tasks)
        self._index()
        return self._check()

    async def _run_for(self, seconds: float, tasks: list[asyncio.Task[None]]) -> None:
        await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_EXCEPTION)

    def _settled(self, parts: DispatcherParts) -> bool:
        if parts.lanes.deliveries:
            return False
        if any(job.ordered for state in parts.state.partitions.values() for job in state.jobs.values()):
            return False  # ordered deliveries still waiting their turn
        for loop_part in parts.committers:
            group = loop_part.consumer.group  # type: ignore[attr-defined]
            for partition, log in enumerate(self.kafka.topics[loop_part.topic]):
                if self.kafka.committed.get((group, loop_part.topic, partition), 0) < len(log):
                    return False
        return True

    async def _settle(self, parts: DispatcherParts, tasks: list[asyncio.Task[None]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_S
        while not self._settled(parts):
            failure = self._failed(tasks)
            if failure is not None:
                raise failure
            if loop.time() > deadline:
                raise Violation(f"not settled after {SETTLE_S} virtual s: lanes hold {parts.lanes.deliveries}, "
                                f"committed {self._progress(parts)}")
            await asyncio.sleep(0.5)

    def _progress(self, parts: DispatcherParts) -> dict[str, str]:
        shown = {}
        for loop_part in parts.committers:
            group = loop_part.consumer.group  # type: ignore[attr-defined]
            shown[loop_part.topic] = ", ".join(
                f"{self.kafka.committed.get((group, loop_part.topic, p), 0)}/{len(log)}"
                for p, log in enumerate(self.kafka.topics[loop_part.topic]))
        return shown

    def _check(self) -> Outcome:
        received = {key for key in self.receivers.taken}
        for (url, wid), job_id in self.expected.items():
            if (url, wid) not in received and wid not in self.dead:
                raise Violation(f"{job_id}'s webhook {wid} never reached {url} and has no dead letter")
        if self.receivers.out_of_order is not None:
            raise Violation(self.receivers.out_of_order)
        extra = received - set(self.expected) - self.allowed
        if extra:
            url, wid = sorted(extra)[0]
            raise Violation(f"{url} received {wid}, which no job owed it (a phantom or another tenant's)")
        duplicates = sum(count - 1 for count in self.receivers.taken.values())
        return Outcome(self.plan, self.expected, len(received), len(self.dead), duplicates, self.restarts,
                       asyncio.get_running_loop().time(), len(self.kafka.records(self.topics.requests)))


def _log_failure(failure: BaseException) -> bool:
    """The dispatcher ended because the log failed (a write not acknowledged): a crash, by design."""
    if isinstance(failure, BaseExceptionGroup):
        return all(_log_failure(e) for e in failure.exceptions)
    return isinstance(failure, LogError)


def simulate(seed: int, plan: Plan | None = None) -> Outcome:
    loop = VirtualLoop()
    try:
        asyncio.set_event_loop(loop)
        plan = plan or draw_plan(seed)
        return loop.run_until_complete(World(plan, loop).run())
    finally:
        leftover = asyncio.all_tasks(loop)
        for task in leftover:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        asyncio.set_event_loop(None)
        loop.close()


__all__ = ["Outcome", "Plan", "Violation", "World", "draw_plan", "replace", "simulate"]
