"""The ``jobwire`` command."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import gc
import importlib
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

import orjson

from jobwire.config import Settings, load_settings
from jobwire.errors import ConfigError, JobwireError

DEFAULT_KAFKA_PORT = 9092


def _settings() -> Settings:
    return load_settings()


def _traced(service: str) -> None:
    """Tracing on for this process when OTEL_*/JOBWIRE_TRACING ask for it (jobwire/tracing.py)."""
    from jobwire import tracing

    try:
        tracing.configure(service)
    except ConfigError as exc:
        raise SystemExit(f"jobwire: {exc}") from None
    atexit.register(tracing.shutdown)  # what is buffered is exported before the process ends


def _broker(settings: Settings, port: int):  # type: ignore[no-untyped-def]
    from jobwire.devtools.broker import LocalKafka

    return LocalKafka(settings.kafka_cache_dir, settings.kafka_cache_dir / f"run-{port}", port=port)


def cmd_kafka(args: argparse.Namespace) -> int:
    if args.brokers > 1:
        return _kafka_cluster(args)
    from jobwire.devtools.broker import read_pid

    settings = _settings()
    broker = _broker(settings, args.port)
    if args.action == "start":
        if read_pid(broker.pid_file):
            print(f"already running: {broker.bootstrap} (pid {read_pid(broker.pid_file)})")
            return 0
        broker.start(die_with_parent=False)
        print(f"Kafka is up: KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap} (pid {broker.pid}, log {broker.log_file})")
    elif args.action == "stop":
        pid = read_pid(broker.pid_file)
        broker.stop()
        print("stopped" if pid else "not running")
    else:
        pid = read_pid(broker.pid_file)
        print(f"running: {broker.bootstrap} (pid {pid})" if pid else "not running")
        return 0 if pid else 3
    return 0


def _kafka_cluster(args: argparse.Namespace) -> int:
    from jobwire.devtools.cluster import LocalCluster

    settings = _settings()
    run_dir = settings.kafka_cache_dir / f"cluster-{args.port}x{args.brokers}"
    cluster = LocalCluster(settings.kafka_cache_dir, run_dir, brokers=args.brokers, first_port=args.port)
    running = cluster.running()
    if args.action == "start":
        if len(running) == args.brokers:
            print(f"already running: {cluster.bootstrap}")
            return 0
        cluster.start(die_with_parent=False)
        print(f"Kafka cluster of {args.brokers} is up: KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap} (data {run_dir})")
    elif args.action == "stop":
        cluster.stop()
        print("stopped" if running else "not running")
    else:
        print(f"running nodes {running} of {args.brokers}: {cluster.bootstrap}" if running else "not running")
        return 0 if len(running) == args.brokers else 3
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from jobwire.kafka.admin import ensure_topics, replication_of

    settings = _settings()
    brokers, replication = asyncio.run(replication_of(settings))
    created = asyncio.run(ensure_topics(settings))
    print("created: " + ", ".join(created) if created else "all topics already exist")
    print(f"replication factor {replication.factor}, min.insync.replicas {replication.min_insync} "
          f"(the cluster has {brokers} broker{'s' if brokers != 1 else ''})")
    return 0


def _events_from(args: argparse.Namespace) -> list[dict[str, Any]]:
    from jobwire.events import new_event

    if args.type:
        if not args.job or not args.tenant:
            raise SystemExit("jobwire publish: --type needs --job and --tenant")
        data = orjson.loads(args.data) if args.data else {}
        return [new_event(args.type, args.job, args.tenant, data, source=args.source).to_dict()]
    text = sys.stdin.read().strip()
    if not text:
        raise SystemExit("jobwire publish: give --type/--job/--tenant/--data, or event JSON on stdin")
    if text.startswith("["):
        documents: list[dict[str, Any]] = orjson.loads(text)
        return documents
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


async def _publish(settings: Settings, documents: list[dict[str, Any]]) -> None:
    from jobwire.events import from_document
    from jobwire.kafka.clients import make_producer
    from jobwire.kafka.writers import JobEvents
    from jobwire.topics import Topics

    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        publisher = JobEvents(producer, Topics(settings.topic_prefix).events)
        for document in documents:
            event = from_document(document)
            position = await publisher.publish(event)
            print(f"{position} {event.type} {event.subject} {event.id}")
    finally:
        await producer.stop()


def cmd_publish(args: argparse.Namespace) -> int:
    asyncio.run(_publish(_settings(), _events_from(args)))
    return 0


async def _tail(settings: Settings, from_beginning: bool, job: str | None, limit: int | None) -> None:
    from jobwire.kafka.readers import LogReader
    from jobwire.topics import Topics

    shown = 0
    async with LogReader(settings.kafka, Topics(settings.topic_prefix).events, from_end=not from_beginning) as reader:
        async for batch in reader.batches():
            for record in batch:
                if record.event is None:
                    print(f"{record.position} INVALID {record.invalid}", flush=True)
                elif job is None or record.event.subject == job:
                    print(f"{record.position} {orjson.dumps(record.event.to_dict()).decode()}", flush=True)
                else:
                    continue
                shown += 1
                if limit is not None and shown >= limit:
                    return


def cmd_tail(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_tail(_settings(), args.from_beginning, args.job, args.limit))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from jobwire.api.app import create_app
    from jobwire.api.server import server_config

    settings = _settings()
    if not settings.api_keys:
        raise SystemExit("jobwire api: set JOBWIRE_API_KEYS (tenant:key,...) or JOBWIRE_DEV=1")
    _traced("jobwire-api")
    server = uvicorn.Server(server_config(create_app(settings), settings, args.host, args.port))
    # The store's writer thread folds in Python: at the default 5 ms a request that arrives
    # while it holds the GIL waits up to that long for the loop. 1 ms keeps GET's p99 under
    # 5 ms during a catch-up (bench/api.py, the fresh replica's figures).
    sys.setswitchinterval(0.001)
    with contextlib.suppress(KeyboardInterrupt):
        # uvicorn re-raises the SIGTERM it shut down on; a clean stop exits 0, as uvicorn.run did.
        server.run()
    return 0 if server.started else 3  # 3: what uvicorn.run exits with when start-up fails


#: The youngest generation is collected after this many allocations (Python's default is 700).
YOUNG_COLLECTION_EVERY = 50_000


def tune_collector() -> None:
    """The dispatcher's garbage collector, once it is built: what start-up made (modules,
    settings, clients) is frozen out of every later collection, and the youngest generation is
    collected every ``YOUNG_COLLECTION_EVERY`` allocations. Under load it spent 6-8 % of its CPU
    in the collector, mostly full collections walking objects that live as long as it does
    (docs/benchmarks.md). The older generations keep Python's ratios, so cyclic garbage is
    still collected, later. Not for the worker: it runs its users' code, whose cycles may hold
    large buffers."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, 10, 10)


