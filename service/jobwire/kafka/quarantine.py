"""Setting records aside: a copy on the ``.invalid`` companion of their topic, with the reason."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka.errors import KafkaError

from jobwire.errors import LogError
from jobwire.metrics import INVALID_RECORDS
from jobwire.positions import Position
from jobwire.records import LogRecord, one_line

log = logging.getLogger(__name__)


class Writer(Protocol):
    async def send_and_wait(self, topic: str, value: bytes | None = None, *, key: bytes | None = None,
                            headers: Sequence[tuple[str, bytes]] | None = None) -> Any: ...


class Quarantine:
    """Sets aside records that cannot be handled: a copy goes to the ``.invalid`` companion of
    their topic with the reason and origin in headers; each is counted and logged once.

    For consumer-group members only, where one member reads each record: readers without a
    group (every API replica) would each write a copy, so they count and log instead.
    """

    def __init__(self, producer: Writer, source_topic: str, invalid_topic: str) -> None:
        if invalid_topic == source_topic or source_topic.endswith(".invalid"):
            # Swapped arguments would copy records back into the topic being read, for ever.
            raise ValueError(f"cannot quarantine {source_topic} into {invalid_topic}")
        self._producer = producer
        self.source_topic = source_topic
        self.invalid_topic = invalid_topic
        self._counted = INVALID_RECORDS.labels(topic=source_topic)

    async def put(self, record: LogRecord, reason: str | None = None) -> None:
        """Set aside a record read from an event topic; ``reason`` defaults to why it is invalid."""
        if reason is None:
            reason = str(record.invalid) if record.invalid is not None else "could not be handled"
        await self.put_raw(record.key, record.raw, record.position, reason, record.headers)

    async def put_raw(self, key: bytes | None, value: bytes | None, position: Position, reason: str,
                      original_headers: Sequence[tuple[str, bytes]] = ()) -> None:
        """Set aside a record of any topic, as it was read (its headers too: a binary-mode event
        is mostly headers). ``LogError`` if the copy is not written."""
        reason = reason[:2000]
        headers = [
            *((name, kept) for name, kept in original_headers[:64] if not name.startswith("jobwire-")),
            ("jobwire-error", reason.encode()),
            ("jobwire-source-topic", self.source_topic.encode()),
            ("jobwire-source-position", str(position).encode()),
        ]
        try:
            await self._producer.send_and_wait(self.invalid_topic, value, key=key, headers=headers)
        except KafkaError as exc:
            raise LogError(f"quarantining {self.source_topic} {position} to {self.invalid_topic} failed: {exc}",
                           retriable=exc.retriable) from exc
        self._counted.inc()
        log.warning("invalid record quarantined topic=%s position=%s reason=%s",
                    self.source_topic, position, one_line(reason))
