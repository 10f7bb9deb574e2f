"""The CloudEvents Kafka binding: records made by the CloudEvents SDK, in either content mode,
decode to the same event; broken binary records are refused with the reason."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from cloudevents.v1.http import CloudEvent
from cloudevents.v1.kafka import from_structured, to_binary, to_structured

from jobwire import events
from jobwire.binding import STRUCTURED_HEADERS, decode_record, is_binary
from jobwire.errors import InvalidEvent
from jobwire.events import new_event

ATTRIBUTES = {"type": "job.created", "source": "/services/billing", "subject": "job_ce1", "tenant": "acme",
              "id": "evt_ce1", "time": "2026-11-23T10:00:00Z", "datacontenttype": "application/json"}
DATA = {"operation": "ocr", "parameters": {"pages": 3}}


def sdk_event(**changes: Any) -> CloudEvent:
    data = changes.pop("data", DATA)
    return CloudEvent({**ATTRIBUTES, **changes}, data)


def headers_of(message: Any) -> list[tuple[str, bytes]]:
    return list(message.headers.items())


def test_both_sdk_modes_decode_to_the_same_event() -> None:
    binary, structured = to_binary(sdk_event()), to_structured(sdk_event())
    assert is_binary(headers_of(binary)) and not is_binary(headers_of(structured))
    from_binary = decode_record(binary.value, headers_of(binary))
    assert from_binary == decode_record(structured.value, headers_of(structured))
    assert from_binary.type == "job.created" and from_binary.tenant == "acme" and from_binary.data == DATA


def test_what_jobwire_writes_is_structured_and_the_sdk_reads_it() -> None:
    event = new_event("job.completed", "job_ce2", "acme", {"result": {"pages": 3}})
    value = events.encode(event)
    assert decode_record(value, STRUCTURED_HEADERS) == event
    assert decode_record(value, []) == event  # records written before the header existed
    read = from_structured(type(to_structured(sdk_event()))(dict(STRUCTURED_HEADERS), None, value))
    assert (read["id"], read["type"], read.get_data()) == (event.id, event.type, event.data)


def test_binary_content_type_may_carry_parameters() -> None:
    message = to_binary(sdk_event())
    headers = [(k, v) for k, v in headers_of(message) if k != "content-type"]
    assert decode_record(message.value, [*headers, ("Content-Type", b"application/json; charset=utf-8")]).data == DATA
    assert decode_record(message.value, headers).data == DATA  # no content-type: JSON by default


@pytest.mark.parametrize(("change", "expected"), [
    (lambda h, v: (h + [("ce_data", b"{}")], v), "ce_data"),
    (lambda h, v: ([(k, b"text/plain" if k == "content-type" else x) for k, x in h], v), "application/json"),
    (lambda h, v: (h, None), "no value"),
    (lambda h, v: (h, b"{not json"), "not JSON"),
    (lambda h, v: (h, b"[1, 2]"), "data"),
    (lambda h, v: ([(k, b"\xff\xfe" if k == "ce_tenant" else x) for k, x in h], v), "UTF-8"),
    (lambda h, v: ([(k, x) for k, x in h if k != "ce_tenant"], v), "tenant"),
    (lambda h, v: ([(k, b"job.exploded" if k == "ce_type" else x) for k, x in h], v), ""),
    (lambda h, v: ([(k, b"2026-13-01T00:00:00Z" if k == "ce_time" else x) for k, x in h], v), "time"),
    (lambda h, v: (h + [(f"ce_x{i}", b"1") for i in range(40)], v), "ce_ headers"),
    (lambda h, v: (h, b'{"operation": "ocr", "parameters": {}, "x": "' + b"a" * 300_000 + b'"}'), "limit"),
])
def test_broken_binary_records_are_refused_with_the_reason(change: Any, expected: str) -> None:
    message = to_binary(sdk_event())
    headers, value = change(headers_of(message), message.value)
    with pytest.raises(InvalidEvent) as refused:
        decode_record(value, headers)
    assert expected in str(refused.value)


def test_a_structured_record_is_never_read_as_binary() -> None:
    value = orjson.dumps({**ATTRIBUTES, "specversion": "1.0", "data": DATA})
    headers = [("content-type", b"application/cloudevents+json; charset=utf-8"), ("ce_specversion", b"1.0")]
    assert not is_binary(headers)
    assert decode_record(value, headers).data == DATA
