"""The webhook portal in a real browser (Debian's headless Chromium, driven by Playwright):
create an endpoint, send a test event, see the verified delivery appear."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from jobwire.log import ensure_topics
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
            page = await browser.new_page()
            await page.goto(f"{url}/portal")
            await page.fill("#api-key", KEY)
            await page.click("#connect")
            await page.wait_for_selector("#app:not(.hidden)")

            await page.fill("#new-url", server.url)
            await page.fill("#new-description", "from the browser")
            await page.click("#create")
            await page.wait_for_selector("#secret-box:not(.hidden)")
            secret = (await page.text_content("#secret")) or ""
            assert secret.startswith("whsec_")
            receiver.secrets.append(secret)  # the customer copies the secret shown once

            await page.wait_for_selector("#endpoints tr")
            await page.click("#endpoints tr button")  # open it
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
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "portal.png"), full_page=True)
            print(f"\nportal screenshot: {ARTIFACTS / 'portal.png'}")
        finally:
            await browser.close()
