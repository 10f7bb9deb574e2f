"""The webhook model shared by the API and the dispatcher: endpoints, deliveries, attempts.

They never call each other; these records are how they meet on topics.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from jobwire.ids import derived_id
from jobwire.lifecycle import Job, Status
from jobwire.task import task_object
from jobwire.webhooks.filters import matches
from jobwire.webhooks.keys import HMAC

EVENT_TYPES = ("task.completed", "task.failed", "task.canceled")
TEST_EVENT_TYPE = "webhook.test"
#: Operational events (Svix has them too): about endpoints and deliveries, not jobs. Sent only
#: to endpoints that list them in ``event_types``; a null filter means the task events only.
OPERATIONAL_TYPES = ("endpoint.disabled", "endpoint.enabled", "delivery.exhausted", "delivery.failing",
                     "delivery.recovered")
#: A delivery that failed this many attempts in a row raises ``delivery.failing`` (as Svix does).
FAILING_AFTER_ATTEMPTS = 4
TYPE_FOR_STATUS = {Status.COMPLETED: "task.completed", Status.FAILED: "task.failed", Status.CANCELED: "task.canceled"}


@dataclass(frozen=True, slots=True)
class SealedSecret:
    sealed: str
    #: When a rotated-out secret stops signing; None for the current one.
    expires_at: str | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    tenant: str
    url: str
    created_at: str
    updated_at: str
    secrets: tuple[SealedSecret, ...]
    event_types: tuple[str, ...] | None = None
    description: str | None = None
    disabled: bool = False
    disabled_reason: str | None = None
    rate_limit_per_s: float | None = None
    #: Since when every attempt has failed (None while healthy): kept here, on the compacted
    #: topic, so the auto-disable clock survives a dispatcher restart.
    failing_since: str | None = None
    #: ``hmac`` (``v1``: the secrets are ``whsec_``) or ``ed25519`` (``v1a``: ``whsk_`` keys).
    signing: str = HMAC
    #: Conditions on the task a job's webhook must meet (webhooks/filters.py); None: every job.
    filter: dict[str, Any] | None = None
    #: Custom headers and auth for each request (webhooks/request_options.py), sealed like the
    #: secrets; the names and the auth type stay readable, for the endpoint object.
    sealed_request: str | None = None
    header_names: tuple[str, ...] | None = None
    auth_type: str | None = None
    #: The client certificate's subject and expiry (the pair itself is in ``sealed_request``).
    tls_client_subject: str | None = None
    tls_client_not_after: str | None = None
    #: PEM certificates the receiver's server certificate is checked against (None: the system's).
    tls_ca: str | None = None
    #: ``job``: a job's webhooks to this endpoint go one at a time, in order (dispatch/ordered.py);
    #: None: concurrently.
    ordering: str | None = None

    def takes(self, job: Job) -> bool:
        """Whether a webhook about ``job`` is for this endpoint, by its content filter."""
        return matches(self.filter, job)

    def wants(self, event_type: str) -> bool:
        """Whether the endpoint subscribes to ``event_type``: no list means the terminal task
        events; lifecycle (task.started, task.progress) and operational ones only when listed."""
        if event_type == TEST_EVENT_TYPE:
            return True
        if self.event_types is None:
            return event_type in EVENT_TYPES
        return event_type in self.event_types

    def public(self) -> dict[str, Any]:
        """The endpoint object of the API; never the secret."""
        return {
            "id": self.id, "object": "webhook_endpoint", "url": self.url,
            "event_types": list(self.event_types) if self.event_types is not None else None,
            "description": self.description, "disabled": self.disabled, "disabled_reason": self.disabled_reason,
            "rate_limit_per_s": self.rate_limit_per_s, "created_at": self.created_at, "updated_at": self.updated_at,
            "signing": self.signing, "filter": self.filter,
            "headers": list(self.header_names) if self.header_names else None,
            "auth": {"type": self.auth_type} if self.auth_type else None,
            "tls_client_cert": {"subject": self.tls_client_subject, "not_after": self.tls_client_not_after}
            if self.tls_client_subject else None,
            "tls_ca": self.tls_ca, "ordering": self.ordering or "none",
        }

    def encode(self) -> bytes:
        # Fields added since the first version are left out while they hold their default: a
        # dispatcher of an earlier version still reads such an endpoint during a rolling upgrade.
        return orjson.dumps({name: getattr(self, name) for name in _FIELDS
                             if name not in _ADDED or getattr(self, name) != _ADDED[name]})

    @classmethod
    def decode(cls, raw: bytes) -> Endpoint:
        data = orjson.loads(raw)
        data["secrets"] = tuple(SealedSecret(**s) for s in data["secrets"])
        for name in ("event_types", "header_names"):
            if data.get(name) is not None:
                data[name] = tuple(data[name])
        return cls(**data)

    def with_changes(self, **changes: Any) -> Endpoint:
        return replace(self, **changes)


_FIELDS = tuple(Endpoint.__dataclass_fields__)
#: Fields later versions added, and their defaults.
_ADDED: dict[str, Any] = {"signing": HMAC, "filter": None, "sealed_request": None, "header_names": None,
                          "auth_type": None, "tls_client_subject": None, "tls_client_not_after": None,
                          "tls_ca": None, "ordering": None}


def webhook_id(event_id: str, endpoint_id: str) -> str:
    """Stable across retries and replays: receivers dedupe on it."""
    return "msg_" + hashlib.sha256(f"{event_id}\0{endpoint_id}".encode()).hexdigest()[:32]


def payload(event_type: str, timestamp: str, data: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": event_type, "timestamp": timestamp, "data": data})


def notice_payload(job: Job, event_type: str) -> bytes:
    """The body of a lifecycle webhook (``task.started``, ``task.progress``): the task as it stands."""
    return payload(event_type, job.updated_at, task_object(job))


def job_payload(job: Job) -> tuple[str, bytes]:
    """The event type and body for a terminal job; encoded once, sent to every endpoint."""
    event_type = TYPE_FOR_STATUS[job.status]
    return event_type, payload(event_type, job.finished_at or job.updated_at, task_object(job))


def operational_deliveries(endpoints: Iterable[Endpoint], tenant: str, event_type: str, data: dict[str, Any], *,
                           about: str, occurrence: str, at: str) -> list[Delivery]:
    """The deliveries of one operational event to ``tenant``'s endpoints that subscribe to it.

    ``about`` is the endpoint the event concerns: it never gets the event while it is disabled.
    ``occurrence`` names this happening (a delivery id, an endpoint's change time), so the
    event id, and with it every ``webhook-id``, is the same whoever raises it again."""
    event_id = derived_id("evt", f"{event_type}\0{about}\0{occurrence}")
    body = payload(event_type, at, data)
    return [Delivery(webhook_id(event_id, e.id), e.id, tenant, event_type, event_id, None, body, at)
            for e in endpoints if e.tenant == tenant and e.wants(event_type) and not (e.id == about and e.disabled)]


def is_operational(event_type: str) -> bool:
    return event_type in OPERATIONAL_TYPES


@dataclass(frozen=True, slots=True)
class Delivery:
    """One (event, endpoint) pair to deliver; travels through retry tiers and dead letters."""

    id: str  # == webhook-id
    endpoint_id: str
    tenant: str
    event_type: str
    event_id: str
    job_id: str | None
    #: The JSON payload exactly as signed. Records embed it as JSON (not an escaped string), so
    #: a delivery record is only a little larger than its body.
    body: bytes
    created_at: str
    attempts: int = 0  # attempts made so far
    due_at_ms: int = 0
    #: Attempts made before a manual retry or recovery reset the counter (for the log).
    previous_attempts: int = 0
    #: Not before this moment (ms), whatever tier carries the record: a long Retry-After.
    not_before_ms: int = 0
    #: Where a job's callback goes (webhooks/callbacks.py); None: to the endpoint's URL.
    url: str | None = None
    #: The W3C trace context of the job's trace (jobwire/tracing.py), when tracing is on. Not a
    #: field of the record: it travels in the record's headers (``tracing.record_headers``).
    traceparent: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record's fields; ``body`` stays pre-encoded JSON (an ``orjson.Fragment``)."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "traceparent"}
        fields["body"] = orjson.Fragment(self.body)
        if self.url is None:
            del fields["url"]  # as before callbacks: an earlier dispatcher reads the record
        return fields

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def decode(cls, raw: bytes) -> Delivery:
        return cls.from_dict(orjson.loads(raw))

    @classmethod
    def from_dict(cls, data: Any) -> Delivery:
        """A delivery from its decoded record; ``ValueError`` naming the field when it is malformed."""
        if not isinstance(data, dict):
            raise ValueError("a delivery record must be a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown delivery fields: {', '.join(sorted(unknown))[:200]}")
        fields = dict(data)
        body = fields.get("body")
        # Records written before bodies were embedded carry the payload as a string.
        fields["body"] = body.encode() if isinstance(body, str) else orjson.dumps(body)
        if not isinstance(body, (str, dict)):
            raise ValueError("delivery field body must be a JSON object")
        for name, kind in _DELIVERY_FIELD_TYPES.items():
            value = fields.get(name)
            if name not in fields and name in _DELIVERY_OPTIONAL:
                continue
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"delivery field {name} must be {_type_name(kind)}")
        if fields.get("attempts", 0) < 0 or fields.get("previous_attempts", 0) < 0:
            raise ValueError("delivery attempt counts must not be negative")
        return cls(**fields)


_DELIVERY_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "id": str, "endpoint_id": str, "tenant": str, "event_type": str, "event_id": str,
    "job_id": (str, type(None)), "created_at": str, "attempts": int, "due_at_ms": int,
    "previous_attempts": int, "not_before_ms": int, "url": (str, type(None)),
}
_DELIVERY_OPTIONAL = frozenset({"job_id", "attempts", "due_at_ms", "previous_attempts", "not_before_ms", "url"})


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({str: "a string", int: "an integer", type(None): "null"}.get(k, k.__name__) for k in kinds)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What happened to one delivery attempt; goes to webhooks.attempts, keyed by delivery id."""

    delivery_id: str
    endpoint_id: str
    tenant: str
    event_type: str
    event_id: str
    job_id: str | None
    attempt: int
    at: str
    #: succeeded | retrying | failed (dead letter) | disabled (410) | skipped (endpoint disabled)
    #: | dropped (endpoint deleted)
    outcome: str
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    response_excerpt: str | None = None
    next_attempt_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: For outcomes that end a delivery unsent (failed, skipped, disabled): the delivery itself,
    #: so whoever reads this record can replay it without reading another topic.
    dead_letter: dict[str, Any] | None = None
    #: On a delivery's first attempt: the request as sent, ``{"body": <payload>}`` (headers are
    #: per attempt and derived; never a secret), for the delivery log to show.
    request: dict[str, Any] | None = None

    def encode(self) -> bytes:
        return orjson.dumps(self)  # orjson encodes dataclasses natively; asdict deep-copies

    @classmethod
    def decode(cls, raw: bytes) -> Attempt:
        return cls(**orjson.loads(raw))
