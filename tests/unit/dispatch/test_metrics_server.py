"""The dispatcher's port, over real HTTP on loopback: /metrics only with the metrics token
(it spans every tenant), open in dev mode only; /healthz for probes, always."""

from __future__ import annotations

import aiohttp

from jobwire.config import load_settings
from jobwire.devtools.broker import free_port
from jobwire.dispatch.metrics_server import serving_metrics
from jobwire.metrics import DELIVERY_OUTCOMES, DISPATCHER_METRICS, registry_of

TOKEN = "metrics-token-0123456789abcdef"


async def scrape(port: int, **headers: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics", headers=headers) as got:
        return got.status, await got.text()


async def healthz(port: int) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as got:
        return got.status


async def test_metrics_need_the_token_outside_dev_mode() -> None:
    registry = registry_of(DISPATCHER_METRICS)
    DELIVERY_OUTCOMES.labels(outcome="succeeded").inc()
    port = free_port()
    async with serving_metrics(load_settings({}), registry, port):
        status, body = await scrape(port)
        assert status == 401 and "JOBWIRE_METRICS_TOKEN" in body and "jobwire_webhook" not in body
        assert await healthz(port) == 200
    port = free_port()
    async with serving_metrics(load_settings({"JOBWIRE_METRICS_TOKEN": TOKEN}), registry, port):
        assert (await scrape(port, Authorization="Bearer wrong-token-0123456789"))[0] == 401
        assert (await scrape(port, Authorization="key_acme_0123456789"))[0] == 401
        status, body = await scrape(port, Authorization=f"Bearer {TOKEN}")
        assert status == 200 and "jobwire_webhook_attempts_total" in body
    port = free_port()
    async with serving_metrics(load_settings({"JOBWIRE_DEV": "1"}), registry, port):
        assert (await scrape(port))[0] == 200
