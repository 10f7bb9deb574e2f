"""The dispatcher's HTTP port: ``/metrics`` for Prometheus, under the same rule as the API's
(every tenant's figures, so ``JOBWIRE_METRICS_TOKEN`` as a bearer token, open without one in
dev mode only), and ``/healthz`` for liveness probes, which tells nothing but that the
process answers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry

from jobwire.config import Settings
from jobwire.metrics import exposition, scrape_refusal


def metrics_app(settings: Settings, registry: CollectorRegistry) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        refusal = scrape_refusal(settings.metrics_token, settings.dev, request.headers.get("Authorization"))
        if refusal is not None:
            return web.json_response({"title": "Unauthorized", "status": 401, "detail": refusal}, status=401,
                                     content_type="application/problem+json",
                                     headers={"WWW-Authenticate": 'Bearer realm="jobwire metrics"'})
        body, content_type = exposition(registry, request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


@contextlib.asynccontextmanager
async def serving_metrics(settings: Settings, registry: CollectorRegistry, port: int) -> AsyncIterator[None]:
    """The port served on ``JOBWIRE_HOST`` for as long as the context lasts."""
    runner = web.AppRunner(metrics_app(settings, registry), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, port).start()
        yield
    finally:
        await runner.cleanup()
