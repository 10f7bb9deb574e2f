"""``jobwire audit`` on the real broker: it lists the webhooks owed and not dealt with (exit 1),
and, once a dispatcher has delivered them, proves there are none (exit 0)."""

from __future__ import annotations

from pathlib import Path

from jobwire.config import load_settings
from jobwire.kafka.admin import ensure_topics
from tests.integration.test_dispatch_faults import fault_env
from tests.support.dispatching import publish_jobs, register, run_audit, start_dispatcher
from tests.support.receiver import Receiver, ReceiverServer


async def test_audit_lists_what_no_dispatcher_delivered_then_proves_delivery(kafka_bootstrap: str,
                                                                             tmp_path: Path) -> None:
    env = fault_env(kafka_bootstrap)
    settings = load_settings(env)
    await ensure_topics(settings)
    receiver = Receiver()
    async with ReceiverServer(receiver) as server:
        (endpoint_id,) = await register(settings, [server])
        finishing = await publish_jobs(settings, 0, 20)

        status, report = run_audit(env, "--since", "1h", "--until", "0s")
        assert status == 1 and report["missing"] == 20 and report["terminal_events"] == 20
        assert {m["job_id"] for m in report["missing_pairs"]} == set(finishing)
        assert {m["endpoint_id"] for m in report["missing_pairs"]} == {endpoint_id}

        dispatcher = start_dispatcher(env, tmp_path / "dispatcher.log")
        try:
            await receiver.wait_for(lambda: len({r.webhook_id for r in receiver.received}) >= 20, timeout_s=60)
        finally:
            dispatcher.terminate()
            dispatcher.wait(30)
    status, report = run_audit(env, "--since", "1h", "--until", "0s")
    assert status == 0 and report["delivered"] == 20 and report["missing"] == 0, report
