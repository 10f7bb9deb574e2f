"""Webhook dispatch speed, as ratios against a raw client in the same run.

    .venv/bin/python bench/dispatch.py [--jobs 10000] [--endpoints 4] [--rate 500] [--seconds 10] [--live-jobs 200000]
    .venv/bin/python bench/dispatch.py --tracing-cost [--jobs 10000] [--sample 1.0]
    .venv/bin/python bench/dispatch.py --idle-cost

- throughput: a raw aiohttp client POSTing same-sized bodies with the same concurrency as the
  endpoints get (16 in flight each) vs our end to end rate from jobs.events to the receiver
  (fold, state snapshot, sign, POST, attempt record, commit), first arrival to last;
- latency: publish() of a terminal event (as a worker publishes it: no linger) to its arrival,
  at a steady rate, once the dispatcher has read the jobs' creation; against the floor, raw
  aiokafka publish -> consume at the same rate;
- lone event and lone job on an idle system: a terminal event published alone, and a job
  published as created and run by a worker (``jobwire worker --demo``, its own process) to the
  first arrival of its webhook, every hop of a real job on the way;
- restore: loading jobs.state for N live jobs, as a partition assignment does.
- idle: the CPU an idle dispatcher takes over 20 s, and the broker's beside it.

The receiver is a minimal aiohttp server in its own process. Starts its own broker unless
KAFKA_BOOTSTRAP_SERVERS is set. Not part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from functools import partial
from pathlib import Path

import _otlp_sink as otlp_sink
import aiohttp
import orjson
from _broker import bench_broker, bench_broker_pid
from _processes import stop_process
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from jobwire import tracing
from jobwire.config import load_settings
from jobwire.devtools.broker import free_port
from jobwire.dispatch.outbox import Outbox
from jobwire.dispatch.state import JobState, StateStore
from jobwire.events import new_event
from jobwire.kafka.admin import ensure_topics
from jobwire.kafka.clients import make_producer
from jobwire.kafka.readers import read_to_end
from jobwire.kafka.writers import JobEvents, KeyedWriter
from jobwire.lifecycle import fold
from jobwire.timeutil import now_utc
from jobwire.topics import Topics
from jobwire.webhooks.model import Endpoint, SealedSecret, webhook_id
from jobwire.webhooks.registry import EndpointWriter
from jobwire.webhooks.secretbox import SecretBox, binding, new_webhook_secret

IN_FLIGHT = 16  # the dispatcher's per-endpoint limit
LONE_EVENTS = 7
SECRET_KEY = "bench-secret-key-0123456789"
RECEIVER = '''
import sys, time
from aiohttp import web
arrivals = {}
async def hook(request):
    await request.read()
    arrivals[request.headers["webhook-id"]] = time.time()
    return web.Response(text="ok")
async def stats(request):
    return web.json_response({"count": len(arrivals), "arrivals": arrivals if "full" in request.query else {}})
async def reset(request):
    arrivals.clear()
    return web.Response(text="ok")
app = web.Application()
app.add_routes([web.post("/hooks", hook), web.get("/stats", stats), web.post("/reset", reset)])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
'''


def stats(port: int, full: bool = False) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats{'?full=1' if full else ''}") as response:
        return orjson.loads(response.read())  # type: ignore[no-any-return]


def reset(port: int) -> None:
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/reset", method="POST")).read()


async def raw_rate(port: int, count: int, body: bytes, lanes: int) -> float:
    url = f"http://127.0.0.1:{port}/hooks"
    items = iter(range(count))
    async with aiohttp.ClientSession() as session:
        async def lane() -> None:
            for i in items:
                async with session.post(url, data=body, headers={"webhook-id": f"raw{i}",
                                                                 "content-type": "application/json"}) as response:
                    await response.read()
        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(lanes)))
        return count / (time.perf_counter() - started)


async def setup(env: dict[str, str], receiver_port: int, endpoints: int) -> None:
    settings = load_settings(env)
    await ensure_topics(settings)
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        now = now_utc()
        box = SecretBox(SECRET_KEY)
        writer = EndpointWriter(KeyedWriter(producer, Topics(settings.topic_prefix).endpoints))
        for index in range(endpoints):
            endpoint_id = f"ep_bench{index}"
            sealed = box.seal(new_webhook_secret(), bound_to=binding("acme", endpoint_id))
            endpoint = Endpoint(endpoint_id, "acme", f"http://127.0.0.1:{receiver_port}/hooks", now, now,
                                (SealedSecret(sealed),))
            await writer.put(endpoint)
    finally:
        await producer.stop()


def bench_jobs(first: int, count: int) -> list[str]:
    return [f"job_b{i:07d}" for i in range(first, first + count)]


async def publish_creations(env: dict[str, str], first: int, count: int) -> None:
    settings = load_settings(env)
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        publisher = JobEvents(producer, Topics(settings.topic_prefix).events)
        created = [publisher.publish(new_event("job.created", j, "acme", {"operation": "ocr", "parameters": {"n": 1}}))
                   for j in bench_jobs(first, count)]
        for chunk in range(0, len(created), 2000):
            await asyncio.gather(*created[chunk:chunk + 2000])
    finally:
        await producer.stop()


async def caught_up(env: dict[str, str], timeout_s: float) -> None:
    """Wait until the dispatcher's group has committed through the end of jobs.events."""
    settings = load_settings(env)
    topic = Topics(settings.topic_prefix).events
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.events_partitions)]
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            committed = await admin.list_consumer_group_offsets(f"{settings.topic_prefix}jobwire-dispatcher")
            # A partition never written to has nothing to commit, and is never committed.
            if all(end == 0 or (tp in committed and committed[tp].offset >= end) for tp, end in ends.items()):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the dispatcher did not catch up with jobs.events in {timeout_s}s")
    finally:
        await consumer.stop()
        await admin.close()


