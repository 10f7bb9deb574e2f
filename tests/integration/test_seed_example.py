"""docs/seed-apis.md's runnable example, run against a real broker, API and dispatcher: a
Knowhere (seed 003) job waiting for its upload fails with an upload timeout."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from jobwire.config import Settings
from jobwire.kafka.admin import ensure_topics
from jobwire.sdk.client import Client
from tests.integration.test_dispatch import ACME_KEY, endpoint_for, hook_settings, running_dispatcher
from tests.support.receiver import Receiver, ReceiverServer
from tests.support.servers import running_api

EXAMPLE = Path(__file__).parents[2] / "examples" / "knowhere_upload_timeout.py"


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("knowhere_upload_timeout", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_an_upload_that_never_comes_fails_the_job_and_tells_subscribers(kafka_bootstrap: str) -> None:
    settings: Settings = hook_settings(kafka_bootstrap)
    await ensure_topics(settings)
    receiver = Receiver()
    async with ReceiverServer(receiver) as server, running_api(settings) as url, running_dispatcher(settings):
        async with Client(url, ACME_KEY) as client:
            await endpoint_for(client, server)
        waiting, failed = await example().upload_never_comes(url, ACME_KEY, upload_timeout_s=1)
        assert waiting["status"] == "waiting-file" and f"{url}/v1/uploads/" in waiting["upload_url"]
        assert waiting["upload_headers"] == {"Content-Type": "application/pdf"}
        assert waiting["expires_at"] > waiting["created_at"]
        assert failed["status"] == "failed" and failed["error"]["code"] == "expired"
        assert "upload_timeout_s=1" in failed["error"]["message"]
        await receiver.wait_for(lambda: any(r.type == "task.failed" for r in receiver.received))
        [hook] = [r for r in receiver.received if r.data["id"] == failed["job_id"]]
        assert hook.type == "task.failed" and hook.data["error"]["code"] == "expired"
