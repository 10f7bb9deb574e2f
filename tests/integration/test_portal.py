"""The webhook portal in a real browser (Debian's headless Chromium, driven by Playwright):
create an endpoint, send a test event, see the verified delivery appear."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobwire.kafka.admin import ensure_topics
from tests.conftest import settings_for
from tests.integration.test_dispatch import running_dispatcher
from tests.support.receiver import Receiver, ReceiverServer
from tests.support.servers import running_api

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
KEY = "key_portal_0123456789"
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"


@pytest.mark.timeout(180)
async def test_portal_creates_an_endpoint_and_shows_a_delivered_test_event(kafka_bootstrap: str) -> None:
    assert CHROMIUM, "the portal test needs Debian's chromium (make test installs it: apt-get install chromium)"
    from playwright.async_api import async_playwright

    settings = settings_for(kafka_bootstrap, JOBWIRE_API_KEYS=f"acme:{KEY}", JOBWIRE_DEV="1",
                            JOBWIRE_SECRET_KEY="portal-secret-key-0123456789", JOBWIRE_ALLOWED_TARGETS="127.0.0.1/32")
    await ensure_topics(settings)
    receiver = Receiver()
    async with ReceiverServer(receiver) as server, running_api(settings) as url, running_dispatcher(settings), \
            async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await signed_in(browser, url)

            await page.fill("#new-url", server.url)
            await page.fill("#new-description", "from the browser")
            await page.click("#create")
            await page.wait_for_selector("#secret-box:not(.hidden)")
            secret = (await page.text_content("#secret")) or ""
            assert secret.startswith("whsec_")
            receiver.secrets.append(secret)  # the customer copies the secret shown once

            await page.wait_for_selector("#endpoints tr")
            await page.click("#endpoints tr button")  # open it
            options = (await page.text_content("#detail-options")) or ""
            assert options == "signing: hmac; custom headers: none; auth: none", options
            await page.click("#send-test")
            await receiver.wait_for(lambda: len(receiver.received) == 1, timeout_s=30)
            assert receiver.received[0].type == "webhook.test" and receiver.rejected == 0

            for _ in range(50):  # the delivery log is projected from webhooks.attempts
                await page.click("#refresh")
                if await page.query_selector("#deliveries td.status-succeeded"):
                    break
                await asyncio.sleep(0.2)
            row = await page.text_content("#deliveries tr")
            assert row and "webhook.test" in row and "succeeded" in row and "#1 200" in row

            # A content filter, typed as JSON and shown with the endpoint's events.
            await page.fill("#edit-filter", '{"operation": {"in": ["ocr"]}}')
            await page.select_option("#edit-ordering", "job")
            await page.click("#save")
            await page.wait_for_selector("#endpoints td:has-text('where')")
            shown = (await page.text_content("#endpoints")) or ""
            assert 'where {"operation":{"in":["ocr"]}}, one at a time per job' in shown, shown
            await page.fill("#edit-filter", "{not json")
            await page.click("#save")
            await page.wait_for_selector("#message.error:has-text('the filter is not JSON')")
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "portal.png"), full_page=True)
            print(f"\nportal screenshot: {ARTIFACTS / 'portal.png'}")
        finally:
            await browser.close()


async def signed_in(browser: Any, url: str) -> Any:
    """The portal in a new page, connected with the API key as a user types it."""
    page = await browser.new_page()
    await page.goto(f"{url}/portal")
    await page.fill("#api-key", KEY)
    await page.click("#connect")
    await page.wait_for_selector("#app:not(.hidden)")
    return page


async def text_becomes(page: Any, selector: str, wanted: Callable[[str], bool], timeout_s: float = 30) -> None:
    """Polls from outside the page: its CSP allows no evaluated script (wait_for_function)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not wanted((await page.text_content(selector)) or ""):
        assert asyncio.get_running_loop().time() < deadline, f"{selector}: {await page.text_content(selector)!r}"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(240)