async def publish_jobs(env: dict[str, str], first: int, count: int, rate: float | None = None,
                       sampled: float | None = None, created: bool = True) -> dict[str, float]:
    """Created (unless ``created`` is False: published beforehand) then completed events; with
    ``rate``, completions paced at that many per second. With ``sampled``, each completion
    carries a ``traceparent`` as a traced API would have sent it, sampled with that probability
    (the dispatcher continues it, or makes no span). Published as a worker does (no linger).
    Returns the terminal event's id -> the time just before it was published."""
    draws = random.Random(7)
    if created:
        await publish_creations(env, first, count)
    settings = load_settings(env)
    producer = make_producer(settings.kafka, linger_ms=0)  # as the worker SDK and the API publish
    await producer.start()
    sent_at: dict[str, float] = {}
    try:
        publisher = JobEvents(producer, Topics(settings.topic_prefix).events)
        jobs = bench_jobs(first, count)
        pending = []
        started = time.perf_counter()
        for index, job in enumerate(jobs):
            if rate:
                delay = started + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            event = new_event("job.completed", job, "acme", {"result": {"pages": 3, "url": "https://files.example/r.pdf"}})
            if sampled is not None:  # the task made below copies this context, so its record carries it
                tracing.carry(f"00-{draws.getrandbits(128):032x}-{draws.getrandbits(64):016x}-"
                              f"{'01' if draws.random() < sampled else '00'}")
            sent_at[event.id] = time.time()
            pending.append(asyncio.create_task(publisher.publish(event)))
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent_at


def wait_count(port: int, count: int, timeout_s: float) -> tuple[float, float]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stats(port)["count"] >= count:
            arrivals = stats(port, full=True)["arrivals"].values()
            return min(arrivals), max(arrivals)
        time.sleep(0.2)
    raise RuntimeError(f"only {stats(port)['count']} of {count} deliveries arrived in {timeout_s}s")


