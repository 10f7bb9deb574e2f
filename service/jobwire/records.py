"""What readers hand on from a topic: where a record sits, the event it holds (or why it holds
none), and the accounting for records a reader without a consumer group skips.

Pure: no Kafka client here. :class:`RawRecord` is the shape of a record as read, which the
Kafka adapter's records have, so read models take records without importing the client.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from jobwire.errors import InvalidEvent
from jobwire.events import Event
from jobwire.metrics import INVALID_RECORDS
from jobwire.positions import Position

log = logging.getLogger(__name__)


class LogRecord(NamedTuple):
    """One record read from an event topic: the event, or why it is not one."""

    position: Position
    key: bytes | None
    raw: bytes | None
    event: Event | None
    invalid: InvalidEvent | None
    headers: tuple[tuple[str, bytes], ...] = ()


class RecordSink(Protocol):
    """Where keyed records are written (a Kafka topic, or a test's memory): returns where each
    landed, for read-your-writes."""

    async def send(self, key: str, value: bytes | None) -> Position: ...


class RawRecord(Protocol):
    """A record as read from any topic (what aiokafka's ConsumerRecord has)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


def skipped(topic: str, position: Position, reason: str) -> None:
    """Count and log a record a reader without a consumer group skips (it does not quarantine:
    every replica reads every record, so each would write a copy)."""
    INVALID_RECORDS.labels(topic=topic).inc()
    log.warning("invalid record skipped topic=%s position=%s reason=%s", topic, position, one_line(reason))


def one_line(reason: str, limit: int = 200) -> str:
    """A reason fit for a one-line log: newlines escaped, cut at ``limit`` characters."""
    return reason[:limit].replace("\n", "\\n").replace("\r", "\\r")