def run_service(main: Coroutine[Any, Any, None]) -> None:
    """A long-running process's event loop: uvloop when installed (the API gets it through
    uvicorn), asyncio's own otherwise. uvloop cuts the cost of every socket wake-up, which is
    most of what the dispatcher and the worker do."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


async def _run_workers(settings: Settings, handlers: dict[str, Any], concurrency: int) -> None:
    from jobwire.sdk.worker import Worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    workers = [Worker(settings, operation, handler, concurrency=concurrency) for operation, handler in handlers.items()]
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        print(f"worker running: {', '.join(handlers)}", file=sys.stderr, flush=True)
        await asyncio.gather(*(worker.run(stop=stop) for worker in workers))


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings()
    if args.demo:
        from jobwire.devtools.demo_ops import DEMO_OPERATIONS

        handlers: dict[str, Any] = dict(DEMO_OPERATIONS)
    elif args.operation and args.handler:
        module_name, _, function = args.handler.partition(":")
        handlers = {args.operation: getattr(importlib.import_module(module_name), function)}
    else:
        raise SystemExit("jobwire worker: give --demo, or --operation NAME --handler module:function")
    _traced("jobwire-worker")
    run_service(_run_workers(settings, handlers, args.concurrency))
    return 0


async def _run_dispatcher(settings: Settings, metrics_port: int | None) -> None:
    from jobwire.dispatch.service import Dispatcher

    dispatcher = Dispatcher(settings)
    tune_collector()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, dispatcher.stop)
    if not metrics_port:
        await dispatcher.run()
        return
    from jobwire.dispatch.metrics_server import serving_metrics
    from jobwire.metrics import DISPATCHER_METRICS, registry_of

    async with serving_metrics(settings, registry_of(DISPATCHER_METRICS), metrics_port):
        await dispatcher.run()


def cmd_dispatcher(args: argparse.Namespace) -> int:
    settings = _settings()
    if not settings.secret_key:
        raise SystemExit("jobwire dispatcher: set JOBWIRE_SECRET_KEYS (they decrypt endpoint secrets)")
    _traced("jobwire-dispatcher")
    run_service(_run_dispatcher(settings, args.metrics_port))
    return 0


def _first_key(settings: Settings, given: str | None) -> str:
    """--api-key, else the first of JOBWIRE_API_KEYS, else the running dev stack's key."""
    from jobwire.devtools.stack import running_stack

    if given:
        return given
    if settings.api_keys:
        return settings.api_keys[0][1]
    stack = running_stack(settings)
    if stack is None:
        raise SystemExit("no API key: start the stack with `make run` (this command then finds it), "
                         "or give --api-key, or set JOBWIRE_API_KEYS")
    return stack.api_key