async def restore_time(env: dict[str, str], live_jobs: int) -> float:
    settings = load_settings(env)
    topics = Topics(settings.topic_prefix)
    producer = make_producer(settings.kafka, linger_ms=20)
    await producer.start()
    try:
        pending = []
        for i in range(live_jobs):
            job = fold([new_event("job.created", f"job_s{i:07d}", "acme", {"operation": "ocr", "parameters": {"i": i}}),
                        new_event("job.started", f"job_s{i:07d}", "acme", {})])
            assert job is not None
            pending.append(await producer.send(topics.state, JobState(job, i).encode(), key=job.id.encode(),
                                               partition=i % settings.events_partitions))
            if len(pending) >= 20000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        store = StateStore(Outbox(producer), topics.state, partial(read_to_end, settings.kafka, topics.state))
        started = time.perf_counter()
        restored = await store.restore(list(range(settings.events_partitions)))
        elapsed = time.perf_counter() - started
        assert restored == live_jobs, (restored, live_jobs)
        return elapsed
    finally:
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--live-jobs", type=int, default=200_000)
    parser.add_argument("--only-lone", action="store_true", help="only the lone event and lone job figures")
    parser.add_argument("--tracing-cost", action="store_true",
                        help="only the throughput, with tracing off, on (exporting to a sink), and off again")
    parser.add_argument("--sample", type=float, default=1.0,
                        help="with --tracing-cost: the share of traces sampled (OTEL_TRACES_SAMPLER traceidratio)")
    parser.add_argument("--traced-producer", action="store_true",
                        help="with --tracing-cost: completions carry a traceparent sampled at --sample, as a traced "
                             "API's would (else the dispatcher starts each trace and samples it)")
    parser.add_argument("--idle-cost", action="store_true",
                        help="only the CPU an idle dispatcher takes, and the broker with it")
    args = parser.parse_args()
    with bench_broker() as bootstrap:
        if args.tracing_cost:
            tracing_cost(bootstrap, args)
        elif args.idle_cost:
            idle_cost(bootstrap)
        else:
            run(bootstrap, args)


def start_process(env: dict[str, str], *command: str, wrap: str = "") -> subprocess.Popen[bytes]:
    return subprocess.Popen([*wrap.split(), sys.executable, "-m", "jobwire.cli", *command], env={**os.environ, **env})


def throughput(env: dict[str, str], args: argparse.Namespace, receiver_port: int) -> subprocess.Popen[bytes]:
    """The dispatch rate against the raw ceiling; returns the dispatcher it started."""
    body = orjson.dumps({"type": "task.completed", "timestamp": now_utc(), "data": {"id": "job_x", "pad": "x" * 600}})
    deliveries = args.jobs * args.endpoints
    ceiling = asyncio.run(raw_rate(receiver_port, deliveries, body, IN_FLIGHT * args.endpoints))
    reset(receiver_port)
    asyncio.run(publish_jobs(env, 0, args.jobs))
    # BENCH_DISPATCHER_WRAP, e.g. "py-spy record -f raw -o /tmp/d.txt --": profile the dispatcher.
    dispatcher = start_process(env, "dispatcher", "--metrics-port", "0",
                               wrap=os.environ.get("BENCH_DISPATCHER_WRAP", ""))
    first, last = wait_count(receiver_port, deliveries, 600)
    ours = (deliveries - 1) / (last - first)
    print(f"throughput: raw aiohttp {ceiling:,.0f}/s ({IN_FLIGHT * args.endpoints} in flight), jobs.events -> "
          f"{args.endpoints} endpoints {ours:,.0f}/s, ratio {ours / ceiling:.2f} (goal >= 0.5)")
    return dispatcher


def quantiles_ms(latencies_s: list[float]) -> tuple[float, float]:
    ordered = sorted(x * 1000 for x in latencies_s)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


