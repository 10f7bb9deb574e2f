"""Schema validation of events: the good, the malformed and the oversized."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from jobwire import events
from jobwire.errors import InvalidEvent
from jobwire.events import MAX_EVENT_BYTES, decode, encode, new_event


def doc(**changes: Any) -> dict[str, Any]:
    base = new_event("job.created", "job_1", "acme", {"operation": "ocr", "parameters": {}}).to_dict()
    for key, value in changes.items():
        if value is ...:
            base.pop(key)
        else:
            base[key] = value
    return base


def pointers(raw: bytes) -> list[str]:
    with pytest.raises(InvalidEvent) as caught:
        decode(raw)
    return [v.pointer for v in caught.value.violations]


def test_round_trip() -> None:
    event = new_event("job.progress", "job_1", "acme", {"total": 5, "processed": 1, "stage": "ocr"})
    assert decode(encode(event)) == event


@pytest.mark.parametrize("event_type", events.EVENT_TYPES)
def test_every_type_has_a_data_schema(event_type: str) -> None:
    from jobwire.schemas import load_schema

    assert load_schema(f"data/{event_type}.json")["type"] == "object"


@pytest.mark.parametrize(
    ("document", "pointer"),
    [
        (doc(id=...), "/id"),
        (doc(tenant=...), "/tenant"),
        (doc(specversion="0.3"), "/specversion"),
        (doc(type="job.exploded"), "/type"),
        (doc(time="yesterday"), "/time"),
        (doc(subject="has spaces"), "/subject"),
        (doc(data=[]), "/data"),
        (doc(data={"parameters": {}}), "/data/operation"),
        (doc(data={"operation": 5, "parameters": {}}), "/data/operation"),
        (doc(data={"operation": "ocr", "parameters": {}, "surprise": 1}), "/data/surprise"),
        (doc(type="job.progress", data={"total": "10", "processed": 1}), "/data/total"),
        (doc(type="job.progress", data={"total": 10, "processed": -1}), "/data/processed"),
        (doc(type="job.failed", data={"error": {"message": "x"}}), "/data/error/code"),
        (doc(type="job.completed", data={"result": {}, "result_checksum": {"algorithm": "rot13", "value": "x"}}),
         "/data/result_checksum/algorithm"),
    ],
)
def test_schema_violations_point_at_the_field(document: dict[str, Any], pointer: str) -> None:
    assert pointer in pointers(orjson.dumps(document))


@pytest.mark.parametrize("raw", [b"", b"not json", b"{", b"[1,2]", b"null", b'"a string"'])
def test_not_an_event_object(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        decode(raw)


def test_tombstone_is_invalid() -> None:
    with pytest.raises(InvalidEvent, match="tombstone"):
        decode(None)


def test_oversized_event_is_refused_both_ways() -> None:
    big = {"operation": "ocr", "parameters": {"blob": "x" * MAX_EVENT_BYTES}}
    with pytest.raises(InvalidEvent, match="byte limit"):
        encode(new_event("job.created", "job_1", "acme", big))
    with pytest.raises(InvalidEvent, match="byte limit"):
        decode(orjson.dumps(doc(data=big)))


def test_encode_refuses_an_invalid_event() -> None:
    with pytest.raises(InvalidEvent) as caught:
        encode(new_event("job.progress", "job_1", "acme", {"total": 1}))
    assert caught.value.violations[0].pointer == "/data/processed"


def test_extension_attributes_are_allowed_but_must_be_cloudevents_names() -> None:
    assert decode(orjson.dumps(doc(traceparent="00-abc"))).id
    with pytest.raises(InvalidEvent, match="Bad_Name"):
        decode(orjson.dumps(doc(Bad_Name="x")))
