"""Positions in a topic (``partition:offset``, the ``Jobwire-Position`` token), how far a
reader has applied a topic, and waiting for a given position (read-your-writes).

Standard library only: the client SDK parses positions with it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import NamedTuple


class Position(NamedTuple):
    """Where a record sits in a topic: the ``Jobwire-Position`` header is ``partition:offset``.
    A NamedTuple, as LogRecord: one is made per record read, and a frozen dataclass costs
    several times more to build."""

    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Position:
        partition, sep, offset = text.strip().partition(":")
        # isascii too: isdigit alone takes "²", which int() refuses.
        if not sep or not all(part.isascii() and part.isdigit() for part in (partition, offset)):
            raise ValueError(f"not a log position (partition:offset): {text!r}")
        return cls(int(partition), int(offset))


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