async def raw_latency(env: dict[str, str], rate: float, seconds: int) -> tuple[float, float]:
    """The floor under publish() -> arrival: raw aiokafka, a producer as the worker's (acks=all,
    idempotent, no linger) to a consumer with the dispatcher's fetch wait, nothing between, at
    the same rate and over a topic of as many partitions, timed once the consumer has read a
    first record. p50 and p99 in ms."""
    settings = load_settings(env)
    topic = f"{settings.topic_prefix}bench-raw"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, settings.events_partitions, 1)])
    finally:
        await admin.close()
    producer = make_producer(settings.kafka, linger_ms=0)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka.bootstrap_servers,
                                auto_offset_reset="earliest", fetch_max_wait_ms=settings.kafka.fetch_max_wait_ms)
    sent_at: dict[bytes, float] = {}
    arrived: dict[bytes, float] = {}
    count = int(rate * seconds)
    warm = asyncio.Event()

    async def consume() -> None:
        while len(arrived) < count:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.time()
                for record in records:
                    if record.value == b"warm-up":
                        warm.set()
                    elif record.value in sent_at:
                        arrived[record.value] = now

    await producer.start()
    await consumer.start()
    consuming = asyncio.create_task(consume())
    try:
        await producer.send_and_wait(topic, b"warm-up")
        await asyncio.wait_for(warm.wait(), 30)
        started = time.perf_counter()
        pending = []
        for index in range(count):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            value = b"%d" % index
            sent_at[value] = time.time()
            pending.append(await producer.send(topic, value, key=value))
        await asyncio.gather(*pending)
        await asyncio.wait_for(asyncio.shield(consuming), 60)
    finally:
        consuming.cancel()
        await consumer.stop()
        await producer.stop()
    return quantiles_ms([arrived[value] - sent for value, sent in sent_at.items()])


def latency(env: dict[str, str], args: argparse.Namespace, receiver_port: int) -> None:
    asyncio.run(caught_up(env, 120))  # the throughput run's dispatcher quiet before the floor is taken
    floor_p50, floor_p99 = asyncio.run(raw_latency(env, args.rate, args.seconds))
    reset(receiver_port)
    count = int(args.rate * args.seconds)
    # The jobs' creation first, and the dispatcher through it: the rate measured is the
    # completions' alone, not behind a burst of creations.
    asyncio.run(publish_creations(env, args.jobs, count))
    asyncio.run(caught_up(env, 120))
    sent_at = asyncio.run(publish_jobs(env, args.jobs, count, rate=args.rate, created=False))
    wait_count(receiver_port, count * args.endpoints, 300)
    arrivals = stats(receiver_port, full=True)["arrivals"]
    p50, p99 = quantiles_ms([arrivals[webhook_id(event_id, f"ep_bench{index}")] - sent
                             for event_id, sent in sent_at.items() for index in range(args.endpoints)])
    print(f"latency publish() -> arrival at {args.rate:,.0f} events/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
          f"(goal p50 <= 5 ms, p99 <= 25 ms); raw aiokafka publish -> consume at that rate (the floor): "
          f"p50 {floor_p50:.1f} ms, p99 {floor_p99:.1f} ms, ratio to it {p50 / floor_p50:.1f} (p50), "
          f"{p99 / floor_p99:.1f} (p99)")


def lone_event(env: dict[str, str], args: argparse.Namespace, receiver_port: int, first: int) -> None:
    """A terminal event published alone on an idle system: nothing else in flight, 2 s of quiet."""
    lone_ms = []
    for n in range(LONE_EVENTS):
        reset(receiver_port)
        asyncio.run(publish_creations(env, first + n, 1))
        asyncio.run(caught_up(env, 30))
        time.sleep(2)
        sent_at = asyncio.run(publish_jobs(env, first + n, 1, created=False))
        (event_id, sent), = sent_at.items()
        wait_count(receiver_port, args.endpoints, 30)
        arrivals = stats(receiver_port, full=True)["arrivals"]
        lone_ms.append(min(arrivals[webhook_id(event_id, f"ep_bench{i}")] for i in range(args.endpoints)) - sent)
    lone_ms = sorted(x * 1000 for x in lone_ms)
    print(f"lone event on an idle system, publish() -> first arrival, {LONE_EVENTS} runs: "
          f"median {statistics.median(lone_ms):.1f} ms, worst {lone_ms[-1]:.1f} ms (goal <= 10 ms)")


