"""Metrics belong to the process that serves them: importing jobwire registers nothing on
prometheus_client's global registry, and each app builds the registry its /metrics serves."""

from __future__ import annotations

import subprocess
import sys

from prometheus_client import generate_latest

from jobwire.metrics import API_METRICS, DISPATCHER_METRICS, INVALID_RECORDS, registry_of


def test_importing_every_module_registers_nothing_globally() -> None:
    code = ("import jobwire.api.app, jobwire.dispatch.service, jobwire.sdk.worker, jobwire.cli\n"
            "from prometheus_client import REGISTRY, generate_latest\n"
            "print(b'jobwire_' in generate_latest(REGISTRY))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_registry_holds_what_its_process_serves() -> None:
    api, dispatcher = registry_of(API_METRICS), registry_of(DISPATCHER_METRICS)
    INVALID_RECORDS.labels(topic="t.metrics-test").inc()
    for registry in (api, dispatcher):
        assert registry.get_sample_value("jobwire_invalid_records_total", {"topic": "t.metrics-test"}) == 1.0
    assert b"jobwire_http_request_seconds" in generate_latest(api)
    assert b"jobwire_http_request_seconds" not in generate_latest(dispatcher)
    assert b"jobwire_webhook_attempt_seconds" in generate_latest(dispatcher)
    assert b"process_resident_memory_bytes" in generate_latest(api)
    # Two registries for two apps in one process: no duplicate-name error.
    registry_of(API_METRICS)
