"""Recognising copies of a delivery record.

A crash or a rebalance replays what was read since the last commit, so the next step of a
record (its hop onward, its parking, the retry after its attempt) can be written twice. Left
alone, each copy would move on by itself and double again at the next replay: a slow endpoint's
backlog grows with every crash. So every record the dispatcher writes for a delivery names its
step: the delivery's attempt counts, its moves (hops, parkings) since the last attempt, and its
lineage: empty for a delivery made from an event, and the position of the request for one the
API asked for (a retry or a recover starts the counts again). Lineage and moves travel in
headers, which older readers ignore.

The copies of one step land on the same partition (the endpoint is the key), so a consumer that
has taken one skips the others. That is safe: the one it took sits at a lower offset of the same
partition, so no commit passes a skipped copy before the original's next step is durable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from jobwire.webhooks.model import Delivery

LINEAGE_HEADER = "jobwire-lineage"
MOVES_HEADER = "jobwire-moves"
#: How many taken records per partition are remembered to recognise their copies.
MAX_CLAIMS_PER_PARTITION = 20_000

Identity = tuple[str, str, int, int, int]


@dataclass(frozen=True, slots=True)
class Step:
    lineage: str = ""
    moves: int = 0
    #: The record starts its lineage: it is nobody's copy.
    origin: bool = False

    @classmethod
    def read(cls, headers: Iterable[tuple[str, bytes]] | None, delivery: Delivery, origin: str) -> Step:
        """The step of a record read from a retry tier or the requests topic at ``origin`` (its
        position). A record that names no step and was neither attempted nor moved is where a
        lineage starts (a request from the API, an operational event): its position names it."""
        lineage, moves = None, 0
        for name, value in headers or ():
            if name == LINEAGE_HEADER:
                lineage = value.decode(errors="replace")
            elif name == MOVES_HEADER:
                try:
                    moves = max(0, int(value))
                except ValueError:
                    moves = 0
        if lineage is None and delivery.attempts == 0 and moves == 0:
            return cls(origin, 0, origin=True)
        return cls(lineage or "", moves)

    def moved(self) -> Step:
        return replace(self, moves=self.moves + 1, origin=False)

    def attempted(self) -> Step:
        return replace(self, moves=0, origin=False)

    def headers(self) -> list[tuple[str, bytes]]:
        return [(LINEAGE_HEADER, self.lineage.encode()), (MOVES_HEADER, str(self.moves).encode())]

    def identity(self, delivery: Delivery) -> Identity:
        return delivery.id, self.lineage, delivery.previous_attempts, delivery.attempts, self.moves


class Claims:
    """Per partition, the identities a consumer has taken, oldest first, bounded."""

    def __init__(self, per_partition: int = MAX_CLAIMS_PER_PARTITION) -> None:
        self.per_partition = per_partition
        self._taken: dict[int, dict[Identity, None]] = {}

    def is_copy(self, partition: int, record: Identity) -> bool:
        return record in self._taken.get(partition, {})

    def claim(self, partition: int, record: Identity) -> None:
        taken = self._taken.setdefault(partition, {})
        if len(taken) >= self.per_partition:
            del taken[next(iter(taken))]  # the oldest: its copies, if any, are long past
        taken[record] = None

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._taken.pop(partition, None)