def _api_url(settings: Settings, given: str | None) -> str:
    """--api, else the running dev stack's URL, else the default local one."""
    from jobwire.devtools.stack import running_stack

    stack = running_stack(settings)
    return given or (stack.url if stack else f"http://127.0.0.1:{settings.port}")


def cmd_receiver(args: argparse.Namespace) -> int:
    from jobwire.devtools.demo_receiver import serve

    settings = _settings()
    asyncio.run(serve(_api_url(settings, args.api), _first_key(settings, args.api_key), "127.0.0.1", args.port))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from jobwire.devtools.demo import run_demo

    settings = _settings()
    return asyncio.run(run_demo(_api_url(settings, args.api), _first_key(settings, args.api_key)))


def cmd_submit(args: argparse.Namespace) -> int:
    from jobwire.sdk.client import ApiError, Client

    try:
        parameters = orjson.loads(args.parameters)
        metadata = orjson.loads(args.metadata) if args.metadata else None
    except ValueError as exc:
        print(f"jobwire: --parameters and --metadata must be JSON: {exc}", file=sys.stderr)
        return 2
    settings = _settings()

    async def submit() -> dict[str, Any]:
        async with Client(_api_url(settings, args.api), _first_key(settings, args.api_key)) as client:
            return await client.submit(args.operation, parameters, metadata=metadata,
                                       idempotency_key=args.idempotency_key, wait_s=args.wait,
                                       timeout_s=args.timeout_s, pending_timeout_s=args.pending_timeout_s,
                                       heartbeat_timeout_s=args.heartbeat_timeout_s)
    try:
        task = asyncio.run(submit())
    except ApiError as exc:
        for error in [None, *exc.problem.get("errors", [])]:
            print(f"jobwire: {exc}" if error is None else f"  {error.get('pointer')}: {error.get('detail')}",
                  file=sys.stderr)
        return 1
    print(orjson.dumps(task, option=orjson.OPT_INDENT_2).decode())
    return 0


async def _reseal(settings: Settings) -> tuple[int, int]:
    """Seal every endpoint's secrets (and its custom headers and auth) with the current key
    (bound to their endpoint); returns
    (endpoints resealed, endpoints read).

    The new seals go in records of their own beside each snapshot (``Resealed``): one counts
    only while the snapshot still holds the secrets it was made from, so an API change written
    meanwhile is never overwritten. Such a change leaves its endpoint to the next round, which
    reads the topic again."""
    from jobwire.kafka.clients import make_producer
    from jobwire.kafka.writers import KeyedWriter
    from jobwire.topics import Topics
    from jobwire.webhooks.model import SealedSecret
    from jobwire.webhooks.registry import EndpointWriter, Resealed, read_registry, secrets_digest
    from jobwire.webhooks.secretbox import SecretBox, binding

    assert settings.secret_key is not None
    box, topic = SecretBox(settings.secret_key), Topics(settings.topic_prefix).endpoints
    producer = make_producer(settings.kafka)
    await producer.start()
    resealed: set[str] = set()
    try:
        writer = EndpointWriter(KeyedWriter(producer, topic))
        for _ in range(RESEAL_ROUNDS):
            registry = await read_registry(settings.kafka, topic)
            stale = [e for e in registry.endpoints.values() if not all(box.is_current(s.sealed) for s in e.secrets)
                     or (e.sealed_request is not None and not box.is_current(e.sealed_request))]
            if not stale:
                return len(resealed), len(registry.endpoints)
            for endpoint in stale:
                bound_to = binding(endpoint.tenant, endpoint.id)
                snapshot = registry.snapshot(endpoint.id)
                assert snapshot is not None
                secrets = tuple(SealedSecret(box.seal(box.open(s.sealed, bound_to=bound_to, unbound_too=True), bound_to=bound_to),
                                             s.expires_at) for s in endpoint.secrets)
                options = box.seal(box.open(endpoint.sealed_request, bound_to=bound_to, unbound_too=True),
                                   bound_to=bound_to) if endpoint.sealed_request else None
                await writer.reseal(Resealed(endpoint.id, secrets_digest(snapshot.secrets, snapshot.sealed_request),
                                             secrets, options))
                resealed.add(endpoint.id)
    finally:
        await producer.stop()
    raise SystemExit(f"jobwire secrets rotate: endpoints kept changing over {RESEAL_ROUNDS} rounds; run it again")