async def publish_created(env: dict[str, str], job_id: str) -> float:
    """A wordcount job as the API writes it; the time just before it was published."""
    settings = load_settings(env)
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        publisher = JobEvents(producer, Topics(settings.topic_prefix).events)
        event = new_event("job.created", job_id, "acme", {"operation": "wordcount", "parameters": {"text": "a b c"}})
        sent = time.time()
        await publisher.publish(event)
        return sent
    finally:
        await producer.stop()


def lone_job(env: dict[str, str], args: argparse.Namespace, receiver_port: int) -> None:
    """A job run by a worker on an idle system: job.created published -> the worker takes it,
    publishes job.started and job.completed -> the dispatcher delivers. Every hop of a real job."""
    worker = start_process(env, "worker", "--demo")
    try:
        lone_ms = []
        for n in range(LONE_EVENTS + 1):  # the first one waits for the worker's group to form: not counted
            reset(receiver_port)
            time.sleep(2)
            sent = asyncio.run(publish_created(env, f"job_lone{uuid.uuid4().hex[:10]}"))
            wait_count(receiver_port, args.endpoints, 120)
            if n:
                lone_ms.append(min(stats(receiver_port, full=True)["arrivals"].values()) - sent)
    finally:
        worker.terminate()
        worker.wait(30)
    lone_ms = sorted(x * 1000 for x in lone_ms)
    print(f"lone job through a worker on an idle system, job.created published -> first arrival, {LONE_EVENTS} runs: "
          f"median {statistics.median(lone_ms):.1f} ms, worst {lone_ms[-1]:.1f} ms (goal <= 10 ms plus the "
          "worker's own two writes)")


