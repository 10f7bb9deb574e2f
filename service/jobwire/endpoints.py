"""Webhook endpoints as the compacted topic ``webhooks.endpoints`` says they are.

The API writes endpoint snapshots (and tombstones on delete); the dispatcher writes one when a
410 or a long failure disables an endpoint. Both keep a registry fed from the topic.
"""

from __future__ import annotations

import logging

from aiokafka import ConsumerRecord

from jobwire.log import KeyedWriter, Position
from jobwire.positions import AppliedPositions
from jobwire.webhooks import Endpoint

log = logging.getLogger(__name__)


class EndpointRegistry:
    def __init__(self) -> None:
        self.endpoints: dict[str, Endpoint] = {}
        self.positions = AppliedPositions()

    def apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        endpoint_id = (record.key or b"").decode()
        if record.value is None:
            self.endpoints.pop(endpoint_id, None)
            return
        try:
            endpoint = Endpoint.decode(record.value)
        except (ValueError, TypeError) as exc:
            log.warning("invalid endpoint record skipped endpoint_id=%s offset=%s error=%s", endpoint_id, record.offset, exc)
            return
        self.endpoints[endpoint.id] = endpoint

    def get(self, tenant: str, endpoint_id: str) -> Endpoint | None:
        endpoint = self.endpoints.get(endpoint_id)
        return endpoint if endpoint is not None and endpoint.tenant == tenant else None

    def of_tenant(self, tenant: str) -> list[Endpoint]:
        return sorted((e for e in self.endpoints.values() if e.tenant == tenant), key=lambda e: (e.created_at, e.id))

    def subscribed(self, tenant: str, event_type: str) -> list[Endpoint]:
        """Endpoints of ``tenant`` whose filter takes ``event_type``, disabled ones included."""
        return [e for e in self.endpoints.values() if e.tenant == tenant and e.wants(event_type)]


class EndpointWriter:
    """Endpoint snapshots, and tombstones for deleted endpoints, on the compacted topic."""

    def __init__(self, writer: KeyedWriter) -> None:
        self._writer = writer

    async def put(self, endpoint: Endpoint) -> Position:
        return await self._writer.send(endpoint.id, endpoint.encode())

    async def delete(self, endpoint_id: str) -> Position:
        return await self._writer.send(endpoint_id, None)
