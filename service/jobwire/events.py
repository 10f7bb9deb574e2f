"""The job event envelope (CloudEvents 1.0, structured JSON) and its codec.

``decode`` is the only way bytes from the log become an :class:`Event`, and ``encode`` the
only way an event becomes bytes: both validate against ``schemas/``, so nothing that breaks
the contract enters or leaves the log silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from jobwire.errors import InvalidEvent, Violation
from jobwire.ids import new_id
from jobwire.schemas import SchemaValidator, load_schema, validator
from jobwire.timeutil import now_utc

CONTENT_TYPE = "application/cloudevents+json"
EVENT_TYPES = (
    "job.created",
    "job.started",
    "job.progress",
    "job.completed",
    "job.failed",
    "job.cancel_requested",
    "job.canceled",
)
#: Largest encoded event accepted; Kafka's default max.message.bytes is about 1 MiB.
MAX_EVENT_BYTES = 256 * 1024


class Event(NamedTuple):
    """A validated job event. A NamedTuple because every record read builds one (cheap, small)."""

    id: str
    type: str
    source: str
    subject: str  # the job id, also the record key
    time: str
    tenant: str
    data: dict[str, Any]

    @property
    def job_id(self) -> str:
        return self.subject

    def to_dict(self) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "subject": self.subject,
            "time": self.time,
            "tenant": self.tenant,
            "datacontenttype": "application/json",
            "data": self.data,
        }


def new_event(
    type: str,
    job_id: str,
    tenant: str,
    data: dict[str, Any] | None = None,
    *,
    source: str = "/jobwire",
    event_id: str | None = None,
    time: str | None = None,
) -> Event:
    """Build an event with a fresh id and the current time; validated when encoded."""
    return Event(
        id=event_id or new_id("evt"),
        type=type,
        source=source,
        subject=job_id,
        time=time or now_utc(),
        tenant=tenant,
        data=data if data is not None else {},
    )


_ENVELOPE = "event.json"


def _data_validator(event_type: str) -> SchemaValidator:
    return validator(f"data/{event_type}.json")


def _combined_checks() -> dict[str, Callable[[Any], bool]]:
    """Per event type, one compiled check of envelope and data together (the hot path).

    Built from the same schema files; the slower two-step ``violations`` explains failures.
    """
    checks = {}
    for event_type in EVENT_TYPES:
        envelope = load_schema(_ENVELOPE)
        combined = {
            **envelope,
            "properties": {**envelope["properties"], "data": load_schema(f"data/{event_type}.json")},
        }
        checks[event_type] = SchemaValidator(combined).is_valid
    return checks


_checks: dict[str, Callable[[Any], bool]] = {}


def violations(document: Any) -> list[Violation]:
    """Everything wrong with a decoded event document; empty when it is valid."""
    found = validator(_ENVELOPE).violations(document)
    if found:
        return found
    return _data_validator(document["type"]).violations(document["data"], prefix="/data")


def from_document(document: Any) -> Event:
    """Validate a decoded JSON document and turn it into an :class:`Event`."""
    if not _checks:
        _checks.update(_combined_checks())
    check = _checks.get(document.get("type")) if isinstance(document, dict) else None  # type: ignore[arg-type]
    if check is None or not check(document):
        raise InvalidEvent(violations(document))
    return Event(
        id=document["id"],
        type=document["type"],
        source=document["source"],
        subject=document["subject"],
        time=document["time"],
        tenant=document["tenant"],
        data=document["data"],
    )


def decode(raw: bytes | None) -> Event:
    """Bytes of a record value to a valid :class:`Event`, or :class:`InvalidEvent` saying why."""
    if raw is None:
        raise InvalidEvent([Violation("", "record has no value (tombstone)")])
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent([Violation("", f"event is {len(raw)} bytes, over the {MAX_EVENT_BYTES} byte limit")])
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent([Violation("", f"not JSON: {exc}")]) from None
    return from_document(document)


def encode(event: Event) -> bytes:
    """Validate and serialise; raises :class:`InvalidEvent` instead of writing a bad event."""
    document = event.to_dict()
    found = violations(document)
    if found:
        raise InvalidEvent(found)
    raw = orjson.dumps(document)
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent([Violation("", f"event is {len(raw)} bytes, over the {MAX_EVENT_BYTES} byte limit")])
    return raw
