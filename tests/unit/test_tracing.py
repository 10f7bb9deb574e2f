"""Tracing's switch and its context plumbing (jobwire/tracing.py); the dispatcher's hand-made
spans with tracing on, exported to memory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

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
    assert tracing.http_headers() == {} and tracing.kafka_headers() == []


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
    for bad in (None, b"", b"00-x", good.upper(), good + b"0", b"\xff" * 55, b"00-" + b"g" * 32 + good[35:],
                b"ff" + good[2:], good[:3] + b"0" * 32 + good[35:], good[:36] + b"0" * 16 + good[52:]):
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



# --- the dispatcher's spans, started and ended by hand, with tracing on ----------------------

SAMPLED = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
UNSAMPLED = "00-" + "c" * 32 + "-" + "d" * 16 + "-00"


@pytest.fixture
def memory() -> Iterator[Any]:
    """Tracing on in this process (parent-based sampling, the default); each span exported to
    memory as it ends."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider, {})
    try:
        yield exporter
    finally:
        tracing.shutdown()
    assert not tracing.enabled()


def test_a_started_span_continues_its_parent_and_names_itself_in_its_traceparent(memory: Any) -> None:
    attempt = tracing.start("webhook task.completed", kind=tracing.CLIENT, parent=SAMPLED,
                            attributes={"jobwire.delivery.id": "dlv_1", "jobwire.job.id": None})
    passed = tracing.traceparent(attempt)
    assert passed is not None and tracing.TRACEPARENT.fullmatch(passed)
    assert passed.split("-")[1] == "a" * 32 and passed.split("-")[2] != "b" * 16 and passed.endswith("-01")
    assert tracing.request_headers(attempt, SAMPLED) == {"traceparent": passed}
    assert memory.get_finished_spans() == (), "exported only once ended"
    tracing.end(attempt, error="HTTP 503", http__response__status_code=503)
    (span,) = memory.get_finished_spans()
    assert format(span.parent.span_id, "016x") == "b" * 16 and format(span.context.span_id, "016x") == passed[36:52]
    assert span.kind.name == "CLIENT" and span.name == "webhook task.completed"
    assert span.attributes["http.response.status_code"] == 503 and "jobwire.job.id" not in span.attributes
    assert span.status.status_code.name == "ERROR" and span.status.description == "HTTP 503"


def test_under_an_unsampled_parent_no_span_is_made_and_the_parents_context_goes_on(memory: Any) -> None:
    attempt = tracing.start("webhook task.failed", kind=tracing.CLIENT, parent=UNSAMPLED)
    assert attempt is None
    assert tracing.request_headers(attempt, UNSAMPLED) == {"traceparent": UNSAMPLED}
    tracing.end(attempt, error="ignored")
    deferred = tracing.Deferred("dispatch job.completed", parent=UNSAMPLED)
    assert deferred.traceparent() == UNSAMPLED
    deferred.end()
    assert memory.get_finished_spans() == ()


def test_a_root_span_starts_a_trace_of_its_own_and_links_another(memory: Any) -> None:
    root = tracing.start("dispatch job.completed", kind=tracing.CONSUMER, link=SAMPLED)
    tracing.end(root)
    (span,) = memory.get_finished_spans()
    assert span.parent is None and format(span.context.trace_id, "032x") != "a" * 32
    (link,) = span.links
    assert format(link.context.trace_id, "032x") == "a" * 32 and format(link.context.span_id, "016x") == "b" * 16
    linked_to_itself = tracing.start("dispatch job.completed", parent=SAMPLED, link=SAMPLED)
    tracing.end(linked_to_itself)
    assert memory.get_finished_spans()[1].links == ()


def test_a_deferred_span_exists_only_once_asked_for_and_is_timed_from_its_making(memory: Any) -> None:
    unasked = tracing.Deferred("dispatch job.created", parent=SAMPLED)
    unasked.end()
    assert memory.get_finished_spans() == (), "a record that makes no webhook costs no span"
    made_at = time.time_ns()
    asked = tracing.Deferred("dispatch job.completed", kind=tracing.CONSUMER, parent=SAMPLED,
                             attributes={"jobwire.job.id": "job_1"})
    time.sleep(0.01)
    passed = asked.traceparent()
    assert asked.traceparent() == passed, "one span, however often asked"
    asked.end()
    (span,) = memory.get_finished_spans()
    assert span.start_time - made_at < 10_000_000 and span.end_time - span.start_time >= 10_000_000
    assert format(span.context.span_id, "016x") == passed[36:52] and span.attributes["jobwire.job.id"] == "job_1"


def test_a_deferred_span_while_off_passes_its_parent_on() -> None:
    assert not tracing.enabled()
    assert tracing.Deferred("dispatch", parent=SAMPLED).traceparent() == SAMPLED
    assert tracing.start("anything", parent=SAMPLED) is None and tracing.request_headers(None, SAMPLED) == {}
