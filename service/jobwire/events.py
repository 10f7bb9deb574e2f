"""The job event envelope (CloudEvents 1.0, structured JSON) and its codec.

``decode`` is the only way bytes from the log become an :class:`Event`, and ``encode`` the
only way an event becomes bytes: both validate against ``schemas/``, so nothing that breaks
the contract enters or leaves the log silently. Beyond the schemas, both check what the fold
relies on: the timestamps it parses are real moments, and nothing nests deeper than
:data:`MAX_DEPTH`. An event that decodes can be folded, snapshotted and sent as a webhook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from jobwire.errors import InvalidEvent, Violation
from jobwire.ids import new_id
from jobwire.timeutil import check_time, now_utc
from jobwire.validation import SchemaValidator, depth_violation, load_schema, validator

CONTENT_TYPE = "application/cloudevents+json"
EVENT_TYPES = (
    "job.created",
    "job.input_received",
    "job.started",
    "job.heartbeat",
    "job.progress",
    "job.completed",
    "job.failed",
    "job.cancel_requested",
    "job.canceled",
)
#: The worker's proof of life: folded (deadlines move) but kept out of state, version and history.
HEARTBEAT = "job.heartbeat"
#: Largest encoded event accepted; Kafka's default max.message.bytes is about 1 MiB.
MAX_EVENT_BYTES = 256 * 1024
#: Deepest nesting accepted (the event object is level 1). Whatever holds an event nests it a
#: few levels further (state snapshots, webhook bodies), and orjson refuses to encode beyond 254.
MAX_DEPTH = 64


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
    # Depth first: the schema library gives up on very deep documents while explaining them.
    too_deep = depth_violation(document, MAX_DEPTH)
    if too_deep is not None:
        return [too_deep]
    found = validator(_ENVELOPE).violations(document)
    if not found:
        found = _data_validator(document["type"]).violations(document["data"], prefix="/data")
    return found or _time_violations(document)


def from_document(document: Any) -> Event:
    """Validate a decoded JSON document and turn it into an :class:`Event`."""
    return _event(document, may_be_deep=True)


def _event(document: Any, *, may_be_deep: bool) -> Event:
    """The hot path: one compiled schema check, then what the schema cannot say (real times,
    depth), then explanations only for what fails. ``may_be_deep=False`` skips the depth check
    when the caller knows the document cannot nest deeper than :data:`MAX_DEPTH`."""
    if not _checks:
        _checks.update(_combined_checks())
    kind = document.get("type") if isinstance(document, dict) else None
    check = _checks.get(kind) if isinstance(kind, str) else None  # {"type": []} is not hashable
    try:
        valid = check is not None and check(document)
    except ValueError:  # not JSON data, or too deep for the schema library; violations() says
        valid = False
    if not valid:
        raise InvalidEvent(violations(document) or [Violation("", "does not match the event schema")])
    found = _time_violations(document)
    too_deep = depth_violation(document, MAX_DEPTH) if may_be_deep else None
    if too_deep is not None:
        found.append(too_deep)
    if found:
        raise InvalidEvent(found)
    # Positional: keywords cost a third of this call, paid per record read at rebuild.
    return Event(document["id"], document["type"], document["source"], document["subject"], document["time"],
                 document["tenant"], document["data"])


def _time_violations(document: dict[str, Any]) -> list[Violation]:
    """Timestamps the fold parses (``lifecycle.apply``) that have the right shape, which is all
    the schema checks, but are no real moment (month 13, hour 24). ``document`` is schema-valid."""
    found = []
    try:
        check_time(document["time"])
    except ValueError as exc:
        found.append(Violation("/time", str(exc)))
    expires = document["data"].get("result_url_expires_at")
    if expires is not None:
        try:
            check_time(expires)
        except ValueError as exc:
            found.append(Violation("/data/result_url_expires_at", str(exc)))
    return found


def _may_be_too_deep(raw: bytes) -> bool:
    """Cheap bound: nesting N levels takes N opening brackets (inside strings they only add)."""
    return raw.count(b"{") + raw.count(b"[") > MAX_DEPTH


def decode(raw: bytes | None) -> Event:
    """Bytes of a record value to a valid :class:`Event`, or :class:`InvalidEvent` saying why."""
    document = json_value(raw, "", "record has no value (tombstone)")
    return _event(document, may_be_deep=_may_be_too_deep(raw or b""))


def json_value(raw: bytes | None, pointer: str, absent: str) -> Any:
    """A record value as JSON, within :data:`MAX_EVENT_BYTES`; else :class:`InvalidEvent` at
    ``pointer`` (``absent`` says what a missing value means)."""
    if raw is None:
        raise InvalidEvent([Violation(pointer, absent)])
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent([Violation(pointer, f"{len(raw)} bytes, over the {MAX_EVENT_BYTES} byte limit")])
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent([Violation(pointer, f"not JSON: {exc}")]) from None


def encode(event: Event) -> bytes:
    """Validate and serialise; raises :class:`InvalidEvent` instead of writing a bad event."""
    document = event.to_dict()
    found = violations(document)
    if found:
        raise InvalidEvent(found)
    try:
        raw = orjson.dumps(document)
    except TypeError as exc:  # orjson.JSONEncodeError: an integer over 64 bits, a lone surrogate, ...
        raise InvalidEvent([Violation("", f"not serialisable as JSON: {exc}")]) from None
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent([Violation("", f"event is {len(raw)} bytes, over the {MAX_EVENT_BYTES} byte limit")])
    return raw
