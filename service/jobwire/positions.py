"""How far a reader has applied a topic, and waiting for a given position (read-your-writes)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import ConsumerRecord

from jobwire.log import LogReader, Position, skipped


@dataclass
class AppliedPositions:
    #: partition -> next offset to apply (as a consumer would commit it).
    applied: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._waiters: list[tuple[Position, asyncio.Future[None]]] = []

    def advance(self, position: Position) -> None:
        self.applied[position.partition] = position.offset + 1

    def has_applied(self, position: Position) -> bool:
        return self.applied.get(position.partition, 0) > position.offset

    def caught_up(self, end_offsets: dict[int, int]) -> bool:
        return all(self.applied.get(p, 0) >= end for p, end in end_offsets.items())

    def wake(self) -> None:
        """Call after each applied batch: resolves the waiters whose position is now applied."""
        still_waiting = []
        for position, future in self._waiters:
            if future.done():
                continue
            if self.has_applied(position):
                future.set_result(None)
            else:
                still_waiting.append((position, future))
        self._waiters = still_waiting

    async def wait_for(self, position: Position, timeout_s: float) -> bool:
        """True once ``position`` is applied; False after the timeout."""
        if self.has_applied(position):
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((position, future))
        try:
            await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return False
        return True


async def follow_raw(
    reader: LogReader,
    apply: Callable[[ConsumerRecord[bytes, bytes]], None],
    positions: AppliedPositions,
    stop: asyncio.Event,
) -> None:
    """Feed every record of a non-event topic to ``apply``, in order, until ``stop``.

    ``apply`` skips the records it finds malformed; should it raise all the same, the record is
    skipped here (counted and logged): one record must never end a replica's view of a topic.
    No quarantine copy either way: every replica reads every record, so each would write one.
    """
    async for batch in reader.raw_batches(timeout_ms=100):
        for record in batch:
            position = Position(record.partition, record.offset)
            try:
                apply(record)
            except Exception as exc:
                skipped(reader.topic, position, f"{type(exc).__name__}: {exc}")
            positions.advance(position)
        if batch:
            positions.wake()
        if stop.is_set():
            return
