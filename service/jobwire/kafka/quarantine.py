"""Setting records aside: a copy on the ``.invalid`` companion of their topic, with the reason."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka.errors import KafkaError

from jobwire.errors import LogError
from jobwire.metrics import INVALID_RECORDS
from jobwire.positions import Position
from jobwire.records import LogRecord, one_line

log = logging.getLogger(__name__)

#: Largest copy written (value, key and headers): under the producer's 1 MiB request limit.
COPY_LIMIT_BYTES = 1000 * 1024
#: Kept free for the headers a truncated copy adds and the record's framing.
HEADER_RESERVE = 256


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
            ("jobwire-error", reason.encode()),
            ("jobwire-source-topic", self.source_topic.encode()),
            ("jobwire-source-position", str(position).encode()),
        ]
        room = COPY_LIMIT_BYTES - sum(len(n) + len(v) for n, v in headers) - len(key or b"")
        kept_headers = []
        for name, kept in original_headers[:64]:
            size = len(name) + len(kept or b"")
            if name.startswith("jobwire-") or size > room - HEADER_RESERVE:
                continue
            kept_headers.append((name, kept))
            room -= size
        if value is not None and len(value) > room - HEADER_RESERVE:
            # The copy must fit the producer's limit, or setting the record aside would fail
            # the consumer: the start of the value, with the original's size and hash.
            headers += [("jobwire-original-size", str(len(value)).encode()),
                        ("jobwire-original-sha256", hashlib.sha256(value).hexdigest().encode())]
            value = value[:max(0, room - HEADER_RESERVE)]
        headers = kept_headers + headers
        try:
            await self._producer.send_and_wait(self.invalid_topic, value, key=key, headers=headers)
        except KafkaError as exc:
            raise LogError(f"quarantining {self.source_topic} {position} to {self.invalid_topic} failed: {exc}",
                           retriable=exc.retriable) from exc
        self._counted.inc()
        log.warning("invalid record quarantined topic=%s position=%s reason=%s",
                    self.source_topic, position, one_line(reason))
