"""The API's view of webhook deliveries, projected from ``webhooks.attempts``. The attempt
that ends a delivery unsent carries the delivery, so retry and recover can replay it."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from aiokafka import ConsumerRecord

from jobwire.events import MAX_DEPTH
from jobwire.log import Position, skipped
from jobwire.positions import AppliedPositions
from jobwire.schemas import FieldChecks, checked_record
from jobwire.timeutil import is_time
from jobwire.webhooks import Attempt, Delivery


#: An attempt's fields as its entry in a delivery's list of attempts shows them.
ENTRY_FIELDS = tuple(f.name for f in fields(Attempt) if f.name not in {
    "delivery_id", "endpoint_id", "tenant", "event_type", "event_id", "job_id", "dead_letter"})
#: Deepest nesting of an attempt record: a dead letter carries a webhook body, which carries a
#: task object, which carries the job's parameters, themselves up to an event's depth.
ATTEMPT_MAX_DEPTH = MAX_DEPTH + 8


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _optional_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _optional_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _optional_count(value: Any) -> bool:
    return value is None or _count(value)


def _optional_time(value: Any) -> bool:
    return value is None or is_time(value)


def _object(value: Any) -> bool:
    return isinstance(value, dict)


def _optional_object(value: Any) -> bool:
    return value is None or isinstance(value, dict)


#: What each field of an attempt record must be, so that one that decodes cannot break a later
#: request (ids used as keys, times compared as strings, numbers in responses).
ATTEMPT_FIELDS: FieldChecks = {
    "delivery_id": (_text, "a string"), "endpoint_id": (_text, "a string"), "tenant": (_text, "a string"),
    "event_type": (_text, "a string"), "event_id": (_text, "a string"), "job_id": (_optional_text, "null or a string"),
    "attempt": (_count, "a non-negative integer"), "at": (is_time, "an RFC 3339 time"), "outcome": (_text, "a string"),
    "status_code": (_optional_count, "null or a non-negative integer"),
    "latency_ms": (_optional_number, "null or a number"), "error": (_optional_text, "null or a string"),
    "response_excerpt": (_optional_text, "null or a string"),
    "next_attempt_at": (_optional_time, "null or an RFC 3339 time"), "extra": (_object, "an object"),
    "dead_letter": (_optional_object, "null or an object"),
}


def decode_attempt(raw: bytes) -> Attempt:
    """An attempt record, checked field by field; ``ValueError`` saying what is wrong."""
    data = checked_record(raw, ATTEMPT_FIELDS, "attempt", max_depth=ATTEMPT_MAX_DEPTH)
    try:
        return Attempt(**data)
    except TypeError as exc:  # a required field missing, an unknown one present
        raise ValueError(f"not an attempt: {exc}") from None


STATUS_FOR_OUTCOME = {
    "succeeded": "succeeded", "retrying": "retrying", "failed": "failed", "disabled": "failed",
    "skipped": "skipped", "dropped": "dropped", "refused": "failed",
}
REPLAYABLE = frozenset({"failed", "skipped"})


@dataclass
class DeliveryView:
    id: str
    endpoint_id: str
    tenant: str
    event_type: str
    event_id: str
    job_id: str | None
    status: str
    created_at: str
    updated_at: str
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def public(self, with_attempts: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id, "object": "webhook_delivery", "endpoint_id": self.endpoint_id,
            "event_type": self.event_type, "event_id": self.event_id, "job_id": self.job_id,
            "status": self.status, "created_at": self.created_at, "updated_at": self.updated_at,
            "attempt_count": len(self.attempts),
        }
        if with_attempts:
            body["attempts"] = self.attempts
        return body


class DeliveryLog:
    def __init__(self) -> None:
        self.deliveries: dict[str, DeliveryView] = {}
        self.by_endpoint: dict[str, list[str]] = {}
        #: Payloads of deliveries that ended failed or skipped: what retry and recover resend.
        self.dead: dict[str, Delivery] = {}
        self.positions = AppliedPositions()  # of webhooks.attempts

    def apply_attempt(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Apply one record of ``webhooks.attempts``. A malformed one is skipped (counted and
        logged) before it changes anything."""
        if record.value is None:
            return
        try:
            attempt = decode_attempt(record.value)
            status = STATUS_FOR_OUTCOME.get(attempt.outcome, attempt.outcome)
            replayable = status in REPLAYABLE and attempt.dead_letter is not None
            dead = Delivery.from_dict(attempt.dead_letter) if replayable else None
        except Exception as exc:  # ValueError from the checks; anything the model itself raises
            skipped(record.topic, Position(record.partition, record.offset), f"{type(exc).__name__}: {exc}")
            return
        view = self.deliveries.get(attempt.delivery_id)
        if view is None:
            view = self.deliveries[attempt.delivery_id] = DeliveryView(
                attempt.delivery_id, attempt.endpoint_id, attempt.tenant, attempt.event_type, attempt.event_id,
                attempt.job_id, status, attempt.at, attempt.at)
            self.by_endpoint.setdefault(attempt.endpoint_id, []).append(attempt.delivery_id)
        view.status, view.updated_at = status, attempt.at
        view.attempts.append({name: getattr(attempt, name) for name in ENTRY_FIELDS})
        if dead is not None:
            self.dead[attempt.delivery_id] = dead
        else:
            self.dead.pop(attempt.delivery_id, None)

    def get(self, tenant: str, delivery_id: str) -> DeliveryView | None:
        view = self.deliveries.get(delivery_id)
        return view if view is not None and view.tenant == tenant else None

    def of_endpoint(self, endpoint_id: str, status: str | None = None) -> list[DeliveryView]:
        views = [self.deliveries[i] for i in reversed(self.by_endpoint.get(endpoint_id, []))]
        return [v for v in views if status is None or v.status == status]
