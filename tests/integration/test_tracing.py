"""One trace per job, for real: the API, a worker and the dispatcher run as processes of their
own with tracing on (OTEL_EXPORTER_OTLP_ENDPOINT), exporting to an OTLP/HTTP receiver on
loopback. A job submitted with a caller's ``traceparent`` ends as one connected trace across
the three processes, whose webhook reaches the receiver carrying the same trace; no span
carries a secret."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from jobwire.devtools.broker import free_port, set_parent_death_signal
from tests.conftest import env_for
from tests.support.eventually import eventually
from tests.support.otlp import OtlpReceiver
from tests.support.receiver import Receiver, ReceiverServer

API_KEY = "key_acme_0123456789"
SECRET_KEY = "tracing-secret-key-0123456789"
SERVICES = {"jobwire-api", "jobwire-worker", "jobwire-dispatcher"}


@contextlib.contextmanager
def processes(env: dict[str, str], logs: Path, *commands: list[str]) -> Iterator[None]:
    started = []
    try:
        for command in commands:
            out = open(logs / f"{command[0]}.log", "ab")  # noqa: SIM115 - closed with its process below
            started.append((subprocess.Popen([sys.executable, "-m", "jobwire.cli", *command],
                                             env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                             preexec_fn=set_parent_death_signal), out))
        yield
    finally:
        for process, _ in started:
            process.terminate()  # SIGTERM: each exports what it has buffered as it exits
        for process, out in started:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
            out.close()


async def test_a_job_is_one_trace_from_the_request_to_the_receiver(kafka_bootstrap: str, tmp_path: Path) -> None:
    hook = Receiver()
    async with OtlpReceiver() as collector, ReceiverServer(hook) as server:
        port = free_port()
        env = env_for(kafka_bootstrap, JOBWIRE_API_KEYS=f"acme:{API_KEY}", JOBWIRE_SECRET_KEY=SECRET_KEY,
                      JOBWIRE_ALLOWED_TARGETS="127.0.0.1/32", JOBWIRE_DEV="1",
                      OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
                      OTEL_BSP_SCHEDULE_DELAY="100")
        subprocess.run([sys.executable, "-m", "jobwire.cli", "topics", "create"], env={**os.environ, **env}, check=True,
                       capture_output=True, timeout=120)
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {API_KEY}"}
        with processes(env, tmp_path, ["api", "--port", str(port)], ["worker", "--demo"], ["dispatcher"]):
            async with aiohttp.ClientSession() as http:
                async def ready() -> bool:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"{base}/readyz") as answer:
                            return answer.status == 200
                    return False
                await eventually(ready, "the API to be ready", timeout_s=60)
                async with http.post(f"{base}/v1/webhooks/endpoints", headers=auth,
                                     json={"url": server.url}) as answer:
                    assert answer.status == 201, await answer.text()
                    hook.secrets.append((await answer.json())["secret"])
                trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
                async with http.post(f"{base}/v1/jobs", json={"operation": "wordcount",
                                                              "parameters": {"text": "one trace"}},
                                     headers={**auth, "traceparent": f"00-{trace_id}-{caller_span}-01"}) as answer:
                    assert answer.status in (200, 201, 202), await answer.text()
                    job_id = (await answer.json())["id"]
                await hook.wait_for(lambda: len(hook.received) >= 1, timeout_s=60)

                async def logged() -> list[dict[str, object]]:
                    async with http.get(f"{base}/v1/jobs/{job_id}/deliveries", headers=auth) as answer:
                        page = await answer.json()
                    return [a for d in page.get("data", []) for a in d["attempts"] if a["outcome"] == "succeeded"]
                (attempt_logged,) = await eventually(logged, "the webhook's attempt in the job's deliveries")
                assert attempt_logged["extra"]["trace_id"] == trace_id, "the delivery log names the job's trace"

                # A job canceled by another request: its webhook is still in the job's own trace.
                created_trace, cancel_trace = secrets.token_hex(16), secrets.token_hex(16)
                async with http.post(f"{base}/v1/jobs", json={"operation": "manual", "parameters": {}},
                                     headers={**auth, "traceparent": f"00-{created_trace}-{caller_span}-01"}) as answer:
                    canceled_id = (await answer.json())["id"]
                async with http.post(f"{base}/v1/jobs/{canceled_id}/cancel", json={},
                                     headers={**auth, "traceparent": f"00-{cancel_trace}-{caller_span}-01"}) as answer:
                    assert answer.status == 200, await answer.text()
                await hook.wait_for(lambda: any(r.data["id"] == canceled_id for r in hook.received), timeout_s=60)

                async def whole_trace() -> bool:
                    spans = collector.of_trace(trace_id)
                    return {s.service for s in spans} >= SERVICES and any(s.name.startswith("webhook") for s in spans)
                await eventually(whole_trace, "spans of the job's trace from the API, the worker and the dispatcher",
                                 timeout_s=60)
        webhook = next(r for r in hook.received if r.data["id"] == job_id)
        assert hook.rejected == 0
        canceled = next(r for r in hook.received if r.data["id"] == canceled_id)
        assert canceled.type == "task.canceled" and canceled.headers["traceparent"].split("-")[1] == created_trace, \
            "a cancel's webhook continues the job's trace, not the cancel request's"
        received_trace = webhook.headers["traceparent"].split("-")
        assert received_trace[1] == trace_id, "the receiver can continue the job's trace"
        spans = collector.of_trace(trace_id)
        ids = {s.span_id for s in spans}
        assert all(s.parent_span_id in ids or s.parent_span_id == caller_span for s in spans), \
            "one connected trace, rooted at the caller's span"
        attempt = next(s for s in spans if s.name.startswith("webhook"))
        assert received_trace[2] == attempt.span_id, "the webhook request is the attempt span's child"
        assert attempt.attributes["jobwire.job.id"] == job_id and attempt.attributes["http.response.status_code"] == 200
        assert {s.service for s in spans} == SERVICES
        shown = repr([s.attributes for s in collector.spans])
        assert API_KEY not in shown and SECRET_KEY not in shown and hook.secrets[0] not in shown