async def test_portal_health_jobs_catalog_and_a_one_time_link(kafka_bootstrap: str) -> None:
    """What the portal draws: the health bars with the right counts, a job's status changing
    live as its events arrive, every event type in the catalog; and a portal link that signs a
    browser in without a key, for webhooks only."""
    assert CHROMIUM, "the portal test needs Debian's chromium (make test installs it: apt-get install chromium)"
    from playwright.async_api import async_playwright

    from jobwire.events import EVENT_TYPES
    from jobwire.sdk.client import Client

    settings = settings_for(kafka_bootstrap, JOBWIRE_API_KEYS=f"acme:{KEY}", JOBWIRE_DEV="1",
                            JOBWIRE_SECRET_KEY="portal-secret-key-0123456789", JOBWIRE_ALLOWED_TARGETS="127.0.0.1/32",
                            JOBWIRE_RETRY_SCHEDULE="0,0.2,0.2")
    await ensure_topics(settings)
    # Every delivery fails once, then succeeds: per hour, as many retrying as succeeded.
    receiver = Receiver(plan=lambda webhook_id, n: (500, {}) if n == 1 else (200, {}))
    ARTIFACTS.mkdir(exist_ok=True)
    async with ReceiverServer(receiver) as server, running_api(settings) as url, running_dispatcher(settings), \
            Client(url, KEY) as client, async_playwright() as playwright:
        endpoint = await client.create_endpoint(server.url)
        receiver.secrets.append(endpoint["secret"])
        for _ in range(2):
            job = await client.submit("manual", {})
            await client.cancel(job["id"])
        await receiver.wait_for(lambda: len(receiver.received) == 2, timeout_s=30)
        for _ in range(100):  # bounded: the API's delivery log catches up with the attempts
            deliveries = await client.deliveries(endpoint["id"])
            if sum(len(d["attempts"]) for d in deliveries) == 4:
                break
            await asyncio.sleep(0.1)

        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await signed_in(browser, url)
            await page.click(f'#endpoints tr[data-endpoint="{endpoint["id"]}"] button')
            await page.wait_for_selector("#health rect.bar")
            bars = {await bar.get_attribute("data-kind"): await bar.get_attribute("data-count")
                    for bar in await page.query_selector_all("#health rect.bar")}
            assert bars == {"succeeded": "2", "retrying": "2"}, bars
            await page.click("#deliveries tr button")
            await page.wait_for_selector("#delivery-detail:not(.hidden)")
            payload = await page.text_content("#delivery-payload")
            assert payload and '"task.canceled"' in payload and "whsec_" not in (await page.content())
            await page.screenshot(path=str(ARTIFACTS / "portal-health.png"), full_page=True)

            live = await client.submit("manual", {})
            await page.click("#tab-jobs")
            await page.wait_for_selector(f'#jobs tr[data-job="{live["id"]}"]')
            await page.click(f'#jobs tr[data-job="{live["id"]}"] button')
            await text_becomes(page, "#job-status", lambda text: text == "pending")
            await client._request("POST", f"/v1/jobs/{live['id']}/events", json={"type": "job.started"})
            await text_becomes(page, "#job-status", lambda text: text == "processing")
            await client._request("POST", f"/v1/jobs/{live['id']}/events",
                                  json={"type": "job.completed", "data": {"result": {"pages": 1}}})
            await text_becomes(page, "#job-status", lambda text: text == "completed")
            timeline = await page.text_content("#timeline")
            assert timeline and all(kind in timeline for kind in ("job.created", "job.started", "job.completed"))
            for _ in range(100):  # bounded: the job's webhook reaches the delivery log
                await page.click("#job-deliveries-refresh")
                if await page.query_selector("#job-deliveries td.status-succeeded"):
                    break
                await asyncio.sleep(0.2)
            webhooks = (await page.text_content("#job-deliveries")) or ""
            assert "task.completed" in webhooks and endpoint["id"] in webhooks and "not traced" in webhooks, webhooks
            await page.screenshot(path=str(ARTIFACTS / "portal-jobs.png"), full_page=True)

            await page.click("#tab-catalog")
            await page.wait_for_selector("#catalog details.event-type")
            shown = {await d.get_attribute("data-type") for d in await page.query_selector_all("#catalog details")}
            assert set(EVENT_TYPES) | {"task.completed", "task.failed", "delivery.exhausted"} <= shown
            await page.screenshot(path=str(ARTIFACTS / "portal-catalog.png"), full_page=True)

            link = await client.create_webhook_link()
            guest = await browser.new_context()  # another person: no key, only the link
            other = await guest.new_page()
            await other.goto(link["url"])  # a page: a link scanner fetching the URL spends nothing
            await other.click("button[type=submit]")  # the person opens the portal: the POST redeems
            await other.wait_for_selector("#app:not(.hidden)")
            await other.wait_for_selector(f'#endpoints tr[data-endpoint="{endpoint["id"]}"]')
            await other.click("#tab-jobs")
            await text_becomes(other, "#jobs-note", lambda text: "webhooks only" in text)
            await other.screenshot(path=str(ARTIFACTS / "portal-link.png"), full_page=True)
            again = await (await browser.new_context()).new_page()
            await again.goto(link["url"])
            async with again.expect_navigation() as answered:
                await again.click("button[type=submit]")
            refused = await answered.value
            assert refused is not None and refused.status == 403, "the link works once"
            print(f"\nportal screenshots: {ARTIFACTS}/portal-{{health,jobs,catalog,link}}.png")
        finally:
            await browser.close()