#: Rounds of read-and-reseal before giving up: each round loses only to an API change made
#: between its read and its write.
RESEAL_ROUNDS = 5


def cmd_secrets(args: argparse.Namespace) -> int:
    settings = _settings()
    if not settings.secret_key:
        raise SystemExit("jobwire secrets rotate: set JOBWIRE_SECRET_KEYS (the new key first, then the old ones)")
    rewritten, read = asyncio.run(_reseal(settings))
    print(f"resealed {rewritten} of {read} endpoints with the current key")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Every terminal event × endpoint subscribed to it, in the window, without an outcome."""
    import time

    from jobwire.dispatch.audit import audit
    from jobwire.timeutil import moment_ms

    now_ms = int(time.time() * 1000)
    try:
        since_ms, until_ms = moment_ms(args.since, now_ms), moment_ms(args.until, now_ms)
    except ValueError as exc:
        raise ConfigError("--since/--until", str(exc)) from None
    report = asyncio.run(audit(_settings(), since_ms, until_ms))
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        counts = report.counts
        print(f"audit {args.since} .. {args.until}: {report.terminal_events} terminal events, "
              f"{sum(counts.values())} (event, endpoint) pairs: {counts['delivered']} delivered, "
              f"{counts['dead']} dead-lettered, {counts['dropped']} dropped (endpoint deleted), "
              f"{counts['pending']} on the retry path, {counts['missing']} missing")
        for owed in report.missing[:1000]:
            print(f"missing job_id={owed.job_id} event_id={owed.event_id} endpoint_id={owed.endpoint_id} "
                  f"webhook_id={owed.webhook_id} event_type={owed.event_type}")
    return 0 if report.ok else 1


def cmd_dev(args: argparse.Namespace) -> int:
    from jobwire.devtools.stack import run_dev

    return run_dev(_settings(), kafka_port=args.kafka_port)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="jobwire",
        description="Job state changes as an event log on Kafka. Settings come from JOBWIRE_* and KAFKA_* "
        "environment variables (see README).",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    kafka = sub.add_parser("kafka", help="start, stop or check the local development Kafka broker")
    kafka.add_argument("action", choices=["start", "stop", "status"])
    kafka.add_argument("--port", type=int, default=DEFAULT_KAFKA_PORT,
                       help="broker port on 127.0.0.1 (default 9092); a cluster's nodes take the next ones too")
    kafka.add_argument("--brokers", type=int, default=1, choices=range(1, 10), metavar="N",
                       help="nodes in the local cluster (default 1; 3 gives replication factor 3, min.insync 2)")
    kafka.set_defaults(func=cmd_kafka)

    topics = sub.add_parser("topics", help="create jobwire's topics (idempotent)")
    topics.add_argument("action", choices=["create"])
    topics.set_defaults(func=cmd_topics)

    publish = sub.add_parser(
        "publish", help="publish a job event from flags, or events (JSON, a JSON array or NDJSON) from stdin"
    )
    publish.add_argument("--type", help="event type, e.g. job.created")
    publish.add_argument("--job", help="job id (the event subject and record key)")
    publish.add_argument("--tenant", help="tenant owning the job")
    publish.add_argument("--data", help="the event data as JSON")
    publish.add_argument("--source", default="/cli", help="CloudEvents source (default /cli)")
    publish.set_defaults(func=cmd_publish)

    tail = sub.add_parser("tail", help="print job events as they arrive")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest event, not the newest")
    tail.add_argument("--job", help="only this job's events")
    tail.add_argument("--limit", type=int, help="exit after this many events")
    tail.set_defaults(func=cmd_tail)

    api = sub.add_parser("api", help="serve the HTTP status API (uvicorn; JOBWIRE_HOST/JOBWIRE_PORT)")
    api.add_argument("--host", help="bind address (default JOBWIRE_HOST or 127.0.0.1)")
    api.add_argument("--port", type=int, help="port (default JOBWIRE_PORT or 8000)")
    api.set_defaults(func=cmd_api)

    dispatcher = sub.add_parser("dispatcher", help="deliver signed webhooks for finished jobs, with retries")
    dispatcher.add_argument("--metrics-port", type=int, default=9464,
                            help="port of /metrics (with JOBWIRE_METRICS_TOKEN) and /healthz (0: off)")
    dispatcher.set_defaults(func=cmd_dispatcher)

    worker = sub.add_parser("worker", help="run job handlers: the demo operations, or your own")
    worker.add_argument("--demo", action="store_true", help="run the demo operations sleep, wordcount and fail")
    worker.add_argument("--operation", help="operation name to take job.created events for")
    worker.add_argument("--handler", help="async handler as module:function")
    worker.add_argument("--concurrency", type=int, default=4, help="jobs run at once per operation")
    worker.set_defaults(func=cmd_worker)

    receiver = sub.add_parser("receiver", help="a demo webhook receiver: registers itself, verifies with svix, prints")
    receiver.add_argument("--api", help="API base URL (default: the running dev stack's, or http://127.0.0.1:8000)")
    receiver.add_argument("--api-key", help="API key (default: the first of JOBWIRE_API_KEYS, or the dev stack's)")
    receiver.add_argument("--port", type=int, default=8001, help="port on 127.0.0.1 (default 8001)")
    receiver.set_defaults(func=cmd_receiver)

    submit = sub.add_parser("submit", help="submit a job through the API and print its task object")
    submit.add_argument("--api", help="API base URL (default: the running dev stack's, or http://127.0.0.1:8000)")
    submit.add_argument("--api-key", help="API key (default: the first of JOBWIRE_API_KEYS, or the dev stack's)")
    submit.add_argument("--operation", required=True, help="operation name, e.g. convert")
    submit.add_argument("--parameters", default="{}", help="the job's parameters as JSON (default {})")
    submit.add_argument("--metadata", help="free-form metadata as JSON")
    submit.add_argument("--idempotency-key", help="repeat-safe submit: the same key names the same job")
    submit.add_argument("--wait", type=int, help="wait up to this many seconds for the job to finish")
    submit.add_argument("--timeout-s", type=float, help="fail the job with error.code timeout after this long")
    submit.add_argument("--pending-timeout-s", type=float, help="expire the job if no worker starts it in time")
    submit.add_argument("--heartbeat-timeout-s", type=float,
                        help="fail a processing job whose worker is silent this long")
    submit.set_defaults(func=cmd_submit)

    demo = sub.add_parser("demo", help="submit demo jobs to a running stack and show them finish")
    demo.add_argument("--api", help="API base URL (default: the running dev stack's, or http://127.0.0.1:8000)")
    demo.add_argument("--api-key", help="API key (default: the first of JOBWIRE_API_KEYS, or the dev stack's)")
    demo.set_defaults(func=cmd_demo)

    keys = sub.add_parser("secrets", help="rotate: re-seal every endpoint secret under the newest of "
                                          "JOBWIRE_SECRET_KEYS, bound to its endpoint")
    keys.add_argument("action", choices=["rotate"])
    keys.set_defaults(func=cmd_secrets)

    audit = sub.add_parser("audit", help="prove delivery: every terminal event × subscribed endpoint without "
                                         "an outcome (exit 1 if any)")
    audit.add_argument("--since", default="1d", help="RFC 3339 time, or a duration ago (90s, 15m, 2h, 7d); default 1d")
    audit.add_argument("--until", default="1m", help="RFC 3339 time, or a duration ago; default 1m (in-flight "
                                                     "deliveries of the last minute are not yet owed)")
    audit.add_argument("--json", action="store_true", help="the report as JSON")
    audit.set_defaults(func=cmd_audit)
    dev = sub.add_parser("dev", help="run everything locally: broker, topics and services (what `make run` runs)")
    dev.add_argument("--kafka-port", type=int, default=DEFAULT_KAFKA_PORT)
    dev.set_defaults(func=cmd_dev)
    return top


def _interrupt(signum: int, frame: object) -> None:
    # SIGTERM takes the same orderly path as Ctrl-C: every command cleans up in `finally`.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    from jobwire.logging_setup import setup_logging

    args = parser().parse_args(argv)
    setup_logging()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return int(args.func(args))
    except JobwireError as exc:
        print(f"jobwire: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
