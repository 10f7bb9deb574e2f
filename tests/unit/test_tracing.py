"""Tracing's switch and its context plumbing (jobwire/tracing.py), without an exporter."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, Histogram

from jobwire import tracing
from jobwire.errors import ConfigError
from jobwire.metrics import exposition
from jobwire.webhooks.model import Delivery


def test_off_unless_asked_for() -> None:
    assert not tracing.wanted({})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    assert tracing.wanted({"JOBWIRE_TRACING": "1"})
    assert not tracing.wanted({"JOBWIRE_TRACING": "1", "OTEL_SDK_DISABLED": "true"}), "the standard off switch wins"
    assert not tracing.wanted({"JOBWIRE_TRACING": "off", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert not tracing.configure("jobwire-test", {})
    with pytest.raises(ConfigError) as refused:
        tracing.wanted({"JOBWIRE_TRACING": "yes please"})
    assert "JOBWIRE_TRACING" in str(refused.value)


def test_off_every_call_is_a_no_op() -> None:
    assert not tracing.enabled()
    with tracing.span("anything", parent="00-" + "1" * 32 + "-" + "2" * 16 + "-01") as span:
        assert span is None
        tracing.annotate(http__response__status_code=200)
    assert tracing.http_headers() == {} and tracing.kafka_headers() == [] and tracing.current_traceparent() is None


def test_a_traceparent_names_its_trace() -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert tracing.trace_id_of(f"00-{trace_id}-00f067aa0ba902b7-01") == trace_id
    assert tracing.trace_id_of("garbage") is None and tracing.trace_id_of(None) is None


def test_a_delivery_carries_its_trace_in_its_records_headers_never_in_its_fields() -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    delivery = Delivery("msg_1", "ep_1", "acme", "task.completed", "evt_1", "job_1", b"{}", "2026-01-01T00:00:00Z",
                        traceparent=traceparent)
    assert b"traceparent" not in delivery.encode(), "as before: a dispatcher of an earlier version reads it"
    headers = tracing.record_headers(delivery.traceparent)
    assert tracing.traceparent_of(headers) == traceparent and tracing.record_headers(None) == []


def test_only_a_well_formed_traceparent_is_taken_from_outside() -> None:
    good = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert tracing.traceparent_of([("traceparent", good)]) == good.decode()
    assert tracing.traceparent_of([("ce_traceparent", good)]) == good.decode(), "a binary-mode CloudEvent's"
    for bad in (None, b"", b"00-x", good.upper(), good + b"0", b"\xff" * 55, b"00-" + b"g" * 32 + good[35:]):
        assert tracing.traceparent_of([("traceparent", bad)]) is None, bad
    assert tracing.trace_id_of(good.decode()[:-2] + "00") is None, "an unsampled trace is exported nowhere"


def test_while_off_a_records_trace_is_passed_on_unchanged() -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    async def handling() -> list[tuple[str, bytes]]:
        tracing.carry(traceparent)
        return tracing.kafka_headers()
    assert asyncio.run(handling()) == [("traceparent", traceparent.encode())]
    assert tracing.kafka_headers() == [], "only within the task that handles the record"


def test_an_openmetrics_scrape_shows_the_trace_of_an_observation() -> None:
    registry = CollectorRegistry()
    latency = Histogram("jobwire_example_seconds", "an example", registry=registry)
    latency.observe(0.2, {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"})
    body, content_type = exposition(registry, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert b'# {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 0.2' in body
    body, content_type = exposition(registry, None)
    assert content_type.startswith("text/plain") and b"trace_id" not in body, "the classic format as before"
