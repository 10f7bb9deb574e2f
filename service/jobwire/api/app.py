"""Builds the Starlette app; the lifespan is the one place that wires Kafka clients together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobwire.api import jobs, system
from jobwire.api.problems import Problem, on_http_exception, on_problem, on_unexpected
from jobwire.config import Settings
from jobwire.events import Event
from jobwire.log import JobEvents, LogReader, Position, make_producer
from jobwire.metrics import HTTP_LATENCY
from jobwire.projection import Projection, follow
from jobwire.topics import Topics

log = logging.getLogger(__name__)


class Publisher(Protocol):
    async def publish(self, event: Event) -> Position: ...


@dataclass
class ApiComponents:
    """What the routes need; the Kafka lifespan builds these, unit tests pass their own."""

    projection: Projection
    publisher: Publisher
    start_end_offsets: dict[int, int] = field(default_factory=dict)
    feeding: Callable[[], bool] = lambda: True


class AccessLog:
    """One log line and one latency observation per request (raw ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
            route = scope.get("route")
            HTTP_LATENCY.labels(scope["method"], getattr(route, "path", "unmatched"), str(status[0])).observe(elapsed)
            log.info("request method=%s path=%s status=%d latency_ms=%.1f",
                     scope["method"], scope["path"], status[0], elapsed * 1000)


def resource(path: str, **endpoints: Callable[[Request], Awaitable[Response]]) -> Route:
    """One route per path, dispatching on the method, so a 405's ``Allow`` lists all of them."""

    async def endpoint(request: Request) -> Response:
        return await endpoints[request.method](request)

    return Route(path, endpoint, methods=list(endpoints))


ROUTES = [
    resource("/v1/jobs", GET=jobs.list_jobs, POST=jobs.submit),
    resource("/v1/jobs/{job_id}", GET=jobs.get_job, DELETE=jobs.cancel),
    resource("/v1/jobs/{job_id}/cancel", POST=jobs.cancel),
    resource("/v1/jobs/{job_id}/events", GET=jobs.job_events, POST=jobs.post_event),
    resource("/v1/jobs/{job_id}/result", GET=jobs.job_result),
    resource("/healthz", GET=system.healthz),
    resource("/readyz", GET=system.readyz),
    resource("/metrics", GET=system.metrics),
    resource("/openapi.json", GET=system.openapi),
    resource("/docs", GET=system.docs),
]


@contextlib.asynccontextmanager
async def kafka_components(settings: Settings) -> AsyncIterator[ApiComponents]:
    """Producer, projection and the reader that feeds it, started and stopped together."""
    topics = Topics(settings.topic_prefix)
    producer = make_producer(settings.kafka)
    reader = LogReader(settings.kafka, topics.events)
    await producer.start()
    try:
        await reader.start()
    except BaseException:
        await producer.stop()
        raise
    projection = Projection(retention_s=settings.retention_days * 86400)
    stop = asyncio.Event()
    ends = await reader.end_offsets()
    feed = asyncio.create_task(follow(projection, reader, stop), name="projection-feed")
    log.info("projection rebuilding topic=%s end_offsets=%s", topics.events, ends)
    try:
        yield ApiComponents(projection, JobEvents(producer, topics.events), ends, lambda: not feed.done())
    finally:
        stop.set()
        feed.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await feed
        try:
            await reader.stop()
        finally:
            await producer.stop()


def create_app(settings: Settings, components: ApiComponents | None = None) -> Starlette:
    """The API app. Without ``components`` the lifespan connects to Kafka."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with contextlib.AsyncExitStack() as stack:
            parts = components or await stack.enter_async_context(kafka_components(settings))
            loop = asyncio.get_running_loop()
            yield {
                "settings": settings,
                "projection": parts.projection,
                "publisher": parts.publisher,
                "start_end_offsets": parts.start_end_offsets,
                "feeding": parts.feeding,
                "clock": loop.time,
            }

    return Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        middleware=[Middleware(AccessLog)],
        exception_handlers={Problem: on_problem, HTTPException: on_http_exception, Exception: on_unexpected},
    )
