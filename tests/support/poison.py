"""Poison records for the readers' tests: what a broken or hostile producer could write."""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import ConsumerRecord

from jobwire.events import new_event
from jobwire.metrics import INVALID_RECORDS, registry_of

_INVALID = registry_of([INVALID_RECORDS])  # this process's count, read the way /metrics would


def consumer_record(topic: str, offset: int, value: bytes | None, key: bytes | None = b"key",
                    partition: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, partition, offset, 0, 0, key, value, None, len(value or b""), len(key or b""), ())


def invalid_count(topic: str) -> float:
    """``jobwire_invalid_records_total`` for ``topic`` in this process."""
    return _INVALID.get_sample_value("jobwire_invalid_records_total", {"topic": topic}) or 0.0


def deep_json(levels: int) -> bytes:
    """JSON text nested ``levels`` deep: more than orjson itself will write (254)."""
    return b'{"a":' * levels + b"1" + b"}" * levels


def event_document(job_id: str, type: str = "job.created", **changes: Any) -> dict[str, Any]:
    data = {"operation": "ocr", "parameters": {}} if type == "job.created" else {}
    return {**new_event(type, job_id, "acme", data).to_dict(), **changes}


def poison_events(job_id: str) -> dict[str, bytes]:
    """Values for ``jobs.events`` that must be set aside, never stop a reader, by what they are."""
    valid = orjson.dumps(event_document(job_id))
    return {
        "impossible date": orjson.dumps(event_document(job_id, time="2026-13-45T10:00:00Z")),
        "impossible expiry": orjson.dumps(event_document(job_id, "job.completed", data={
            "result": {}, "result_url_expires_at": "2026-02-30T00:00:00Z"})),
        "300 levels": valid.replace(b'"parameters":{}', b'"parameters":' + deep_json(300)),
        "not JSON": b"\x00\xff{not json",
        "wrong types": orjson.dumps({**event_document(job_id), "type": ["job.created"], "data": "everything"}),
        "JSON but no object": b"[1, 2, 3]",
    }


def endpoint_document(endpoint_id: str, tenant: str = "acme", **changes: Any) -> dict[str, Any]:
    return {"id": endpoint_id, "tenant": tenant, "url": "https://hooks.example/in",
            "created_at": "2026-11-23T10:00:00.000Z", "updated_at": "2026-11-23T10:00:00.000Z",
            "secrets": [{"sealed": "sealed-secret", "expires_at": None}], "event_types": None,
            "description": None, "disabled": False, "disabled_reason": None, "rate_limit_per_s": None, **changes}


def poison_endpoints(endpoint_id: str) -> dict[str, bytes]:
    return {
        "not JSON": b"{",
        "secrets a string": orjson.dumps(endpoint_document(endpoint_id, secrets="whsec_abc")),
        "no secrets": orjson.dumps(endpoint_document(endpoint_id, secrets=[])),
        "created_at a number": orjson.dumps(endpoint_document(endpoint_id, created_at=17)),
        "impossible expiry": orjson.dumps(endpoint_document(
            endpoint_id, secrets=[{"sealed": "s", "expires_at": "2026-13-45T10:00:00Z"}])),
        "rate limit a string": orjson.dumps(endpoint_document(endpoint_id, rate_limit_per_s="fast")),
        "event types an object": orjson.dumps(endpoint_document(endpoint_id, event_types={"task.failed": True})),
        "unknown field": orjson.dumps(endpoint_document(endpoint_id, surprise=1)),
        "missing url": orjson.dumps({k: v for k, v in endpoint_document(endpoint_id).items() if k != "url"}),
        "300 levels": orjson.dumps(endpoint_document(endpoint_id, description="HOLE")).replace(
            b'"HOLE"', deep_json(300)),
    }


def attempt_document(delivery_id: str, endpoint_id: str, **changes: Any) -> dict[str, Any]:
    return {"delivery_id": delivery_id, "endpoint_id": endpoint_id, "tenant": "acme", "event_type": "task.completed",
            "event_id": "evt_1", "job_id": "job_1", "attempt": 1, "at": "2026-11-23T10:00:01.000Z",
            "outcome": "succeeded", "status_code": 200, **changes}


def poison_attempts(delivery_id: str, endpoint_id: str) -> dict[str, bytes]:
    return {
        "not JSON": b"\xff",
        "outcome a list": orjson.dumps(attempt_document(delivery_id, endpoint_id, outcome=["failed"])),
        "endpoint id an object": orjson.dumps({**attempt_document(delivery_id, endpoint_id), "endpoint_id": {"a": 1}}),
        "at a number": orjson.dumps(attempt_document(delivery_id, endpoint_id, at=1700000000)),
        "attempt a string": orjson.dumps(attempt_document(delivery_id, endpoint_id, attempt="1")),
        "dead letter not a delivery": orjson.dumps(attempt_document(
            delivery_id, endpoint_id, outcome="failed", dead_letter={"id": 5})),
        "missing tenant": orjson.dumps({k: v for k, v in attempt_document(delivery_id, endpoint_id).items()
                                        if k != "tenant"}),
        "300 levels": orjson.dumps(attempt_document(delivery_id, endpoint_id, extra="HOLE")).replace(
            b'"HOLE"', deep_json(300)),
    }
