"""An endpoint changed through the API while the dispatcher records its health, on the real
broker: the dispatcher's record never undoes the API's change, whatever the two hosts' clocks
say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobwire.config import Settings, load_settings
from jobwire.kafka.admin import ensure_topics
from jobwire.kafka.clients import make_producer
from jobwire.kafka.writers import KeyedWriter
from jobwire.timeutil import format_utc
from jobwire.topics import Topics
from jobwire.webhooks.model import Endpoint, SealedSecret, webhook_id
from jobwire.webhooks.registry import EndpointWriter, read_registry
from jobwire.webhooks.secretbox import SecretBox, binding, new_webhook_secret
from tests.conftest import env_for
from tests.integration.test_dispatch import running_dispatcher
from tests.support.dispatching import publish_jobs
from tests.support.receiver import Receiver, ReceiverServer

SECRET_KEY = "race-test-secret-key-0123456789"
ENDPOINT_ID = "ep_race"


async def write_snapshot(settings: Settings, url: str, secret: str, *, updated_at: str, created_at: str) -> None:
    """The endpoint as the API writes it (here, an API whose host clock we choose)."""
    assert settings.secret_key is not None
    sealed = SecretBox(settings.secret_key).seal(secret, bound_to=binding("acme", ENDPOINT_ID))
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        writer = EndpointWriter(KeyedWriter(producer, Topics(settings.topic_prefix).endpoints))
        await writer.put(Endpoint(ENDPOINT_ID, "acme", url, created_at, updated_at, (SealedSecret(sealed),)))
    finally:
        await producer.stop()


async def registry_says(settings: Settings, disabled: bool) -> Endpoint:
    for _ in range(300):  # bounded: the dispatcher's health record lands within a few seconds
        endpoint = (await read_registry(settings.kafka, Topics(settings.topic_prefix).endpoints)).endpoints[ENDPOINT_ID]
        if endpoint.disabled == disabled:
            return endpoint
    raise AssertionError(f"the endpoint never became disabled={disabled}")


@pytest.mark.timeout(180)
async def test_a_change_from_an_api_whose_clock_is_behind_wins_over_the_dispatchers_disable(
        kafka_bootstrap: str) -> None:
    settings = load_settings(env_for(kafka_bootstrap, JOBWIRE_SECRET_KEY=SECRET_KEY, JOBWIRE_ALLOWED_TARGETS="127.0.0.1/32",
                                     JOBWIRE_RETRY_SCHEDULE="0,0.5,1", JOBWIRE_DEV="1"))
    await ensure_topics(settings)
    # The API's host runs a minute behind the dispatcher's: its times compare as older.
    behind = datetime.now(UTC) - timedelta(minutes=1)
    created_at = format_utc(behind)
    gone, moved = Receiver(plan=lambda webhook_id, n: (410, {})), Receiver()
    async with ReceiverServer(gone) as old_host, ReceiverServer(moved) as new_host, running_dispatcher(settings):
        old_secret, new_secret = new_webhook_secret(), new_webhook_secret()
        gone.secrets.append(old_secret)
        moved.secrets.append(new_secret)
        await write_snapshot(settings, old_host.url, old_secret, updated_at=created_at, created_at=created_at)
        await publish_jobs(settings, 0, 1, prefix="job_race_a")
        await gone.wait_for(lambda: len(gone.seen) == 1, timeout_s=60)
        disabled = await registry_says(settings, disabled=True)
        assert "410" in (disabled.disabled_reason or "")
        # The customer moves the endpoint, rotates its secret and enables it again: the API
        # writes that after the dispatcher's health record, stamped by its slow clock.
        await write_snapshot(settings, new_host.url, new_secret, updated_at=format_utc(behind + timedelta(seconds=1)),
                             created_at=created_at)
        enabled = await registry_says(settings, disabled=False)
        assert enabled.url == new_host.url
        finishing = await publish_jobs(settings, 0, 3, prefix="job_race_b")
        expected = {webhook_id(event_id, ENDPOINT_ID) for event_id in finishing.values()}
        await moved.wait_for(lambda: expected <= {r.webhook_id for r in moved.received}, timeout_s=60)
    assert moved.rejected == 0, "signed with the rotated secret"
    assert len(gone.seen) == 1, "nothing more went to the old URL"
