"""Builds the Starlette app; the lifespan is the one place that wires Kafka clients together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobwire import tracing
from jobwire.api import files, jobs, system, webhooks
from jobwire.api.deliverylog import DeliveryLog
from jobwire.api.file_urls import FileUrls
from jobwire.api.limits import RequestLimits
from jobwire.api.portal_links import PortalLinks
from jobwire.api.problems import Problem, on_http_exception, on_problem, on_unexpected
from jobwire.api.profiles.model import available, load_profile, load_profiles
from jobwire.api.profiles.routes import profile_routes, root_conflicts
from jobwire.api.projection import Projection
from jobwire.api.resends import RecentResends
from jobwire.api.routing import resource
from jobwire.api.store import Store, feed
from jobwire.api.traced import TracedRequests
from jobwire.config import Settings
from jobwire.errors import ConfigError
from jobwire.events import Event
from jobwire.kafka.clients import make_producer
from jobwire.kafka.readers import LogReader, follow_raw
from jobwire.kafka.writers import JobEvents, KeyedWriter
from jobwire.metrics import API_METRICS, HTTP_LATENCY, registry_of
from jobwire.positions import AppliedPositions, Position
from jobwire.records import RecordSink
from jobwire.storage import BlobStore, open_store, spool_dir
from jobwire.storage.files import sweep
from jobwire.storage.spool import clear_stale
from jobwire.topics import Topics
from jobwire.webhooks.registry import EndpointRegistry, EndpointWriter
from jobwire.webhooks.secretbox import SecretBox

log = logging.getLogger(__name__)


class Publisher(Protocol):
    async def publish(self, event: Event) -> Position: ...


@dataclass
class ApiComponents:
    """What the routes need; the Kafka lifespan builds these, unit tests pass their own."""

    projection: Projection
    publisher: Publisher
    endpoints: EndpointRegistry
    endpoint_writer: EndpointWriter
    deliveries: DeliveryLog
    delivery_requests: RecordSink
    #: What is still behind the log ends seen at start-up ("topic:partition" -> records, and
    #: "progress" as a share of the catch-up); empty when ready.
    readiness: Callable[[], dict[str, Any]] = dict


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class AccessLog:
    """One log line and one latency observation per request (raw ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._latency: dict[tuple[str, str, int], Callable[[float, dict[str, str] | None], None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"] if scope["method"] in HTTP_METHODS else "OTHER"  # label values stay bounded
            key = (method, getattr(scope.get("route"), "path", "unmatched"), status[0])
            observe = self._latency.get(key)
            if observe is None:  # labels() per request is measurable; the key set is bounded by routes
                observe = self._latency[key] = HTTP_LATENCY.labels(key[0], key[1], str(key[2])).observe
            observe(elapsed, tracing.exemplar())
            # The path as sent (percent-encoded): decoded, a space or a newline in it would
            # write fields or lines of the client's choosing into the log.
            path = scope["path"]
            if path.startswith(SECRET_PATH_PREFIXES):
                # The path is the credential (a signed upload URL): the route names it, not the token.
                path = "/v1/uploads/{token}"
            if not (path.isascii() and path.isprintable()) or " " in path:
                path = quote(path, safe=PATH_SAFE)
            log.info("request method=%s path=%s status=%d latency_ms=%.1f",
                     scope["method"], path, status[0], elapsed * 1000)


#: Paths whose last segment is a credential: logged as their route.
SECRET_PATH_PREFIXES = ("/v1/uploads/",)
#: Characters a logged path keeps as they are (RFC 3986 pchar and "/"); the rest is %-encoded.
PATH_SAFE = "/:@!$&'()*+,;=-._~"


ROUTES = [
    resource("/v1/jobs", GET=jobs.list_jobs, POST=jobs.submit),
    resource("/v1/jobs:batch", POST=jobs.submit_batch),
    resource("/v1/jobs/{job_id}", GET=jobs.get_job, DELETE=jobs.cancel),
    resource("/v1/jobs/{job_id}/cancel", POST=jobs.cancel),
    resource("/v1/jobs/{job_id}/events", GET=jobs.job_events, POST=jobs.post_event),
    resource("/v1/jobs/{job_id}/result", GET=jobs.job_result),
    resource("/v1/jobs/{job_id}/deliveries", GET=webhooks.job_deliveries),
    resource("/v1/webhooks/callback-secret", GET=webhooks.callback_secret),
    resource("/v1/files", POST=files.upload_file),
    resource("/v1/files/{file_id}", GET=files.get_file, DELETE=files.delete_file),
    resource("/v1/files/{file_id}/content", GET=files.file_content, HEAD=files.file_content),
    resource("/v1/uploads/{token}", PUT=files.put_upload),
    resource("/v1/webhooks/endpoints", GET=webhooks.list_endpoints, POST=webhooks.create_endpoint),
    resource("/v1/webhooks/endpoints/{endpoint_id}", GET=webhooks.get_endpoint, PATCH=webhooks.patch_endpoint,
             DELETE=webhooks.delete_endpoint),
    resource("/v1/webhooks/endpoints/{endpoint_id}/rotate-secret", POST=webhooks.rotate_secret),
    resource("/v1/webhooks/endpoints/{endpoint_id}/public-key", GET=webhooks.endpoint_public_keys),
    resource("/v1/webhooks/endpoints/{endpoint_id}/test", POST=webhooks.test_endpoint),
    resource("/v1/webhooks/endpoints/{endpoint_id}/deliveries", GET=webhooks.list_deliveries),
    resource("/v1/webhooks/endpoints/{endpoint_id}/health", GET=webhooks.endpoint_health),
    resource("/v1/webhooks/endpoints/{endpoint_id}/recover", POST=webhooks.recover),
    resource("/v1/webhooks/deliveries/{delivery_id}", GET=webhooks.get_delivery),
    resource("/v1/webhooks/deliveries/{delivery_id}/retry", POST=webhooks.retry_delivery),
    resource("/v1/webhooks/portal-link", POST=webhooks.create_portal_link),
    resource("/healthz", GET=system.healthz),
    resource("/readyz", GET=system.readyz),
    resource("/metrics", GET=system.metrics),
    resource("/openapi.json", GET=system.openapi),
    resource("/asyncapi.json", GET=system.asyncapi),
    resource("/docs", GET=system.docs),
    resource("/portal", GET=system.portal),
    resource("/portal.js", GET=system.portal_js),
    Route("/portal/login", webhooks.portal_login, methods=["GET", "POST"], name="portal_login"),
]


@contextlib.asynccontextmanager
async def kafka_components(settings: Settings) -> AsyncIterator[ApiComponents]:
    """Producer, the store, its read models and the readers that feed them, started and stopped together."""
    topics = Topics(settings.topic_prefix)
    retention_s = settings.retention_days * 86400
    async with contextlib.AsyncExitStack() as stack:
        store = Store(settings.data_dir)
        stack.callback(store.close)
        # No linger: every write here is one request waiting for it (a submit, a cancel); the
        # producer batches anyway while a request to the broker is in flight.
        producer = make_producer(settings.kafka, linger_ms=0)
        await producer.start()
        stack.push_async_callback(producer.stop)
        readers = {name: LogReader(settings.kafka, topic) for name, topic in (
            ("events", topics.events), ("endpoints", topics.endpoints),
            ("attempts", topics.attempts))}
        for reader in readers.values():
            await reader.start()
            stack.push_async_callback(reader.stop)
        projection = Projection(store, topics.events, retention_s)
        deliveries = DeliveryLog(store, topics.attempts, retention_s)
        registry = EndpointRegistry()
        ends = {name: await reader.end_offsets() for name, reader in readers.items()}
        for name, model in (("events", projection), ("attempts", deliveries)):
            reader = readers[name]
            reader.seek(model.resume(await reader.beginning_offsets(), ends[name]))
        started = {name: dict(model.positions.applied) for name, model in (
            ("events", projection), ("attempts", deliveries))}
        stop = asyncio.Event()
        feeds = [
            asyncio.create_task(feed(projection, readers["events"].raw_batches(timeout_ms=100), stop),
                                name="projection-feed"),
            asyncio.create_task(follow_raw(readers["endpoints"], registry.apply, registry.positions, stop),
                                name="endpoints-feed"),
            asyncio.create_task(feed(deliveries, readers["attempts"].raw_batches(timeout_ms=100), stop),
                                name="deliveries-feed"),
        ]
        stack.push_async_callback(stop_tasks, feeds, stop)
        log.info("projection catching up topic=%s from=%s to=%s", topics.events, started["events"], ends["events"])

        def readiness() -> dict[str, Any]:
            # /readyz waits for the endpoints too: an endpoint created just before a restart
            # must not answer 404 on a ready replica.
            behind: dict[str, Any] = {
                **lag(topics.events, projection.positions, ends["events"]),
                **lag(topics.endpoints, registry.positions, ends["endpoints"]),
                **{f"feed:{task.get_name()}": 1 for task in feeds if task.done()},
            }
            if behind:
                behind["progress"] = progress(started["events"], projection.positions.applied, ends["events"])
            return behind

        yield ApiComponents(
            projection, JobEvents(producer, topics.events), registry,
            EndpointWriter(KeyedWriter(producer, topics.endpoints)), deliveries,
            KeyedWriter(producer, topics.requests), readiness,
        )


def lag(topic: str, positions: AppliedPositions, ends: dict[int, int]) -> dict[str, int]:
    return {f"{topic}:{p}": end - positions.applied.get(p, 0)
            for p, end in ends.items() if positions.applied.get(p, 0) < end}


def progress(started: dict[int, int], applied: dict[int, int], ends: dict[int, int]) -> float:
    """The share of the records between where a feed started and the log end seen at start-up
    that it has applied: what a rebuilding replica reports on /readyz."""
    total = sum(end - started.get(p, 0) for p, end in ends.items())
    done = sum(min(applied.get(p, 0), end) - started.get(p, 0) for p, end in ends.items())
    return round(done / total, 4) if total > 0 else 1.0


#: How often a replica looks for expired files, and how many keys one look reads.
SWEEP_EVERY_S = 60.0
SWEEP_KEYS = 500


#: Pages of keys one look reads at most: a look goes on while pages come back full.
SWEEP_PAGES = 100


async def sweep_files(store: BlobStore) -> None:
    """Remove expired files, every minute, page after page until the listing ends (bounded per
    look), for ever. Every replica sweeps; a file removed twice is no harm. Reads already treat
    an expired file as gone."""
    while True:
        await asyncio.sleep(SWEEP_EVERY_S)
        after: str | None = None
        removed = 0
        try:
            for _ in range(SWEEP_PAGES):
                count, after = await sweep(store, datetime.now(UTC), after=after, limit=SWEEP_KEYS)
                removed += count
                if after is None:
                    break
        except Exception:  # a store that is down now may be up at the next look
            log.warning("files sweep failed", exc_info=True)
        if removed:
            log.info("files expired removed=%d", removed)


async def stop_tasks(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    stop.set()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def create_app(settings: Settings, components: ApiComponents | None = None) -> Starlette:
    """The API app. Without ``components`` the lifespan connects to Kafka. The app owns its
    metrics registry: what /metrics serves is made here, not at import."""
    metrics_registry = registry_of(API_METRICS)
    names = tuple(available()) if "all" in settings.profiles else settings.profiles
    if settings.root_profile and settings.root_profile not in names:
        names = (*names, settings.root_profile)  # a dialect at the root is under its prefix too
    profiles = load_profiles(names)
    root = load_profile(settings.root_profile) if settings.root_profile else None
    if root is not None and (conflicts := root_conflicts(root, ROUTES)):
        raise ConfigError("JOBWIRE_PROFILE", f"the {root.name} dialect cannot be mounted at the root: "
                          f"{'; '.join(conflicts)}; mount it under its prefix only")
    # A dialect at the root goes first: its paths win over jobwire's own where they meet.
    routes = [*(profile_routes(root, "") if root else []), *ROUTES,
              *(route for profile in profiles for route in profile_routes(profile))]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with contextlib.AsyncExitStack() as stack:
            parts = components if components is not None else await stack.enter_async_context(
                kafka_components(settings))
            loop = asyncio.get_running_loop()
            file_store = open_store(settings)
            stack.push_async_callback(file_store.close)
            try:
                await file_store.start()
            except Exception:  # a store down now may be up by the first request that needs it
                log.warning("file store not reachable at start storage=%s", settings.storage.kind, exc_info=True)
            await asyncio.to_thread(clear_stale, spool_dir(settings))
            sweeper = asyncio.create_task(sweep_files(file_store), name="files-sweeper")
            stack.push_async_callback(stop_tasks, [sweeper], asyncio.Event())
            yield {
                "settings": settings,
                "projection": parts.projection,
                "publisher": parts.publisher,
                "endpoints": parts.endpoints,
                "endpoint_writer": parts.endpoint_writer,
                "deliveries": parts.deliveries,
                "delivery_requests": parts.delivery_requests,
                "secret_box": SecretBox(settings.secret_key) if settings.secret_key else None,
                "portal_links": PortalLinks(settings.secret_key, tenant_keys=settings.keys_of) if settings.secret_key else None,
                "resends": RecentResends(),
                "readiness": parts.readiness,
                "clock": loop.time,
                "metrics_registry": metrics_registry,
                "profiles_mounted": (names, settings.root_profile),
                "files": file_store,
                "file_urls": FileUrls(settings.secret_key, settings.file_url_ttl_s) if settings.secret_key else None,
            }

    return Starlette(
        routes=routes,
        lifespan=lifespan,
        # Inside AccessLog, so its 429s are logged and timed like any answer.
        middleware=[*([Middleware(TracedRequests)] if tracing.enabled() else []),
                    Middleware(AccessLog), Middleware(RequestLimits, settings=settings)],
        exception_handlers={Problem: on_problem, HTTPException: on_http_exception, Exception: on_unexpected},
    )
