"""Webhook delivery end to end: real broker, real API, real dispatcher, real loopback
receivers that verify every signature with the svix library."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from svix.webhooks import Webhook, WebhookVerificationError

from jobwire.config import Settings
from jobwire.devtools.demo_ops import DEMO_OPERATIONS
from jobwire.dispatch.service import Dispatcher
from jobwire.kafka.admin import ensure_topics
from jobwire.sdk.client import ApiError, Client
from jobwire.topics import Topics
from jobwire.webhooks.secretbox import new_webhook_secret
from tests.conftest import settings_for
from tests.support.eventually import eventually
from tests.support.groups import dispatcher_group, uncommitted
from tests.support.receiver import Receiver, ReceiverServer
from tests.support.servers import running_api, running_worker

ACME_KEY = "key_acme_0123456789"
GLOBEX_KEY = "key_globex_0123456789"


def hook_settings(bootstrap: str, schedule: str = "0,0.3,0.6") -> Settings:
    return settings_for(bootstrap, JOBWIRE_API_KEYS=f"acme:{ACME_KEY},globex:{GLOBEX_KEY}", JOBWIRE_DEV="1",
                        JOBWIRE_SECRET_KEY="test-secret-key-0123456789", JOBWIRE_ALLOWED_TARGETS="127.0.0.1/32",
                        JOBWIRE_RETRY_SCHEDULE=schedule)


@contextlib.asynccontextmanager
async def running_dispatcher(settings: Settings) -> AsyncIterator[Dispatcher]:
    dispatcher = Dispatcher(settings)
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        dispatcher.stop()
        await asyncio.wait_for(task, 60)


@pytest.fixture
async def hooks(kafka_bootstrap: str) -> Settings:
    settings = hook_settings(kafka_bootstrap)
    await ensure_topics(settings)
    return settings


async def caught_up(settings: Settings) -> bool:
    return await uncommitted(settings, dispatcher_group(settings), Topics(settings.topic_prefix).events) == 0


async def finish_a_job(client: Client) -> dict[str, Any]:
    """The quickest way to a terminal transition: submit a job nobody runs, then cancel it."""
    job = await client.submit("manual", {})
    return await client.cancel(job["id"])


async def endpoint_for(client: Client, server: ReceiverServer, **options: Any) -> dict[str, Any]:
    endpoint = await client.create_endpoint(server.url, **options)
    server.receiver.secrets.append(endpoint["secret"])
    return endpoint


async def test_finished_jobs_reach_every_matching_endpoint_and_no_other(hooks: Settings) -> None:
    everything, failures_only, other_tenant = Receiver(), Receiver(), Receiver()
    async with ReceiverServer(everything) as a, ReceiverServer(failures_only) as b, ReceiverServer(other_tenant) as c, \
            running_api(hooks) as url, Client(url, ACME_KEY) as acme, Client(url, GLOBEX_KEY) as globex, \
            running_worker(hooks, "wordcount", DEMO_OPERATIONS["wordcount"]), \
            running_worker(hooks, "fail", DEMO_OPERATIONS["fail"]), running_dispatcher(hooks):
        await endpoint_for(acme, a)
        await endpoint_for(acme, b, event_types=["task.failed"])
        await endpoint_for(globex, c)
        done = await acme.submit("wordcount", {"text": "a b c"})
        failed = await acme.submit("fail", {})
        canceled = await acme.submit("manual", {})
        await acme.cancel(canceled["id"])
        await everything.wait_for(lambda: len(everything.received) >= 3)
        await failures_only.wait_for(lambda: len(failures_only.received) >= 1)
        # Nothing else may arrive: once the dispatcher has committed every event, every
        # delivery it would make is made, so what the receivers hold is all there is.
        await eventually(lambda: caught_up(hooks), "the dispatcher to commit every event")
        by_type = {r.type: r.data for r in everything.received}
        assert set(by_type) == {"task.completed", "task.failed", "task.canceled"}
        assert by_type["task.completed"]["id"] == done["id"] and by_type["task.completed"]["result"] == {"words": 3, "distinct": 3}
        assert by_type["task.failed"]["id"] == failed["id"] and by_type["task.failed"]["error"]["code"] == "demo_failure"
        assert by_type["task.canceled"]["id"] == canceled["id"]
        assert [r.type for r in failures_only.received] == ["task.failed"]
        assert other_tenant.received == [] and other_tenant.seen == {}
        assert everything.rejected == failures_only.rejected == 0, "every signature verified"
        assert len(everything.received) == 3, "one delivery per event"


async def test_content_filters_decide_which_jobs_an_endpoint_hears_of(hooks: Settings) -> None:
    by_operation, by_metadata = Receiver(), Receiver()
    async with ReceiverServer(by_operation) as a, ReceiverServer(by_metadata) as b, running_api(hooks) as url, \
            Client(url, ACME_KEY) as acme, running_worker(hooks, "wordcount", DEMO_OPERATIONS["wordcount"]), \
            running_worker(hooks, "fail", DEMO_OPERATIONS["fail"]), running_dispatcher(hooks):
        await endpoint_for(acme, a, filter={"operation": {"in": ["wordcount"]}})
        await endpoint_for(acme, b, filter={"metadata.customer": "vip", "status": {"in": ["failed", "canceled"]}})
        done = await acme.submit("wordcount", {"text": "a b"}, metadata={"customer": "vip"})
        failed = await acme.submit("fail", {}, metadata={"customer": "vip"})
        await acme.submit("fail", {}, metadata={"customer": "other"})
        canceled = await acme.submit("manual", {}, metadata={"customer": "vip"})
        await acme.cancel(canceled["id"])
        await eventually(lambda: caught_up(hooks), "the dispatcher to commit every event")
        await by_operation.wait_for(lambda: len(by_operation.received) >= 1)
        await by_metadata.wait_for(lambda: len(by_metadata.received) >= 2)
        assert [r.data["id"] for r in by_operation.received] == [done["id"]]
        assert sorted(r.data["id"] for r in by_metadata.received) == sorted([failed["id"], canceled["id"]])


async def test_an_endpoints_headers_and_auth_reach_the_receiver_beside_a_valid_signature(hooks: Settings) -> None:
    gateway = Receiver()
    async with ReceiverServer(gateway) as server, running_api(hooks) as url, Client(url, ACME_KEY) as acme, \
            running_dispatcher(hooks):
        await endpoint_for(acme, server, headers={"X-Gateway-Key": "gw-0123"},
                           auth={"type": "basic", "username": "jobwire", "password": "s3cret"})
        await finish_a_job(acme)
        await gateway.wait_for(lambda: len(gateway.received) == 1)
        headers = gateway.received[0].headers
        assert headers["x-gateway-key"] == "gw-0123"
        assert headers["authorization"] == "Basic " + base64.b64encode(b"jobwire:s3cret").decode()
        assert gateway.rejected == 0, "the signature verifies with the custom headers beside it"


async def test_lifecycle_webhooks_tell_the_start_and_coalesced_progress_to_those_who_ask(hooks: Settings) -> None:
    lifecycle, terminal_only = Receiver(), Receiver()
    async with ReceiverServer(lifecycle) as a, ReceiverServer(terminal_only) as b, running_api(hooks) as url, \
            Client(url, ACME_KEY) as acme, running_worker(hooks, "sleep", DEMO_OPERATIONS["sleep"]), \
            running_dispatcher(hooks):
        await endpoint_for(acme, a, event_types=["task.started", "task.progress", "task.completed"])
        await endpoint_for(acme, b)
        job = await acme.submit("sleep", {"seconds": 0.2})  # four progress steps well inside 5 s
        await lifecycle.wait_for(lambda: any(r.type == "task.completed" for r in lifecycle.received))
        await eventually(lambda: caught_up(hooks), "the dispatcher to commit every event")
        told = sorted((r.data["version"], r.type, r.data["progress"]["processed"]) for r in lifecycle.received)
        assert [(kind, step) for _, kind, step in told] == [
            ("task.started", None), ("task.progress", 1), ("task.progress", 4), ("task.completed", 4)], \
            "the start, the first progress, the last step (the two between coalesced), the end"
        assert {r.data["id"] for r in lifecycle.received} == {job["id"]} and lifecycle.rejected == 0
        assert [r.type for r in terminal_only.received] == ["task.completed"], "lifecycle webhooks are opt-in"


async def test_an_ordered_endpoint_gets_a_jobs_webhooks_one_at_a_time_in_order_through_retries(
        hooks: Settings) -> None:
    # Every webhook fails twice before it is taken: concurrently, the job's later webhooks would
    # overtake an earlier one on its retries.
    ordered = Receiver(plan=lambda webhook_id, n: (500, {}) if n <= 2 else (200, {}))
    async with ReceiverServer(ordered) as server, running_api(hooks) as url, Client(url, ACME_KEY) as acme, \
            running_worker(hooks, "sleep", DEMO_OPERATIONS["sleep"]), running_dispatcher(hooks):
        endpoint = await endpoint_for(acme, server, ordering="job",
                                      event_types=["task.started", "task.progress", "task.completed"])
        assert endpoint["ordering"] == "job"
        job = await acme.submit("sleep", {"seconds": 0.2})
        await ordered.wait_for(lambda: any(r.type == "task.completed" for r in ordered.received), timeout_s=60)
        taken = [(r.data["version"], r.type) for r in ordered.received]
        assert taken == sorted(taken) and taken[0][1] == "task.started" and taken[-1][1] == "task.completed", taken
        assert all(len(times) == 3 for times in ordered.seen.values()), "each retried, the same webhook-id"
        assert {r.data["id"] for r in ordered.received} == {job["id"]} and ordered.rejected == 0

        async def logged() -> list[dict[str, Any]]:
            found = await acme.deliveries(endpoint["id"])
            return found if len(found) == len(taken) and all(d["status"] == "succeeded" for d in found) else []
        assert await eventually(logged, "every ordered delivery logged as succeeded")


async def test_a_jobs_own_callback_url_gets_its_signed_webhooks_and_shows_in_its_deliveries(hooks: Settings) -> None:
    callback = Receiver(plan=lambda webhook_id, n: (500, {}) if n == 1 else (200, {}))
    async with ReceiverServer(callback) as server, running_api(hooks) as url, Client(url, ACME_KEY) as acme, \
            Client(url, GLOBEX_KEY) as globex, running_dispatcher(hooks):
        secret = await acme.callback_secret()
        assert secret.startswith("whsec_") and secret != await globex.callback_secret(), "one secret per tenant"
        callback.secrets.append(secret)
        job = await acme.submit("manual", {}, webhook_url=server.url)
        assert job["webhook"] == {"url": server.url, "events": None}
        await acme.cancel(job["id"])
        await callback.wait_for(lambda: len(callback.received) == 1)
        hook = callback.received[0]
        assert hook.type == "task.canceled" and hook.data["id"] == job["id"] and callback.rejected == 0
        assert len(callback.seen[hook.webhook_id]) == 2, "retried like any delivery, same webhook-id"

        async def logged() -> list[dict[str, Any]]:
            found = await acme.job_deliveries(job["id"])
            return found if found and found[0]["status"] == "succeeded" else []
        (delivery,) = await eventually(logged, "the callback's delivery in the job's deliveries")
        assert delivery["endpoint_id"].startswith("cb_") and len(delivery["attempts"]) == 2
        with pytest.raises(ApiError) as refused:
            await acme.submit("manual", {}, webhook_url="http://10.0.0.1/hook")
        assert refused.value.status == 422 and refused.value.problem["errors"][0]["pointer"] == "/webhook_url"
        with pytest.raises(ApiError) as hidden:
            await globex.job_deliveries(job["id"])
        assert hidden.value.status == 404, "another tenant's job"


async def test_a_failing_receiver_gets_the_third_attempt_with_the_same_webhook_id(hooks: Settings) -> None:
    flaky = Receiver(plan=lambda webhook_id, n: (500, {}) if n <= 2 else (200, {}))
    async with ReceiverServer(flaky) as server, running_api(hooks) as url, Client(url, ACME_KEY) as client, \
            running_dispatcher(hooks):
        endpoint = await endpoint_for(client, server)
        await finish_a_job(client)
        await flaky.wait_for(lambda: len(flaky.received) == 1)
        (webhook_id, times), = flaky.seen.items()
        assert len(times) == 3 and flaky.received[0].webhook_id == webhook_id
        async def settled() -> list[dict[str, Any]]:
            found = await client.deliveries(endpoint["id"])
            return found if [d["status"] for d in found] == ["succeeded"] else []

        (delivery,) = await eventually(settled, "the delivery log to show the delivery succeeded")
        assert delivery["id"] == webhook_id and delivery["status"] == "succeeded"
        assert [(a["attempt"], a["status_code"], a["outcome"]) for a in delivery["attempts"]] == [
            (1, 500, "retrying"), (2, 500, "retrying"), (3, 200, "succeeded")]


async def disabled(client: Client, endpoint_id: str) -> bool:
    return bool((await client.endpoint(endpoint_id))["disabled"])


async def test_410_disables_the_endpoint_and_later_events_are_kept_as_skipped(hooks: Settings) -> None:
    gone = Receiver(plan=lambda webhook_id, n: (410, {}))
    async with ReceiverServer(gone) as server, running_api(hooks) as url, Client(url, ACME_KEY) as client, \
            running_dispatcher(hooks):
        endpoint = await endpoint_for(client, server)
        await finish_a_job(client)
        await gone.wait_for(lambda: len(gone.seen) == 1)
        await eventually(lambda: disabled(client, endpoint["id"]), "the endpoint disabled", timeout_s=15)
        assert "410" in (await client.endpoint(endpoint["id"]))["disabled_reason"]
        await finish_a_job(client)
        await eventually(lambda: client.deliveries(endpoint["id"], status="skipped"), "a skipped delivery",
                         timeout_s=15)
        assert len(gone.seen) == 1, "nothing was sent to the disabled endpoint"


async def test_exhausted_deliveries_go_dead_and_recover_delivers_them(hooks: Settings) -> None:
    healthy = [False]
    down = Receiver(plan=lambda webhook_id, n: (200, {}) if healthy[0] else (503, {}))
    async with ReceiverServer(down) as server, running_api(hooks) as url, Client(url, ACME_KEY) as client, \
            running_dispatcher(hooks):
        endpoint = await endpoint_for(client, server)
        await finish_a_job(client)
        await eventually(lambda: client.deliveries(endpoint["id"], status="failed"), "a dead delivery", timeout_s=20)
        (dead,) = await client.deliveries(endpoint["id"], status="failed")
        assert dead["attempt_count"] == 3 and len(down.seen[dead["id"]]) == 3
        healthy[0] = True
        recovered = await client.recover(endpoint["id"], since="2000-01-01T00:00:00Z")
        assert recovered["deliveries"] == [dead["id"]]
        await down.wait_for(lambda: len(down.received) == 1)
        assert down.received[0].webhook_id == dead["id"], "the replay keeps its webhook-id"
        with pytest.raises(ApiError) as caught:  # succeeded now: nothing to retry
            async with asyncio.timeout(10):
                while True:
                    await client.retry_delivery(dead["id"])
                    await asyncio.sleep(0.2)
        assert caught.value.status == 409


async def test_retry_after_is_honoured(kafka_bootstrap: str) -> None:
    settings = hook_settings(kafka_bootstrap, schedule="0,0.2,0.2")
    await ensure_topics(settings)
    limited = Receiver(plan=lambda webhook_id, n: (429, {"Retry-After": "2"}) if n == 1 else (200, {}))
    async with ReceiverServer(limited) as server, running_api(settings) as url, Client(url, ACME_KEY) as client, \
            running_dispatcher(settings):
        await endpoint_for(client, server)
        await finish_a_job(client)
        await limited.wait_for(lambda: len(limited.received) == 1)
        first, second = next(iter(limited.seen.values()))
        assert second - first >= 1.9, f"second attempt after {second - first:.2f}s, Retry-After said 2 s"


async def test_test_event_and_rotation(hooks: Settings) -> None:
    receiver = Receiver()
    async with ReceiverServer(receiver) as server, running_api(hooks) as url, Client(url, ACME_KEY) as client, \
            running_dispatcher(hooks):
        endpoint = await endpoint_for(client, server)  # the receiver knows the old secret only
        rotated = await client.rotate_secret(endpoint["id"])
        sent = await client.send_test(endpoint["id"])
        await receiver.wait_for(lambda: len(receiver.received) == 1)
        (webhook,) = receiver.received
        assert webhook.type == "webhook.test" and webhook.webhook_id == sent["id"]
        assert receiver.rejected == 0, "during the grace period the old secret still signs"
        # The same request verifies for a receiver that switched to the new secret already, and
        # for no other secret: one signature per live secret.
        Webhook(rotated["secret"]).verify(webhook.body, webhook.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(new_webhook_secret()).verify(webhook.body, webhook.headers)
        assert len(webhook.headers["webhook-signature"].split()) == 2


async def test_an_ed25519_endpoint_is_verified_with_its_public_key_alone(hooks: Settings) -> None:
    """``v1a``: the receiver holds only the ``whpk_`` key the API served; after a rotation both
    keys sign during the grace period, and a receiver on either one verifies."""
    old_key, new_key = Receiver(), Receiver()
    async with ReceiverServer(old_key) as server, running_api(hooks) as url, Client(url, ACME_KEY) as client, \
            running_dispatcher(hooks):
        endpoint = await client.create_endpoint(server.url, signing="ed25519")
        assert "secret" not in endpoint and endpoint["signing"] == "ed25519"
        served = await client.public_keys(endpoint["id"])
        assert [k["public_key"] for k in served] == [endpoint["public_key"]]
        old_key.secrets.append(served[0]["public_key"])
        done = await finish_a_job(client)
        await old_key.wait_for(lambda: len(old_key.received) == 1)
        assert old_key.received[0].data["id"] == done["id"] and old_key.rejected == 0
        assert old_key.received[0].headers["webhook-signature"].startswith("v1a,")
        rotated = await client.rotate_secret(endpoint["id"])
        new_key.secrets.append(rotated["public_key"])
        sent = await client.send_test(endpoint["id"])
        await old_key.wait_for(lambda: any(r.webhook_id == sent["id"] for r in old_key.received))
        webhook = next(r for r in old_key.received if r.webhook_id == sent["id"])
        assert len(webhook.headers["webhook-signature"].split()) == 2 and old_key.rejected == 0
        assert new_key._verifies(rotated["public_key"], webhook.body, webhook.headers)


async def test_an_endpoint_failing_for_too_long_is_disabled(kafka_bootstrap: str) -> None:
    settings = settings_for(kafka_bootstrap, JOBWIRE_API_KEYS=f"acme:{ACME_KEY}", JOBWIRE_DEV="1",
                            JOBWIRE_SECRET_KEY="test-secret-key-0123456789", JOBWIRE_ALLOWED_TARGETS="127.0.0.1/32",
                            JOBWIRE_RETRY_SCHEDULE="0,1,1,1,1,1,1", JOBWIRE_ENDPOINT_DISABLE_AFTER_S="1.5")
    await ensure_topics(settings)
    broken = Receiver(plan=lambda webhook_id, n: (500, {}))
    async with ReceiverServer(broken) as server, running_api(settings) as url, Client(url, ACME_KEY) as client, \
            running_dispatcher(settings):
        endpoint = await endpoint_for(client, server)
        await finish_a_job(client)
        await eventually(lambda: disabled(client, endpoint["id"]), "the endpoint disabled", timeout_s=30)
        assert "every attempt failed" in (await client.endpoint(endpoint["id"]))["disabled_reason"]
        attempts = len(next(iter(broken.seen.values())))
        assert 2 <= attempts < 7, "disabled by time, before the schedule ran out"
