"""The API's view of webhook deliveries, projected from ``webhooks.attempts``. The attempt
that ends a delivery unsent carries the delivery, so retry and recover can replay it."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from aiokafka import ConsumerRecord

from jobwire.positions import AppliedPositions
from jobwire.webhooks import Attempt, Delivery

log = logging.getLogger(__name__)

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
        if record.value is None:
            return
        try:
            attempt = Attempt.decode(record.value)
        except (ValueError, TypeError) as exc:
            log.warning("invalid attempt record skipped offset=%s error=%s", record.offset, exc)
            return
        view = self.deliveries.get(attempt.delivery_id)
        status = STATUS_FOR_OUTCOME.get(attempt.outcome, attempt.outcome)
        if view is None:
            view = self.deliveries[attempt.delivery_id] = DeliveryView(
                attempt.delivery_id, attempt.endpoint_id, attempt.tenant, attempt.event_type, attempt.event_id,
                attempt.job_id, status, attempt.at, attempt.at)
            self.by_endpoint.setdefault(attempt.endpoint_id, []).append(attempt.delivery_id)
        view.status, view.updated_at = status, attempt.at
        entry = asdict(attempt)
        for key in ("delivery_id", "endpoint_id", "tenant", "event_type", "event_id", "job_id", "dead_letter"):
            entry.pop(key)
        view.attempts.append(entry)
        if status in REPLAYABLE and attempt.dead_letter is not None:
            self.dead[attempt.delivery_id] = Delivery(**attempt.dead_letter)
        else:
            self.dead.pop(attempt.delivery_id, None)

    def get(self, tenant: str, delivery_id: str) -> DeliveryView | None:
        view = self.deliveries.get(delivery_id)
        return view if view is not None and view.tenant == tenant else None

    def of_endpoint(self, endpoint_id: str, status: str | None = None) -> list[DeliveryView]:
        views = [self.deliveries[i] for i in reversed(self.by_endpoint.get(endpoint_id, []))]
        return [v for v in views if status is None or v.status == status]