def tracing_cost(bootstrap: str, args: argparse.Namespace) -> None:
    """Throughput with tracing off, on (a span per record that makes deliveries and per attempt,
    batched to an OTLP/HTTP sink in its own process), and off again: the cost as ratios."""
    receiver_port, sink_port = free_port(), free_port()
    scratch = tempfile.mkdtemp()
    Path(scratch, "receiver.py").write_text(RECEIVER)
    helpers = [subprocess.Popen([sys.executable, script, str(port)])
               for script, port in ((str(Path(scratch, "receiver.py")), receiver_port), (otlp_sink.SCRIPT, sink_port))]
    rates = []
    try:
        time.sleep(1)
        for traced in (False, True, False):
            env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "JOBWIRE_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}.",
                   "JOBWIRE_SECRET_KEY": SECRET_KEY, "JOBWIRE_ALLOWED_TARGETS": "127.0.0.1/32", "JOBWIRE_DEV": "1",
                   "JOBWIRE_EVENTS_PARTITIONS": "6", "JOBWIRE_LOG_LEVEL": "WARNING",
                   **({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
                       "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                       "OTEL_TRACES_SAMPLER_ARG": str(args.sample)} if traced else {})}
            asyncio.run(setup(env, receiver_port, args.endpoints))
            reset(receiver_port)
            asyncio.run(publish_jobs(env, 0, args.jobs, sampled=args.sample if args.traced_producer else None))
            # BENCH_DISPATCHER_WRAP (py-spy, say) wraps the traced run's dispatcher.
            dispatcher = start_process(env, "dispatcher", "--metrics-port", "0",
                                       wrap=os.environ.get("BENCH_DISPATCHER_WRAP", "") if traced else "")
            try:
                first, last = wait_count(receiver_port, args.jobs * args.endpoints, 600)
            finally:
                stop_process(dispatcher)
            rates.append((args.jobs * args.endpoints - 1) / (last - first))
            print(f"tracing {'on ' if traced else 'off'}: {rates[-1]:,.0f} deliveries/s")
    finally:
        for helper in helpers:
            helper.terminate()
            helper.wait()
    off = (rates[0] + rates[2]) / 2
    print(f"tracing cost: on/off {rates[1] / off:.2f} (goal >= 0.90); off runs differ by "
          f"{abs(rates[0] - rates[2]) / off:.0%} (the noise)")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cost(bootstrap: str, settle_s: float = 45, window_s: float = 20) -> None:
    """An idle dispatcher (no events, no endpoints) after ``settle_s``: its share of a core over
    ``window_s``, and the broker's beside it (a broker started here only; ``settle_s`` lets its
    start-up's compilation pass), with the broker alone over the window before as the baseline."""
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "JOBWIRE_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}.",
           "JOBWIRE_SECRET_KEY": SECRET_KEY, "JOBWIRE_DEV": "1", "JOBWIRE_LOG_LEVEL": "WARNING"}
    asyncio.run(ensure_topics(load_settings(env)))
    broker = bench_broker_pid()
    if broker is not None:
        time.sleep(settle_s)
        before = cpu_seconds(broker)
        time.sleep(window_s)
        alone = (cpu_seconds(broker) - before) / window_s
    dispatcher = start_process(env, "dispatcher", "--metrics-port", "0")
    try:
        time.sleep(settle_s)
        if dispatcher.poll() is not None:
            raise RuntimeError(f"the dispatcher exited ({dispatcher.returncode}) before the measurement")
        ours, theirs = cpu_seconds(dispatcher.pid), cpu_seconds(broker) if broker is not None else 0.0
        time.sleep(window_s)
        if dispatcher.poll() is not None:
            raise RuntimeError(f"the dispatcher exited ({dispatcher.returncode}) during the measurement")
        ours = (cpu_seconds(dispatcher.pid) - ours) / window_s
        print(f"idle dispatcher: {ours:.1%} of a core over {window_s:.0f} s", end="")
        if broker is not None:
            theirs = (cpu_seconds(broker) - theirs) / window_s
            print(f"; the broker beside it {theirs:.1%} (alone before it: {alone:.1%})", end="")
        print()
    finally:
        stop_process(dispatcher)


def run(bootstrap: str, args: argparse.Namespace) -> None:
    receiver_port = free_port()
    receiver_dir = tempfile.mkdtemp()
    Path(receiver_dir, "receiver.py").write_text(RECEIVER)
    receiver = subprocess.Popen([sys.executable, str(Path(receiver_dir, "receiver.py")), str(receiver_port)])
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "JOBWIRE_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}.",
           "JOBWIRE_SECRET_KEY": SECRET_KEY, "JOBWIRE_ALLOWED_TARGETS": "127.0.0.1/32", "JOBWIRE_DEV": "1",
           "JOBWIRE_EVENTS_PARTITIONS": "6", "JOBWIRE_LOG_LEVEL": "WARNING"}
    dispatcher = None
    try:
        time.sleep(1)
        asyncio.run(setup(env, receiver_port, args.endpoints))
        if args.only_lone:
            dispatcher = start_process(env, "dispatcher", "--metrics-port", "0")
            asyncio.run(publish_jobs(env, 0, 1))  # the dispatcher's group formed before timing starts
            wait_count(receiver_port, args.endpoints, 120)
        else:
            dispatcher = throughput(env, args, receiver_port)
            latency(env, args, receiver_port)
        lone_event(env, args, receiver_port, args.jobs + int(args.rate * args.seconds))
        lone_job(env, args, receiver_port)
    finally:
        if dispatcher:
            stop_process(dispatcher)
        receiver.terminate()
        receiver.wait()
    if not args.only_lone:
        elapsed = asyncio.run(restore_time(env, args.live_jobs))
        print(f"restore of jobs.state: {args.live_jobs:,} live jobs in {elapsed:.1f} s "
              f"({args.live_jobs / elapsed:,.0f} jobs/s)")


if __name__ == "__main__":
    main()
