"""Operational webhooks end to end (real broker, API, dispatcher, loopback receivers verifying
with svix): a tenant's watcher endpoint hears that another endpoint's delivery is failing, ran
out of retries, and that the endpoint was disabled and enabled; the endpoint itself never
hears of its own disabling; endpoints that did not ask hear nothing."""

from __future__ import annotations

from jobwire.kafka.admin import ensure_topics
from jobwire.sdk.client import Client
from tests.integration.test_dispatch import ACME_KEY, endpoint_for, finish_a_job, hook_settings, running_dispatcher
from tests.support.eventually import eventually
from tests.support.groups import dispatcher_idle
from tests.support.receiver import Receiver, ReceiverServer
from tests.support.servers import running_api

OPERATIONAL = ["endpoint.disabled", "endpoint.enabled", "delivery.exhausted", "delivery.failing",
               "delivery.recovered"]


async def test_a_watcher_hears_of_failing_deliveries_and_endpoint_changes(kafka_bootstrap: str) -> None:
    settings = hook_settings(kafka_bootstrap, schedule="0,0.1,0.1,0.1,0.1")  # five attempts
    await ensure_topics(settings)
    broken = Receiver(plan=lambda webhook_id, n: (500, {}))
    watcher, plain = Receiver(), Receiver()
    async with ReceiverServer(broken) as b, ReceiverServer(watcher) as w, ReceiverServer(plain) as p, \
            running_api(settings) as url, running_dispatcher(settings), Client(url, ACME_KEY) as client:
        failing = await endpoint_for(client, b, event_types=["task.canceled", *OPERATIONAL])
        await endpoint_for(client, w, event_types=OPERATIONAL)
        await endpoint_for(client, p)
        job = await finish_a_job(client)

        def kinds() -> list[str]:
            return [r.type for r in watcher.received]

        await watcher.wait_for(lambda: "delivery.exhausted" in kinds())
        by_type = {r.type: r.data for r in watcher.received}
        assert kinds().index("delivery.failing") < kinds().index("delivery.exhausted")
        exhausted = by_type["delivery.exhausted"]
        assert (exhausted["endpoint_id"], exhausted["job_id"], exhausted["attempts"]) == (failing["id"], job["id"], 5)
        assert exhausted["last_attempt"]["status_code"] == 500

        await client.update_endpoint(failing["id"], disabled=True)
        await watcher.wait_for(lambda: "endpoint.disabled" in kinds())
        disabled = next(r.data for r in watcher.received if r.type == "endpoint.disabled")
        assert disabled["endpoint_id"] == failing["id"] and disabled["reason"] == "disabled by the API"

        await client.update_endpoint(failing["id"], disabled=False)
        await watcher.wait_for(lambda: "endpoint.enabled" in kinds())
        # The re-enabled endpoint gets its own endpoint.enabled (it answers 500, so it is only
        # seen, never received); it was never sent its own endpoint.disabled.
        await broken.wait_for(lambda: len(broken.seen) >= 2)
        # Every record handled and committed: nothing more is on its way to the plain endpoint.
        await eventually(lambda: dispatcher_idle(settings), "the dispatcher idle", timeout_s=60)
        assert {r.type for r in plain.received} == {"task.canceled"}
        deliveries = await client.deliveries(failing["id"])
        assert not any(d.get("event_type") == "endpoint.disabled" for d in deliveries)
