"""Schema validation of events: the good, the malformed and the oversized."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from jobwire import events
from jobwire.errors import InvalidEvent
from jobwire.events import MAX_DEPTH, MAX_EVENT_BYTES, decode, encode, new_event


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
    from jobwire.validation import load_schema

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


def nested(levels: int) -> Any:
    """``levels`` containers, alternately arrays and objects, the innermost empty."""
    value: Any = []
    for level in range(levels - 1):
        value = {"a": value} if level % 2 else [value]
    return value


@pytest.mark.parametrize(
    ("document", "pointer"),
    [
        (doc(time="2026-13-45T10:00:00Z"), "/time"),
        (doc(time="2026-02-30T10:00:00.000Z"), "/time"),
        (doc(time="2026-11-23T10:00:60Z"), "/time"),
        (doc(time="0001-01-01T00:30:00+01:00"), "/time"),
        (doc(type="job.completed", data={"result": {}, "result_url_expires_at": "2026-11-31T00:00:00Z"}),
         "/data/result_url_expires_at"),
    ],
)
def test_times_the_fold_parses_must_be_real(document: dict[str, Any], pointer: str) -> None:
    """The schema checks a timestamp's shape; decode also checks it names a real moment."""
    assert pointers(orjson.dumps(document)) == [pointer]
    with pytest.raises(InvalidEvent) as caught:
        events.from_document(document)
    assert [v.pointer for v in caught.value.violations] == [pointer]


def test_a_null_expiry_is_fine() -> None:
    document = doc(type="job.completed", data={"result": {}, "result_url_expires_at": None})
    assert decode(orjson.dumps(document)).data["result_url_expires_at"] is None


def test_encode_refuses_an_impossible_time() -> None:
    with pytest.raises(InvalidEvent) as caught:
        encode(new_event("job.started", "job_1", "acme", {}, time="2026-13-45T10:00:00Z"))
    assert caught.value.violations[0].pointer == "/time"


def test_depth_limit_counts_the_event_object_as_level_one() -> None:
    # The event is level 1, data level 2, parameters level 3.
    deepest = doc(data={"operation": "ocr", "parameters": {"x": nested(MAX_DEPTH - 3)}})
    assert decode(orjson.dumps(deepest)).id
    too_deep = doc(data={"operation": "ocr", "parameters": {"x": nested(MAX_DEPTH - 2)}})
    (pointer,) = pointers(orjson.dumps(too_deep))
    assert pointer.startswith("/data/parameters/x/0/a/") and pointer.count("/") == MAX_DEPTH


def nested_json(levels: int) -> bytes:
    """JSON text nesting ``levels`` arrays: orjson itself will not write more than 254."""
    return b"[" * levels + b"]" * levels


@pytest.mark.parametrize("levels", [300, 1000])
def test_deep_documents_are_invalid_wherever_they_nest(levels: int) -> None:
    hole = b'"HOLE"'
    for document in (doc(data={"operation": "ocr", "parameters": {"x": "HOLE"}}),  # valid but for depth
                     doc(data={"operation": "ocr", "parameters": "HOLE"}),  # wrong type, too
                     doc(extension="HOLE"),  # an extension attribute
                     "HOLE"):  # not even an object
        raw = orjson.dumps(document).replace(hole, nested_json(levels))
        with pytest.raises(InvalidEvent, match="level limit"):
            decode(raw)


def test_encode_refuses_deep_or_unserialisable_data_as_invalid() -> None:
    deep: Any = []
    for _ in range(5000):  # deeper than both orjson and the schema library go
        deep = [deep]
    for data in ({"operation": "ocr", "parameters": {"x": deep}},
                 {"operation": "ocr", "parameters": {"x": 2**70}},
                 {"operation": "ocr", "parameters": {"x": {1, 2}}},
                 {"operation": "ocr", "parameters": {1: "x"}}):
        with pytest.raises(InvalidEvent):
            encode(new_event("job.created", "job_1", "acme", data))
